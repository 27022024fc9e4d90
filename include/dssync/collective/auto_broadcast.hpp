#pragma once
// Chooses the broadcast by buffer size and group size: the binomial tree while
// latency dominates (small buffers, and groups of two, where scattering gains
// nothing), van de Geijn's scatter and ring all-gather beyond. Every member
// sees the same length and group, so all choose alike.
// The threshold comes from a quick sweep on the in-process world at n = 8 and
// n = 5 (docs/experiments/collectives-2026-12-04); pass your own for another
// network.

#include <cstddef>
#include <span>

#include "dssync/collective/scatter_allgather_broadcast.hpp"
#include "dssync/collective/tree_broadcast.hpp"

namespace dssync {

class AutoBroadcast {
 public:
  struct Options {
    std::size_t scatter_allgather_from = 512 * 1024;  // bytes, groups of three or more
  };

  AutoBroadcast() = default;
  explicit AutoBroadcast(Options o) : options_(o) {}

  enum class Choice { tree, scatter_allgather };

  Choice choose(std::size_t bytes, int group_size) const noexcept {
    if (group_size < 3 || bytes < options_.scatter_allgather_from) return Choice::tree;
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
