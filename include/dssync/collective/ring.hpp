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
//
// Over a transport that keeps messages in flight (transport_with_posting:
// MPI) each phase posts `in_flight` segments ahead each way and passes a
// segment on as soon as it has arrived (and, in the reduce-scatter, been
// combined), as RingAllGather does: a step no longer waits for both of its
// links at once. The scratch is then `in_flight` segments long. The combines
// and their order are those of the blocking exchange, so both give the same
// bits.

#include <algorithm>
#include <cstddef>
#include <span>

#include "dssync/collective/common.hpp"
#include "dssync/collective/posted.hpp"

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
    // Where the transport can post messages: segments kept in flight each way
    // (at most 16); 0: one blocking sendrecv a segment everywhere.
    int in_flight = 8;
  };

  RingReduce() = default;
  explicit RingReduce(Options o) : options_(o) {}

  template <transport Transport, element T, reduce_op<T> Op = Sum>
  void all_reduce(Transport& t, const Group& g, std::span<T> data, Op op = {}, tag_t tag = 0) {
    const detail::Member m = detail::member_of(t, g);
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
    // largest block; the shorter blocks send empty segments at the end.
    const std::size_t largest = detail::block(data.size(), n, 0).length;
    if constexpr (transport_with_posting<Transport, T>) {
      if (options_.in_flight > 0) return posted(t, data, op, p, n, seg, left, right, tag);
    }
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
      for (std::size_t k = 0; k < largest; k += seg) {
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
  // Message m of a phase is segment m % per of step m / per, every block cut
  // the same way (full segments of seg, the rest, then empty ones up to per).
  // Reduce-scatter: send block p-step, receive block p-step-1 into scratch
  // slot m % depth and combine it into place once arrived. All-gather: send
  // block p+1-step, receive block p-step in place. In both the segment sent
  // as message m >= per is the one received as message m - per
  // (detail::posted_ring). The all-gather starts once every send of the
  // reduce-scatter has finished, since it receives into blocks those sent.
  template <class Transport, class T, class Op>
  void posted(Transport& t, std::span<T> data, const Op& op, std::size_t p, std::size_t n, std::size_t seg,
              int left, int right, tag_t tag) {
    const std::size_t largest = detail::block(data.size(), n, 0).length;
    const std::size_t per = largest / seg + 1;
    const std::size_t total = (n - 1) * per;
    const std::size_t slot = std::max<std::size_t>(1, std::min(seg, largest));
    const std::size_t depth = detail::posted_depth(options_.in_flight);
    const std::span<T> slots = scratch_.get<T>(depth * slot);
    // Segment k of block c: its elements from k * seg, clipped to the block.
    auto segment = [&](std::size_t c, std::size_t k) {
      const std::span<T> b = detail::sub(data, detail::block(data.size(), n, c % n));
      const std::size_t at = std::min(k * seg, b.size());
      return b.subspan(at, std::min(seg, b.size() - at));
    };
    auto step = [per](std::size_t m) { return m / per; };
    auto part = [per](std::size_t m) { return m % per; };
    auto reduced = [&](std::size_t m) { return segment(p + 2 * n - step(m) - 1, part(m)); };
    detail::posted_ring(
        t, left, right, total, per, options_.in_flight,
        [&](std::size_t m) { return std::span<const T>(segment(p + n - step(m), part(m))); },
        [&](std::size_t m) { return slots.subspan((m % depth) * slot, reduced(m).size()); },
        [&](std::size_t m) {
          const std::span<const T> in = slots.subspan((m % depth) * slot, reduced(m).size());
          if (step(m) + 2 == n)
            detail::combine_finish(op, reduced(m), in, /*in_is_lower=*/true, static_cast<int>(n));
          else
            detail::combine(op, reduced(m), in, /*in_is_lower=*/true);
        },
        tag);
    detail::posted_ring(
        t, left, right, total, per, options_.in_flight,
        [&](std::size_t m) { return std::span<const T>(segment(p + 1 + n - step(m), part(m))); },
        [&](std::size_t m) { return segment(p + n - step(m), part(m)); }, [](std::size_t) {}, tag);
  }

  Options options_;
  detail::Scratch scratch_;
};

}  // namespace dssync
