#pragma once
// Van de Geijn's broadcast: the root scatters the buffer in g blocks down a
// binomial tree (ceil(log2 g) rounds, each member receiving its subtree's
// blocks once), then a ring all-gather (g-1 steps) gives every member every
// block. Each member sends and receives about 2(g-1)/g of the buffer instead
// of the tree's log2(g) copies at the root: bandwidth-optimal, at the price of
// g-1 more latencies, so the algorithm for large buffers.

#include <algorithm>
#include <cstddef>
#include <span>

#include "dssync/collective/gather_common.hpp"

namespace dssync {

class ScatterAllgatherBroadcast {
 public:
  struct Options {};

  ScatterAllgatherBroadcast() = default;
  explicit ScatterAllgatherBroadcast(Options) {}

  // As TreeBroadcast::broadcast: every member's `data` becomes the root's, bit
  // for bit; `root` is a global rank that must be a member. Lengths that differ
  // between members differ in at least one block, and every block reaches every
  // member in the ring, so the difference is a size_mismatch_error somewhere.
  template <transport Transport, element T>
  void broadcast(Transport& t, const Group& g, std::span<T> data, int root, tag_t tag = 0) {
    const detail::Member m = detail::member_of(t, g, tag);
    const int r = detail::root_position(t, g, root, tag);
    const int n = m.size;
    if (n == 1) return;
    // Block b belongs to the member at position b relative to the root, so a
    // subtree's blocks are one contiguous range of the buffer.
    const int v = (m.position - r + n) % n;
    auto rank_of = [&](int relative) { return g[(relative + r) % n]; };
    auto blocks = [&](int first, int last) {  // blocks [first, last), last <= n
      const std::size_t begin =
          detail::block(data.size(), std::size_t(n), std::size_t(first)).offset;
      const std::size_t end =
          last < n ? detail::block(data.size(), std::size_t(n), std::size_t(last)).offset
                   : data.size();
      return data.subspan(begin, end - begin);
    };

    // Scatter: the member at v receives the blocks of its subtree, [v, v + its
    // lowest set bit), from its parent, then hands each child its subtree's.
    int mask = 1;
    for (; mask < n; mask <<= 1) {
      if (v & mask) {
        t.recv(rank_of(v - mask), blocks(v, std::min(v + mask, n)), tag);
        break;
      }
    }
    for (mask >>= 1; mask >= 1; mask >>= 1)
      if (v + mask < n)
        t.send(rank_of(v + mask), std::span<const T>(blocks(v + mask, std::min(v + 2 * mask, n))),
               tag);

    // All-gather around the ring of relative positions: at step s pass on
    // block v-s (this member's own at first) and receive block v-s-1 in place.
    const int right = rank_of((v + 1) % n);
    const int left = rank_of((v + n - 1) % n);
    for (int s = 0; s + 1 < n; ++s) {
      const int out = (v - s + n) % n;
      const int in = (v - s - 1 + 2 * n) % n;
      t.sendrecv(right, std::span<const T>(blocks(out, out + 1)), left, blocks(in, in + 1), tag);
    }
  }
};

}  // namespace dssync
