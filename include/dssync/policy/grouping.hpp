#pragma once
// Grouping policies: how a world of n ranks is cut into groups before a shuffle
// decides who goes where. Policies are const and keep no mutable state, so a
// synchronizer's partition(t) is safe to call from several threads at once;
// their working vectors are per thread (detail::policy_scratch).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/core/group.hpp"
#include "dssync/core/random.hpp"

namespace dssync {

namespace detail {
// Working storage of the grouping and shuffle policies, one set per thread: it
// is reused, and two threads asking for a partition at once never share it.
// No policy puts more than n ints in one of its vectors, so each is given room
// for n at the first call for a world of n ranks: a step allocates nothing
// after the first, also where the groups change shape from step to step (the
// butterfly's last digit regroups the ranks its digit leaves alone).
struct PolicyScratch {
  std::vector<int> order;
  std::vector<int> sizes;
  std::vector<int> lone;
  std::vector<int> lone_sizes;
};
inline PolicyScratch& policy_scratch(int n) {
  thread_local PolicyScratch s;
  const auto room = static_cast<std::size_t>(std::max(n, 0));
  for (std::vector<int>* v : {&s.order, &s.sizes, &s.lone, &s.lone_sizes}) v->reserve(room);
  return s;
}

// The ranks of each label (host, rack), labels in order of first appearance,
// ranks in rank order.
inline std::vector<std::vector<int>> ranks_by_label(const std::vector<std::string>& label_of_rank) {
  std::vector<std::vector<int>> groups;
  std::map<std::string, int> index;
  for (std::size_t r = 0; r < label_of_rank.size(); ++r) {
    auto [it, fresh] = index.try_emplace(label_of_rank[r], static_cast<int>(groups.size()));
    if (fresh) groups.emplace_back();
    groups[static_cast<std::size_t>(it->second)].push_back(static_cast<int>(r));
  }
  return groups;
}
}  // namespace detail

// Groups of the option's size g. When g does not divide n there are
// k = max(1, n / g) groups whose sizes differ by at most one, the larger ones
// first: n = 10, g = 4 gives 5 + 5; n = 7, g = 2 gives 3 + 2 + 2. So every
// group has at least min(g, n) members and no rank is ever alone unless g = 1
// or n = 1. A group size larger than the world is clamped to it: n = 3, g = 4
// gives one group of 3 (DS-Sync is then a full all-reduce). The clamp keeps a
// program that runs on 8 ranks working on 1 or 2 while debugging.
struct FixedSizeGroups {
  // The sizes alone, into `sizes` (reused, so no allocation once warm).
  static void sizes(int n, int group_size, std::vector<int>& sizes) {
    if (group_size < 1)
      throw configuration_error("group size must be at least 1, got " + std::to_string(group_size));
    if (n < 1) throw configuration_error("a world needs at least one rank");
    const int k = std::max(1, n / group_size);
    sizes.resize(static_cast<std::size_t>(k));
    for (int i = 0; i < k; ++i) sizes[static_cast<std::size_t>(i)] = n / k + (i < n % k ? 1 : 0);
  }

  void layout(int n, int group_size, std::uint64_t /*iteration*/, Partition& out) const {
    auto& sizes_ = detail::policy_scratch(n).sizes;
    sizes(n, group_size, sizes_);
    out.assign_contiguous(sizes_);
  }
};

// Groups from the machine's shape: a host label per rank (any string that is
// equal for ranks sharing a host, rack or switch). Iterations alternate between
// two layouts, a two-level butterfly:
//  - even iterations: one group per host, all its ranks (traffic stays inside
//    hosts);
//  - odd iterations: groups with at most one member per host: the j-th group
//    takes the ((j + h * s) mod c)-th local rank of host h, where c is the
//    host's rank count and s = t / 2; the offsets rotate which ranks meet.
// With the same number of ranks on every host, two consecutive iterations
// give the exact global average; the inter-host link of each host carries one
// group's traffic at a time. The option's group size is not used: the hosts
// give the sizes. Use it with NoShuffle: the schedule is its own shuffle, and a
// random relabelling would scatter the hosts.
class TopologyAwareGroups {
 public:
  TopologyAwareGroups() = default;
  explicit TopologyAwareGroups(std::vector<std::string> host_of_rank) {
    hosts_ = detail::ranks_by_label(host_of_rank);
    world_ = static_cast<int>(host_of_rank.size());
    for (const auto& h : hosts_) widest_ = std::max(widest_, static_cast<int>(h.size()));
  }

  int hosts() const noexcept { return static_cast<int>(hosts_.size()); }

  void layout(int n, int /*group_size*/, std::uint64_t iteration, Partition& out) const {
    if (n != world_)
      throw configuration_error("TopologyAwareGroups has host labels for " + std::to_string(world_) +
                                " ranks, the world has " + std::to_string(n));
    auto& scratch = detail::policy_scratch(n);
    auto& order = scratch.order;
    auto& sizes = scratch.sizes;
    order.clear();
    sizes.clear();
    if (iteration % 2 == 0) {
      for (const auto& h : hosts_) {
        order.insert(order.end(), h.begin(), h.end());
        sizes.push_back(static_cast<int>(h.size()));
      }
    } else {
      const std::uint64_t shift = iteration / 2;
      for (int j = 0; j < widest_; ++j) {
        int members = 0;
        for (std::size_t hi = 0; hi < hosts_.size(); ++hi) {
          const auto& h = hosts_[hi];
          const std::uint64_t c = h.size();
          if (static_cast<std::uint64_t>(j) >= c) continue;
          // Host hi's members advance by hi * shift: a different host pairing
          // every odd iteration. Reduced mod c before multiplying, so that no
          // iteration up to 2^64 - 1 overflows.
          const std::uint64_t offset = (shift % c) * (hi % c) % c;
          order.push_back(h[static_cast<std::size_t>((static_cast<std::uint64_t>(j) + offset) % c)]);
          ++members;
        }
        sizes.push_back(members);
      }
    }
    out.assign(n, order, sizes);
  }

 private:
  std::vector<std::vector<int>> hosts_;  // ranks of each host, in rank order
  int world_ = 0;
  int widest_ = 0;
};

// Groups for racks behind oversubscribed uplinks (or hosts behind slow
// links): a rack label per rank, as for TopologyAwareGroups. At every
// iteration each rack sends e of its members, its envoys, across its uplink
// and keeps the others at home:
//  - the envoys of each rack are drawn at random among its members (all of
//    them when the rack has no more than e); the envoys of all racks, in a
//    random order, form groups of g (sizes as FixedSizeGroups);
//  - the other members of each rack, in a random order, form groups of g
//    inside the rack (sizes as FixedSizeGroups).
// So each uplink carries e members' traffic per step, whatever the rack's
// size: with e = (rack bandwidth / uplink bandwidth) no more than the uplink
// carries at full rate, and a step costs about what a step of random groups
// costs on a flat network. Choose e so that the rest of a rack divides into
// groups of g (racks of 8, g = 2: e = 2), or the odd group of g + 1 sets the
// pace. The racks mix only through the envoys, so agreement across racks
// takes more steps than with RandomShuffle.
// With one rack it is random groups of g. Draws from (seed, iteration) with
// the library's generator: the synchronizer's seed does not reach a grouping,
// so this one takes its own. Use it with NoShuffle.
class RackGroups {
 public:
  RackGroups() = default;
  explicit RackGroups(const std::vector<std::string>& rack_of_rank, int envoys = 1, std::uint64_t seed = 1)
      : envoys_(envoys), seed_(seed) {
    if (envoys < 1)
      throw configuration_error("RackGroups needs at least one envoy per rack, got " + std::to_string(envoys));
    racks_ = detail::ranks_by_label(rack_of_rank);
    world_ = static_cast<int>(rack_of_rank.size());
  }

  int racks() const noexcept { return static_cast<int>(racks_.size()); }

  void layout(int n, int group_size, std::uint64_t iteration, Partition& out) const {
    if (n != world_)
      throw configuration_error("RackGroups has rack labels for " + std::to_string(world_) +
                                " ranks, the world has " + std::to_string(n));
    auto& scratch = detail::policy_scratch(n);
    auto& order = scratch.order;
    auto& sizes = scratch.sizes;
    auto& envoys = scratch.lone;
    auto& cut = scratch.lone_sizes;
    order.clear();
    sizes.clear();
    envoys.clear();
    CounterRng rng(seed_, iteration);
    const bool travel = racks_.size() > 1;
    for (const auto& rack : racks_) {
      const std::size_t start = order.size();
      order.insert(order.end(), rack.begin(), rack.end());
      const std::span<int> home(order.data() + start, rack.size());
      random_permute(home, rng);
      if (travel) {  // the first e after the permutation travel: a uniform draw
        const auto e = std::min(rack.size(), static_cast<std::size_t>(envoys_));
        envoys.insert(envoys.end(), home.begin(), home.begin() + static_cast<std::ptrdiff_t>(e));
        order.erase(order.begin() + static_cast<std::ptrdiff_t>(start),
                    order.begin() + static_cast<std::ptrdiff_t>(start + e));
      }
      const int stay = static_cast<int>(order.size() - start);
      if (stay == 0) continue;
      FixedSizeGroups::sizes(stay, group_size, cut);
      sizes.insert(sizes.end(), cut.begin(), cut.end());
    }
    if (travel) {
      random_permute(std::span<int>(envoys), rng);
      order.insert(order.end(), envoys.begin(), envoys.end());
      FixedSizeGroups::sizes(static_cast<int>(envoys.size()), group_size, cut);
      sizes.insert(sizes.end(), cut.begin(), cut.end());
    }
    out.assign(n, order, sizes);
  }

 private:
  std::vector<std::vector<int>> racks_;  // ranks of each rack, in rank order
  int world_ = 0;
  int envoys_ = 1;
  std::uint64_t seed_ = 1;
};

}  // namespace dssync
