// All-reduce algorithms on the in-process world, beside the memory-bandwidth
// rows that bound them on one machine; and the broadcasts and all-gathers.
//
// Rows, grouped by buffer size:
//   memcpy/bytes:B            one std::memcpy of B bytes on one thread
//   memcpy_all_cores/bytes:B  every core std::memcpy's its own B bytes at once:
//                             the aggregate memory bandwidth, the physical
//                             limit of an all-reduce whose ranks share a machine
//   combine_sum/bytes:B       dssync::detail::combine_right(Sum) over B bytes
//   <algorithm>/n:N/bytes:B   one all_reduce of B bytes over the group of all N ranks
//   broadcast_<algorithm>/n:N/bytes:B   one broadcast of B bytes from rank 0
//   all_gather_<algorithm>/n:N/bytes:B  one all_gather whose output is B bytes
//                                       (B / N from each rank)
//
// Counters, as nccl-tests reports them, in 10^9 bytes/s:
//   algbw_GBps = bytes / time per op
//   busbw_GBps = algbw * 2(n-1)/n for an all-reduce, (n-1)/n for an
//                all-gather, 1 for a broadcast (collectives only)
//   mem_GBps   = bytes touched / time per op: 2 x bytes for memcpy (read, write),
//                3 x bytes for combine (read two, write one)
//
// How a collective row is timed. InProcWorld::run starts one thread per rank,
// so run() is called once per call of the benchmark function, outside the timed
// loop, never once per iteration. Inside it every rank builds its policy
// object, runs one checked warm-up all_reduce (which also sizes the policy's
// scratch: the steady state allocates nothing), meets the others at a barrier,
// and then runs exactly state.max_iterations all_reduces. Rank 0 drives the
// `for (auto _ : state)` loop, so Google Benchmark's own timer (real time)
// brackets rank 0's iterations and picks the iteration count as usual; the
// other ranks run the same count, which the framework fixes before the loop
// starts. The counters are computed from rank 0's own steady_clock reading of
// the same loop.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <exception>
#include <iterator>
#include <numeric>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <dssync/dssync.hpp>

#include "common/report.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

constexpr dssync::tag_t op_tag = 1;
constexpr dssync::tag_t barrier_tag = 2;

constexpr std::size_t sizes[] = {4 * 1024, 256 * 1024, 16 * 1024 * 1024};
constexpr int world_sizes[] = {2, 4, 8};

// Dissemination barrier: ceil(log2 n) rounds of empty messages. No rank leaves
// before every rank has entered.
template <dssync::transport Transport>
void barrier(Transport& t) {
  const int n = t.size();
  const int r = t.rank();
  const std::span<const std::byte> out;
  const std::span<std::byte> in;
  for (int d = 1; d < n; d *= 2) t.sendrecv((r + d) % n, out, (r - d + n) % n, in, barrier_tag);
}

void set_bandwidth(benchmark::State& state, std::size_t bytes, double seconds) {
  const double per_op = seconds / static_cast<double>(state.iterations());
  state.counters["bytes"] = static_cast<double>(bytes);
  state.counters["algbw_GBps"] = bench::algbw(static_cast<double>(bytes), per_op);
}

// What an all_reduce of (rank + 1) over n ranks leaves in every element.
template <class Op>
float expected(int n) {
  const float sum = static_cast<float>(n * (n + 1) / 2);
  if constexpr (std::is_same_v<Op, dssync::Average>) return sum / static_cast<float>(n);
  return sum;
}

template <class Reduce, class Op>
void bm_all_reduce(benchmark::State& state, int n, std::size_t bytes) {
  const std::size_t count = bytes / sizeof(float);
  std::vector<int> ranks(static_cast<std::size_t>(n));
  std::iota(ranks.begin(), ranks.end(), 0);
  const dssync::Group group(ranks);
  std::atomic<bool> correct{true};
  double seconds = 0;

  dssync::InProcWorld world(n);
  try {
    world.run([&](dssync::InProcTransport& t) {
      Reduce reduce;  // one per rank per run, reused by every iteration
      std::vector<float> data(count, static_cast<float>(t.rank() + 1));  // written: pre-faulted
      reduce.all_reduce(t, group, std::span<float>(data), Op{}, op_tag);
      const float want = expected<Op>(n);
      if (!std::all_of(data.begin(), data.end(), [want](float x) { return x == want; }))
        correct = false;
      // Sum in place would grow the values every iteration; zeros keep them
      // finite. Average keeps its values bounded as they are.
      if constexpr (!std::is_same_v<Op, dssync::Average>) std::fill(data.begin(), data.end(), 0.0f);
      barrier(t);  // every rank has written `correct`, and all start together
      if (!correct) {
        if (t.rank() == 0) state.SkipWithError("all_reduce gave a wrong result in the warm-up");
        return;
      }
      if (t.rank() == 0) {
        const auto t0 = clock_type::now();
        for (auto _ : state) reduce.all_reduce(t, group, std::span<float>(data), Op{}, op_tag);
        seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
      } else {
        for (benchmark::IterationCount i = 0; i < state.max_iterations; ++i)
          reduce.all_reduce(t, group, std::span<float>(data), Op{}, op_tag);
      }
    });
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  if (!correct || state.iterations() == 0) return;
  set_bandwidth(state, bytes, seconds);
  state.counters["busbw_GBps"] =
      bench::busbw(bench::Collective::all_reduce, state.counters["algbw_GBps"].value, n);
}

// Times any collective as bm_all_reduce times its all_reduce: every rank
// builds its Rank (make(t): buffers and policy object), runs one checked
// warm-up (rank.run(), then rank.check()), meets the others at a barrier and
// runs state.max_iterations more, rank 0 driving the timer. Returns rank 0's
// seconds, or a negative number after SkipWithError.
template <class Make>
double time_collective(benchmark::State& state, int n, Make&& make) {
  std::atomic<bool> correct{true};
  double seconds = -1;
  dssync::InProcWorld world(n);
  try {
    world.run([&](dssync::InProcTransport& t) {
      auto rank = make(t);
      rank.run();
      if (!rank.check()) correct = false;
      barrier(t);
      if (!correct) {
        if (t.rank() == 0) state.SkipWithError("the collective gave a wrong result in the warm-up");
        return;
      }
      if (t.rank() == 0) {
        const auto t0 = clock_type::now();
        for (auto _ : state) rank.run();
        seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
      } else {
        for (benchmark::IterationCount i = 0; i < state.max_iterations; ++i) rank.run();
      }
    });
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return -1;
  }
  return correct ? seconds : -1;
}

std::vector<int> whole_world(int n) {
  std::vector<int> ranks(static_cast<std::size_t>(n));
  std::iota(ranks.begin(), ranks.end(), 0);
  return ranks;
}

// A broadcast of `bytes` from rank 0 (busbw = algbw, as nccl-tests).
template <class Broadcast>
void bm_broadcast(benchmark::State& state, int n, std::size_t bytes) {
  const std::vector<int> ranks = whole_world(n);
  const dssync::Group group(ranks);
  struct Rank {
    dssync::InProcTransport* t;
    const dssync::Group* g;
    Broadcast algo;
    std::vector<float> data;
    void run() { algo.broadcast(*t, *g, std::span<float>(data), 0, op_tag); }
    bool check() const {
      return std::all_of(data.begin(), data.end(), [](float x) { return x == 1.0f; });
    }
  };
  const double seconds = time_collective(state, n, [&](dssync::InProcTransport& t) {
    return Rank{&t, &group, Broadcast{},
                std::vector<float>(bytes / sizeof(float), t.rank() == 0 ? 1.0f : 0.0f)};
  });
  if (seconds < 0 || state.iterations() == 0) return;
  set_bandwidth(state, bytes, seconds);
  state.counters["busbw_GBps"] =
      bench::busbw(bench::Collective::broadcast, state.counters["algbw_GBps"].value, n);
}

// An all-gather whose output is `bytes` (each rank gives bytes / n), as
// nccl-tests counts it (busbw = algbw (n-1)/n).
template <class AllGather>
void bm_all_gather(benchmark::State& state, int n, std::size_t bytes) {
  const std::vector<int> ranks = whole_world(n);
  const dssync::Group group(ranks);
  const std::size_t len = bytes / sizeof(float) / static_cast<std::size_t>(n);
  struct Rank {
    dssync::InProcTransport* t;
    const dssync::Group* g;
    AllGather algo;
    std::vector<float> mine, out;
    void run() {
      algo.all_gather(*t, *g, std::span<const float>(mine), std::span<float>(out), op_tag);
    }
    bool check() const {
      const std::size_t len = mine.size();
      for (std::size_t i = 0; i < out.size(); ++i)
        if (out[i] != static_cast<float>(i / len + 1)) return false;
      return true;
    }
  };
  const double seconds = time_collective(state, n, [&](dssync::InProcTransport& t) {
    return Rank{&t, &group, AllGather{}, std::vector<float>(len, static_cast<float>(t.rank() + 1)),
                std::vector<float>(len * static_cast<std::size_t>(n), 0.0f)};
  });
  if (seconds < 0 || state.iterations() == 0) return;
  const std::size_t gathered = len * static_cast<std::size_t>(n) * sizeof(float);
  set_bandwidth(state, gathered, seconds);
  state.counters["busbw_GBps"] =
      bench::busbw(bench::Collective::all_gather, state.counters["algbw_GBps"].value, n);
}

void bm_memcpy(benchmark::State& state, std::size_t bytes) {
  std::vector<std::byte> src(bytes, std::byte{1});  // both written once: pre-faulted
  std::vector<std::byte> dst(bytes, std::byte{0});
  const auto t0 = clock_type::now();
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), bytes);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  const double seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
  set_bandwidth(state, bytes, seconds);
  state.counters["mem_GBps"] = 2.0 * state.counters["algbw_GBps"].value;
}

// One memcpy of `bytes` on every core at once, in lock step: mem_GBps is the
// aggregate bandwidth (2 x bytes x cores per op). An all-reduce of n buffers of
// S bytes must read every input once and write every result once, 2 n S bytes
// of traffic, so 2 n S / mem_GBps is the least time it can take here.
void bm_memcpy_all_cores(benchmark::State& state, std::size_t bytes) {
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::vector<std::byte>> src(cores, std::vector<std::byte>(bytes, std::byte{1}));
  std::vector<std::vector<std::byte>> dst(cores, std::vector<std::byte>(bytes, std::byte{0}));
  std::barrier sync(static_cast<std::ptrdiff_t>(cores));
  std::atomic<bool> stop{false};
  auto copy = [&](unsigned c) {
    std::memcpy(dst[c].data(), src[c].data(), bytes);
    benchmark::DoNotOptimize(dst[c].data());
  };
  std::vector<std::thread> helpers;
  for (unsigned c = 1; c < cores; ++c)
    helpers.emplace_back([&, c] {
      for (;;) {
        sync.arrive_and_wait();  // start of an iteration (or the stop signal)
        if (stop.load()) return;
        copy(c);
        sync.arrive_and_wait();  // end of it
      }
    });
  const auto t0 = clock_type::now();
  for (auto _ : state) {
    sync.arrive_and_wait();
    copy(0);
    sync.arrive_and_wait();
  }
  const double seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
  stop = true;
  sync.arrive_and_wait();
  for (auto& h : helpers) h.join();
  set_bandwidth(state, bytes, seconds);
  state.counters["cores"] = cores;
  state.counters["mem_GBps"] = 2.0 * cores * state.counters["algbw_GBps"].value;
  // The bound of an all-reduce of n = 8 ranks at this size, in ms.
  state.counters["bound_ms_n8"] = 2.0 * 8 * static_cast<double>(bytes) /
                                  (state.counters["mem_GBps"].value * 1e9) * 1e3;
}

// Out of line so that its code is easy to find in `objdump -d`: the loop
// should be packed adds (addps, or vaddps when built for AVX).
[[gnu::noinline]] void combine_kernel(std::span<float> acc, std::span<const float> in) {
  dssync::detail::combine_right(dssync::Sum{}, acc, in);
}

void bm_combine(benchmark::State& state, std::size_t bytes) {
  const std::size_t count = bytes / sizeof(float);
  std::vector<float> acc(count, 0.0f);
  const std::vector<float> in(count, 1.0f);  // acc grows by 1 per iteration: never inf
  const auto t0 = clock_type::now();
  for (auto _ : state) {
    combine_kernel(acc, in);
    benchmark::DoNotOptimize(acc.data());
    benchmark::ClobberMemory();
  }
  const double seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
  set_bandwidth(state, bytes, seconds);
  state.counters["mem_GBps"] = 3.0 * state.counters["algbw_GBps"].value;
}

std::string size_suffix(std::size_t bytes) {
  return "/bytes:" + std::to_string(bytes);
}

template <class Reduce, class Op = dssync::Sum>
void register_all_reduce(const std::string& name, int n, std::size_t bytes) {
  benchmark::RegisterBenchmark(
      (name + "/n:" + std::to_string(n) + size_suffix(bytes)).c_str(),
      [n, bytes](benchmark::State& s) { bm_all_reduce<Reduce, Op>(s, n, bytes); })
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
}

template <class Broadcast>
void register_broadcast(const std::string& name, int n, std::size_t bytes) {
  benchmark::RegisterBenchmark(
      ("broadcast_" + name + "/n:" + std::to_string(n) + size_suffix(bytes)).c_str(),
      [n, bytes](benchmark::State& s) { bm_broadcast<Broadcast>(s, n, bytes); })
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
}

template <class AllGather>
void register_all_gather(const std::string& name, int n, std::size_t bytes) {
  benchmark::RegisterBenchmark(
      ("all_gather_" + name + "/n:" + std::to_string(n) + size_suffix(bytes)).c_str(),
      [n, bytes](benchmark::State& s) { bm_all_gather<AllGather>(s, n, bytes); })
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
}

// Broadcasts and all-gathers at more sizes and an odd world too: the sweep
// behind AutoBroadcast's and AutoAllGather's thresholds.
constexpr std::size_t gather_sizes[] = {4 * 1024,    64 * 1024,       256 * 1024,
                                        1024 * 1024, 4 * 1024 * 1024, 16 * 1024 * 1024};
constexpr int gather_world_sizes[] = {2, 5, 8};

void register_all() {
  for (const std::size_t bytes : sizes) {
    benchmark::RegisterBenchmark(("memcpy" + size_suffix(bytes)).c_str(),
                                 [bytes](benchmark::State& s) { bm_memcpy(s, bytes); })
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("memcpy_all_cores" + size_suffix(bytes)).c_str(),
                                 [bytes](benchmark::State& s) { bm_memcpy_all_cores(s, bytes); })
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("combine_sum" + size_suffix(bytes)).c_str(),
                                 [bytes](benchmark::State& s) { bm_combine(s, bytes); })
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
    for (const int n : world_sizes) {
      register_all_reduce<dssync::RingReduce>("ring", n, bytes);
      register_all_reduce<dssync::HalvingDoublingReduce>("halving_doubling", n, bytes);
      register_all_reduce<dssync::RecursiveDoublingReduce>("recursive_doubling", n, bytes);
      register_all_reduce<dssync::TreeReduce>("tree", n, bytes);
      register_all_reduce<dssync::AutoReduce>("auto", n, bytes);
      if (bytes == sizes[std::size(sizes) - 1])
        register_all_reduce<dssync::RingReduce, dssync::Average>("ring_average", n, bytes);
    }
  }
  for (const std::size_t bytes : gather_sizes) {
    for (const int n : gather_world_sizes) {
      register_broadcast<dssync::TreeBroadcast>("tree", n, bytes);
      register_broadcast<dssync::ScatterAllgatherBroadcast>("scatter_allgather", n, bytes);
      register_broadcast<dssync::PipelineBroadcast>("pipeline", n, bytes);
      register_broadcast<dssync::AutoBroadcast>("auto", n, bytes);
      register_all_gather<dssync::RingAllGather>("ring", n, bytes);
      register_all_gather<dssync::BruckAllGather>("bruck", n, bytes);
      register_all_gather<dssync::AutoAllGather>("auto", n, bytes);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::AddCustomContext(
      "dssync_timing",
      "InProcWorld::run once per benchmark call (thread start untimed); one checked warm-up, a "
      "barrier, then rank 0 drives the timed loop and every rank runs state.max_iterations ops");
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
