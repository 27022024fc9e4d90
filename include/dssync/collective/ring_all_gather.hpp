#pragma once
// Ring all-gather: every member's contribution travels once around the ring of
// group positions, g-1 steps that each pass one contribution to the right
// neighbour and take one from the left, straight into the output. Every member
// sends and receives (g-1)/g of the output, the least an all-gather can, and
// talks only to its two neighbours; its g-1 latencies make it poor for small
// contributions.
//
// Over a transport that keeps messages in flight (transport_with_posting:
// MPI) each contribution travels in segments, `in_flight` of them posted
// ahead each way, and a segment is passed on as soon as it has arrived, so a
// step no longer waits for both of its links at once (PipelineBroadcast's
// reason, docs/design.md). Segments are prefix-free as the chain's: every one
// but the last of a contribution is full, the last shorter, possibly empty.

#include <algorithm>
#include <cstddef>
#include <span>

#include "dssync/collective/gather_common.hpp"

namespace dssync {

class RingAllGather {
 public:
  struct Options {
    // Where the transport can post messages: the segment size, and how many
    // segments are kept in flight each way (at most 16; 0: one blocking
    // sendrecv a step everywhere).
    std::size_t segment_bytes = 256 * 1024;
    int in_flight = 8;
  };

  RingAllGather() = default;
  explicit RingAllGather(Options o) : options_(o) {}

  // Whether contributions travel in segments over Transport, and how many
  // elements of T a full segment holds there.
  template <class Transport, class T>
  bool posts() const noexcept {
    return transport_with_posting<Transport, T> && options_.in_flight > 0;
  }
  template <class T>
  std::size_t segment_length() const noexcept {
    return std::max<std::size_t>(1, options_.segment_bytes / sizeof(T));
  }

  // out[p * mine.size() + i] becomes element i of the member at position p.
  // out.size() must be g.size() * mine.size() (configuration_error otherwise);
  // members passing different lengths get size_mismatch_error. `mine` may be
  // this member's own block of `out` (gathering in place).
  template <transport Transport, element T>
  void all_gather(Transport& t, const Group& g, std::span<const T> mine, std::span<T> out,
                  tag_t tag = 0) {
    const detail::Member m = detail::member_of(t, g, tag);
    detail::check_gather_output(t, g, mine.size(), out.size(), tag);
    const std::size_t len = mine.size();
    const int n = m.size;
    const int p = m.position;
    auto block = [&](int b) { return out.subspan(static_cast<std::size_t>(b) * len, len); };
    if (mine.data() != block(p).data()) std::copy(mine.begin(), mine.end(), block(p).begin());
    const int right = g[(p + 1) % n];
    const int left = g[(p + n - 1) % n];
    if constexpr (transport_with_posting<Transport, T>) {
      if (options_.in_flight > 0) return posted(t, out, len, p, n, left, right, tag);
    }
    // At step s pass on the contribution of position p-s (this member's own at
    // first) and receive that of position p-s-1.
    for (int s = 0; s + 1 < n; ++s)
      t.sendrecv(right, std::span<const T>(block((p - s + n) % n)), left,
                 block((p - s - 1 + 2 * n) % n), tag);
  }

 private:
  // Message m of either direction is segment m % per of step m / per: sent,
  // the contribution of position p - step; received, that of p - step - 1.
  // So the segment sent as message m (step >= 1) is the one received as
  // message m - per, and receives finish in order, each freeing its slot for
  // the receive `in_flight` messages later. Receives are also finished as the
  // sends go, d - 1 behind them: a member whose sends wait on its right
  // neighbour's receives must keep posting its own, or around the ring every
  // member waits for a receive its neighbour posts only later.
  template <class Transport, class T>
  void posted(Transport& t, std::span<T> out, std::size_t len, int p, int n, int left, int right,
              tag_t tag) {
    detail::PostedRing<Transport> in(t, options_.in_flight), sends(t, options_.in_flight);
    const std::size_t d = in.depth();
    const std::size_t s = segment_length<T>();
    const std::size_t per = len / s + 1;
    const std::size_t total = std::size_t(n - 1) * per;
    auto segment = [&](std::size_t m, int behind) {
      const int step = static_cast<int>(m / per);
      const std::size_t b = std::size_t((p - step - behind + 2 * n) % n);
      const std::size_t begin = (m % per) * s;
      return out.subspan(b * len + begin, std::min(s, len - begin));
    };
    std::size_t posted_in = 0, done_in = 0;
    auto post_ahead = [&] {
      for (; posted_in < total && posted_in < done_in + d; ++posted_in)
        in[posted_in] = t.post_recv(left, segment(posted_in, 1), tag);
    };
    auto receive_until = [&](std::size_t m) {
      while (done_in < m) {
        t.finish(in[done_in++]);
        post_ahead();  // into the slot just freed
      }
    };
    post_ahead();
    for (std::size_t m = 0; m < total; ++m) {
      if (m >= per) receive_until(m - per + 1);
      t.finish(sends[m]);
      sends[m] = t.post_send(right, std::span<const T>(segment(m, 0)), tag);
      if (m + 2 > d) receive_until(std::min(total, m + 2 - d));
    }
    receive_until(total);
    sends.finish_all();
  }

  Options options_;
};

}  // namespace dssync
