#pragma once
// Shuffle policies: which ranks share a group at iteration t. Each rewrites the
// grouping's layout from (seed, iteration) alone, so every rank computes the
// same partition without a message.

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
// partition with the layout's group sizes. Two given ranks share a group with
// probability (g-1)/(n-1), and the squared consensus distance shrinks by
// (n-g)/(g(n-1)) per step in expectation.
struct RandomShuffle {
  void shuffle(std::uint64_t seed, std::uint64_t iteration, Partition& p) const {
    CounterRng rng(seed, iteration);
    random_permute(p.members(), rng);
    p.reindex();
  }
};

// Groups along the digits of the rank in base g, one digit per iteration (the
// BCube / butterfly schedule): at iteration t the group of rank r is the ranks
// that differ from r only in digit t mod k, with k = ceil(log_g n) digits. For
// n = g^k the product of k consecutive steps is the exact global average (the
// released DS-Sync code's {01,23}, {02,13}-style alternation, generalised).
// For other n the digit groups at the top end are short. Short groups of two
// or more stay; ranks left alone are grouped with each other the way
// FixedSizeGroups cuts a world, and a single lone rank joins the last group, so
// no rank sits out and no group exceeds 2g - 1. The k-step product is then
// not the average, and some pairs of ranks may not yet have met at all; for
// every n <= 64, g <= 6 the tests have tried, all have after 2k - 1 steps. g is the size of the layout's first
// group (FixedSizeGroups gives the option's group size there); the seed is not
// used.
struct ButterflyShuffle {
  void shuffle(std::uint64_t /*seed*/, std::uint64_t iteration, Partition& p) const {
    const int n = p.world_size();
    const int g = p.group(0).size();
    if (n == 1 || g == 1) return;  // nothing to mix
    int digits = 0;
    for (long long span = 1; span < n; span *= g) ++digits;
    long long stride = 1;  // g^(t mod k)
    for (std::uint64_t d = 0; d < iteration % static_cast<std::uint64_t>(digits); ++d) stride *= g;
    order_.clear();
    sizes_.clear();
    lone_.clear();
    // Group leaders are the ranks whose digit t mod k is 0.
    for (int leader = 0; leader < n; ++leader) {
      if ((leader / stride) % g != 0) continue;
      const std::size_t start = order_.size();
      for (int j = 0; j < g && leader + j * stride < n; ++j)
        order_.push_back(static_cast<int>(leader + j * stride));
      if (order_.size() - start == 1) {
        lone_.push_back(order_.back());
        order_.pop_back();
      } else {
        sizes_.push_back(static_cast<int>(order_.size() - start));
      }
    }
    if (lone_.size() == 1) {
      // Rank 0's group always has two members (stride < n), so there is a
      // group to join.
      order_.push_back(lone_[0]);
      ++sizes_.back();
    } else if (!lone_.empty()) {
      order_.insert(order_.end(), lone_.begin(), lone_.end());
      FixedSizeGroups::sizes(static_cast<int>(lone_.size()), g, lone_sizes_);
      sizes_.insert(sizes_.end(), lone_sizes_.begin(), lone_sizes_.end());
    }
    p.assign(n, order_, sizes_);
  }

 private:
  mutable std::vector<int> order_;
  mutable std::vector<int> sizes_;
  mutable std::vector<int> lone_;
  mutable std::vector<int> lone_sizes_;
};

}  // namespace dssync
