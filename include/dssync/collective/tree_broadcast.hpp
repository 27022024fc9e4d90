#pragma once
// Binomial-tree broadcast: the root's buffer reaches every member in
// ceil(log2 g) rounds, each member receiving it once from its parent and
// passing it on to its children, the farthest first. The fewest rounds any
// broadcast can take, and the whole buffer crosses every edge one after the
// other, so the root sends log2(g) full copies: the algorithm for small
// buffers, where latency is everything.

#include <cstddef>
#include <span>

#include "dssync/collective/gather_common.hpp"

namespace dssync {

class TreeBroadcast {
 public:
  struct Options {};

  TreeBroadcast() = default;
  explicit TreeBroadcast(Options) {}

  // Every member's `data` becomes the root's, bit for bit. `root` is a global
  // rank and must be a member of `g`; every member passes the same root and
  // the same length (a member whose length differs gets size_mismatch_error,
  // and the members waiting on it a peer_error or timeout_error).
  template <transport Transport, element T>
  void broadcast(Transport& t, const Group& g, std::span<T> data, int root, tag_t tag = 0) {
    const detail::Member m = detail::member_of(t, g, tag);
    const int r = detail::root_position(t, g, root, tag);
    // Positions relative to the root, so that the root is 0 of the tree.
    const int v = (m.position - r + m.size) % m.size;
    auto rank_of = [&](int relative) { return g[(relative + r) % m.size]; };
    // Receive from the parent: the member without this member's lowest set bit.
    int mask = 1;
    for (; mask < m.size; mask <<= 1) {
      if (v & mask) {
        t.recv(rank_of(v - mask), data, tag);
        break;
      }
    }
    // Pass it on to the children, the largest subtree first, so that it can
    // start its own rounds while the smaller ones are still being served.
    for (mask >>= 1; mask >= 1; mask >>= 1)
      if (v + mask < m.size) t.send(rank_of(v + mask), std::span<const T>(data), tag);
  }
};

}  // namespace dssync
