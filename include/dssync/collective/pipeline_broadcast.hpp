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
    std::size_t segment_bytes = 1024 * 1024;
  };

  PipelineBroadcast() = default;
  explicit PipelineBroadcast(Options o) : options_(o) {}

  // How many elements of T one full segment holds.
  template <class T>
  std::size_t segment_length() const noexcept {
    return std::max<std::size_t>(1, options_.segment_bytes / sizeof(T));
  }

  // How many messages a buffer of `length` elements travels in: the full
  // segments and the (possibly empty) remainder.
  template <class T>
  std::size_t segments(std::size_t length) const noexcept {
    return length / segment_length<T>() + 1;
  }

  // As TreeBroadcast::broadcast: every member's `data` becomes the root's, bit
  // for bit; `root` is a global rank that must be a member.
  template <transport Transport, element T>
  void broadcast(Transport& t, const Group& g, std::span<T> data, int root, tag_t tag = 0) {
    const detail::Member m = detail::member_of(t, g);
    const int r = detail::root_position(t, g, root, tag);
    const int n = m.size;
    if (n == 1) return;
    const int v = (m.position - r + n) % n;  // place in the chain; the root is 0
    const std::size_t s = segment_length<T>();
    const std::size_t k = segments<T>(data.size());
    auto segment = [&](std::size_t i) {
      const std::size_t begin = i * s;
      return data.subspan(begin, std::min(s, data.size() - begin));
    };
    auto out = [&](std::size_t i) { return std::span<const T>(segment(i)); };
    const int prev = g[(v - 1 + r + n) % n];
    const int next = g[(v + 1 + r) % n];
    if (v == 0) {
      for (std::size_t i = 0; i < k; ++i) t.send(next, out(i), tag);
    } else if (v == n - 1) {
      for (std::size_t i = 0; i < k; ++i) t.recv(prev, segment(i), tag);
    } else {
      t.recv(prev, segment(0), tag);
      for (std::size_t i = 1; i < k; ++i) t.sendrecv(next, out(i - 1), prev, segment(i), tag);
      t.send(next, out(k - 1), tag);
    }
  }

 private:
  Options options_;
};

}  // namespace dssync
