#pragma once
// Pipelined chain broadcast: the members form a chain from the root, and the
// buffer travels down it in segments, every member passing segment i on while
// it receives segment i+1. Each member receives the buffer exactly once (the
// fewest bytes any broadcast moves: (g-1) buffers in all, as the tree, against
// the scatter's 2(g-1)), and all of the chain's links work at once, so once the
// pipeline is full the time is that of one copy per member; filling it costs
// g-2 segment hand-offs. The algorithm for large buffers where copies, not
// hops, are the cost: shared memory and ranks that share cores.
//
// How segments move. Over a transport that only blocks, a member's step is
// one sendrecv (segment i-1 on, segment i in), so each link waits for both of
// its ends at every step. Over a transport that keeps messages in flight
// (transport_with_posting: MPI), a member posts the receives of the next
// `in_flight` segments ahead and keeps as many sends going, so a neighbour
// late for one segment does not stop the others. Over MPITransport at n = 8,
// 16 MiB on 2 cores the chain took 1.22x MPI_Bcast's time blocking, 0.86x so
// (docs/benchmarks.md, "Under MPI").
//
// Segments: every segment but the last holds exactly `segment_bytes` (rounded
// down to whole elements, at least one), the last holds the remainder, which
// is shorter, possibly empty. Every sequence of segment lengths is therefore
// prefix-free: two members whose lengths differ disagree on some segment's
// length, and the receiving one sees a size_mismatch_error, never a wait for a
// segment its neighbour will not send.

#include <algorithm>
#include <cstddef>
#include <span>

#include "dssync/collective/gather_common.hpp"

namespace dssync {

class PipelineBroadcast {
 public:
  struct Options {
    // 0: the measured best for the transport (1 MiB where each segment is a
    // blocking exchange, 256 KiB where segments are kept in flight).
    std::size_t segment_bytes = 0;
    // Segments kept in flight each way where the transport can post messages
    // (at most 16); 0: the blocking exchange everywhere.
    int in_flight = 8;
  };

  PipelineBroadcast() = default;
  explicit PipelineBroadcast(Options o) : options_(o) {}

  // Whether segments are kept in flight over Transport (void: a blocking one).
  template <class Transport, class T>
  bool posts() const noexcept {
    return transport_with_posting<Transport, T> && options_.in_flight > 0;
  }

  // How many elements of T one full segment holds over Transport.
  template <class T, class Transport = void>
  std::size_t segment_length() const noexcept {
    const std::size_t bytes = options_.segment_bytes ? options_.segment_bytes
                              : posts<Transport, T>() ? posted_segment_bytes
                                                      : blocking_segment_bytes;
    return std::max<std::size_t>(1, bytes / sizeof(T));
  }

  // How many messages a buffer of `length` elements travels in: the full
  // segments and the (possibly empty) remainder.
  template <class T, class Transport = void>
  std::size_t segments(std::size_t length) const noexcept {
    return length / segment_length<T, Transport>() + 1;
  }

  static constexpr std::size_t blocking_segment_bytes = 1024 * 1024;
  static constexpr std::size_t posted_segment_bytes = 256 * 1024;

  // As TreeBroadcast::broadcast: every member's `data` becomes the root's, bit
  // for bit; `root` is a global rank that must be a member.
  template <transport Transport, element T>
  void broadcast(Transport& t, const Group& g, std::span<T> data, int root, tag_t tag = 0) {
    const detail::Member m = detail::member_of(t, g, tag);
    const int r = detail::root_position(t, g, root, tag);
    const int n = m.size;
    if (n == 1) return;
    const int v = (m.position - r + n) % n;  // place in the chain; the root is 0
    const std::size_t s = segment_length<T, Transport>();
    const std::size_t k = segments<T, Transport>(data.size());
    const Chain<T> c{data, s, k, g[(v - 1 + r + n) % n], g[(v + 1 + r) % n], v == 0, v == n - 1};
    if constexpr (transport_with_posting<Transport, T>) {
      if (posts<Transport, T>()) return posted(t, c, tag);
    }
    blocking(t, c, tag);
  }

 private:
  template <class T>
  struct Chain {
    std::span<T> data;
    std::size_t s;  // elements of a full segment
    std::size_t k;  // segments
    int prev, next;
    bool first, last;

    std::span<T> segment(std::size_t i) const {
      const std::size_t begin = i * s;
      return data.subspan(begin, std::min(s, data.size() - begin));
    }
    std::span<const T> out(std::size_t i) const { return segment(i); }
  };

  template <class Transport, class T>
  static void blocking(Transport& t, const Chain<T>& c, tag_t tag) {
    if (c.first) {
      for (std::size_t i = 0; i < c.k; ++i) t.send(c.next, c.out(i), tag);
    } else if (c.last) {
      for (std::size_t i = 0; i < c.k; ++i) t.recv(c.prev, c.segment(i), tag);
    } else {
      t.recv(c.prev, c.segment(0), tag);
      for (std::size_t i = 1; i < c.k; ++i)
        t.sendrecv(c.next, c.out(i - 1), c.prev, c.segment(i), tag);
      t.send(c.next, c.out(c.k - 1), tag);
    }
  }

  // Segment i's receive and send live in slot i % in_flight of two rings of
  // handles: segment i + in_flight is received once segment i has been, and
  // segment i is sent once segment i - in_flight has left. An error leaves
  // through the rings, which forget what is still pending.
  template <class Transport, class T>
  void posted(Transport& t, const Chain<T>& c, tag_t tag) {
    detail::PostedRing<Transport> in(t, options_.in_flight), out(t, options_.in_flight);
    const std::size_t d = in.depth();
    if (!c.first)
      for (std::size_t i = 0; i < std::min(d, c.k); ++i)
        in[i] = t.post_recv(c.prev, c.segment(i), tag);
    for (std::size_t i = 0; i < c.k; ++i) {
      if (!c.first) {
        t.finish(in[i]);
        if (i + d < c.k) in[i] = t.post_recv(c.prev, c.segment(i + d), tag);
      }
      if (!c.last) {
        t.finish(out[i]);
        out[i] = t.post_send(c.next, c.out(i), tag);
      }
    }
    out.finish_all();
  }

  Options options_;
};

}  // namespace dssync
