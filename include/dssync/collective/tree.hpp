#pragma once
// Binomial tree: reduce to position 0 in ceil(log2 g) rounds, then broadcast
// back down the same tree. Each of the two phases moves the whole buffer across
// every edge of the tree one after the other, so it suits small buffers and
// groups where only a few members should be busy at once.

#include <bit>
#include <cstddef>
#include <span>

#include "dssync/collective/common.hpp"

namespace dssync {

class TreeReduce {
 public:
  template <transport Transport, element T, reduce_op<T> Op = Sum>
  void all_reduce(Transport& t, const Group& g, std::span<T> data, Op op = {}, tag_t tag = 0) {
    const detail::Member m = detail::member_of(t, g, tag);
    const int p = m.position;
    if (m.size > 1) scratch_.reserve<T>(data.size());  // any position may become a parent
    // Reduce: in round `mask`, members with that bit set send to the member
    // without it and drop out; the receiver's own data is the left operand.
    int mask = 1;
    for (; mask < m.size; mask <<= 1) {
      if (p & mask) {
        t.send(g[p - mask], std::span<const T>(data), tag);
        break;
      }
      if (p + mask < m.size) {
        auto in = scratch_.get<T>(data.size());
        t.recv(g[p + mask], in, tag);
        // The root's last combine also finishes the op.
        if (p == 0 && 2 * mask >= m.size)
          detail::combine_finish(op, data, std::span<const T>(in), false, m.size);
        else
          detail::combine_right(op, data, std::span<const T>(in));
      }
    }
    // Broadcast: receive the result from the parent, then pass it to the
    // children in the reverse order of the reduce.
    if (m.size == 1)
      detail::finish(op, data, 1);
    else if (p != 0)
      t.recv(g[p - mask], data, tag);
    for (mask >>= 1; mask >= 1; mask >>= 1)
      if (p + mask < m.size) t.send(g[p + mask], std::span<const T>(data), tag);
  }

 private:
  detail::Scratch scratch_;
};

}  // namespace dssync
