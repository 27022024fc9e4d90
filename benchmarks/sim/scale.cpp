// The simulator's cost per message as the world grows (SIMULATION.md,
// study 9, "Beside the floor"), beside the floor under it: 20 DSSync g=2 steps of a
// 100 MB model carried in 4 KiB of real floats per rank, simulated, and the
// same steps' real bytes moved by plain loops with no simulator. The
// difference is what the engine itself costs a message; the floor's own
// growth is what the machine's caches charge any program that moves these
// bytes between random pairs. At 1,024 ranks both also run 1,280 steps, as
// many messages as 20 steps at 65,536 ranks: in 20 steps a rank's set-up is
// spread over its 40 messages only. Every benchmark reports the messages it
// stands for, so the table divides one by the other.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "dssync/dssync.hpp"
#include "sim/world.hpp"

namespace {

constexpr std::size_t kRealBytes = 4096;
constexpr double kModelBytes = 100e6;

// n ranks x `steps` DSSync g=2 steps, as `dssync_simulate --sync dssync` runs
// them (bench::sim_network: 10 Gbit/s, 5 us), without the tool's consensus bookkeeping. The
// ranks' parameters are allocated and touched before the timed runs; each
// run spawns the ranks' fibers, as a user's run does.
void BM_SimDSSyncScale(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const int steps = static_cast<int>(state.range(1));
  std::vector<std::vector<float>> x(static_cast<std::size_t>(n), std::vector<float>(kRealBytes / sizeof(float), 1.0f));
  dssync::SimWorld world(n, bench::sim_network(kRealBytes, kModelBytes));
  dssync::SimResult last;
  for (auto _ : state) last = bench::dssync_steps(world, x, 2, steps);
  state.counters["messages"] = static_cast<double>(last.messages);
}

// The same steps' real work with no simulator. Pairs drawn as RandomShuffle
// draws them (a permutation from (seed, step), consecutive members paired).
// A step of a pair (a, b), as RingReduce runs it over two ranks: a sends
// the half b keeps and b the half a keeps, each into the other's scratch
// (the reduce-scatter); each averages its kept half with what came; each
// sends its averaged half into the other's parameters (the all-gather).
// order 0 moves them as the virtual clock does: every pair's first copies,
// then every rank's averages, then every pair's second copies, each pass
// over the whole world. order 1 does a pair's whole step before the next
// pair's, while its bytes are in the caches: the least any order can cost.
void BM_DSSyncDataFloor(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const bool pairwise = state.range(1) == 1;
  const int steps = static_cast<int>(state.range(2));
  constexpr std::size_t len = kRealBytes / sizeof(float), half = len / 2;
  std::vector<std::vector<float>> x(n, std::vector<float>(len, 1.0f));
  std::vector<std::vector<float>> scratch(n, std::vector<float>(half, 0.0f));
  std::vector<int> members(n);
  // a keeps the low half, b the high one
  auto send_halves = [&](std::size_t a, std::size_t b) {
    std::copy_n(x[a].data() + half, half, scratch[b].data());
    std::copy_n(x[b].data(), half, scratch[a].data());
  };
  auto average = [&](std::size_t r, std::size_t offset) {
    float* v = x[r].data() + offset;
    const float* in = scratch[r].data();
    for (std::size_t i = 0; i < half; ++i) v[i] = (v[i] + in[i]) * 0.5f;
  };
  auto gather = [&](std::size_t a, std::size_t b) {
    std::copy_n(x[a].data(), half, x[b].data());
    std::copy_n(x[b].data() + half, half, x[a].data() + half);
  };
  for (auto _ : state) {
    for (int s = 0; s < steps; ++s) {
      std::iota(members.begin(), members.end(), 0);
      dssync::CounterRng rng(1, static_cast<std::uint64_t>(s));
      dssync::random_permute(std::span<int>(members), rng);
      auto pair = [&](std::size_t p) {
        return std::pair{static_cast<std::size_t>(members[2 * p]), static_cast<std::size_t>(members[2 * p + 1])};
      };
      if (pairwise) {
        for (std::size_t p = 0; p < n / 2; ++p) {
          const auto [a, b] = pair(p);
          send_halves(a, b);
          average(a, 0);
          average(b, half);
          gather(a, b);
        }
      } else {
        for (std::size_t p = 0; p < n / 2; ++p) send_halves(pair(p).first, pair(p).second);
        for (std::size_t p = 0; p < n / 2; ++p) {
          average(pair(p).first, 0);
          average(pair(p).second, half);
        }
        for (std::size_t p = 0; p < n / 2; ++p) gather(pair(p).first, pair(p).second);
      }
    }
    benchmark::DoNotOptimize(x.front().data());
    benchmark::ClobberMemory();
  }
  state.counters["messages"] = static_cast<double>(2 * n * static_cast<std::size_t>(steps));
}

// 20 steps at every size; at 1,024 ranks also 64 times as many, as many
// messages as 20 steps at 65,536.
constexpr int kSteps = 20, kSameMessages = kSteps * 65536 / 1024;
void sizes(benchmark::internal::Benchmark* b) {
  for (int n : {1024, 4096, 16384, 65536}) b->Args({n, kSteps});
  b->Args({1024, kSameMessages});
}
void floor_sizes(benchmark::internal::Benchmark* b) {
  for (int order : {0, 1}) {
    for (int n : {1024, 4096, 16384, 65536}) b->Args({n, order, kSteps});
    b->Args({1024, order, kSameMessages});
  }
}
BENCHMARK(BM_SimDSSyncScale)
    ->ArgNames({"ranks", "steps"})
    ->Apply(sizes)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DSSyncDataFloor)
    ->ArgNames({"ranks", "pairwise", "steps"})
    ->Apply(floor_sizes)
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
