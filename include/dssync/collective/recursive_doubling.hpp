#pragma once
// Recursive doubling: log2(g) steps, each exchanging the whole buffer with the
// member whose virtual position differs in one bit. The fewest steps of any
// all-reduce, and log2(g) times the bytes of a ring: the algorithm for small
// buffers, where latency is everything.

#include <cstddef>
#include <span>

#include "dssync/collective/common.hpp"

namespace dssync {

class RecursiveDoublingReduce {
 public:
  template <transport Transport, element T, reduce_op<T> Op = Sum>
  void all_reduce(Transport& t, const Group& g, std::span<T> data, Op op = {}, tag_t tag = 0) {
    detail::run_folded(t, g, data, op, scratch_, tag, [&](const detail::Fold& f) {
      // The whole buffer goes out and comes back combined, so the incoming
      // copy must land in scratch first (the peer is still reading ours).
      auto in = scratch_.get<T>(data.size());
      for (int d = 1; d < f.p2; d *= 2) {
        const int partner = f.virtual_pos ^ d;
        const int peer = g[f.position(partner)];
        t.sendrecv(peer, std::span<const T>(data), peer, in, tag);
        // Both members of a pair compute op(lower, higher): the same bits,
        // except for the payload of a NaN, which the compiler may take from
        // either operand; so NaNs are made canonical after every step.
        if (2 * d >= f.p2)
          detail::combine_finish(op, data, std::span<const T>(in), partner < f.virtual_pos,
                                 g.size());
        else
          detail::combine(op, data, std::span<const T>(in), partner < f.virtual_pos);
        detail::canonicalize_nans(data);
      }
    });
  }

 private:
  detail::Scratch scratch_;
};

}  // namespace dssync
