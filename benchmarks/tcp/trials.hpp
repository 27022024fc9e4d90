#pragma once
// What the measuring programs over TcpTransport share: the group of every
// rank, and timed trials. A trial starts after a barrier and takes the
// slowest rank's time, since a collective is done when its last rank is; a
// measurement is the median of its trials.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <numeric>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "dssync/tcp.hpp"

#include "common/cli.hpp"

namespace bench {

// Every rank of t, in order: what a Group of the whole world views (a Group
// does not own its ranks, so keep this alive beside it).
inline std::vector<int> every_rank(const dssync::TcpTransport& t) {
  std::vector<int> ranks(static_cast<std::size_t>(t.size()));
  std::iota(ranks.begin(), ranks.end(), 0);
  return ranks;
}

// The largest of every rank's v; as every rank waits for all the others, it is
// also a barrier. Tag 126 is what no measured operation uses here.
inline double slowest(dssync::TcpTransport& t, const dssync::Group& world, double v) {
  double x[1] = {v};
  dssync::RecursiveDoublingReduce().all_reduce(t, world, std::span<double>(x), dssync::Max{},
                                               dssync::make_tag(0, 126));
  return x[0];
}

// The median over `trials` trials of the slowest rank's seconds for body().
template <class Body>
double median_trial_seconds(dssync::TcpTransport& t, const dssync::Group& world, int trials, Body body) {
  std::vector<double> times;
  for (int i = 0; i < trials; ++i) {
    slowest(t, world, 0);  // barrier
    const auto start = std::chrono::steady_clock::now();
    body();
    times.push_back(slowest(t, world, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()));
  }
  return median(std::move(times));
}

// Interleaved trials, so that a slow phase of a shared machine falls on every
// method alike: each trial runs every method once (reps calls, timed as the
// slowest rank's), in an order drawn afresh from `seed` for the trial, the
// same on every rank. A method has call() and a vector `seconds`, to which
// each trial appends its time per call.
template <class Method>
void interleaved_trials(dssync::TcpTransport& t, const dssync::Group& world,
                        std::vector<Method>& methods, int trials, int reps, std::uint32_t seed) {
  std::mt19937 order_rng(seed);
  std::vector<std::size_t> order(methods.size());
  for (int trial = 0; trial < trials; ++trial) {
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::shuffle(order.begin(), order.end(), order_rng);
    for (std::size_t i : order) {
      Method& m = methods[i];
      m.seconds.push_back(median_trial_seconds(t, world, 1, [&] {
                            for (int r = 0; r < reps; ++r) m.call();
                          }) / reps);
    }
  }
}

// Per trial, the best time of the methods theirs(m) picks over the best of
// those ours(m) picks: the paired ratio of two families measured in the same
// trials (interleaved_trials).
template <class Method, class Ours, class Theirs>
std::vector<double> paired_ratios(const std::vector<Method>& methods, int trials, Ours ours, Theirs theirs) {
  std::vector<double> ratio;
  for (std::size_t trial = 0; trial < static_cast<std::size_t>(trials); ++trial) {
    double mine = 0, other = 0;
    for (const Method& m : methods) {
      double* best = ours(m) ? &mine : theirs(m) ? &other : nullptr;
      if (best && (*best == 0 || m.seconds[trial] < *best)) *best = m.seconds[trial];
    }
    ratio.push_back(other / mine);
  }
  return ratio;
}

}  // namespace bench
