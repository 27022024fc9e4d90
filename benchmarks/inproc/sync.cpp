// Per-step cost of the synchronizers on 8 in-process ranks: DS-Sync with
// groups of 2 and 4 (and with checked mode on), the all-reduce baseline, ring
// gossip.
//
// Counters per row:
//   sent_MB_per_rank   bytes one rank sends per step (the synchronizer's own
//                      stats(), the most any rank sent), in 10^6 bytes
//   vs_allreduce_model sent bytes over a full ring all-reduce's 2(n-1)/n x
//                      bytes: the alpha-beta model gives (g-1)/g / ((n-1)/n)
//                      for DS-Sync, 0.571 for g = 2 at n = 8
//   ms_per_step        wall time per step on rank 0
//
// Timing as in collectives.cpp: the world starts once per benchmark call, a
// warm-up step sizes every buffer, a barrier, then rank 0 drives the timed loop
// and the others run the same number of steps.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include <dssync/dssync.hpp>

namespace {

constexpr int ranks = 8;

// A zero-length all-reduce over the world: no rank leaves before all entered.
void barrier(dssync::InProcTransport& t, const dssync::Partition& world) {
  dssync::RecursiveDoublingReduce{}.all_reduce(t, world.group(0), std::span<float>(), dssync::Sum{},
                                               dssync::max_tag - 1);
}

template <class Make>
void bm_step(benchmark::State& state, std::size_t bytes, Make make) {
  const std::size_t count = bytes / sizeof(float);
  const dssync::Partition world = dssync::Partition::whole(ranks);
  std::vector<double> sent(ranks);
  double seconds = 0;
  dssync::InProcWorld(ranks).run([&](dssync::InProcTransport& t) {
    auto sync = make(t);
    std::vector<float> params(count, static_cast<float>(t.rank()));
    sync.step(params);  // warm-up: scratch and partitions sized
    const auto warm = sync.stats();
    barrier(t, world);
    if (t.rank() == 0) {
      const auto t0 = std::chrono::steady_clock::now();
      for (auto _ : state) sync.step(params);
      seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    } else {
      for (benchmark::IterationCount i = 0; i < state.max_iterations; ++i) sync.step(params);
    }
    const auto steps = static_cast<double>(sync.stats().steps - warm.steps);
    sent[static_cast<std::size_t>(t.rank())] =
        static_cast<double>(sync.stats().bytes_sent - warm.bytes_sent) / steps;
  });
  const double per_rank = *std::max_element(sent.begin(), sent.end());
  const double ring_model = 2.0 * (ranks - 1) / ranks * static_cast<double>(bytes);
  state.counters["sent_MB_per_rank"] = per_rank / 1e6;
  state.counters["vs_allreduce_model"] = per_rank / ring_model;
  state.counters["ms_per_step"] = seconds * 1e3 / static_cast<double>(state.iterations());
}

template <class Make>
void add(const std::string& name, std::size_t bytes, Make make) {
  benchmark::RegisterBenchmark((name + "/n:8/bytes:" + std::to_string(bytes)).c_str(),
                               [bytes, make](benchmark::State& s) { bm_step(s, bytes, make); })
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
}

void register_all() {
  using namespace dssync;
  using T = InProcTransport;
  // What checked mode costs per step: one small all-reduce over the world,
  // whatever the buffer size, so it shows most on small models.
  for (const std::size_t bytes : {std::size_t{64} << 10, std::size_t{1} << 20, std::size_t{16} << 20}) {
    add("dssync_g2_checked", bytes, [](T& t) {
      return DSSync<T, RandomShuffle, RingReduce>(t, {.group_size = 2, .seed = 1, .checked = true});
    });
    if (bytes == std::size_t{64} << 10)
      add("dssync_g2", bytes, [](T& t) {
        return DSSync<T, RandomShuffle, RingReduce>(t, {.group_size = 2, .seed = 1});
      });
  }
  for (const std::size_t bytes : {std::size_t{1} << 20, std::size_t{16} << 20}) {
    add("dssync_g2", bytes, [](T& t) {
      return DSSync<T, RandomShuffle, RingReduce>(t, {.group_size = 2, .seed = 1});
    });
    add("dssync_g4", bytes, [](T& t) {
      return DSSync<T, RandomShuffle, RingReduce>(t, {.group_size = 4, .seed = 1});
    });
    add("dssync_g2_auto", bytes, [](T& t) {
      return DSSync<T, RandomShuffle, AutoReduce>(t, {.group_size = 2, .seed = 1});
    });
    add("allreduce_ring", bytes, [](T& t) { return AllReduceSync<T, RingReduce>(t); });
    add("allreduce_auto", bytes, [](T& t) { return AllReduceSync<T, AutoReduce>(t); });
    add("gossip_ring", bytes, [](T& t) { return GossipSync<T, RingTopology>(t); });
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
