// The collectives and synchronizers over MPITransport, as real processes under
// mpirun, beside the MPI library's own MPI_Allreduce measured in the same run.
//
//   mpirun -np N bench_mpi [--benchmark_* flags]      (scripts/bench/mpi)
//
// Rows, grouped by buffer size (N is the world size, every group is the whole
// world in rank order unless stated; floats, Sum):
//   memcpy/n:N/bytes:B            every rank std::memcpy's B bytes at once (the
//                                 physical limit on one machine)
//   mpi_allreduce/n:N/bytes:B     MPI_Allreduce(MPI_IN_PLACE, ..., MPI_FLOAT,
//                                 MPI_SUM, MPI_COMM_WORLD): the peer
//   ring, halving_doubling, auto  dssync::RingReduce, HalvingDoublingReduce,
//                                 AutoReduce over MPITransport
//   mpi_native                    dssync::MPINativeReduce over MPITransport
//   mpi_bcast                     MPI_Bcast from rank 0 on MPI_COMM_WORLD: the peer of
//   broadcast_tree, _scatter_allgather, _auto, _mpi_native (MPI_Bcast after the
//                                 length check), _mpi_native_nb (MPI_Ibcast waited
//                                 through the transport): one broadcast from rank 0
//   broadcast_pipeline            PipelineBroadcast as it runs by default over MPI
//                                 (256 KiB segments, 8 in flight each way); _4, _2:
//                                 4 and 2 in flight; _128k, _1m: other segments;
//                                 _blocking (_2m): one sendrecv a step, 1 (2) MiB
//   mpi_allgather                 MPI_Allgather on MPI_COMM_WORLD: the peer of
//   all_gather_ring, _bruck, _auto, _mpi_native, _mpi_native_nb: one all-gather
//                                 (_ring_4: 4 segments in flight instead of 8;
//                                 _ring_blocking: one sendrecv a step)
//                                 whose output is B bytes (B / N from each rank)
// and at 1 MiB and 16 MiB, one step() of a synchronizer (Average):
//   dssync_g2, dssync_g4          DSSync<MPITransport, RandomShuffle, RingReduce>
//                                 with groups of 2 and 4
//   dssync_g2_auto                the same with AutoReduce, groups of 2
//   allreduce_native              AllReduceSync<MPITransport, MPINativeReduce>
//   allreduce_native_whole        the same, one MPI_Allreduce and then one division pass
//   allreduce_ring                AllReduceSync<MPITransport, RingReduce>
//
// Counters, as nccl-tests reports them, in 10^9 bytes/s, all computed from the
// slowest rank's time (a collective is done when its last rank is):
//   max_rank_ms       per op (or step): the maximum over the ranks of each
//                     rank's own timed loop, divided by the iterations
//   algbw_GBps        bytes / max_rank time
//   busbw_GBps        algbw * 2(n-1)/n for an all-reduce, (n-1)/n for an
//                     all-gather, 1 for a broadcast (collectives only)
//   (no ratio to MPI's rows: with --benchmark_enable_random_interleaving a
//   row's repetition runs beside whichever of MPI's ran last; the tables
//   divide the medians of max_rank_ms instead)
//   mem_GBps          memcpy: 2 x bytes / time, per rank (read and write)
//   sent_MB_per_rank  synchronizers: bytes one rank sends per step, from the
//                     synchronizer's stats(), the most any rank sent, 10^6 bytes
//   vs_allreduce_model  sent bytes over a ring all-reduce's 2(n-1)/n x bytes
// The Time column is rank 0's own loop (real time); the counters are the ones
// to compare.
//
// The transport's polling can be set from the environment, to measure other
// choices than MPIOptions' defaults: DSSYNC_MPI_SPIN_US, DSSYNC_MPI_MAX_SLEEP_US
// (microseconds), DSSYNC_MPI_TIMEOUT_MS (0: no deadline, and MPINativeReduce
// calls the blocking MPI_Allreduce).
//
// How the ranks stay together. Google Benchmark picks iteration counts from
// the times it sees, which would differ between processes, so only rank 0 runs
// it. Each benchmark function on rank 0 first broadcasts a command (case id,
// state.max_iterations) over MPI_COMM_WORLD; the other ranks sit in a loop that
// receives a command and runs the same case body for exactly that many
// iterations, until the stop command that rank 0 sends when the benchmarks are
// done. In a case body every rank builds its policy object and buffer, makes
// one warm-up call that sizes all scratch (the steady state allocates nothing)
// and is checked against the closed form, agrees with the others on the
// verdict, meets them at MPI_Barrier, and runs its timed loop (rank 0 inside
// Google Benchmark's `for (auto _ : state)`); the ranks' loop times then go to
// rank 0 by MPI_Reduce(MAX). A wrong result skips the row with an error on
// rank 0, keeps every rank in step, and makes rank 0 exit with 1. An exception
// (an MPI failure inside a collective) aborts the job: the other ranks may be
// blocked in the collective it left.

#include "dssync/mpi.hpp"  // first: it sets up <mpi.h>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <boost/mpi/environment.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <numeric>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "common/report.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using dssync::MPITransport;

constexpr dssync::tag_t op_tag = 1;

constexpr std::size_t sizes[] = {4u << 10, 64u << 10, 1u << 20, 16u << 20, 64u << 20};
constexpr std::size_t sync_sizes[] = {1u << 20, 16u << 20};

int world_rank = 0;
int world_size = 1;

// The transport every case runs over: one per process, made once (making one
// is collective over the world).
MPITransport* transport = nullptr;

// Rank 0: set when a warm-up result was wrong; main returns 1.
bool failed = false;

// What a case body returns; on rank 0 the maxima over all ranks, elsewhere
// nothing of use.
struct Outcome {
  int bad_rank = -1;         // the lowest rank whose warm-up result was wrong, or -1
  double seconds = 0;        // the slowest rank's timed loop
  double sent_per_step = 0;  // synchronizers: the most bytes a rank sent per step
  bool ok() const noexcept { return bad_rank < 0; }
};

using Body = std::function<Outcome(benchmark::State* state, std::int64_t iterations)>;

enum class Kind { memcpy, collective, sync };

struct Case {
  std::string name;
  std::size_t bytes;
  Kind kind;
  bool counts_traffic;  // sync rows whose stats() see the bytes (not MPINativeReduce)
  Body body;
  bench::Collective collective = bench::Collective::all_reduce;  // collective rows
};

std::vector<Case> cases;  // the same list, in the same order, on every rank

// The part every case shares, on every rank: agree on the warm-up verdict,
// meet at a barrier, run the timed loop (rank 0 under Google Benchmark, the
// others exactly `iterations` times), and bring the slowest rank's time to
// rank 0.
template <class Op>
Outcome timed_loop(benchmark::State* state, std::int64_t iterations, bool warm_ok, Op&& op) {
  int bad_rank = warm_ok ? world_size : world_rank;
  MPI_Allreduce(MPI_IN_PLACE, &bad_rank, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (bad_rank < world_size) return {bad_rank};
  MPI_Barrier(MPI_COMM_WORLD);
  const auto t0 = clock_type::now();
  if (state != nullptr) {
    for (auto _ : *state) op();
  } else {
    for (std::int64_t i = 0; i < iterations; ++i) op();
  }
  const double mine = std::chrono::duration<double>(clock_type::now() - t0).count();
  double slowest = 0;
  MPI_Reduce(&mine, &slowest, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  return {-1, slowest, 0};
}

const dssync::Partition& world_partition() {
  static const dssync::Partition world = dssync::Partition::whole(world_size);
  return world;
}

// One all-reduce of `bytes` per iteration; all_reduce(span) is the op under
// test, Sum over the whole world.
template <class AllReduce>
Outcome bm_all_reduce(benchmark::State* state, std::int64_t iterations, std::size_t bytes,
                      AllReduce all_reduce) {
  std::vector<float> data(bytes / sizeof(float),
                          static_cast<float>(world_rank + 1));  // pre-faulted
  all_reduce(std::span<float>(data));
  const auto want = static_cast<float>(world_size * (world_size + 1) / 2);
  const bool ok = std::all_of(data.begin(), data.end(), [want](float x) { return x == want; });
  // Sum in place would grow the values every iteration; zeros keep them finite.
  std::fill(data.begin(), data.end(), 0.0f);
  return timed_loop(state, iterations, ok, [&] { all_reduce(std::span<float>(data)); });
}

template <class Reduce>
Outcome bm_policy(benchmark::State* state, std::int64_t iterations, std::size_t bytes) {
  Reduce reduce;  // one per rank per call, reused by every iteration
  const dssync::Group group = world_partition().group(0);
  return bm_all_reduce(state, iterations, bytes, [&](std::span<float> data) {
    reduce.all_reduce(*transport, group, data, dssync::Sum{}, op_tag);
  });
}

Outcome bm_mpi_allreduce(benchmark::State* state, std::int64_t iterations, std::size_t bytes) {
  return bm_all_reduce(state, iterations, bytes, [](std::span<float> data) {
    MPI_Allreduce(MPI_IN_PLACE, data.data(), static_cast<int>(data.size()), MPI_FLOAT, MPI_SUM,
                  MPI_COMM_WORLD);
  });
}

// One broadcast of `bytes` from rank 0 per iteration; broadcast(span) is the
// op under test. Every rank ends with rank 0's ones.
template <class Broadcast>
Outcome bm_broadcast(benchmark::State* state, std::int64_t iterations, std::size_t bytes,
                     Broadcast broadcast) {
  std::vector<float> data(bytes / sizeof(float), world_rank == 0 ? 1.0f : 0.0f);  // pre-faulted
  broadcast(std::span<float>(data));
  const bool ok = std::all_of(data.begin(), data.end(), [](float x) { return x == 1.0f; });
  return timed_loop(state, iterations, ok, [&] { broadcast(std::span<float>(data)); });
}

template <class Policy>
Outcome bm_broadcast_policy(benchmark::State* state, std::int64_t iterations, std::size_t bytes,
                            Policy policy = {}) {
  const dssync::Group group = world_partition().group(0);
  return bm_broadcast(state, iterations, bytes, [&](std::span<float> data) {
    policy.broadcast(*transport, group, data, 0, op_tag);
  });
}

Outcome bm_mpi_bcast(benchmark::State* state, std::int64_t iterations, std::size_t bytes) {
  return bm_broadcast(state, iterations, bytes, [](std::span<float> data) {
    MPI_Bcast(data.data(), static_cast<int>(data.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
  });
}

// One all-gather per iteration whose output is `bytes` (bytes / n from each
// rank); all_gather(mine, out) is the op under test.
template <class AllGather>
Outcome bm_all_gather(benchmark::State* state, std::int64_t iterations, std::size_t bytes,
                      AllGather all_gather) {
  const std::size_t len = bytes / sizeof(float) / static_cast<std::size_t>(world_size);
  const std::vector<float> mine(len, static_cast<float>(world_rank + 1));
  std::vector<float> out(len * static_cast<std::size_t>(world_size), 0.0f);  // pre-faulted
  all_gather(std::span<const float>(mine), std::span<float>(out));
  bool ok = true;
  for (std::size_t i = 0; i < out.size(); ++i) ok = ok && out[i] == static_cast<float>(i / len + 1);
  return timed_loop(state, iterations, ok,
                    [&] { all_gather(std::span<const float>(mine), std::span<float>(out)); });
}

template <class Policy>
Outcome bm_all_gather_policy(benchmark::State* state, std::int64_t iterations, std::size_t bytes,
                             Policy policy = {}) {
  const dssync::Group group = world_partition().group(0);
  return bm_all_gather(state, iterations, bytes,
                       [&](std::span<const float> mine, std::span<float> out) {
                         policy.all_gather(*transport, group, mine, out, op_tag);
                       });
}

Outcome bm_mpi_allgather(benchmark::State* state, std::int64_t iterations, std::size_t bytes) {
  return bm_all_gather(
      state, iterations, bytes, [](std::span<const float> mine, std::span<float> out) {
        MPI_Allgather(mine.data(), static_cast<int>(mine.size()), MPI_FLOAT, out.data(),
                      static_cast<int>(mine.size()), MPI_FLOAT, MPI_COMM_WORLD);
      });
}

Outcome bm_memcpy(benchmark::State* state, std::int64_t iterations, std::size_t bytes) {
  std::vector<std::byte> src(bytes, std::byte{1});  // both written once: pre-faulted
  std::vector<std::byte> dst(bytes, std::byte{0});
  return timed_loop(state, iterations, true, [&] {
    std::memcpy(dst.data(), src.data(), bytes);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  });
}

// One step() per iteration. The warm-up step is checked against its closed
// form: every element becomes the mean of (member + 1) over this rank's group
// of iteration 0 (a sum of small integers is exact in any order, and both sides
// divide it once by the group size: bitwise equal).
template <class Make>
Outcome bm_sync(benchmark::State* state, std::int64_t iterations, std::size_t bytes, Make make) {
  auto sync = make(*transport);
  std::vector<float> params(bytes / sizeof(float), static_cast<float>(world_rank + 1));
  const dssync::Partition first = sync.partition(0);
  const dssync::Group mine = first.group_of(world_rank);
  float sum = 0;
  for (const int r : mine) sum += static_cast<float>(r + 1);
  const float want = sum / static_cast<float>(mine.size());
  sync.step(params);  // Average: the values stay bounded, no reset needed
  const bool ok = std::all_of(params.begin(), params.end(), [want](float x) { return x == want; });
  const auto warm = sync.stats();
  Outcome out = timed_loop(state, iterations, ok, [&] { sync.step(params); });
  if (!out.ok()) return out;  // every rank knows: the verdict was agreed on
  // MPINativeReduce's traffic goes through MPI_Allreduce, past the counting
  // transport: its stats() show 0 bytes, and its row shows no sent_MB_per_rank.
  const double sent = static_cast<double>(sync.stats().bytes_sent - warm.bytes_sent) /
                      static_cast<double>(std::max<std::int64_t>(1, iterations));
  MPI_Reduce(&sent, &out.sent_per_step, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  return out;
}

std::string row_name(const std::string& name, std::size_t bytes) {
  return name + "/n:" + std::to_string(world_size) + "/bytes:" + std::to_string(bytes);
}

void add(const std::string& name, std::size_t bytes, Kind kind, Body body,
         bool counts_traffic = true, bench::Collective collective = bench::Collective::all_reduce) {
  cases.push_back(
      {row_name(name, bytes), bytes, kind, counts_traffic, std::move(body), collective});
}

// Broadcast rows at `bytes`, MPI_Bcast's first (the others divide by it).
void add_broadcasts(std::size_t bytes) {
  using namespace dssync;
  const auto b = ::bench::Collective::broadcast;  // not dssync::bench
  auto add_b = [&](const std::string& name, Body body) {
    add(name, bytes, Kind::collective, std::move(body), true, b);
  };
  add_b("mpi_bcast",
        [bytes](benchmark::State* s, std::int64_t i) { return bm_mpi_bcast(s, i, bytes); });
  add_b("broadcast_tree", [bytes](benchmark::State* s, std::int64_t i) {
    return bm_broadcast_policy<TreeBroadcast>(s, i, bytes);
  });
  add_b("broadcast_scatter_allgather", [bytes](benchmark::State* s, std::int64_t i) {
    return bm_broadcast_policy<ScatterAllgatherBroadcast>(s, i, bytes);
  });
  // The chain as it runs by default (256 KiB segments, 8 in flight), with
  // other depths and segment sizes, and with blocking exchanges (1 MiB).
  struct Variant {
    const char* name;
    PipelineBroadcast::Options options;
  };
  for (const Variant& v : {Variant{"broadcast_pipeline", {}},
                           Variant{"broadcast_pipeline_4", {.in_flight = 4}},
                           Variant{"broadcast_pipeline_2", {.in_flight = 2}},
                           Variant{"broadcast_pipeline_128k", {.segment_bytes = 128 << 10}},
                           Variant{"broadcast_pipeline_1m", {.segment_bytes = 1 << 20}},
                           Variant{"broadcast_pipeline_blocking", {.in_flight = 0}},
                           Variant{"broadcast_pipeline_blocking_2m",
                                   {.segment_bytes = 2 << 20, .in_flight = 0}}}) {
    const PipelineBroadcast::Options options = v.options;
    add_b(v.name, [bytes, options](benchmark::State* s, std::int64_t i) {
      return bm_broadcast_policy(s, i, bytes, PipelineBroadcast(options));
    });
  }
  add_b("broadcast_auto", [bytes](benchmark::State* s, std::int64_t i) {
    return bm_broadcast_policy<AutoBroadcast>(s, i, bytes);
  });
  add_b("broadcast_mpi_native", [bytes](benchmark::State* s, std::int64_t i) {
    return bm_broadcast_policy<MPINativeBroadcast>(s, i, bytes);
  });
  add_b("broadcast_mpi_native_nb", [bytes](benchmark::State* s, std::int64_t i) {
    struct Nonblocking : MPINativeBroadcast {
      Nonblocking() : MPINativeBroadcast({.nonblocking = true}) {}
    };
    return bm_broadcast_policy<Nonblocking>(s, i, bytes);
  });
}

// All-gather rows whose output is about `bytes` (a multiple of the world
// size's floats), MPI_Allgather's first.
void add_all_gathers(std::size_t bytes) {
  using namespace dssync;
  const std::size_t n = static_cast<std::size_t>(world_size);
  const std::size_t out = bytes / sizeof(float) / n * n * sizeof(float);
  const auto g = ::bench::Collective::all_gather;  // not dssync::bench
  auto add_g = [&](const std::string& name, Body body) {
    add(name, out, Kind::collective, std::move(body), true, g);
  };
  add_g("mpi_allgather",
        [out](benchmark::State* s, std::int64_t i) { return bm_mpi_allgather(s, i, out); });
  add_g("all_gather_ring", [out](benchmark::State* s, std::int64_t i) {
    return bm_all_gather_policy<RingAllGather>(s, i, out);
  });
  for (const int in_flight : {0, 4}) {
    add_g(in_flight ? "all_gather_ring_4" : "all_gather_ring_blocking",
          [out, in_flight](benchmark::State* s, std::int64_t i) {
            return bm_all_gather_policy(s, i, out, RingAllGather({.in_flight = in_flight}));
          });
  }
  add_g("all_gather_bruck", [out](benchmark::State* s, std::int64_t i) {
    return bm_all_gather_policy<BruckAllGather>(s, i, out);
  });
  add_g("all_gather_auto", [out](benchmark::State* s, std::int64_t i) {
    return bm_all_gather_policy<AutoAllGather>(s, i, out);
  });
  add_g("all_gather_mpi_native", [out](benchmark::State* s, std::int64_t i) {
    return bm_all_gather_policy<MPINativeAllGather>(s, i, out);
  });
  add_g("all_gather_mpi_native_nb", [out](benchmark::State* s, std::int64_t i) {
    struct Nonblocking : MPINativeAllGather {
      Nonblocking() : MPINativeAllGather({.nonblocking = true}) {}
    };
    return bm_all_gather_policy<Nonblocking>(s, i, out);
  });
}

template <class Reduce>
void add_policy(const std::string& name, std::size_t bytes) {
  add(name, bytes, Kind::collective,
      [bytes](benchmark::State* s, std::int64_t i) { return bm_policy<Reduce>(s, i, bytes); });
}

template <class Make>
void add_sync(const std::string& name, std::size_t bytes, Make make, bool counts_traffic = true) {
  add(
      name, bytes, Kind::sync,
      [bytes, make](benchmark::State* s, std::int64_t i) { return bm_sync(s, i, bytes, make); },
      counts_traffic);
}

void make_cases() {
  using namespace dssync;
  using T = MPITransport;
  for (const std::size_t bytes : sizes) {
    add("memcpy", bytes, Kind::memcpy,
        [bytes](benchmark::State* s, std::int64_t i) { return bm_memcpy(s, i, bytes); });
    // First at its size: the other rows divide by its time.
    add("mpi_allreduce", bytes, Kind::collective,
        [bytes](benchmark::State* s, std::int64_t i) { return bm_mpi_allreduce(s, i, bytes); });
    add_policy<RingReduce>("ring", bytes);
    add_policy<HalvingDoublingReduce>("halving_doubling", bytes);
    add_policy<AutoReduce>("auto", bytes);
    add_policy<MPINativeReduce>("mpi_native", bytes);
    add_broadcasts(bytes);
    add_all_gathers(bytes);
    if (std::find(std::begin(sync_sizes), std::end(sync_sizes), bytes) == std::end(sync_sizes))
      continue;
    add_sync("dssync_g2", bytes, [](T& t) {
      return DSSync<T, RandomShuffle, RingReduce>(t, {.group_size = 2, .seed = 1});
    });
    add_sync("dssync_g4", bytes, [](T& t) {
      return DSSync<T, RandomShuffle, RingReduce>(t, {.group_size = 4, .seed = 1});
    });
    add_sync("dssync_g2_auto", bytes, [](T& t) {
      return DSSync<T, RandomShuffle, AutoReduce>(t, {.group_size = 2, .seed = 1});
    });
    add_sync(
        "allreduce_native", bytes, [](T& t) { return AllReduceSync<T, MPINativeReduce>(t); },
        /*counts_traffic=*/false);
    add_sync("allreduce_ring", bytes, [](T& t) { return AllReduceSync<T, RingReduce>(t); });
    // The default finishes the Average piece by piece; this row makes one
    // MPI_Allreduce of the whole buffer and one finishing pass after it.
    add_sync(
        "allreduce_native_whole", bytes,
        [](T& t) {
          return AllReduceSync<T, MPINativeReduce>(t, {},
                                                   MPINativeReduce({.finish_piece_bytes = 0}));
        },
        /*counts_traffic=*/false);
  }
}

// Runs case `id` on this rank; any exception ends the whole job (see above).
Outcome run_case(int id, benchmark::State* state, std::int64_t iterations) {
  const Case& c = cases[static_cast<std::size_t>(id)];
  try {
    return c.body(state, iterations);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_mpi: rank %d, %s: %s\n", world_rank, c.name.c_str(), e.what());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  return {world_rank};  // not reached: MPI_Abort does not return
}

// The command rank 0 broadcasts: {case id, iterations}; id -1 stops.
void broadcast_command(long long (&command)[2]) {
  MPI_Bcast(command, 2, MPI_LONG_LONG, 0, MPI_COMM_WORLD);
}

void follow() {
  for (;;) {
    long long command[2] = {-1, 0};
    broadcast_command(command);
    if (command[0] < 0) return;
    run_case(static_cast<int>(command[0]), nullptr, command[1]);
  }
}

void stop_followers() {
  long long command[2] = {-1, 0};
  broadcast_command(command);
}

void lead(benchmark::State& state, int id) {
  const Case& c = cases[static_cast<std::size_t>(id)];
  long long command[2] = {id, static_cast<long long>(state.max_iterations)};
  broadcast_command(command);
  const Outcome out = run_case(id, &state, state.max_iterations);
  if (!out.ok()) {
    const std::string what = "wrong result in the warm-up on rank " + std::to_string(out.bad_rank) +
                             " (checked against the closed form)";
    state.SkipWithError(what.c_str());
    failed = true;
    return;
  }
  if (state.iterations() == 0) return;
  const double per_op = out.seconds / static_cast<double>(state.iterations());
  const double bytes = static_cast<double>(c.bytes);
  const double n = world_size;
  auto& counters = state.counters;
  counters["max_rank_ms"] = per_op * 1e3;
  if (c.kind != Kind::sync) {
    counters["bytes"] = bytes;
    counters["algbw_GBps"] = bench::algbw(bytes, per_op);
  }
  if (c.kind == Kind::memcpy) {
    counters["mem_GBps"] = 2.0 * bytes / per_op / 1e9;
    return;
  }
  if (c.kind == Kind::collective && c.collective != bench::Collective::all_reduce) {
    counters["busbw_GBps"] = bench::busbw(c.collective, bench::algbw(bytes, per_op), world_size);
    return;
  }
  if (c.kind == Kind::collective) {
    counters["busbw_GBps"] =
        bench::busbw(bench::Collective::all_reduce, bench::algbw(bytes, per_op), world_size);
  } else if (c.counts_traffic) {
    counters["sent_MB_per_rank"] = out.sent_per_step / 1e6;
    counters["vs_allreduce_model"] = out.sent_per_step / (2.0 * (n - 1) / n * bytes);
  }
}

void register_cases() {
  for (std::size_t id = 0; id < cases.size(); ++id) {
    const Case& c = cases[id];
    benchmark::RegisterBenchmark(c.name.c_str(),
                                 [id](benchmark::State& s) { lead(s, static_cast<int>(id)); })
        ->UseRealTime()
        ->Unit(c.kind == Kind::sync ? benchmark::kMillisecond : benchmark::kMicrosecond);
  }
}

std::string mpi_library() {
  char version[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  MPI_Get_library_version(version, &length);
  const std::string all(version, static_cast<std::size_t>(length));
  return all.substr(0, all.find('\n'));
}

dssync::MPIOptions transport_options() {
  dssync::MPIOptions o;
  if (const char* v = std::getenv("DSSYNC_MPI_SPIN_US"))
    o.spin = std::chrono::microseconds(std::atol(v));
  if (const char* v = std::getenv("DSSYNC_MPI_MAX_SLEEP_US"))
    o.max_sleep = std::chrono::microseconds(std::atol(v));
  if (const char* v = std::getenv("DSSYNC_MPI_TIMEOUT_MS"))
    o.timeout = std::chrono::milliseconds(std::atol(v));
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  boost::mpi::environment env(argc, argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  MPITransport world(transport_options());
  transport = &world;
  make_cases();

  if (world_rank != 0) {
    follow();
    return 0;
  }
  register_cases();
  benchmark::AddCustomContext("mpi_library", mpi_library());
  benchmark::AddCustomContext("mpi_world_size", std::to_string(world_size));
  benchmark::AddCustomContext(
      "dssync_timing",
      "only rank 0 runs Google Benchmark; per call it broadcasts (case, max_iterations) and every "
      "rank runs one checked warm-up, MPI_Barrier, then exactly that many ops; counters use the "
      "slowest rank's loop time (MPI_Reduce MAX)");
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
    stop_followers();
    return 1;
  }
  const std::size_t ran = benchmark::RunSpecifiedBenchmarks();
  stop_followers();
  benchmark::Shutdown();
  // A filter that matches nothing is a mistake, not a pass.
  return failed || ran == 0 ? 1 : 0;
}
