#pragma once
// The fixed sizes and intervals of TcpTransport, in one place; the ones a
// user may change are in TcpOptions.

#include <chrono>
#include <cstddef>

namespace dssync::detail::tcp_tuning {

using namespace std::chrono_literals;

// A message that arrives before its receive is kept in memory up to this
// size; a larger one waits in the socket (TCP's own flow control), so memory
// does not grow with what peers send.
inline constexpr std::size_t eager_limit = 64 << 10;
// Reading into a caller's buffer, the socket thread is woken per this many
// bytes (SO_RCVLOWAT), or the message's end: fewer wake-ups without a stall
// (docs/benchmarks.md, "TCP read pieces").
inline constexpr std::size_t read_piece = 1 << 20;
// The payload of a message nobody waits for any more is read into this
// much scratch at a time.
inline constexpr std::size_t discard_piece = 64 << 10;
// Emptied stash buffers kept for reuse, so that a running job allocates none.
inline constexpr std::size_t pooled_buffers = 64;

// An accepted connection must send its hello within this (or the rendezvous
// timeout, if shorter), or it is refused: a silent stranger holds no slot.
inline constexpr std::chrono::milliseconds greeting_time = 5s;
// At most this many accepted connections wait for their hello at once.
inline constexpr int max_handshakes = 32;
// Rank 0 may not listen yet when a rank starts: try again this often.
inline constexpr std::chrono::milliseconds master_retry = 100ms;
// After its own rendezvous deadline a rank waits this much longer for rank
// 0's verdict, which names the ranks that never arrived.
inline constexpr std::chrono::milliseconds verdict_wait = 2s;

// A connection that sent nothing for peer_timeout is dead; a heartbeat goes
// out on an idle one this many times per peer_timeout, so that a live peer
// is never near the bound.
inline constexpr int heartbeats_per_timeout = 5;
// fail() waits at most this long for the socket thread to record the
// failure, so that failed() says so when it returns.
inline constexpr std::chrono::milliseconds fail_wait = 1s;
// A caller that gives up waits at most this long for the socket thread to
// let go of its buffers: far beyond a cancelled read's report, and a hung
// socket thread must not hang the caller forever.
inline constexpr std::chrono::milliseconds abandon_bound = 10s;

// After the goodbye, peers get this long to close their side...
inline constexpr std::chrono::milliseconds goodbye_grace = 1000ms;
// ...and this long if the transport failed: its peers are failing too and
// close at once.
inline constexpr std::chrono::milliseconds failed_grace = 200ms;
// ...and, while a peer has not yet taken what was sent to it (a message
// waiting in its socket for its receive), the close looks again this often,
// until the transport's timeout.
inline constexpr std::chrono::milliseconds delivery_poll = 20ms;
// The destructor waits at most this long for the close before it stops the
// socket thread anyway.
inline constexpr std::chrono::milliseconds stop_bound = 3s;

}  // namespace dssync::detail::tcp_tuning
