#pragma once
// dssync/benchmark.hpp on the simulated network: the step of a synchronizer
// over n ranks of a SimWorld with the given SimOptions, the virtual time per
// step of the slowest rank reported as manual time. Link dssync::benchmark and
// dssync::sim (Boost.Context).
//
//   dssync::bench::register_sim<Mine<dssync::SimTransport>>(
//       "mine", {.group_size = 2}, 64, 1 << 20, {.alpha = 5e-6, .bandwidth = 1.25e9});
//
// registers "mine/n:64/bytes:1048576/manual_time". The run is
// benchmark.hpp's (fresh world per call, warm-up step, barrier, rank 0 drives
// the loop), with the ranks as fibers of one thread and their clocks virtual:
// the times are the network model's, deterministic, and the wall time the
// simulation took is Google Benchmark's CPU column. The counters are
// benchmark.hpp's, in the model's bytes: S x byte_scale for algbw and the
// all-reduce's bytes, sent bytes x byte_scale for sent_MB_per_rank.

#include <cstddef>
#include <string>

#include "dssync/benchmark.hpp"
#include "dssync/sim.hpp"

namespace dssync::bench {

// The step of a synchronizer over n simulated ranks and S (real) bytes of T
// per rank on `network`. make(t) is called once per rank and returns the
// synchronizer. Throws configuration_error unless n >= 1, S is a positive
// multiple of sizeof(T) and `network` is valid (SimWorld's checks).
template <element T = float, class Make>
  requires synchronizer_maker<Make, SimTransport, T>
benchmark::internal::Benchmark* register_sim(const std::string& name, Make make, int n,
                                             std::size_t bytes, SimOptions network = {}) {
  SimWorld{n, network};  // throws configuration_error for a bad network
  return detail::register_shape<T>(
      name, n, bytes, [name, make, network](benchmark::State& state) mutable {
        detail::measure<T, SimTransport>(
            state, name, make, [&network](int ranks) { return SimWorld(ranks, network); },
            [](const SimTransport& rank) { return rank.now(); }, network.byte_scale);
      });
}

// The same for a synchronizer type constructed as Sync(t, options), e.g.
// register_sim<AllReduceSync<SimTransport>>("ring", {}, 64, 1 << 20, network).
template <class Sync, element T = float>
  requires std::constructible_from<Sync, SimTransport&, typename Sync::Options> &&
           steps_buffer<Sync, T>
benchmark::internal::Benchmark* register_sim(const std::string& name,
                                             typename Sync::Options options, int n,
                                             std::size_t bytes, SimOptions network = {}) {
  return register_sim<T>(
      name, [options](SimTransport& t) { return Sync(t, options); }, n, bytes, network);
}

}  // namespace dssync::bench
