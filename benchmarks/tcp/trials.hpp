#pragma once
// What the measuring programs over TcpTransport share: the group of every
// rank, and timed trials. A trial starts after a barrier and takes the
// slowest rank's time, since a collective is done when its last rank is; a
// measurement is the median of its trials.

#include <chrono>
#include <numeric>
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

}  // namespace bench
