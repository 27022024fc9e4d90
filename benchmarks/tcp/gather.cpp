// dssync's broadcasts and all-gathers over TcpTransport beside Gloo's
// (gloo::broadcast, gloo::allgather over Gloo's TCP device) in the same
// processes, their trials interleaved as bench_tcp_interleaved does for the
// all-reduce. A measuring tool, started as n processes by the launcher.
//
//   scripts/tools/dssync-run -n 8 bench_tcp_gather [--sizes B,B,...] [--trials T]
//       [--store DIR] [--hostname ADDR | --iface NAME]
//
// Each size is a broadcast's buffer (from rank 0) and an all-gather's whole
// output (size / n from each rank). Every trial runs every method once, in an
// order drawn afresh for the trial (the same on every rank); a method's trial
// is R calls after a barrier, timed as the slowest rank's. Each method is
// checked first (a broadcast leaves rank 0's ones everywhere; an all-gather
// leaves p + 1 in block p) and warmed up twice. Rank 0 prints per method and
// size, with the median over the trials:
//   <label> <bytes> <R> <median time per call, us> <algbw GB/s> <busbw GB/s>
// and per size and collective the paired ratio: per trial, Gloo's time over
// our best.

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <gloo/allgather.h>
#include <gloo/broadcast.h>

#include "dssync/tcp.hpp"

#include "common/cli.hpp"
#include "common/report.hpp"
#include "tcp/beside_gloo.hpp"
#include "tcp/trials.hpp"

namespace {

struct Method {
  std::string label;
  bench::Collective collective;
  std::function<void()> call;
  std::function<bool()> check;
  std::vector<double> seconds;  // per trial, per call
};

int measure(const bench::BesideGlooOptions& o, bench::BesideGloo& beside) {
  beside.print_header(": broadcast from rank 0 and all-gather (bytes: the whole output)", o.trials);
  dssync::TcpTransport& t = beside.t;
  const dssync::Group& world = beside.world;
  const int n = t.size(), me = t.rank(), trials = o.trials;

  for (const auto& s : o.sizes) {
    const std::size_t bytes = std::stoull(s);
    const std::size_t count = bytes / sizeof(float);
    const std::size_t len = count / static_cast<std::size_t>(n);
    if (len == 0) throw dssync::configuration_error("size " + s + " is too small to gather");
    std::vector<float> data(count), mine(len, static_cast<float>(me + 1)), out(len * static_cast<std::size_t>(n));
    const std::span<float> span(data);
    dssync::TreeBroadcast tree;
    dssync::ScatterAllgatherBroadcast scatter;
    dssync::PipelineBroadcast pipeline;
    dssync::RingAllGather ring;
    dssync::BruckAllGather bruck;
    auto broadcast_ok = [&] {
      const bool right = std::all_of(data.begin(), data.end(), [](float x) { return x == 1.0f; });
      std::fill(data.begin(), data.end(), me == 0 ? 1.0f : 0.0f);
      return right;
    };
    auto gather_ok = [&] {
      bool right = true;
      for (std::size_t i = 0; i < out.size(); ++i) right = right && out[i] == static_cast<float>(i / len + 1);
      std::fill(out.begin(), out.end(), 0.0f);
      return right;
    };
    const std::span<const float> in(mine);
    const std::span<float> all(out);
    std::vector<Method> methods;
    const auto b = bench::Collective::broadcast;
    const auto g = bench::Collective::all_gather;
    methods.push_back({"dssync_broadcast_tree", b, [&] { tree.broadcast(t, world, span, 0, 2); }, broadcast_ok, {}});
    methods.push_back({"dssync_broadcast_scatter_allgather", b, [&] { scatter.broadcast(t, world, span, 0, 2); },
                       broadcast_ok, {}});
    methods.push_back({"dssync_broadcast_pipeline", b, [&] { pipeline.broadcast(t, world, span, 0, 2); },
                       broadcast_ok, {}});
    methods.push_back({"gloo_broadcast", b,
                       [&] {
                         gloo::BroadcastOptions o(beside.gloo.ctx);
                         o.setOutput(data.data(), data.size());
                         o.setRoot(0);
                         o.setTag(bench::kDataTag);
                         gloo::broadcast(o);
                       },
                       broadcast_ok, {}});
    methods.push_back({"dssync_all_gather_ring", g, [&] { ring.all_gather(t, world, in, all, 2); }, gather_ok, {}});
    methods.push_back({"dssync_all_gather_bruck", g, [&] { bruck.all_gather(t, world, in, all, 2); }, gather_ok, {}});
    methods.push_back({"gloo_all_gather", g,
                       [&] {
                         gloo::AllgatherOptions o(beside.gloo.ctx);
                         o.setInput(mine.data(), mine.size());
                         o.setOutput(out.data(), out.size());
                         o.setTag(bench::kDataTag);
                         gloo::allgather(o);
                       },
                       gather_ok, {}});

    // Every method checked from fresh inputs (a check resets them for the
    // next), before any warm-up leaves a right answer in the buffers.
    std::fill(data.begin(), data.end(), me == 0 ? 1.0f : 0.0f);
    std::fill(out.begin(), out.end(), 0.0f);
    for (auto& m : methods) {
      m.call();
      if (bench::slowest(t, world, m.check() ? 0.0 : 1.0) != 0.0) {
        if (me == 0) std::fprintf(stderr, "%s gave a wrong result at %zu bytes\n", m.label.c_str(), bytes);
        return 1;
      }
    }
    for (auto& m : methods) {
      m.call();
      m.call();
    }

    const int reps = bench::reps_for(bytes, 50);
    bench::interleaved_trials(t, world, methods, trials, reps, static_cast<std::uint32_t>(bytes));

    if (me != 0) continue;
    for (const auto& m : methods) {
      const std::size_t moved = m.collective == g ? len * static_cast<std::size_t>(n) * sizeof(float) : bytes;
      bench::Row{m.label, moved, reps, bench::median(m.seconds)}.print(m.collective, n);
    }
    for (const auto collective : {b, g}) {
      const std::vector<double> ratio = bench::paired_ratios(
          methods, trials,
          [&](const Method& m) { return m.collective == collective && !m.label.starts_with("gloo_"); },
          [&](const Method& m) { return m.collective == collective && m.label.starts_with("gloo_"); });
      std::printf("# %zu bytes, %s: per trial Gloo's time over our best: median %.3f, lowest %.3f, "
                  "highest %.3f\n",
                  bytes, collective == b ? "broadcast" : "all-gather", bench::median(ratio),
                  *std::min_element(ratio.begin(), ratio.end()), *std::max_element(ratio.begin(), ratio.end()));
    }
    std::fflush(stdout);
  }
  bench::barrier(beside.gloo.ctx, bench::kBarrierTag);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  auto run = [](int c, char** v) { return bench::run_beside_gloo(c, v, measure); };
  return bench::run_main("bench_tcp_gather", run, argc, argv);
}
