#pragma once
// The transport contract, written once. What every transport must do the same
// way lives here, and the four transports (inproc, mpi, tcp, sim) call it:
//
// - Deadlines. One deadline per operation, measured from the operation's
//   start (a sendrecv's send and receive share it). A timeout of zero means
//   no deadline: the operation waits until it completes or the transport
//   fails. default_timeout is every transport's default.
// - Arguments. A peer outside the world or a tag outside [0, max_tag] is a
//   configuration_error at once. A blocking send to oneself or receive from
//   oneself can never complete and is refused at once; a sendrecv with this
//   rank on both sides is a local copy (sizes checked), and with this rank on
//   one side only it is refused at once.
// - The first failure sticks. A transport that timed out, heard that a peer
//   failed, or was fail()ed stays failed: every later operation throws
//   peer_error at once (a copy with itself too), in the words of
//   StickyFailure::earlier. The failure's text is the error's message, the
//   same on every transport. (The in-process world and the simulator fail as
//   a whole at a rank's timeout, the simulator's being its deadlock, and when
//   a rank's function throws.) An operation with a peer that has returned
//   (closed its transport) fails the transport too, naming that peer, on the
//   transports that hear of it (in process, TCP; MPI's and the simulator's
//   end at the deadline and the deadlock). A size mismatch and a bad
//   argument leave the transport usable; a sendrecv whose receive did not fit
//   still delivers its send.
// - A message whose length is not its receive's is a size_mismatch_error
//   naming both lengths; nothing is written past the receive's buffer.
// - One meaning of where().peer. A size_mismatch_error names the peer whose
//   message did not fit; a timeout_error the peer the operation waited on; a
//   peer_error the rank that failed (the cause), which is this rank itself
//   when its own timeout or fail() failed the transport.
// - Channels (optional; transport/background.hpp). Channel c of a rank talks
//   only to channel c of the others, and everything above holds per channel;
//   a failure on one channel fails them all.
// - Checked ordinals. Each (rank, channel) numbers the checked synchronizers
//   made on it, 0, 1, 2, ..., whatever thread makes them
//   (next_checked_ordinal(); CheckedOrdinals below).
// - Moves. A transport handle is movable; a moved-from one may only be
//   destroyed or assigned to (its calls are undefined, as a moved-from
//   std::unique_ptr's are).
// - One wording. The texts below are the only ones the transports use for
//   these failures, so that a log reads the same whatever the transport.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "dssync/core/error.hpp"
#include "dssync/core/tag.hpp"

namespace dssync {

// How long a blocking operation may wait for its peers on every transport,
// unless its options say otherwise. Long enough for a slow step of a large
// model on a loaded machine; short enough that a hung job ends on its own.
inline constexpr std::chrono::milliseconds default_timeout = std::chrono::minutes(2);

// The most channels a rank may have, on every transport (TCP's frames carry
// the channel in one byte).
inline constexpr int max_channels = 255;

namespace detail {

// Throws configuration_error unless `channels` is in 1..max_channels and the
// timeout is at least 0 (0: no deadline); `options` names the struct
// ("InProcOptions").
inline void check_channels_and_timeout(const std::string& options, int channels,
                                       std::chrono::milliseconds timeout,
                                       const error_context& at = {}) {
  if (channels < 1 || channels > max_channels)
    throw configuration_error(options + "::channels must be in 1.." + std::to_string(max_channels) +
                                  ", got " + std::to_string(channels),
                              at);
  if (timeout.count() < 0)
    throw configuration_error(options + "::timeout must be at least 0 ms (0: no deadline), got " +
                                  std::to_string(timeout.count()) + " ms",
                              at);
}

// Failure texts that cross the network (MPI's and TCP's notices) are cut to
// this many bytes: MPI's notice is a fixed struct, and one this small leaves
// at once through Open MPI's shared-memory fast path, so that a transport
// destroyed right after failing has no send left pending.
inline constexpr std::size_t max_failure_text = 240;

// The deadline of one operation: from its start, none when the timeout is 0.
class Deadline {
 public:
  using clock = std::chrono::steady_clock;

  // A timeout longer than the clock can count from `start` (centuries) is no
  // deadline: start + timeout would overflow and pass at once.
  explicit Deadline(std::chrono::milliseconds timeout, clock::time_point start = clock::now())
      : timeout_(timeout), start_(start) {
    if (timeout_ >
        std::chrono::duration_cast<std::chrono::milliseconds>(clock::time_point::max() - start_))
      timeout_ = std::chrono::milliseconds::zero();
  }

  bool limited() const noexcept { return timeout_.count() > 0; }
  bool passed(clock::time_point now = clock::now()) const noexcept {
    return limited() && now >= start_ + timeout_;
  }
  // The moment it passes; only meaningful when limited().
  clock::time_point at() const noexcept { return start_ + timeout_; }
  // What is left of it (zero once passed), for a bounded sleep.
  clock::duration left(clock::time_point now = clock::now()) const noexcept {
    return now >= at() ? clock::duration::zero() : at() - now;
  }

  // Waits on `cv` until `ready()` or the deadline; returns ready(). Without a
  // deadline it waits without a time limit (a condition variable's
  // wait_until(time_point::max()) overflows on some libraries and spins).
  template <class Lock, class Ready>
  bool wait(std::condition_variable& cv, Lock& lk, Ready&& ready) const {
    if (!limited()) {
      cv.wait(lk, ready);
      return true;
    }
    return cv.wait_until(lk, at(), ready);
  }
  // One wait on `cv` that ends at the deadline at the latest, for loops that
  // check several conditions themselves.
  template <class Lock>
  void wait_once(std::condition_variable& cv, Lock& lk) const {
    if (limited())
      cv.wait_until(lk, at());
    else
      cv.wait(lk);
  }

  // "did not complete within 100 ms (waited 102 ms)"
  std::string overdue_text(clock::time_point now = clock::now()) const {
    return "did not complete within " + std::to_string(timeout_.count()) + " ms (waited " +
           std::to_string(
               std::chrono::duration_cast<std::chrono::milliseconds>(now - start_).count()) +
           " ms)";
  }

 private:
  std::chrono::milliseconds timeout_;
  clock::time_point start_;
};

// What one side of an operation was doing, for the texts: "a send to rank 3",
// "a receive from rank 1".
inline std::string send_text(int peer) {
  return "a send to rank " + std::to_string(peer);
}
inline std::string receive_text(int peer) {
  return "a receive from rank " + std::to_string(peer);
}

// A timeout: "<what> did not complete within T ms (waited W ms)<; detail>",
// with the peer waited on in where().peer.
inline timeout_error timed_out(const std::string& what, const Deadline& d, int peer,
                               const error_context& at, const std::string& detail = {},
                               Deadline::clock::time_point now = Deadline::clock::now()) {
  return timeout_error(what + " " + d.overdue_text(now) + detail, at.with_peer(peer));
}

// A message whose length differs from its receive's, seen by the receiver.
inline size_mismatch_error size_mismatch(std::size_t expected, std::size_t sent, int peer,
                                         const error_context& at) {
  return size_mismatch_error(
      "expected " + std::to_string(expected) + " bytes, the peer sent " + std::to_string(sent),
      at.with_peer(peer));
}
// The same, seen by the sender (a transport whose sender learns of it).
inline size_mismatch_error size_mismatch_sent(std::size_t sent, std::size_t expected, int peer,
                                              const error_context& at) {
  return size_mismatch_error(
      "sent " + std::to_string(sent) + " bytes, the peer expected " + std::to_string(expected),
      at.with_peer(peer));
}

// Cuts a failure text to what crosses the network.
inline std::string_view failure_text(std::string_view text) {
  return text.substr(0, std::min(text.size(), max_failure_text));
}

// The first failure of a transport; it sticks.
class StickyFailure {
 public:
  bool failed() const noexcept { return failed_; }
  int rank() const noexcept { return rank_; }
  const std::string& text() const noexcept { return text_; }

  // Records that `who` failed for `why`, unless a failure is recorded
  // already; returns whether this one was the first.
  bool record(int who, std::string why) {
    if (failed_) return false;
    failed_ = true;
    rank_ = who;
    text_ = std::move(why);
    return true;
  }

  // The error of an operation that was waiting when the failure came.
  peer_error during(const error_context& at) const {
    return peer_error("rank " + std::to_string(rank_) + " failed: " + text_, at.with_peer(rank_));
  }
  // The error of an operation started after the failure.
  peer_error earlier(int self, const error_context& at) const {
    if (rank_ == self)
      return peer_error("this transport failed earlier (" + text_ + "); make a new one to go on",
                        at.with_peer(rank_));
    return peer_error("rank " + std::to_string(rank_) + " failed: " + text_ +
                          " (the transport stays failed; make a new one to go on)",
                      at.with_peer(rank_));
  }
  void throw_if_failed(int self, const error_context& at) const {
    if (failed_) throw earlier(self, at);
  }

 private:
  bool failed_ = false;
  int rank_ = -1;
  std::string text_;
};

// The checked mode's numbering (sync/common.hpp, next_checked_ordinal): a
// rank's k-th checked synchronizer on a channel must meet the other ranks'
// k-th on that channel. One count per (rank, channel) of the transport, not
// per thread: a program may make a channel's synchronizers on another thread
// than the one that steps them, and several ranks may share a thread.
class CheckedOrdinals {
 public:
  explicit CheckedOrdinals(std::size_t slots = 0)
      : next_(std::make_unique<std::atomic<std::uint64_t>[]>(slots)) {}
  std::uint64_t next(std::size_t slot) noexcept {
    return next_[slot].fetch_add(1, std::memory_order_relaxed);
  }

 private:
  std::unique_ptr<std::atomic<std::uint64_t>[]> next_;
};

// The argument checks. A blocking send to oneself or receive from oneself can
// never complete.
inline void check_send(int rank, int size, int dst, tag_t tag) {
  check_peer_and_tag(rank, size, dst, tag);
  if (dst == rank)
    throw configuration_error("a blocking send to the sending rank itself can never complete",
                              p2p_context(rank, dst, tag));
}
inline void check_recv(int rank, int size, int src, tag_t tag) {
  check_peer_and_tag(rank, size, src, tag);
  if (src == rank)
    throw configuration_error(
        "a blocking receive from the receiving rank itself can never complete",
        p2p_context(rank, src, tag));
}
// Returns whether the exchange is with this rank on both sides: a local copy
// (self_exchange). With this rank on one side only it can never complete.
inline bool check_sendrecv(int rank, int size, int dst, int src, tag_t tag) {
  check_peer_and_tag(rank, size, dst, tag);
  check_peer_and_tag(rank, size, src, tag);
  if ((dst == rank) != (src == rank))
    throw configuration_error("a sendrecv with this rank on one side only can never complete",
                              p2p_context(rank, dst == rank ? src : dst, tag));
  return dst == rank;
}
// channel(c) of a transport with channels (transport/background.hpp): c in
// [0, channels), the same words on every transport.
inline void check_channel(int rank, int channels, int c) {
  if (c < 0 || c >= channels)
    throw configuration_error("channel " + std::to_string(c) + " does not exist: the transport has " +
                                  std::to_string(channels) +
                                  " channel(s) (more are set in its options: channels)",
                              error_context{}.with_rank(rank));
}

// A sendrecv with this rank on both sides: the bytes are copied, in no time.
inline void self_exchange(std::span<const std::byte> out, std::span<std::byte> in, int rank,
                          tag_t tag) {
  if (out.size() != in.size())
    throw size_mismatch(in.size(), out.size(), rank, p2p_context(rank, rank, tag));
  if (!in.empty()) std::memmove(in.data(), out.data(), in.size());
}

}  // namespace detail
}  // namespace dssync
