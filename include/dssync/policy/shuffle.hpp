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
// released DS-Sync code's {01,23}, {03,12}-style alternation, generalised).
// For other n the digit groups at the top end are short; a group of one is
// merged into the group before it so no rank sits out, and the k-step product is
// then close to, but not exactly, the average. g is the size of the layout's
// first group (FixedSizeGroups gives the option's group size there); the seed
// is not used.
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
    // Group leaders are the ranks whose digit t mod k is 0. Rank 0's group
    // always has at least two members (stride < n), so a lone rank always has
    // a group before it.
    for (int leader = 0; leader < n; ++leader) {
      if ((leader / stride) % g != 0) continue;
      int members = 0;
      for (int j = 0; j < g; ++j) {
        const long long r = leader + j * stride;
        if (r >= n) break;
        order_.push_back(static_cast<int>(r));
        ++members;
      }
      if (members == 1 && !sizes_.empty())
        ++sizes_.back();  // merged: the lone rank joins the group before it
      else
        sizes_.push_back(members);
    }
    p.assign(n, order_, sizes_);
  }

 private:
  mutable std::vector<int> order_;
  mutable std::vector<int> sizes_;
};

}  // namespace dssync
