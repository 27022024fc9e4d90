#pragma once
// Ring all-reduce: a reduce-scatter then an all-gather around the ring of the
// group's positions, 2(g-1) steps that each move 1/g of the buffer. It sends
// 2(g-1)/g of the buffer per rank, the least any all-reduce can, so it is the
// algorithm for large buffers; its 2(g-1) latencies make it poor for small ones.
//
// Each step moves its block in segments, so that a received segment is
// combined while it is still in cache and the scratch buffer is one segment
// long (over a transport with sendrecv_view there is no scratch at all: the
// combine reads the neighbour's memory).

#include <algorithm>
#include <cstddef>
#include <span>

#include "dssync/collective/common.hpp"

namespace dssync {

class RingReduce {
 public:
  struct Options {
    // Bytes per message in a step. 0 takes the transport's preference
    // (transport_segment_bytes): 256 KiB for a memory transport, small enough
    // that a received segment is still in L2 when it is combined; a network
    // transport, whose every message is a hand-off to its socket thread and a
    // wait, sends a block as one message.
    std::size_t segment_bytes = 0;
  };

  RingReduce() = default;
  explicit RingReduce(Options o) : options_(o) {}

  template <transport Transport, element T, reduce_op<T> Op = Sum>
  void all_reduce(Transport& t, const Group& g, std::span<T> data, Op op = {}, tag_t tag = 0) {
    const detail::Member m = detail::member_of(t, g, tag);
    const auto n = static_cast<std::size_t>(m.size);
    const auto p = static_cast<std::size_t>(m.position);
    if (n == 1) {
      detail::finish(op, data, 1);
      return;
    }
    const int right = g[static_cast<int>((p + 1) % n)];
    const int left = g[static_cast<int>((p + n - 1) % n)];
    // Segments keep a received piece in cache until it is combined; with
    // sendrecv_view nothing is received into scratch, and a step is one message.
    const std::size_t seg = transport_with_view<Transport, T>
                                ? std::max<std::size_t>(1, data.size())
                                : std::max<std::size_t>(1, (options_.segment_bytes
                                                                ? options_.segment_bytes
                                                                : transport_segment_bytes<Transport>()) /
                                                               sizeof(T));
    auto chunk = [&](std::size_t c) { return detail::block(data.size(), n, c % n); };
    // Every member makes the same number of sendrecvs per step, sized by the
    // largest block; the shorter blocks send empty segments at the end. In
    // segments the messages are prefix-free, as the pipelined broadcast's
    // (docs/design.md): floor(largest / seg) + 1 of them (none for an empty
    // buffer), so the last is short or empty, and a member whose blocks are
    // longer than another's sends a full segment where the other expects its
    // short last one. Otherwise a block of exactly k segments would take the
    // first k of a longer one's, and the next step's first segment as the
    // rest, and return wrong sums without an error. With sendrecv_view a step
    // is one message, whose length is checked whole.
    const std::size_t largest = detail::block(data.size(), n, 0).length;
    const std::size_t messages =
        largest == 0 ? 0 : (transport_with_view<Transport, T> ? 1 : largest / seg + 1);
    if constexpr (!transport_with_view<Transport, T>) scratch_.reserve<T>(std::min(seg, data.size()));
    auto segment = [seg](std::span<T> b, std::size_t k) {
      const std::size_t at = std::min(k, b.size());
      return b.subspan(at, std::min(seg, b.size() - at));
    };

    // Reduce-scatter: at step s, send block p-s, combine block p-s-1 from the
    // left. Block c starts at position c and collects the others in ring
    // order, so the partial sum always arrives as the left operand. After
    // g-1 steps position p holds block p+1 complete; the last step's combine
    // also finishes it (Average divides there, in the same pass).
    for (std::size_t s = 0; s + 1 < n; ++s) {
      const auto out = detail::sub(data, chunk(p + n - s));
      const auto in = detail::sub(data, chunk(p + 2 * n - s - 1));
      const int finish_size = s + 2 == n ? m.size : 0;
      for (std::size_t i = 0, k = 0; i < messages; ++i, k += seg) {
        const auto out_seg = segment(out, k);
        const auto in_seg = segment(in, k);
        detail::exchange_combine(t, right, std::span<const T>(out_seg), left, in_seg, op,
                                 /*in_is_lower=*/true, scratch_, tag, finish_size);
      }
    }

    // All-gather: at step s, pass on block p+1-s and receive block p-s in place.
    for (std::size_t s = 0; s + 1 < n; ++s) {
      t.sendrecv(right, std::span<const T>(detail::sub(data, chunk(p + 1 + n - s))), left,
                 detail::sub(data, chunk(p + n - s)), tag);
    }
  }

 private:
  Options options_;
  detail::Scratch scratch_;
};

}  // namespace dssync
