#pragma once
// Messages kept in flight around a ring, over a transport that can post them
// (transport_with_posting: MPI): the ring of handles one direction keeps,
// and the loop RingReduce's two phases and RingAllGather share, in which a
// member passes each segment on as soon as it has arrived.

#include <algorithm>
#include <array>
#include <cstddef>
#include <span>

#include "dssync/core/tag.hpp"

namespace dssync::detail {

// How many messages a collective keeps in flight each way when asked for
// `in_flight`: 1 to 16.
constexpr std::size_t max_in_flight = 16;
constexpr std::size_t posted_depth(int in_flight) noexcept {
  return std::clamp<std::size_t>(std::size_t(std::max(in_flight, 1)), 1, max_in_flight);
}

// The posted messages of one direction that a collective keeps in flight over
// a transport_with_posting: message i in slot i % depth(), at most 16 at once.
// Whatever is still pending when the ring goes (an error left the collective)
// is forgotten, so no request outlives the call on the caller's buffer.
template <class Transport>
class PostedRing {
 public:
  using handle = typename Transport::posted;
  static constexpr std::size_t capacity = max_in_flight;

  PostedRing(Transport& t, int in_flight) : t_(t), depth_(posted_depth(in_flight)) {}
  PostedRing(const PostedRing&) = delete;
  PostedRing& operator=(const PostedRing&) = delete;
  ~PostedRing() { t_.forget(std::span<handle>(slots_)); }

  std::size_t depth() const noexcept { return depth_; }
  handle& operator[](std::size_t i) noexcept { return slots_[i % depth_]; }
  void finish_all() {
    for (handle& h : slots_) t_.finish(h);
  }

 private:
  Transport& t_;
  std::size_t depth_;
  std::array<handle, capacity> slots_{};
};

// `total` messages each way around a ring, `in_flight` posted ahead: message
// m sends send_segment(m) to `right` and receives into recv_segment(m) from
// `left`. The segment sent as message m >= lag is the one received as message
// m - lag, so it leaves only once that receive has finished and arrived(m -
// lag) has run. arrived(j) runs for every receive, in order, before receive
// j + depth is posted, so recv_segment may hand out a slot of `depth`
// buffers (RingReduce's scratch) that arrived(j) has used up. Receives are
// also finished as the sends go, depth - 1 behind them: a member whose sends
// wait on its right neighbour's receives must keep posting its own, or
// around the ring every member waits for a receive its neighbour posts only
// later. Returns once every message has been sent and received.
template <class Transport, class SendSegment, class RecvSegment, class Arrived>
void posted_ring(Transport& t, int left, int right, std::size_t total, std::size_t lag, int in_flight,
                 SendSegment send_segment, RecvSegment recv_segment, Arrived arrived, tag_t tag) {
  PostedRing<Transport> in(t, in_flight), sends(t, in_flight);
  const std::size_t d = in.depth();
  std::size_t posted_in = 0, done_in = 0;
  auto post_ahead = [&] {
    for (; posted_in < total && posted_in < done_in + d; ++posted_in)
      in[posted_in] = t.post_recv(left, recv_segment(posted_in), tag);
  };
  auto receive_until = [&](std::size_t m) {
    while (done_in < m) {
      t.finish(in[done_in]);
      arrived(done_in++);
      post_ahead();  // into the slot just freed
    }
  };
  post_ahead();
  for (std::size_t m = 0; m < total; ++m) {
    if (m >= lag) receive_until(m - lag + 1);
    t.finish(sends[m]);
    sends[m] = t.post_send(right, send_segment(m), tag);
    if (m + 2 > d) receive_until(std::min(total, m + 2 - d));
  }
  receive_until(total);
  sends.finish_all();
}

}  // namespace dssync::detail
