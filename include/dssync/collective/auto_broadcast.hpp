#pragma once
// Chooses the broadcast by buffer size and group size: the binomial tree while
// latency dominates (small buffers, small groups), van de Geijn's scatter and
// ring all-gather for large buffers in large groups. Every member sees the
// same length and group, so all choose alike.
// The thresholds come from a sweep on the in-process world on 2 cores, where
// copies are cheap and hand-offs are not, so the tree wins up to large buffers
// (docs/design.md, "Broadcast, all-gather, barrier"; the measurements and their
// records: docs/experiments/collectives-2026-12-04/README.md). On a network,
// where the tree's root sends log2(g) whole copies one after the other, the
// scatter should pay off at smaller sizes: pass your own thresholds there.

#include <algorithm>
#include <cstddef>
#include <span>

#include "dssync/collective/scatter_allgather_broadcast.hpp"
#include "dssync/collective/tree_broadcast.hpp"

namespace dssync {

class AutoBroadcast {
 public:
  struct Options {
    std::size_t scatter_allgather_from = 16 * 1024 * 1024;  // bytes
    int scatter_allgather_min_group = 8;                    // members
  };

  AutoBroadcast() = default;
  explicit AutoBroadcast(Options o) : options_(o) {}

  enum class Choice { tree, scatter_allgather };

  Choice choose(std::size_t bytes, int group_size) const noexcept {
    if (group_size < std::max(3, options_.scatter_allgather_min_group) ||
        bytes < options_.scatter_allgather_from)
      return Choice::tree;
    return Choice::scatter_allgather;
  }

  template <transport Transport, element T>
  void broadcast(Transport& t, const Group& g, std::span<T> data, int root, tag_t tag = 0) {
    if (choose(data.size_bytes(), g.size()) == Choice::tree)
      return tree_.broadcast(t, g, data, root, tag);
    return scatter_allgather_.broadcast(t, g, data, root, tag);
  }

 private:
  Options options_;
  TreeBroadcast tree_;
  ScatterAllgatherBroadcast scatter_allgather_;
};

}  // namespace dssync
