// SSPSync: the all-reduce of clock c runs in the background while the trainer
// computes clocks c + 1 ... c + s. On a simulated network of 8 ranks (virtual
// time, so the figures are exact), each clock computes C and the gradient's
// ring all-reduce alone takes A: the period is C + A at s = 0 (compute, then
// wait) and max(C, A) at s >= 1. The example checks both, and that every
// rank applies the same mean, bit for bit.
#include <dssync/dssync.hpp>
#include <dssync/sim.hpp>
#include <dssync/sync/ssp.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

constexpr int ranks = 8, clocks = 20;
constexpr std::size_t params = 1 << 20;  // 4 MB of gradient: A is about 6 ms at 1.25 GB/s

// The virtual time between the last two clocks, on rank 0.
double period(int staleness, double compute, bool& same) {
  std::vector<double> returned;
  std::vector<std::vector<float>> applied(ranks);
  dssync::SimWorld(ranks).run([&](dssync::SimTransport& t) {
    dssync::SSPSync<dssync::SimTransport> ssp(t, params, {.staleness = staleness});
    std::vector<float> gradient(params), rest(params);
    for (int c = 0; c < clocks; ++c) {
      t.compute(compute);
      std::fill(gradient.begin(), gradient.end(), float(t.rank() + c));
      ssp.step(gradient);  // the mean of clock c - s
      if (t.rank() == 0) returned.push_back(t.now());
    }
    ssp.finish(rest);
    applied[std::size_t(t.rank())] = gradient;
  });
  for (const auto& a : applied) same = same && a == applied[0];
  return returned[clocks - 1] - returned[clocks - 2];
}

int main() {
  double a = 0;  // one all-reduce alone
  dssync::SimWorld(ranks).run([&](dssync::SimTransport& t) {
    std::vector<float> g(params, 1.0f);
    std::vector<int> all(ranks);
    for (int r = 0; r < ranks; ++r) all[std::size_t(r)] = r;
    dssync::RingReduce{}.all_reduce(t, dssync::Group(all), std::span<float>(g), dssync::Average{});
    if (t.rank() == 0) a = t.now();
  });
  bool ok = true, same = true;
  for (const double c : {a / 2, 2 * a}) {
    for (const int s : {0, 1, 2}) {
      const double got = period(s, c, same), want = s == 0 ? c + a : std::max(c, a);
      ok = ok && std::abs(got - want) <= 1e-9 * want;
      std::printf("C = %5.2f ms, A = %5.2f ms, s = %d: period %6.3f ms (%s %6.3f ms)\n", c * 1e3,
                  a * 1e3, s, got * 1e3, s == 0 ? "C + A =" : "max(C, A) =", want * 1e3);
    }
  }
  std::printf("every rank applied the same means: %s\n", same ? "yes" : "NO");
  return ok && same ? 0 : 1;
}
