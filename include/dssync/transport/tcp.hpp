#pragma once
// TcpTransport: the transport concept over plain TCP, with Boost.Asio. Link
// dssync::tcp.
//
// Start-up, the way torch.distributed's env:// does it. Every process knows its
// rank, the world size, the master's address and port and a job token
// (TcpOptions, or from_env(): DSSYNC_RANK, DSSYNC_WORLD_SIZE,
// DSSYNC_MASTER_ADDR, DSSYNC_MASTER_PORT, DSSYNC_JOB_TOKEN). Rank 0 serves a
// rendezvous on the master port; the ranks then connect a full mesh, eagerly,
// so that a job that cannot connect fails at start-up and not in its
// thousandth step. The constructor returns when this rank's n - 1 connections
// are up (tcp/rendezvous.hpp).
//
// Moving bytes. A background thread per transport runs the sockets; the
// calling thread hands it operations and sleeps until they are done: waiting
// never spins a core. sendrecv moves both directions at once. A message whose
// receive is posted is read straight into the caller's buffer; one that
// arrives first is kept if it is small (up to 64 KiB), and otherwise waits in
// the socket until its receive is posted (tcp/connection.hpp).
//
// Failures. Nothing waits forever:
// - every operation ends within TcpOptions::timeout from its start (zero: no
//   deadline), with timeout_error naming the peer it waited on, and what that
//   peer sent instead if anything (the contract: transport/contract.hpp);
// - a peer whose connection closes or resets without a goodbye, or that sends
//   nothing for peer_timeout (not even a heartbeat: it is stopped or cut off),
//   or that breaks the protocol, is dead: the transport fails, and every rank
//   that sees it tells the others, so that every waiting rank throws
//   peer_error naming the dead rank. A failed transport throws peer_error at
//   once on every later call; make a new one to go on.
// - a size mismatch throws size_mismatch_error and leaves the transport usable.
// - strangers (the wrong magic number or job token, a rank outside the world
//   or already connected, no hello within a few seconds) are refused, closed
//   and logged (TcpOptions::log), and the job goes on (tcp/admission.hpp).
//
// Channels (transport/background.hpp). channel(c) is this rank's channel c
// (TcpOptions::channels of them, 2 unless set; channel 0 is the transport
// itself): a TcpTransport handle that shares this one's sockets and socket
// thread, whose messages match only receives on channel c of the other
// ranks. One thread uses a channel at a time; threads on different channels
// use the transport at once (dssync::Background runs a second one). Their
// messages to one peer share its connection and take turns a whole message
// at a time (tcp/connection.hpp says how a message that arrives early on one
// channel is kept from blocking another). Deadlines are per operation; a
// failure on any channel fails every channel. The last handle to go closes
// the transport: it says goodbye, and waits (up to the timeout) until every
// peer has taken what this rank sent it, so a message sent just before the
// end stays receivable.
//
// How it is built: docs/design.md, "The TCP transport"; the bytes on the
// wire: tcp/wire.hpp.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>

#include "dssync/core/error.hpp"
#include "dssync/core/ops.hpp"
#include "dssync/core/tag.hpp"
#include "dssync/transport/background.hpp"
#include "dssync/transport/contract.hpp"
#include "dssync/transport/tcp/core.hpp"
#include "dssync/transport/tcp/op.hpp"
#include "dssync/transport/tcp/options.hpp"

namespace dssync {

class TcpTransport {
 public:
  // Meets the other ranks (see the top of this file) and returns when this
  // rank is connected to all of them. Throws timeout_error naming the ranks
  // that did not arrive within rendezvous_timeout, or configuration_error.
  explicit TcpTransport(TcpOptions options)
      : core_(std::make_shared<detail::TcpCore>(std::move(options))) {}
  // From the DSSYNC_* environment variables (TcpOptions::from_env).
  TcpTransport() : TcpTransport(TcpOptions::from_env()) {}

  TcpTransport(TcpTransport&&) noexcept = default;
  TcpTransport& operator=(TcpTransport&&) noexcept = default;

  // Collectives send a block as one message (transport_segment_bytes): every
  // message is a hand-off to the socket thread and a wait (docs/benchmarks.md,
  // "TCP segments").
  static constexpr std::size_t segment_bytes = SIZE_MAX;

  // How many channels the transport has, and which one this handle is.
  int channels() const noexcept { return core_->options().channels; }
  int channel_index() const noexcept { return channel_; }
  // This rank's channel c, a handle on the same transport (see the top of
  // this file). Throws configuration_error if there is no channel c.
  TcpTransport channel(int c) const {
    detail::check_channel(rank(), channels(), c);
    return TcpTransport(core_, c);
  }
  // The checked mode's numbering of this rank's synchronizers on this channel
  // (transport/contract.hpp).
  std::uint64_t next_checked_ordinal() noexcept { return core_->next_checked_ordinal(channel_); }

  int rank() const noexcept { return core_->rank(); }
  int size() const noexcept { return core_->size(); }
  const TcpOptions& options() const noexcept { return core_->options(); }
  // Connections refused so far (strangers, wrong tokens, duplicate ranks).
  std::size_t refused_connections() const noexcept { return core_->refused(); }
  // The port this rank's peers connected to.
  std::uint16_t listen_port() const noexcept { return core_->listen_port(); }
  // Whether a peer died, a notice arrived, an operation timed out, or fail()
  // was called: then every operation throws peer_error.
  bool failed() const { return core_->failed(); }
  // Tells every other rank that this one failed for `reason`, and fails this
  // transport. For a program that catches an error of its own and cannot go on.
  void fail(std::string_view reason) { core_->fail(reason); }

  template <class T>
  requires element<std::remove_const_t<T>>
  void send(int dst, std::span<T> data, tag_t tag) {
    detail::check_send(rank(), size(), dst, tag);
    auto op = detail::TcpOp::send_of(dst, channel_, tag, std::as_bytes(data));
    core_->run(&op, nullptr, where(dst, tag));
  }

  template <class T>
  requires element<T>
  void recv(int src, std::span<T> data, tag_t tag) {
    detail::check_recv(rank(), size(), src, tag);
    auto op = detail::TcpOp::receive_into(src, channel_, tag, std::as_writable_bytes(data));
    core_->run(&op, nullptr, where(src, tag));
  }

  // Both directions at once. dst and src may both be this rank (a copy).
  template <class T, class U>
  requires element<std::remove_const_t<T>> && element<U>
  void sendrecv(int dst, std::span<T> out, int src, std::span<U> in, tag_t tag) {
    if (detail::check_sendrecv(rank(), size(), dst, src, tag)) {
      core_->check_usable(where(src, tag));
      return detail::self_exchange(std::as_bytes(out), std::as_writable_bytes(in), rank(), tag);
    }
    auto r = detail::TcpOp::receive_into(src, channel_, tag, std::as_writable_bytes(in));
    auto s = detail::TcpOp::send_of(dst, channel_, tag, std::as_bytes(out));
    core_->run(&r, &s, where(src, tag));
  }

 private:
  TcpTransport(std::shared_ptr<detail::TcpCore> core, int c) : core_(std::move(core)), channel_(c) {}

  error_context where(int peer, tag_t tag) const { return detail::p2p_context(rank(), peer, tag); }

  // Shared by the handles of every channel; the socket thread stops with the last.
  std::shared_ptr<detail::TcpCore> core_;
  int channel_ = 0;
};

}  // namespace dssync
