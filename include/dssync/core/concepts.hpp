#pragma once
// The concepts the policies of DSSync and the transports are checked against
// (the element types and reduce ops are in core/ops.hpp, and a policy family
// of its own may keep its concept beside it, as policy/topology.hpp does). A
// type that does not fit fails with the concept's name in the first line of
// the compiler's message.

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

#include "dssync/core/group.hpp"
#include "dssync/core/ops.hpp"
#include "dssync/core/tag.hpp"

namespace dssync {

// How bytes move between ranks: blocking typed point-to-point with a tag, and a
// full-duplex sendrecv (a ring step must send and receive at once, or it
// deadlocks on large buffers and halves its bandwidth). Messages between one
// pair of ranks with one tag arrive in the order they were sent, as in MPI.
// The rest of the contract, the same on every transport and written once in
// transport/contract.hpp (a transport calls it, tests/contract.hpp checks it):
// - one deadline per operation from its start, zero meaning none, two minutes
//   (default_timeout) unless the transport's options say otherwise; a
//   blocking call never waits forever;
// - a receive whose length differs from the matching send's throws
//   size_mismatch_error naming the peer, and the transport goes on;
// - a send to or receive from oneself is a configuration_error at once; a
//   sendrecv with oneself on both sides is a copy, on one side only refused;
// - the first failure sticks: every later call throws peer_error, whose
//   where().peer is the rank that failed (a timeout_error's: the peer waited
//   on).
template <class T>
concept transport = requires(T& t, const T& ct, int peer, tag_t tag, std::span<const float> out,
                             std::span<float> in, std::span<const std::byte> bytes_out,
                             std::span<std::byte> bytes_in) {
  { ct.rank() } -> std::convertible_to<int>;
  { ct.size() } -> std::convertible_to<int>;
  t.send(peer, out, tag);
  t.recv(peer, in, tag);
  t.sendrecv(peer, out, peer, in, tag);
  t.send(peer, bytes_out, tag);
  t.recv(peer, bytes_in, tag);
  t.sendrecv(peer, bytes_out, peer, bytes_in, tag);
};

// Optional: sendrecv_view(dst, out, src, count, use, tag) sends like sendrecv
// but lends the incoming elements to use(std::span<const T>) in place instead
// of copying them into a buffer (shared-memory transports can). Collectives
// combine straight from the view and skip a pass over memory.
template <class Tr, class T>
concept transport_with_view =
    transport<Tr> && requires(Tr& t, int peer, std::span<const T> out, std::size_t count,
                              void (*use)(std::span<const T>), tag_t tag) {
      t.sendrecv_view(peer, out, peer, count, use, tag);
    };

// Optional: messages kept in flight (MPI's Isend and Irecv). post_send(dst,
// out, tag) and post_recv(src, in, tag) start one message and return a
// Tr::posted handle at once (a default-made handle is none); finish(handle)
// waits for it under the transport's rules (the deadline from the post) and
// throws what send and recv throw; forget(handles) gives up on the unfinished
// ones after an error without waiting. Where a message moves only while its
// ranks wait, a collective that keeps several in flight does not stall its
// neighbours while it waits for one (PipelineBroadcast). The transport's own
// calls move them: a caller that waits elsewhere meanwhile (MPITransport:
// another channel, or MPI directly) may leave them unstarted.
template <class Tr, class T>
concept transport_with_posting =
    transport<Tr> && std::default_initializable<typename Tr::posted> &&
    requires(Tr& t, int peer, std::span<const T> out, std::span<T> in, tag_t tag,
             typename Tr::posted& p, std::span<typename Tr::posted> ps) {
      { t.post_send(peer, out, tag) } -> std::same_as<typename Tr::posted>;
      { t.post_recv(peer, in, tag) } -> std::same_as<typename Tr::posted>;
      t.finish(p);
      t.forget(ps);
    };

// Optional: a transport may say how large the messages should be into which a
// collective cuts a large block (static constexpr std::size_t segment_bytes).
// Without it, 256 KiB: a received segment is combined while it is still in
// L2. A network transport, where each message is a hand-off and a wait, says
// SIZE_MAX: one message a block.
template <class Tr>
constexpr std::size_t transport_segment_bytes() {
  if constexpr (requires { { Tr::segment_bytes } -> std::convertible_to<std::size_t>; })
    return Tr::segment_bytes;
  else
    return 256 * 1024;
}

// A collective algorithm: all_reduce(transport, group, data, op, tag) combines
// `data` element-wise over the ranks of `group`, in place, and leaves bitwise
// identical results on every member. It must take any op (checked with two).
template <class R, class Transport, class T = float>
concept reduce_policy =
    transport<Transport> && element<T> &&
    requires(R& r, Transport& t, const Group& g, std::span<T> data, tag_t tag) {
      r.all_reduce(t, g, data, Sum{}, tag);
      r.all_reduce(t, g, data, Max{}, tag);
    };

// A broadcast: broadcast(transport, group, data, root, tag) leaves the
// root's `data` (root a global rank, a member of the group) bitwise on every
// member.
template <class B, class Transport, class T = float>
concept broadcast_policy = transport<Transport> && element<T> &&
                           requires(B& b, Transport& t, const Group& g, std::span<T> data, int root,
                                    tag_t tag) { b.broadcast(t, g, data, root, tag); };

// An all-gather of equal lengths: all_gather(transport, group, mine, out, tag)
// leaves every member's `mine` in `out`, in group position order.
template <class A, class Transport, class T = float>
concept all_gather_policy =
    transport<Transport> && element<T> &&
    requires(A& a, Transport& t, const Group& g, std::span<const T> mine, std::span<T> out,
             tag_t tag) { a.all_gather(t, g, mine, out, tag); };

// Lays out the canonical groups of a world of n ranks at an iteration, before
// any shuffle: how many, of which sizes, and which ranks share one. The group
// size is the synchronizer's option; a grouping may read it as a target (fixed
// sizes) or ignore it (sizes given by the hardware).
template <class G>
concept grouping_policy =
    std::copy_constructible<G> &&
    requires(const G& g, int n, int group_size, std::uint64_t iteration, Partition& out) {
      g.layout(n, group_size, iteration, out);
    };

// Decides which ranks share a group at an iteration: rewrites the layout in
// place from (seed, iteration) alone, so that every rank computes the same
// partition without exchanging a message. A shuffle that needs the
// synchronizer's group size (ButterflyShuffle counts digits in base g) takes it
// as a third argument: shuffle(seed, iteration, group_size, partition). It is
// const: a synchronizer's partition(t) may be asked from several threads at
// once, so a shuffle keeps no mutable state.
namespace detail {
// shuffle(seed, iteration, p) rewrites p: it takes a Partition&. One that also
// takes a temporary takes it by value or by const reference and would
// silently shuffle a copy.
template <class S>
concept shuffles_in_place =
    requires(const S& s, std::uint64_t seed, std::uint64_t iteration, Partition& inout) {
      s.shuffle(seed, iteration, inout);
    } && !requires(const S& s, std::uint64_t seed, std::uint64_t iteration) {
      s.shuffle(seed, iteration, Partition{});
    };
template <class S>
concept shuffles_in_place_with_group_size =
    requires(const S& s, std::uint64_t seed, std::uint64_t iteration, int group_size,
             Partition& inout) { s.shuffle(seed, iteration, group_size, inout); } &&
    !requires(const S& s, std::uint64_t seed, std::uint64_t iteration, int group_size) {
      s.shuffle(seed, iteration, group_size, Partition{});
    };
}  // namespace detail

template <class S>
concept shuffle_policy = std::copy_constructible<S> && (detail::shuffles_in_place<S> ||
                                                        detail::shuffles_in_place_with_group_size<S>);

}  // namespace dssync
