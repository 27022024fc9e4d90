#pragma once
// Pieces several collectives share: the balanced split of a buffer into blocks,
// the fold that lets power-of-two algorithms serve any group size, and the
// argument checks every collective makes before it moves a byte.

#include <bit>
#include <cstddef>
#include <span>

#include "dssync/core/concepts.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/group.hpp"
#include "dssync/core/ops.hpp"
#include "dssync/core/scratch.hpp"
#include "dssync/core/tag.hpp"

namespace dssync::detail {

// Block i of `parts` nearly equal blocks of n elements: the first n % parts
// blocks are one element longer.
struct Block {
  std::size_t offset;
  std::size_t length;
};
constexpr Block block(std::size_t n, std::size_t parts, std::size_t i) noexcept {
  const std::size_t base = n / parts;
  const std::size_t extra = n % parts;
  return {i * base + (i < extra ? i : extra), base + (i < extra ? 1 : 0)};
}

template <class T>
std::span<T> sub(std::span<T> s, std::size_t offset, std::size_t length) noexcept {
  return s.subspan(offset, length);
}
template <class T>
std::span<T> sub(std::span<T> s, Block b) noexcept {
  return s.subspan(b.offset, b.length);
}

// One exchange step of a reduction: send `out` to dst, receive as many
// elements as `inout` has from src and combine them into it, the incoming ones
// as the left operand when they come from a lower position. With
// finish_size > 0 this is the block's last combine, and the op's finishing
// step (Average's division by finish_size) is folded into it. Over a transport
// with sendrecv_view it combines straight from the peer's memory; otherwise it
// receives into scratch first. `out` and `inout` must not overlap: the peer
// may still be reading `out` while `inout` changes.
template <transport Transport, class T, class Op>
void exchange_combine(Transport& t, int dst, std::span<const T> out, int src, std::span<T> inout,
                      const Op& op, bool in_is_lower, Scratch& scratch, tag_t tag,
                      int finish_size = 0) {
  auto apply = [&](std::span<const T> in) {
    if (finish_size > 0)
      combine_finish(op, inout, in, in_is_lower, finish_size);
    else
      combine(op, inout, in, in_is_lower);
  };
  if constexpr (transport_with_view<Transport, T>) {
    t.sendrecv_view(dst, out, src, inout.size(), apply, tag);
    // sendrecv_view does not call `use` for an empty block, which still has
    // nothing to finish.
  } else {
    const auto in = scratch.get<T>(inout.size());
    t.sendrecv(dst, out, src, in, tag);
    apply(std::span<const T>(in));
  }
}

// This rank's place in a collective: its position in the group and the group
// size. Validates the group against the transport first, and the tag: the
// transport checks it only when a message moves, and a group of one moves
// none, so without this check it would accept a tag a larger group refuses.
struct Member {
  int position;
  int size;
};
template <transport Transport>
Member member_of(const Transport& t, const Group& g, tag_t tag) {
  const int position = checked_position(g, t.rank(), t.size());
  if (tag < 0 || tag > max_tag)  // the context (a group string) only on the way out
    check_tag(tag, error_context{}.with_rank(t.rank()).with_group(g.ranks()).with_tag(tag));
  return {position, g.size()};
}

// Groups whose size is not a power of two run a power-of-two algorithm on
// p2 = bit_floor(g) of their members: among the first 2r positions
// (r = g - p2), each even position hands its buffer to the odd one after it and
// sits out, and gets the result back at the end. Positions of the p2 that
// take part are renumbered 0..p2-1.
struct Fold {
  int p2;          // members that take part
  int r;           // pairs folded together
  int virtual_pos; // this member's number among the p2, or -1 if it sits out

  explicit Fold(Member m) noexcept
      : p2(static_cast<int>(std::bit_floor(static_cast<unsigned>(m.size)))),
        r(m.size - p2),
        virtual_pos(m.position < 2 * r ? (m.position % 2 ? m.position / 2 : -1)
                                       : m.position - r) {}

  // The group position of virtual position v.
  int position(int v) const noexcept { return v < r ? 2 * v + 1 : v + r; }
};

// The fold's first half: even positions below 2r send their whole buffer to the
// next position, which combines it in.
template <transport Transport, class T, class Op>
void fold_in(Transport& t, const Group& g, Member m, const Fold& f, std::span<T> data,
             const Op& op, Scratch& scratch, tag_t tag) {
  if (m.position >= 2 * f.r) return;
  if (f.virtual_pos < 0) {
    t.send(g[m.position + 1], std::span<const T>(data), tag);
  } else {
    auto in = scratch.get<T>(data.size());
    t.recv(g[m.position - 1], in, tag);
    combine_left(op, data, std::span<const T>(in));
  }
}

// The fold's second half: the result goes back to the members that sat out.
template <transport Transport, class T>
void fold_out(Transport& t, const Group& g, Member m, const Fold& f, std::span<T> data,
              tag_t tag) {
  if (m.position >= 2 * f.r) return;
  if (f.virtual_pos < 0)
    t.recv(g[m.position + 1], data, tag);
  else
    t.send(g[m.position - 1], std::span<const T>(data), tag);
}

// Runs a power-of-two algorithm over a group of any size: fold in, body(fold)
// on the p2 members that take part (it must finish the op), fold out.
template <transport Transport, class T, class Op, class Body>
void run_folded(Transport& t, const Group& g, std::span<T> data, const Op& op, Scratch& scratch,
                tag_t tag, Body&& body) {
  const Member m = member_of(t, g, tag);
  if (m.size == 1) {
    finish(op, data, 1);
    return;
  }
  scratch.reserve<T>(data.size());  // the most any position needs (fold_in, a full exchange)
  const Fold f(m);
  fold_in(t, g, m, f, data, op, scratch, tag);
  if (f.virtual_pos >= 0) body(f);
  fold_out(t, g, m, f, data, tag);
}

}  // namespace dssync::detail
