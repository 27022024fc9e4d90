#pragma once
// Connection: the socket thread's side of one connection to one peer: the
// framing, where each payload is read to, the messages kept before their
// receive, and the queue of frames to write.
//
// Channels share the connection. Each channel has its own posted receive,
// and a message matches only a receive of its own channel (and tag); frames
// of all channels are written from one queue, in the order they were handed
// over, so that two channels' sends to one peer take turns a whole message
// at a time.
//
// One stream cannot pause one channel and go on reading another, so a large
// message that arrives before its receive waits in the socket only while this
// rank has no receive posted on another channel; otherwise it is read into a
// stash buffer, even beyond max_unexpected, since pausing it could deadlock
// (docs/design.md, "Channels share one connection per pair"). Within one
// channel the rule is the one without channels: a message out of step with
// the receive posted is kept within the budget, and otherwise waits, and the
// receive times out naming it.

#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <span>
#include <string>
#include <utility>  // before Asio: Boost 1.74 uses std::exchange without it
#include <vector>

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "dssync/transport/contract.hpp"
#include "dssync/transport/tcp/connection_context.hpp"
#include "dssync/transport/tcp/endpoint.hpp"
#include "dssync/transport/tcp/op.hpp"
#include "dssync/transport/tcp/options.hpp"
#include "dssync/transport/tcp/stash.hpp"
#include "dssync/transport/tcp/tuning.hpp"
#include "dssync/transport/tcp/wire.hpp"

namespace dssync::detail {

class Connection {
 public:
  using clock = std::chrono::steady_clock;
  enum class State { none, open, left, dead };

  Connection(asio::io_context& io, int rank, ConnectionContext context)
      : rank_(rank), sock_(io), cx_(context) {
    // The write queue holds at most one data frame of the caller, one
    // abandoned half-written frame, a few control frames and a kept message
    // or two per channel: reserved here, so writing allocates nothing once
    // running. Messages read before their receive is posted are stashed
    // (max_unexpected, then max_read_aside), and those buffers are allocated.
    const auto channels = std::size_t(cx_.options.channels);
    out_.reserve(8 + 2 * channels);
    stash_.reserve(4 + 2 * channels);
    posted_.assign(channels, nullptr);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  int rank() const noexcept { return rank_; }
  State state() const noexcept { return state_; }
  bool is_open() const noexcept { return state_ == State::open; }
  bool closing() const noexcept { return closing_; }
  // Whether a connection from this rank may be admitted.
  bool vacant() const noexcept { return !claimed_ && state_ == State::none; }
  // A connection for this rank is in its handshake.
  void claim(bool claimed) noexcept { claimed_ = claimed; }

  // Takes over an admitted socket and starts reading.
  void open(tcp::socket s) {
    sock_ = std::move(s);
    const TcpOptions& o = cx_.options;
    if (o.socket_buffer > 0) {
      boost::system::error_code ec;
      sock_.set_option(asio::socket_base::send_buffer_size(int(o.socket_buffer)), ec);
      sock_.set_option(asio::socket_base::receive_buffer_size(int(o.socket_buffer)), ec);
    }
    if (o.unsent_limit > 0) {  // best effort, as the buffer sizes: a kernel without it sends anyway
      const int unsent = static_cast<int>(std::min<std::size_t>(o.unsent_limit, 1u << 30));
      (void)setsockopt(sock_.native_handle(), IPPROTO_TCP, TCP_NOTSENT_LOWAT, &unsent,
                       sizeof unsent);
    }
    state_ = State::open;
    last_heard_ = clock::now();
    read_more();
  }

  void post_receive(TcpOp& op) {
    // Once completed, `op` belongs to its caller again: not a field of it is
    // read after that.
    const std::uint8_t channel = op.channel;
    set_posted(op);
    deliver_from_stash(channel);
    if (posted_[channel] && state_ != State::open) {
      take_posted(channel);
      return refuse(op);
    }
    // A message waiting in the socket may be this receive's, or stand in its
    // way (on another channel or with another tag): decide again.
    if (posted_[channel] && mode_ == Mode::paused) {
      place_frame();
      read_more();
    }
  }

  // A receive was posted somewhere on this rank: a message paused here goes
  // on if it may now stand in that receive's way (the top of this file).
  void reconsider() {
    if (mode_ != Mode::paused || !cx_.posted.other_than(frame_.channel)) return;
    place_frame();
    read_more();
  }

  void post_send(TcpOp& op) {
    if (state_ != State::open) return refuse(op);
    Out& o = out_.emplace_back();
    o.head = wire::encode(wire::Header{wire::Kind::data, op.tag, op.bytes, op.channel});
    o.data = op.out;
    o.bytes = op.bytes;
    o.op = &op;
    write_more();
  }

  void queue_heartbeat() { queue_control(wire::Kind::heartbeat); }

  void queue_notice(int who, const std::string& text) {
    Out& o = out_.emplace_back();
    const std::string frame = wire::encode_notice(std::uint32_t(who), text);
    std::memcpy(o.head.data(), frame.data(), wire::header_size);
    o.owned.assign(reinterpret_cast<const std::byte*>(frame.data()) + wire::header_size,
                   reinterpret_cast<const std::byte*>(frame.data()) + frame.size());
    o.data = o.owned.data();
    o.bytes = o.owned.size();
    write_more();
  }

  // The caller gives up on `op`: from now on nothing here touches its
  // buffer once the reads and writes in flight have reported.
  void let_go(const TcpOp& op) {
    if (op.receive) {
      if (posted_[op.channel] == &op) take_posted(op.channel);
      if (target_ == &op) {
        target_ = nullptr;
        mode_ = Mode::discard;
      }
      return;
    }
    for (std::size_t i = 0; i < out_.size(); ++i) {
      Out& o = out_[i];
      if (o.op != &op) continue;
      if (i == 0 && writing_) {
        // Half written: the frame must go on whole, or the stream is lost.
        // It goes on from a copy; sent_ still counts from the frame's start
        // once the cancelled write has reported.
        try {
          o.owned.assign(o.data, o.data + o.bytes);
        } catch (const std::bad_alloc&) {
          // No memory for the copy: the stream cannot stay whole, so it ends
          // here, and the peer finds the connection broken.
          const std::string text = "rank " + std::to_string(cx_.self) +
                                   " has no memory to finish a half-written message of " +
                                   std::to_string(o.bytes) + " bytes to rank " +
                                   std::to_string(rank_) + " that its sender gave up on";
          state_ = State::dead;  // first: no notice is queued behind the broken frame
          cx_.host.fail_transport(cx_.self, text);
          drop(text);
          return;
        }
        o.data = o.owned.data();
        o.op = nullptr;
      } else {
        out_.erase(out_.begin() + std::ptrdiff_t(i));
      }
      break;
    }
  }
  // Reads or writes in flight on a caller's memory.
  bool on_caller_memory() const noexcept { return caller_io_ > 0; }
  void cancel_caller_io() {
    boost::system::error_code ec;
    if (caller_io_) sock_.cancel(ec);
  }

  // Why `op`, a call with this peer, is overdue, and what the peer sent
  // instead if anything.
  std::string timeout_text(const TcpOp& op, const Deadline& deadline) const {
    std::string s =
        (op.receive ? receive_text(op.peer) : send_text(op.peer)) + " " + deadline.overdue_text();
    if (op.channel) s += ", on channel " + std::to_string(op.channel);
    if (op.receive && mode_ == Mode::paused && frame_.channel == op.channel &&
        frame_.tag != op.tag)
      s += "; rank " + std::to_string(op.peer) + "'s next message has tag " +
           std::to_string(frame_.tag) + " (expected " + std::to_string(op.tag) + ") and " +
           std::to_string(frame_.length) + " bytes: the ranks are out of step";
    else if (op.receive)
      for (const auto& st : stash_)
        if (st.channel == op.channel && st.tag != op.tag) {
          s += "; rank " + std::to_string(op.peer) + " sent a message with tag " +
               std::to_string(st.tag) + " (expected " + std::to_string(op.tag) +
               "): the ranks are out of step";
          break;
        }
    return s;
  }

  // For the liveness check.
  clock::time_point last_heard() const noexcept { return last_heard_; }
  // A message waiting in the socket for its receive is not silence.
  bool waiting_for_receive() const noexcept { return mode_ == Mode::paused; }
  bool idle() const noexcept { return !writing_ && out_.empty(); }
  // Whether some of what this rank wrote has not reached the peer's side
  // yet: frames still queued, or bytes the peer's kernel has not
  // acknowledged (a peer that does not read fills its window).
  bool undelivered() {
    if (state_ != State::open) return false;
    if (!idle()) return true;
    int unacknowledged = 0;
    return ioctl(sock_.native_handle(), SIOCOUTQ, &unacknowledged) == 0 && unacknowledged > 0;
  }
  // Whether the peer has shut its sending side (its goodbye came) behind a
  // message that waits unread in the socket. It may then close its socket at
  // any moment, and a byte written to a closed socket brings back a reset
  // that throws away what this side has not read: so no heartbeat goes to
  // it, and the message stays receivable, the goodbye read after it.
  bool peer_done_sending() {
    if (mode_ != Mode::paused) return false;
    tcp_info info{};
    socklen_t size = sizeof info;
    return getsockopt(sock_.native_handle(), IPPROTO_TCP, TCP_INFO, &info, &size) == 0 &&
           info.tcpi_state == TCP_CLOSE_WAIT;
  }
  // Woken only per piece of a message: bytes that arrived below the mark
  // are signs of life too (a slow link is not a dead peer).
  void note_bytes_below_mark(clock::time_point now) {
    if (lowat_ <= 1) return;
    int queued = 0;
    if (ioctl(sock_.native_handle(), FIONREAD, &queued) == 0 && queued != queued_seen_) {
      queued_seen_ = queued;
      last_heard_ = now;
    }
  }
  // The peer is dead for `why`: the transport fails, then the operations
  // with the peer end. In that order, so that a caller woken by its
  // operation finds the failure recorded (failed(), and its wording).
  void die(const std::string& why) {
    cx_.host.fail_transport(rank_, why);
    state_ = State::dead;
    drop(why);
  }

  // The transport closes: a goodbye (or, `goodbye` false, just the end of
  // the stream after the notices still queued); the peer's stream is read
  // until it closes. A message paused in the socket, which no receive will
  // take now, is read and dropped, so that the peer's goodbye behind it is
  // read at once, not when the grace ends.
  void begin_close(bool goodbye) {
    closing_ = true;
    if (goodbye)
      queue_control(wire::Kind::bye);
    else
      queue_end();
    if (mode_ == Mode::paused) {
      mode_ = Mode::discard;
      read_more();
    }
  }
  void close_socket() {
    boost::system::error_code ec;
    sock_.close(ec);
  }

 private:
  struct Stashed {
    std::uint8_t channel;
    std::uint16_t tag;
    std::vector<std::byte> data;
  };
  struct Out {
    std::array<std::byte, wire::header_size> head{};
    const std::byte* data = nullptr;
    std::size_t bytes = 0;
    TcpOp* op = nullptr;           // a caller's send, or none (control frames)
    std::vector<std::byte> owned;  // the payload when the frame owns it
    bool end = false;              // not a frame: shut the sending side after what is queued
  };
  // Reading: a frame header, then its payload into one of several places.
  enum class Mode { header, into_caller, stash, notice, discard, paused };

  // ------------------------------------------------------------ reading --

  // Issues the next read of the peer's stream, if none is pending.
  void read_more() {
    if (reading_ || state_ != State::open || eof_) return;
    asio::mutable_buffer b;
    bool caller = false;
    switch (mode_) {
      case Mode::header:
        b = asio::buffer(head_.data() + head_got_, head_.size() - head_got_);
        break;
      case Mode::into_caller:
        b = asio::buffer(target_->in + got_, target_->bytes - got_);
        caller = true;
        break;
      case Mode::stash:
      case Mode::notice:
        b = asio::buffer(buf_.data() + got_, buf_.size() - got_);
        break;
      case Mode::discard: {
        const auto sink = cx_.budget.sink();
        b = asio::buffer(sink.data(), std::min<std::uint64_t>(sink.size(), frame_.length - got_));
        break;
      }
      case Mode::paused:
        return;
    }
    // Into a caller's buffer, the socket wakes this thread only when a good
    // piece has arrived (or the message's end), not for every segment.
    const int lowat = caller ? static_cast<int>(std::min<std::uint64_t>(target_->bytes - got_,
                                                                        tcp_tuning::read_piece))
                             : 1;
    if (lowat != lowat_) {
      if (setsockopt(sock_.native_handle(), SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat) == 0)
        lowat_ = lowat;
    }
    reading_ = true;
    caller_io_ += caller;
    sock_.async_read_some(b, [this, caller](boost::system::error_code ec, std::size_t n) {
      reading_ = false;
      caller_io_ -= caller;
      on_read(ec, n);
    });
  }

  void on_read(boost::system::error_code ec, std::size_t n) {
    if (state_ != State::open) return;
    if (ec == asio::error::operation_aborted)
      return read_more();  // cancelled to take a buffer back
    if (ec) return lost(ec);
    last_heard_ = clock::now();
    switch (mode_) {
      case Mode::header:
        head_got_ += n;
        if (head_got_ == head_.size()) {
          head_got_ = 0;
          if (auto problem = wire::decode(std::span<const std::byte, wire::header_size>(head_),
                                          frame_, cx_.options.max_message,
                                          unsigned(cx_.options.channels)))
            return violated(*problem);
          if (!on_header()) return;
        }
        break;
      case Mode::into_caller:
        got_ += n;
        if (got_ == target_->bytes) {
          TcpOp* op = std::exchange(target_, nullptr);
          mode_ = Mode::header;
          cx_.host.complete(*op, TcpOp::Result::ok);
        }
        break;
      case Mode::stash:
        got_ += n;
        if (got_ == buf_.size()) {
          stash_.push_back({frame_.channel, frame_.tag, std::move(buf_)});
          buf_ = {};
          mode_ = Mode::header;
          deliver_from_stash(frame_.channel);
        }
        break;
      case Mode::notice:
        got_ += n;
        if (got_ == buf_.size()) {
          mode_ = Mode::header;
          std::uint32_t who = 0;
          std::string text;
          if (auto problem = wire::decode_notice(buf_, std::uint32_t(cx_.world), who, text))
            return violated(*problem);
          // Passed on: this rank's own connections may end before the
          // others hear of the cause, and they must blame the cause, not us.
          cx_.host.fail_transport(int(who), text);
        }
        break;
      case Mode::discard:
        got_ += n;
        if (got_ == frame_.length) mode_ = Mode::header;
        break;
      case Mode::paused:
        break;
    }
    read_more();
  }

  // A frame header has arrived; returns false when the peer is gone.
  bool on_header() {
    got_ = 0;
    switch (frame_.kind) {
      case wire::Kind::heartbeat:
        return true;
      case wire::Kind::bye:
        left();
        return false;
      case wire::Kind::notice:
        buf_.resize(std::size_t(frame_.length));  // at most wire::max_notice
        mode_ = Mode::notice;
        return true;
      case wire::Kind::data:
        place_frame();
        return true;
    }
    return true;
  }

  // Decides where the payload of frame_ goes.
  void place_frame() {
    if (closing_) {
      mode_ = frame_.length ? Mode::discard : Mode::header;
      return;
    }
    const TcpOp* const slot = posted_[frame_.channel];
    if (slot && slot->tag == frame_.tag) {
      TcpOp* op = take_posted(frame_.channel);
      if (frame_.length != op->bytes) {
        mode_ = frame_.length ? Mode::discard : Mode::header;
        cx_.host.complete(*op, TcpOp::Result::mismatch, {}, frame_.length);
      } else if (op->bytes == 0) {
        mode_ = Mode::header;
        cx_.host.complete(*op, TcpOp::Result::ok);
      } else {
        target_ = op;
        mode_ = Mode::into_caller;
      }
      return;
    }
    const bool may_keep = cx_.budget.allows(frame_.length);
    // A receive on another channel is posted: this message must not stand
    // in its way, budget or not (the top of this file says why).
    const bool other_waits = cx_.posted.other_than(frame_.channel);
    if ((may_keep && (frame_.length <= tcp_tuning::eager_limit || slot)) || other_waits) {
      // Small, or standing in the way of a receive that is posted: keep it.
      if (!may_keep && !cx_.budget.allows(frame_.length, cx_.options.max_read_aside))
        return refuse_aside(false);
      try {
        buf_ = cx_.budget.take_buffer(std::size_t(frame_.length));
      } catch (const std::bad_alloc&) {  // max_read_aside 0 (no bound) and a large message
        return refuse_aside(true);
      }
      cx_.budget.add(std::size_t(frame_.length));
      if (frame_.length == 0) {
        stash_.push_back({frame_.channel, frame_.tag, std::move(buf_)});
        buf_ = {};
        mode_ = Mode::header;
      } else {
        mode_ = Mode::stash;
      }
      return;
    }
    mode_ = Mode::paused;  // waits in the socket for its receive
  }

  // Reading frame_ aside would pass max_read_aside, or there is no memory for
  // it: the transport fails rather than hold without bound what the program
  // does not receive.
  void refuse_aside(bool no_memory) {
    mode_ = frame_.length ? Mode::discard : Mode::header;
    cx_.host.fail_transport(
        cx_.self,
        no_memory ? read_aside_no_memory(cx_.self, rank_, frame_.length, frame_.channel, frame_.tag)
                  : read_aside_refusal(cx_.self, rank_, frame_.length, frame_.channel, frame_.tag,
                                       cx_.options.max_unexpected + cx_.options.max_read_aside));
  }

  // The receive posted on a channel, counted rank-wide.
  void set_posted(TcpOp& op) {
    if (!posted_[op.channel]) {
      ++cx_.posted.per_channel[op.channel];
      ++cx_.posted.total;
    }
    posted_[op.channel] = &op;
  }
  TcpOp* take_posted(std::uint8_t channel) {
    TcpOp* op = std::exchange(posted_[channel], nullptr);
    if (op) {
      --cx_.posted.per_channel[channel];
      --cx_.posted.total;
    }
    return op;
  }

  // Hands the receive posted on `channel`, if any, its message if it was kept.
  void deliver_from_stash(std::uint8_t channel) {
    if (!posted_[channel]) return;
    TcpOp& op = *posted_[channel];
    const auto it = std::find_if(stash_.begin(), stash_.end(), [&](const Stashed& s) {
      return s.channel == channel && s.tag == op.tag;
    });
    if (it == stash_.end()) return;
    take_posted(channel);
    const std::size_t n = it->data.size();
    if (n == op.bytes) {
      if (n) std::memcpy(op.in, it->data.data(), n);
      cx_.host.complete(op, TcpOp::Result::ok);
    } else {
      cx_.host.complete(op, TcpOp::Result::mismatch, {}, n);
    }
    cx_.budget.release(n);
    cx_.budget.give_buffer(std::move(it->data));
    stash_.erase(it);
  }

  // ------------------------------------------------------------ writing --

  void queue_control(wire::Kind kind) {
    Out& o = out_.emplace_back();
    o.head = wire::encode(wire::Header{kind, 0, 0});
    write_more();
    if (kind == wire::Kind::bye) queue_end();
  }

  void queue_end() {
    out_.emplace_back().end = true;
    write_more();
  }

  void write_more() {
    if (writing_ || state_ != State::open || out_.empty()) return;
    Out& o = out_.front();
    if (o.end) {
      // Everything before it is written: no more frames from here; the
      // peer's stream is read until it closes.
      out_.erase(out_.begin());
      boost::system::error_code ec;
      sock_.shutdown(tcp::socket::shutdown_send, ec);
      return;
    }
    std::array<asio::const_buffer, 2> b;
    if (sent_ < wire::header_size) {
      b = {asio::buffer(o.head.data() + sent_, wire::header_size - sent_),
           asio::buffer(o.data, o.bytes)};
    } else {
      const std::size_t off = sent_ - wire::header_size;
      b = {asio::buffer(o.data + off, o.bytes - off), asio::const_buffer()};
    }
    const bool caller = o.op != nullptr;
    writing_ = true;
    caller_io_ += caller;
    // async_write_some, not async_write: the composed write hands the socket
    // at most 64 KiB a call, many more system calls and wake-ups than one
    // write of all that is left (on_written goes on; docs/benchmarks.md, "TCP
    // writes").
    sock_.async_write_some(b, [this, caller](boost::system::error_code ec, std::size_t n) {
      writing_ = false;
      caller_io_ -= caller;
      on_written(ec, n);
    });
  }

  void on_written(boost::system::error_code ec, std::size_t n) {
    if (state_ != State::open) return;
    sent_ += n;
    if (ec == asio::error::operation_aborted) return write_more();
    if (ec) return lost(ec);
    Out& o = out_.front();
    if (sent_ < wire::header_size + o.bytes) return write_more();
    sent_ = 0;
    TcpOp* op = o.op;
    out_.erase(out_.begin());
    if (op) cx_.host.complete(*op, TcpOp::Result::ok);
    write_more();
  }

  // ----------------------------------------------------------- the end --

  std::string gone_text() const {
    if (state_ == State::left)
      return "rank " + std::to_string(rank_) + " has closed its transport (left the job)";
    return "rank " + std::to_string(rank_) + " is dead";
  }

  // Ends everything the peer's operations wait for. Messages it sent before
  // a goodbye stay receivable.
  void drop(const std::string& why, bool keep_stash = false) {
    boost::system::error_code ec;
    sock_.close(ec);
    ConnectionHost& host = cx_.host;
    for (std::size_t c = 0; c < posted_.size(); ++c)
      if (posted_[c])
        host.complete(*take_posted(std::uint8_t(c)), TcpOp::Result::failed, why);
    if (target_) host.complete(*std::exchange(target_, nullptr), TcpOp::Result::failed, why);
    for (auto& o : out_)
      if (o.op) host.complete(*o.op, TcpOp::Result::failed, why);
    out_.clear();
    if (keep_stash) return;
    for (auto& s : stash_) cx_.budget.release(s.data.size());
    stash_.clear();
    if (mode_ == Mode::stash) cx_.budget.release(buf_.size());
    buf_ = {};
  }

  // The connection ended or broke.
  void lost(boost::system::error_code ec) {
    if (closing_) {
      // After our goodbye the peer closing is the expected end.
      eof_ = true;
      state_ = State::left;
      drop(gone_text());
      return cx_.host.closed_one();
    }
    const std::string what =
        ec == asio::error::eof
            ? "its connection closed without a goodbye (the process ended or was killed)"
            : "its connection broke (" + ec.message() + ")";
    const std::string text = "rank " + std::to_string(rank_) + " is dead: " + what +
                             " (seen by rank " + std::to_string(cx_.self) + ")";
    die(text);
  }

  void violated(const std::string& problem) {
    const std::string text = "rank " + std::to_string(rank_) + " broke the protocol: " + problem +
                             " (seen by rank " + std::to_string(cx_.self) + ")";
    die(text);
  }

  // An operation with a peer that is gone. One that left (said goodbye) fails
  // the transport, as when an operation was waiting as it left: the ranks are
  // out of step, however the two came in time. (A dead peer failed it.)
  void refuse(TcpOp& op) {
    const std::string text = gone_text();
    if (state_ == State::left)
      cx_.host.fail_transport(
          rank_, text + " while rank " + std::to_string(cx_.self) + " still needed it");
    cx_.host.complete(op, TcpOp::Result::failed, text);
  }

  // The peer said goodbye. Operations that still needed it fail, and so does
  // the transport then: the ranks are out of step.
  void left() {
    state_ = State::left;
    const bool needed = std::any_of(posted_.begin(), posted_.end(),
                                    [](const TcpOp* p) { return p != nullptr; }) ||
                        target_ ||
                        std::any_of(out_.begin(), out_.end(), [](const Out& o) { return o.op; });
    const std::string text = gone_text();
    if (needed)  // first, as in die()
      cx_.host.fail_transport(
          rank_, text + " while rank " + std::to_string(cx_.self) + " still needed it");
    drop(text, true);
    if (cx_.host.stopping()) cx_.host.closed_one();
  }

  const int rank_;
  tcp::socket sock_;
  ConnectionContext cx_;
  State state_ = State::none;
  bool claimed_ = false;
  bool closing_ = false;  // this side said goodbye
  bool eof_ = false;
  clock::time_point last_heard_;
  int lowat_ = 1;        // SO_RCVLOWAT now set on the socket
  int queued_seen_ = 0;  // bytes waiting in the socket at the last liveness check

  Mode mode_ = Mode::header;
  bool reading_ = false;
  int caller_io_ = 0;  // pending reads or writes on a caller's memory
  std::array<std::byte, wire::header_size> head_{};
  std::size_t head_got_ = 0;
  wire::Header frame_;
  std::uint64_t got_ = 0;
  std::vector<TcpOp*> posted_;  // per channel, the receive waiting for this peer's message
  TcpOp* target_ = nullptr;  // the receive the payload is going into
  std::vector<std::byte> buf_;
  std::vector<Stashed> stash_;

  std::vector<Out> out_;  // a queue; its front may be in flight and never moves
  bool writing_ = false;
  std::size_t sent_ = 0;
};

}  // namespace dssync::detail
