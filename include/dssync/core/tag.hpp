#pragma once
// Message tags. Every transport accepts tags in [0, max_tag]: 32767 is the
// largest tag MPI guarantees (MPI_TAG_UB), so the same tags work everywhere.

#include <cstdint>
#include <string>

#include "dssync/core/error.hpp"

namespace dssync {

using tag_t = int;
inline constexpr tag_t max_tag = 32767;

// A tag for one collective call of a synchronizer: the low 7 bits name the
// channel (a bucket of a fused step, or a control message), the next 8 bits the
// iteration modulo 256. Messages between one pair of ranks with one tag are
// delivered in order, and every rank runs its collectives in program order, so
// tags that repeat after 256 iterations or 128 channels cannot be confused:
// the tag only needs to differ between calls that could be in flight at once
// between the same two ranks, and it makes a rank that ran ahead of its peer
// visible in the timeout message.
constexpr tag_t make_tag(std::uint64_t iteration, unsigned channel) noexcept {
  return static_cast<tag_t>(((iteration & 0xffu) << 7) | (channel & 0x7fu));
}

namespace detail {
// Where a point-to-point operation of `rank` with `peer` happens.
inline error_context p2p_context(int rank, int peer, tag_t tag) {
  return error_context{}.with_rank(rank).with_peer(peer).with_tag(tag);
}

// A tag in range, or configuration_error with `where`.
inline void check_tag(tag_t tag, const error_context& where) {
  if (tag < 0 || tag > max_tag)
    throw configuration_error("tag outside [0, " + std::to_string(max_tag) + "]", where);
}

// Every transport's argument check: a peer inside the world, a tag in range.
inline void check_peer_and_tag(int rank, int size, int peer, tag_t tag) {
  if (peer < 0 || peer >= size)
    throw configuration_error("peer " + std::to_string(peer) + " is outside the world of " +
                                  std::to_string(size) + " ranks",
                              p2p_context(rank, peer, tag));
  check_tag(tag, p2p_context(rank, peer, tag));
}
}  // namespace detail

}  // namespace dssync
