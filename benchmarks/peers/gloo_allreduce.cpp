// A peer the TCP all-reduce is compared against: Gloo's own all-reduce over
// Gloo's TCP transport, timed the way bench_tcp_allreduce and
// bench_mpi_allreduce_peer are. A measuring tool, not a test; Gloo's C++ API
// only, no dssync.
//
//   scripts/tools/dssync-run -n 8 bench_gloo_allreduce_peer [--sizes B,B,...]
//       [--trials T] [--algo ring,hd] [--store DIR] [--hostname ADDR | --iface NAME]
//
// Every process reads DSSYNC_RANK and DSSYNC_WORLD_SIZE, as the launcher sets
// them. Algorithms (--algo, default ring,hd):
//   ring          gloo::allreduce with AllreduceOptions::RING: reduce-scatter
//                 then all-gather around the ring in segments of at most 1 MiB,
//                 the bandwidth-optimal ring (what PyTorch's ProcessGroupGloo
//                 runs for CPU tensors)                          -> gloo_ring
//   hd            gloo::AllreduceHalvingDoubling                 -> gloo_halving_doubling
//   ring_chunked  gloo::AllreduceRingChunked (older ring API)    -> gloo_ring_chunked
//   bcube         gloo::allreduce with AllreduceOptions::BCUBE   -> gloo_bcube
//
// Rendezvous in a FileStore directory (--store DIR, default $TMPDIR or /tmp,
// plus /dssync-gloo-store, created if missing), on the address towards
// DSSYNC_MASTER_ADDR unless --hostname ADDR or --iface NAME say otherwise: see
// gloo_runner.hpp.
//
// For each size and algorithm: one checked all-reduce (rank r contributes
// r + 1 everywhere; every element must be n(n+1)/2 exactly, else every rank
// exits with a message), two warm-ups, then T trials of R calls, each trial
// started after a Gloo barrier; a trial's time is the slowest rank's (a Gloo
// all-reduce of one double with max). Rank 0 prints one line per size and
// algorithm:
//   <label> <bytes> <R> <median time per call, us> <algbw GB/s> <busbw GB/s>
// with algbw = bytes / time and busbw = algbw * 2(n-1)/n in 10^9 bytes/s.
// Lines starting with '#' are comments.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "peers/gloo_runner.hpp"
#include "common/report.hpp"

namespace {

using namespace bench;

void measure(const std::string& algo, const Context& ctx, std::size_t bytes, int trials) {
  const int n = ctx->size;
  const std::string label = label_for(algo);
  std::vector<float> data(bytes / sizeof(float), static_cast<float>(ctx->rank + 1));
  const auto runner = make_runner(algo, ctx, data);

  runner->call();
  const float want = static_cast<float>(n * (n + 1) / 2);
  const auto bad = std::find_if(data.begin(), data.end(), [want](float x) { return x != want; });
  if (bad != data.end())
    std::fprintf(stderr, "rank %d: %s gave a wrong sum at %zu bytes: element %zu is %g, not %g\n",
                 ctx->rank, label.c_str(), bytes, static_cast<std::size_t>(bad - data.begin()),
                 static_cast<double>(*bad), static_cast<double>(want));
  const double all_ok = reduce_scalar(ctx, bad == data.end() ? 1.0 : 0.0,
                                      static_cast<ReduceFn>(&gloo::min<double>), kScalarTag);
  if (all_ok != 1.0) {
    if (ctx->rank == 0)
      std::fprintf(stderr, "%s gave a wrong sum at %zu bytes\n", label.c_str(), bytes);
    std::exit(1);
  }

  // Zeros: repeated sums stay finite.
  std::fill(data.begin(), data.end(), 0.0f);
  const int reps = bench::reps_for(bytes, 50);  // as bench_tcp_allreduce
  runner->call();
  runner->call();
  std::vector<double> times;
  for (int t = 0; t < trials; ++t) {
    barrier(ctx, kBarrierTag);
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) runner->call();
    const double local = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    times.push_back(reduce_scalar(ctx, local, static_cast<ReduceFn>(&gloo::max<double>), kScalarTag));
  }
  const double per_call = median(std::move(times)) / reps;
  if (ctx->rank == 0) Row{label, bytes, reps, per_call}.print(Collective::all_reduce, n);
}

int run(int argc, char** argv) {
  std::vector<std::string> sizes = {"1048576", "4194304", "16777216"};
  std::vector<std::string> algos = {"ring", "hd"};
  int trials = 5;
  bench::GlooPlace place;
  const bool ok = bench::options(argc, argv, 1, [&](const std::string& key, const std::string& value) {
    if (key == "--sizes") sizes = split(value);
    else if (key == "--algo") algos = split(value);
    else if (key == "--trials") trials = std::max(1, std::atoi(value.c_str()));
    else return place.take(key, value);
    return true;
  });
  if (!ok) return 2;
  for (const auto& a : algos)
    if (a != "ring" && a != "hd" && a != "ring_chunked" && a != "bcube") {
      std::fprintf(stderr, "unknown algorithm %s (ring, hd, ring_chunked, bcube)\n", a.c_str());
      return 2;
    }

  const int rank = env_int("DSSYNC_RANK");
  const int n = env_int("DSSYNC_WORLD_SIZE");
  if (n < 1 || rank < 0 || rank >= n)
    throw std::runtime_error("DSSYNC_RANK / DSSYNC_WORLD_SIZE out of range");

  const GlooWorld gloo = connect_gloo(rank, n, place);
  const Context& ctx = gloo.ctx;

  if (rank == 0) {
    std::printf("# Gloo %d.%d.%d (Debian libgloo-dev), tcp device %s, FileStore %s\n",
                GLOO_VERSION_MAJOR, GLOO_VERSION_MINOR, GLOO_VERSION_PATCH,
                gloo.device.c_str(), place.store_dir.c_str());
    std::printf("# Gloo all-reduce, float sum, in place, %d ranks; median of %d trials, each the "
                "slowest rank's time for R calls\n",
                n, trials);
    std::printf("# label bytes R time_us algbw_GB/s busbw_GB/s (GB/s = 10^9 bytes/s; busbw = "
                "algbw * 2(n-1)/n)\n");
    std::fflush(stdout);
  }
  for (const auto& s : sizes) {
    const std::size_t bytes = std::stoull(s);
    if (bytes == 0 || bytes % sizeof(float) != 0)
      throw std::runtime_error("size " + s + " is not a positive multiple of 4");
    for (const auto& a : algos) measure(a, ctx, bytes, trials);
  }
  barrier(ctx, kBarrierTag);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return bench::run_main("bench_gloo_allreduce_peer", run, argc, argv); }
