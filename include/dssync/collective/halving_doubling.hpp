#pragma once
// Rabenseifner's all-reduce: a reduce-scatter by recursive halving, then an
// all-gather by recursive doubling. 2 log2(g) steps moving 2(g-1)/g of the
// buffer: ring's bandwidth with logarithmic latency, the algorithm for medium
// buffers. Groups that are not a power of two fold onto one first (see Fold),
// which costs one extra buffer transfer each way for 2r of the members.

#include <array>
#include <bit>
#include <cstddef>
#include <span>

#include "dssync/collective/common.hpp"

namespace dssync {

class HalvingDoublingReduce {
 public:
  // Grows the scratch memory to n elements of T now, so that later calls up to
  // that length never allocate (HierarchicalReduce: a member may own a longer
  // column in a later call than in its first).
  template <element T>
  void reserve(std::size_t n) {
    scratch_.reserve<T>(n);
  }

  template <transport Transport, element T, reduce_op<T> Op = Sum>
  void all_reduce(Transport& t, const Group& g, std::span<T> data, Op op = {}, tag_t tag = 0) {
    detail::run_folded(t, g, data, op, scratch_, tag, [&](const detail::Fold& f) {
      const int v = f.virtual_pos;
      // windows[k]: the part of the buffer this member is responsible for after
      // k halvings. The all-gather retraces them backwards.
      std::array<detail::Block, 32> windows{};
      windows[0] = {0, data.size()};
      int levels = 0;
      // p2 >= 2 here (a group of one never gets this far), so there is a last
      // halving, and its combine also finishes the op.
      for (int d = f.p2 / 2; d >= 1; d /= 2, ++levels) {
        const int partner = v ^ d;
        const detail::Block w = windows[static_cast<std::size_t>(levels)];
        const detail::Block low{w.offset, w.length / 2};
        const detail::Block high{w.offset + low.length, w.length - low.length};
        const bool lower = v < partner;
        const detail::Block keep = lower ? low : high;
        const detail::Block give = lower ? high : low;
        detail::exchange_combine(t, g[f.position(partner)], std::span<const T>(detail::sub(data, give)),
                                 g[f.position(partner)], detail::sub(data, keep), op, !lower,
                                 scratch_, tag, d == 1 ? g.size() : 0);
        windows[static_cast<std::size_t>(levels) + 1] = keep;
      }
      for (int d = 1; d < f.p2; d *= 2, --levels) {
        const int partner = v ^ d;
        const detail::Block mine = windows[static_cast<std::size_t>(levels)];
        const detail::Block parent = windows[static_cast<std::size_t>(levels) - 1];
        // The lower member of a pair kept the low half (lengths may be zero,
        // so offsets cannot tell the halves apart).
        const detail::Block theirs =
            (v & d) == 0 ? detail::Block{mine.offset + mine.length, parent.length - mine.length}
                         : detail::Block{parent.offset, parent.length - mine.length};
        t.sendrecv(g[f.position(partner)], std::span<const T>(detail::sub(data, mine)),
                   g[f.position(partner)], detail::sub(data, theirs), tag);
      }
    });
  }

 private:
  detail::Scratch scratch_;
};

}  // namespace dssync
