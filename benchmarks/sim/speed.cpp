// The simulator's own speed: wall time to simulate a collective or a run of
// synchronizer steps at scale (SIMULATION.md compares it with SimGrid's SMPI).
// Each benchmark reports the virtual time it simulated as a counter. The
// ranks' buffers are allocated and touched before the timed runs, so the
// figures are the simulation's, not the page faults of a fresh gigabyte.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstddef>
#include <vector>

#include "dssync/dssync.hpp"
#include "dssync/transport/sim.hpp"
#include "sim/world.hpp"

namespace {

// A full ring all-reduce over n ranks: 2(n-1) n messages.
void BM_SimRingAllReduce(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const auto real = static_cast<std::size_t>(state.range(1));
  const auto virt = static_cast<double>(state.range(2));
  std::vector<std::vector<float>> data(static_cast<std::size_t>(n), std::vector<float>(real / sizeof(float), 1.0f));
  dssync::SimWorld world(n, bench::sim_network(static_cast<double>(real), virt));
  dssync::SimResult last;
  for (auto _ : state) {
    last = world.run([&](dssync::SimTransport& t) {
      dssync::RingReduce ring;
      ring.all_reduce(t, dssync::Partition::whole(n).group(0),
                      std::span<float>(data[static_cast<std::size_t>(t.rank())]), dssync::Max{}, 1);
    });
  }
  state.counters["virtual_s"] = last.makespan;
  state.counters["messages"] = static_cast<double>(last.messages);
}
BENCHMARK(BM_SimRingAllReduce)
    ->ArgNames({"ranks", "real_bytes", "virtual_bytes"})
    ->Args({1024, 1 << 20, 1 << 20})
    ->Args({256, 1 << 20, 1 << 20})
    ->Args({1024, 4 << 10, 1 << 20})  // the megabyte's timing, one real float a block
    ->Unit(benchmark::kMillisecond);

// The ring all-reduce's real work with no simulator: the same n buffers, the
// same blocks combined and copied in the same order (every rank's step s
// before any rank's step s + 1, as the virtual clock runs them), and nothing
// else. No simulator that moves the real bytes can be faster than this on
// the machine: it is the floor under BM_SimRingAllReduce.
void BM_RingDataFloor(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto real = static_cast<std::size_t>(state.range(1));
  const std::size_t len = real / sizeof(float);
  std::vector<std::vector<float>> data(n, std::vector<float>(len, 1.0f));
  auto block = [&](std::size_t c) { return dssync::detail::block(len, n, c % n); };
  for (auto _ : state) {
    for (std::size_t s = 0; s + 1 < n; ++s)  // reduce-scatter: combine block p-s-1 from the left
      for (std::size_t p = 0; p < n; ++p) {
        const auto b = block(p + 2 * n - s - 1);
        const float* in = data[(p + n - 1) % n].data() + b.offset;
        float* out = data[p].data() + b.offset;
        for (std::size_t i = 0; i < b.length; ++i) out[i] = dssync::Max{}(in[i], out[i]);
      }
    for (std::size_t s = 0; s + 1 < n; ++s)  // all-gather: copy block p-s from the left
      for (std::size_t p = 0; p < n; ++p) {
        const auto b = block(p + n - s);
        std::copy_n(data[(p + n - 1) % n].data() + b.offset, b.length, data[p].data() + b.offset);
      }
    benchmark::DoNotOptimize(data.front().data());
    benchmark::ClobberMemory();
  }
  state.counters["blocks"] = static_cast<double>(2 * (n - 1) * n);
}
BENCHMARK(BM_RingDataFloor)
    ->ArgNames({"ranks", "real_bytes"})
    ->Args({1024, 1 << 20})
    ->Args({256, 1 << 20})
    ->Unit(benchmark::kMillisecond);

// n ranks x 20 DSSync steps (random shuffle, groups of g).
void BM_SimDSSyncSteps(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const int g = static_cast<int>(state.range(1));
  const auto real = static_cast<std::size_t>(state.range(2));
  const auto virt = static_cast<double>(state.range(3));
  std::vector<std::vector<float>> x(static_cast<std::size_t>(n), std::vector<float>(real / sizeof(float), 1.0f));
  dssync::SimWorld world(n, bench::sim_network(static_cast<double>(real), virt));
  dssync::SimResult last;
  for (auto _ : state) last = bench::dssync_steps(world, x, g, 20);
  state.counters["virtual_s"] = last.makespan;
  state.counters["messages"] = static_cast<double>(last.messages);
}
BENCHMARK(BM_SimDSSyncSteps)
    ->ArgNames({"ranks", "g", "real_bytes", "virtual_bytes"})
    ->Args({1024, 2, 1 << 20, 1 << 20})
    ->Args({1024, 2, 1 << 16, 100'000'000})
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
