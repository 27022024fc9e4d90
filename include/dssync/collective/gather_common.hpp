#pragma once
// Pieces the broadcasts, all-gathers and the barrier share: the argument
// checks they make before moving a byte (a root that is a member, an output of
// the right length), and one exchange of pieces whose counts may differ
// between the send and the receive side.

#include <algorithm>
#include <array>
#include <cstddef>
#include <span>
#include <string>

#include "dssync/collective/common.hpp"
#include "dssync/core/concepts.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/group.hpp"

namespace dssync::detail {

// Where a collective call of this rank happens, for its configuration errors.
template <transport Transport>
error_context call_context(const Transport& t, const Group& g, tag_t tag) {
  return error_context{}.with_rank(t.rank()).with_group(g.ranks()).with_tag(tag);
}

// The group position of `root`, a global rank. A root outside the group is a
// configuration error on every member (each sees the same group and root), so
// no member starts a broadcast the others refuse.
template <transport Transport>
int root_position(const Transport& t, const Group& g, int root, tag_t tag) {
  const int pos = g.position_of(root);
  if (pos < 0)
    throw configuration_error(
        "the broadcast's root, rank " + std::to_string(root) + ", is not a member of the group",
        call_context(t, g, tag));
  return pos;
}

// An all-gather's output holds every member's contribution: g times its own.
template <transport Transport>
void check_gather_output(const Transport& t, const Group& g, std::size_t mine, std::size_t out,
                         tag_t tag) {
  if (out != static_cast<std::size_t>(g.size()) * mine)
    throw configuration_error("all_gather's output has " + std::to_string(out) +
                                  " elements; a group of " + std::to_string(g.size()) +
                                  " members contributing " + std::to_string(mine) + " each needs " +
                                  std::to_string(static_cast<std::size_t>(g.size()) * mine),
                              call_context(t, g, tag));
}

// An all-gather-v's counts: one per member. `call` names the function.
template <transport Transport>
void check_gather_counts(const Transport& t, const Group& g, std::size_t counts, tag_t tag,
                         const char* call = "all_gather_v") {
  if (counts != static_cast<std::size_t>(g.size()))
    throw configuration_error(std::string(call) + "'s counts have " + std::to_string(counts) +
                                  " entries for a group of " + std::to_string(g.size()) + " members",
                              call_context(t, g, tag));
}

// A contiguous range of the output cut in at most two pieces (a cyclic range
// of blocks that wraps past the end).
template <class T>
struct Pieces {
  std::span<T> piece[2];
  int count = 0;
};

// The cyclic range of `blocks` blocks of `len` elements starting at block
// `first` in a buffer of `n` blocks: one piece, or two when it wraps.
template <class T>
Pieces<T> cyclic_blocks(std::span<T> buffer, std::size_t len, int n, int first, int blocks) {
  Pieces<T> p;
  const int head = std::min(blocks, n - first);
  p.piece[p.count++] =
      buffer.subspan(static_cast<std::size_t>(first) * len, static_cast<std::size_t>(head) * len);
  if (blocks > head)
    p.piece[p.count++] = buffer.first(static_cast<std::size_t>(blocks - head) * len);
  return p;
}

// Sends `out`'s pieces to dst and receives `in`'s from src, piece k with piece
// k, as sendrecvs while both sides have one and as plain sends or receives for
// the rest. Both ends of every message know its piece count (it follows from
// the group size and positions alone), so the messages match; every rank posts
// its send and receive of one step together, so none waits on a rank that
// waits on it.
template <transport Transport, class T>
void exchange_pieces(Transport& t, int dst, const Pieces<T>& out, int src, const Pieces<T>& in,
                     tag_t tag) {
  const int steps = std::max(out.count, in.count);
  for (int k = 0; k < steps; ++k) {
    const bool sending = k < out.count;
    const bool receiving = k < in.count;
    if (sending && receiving)
      t.sendrecv(dst, std::span<const T>(out.piece[k]), src, in.piece[k], tag);
    else if (sending)
      t.send(dst, std::span<const T>(out.piece[k]), tag);
    else
      t.recv(src, in.piece[k], tag);
  }
}

// The posted messages of one direction that a collective keeps in flight over
// a transport_with_posting: message i in slot i % depth(), at most 16 at once.
// Whatever is still pending when the ring goes (an error left the collective)
// is forgotten, so no request outlives the call on the caller's buffer.
template <class Transport>
class PostedRing {
 public:
  using handle = typename Transport::posted;
  static constexpr std::size_t capacity = 16;

  PostedRing(Transport& t, int in_flight)
      : t_(t), depth_(std::clamp<std::size_t>(std::size_t(std::max(in_flight, 1)), 1, capacity)) {}
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

}  // namespace dssync::detail
