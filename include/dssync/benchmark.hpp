#pragma once
// Google Benchmark for synchronizers: any synchronizer type and its options
// become a benchmark of its step, over n in-process ranks and S bytes of
// parameters. Link dssync::benchmark (find_package(dssync COMPONENTS
// benchmark): Google Benchmark's benchmark::benchmark and dssync). The same on
// the simulated network is dssync/benchmark/sim.hpp; docs/benchmarking.md
// says more.
//
//   template <class T> using Mine = dssync::DSSync<T, MyShuffle, dssync::RingReduce>;
//   dssync::bench::register_inproc<Mine<dssync::InProcTransport>>("mine", {.group_size = 2},
//                                                                 8, 1 << 20)
//       ->Repetitions(5);
//
// registers "mine/n:8/bytes:1048576/manual_time", in Google Benchmark's way:
// the function returns the benchmark::internal::Benchmark* that
// benchmark::RegisterBenchmark returns, for the usual chain (Repetitions,
// MinTime, Unit; the arguments are set). register_inproc(name, make, n, S)
// takes a maker instead, make(InProcTransport&) returning the synchronizer,
// for a constructor that wants more than options (a shuffle object with state).
//
// How a run measures. Every call of the benchmark function starts a fresh
// world (nothing is carried from one run, or one repetition, to the next, so
// --benchmark_enable_random_interleaving works as usual). Each rank makes its
// synchronizer and its n x S parameters, runs one warm-up step (the
// synchronizer sizes its scratch), meets the others at a barrier and runs
// state.max_iterations timed steps; rank 0 drives Google Benchmark's loop.
// Nothing is allocated in that loop beyond what the synchronizer itself does.
// The time is manual time (UseManualTime): the slowest rank's time from the
// barrier to the end of its last step, per step. Rank 0 reports its own time
// of each step but the last, and with the last the rest of the slowest rank's,
// which it learns at a second barrier after everyone's last step; so the
// iterations sum to the slowest rank's time, as Google Benchmark's "once per
// iteration" asks.
//
// Counters (bytes are S; on the simulator S x byte_scale, the model's bytes):
//   algbw_GBps          S / time per step, 10^9 bytes/s (nccl-tests' algbw)
//   busbw_GBps          algbw x 2(n-1)/n, nccl-tests' all-reduce factor
//                       whatever the synchronizer: the bus bandwidth a full
//                       all-reduce would need to take this long
//   sent_MB_per_rank    bytes sent per step by the rank that sent the most,
//                       counted by the transport under the synchronizer
//                       (its stats().bytes_sent: CountingTransport), 10^6 bytes
//   vs_allreduce_model  sent_MB_per_rank over a ring all-reduce's
//                       2(n-1)/n x S per rank (1 for AllReduceSync with
//                       RingReduce; 0 on one rank, where nothing is sent)
// A failure while running (a synchronizer's configuration_error, a
// peer_error) ends the benchmark with SkipWithError and its message; a bad
// argument to a register function throws configuration_error at once.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "dssync/benchmark/bandwidth.hpp"
#include "dssync/dssync.hpp"

namespace dssync::bench {

// What these benchmarks call on a synchronizer: step() on a buffer of T, and
// stats() for the bytes it sent.
template <class S, class T>
concept steps_buffer = element<T> && requires(S& s, std::span<T> params) {
  s.step(params);
  { s.stats() } -> std::convertible_to<SyncStats>;
};

// make(t) -> a synchronizer over Transport that steps buffers of T.
template <class Make, class Transport, class T>
concept synchronizer_maker =
    std::invocable<Make&, Transport&> &&
    steps_buffer<std::remove_cvref_t<std::invoke_result_t<Make&, Transport&>>, T>;

namespace detail {

// The argument names of every registered benchmark: state.range(0) is n,
// range(1) is S.
inline const std::vector<std::string>& arg_names() {
  static const std::vector<std::string> names{"n", "bytes"};
  return names;
}

// Throws configuration_error unless n >= 1 and bytes is a positive multiple
// of sizeof(T).
template <class T>
void check_shape(const std::string& name, long long n, long long bytes) {
  const std::string where = "benchmark \"" + name + "\": ";
  if (n < 1)
    throw configuration_error(where + "needs at least one rank, got n = " + std::to_string(n));
  if (bytes < 1 || bytes % static_cast<long long>(sizeof(T)) != 0)
    throw configuration_error(where + "bytes must be a positive multiple of the element size " +
                              std::to_string(sizeof(T)) + ", got " + std::to_string(bytes));
}

// What the ranks of one run write for rank 0 to read after the last barrier.
struct RunRecord {
  explicit RunRecord(int n)
      : seconds(static_cast<std::size_t>(n)), sent(static_cast<std::size_t>(n)) {}
  std::vector<double> seconds;  // each rank's time from the barrier to its last step's end
  std::vector<double> sent;     // each rank's bytes sent per timed step
};

// A tag no synchronizer uses: they name their collectives with channels
// 0..126 (make_tag(iteration, index % 127)), and checked mode uses max_tag.
inline constexpr tag_t barrier_tag = make_tag(0, 127);

// One rank's part of a run. now(t) is its clock in seconds (wall or virtual).
template <class T, class Transport, class Make, class Now>
void run_rank(benchmark::State& state, Transport& t, Make& make, std::size_t count,
              RunRecord& record, Now now) {
  auto sync = make(t);
  std::vector<T> params(count, static_cast<T>(t.rank()));
  sync.step(std::span<T>(params));  // warm-up: scratch, partitions and buffers sized
  const SyncStats warm = sync.stats();
  const Partition world = Partition::whole(t.size());
  const Group everyone = world.group(0);
  DisseminationBarrier barrier;
  barrier.barrier(t, everyone, barrier_tag);

  const benchmark::IterationCount steps = state.max_iterations;
  const auto r = static_cast<std::size_t>(t.rank());
  const double start = now(t);
  auto finish = [&] {  // after this rank's last step
    record.seconds[r] = now(t) - start;
    record.sent[r] = static_cast<double>(sync.stats().bytes_sent - warm.bytes_sent) /
                     static_cast<double>(steps);
    barrier.barrier(t, everyone, barrier_tag);  // everyone's record is written
  };
  if (t.rank() != 0) {
    for (benchmark::IterationCount i = 0; i < steps; ++i) sync.step(std::span<T>(params));
    finish();
    return;
  }
  double last = start;  // where rank 0's previous step ended
  benchmark::IterationCount i = 0;
  for (auto _ : state) {
    sync.step(std::span<T>(params));
    if (++i < steps) {
      const double here = now(t);
      state.SetIterationTime(here - last);
      last = here;
    } else {
      finish();
      const double slowest = *std::max_element(record.seconds.begin(), record.seconds.end());
      state.SetIterationTime(slowest - (last - start));
    }
  }
}

// The counters of a finished run (see the top of this file). `model_bytes`
// is S as the network sees it, `byte_scale` the network's bytes per real byte.
inline void set_counters(benchmark::State& state, int n, double model_bytes, double byte_scale,
                         const RunRecord& record) {
  if (state.iterations() == 0) return;
  const double slowest = *std::max_element(record.seconds.begin(), record.seconds.end());
  const double per_step = slowest / static_cast<double>(state.iterations());
  const double sent = *std::max_element(record.sent.begin(), record.sent.end()) * byte_scale;
  const double ring = ring_all_reduce_bytes(n, model_bytes);
  const double alg = algbw(model_bytes, per_step);
  state.counters["algbw_GBps"] = alg;
  state.counters["busbw_GBps"] = busbw(Collective::all_reduce, alg, n);
  state.counters["sent_MB_per_rank"] = sent / 1e6;
  state.counters["vs_allreduce_model"] = ring > 0 ? sent / ring : 0.0;
}

// What every registered benchmark shares: its arguments n and S (checked
// here, and again when it runs, since Args may have been added), manual time,
// milliseconds.
template <class T, class Body>
benchmark::internal::Benchmark* register_shape(const std::string& name, int n, std::size_t bytes,
                                               Body body) {
  check_shape<T>(name, n, static_cast<long long>(bytes));
  return benchmark::RegisterBenchmark(name.c_str(), std::move(body))
      ->ArgNames(arg_names())
      ->Args({n, static_cast<std::int64_t>(bytes)})
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
}

// The shape of the running benchmark, or SkipWithError and false.
template <class T>
bool shape_of(benchmark::State& state, const std::string& name, int& n, std::size_t& count) {
  try {
    check_shape<T>(name, state.range(0), state.range(1));
  } catch (const error& e) {
    state.SkipWithError(e.what());
    return false;
  }
  n = static_cast<int>(state.range(0));
  count = static_cast<std::size_t>(state.range(1)) / sizeof(T);
  return true;
}

// One call of a registered benchmark: its shape, a fresh world of n ranks
// (world(n), an InProcWorld or a SimWorld), every rank's run_rank on its clock
// now(t), then the counters, with bytes as the network sees them (x byte_scale).
template <class T, class Transport, class Make, class World, class Now>
void measure(benchmark::State& state, const std::string& name, Make& make, World world, Now now,
             double byte_scale) {
  int ranks = 0;
  std::size_t count = 0;
  if (!shape_of<T>(state, name, ranks, count)) return;
  RunRecord record(ranks);
  try {
    world(ranks).run(
        [&](Transport& t) { run_rank<T>(state, t, make, count, record, now); });
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  set_counters(state, ranks, static_cast<double>(count * sizeof(T)) * byte_scale, byte_scale,
               record);
}

// The wall clock of the in-process world, in seconds.
inline double wall_seconds(const InProcTransport&) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace detail

// The step of a synchronizer over n in-process ranks (threads, InProcWorld)
// and S bytes of T per rank: "<name>/n:<n>/bytes:<S>/manual_time", time per
// step of the slowest rank in wall time. make(t) is called once per rank, on
// the ranks' threads at once, and returns the synchronizer. Throws
// configuration_error unless n >= 1 and S is a positive multiple of sizeof(T).
template <element T = float, class Make>
  requires synchronizer_maker<Make, InProcTransport, T>
benchmark::internal::Benchmark* register_inproc(const std::string& name, Make make, int n,
                                                std::size_t bytes) {
  return detail::register_shape<T>(name, n, bytes, [name, make](benchmark::State& state) mutable {
    detail::measure<T, InProcTransport>(
        state, name, make, [](int ranks) { return InProcWorld(ranks); }, detail::wall_seconds, 1.0);
  });
}

// The same for a synchronizer type constructed as Sync(t, options), e.g.
// register_inproc<AllReduceSync<InProcTransport>>("ring", {}, 8, 1 << 20).
template <class Sync, element T = float>
  requires std::constructible_from<Sync, InProcTransport&, typename Sync::Options> &&
           steps_buffer<Sync, T>
benchmark::internal::Benchmark* register_inproc(const std::string& name,
                                                typename Sync::Options options, int n,
                                                std::size_t bytes) {
  return register_inproc<T>(
      name, [options](InProcTransport& t) { return Sync(t, options); }, n, bytes);
}

}  // namespace dssync::bench
