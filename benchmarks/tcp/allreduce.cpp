// dssync's full all-reduce over TcpTransport, timed the way the Gloo and MPI
// peers are (benchmarks/peers/gloo_allreduce.cpp, peers/mpi_allreduce.cpp): a
// measuring tool, started as n processes by the launcher.
//
//   scripts/tools/dssync-run -n 8 bench_tcp_allreduce [--sizes B,B,...] [--trials T]
//                                               [--algo ring,hd]
//
// For each size and algorithm: one checked all-reduce (rank r contributes
// r + 1 everywhere; the sum must be n(n+1)/2 exactly), two warm-ups, then T
// trials of R calls, each trial started after a barrier; a trial's time is the
// slowest rank's. Rank 0 prints one line per size and algorithm:
//   <label> <bytes> <R> <median time per call, us> <algbw GB/s> <busbw GB/s>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "dssync/tcp.hpp"

#include "common/cli.hpp"
#include "common/report.hpp"
#include "tcp/trials.hpp"

namespace {

using bench::split;

template <class Reduce>
void measure(const char* label, dssync::TcpTransport& t, const dssync::Group& world, std::size_t bytes,
             int trials) {
  Reduce reduce;
  const int n = t.size();
  std::vector<float> data(bytes / sizeof(float), static_cast<float>(t.rank() + 1));
  reduce.all_reduce(t, world, std::span<float>(data), dssync::Sum{}, 2);
  const float want = static_cast<float>(n * (n + 1) / 2);
  if (!std::all_of(data.begin(), data.end(), [want](float x) { return x == want; })) {
    std::fprintf(stderr, "rank %d: %s gave a wrong sum at %zu bytes\n", t.rank(), label, bytes);
    std::exit(1);
  }
  // Zeros: repeated sums stay finite.
  std::fill(data.begin(), data.end(), 0.0f);
  const int reps = bench::reps_for(bytes, 50);
  for (int w = 0; w < 2; ++w) reduce.all_reduce(t, world, std::span<float>(data), dssync::Sum{}, 2);
  const double per_call = bench::median_trial_seconds(t, world, trials, [&] {
                             for (int i = 0; i < reps; ++i)
                               reduce.all_reduce(t, world, std::span<float>(data), dssync::Sum{}, 2);
                           }) / reps;
  if (t.rank() == 0) bench::Row{label, bytes, reps, per_call}.print(bench::Collective::all_reduce, n);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> sizes = {"1048576", "4194304", "16777216"};
  std::vector<std::string> algos = {"ring", "hd"};
  int trials = 5;
  const bool ok = bench::options(argc, argv, 1, [&](const std::string& key, const std::string& value) {
    if (key == "--sizes") sizes = split(value);
    else if (key == "--algo") algos = split(value);
    else if (key == "--trials") trials = std::max(1, std::atoi(value.c_str()));
    else return false;
    return true;
  });
  if (!ok) return 2;
  try {
    dssync::TcpTransport t;  // DSSYNC_* from the launcher
    const std::vector<int> ranks = bench::every_rank(t);
    const dssync::Group world(ranks);
    if (t.rank() == 0)
      std::printf("# dssync TcpTransport all-reduce, float sum, %d ranks; median of %d trials, "
                  "each the slowest rank's time for R calls\n",
                  t.size(), trials);
    for (const auto& s : sizes) {
      const std::size_t bytes = std::stoull(s);
      for (const auto& a : algos) {
        if (a == "ring") measure<dssync::RingReduce>("dssync_ring", t, world, bytes, trials);
        else if (a == "hd")
          measure<dssync::HalvingDoublingReduce>("dssync_halving_doubling", t, world, bytes, trials);
        else throw dssync::configuration_error("unknown algorithm " + a);
      }
    }
  } catch (const dssync::error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
