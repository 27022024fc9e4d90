// DS-Sync against the ring all-reduce on a simulated network of 64 ranks, in
// virtual time: a 100 MB model on 10 Gbit/s links with 5 us of latency.
//
//   ./sim_dssync
//
// The ranks are fibers of this one thread (SimWorld); the collectives move
// real bytes (64 KiB per rank) while the clock sees 100 MB (byte_scale). It
// prints the virtual time of every step and the consensus distance it
// leaves, and checks two things, exiting 1 if either fails:
//  - every step takes what the alpha-beta model says: the ring over n ranks
//    2(n-1) alpha + 2(n-1)/n M/B, DS-Sync with groups of g (a ring inside
//    each group) 2(g-1) alpha + 2(g-1)/g M/B (docs/method.md, "Closed forms");
//  - DS-Sync's parameters on the simulator are bitwise those the same program
//    gives with ranks as threads (InProcWorld): only the clock is simulated.
// The ctest "examples: sim_dssync" runs it.
#include <dssync/sim.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <utility>
#include <vector>

namespace {

constexpr int n = 64, g = 2, steps = 10;
constexpr std::size_t len = 16384;  // floats per rank: 64 KiB real
constexpr double model_bytes = 100e6, alpha = 5e-6, bandwidth = 10e9 / 8;

float start(int rank, std::size_t i) { return static_cast<float>(std::sin(0.37 * rank + 0.011 * double(i))); }

// Per step: the virtual time the slowest rank took, and the consensus
// distance after it (mean over ranks of |x_i - mean|^2, relative to the start).
struct Run {
  std::vector<double> seconds, consensus;
  std::vector<std::vector<float>> final;  // each rank's parameters at the end
};

double consensus(const std::vector<std::vector<float>>& x) {
  double d = 0;
  for (std::size_t i = 0; i < len; ++i) {
    double mean = 0;
    for (const auto& xr : x) mean += xr[i];
    mean /= double(x.size());
    for (const auto& xr : x) d += (xr[i] - mean) * (xr[i] - mean);
  }
  return d / double(x.size());
}

template <class Sync>
Run simulate() {
  const dssync::SimOptions network{.alpha = alpha, .bandwidth = bandwidth,
                                   .byte_scale = model_bytes / double(len * sizeof(float))};
  Run run;
  std::vector<std::vector<double>> done(n, std::vector<double>(steps));
  std::vector<std::vector<std::vector<float>>> x(steps + 1, std::vector<std::vector<float>>(n));
  dssync::SimWorld(n, network).run([&](dssync::SimTransport& t) {
    const auto r = static_cast<std::size_t>(t.rank());
    std::vector<float> params(len);
    for (std::size_t i = 0; i < len; ++i) params[i] = start(t.rank(), i);
    x[0][r] = params;
    Sync sync(t, {.group_size = g, .seed = 42});
    for (int s = 0; s < steps; ++s) {
      sync.step(params);
      done[r][std::size_t(s)] = t.now();  // this rank's virtual time
      x[std::size_t(s) + 1][r] = params;
    }
  });
  const double d0 = consensus(x[0]);
  double before = 0;
  for (int s = 0; s < steps; ++s) {
    double last = 0;
    for (int r = 0; r < n; ++r) last = std::max(last, done[std::size_t(r)][std::size_t(s)]);
    run.seconds.push_back(last - before);
    run.consensus.push_back(consensus(x[std::size_t(s) + 1]) / d0);
    before = last;
  }
  run.final = x[steps];
  return run;
}

// The ring all-reduce as a synchronizer made like DSSync (it has no groups).
template <class T>
struct Ring : dssync::AllReduceSync<T> {
  Ring(T& t, dssync::DSSyncOptions) : dssync::AllReduceSync<T>(t) {}
};

}  // namespace

int main() {
  const Run ring = simulate<Ring<dssync::SimTransport>>();
  const Run ds = simulate<dssync::DSSync<dssync::SimTransport>>();

  const double M_over_B = model_bytes / bandwidth;
  const double ring_model = 2 * (n - 1) * alpha + 2.0 * (n - 1) / n * M_over_B;
  const double ds_model = 2 * (g - 1) * alpha + 2.0 * (g - 1) / g * M_over_B;
  bool exact = true;
  std::printf("%d ranks, %.0f MB model, %.0f Gbit/s, %.0f us: virtual seconds per step, consensus after it\n",
              n, model_bytes / 1e6, bandwidth * 8 / 1e9, alpha * 1e6);
  std::printf("step   ring all-reduce          DS-Sync g=%d random\n", g);
  for (int s = 0; s < steps; ++s) {
    const auto i = std::size_t(s);
    std::printf("%4d   %.6f  %9.3g       %.6f  %9.3g\n", s + 1, ring.seconds[i], ring.consensus[i],
                ds.seconds[i], ds.consensus[i]);
    exact = exact && std::abs(ring.seconds[i] - ring_model) <= 1e-9 * ring_model &&
            std::abs(ds.seconds[i] - ds_model) <= 1e-9 * ds_model;
  }
  std::printf("closed forms: ring %.6f s, DS-Sync %.6f s per step: %s\n", ring_model, ds_model,
              exact ? "every step agrees to 1e-9" : "A STEP DISAGREES");

  // The same DS-Sync program with ranks as threads: the same bits.
  std::vector<std::vector<float>> threads(n);
  dssync::InProcWorld(n).run([&](dssync::InProcTransport& t) {
    std::vector<float> params(len);
    for (std::size_t i = 0; i < len; ++i) params[i] = start(t.rank(), i);
    dssync::DSSync<dssync::InProcTransport> sync(t, {.group_size = g, .seed = 42});
    for (int s = 0; s < steps; ++s) sync.step(params);
    threads[std::size_t(t.rank())] = std::move(params);
  });
  bool same = true;
  for (int r = 0; r < n; ++r)
    same = same && std::memcmp(threads[std::size_t(r)].data(), ds.final[std::size_t(r)].data(),
                               len * sizeof(float)) == 0;
  std::printf("DS-Sync's parameters on the simulator and with ranks as threads: %s\n",
              same ? "bitwise the same" : "DIFFERENT");
  return exact && same ? 0 : 1;
}
