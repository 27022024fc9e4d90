// Benchmarking a variant of your own: a user-written shuffle plugged into
// DSSync, measured beside DSSync's RandomShuffle and the ring all-reduce
// baseline with dssync::benchmark (dssync/benchmark.hpp; docs/benchmarking.md).
// Each variant runs on 8 in-process ranks (wall time) and, built with
// dssync::sim, on 16 simulated ranks of a 10 Gbit/s network (virtual time).
//
//   benchmark_variant --benchmark_enable_random_interleaving=true
//                     --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//
// The shuffle is custom_policy.cpp's "ring shift": at iteration t the groups
// are consecutive ranks starting at offset t mod n, no randomness.
#include <cstddef>
#include <cstdint>

#include <dssync/benchmark.hpp>
#ifdef DSSYNC_EXAMPLE_WITH_SIM
#include <dssync/benchmark/sim.hpp>
#endif

struct RingShiftShuffle {
  void shuffle(std::uint64_t /*seed*/, std::uint64_t iteration, dssync::Partition& p) const {
    auto members = p.members();  // ranks, group after group; sizes stay
    const auto n = static_cast<std::uint64_t>(members.size());
    for (std::uint64_t i = 0; i < n; ++i)
      members[static_cast<std::size_t>(i)] = static_cast<int>((i + iteration % n) % n);
    p.reindex();
  }
};
static_assert(dssync::shuffle_policy<RingShiftShuffle>);

// The three variants, over any transport.
template <class T>
using RingShift = dssync::DSSync<T, RingShiftShuffle, dssync::RingReduce>;
template <class T>
using Random = dssync::DSSync<T, dssync::RandomShuffle, dssync::RingReduce>;
template <class T>
using AllReduce = dssync::AllReduceSync<T, dssync::RingReduce>;

int main(int argc, char** argv) {
  namespace bench = dssync::bench;
  using dssync::InProcTransport;
  const dssync::DSSyncOptions pairs{.group_size = 2, .seed = 1};
  for (const std::size_t bytes : {std::size_t{1} << 20, std::size_t{4} << 20}) {
    bench::register_inproc<RingShift<InProcTransport>>("inproc/ring_shift_g2", pairs, 8, bytes);
    bench::register_inproc<Random<InProcTransport>>("inproc/random_g2", pairs, 8, bytes);
    bench::register_inproc<AllReduce<InProcTransport>>("inproc/allreduce_ring", {}, 8, bytes);
  }
#ifdef DSSYNC_EXAMPLE_WITH_SIM
  // 10 Gbit/s links, 5 us per message; 1 MiB of real floats stands for a
  // 100 MB model (byte_scale), so the run is cheap and the network's is not.
  using dssync::SimTransport;
  const std::size_t real = std::size_t{1} << 20;
  const dssync::SimOptions network{.alpha = 5e-6, .bandwidth = 1.25e9, .byte_scale = 1e8 / real};
  bench::register_sim<RingShift<SimTransport>>("sim/ring_shift_g2", pairs, 16, real, network);
  bench::register_sim<Random<SimTransport>>("sim/random_g2", pairs, 16, real, network);
  bench::register_sim<AllReduce<SimTransport>>("sim/allreduce_ring", {}, 16, real, network);
#endif
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
