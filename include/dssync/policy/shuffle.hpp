#pragma once
// Shuffle policies: which ranks share a group at iteration t. Each rewrites the
// grouping's layout from (seed, iteration) alone, so every rank computes the
// same partition without a message. Shuffles are const and keep no mutable
// state (their working vectors are per thread), so partition(t) may be asked
// from several threads at once.

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/core/group.hpp"
#include "dssync/core/random.hpp"
#include "dssync/policy/grouping.hpp"

namespace dssync {

// Static groups: the layout as it is, every iteration. The ablation that shows
// what the shuffle is for: groups never mix.
struct NoShuffle {
  void shuffle(std::uint64_t /*seed*/, std::uint64_t /*iteration*/, Partition& /*p*/) const noexcept {}
};

// A uniformly random relabelling of the layout's ranks per iteration, drawn
// from (seed, iteration) with the library's own generator: a uniform random
// partition with the layout's group sizes. With k groups of sizes s_1..s_k
// over n ranks:
//  - two given ranks share a group with probability sum_i s_i (s_i - 1) / (n (n-1));
//  - E[W_t] = a I + b 11^T with b = (n - k) / (n (n-1)), so the expected squared
//    consensus distance shrinks by exactly (k - 1) / (n - 1) per step.
// When g divides n (k = n / g) these are (g-1)/(n-1) and (n-g)/(g(n-1)).
struct RandomShuffle {
  void shuffle(std::uint64_t seed, std::uint64_t iteration, Partition& p) const {
    CounterRng rng(seed, iteration);
    random_permute(p.members(), rng);
    p.reindex();
  }
};

// Groups along the digits of the rank in base g, the synchronizer's group size,
// one digit per iteration (the BCube / butterfly schedule). With
// k = ceil(log_g n) digits, at iteration t the digit group of rank r is the
// ranks below n that differ from r only in digit d = t mod k. For n = g^k the
// product of any k consecutive steps is the exact global average (at n = 4,
// g = 2 the digits give {01,23}, {02,13}; the released DS-Sync code alternates
// {01,23}, {03,12}, whose product is the same exact average).
//
// For other n the digit groups at the top end are short. Short groups of two or
// more average as they are. Ranks whose digit group holds only themselves are
// grouped among themselves the way FixedSizeGroups cuts a world of that many
// ranks; a single such rank joins the last group (the one with the highest
// leader). So no rank sits out, and no group exceeds 2g - 1. The k-step product
// is then not the exact average; docs/benchmarks.md ("ButterflyShuffle when n is not a
// power of g") gives, measured, how many steps it takes to reach it within
// 1e-6. A group size above n is clamped to n (one group), as FixedSizeGroups
// does; the seed and the layout are not used.
struct ButterflyShuffle {
  void shuffle(std::uint64_t /*seed*/, std::uint64_t iteration, int group_size, Partition& p) const {
    const int n = p.world_size();
    const int g = std::min(group_size, n);
    if (g < 1) throw configuration_error("group size must be at least 1, got " + std::to_string(g));
    if (n == 1 || g == 1) {  // nothing to mix: everyone alone
      auto& sizes = detail::policy_scratch(n).sizes;
      sizes.assign(static_cast<std::size_t>(n), 1);
      p.assign_contiguous(sizes);
      return;
    }
    int digits = 0;
    for (long long span = 1; span < n; span *= g) ++digits;
    long long stride = 1;  // g^(t mod k)
    for (std::uint64_t d = 0; d < iteration % static_cast<std::uint64_t>(digits); ++d) stride *= g;
    auto& scratch = detail::policy_scratch(n);
    auto& order = scratch.order;
    auto& sizes = scratch.sizes;
    auto& lone = scratch.lone;
    order.clear();
    sizes.clear();
    lone.clear();
    // Group leaders are the ranks whose digit t mod k is 0.
    for (int leader = 0; leader < n; ++leader) {
      if ((leader / stride) % g != 0) continue;
      const std::size_t start = order.size();
      for (int j = 0; j < g && leader + j * stride < n; ++j)
        order.push_back(static_cast<int>(leader + j * stride));
      if (order.size() - start == 1) {
        lone.push_back(order.back());
        order.pop_back();
      } else {
        sizes.push_back(static_cast<int>(order.size() - start));
      }
    }
    if (lone.size() == 1) {
      // Rank 0's digit group always has two members (stride < n), so there
      // is a group to join.
      order.push_back(lone[0]);
      ++sizes.back();
    } else if (!lone.empty()) {
      order.insert(order.end(), lone.begin(), lone.end());
      FixedSizeGroups::sizes(static_cast<int>(lone.size()), g, scratch.lone_sizes);
      sizes.insert(sizes.end(), scratch.lone_sizes.begin(), scratch.lone_sizes.end());
    }
    p.assign(n, order, sizes);
  }
};

}  // namespace dssync
