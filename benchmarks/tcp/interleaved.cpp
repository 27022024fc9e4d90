// dssync's all-reduce over TcpTransport and Gloo's over Gloo's TCP device in
// the same processes, their trials interleaved: the comparison of
// scripts/bench/tcp with the machine's drift taken out. A measuring tool,
// started as n processes by the launcher.
//
//   scripts/tools/dssync-run -n 8 bench_tcp_interleaved [--sizes B,B,...] [--trials T]
//       [--store DIR] [--hostname ADDR | --iface NAME]
//
// On a shared machine, separate runs of separate programs see different
// machines: minutes apart, the same program's time moves by 20 % and more. Here
// every rank holds a TcpTransport and a Gloo context (gloo_runner.hpp) side by
// side, and each trial runs every method once, in an order drawn afresh for
// the trial (the same on every rank), so that a slow phase falls on all
// methods alike. The methods: dssync_ring, dssync_halving_doubling, gloo_ring,
// gloo_halving_doubling, on one buffer. A method's trial is R calls after a
// barrier, timed as the slowest rank's; each method is checked first (rank r
// contributes r + 1; every element must be n(n+1)/2 exactly) and warmed up
// twice. Rank 0 prints one line per method and size in the format of the
// other programs, with the median over the trials:
//   <label> <bytes> <R> <median time per call, us> <algbw GB/s> <busbw GB/s>
// and two comments with the paired ratio: per trial, Gloo's better time over
// ours; the median, lowest and highest of it, then every trial's
// ("# paired <bytes> <ratio> <ratio> ...", which scripts/bench/tcp pools).

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "dssync/tcp.hpp"

#include "common/cli.hpp"
#include "common/report.hpp"
#include "tcp/beside_gloo.hpp"
#include "tcp/trials.hpp"

namespace {

struct Method {
  std::string label;
  std::function<void()> call;
  std::vector<double> seconds;  // per trial, per call
};

int measure(const bench::BesideGlooOptions& o, bench::BesideGloo& beside) {
  beside.print_header(", float sum", o.trials);
  dssync::TcpTransport& t = beside.t;
  const dssync::Group& world = beside.world;
  const int n = t.size(), me = t.rank(), trials = o.trials;

  for (const auto& s : o.sizes) {
    const std::size_t bytes = std::stoull(s);
    if (bytes == 0 || bytes % sizeof(float) != 0)
      throw dssync::configuration_error("size " + s + " is not a positive multiple of 4");
    std::vector<float> data(bytes / sizeof(float));
    const std::span<float> span(data);
    dssync::RingReduce ring;
    dssync::HalvingDoublingReduce hd;
    const auto gloo_ring = bench::make_runner("ring", beside.gloo.ctx, data);
    const auto gloo_hd = bench::make_runner("hd", beside.gloo.ctx, data);
    std::vector<Method> methods;
    methods.push_back({"dssync_ring", [&] { ring.all_reduce(t, world, span, dssync::Sum{}, 2); }, {}});
    methods.push_back({"dssync_halving_doubling", [&] { hd.all_reduce(t, world, span, dssync::Sum{}, 2); }, {}});
    methods.push_back({"gloo_ring", [&] { gloo_ring->call(); }, {}});
    methods.push_back({"gloo_halving_doubling", [&] { gloo_hd->call(); }, {}});

    const float want = static_cast<float>(n * (n + 1) / 2);
    for (auto& m : methods) {
      std::fill(data.begin(), data.end(), static_cast<float>(me + 1));
      m.call();
      const bool right = std::all_of(data.begin(), data.end(), [want](float x) { return x == want; });
      if (bench::slowest(t, world, right ? 0.0 : 1.0) != 0.0) {
        if (me == 0) std::fprintf(stderr, "%s gave a wrong sum at %zu bytes\n", m.label.c_str(), bytes);
        return 1;
      }
    }
    std::fill(data.begin(), data.end(), 0.0f);  // zeros: repeated sums stay finite
    for (auto& m : methods) {
      m.call();
      m.call();
    }

    const int reps = bench::reps_for(bytes, 50);
    bench::interleaved_trials(t, world, methods, trials, reps, static_cast<std::uint32_t>(bytes));

    if (me != 0) continue;
    for (const auto& m : methods)
      bench::Row{m.label, bytes, reps, bench::median(m.seconds)}.print(bench::Collective::all_reduce, n);
    const std::vector<double> ratio = bench::paired_ratios(
        methods, trials, [](const Method& m) { return m.label.starts_with("dssync_"); },
        [](const Method& m) { return m.label.starts_with("gloo_"); });
    std::printf("# %zu bytes, per trial Gloo's better time over ours: median %.3f, lowest %.3f, highest %.3f\n",
                bytes, bench::median(ratio), *std::min_element(ratio.begin(), ratio.end()),
                *std::max_element(ratio.begin(), ratio.end()));
    std::printf("# paired %zu", bytes);
    for (double r : ratio) std::printf(" %.4f", r);
    std::printf("\n");
    std::fflush(stdout);
  }
  bench::barrier(beside.gloo.ctx, bench::kBarrierTag);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  auto run = [](int c, char** v) { return bench::run_beside_gloo(c, v, measure); };
  return bench::run_main("bench_tcp_interleaved", run, argc, argv);
}
