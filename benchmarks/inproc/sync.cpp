// Per-step cost of the synchronizers on 8 in-process ranks: DS-Sync with
// groups of 2 and 4 (and with checked mode on), the all-reduce baseline, ring
// gossip. Registered through dssync/benchmark.hpp, as a user registers a
// variant of their own (examples/benchmark_variant.cpp); the timing and the
// counters are that header's:
//
//   Time                slowest rank's wall time per step (manual time)
//   algbw_GBps          bytes / time per step; busbw_GBps x 2(n-1)/n
//   sent_MB_per_rank    bytes one rank sends per step (the synchronizer's own
//                       stats(), the most any rank sent), in 10^6 bytes
//   vs_allreduce_model  sent bytes over a full ring all-reduce's 2(n-1)/n x
//                       bytes: the alpha-beta model gives (g-1)/g / ((n-1)/n)
//                       for DS-Sync, 0.571 for g = 2 at n = 8
//
// Rows are "<name>/n:8/bytes:<S>/manual_time".

#include <cstddef>

#include <dssync/benchmark.hpp>

namespace {

constexpr int ranks = 8;

void register_all() {
  using namespace dssync;
  using bench::register_inproc;
  using T = InProcTransport;
  // What checked mode costs per step: one small all-reduce over the world,
  // whatever the buffer size, so it shows most on small models.
  for (const std::size_t bytes : {std::size_t{64} << 10, std::size_t{1} << 20, std::size_t{16} << 20}) {
    register_inproc<DSSync<T, RandomShuffle, RingReduce>>(
        "dssync_g2_checked", {.group_size = 2, .seed = 1, .checked = true}, ranks, bytes);
    if (bytes == std::size_t{64} << 10)
      register_inproc<DSSync<T, RandomShuffle, RingReduce>>("dssync_g2", {.group_size = 2, .seed = 1},
                                                            ranks, bytes);
  }
  for (const std::size_t bytes : {std::size_t{1} << 20, std::size_t{16} << 20}) {
    register_inproc<DSSync<T, RandomShuffle, RingReduce>>("dssync_g2", {.group_size = 2, .seed = 1},
                                                          ranks, bytes);
    register_inproc<DSSync<T, RandomShuffle, RingReduce>>("dssync_g4", {.group_size = 4, .seed = 1},
                                                          ranks, bytes);
    register_inproc<DSSync<T, RandomShuffle, AutoReduce>>(
        "dssync_g2_auto", {.group_size = 2, .seed = 1}, ranks, bytes);
    register_inproc<AllReduceSync<T, RingReduce>>("allreduce_ring", {}, ranks, bytes);
    register_inproc<AllReduceSync<T, AutoReduce>>("allreduce_auto", {}, ranks, bytes);
    register_inproc<GossipSync<T, RingTopology>>("gossip_ring", {}, ranks, bytes);
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
