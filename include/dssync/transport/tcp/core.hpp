#pragma once
// TcpCore: the parts of a TcpTransport put together, and the little the
// socket thread shares with the calling threads (one per channel): the
// operations, the set-up's outcome, and the transport's failure, all under
// one mutex. It does not move: handlers point into it. The channels of a
// transport share it (TcpTransport holds it by shared_ptr), and with it the
// deadlines' options and the one sticky failure.

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>  // before Asio: Boost 1.74 uses std::exchange without it
#include <vector>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "dssync/core/error.hpp"
#include "dssync/transport/contract.hpp"
#include "dssync/transport/tcp/admission.hpp"
#include "dssync/transport/tcp/connection.hpp"
#include "dssync/transport/tcp/liveness.hpp"
#include "dssync/transport/tcp/op.hpp"
#include "dssync/transport/tcp/options.hpp"
#include "dssync/transport/tcp/rendezvous.hpp"
#include "dssync/transport/tcp/socket_thread.hpp"
#include "dssync/transport/tcp/tuning.hpp"
#include "dssync/transport/tcp/wire.hpp"

namespace dssync::detail {

class TcpCore final : ConnectionHost, GatekeeperHost, RendezvousHost {
 public:
  explicit TcpCore(TcpOptions o)
      : options_(checked(std::move(o))),
        rank_(options_.rank),
        size_(options_.world_size),
        thread_(mu_, options_.channels),
        budget_(options_.max_unexpected),
        liveness_(thread_.io(), peers_, *this, options_.peer_timeout, rank_),
        gatekeeper_(thread_.io(), options_, wire::token_hash(options_.job_token), *this),
        rendezvous_(thread_.io(), options_, wire::token_hash(options_.job_token), peers_,
                    gatekeeper_, *this) {
    batch_ = thread_.batch();
    posted_.per_channel.assign(std::size_t(options_.channels), 0);
    ordinals_ = CheckedOrdinals(std::size_t(options_.channels));
    peers_.reserve(std::size_t(size_));
    const ConnectionContext context{*this, posted_, budget_, options_, rank_, size_};
    for (int r = 0; r < size_; ++r)
      peers_.push_back(std::make_unique<Connection>(thread_.io(), r, context));
    rendezvous_.resolve_master();
    if (!thread_.open_doorbell()) throw configuration_error("eventfd failed", where());
    rendezvous_.bind_master();
    thread_.start(
        [this] {
          thread_.listen();
          liveness_.start();
          rendezvous_.start();
        },
        [this] { take_submissions(); },
        [this](std::string_view what) {
          fail_transport(
              rank_,
              "rank " + std::to_string(rank_) + "'s socket thread failed: " + std::string(what),
              true);
        });
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return setup_outcome_.has_value(); });
    if (const auto e = *setup_outcome_) {
      lk.unlock();
      stop(false);
      std::rethrow_exception(e);
    }
  }

  TcpCore(const TcpCore&) = delete;
  TcpCore& operator=(const TcpCore&) = delete;
  ~TcpCore() { stop(true); }

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  const TcpOptions& options() const noexcept { return options_; }
  std::uint64_t next_checked_ordinal(int channel) noexcept {
    return ordinals_.next(std::size_t(channel));
  }
  std::size_t refused() const noexcept { return gatekeeper_.refused(); }
  std::uint16_t listen_port() const noexcept { return rendezvous_.listen_port(); }
  bool failed() const {
    std::lock_guard lk(mu_);
    return failure_.failed();
  }

  void fail(std::string_view reason) {
    asio::post(thread_.io(),
               [this, text = std::string(reason)] { fail_transport(rank_, text, true); });
    std::unique_lock lk(mu_);
    cv_.wait_for(lk, tcp_tuning::fail_wait, [&] { return failure_.failed(); });
  }

  // Runs the operations to completion, or throws. The thread that uses a
  // channel calls this; it sleeps until the socket thread is done. Threads
  // of different channels call it at once: each waits on the one condition
  // variable for its own operations (the socket thread wakes them all at
  // every completion, and each checks its own), or for the transport's
  // failure, which ends every channel's wait.
  // Nothing here allocates: the operations live on the caller's stack, and
  // the socket thread is woken through an eventfd.
  void run(TcpOp* first, TcpOp* second, const error_context& at) {
    const Deadline deadline(options_.timeout);
    check_usable(at);
    const std::array<TcpOp*, 2> list{first, second};
    const std::span<TcpOp* const> ops(list.data(), second ? 2 : 1);
    // A message above max_message is refused before it starts: its receiver
    // would take the frame for a protocol violation and drop the connection.
    for (const TcpOp* op : ops)
      if (op->bytes > options_.max_message)
        throw configuration_error(std::string(op->receive ? "a receive of " : "a send of ") +
                                      std::to_string(op->bytes) +
                                      " bytes is more than TcpOptions::max_message (" +
                                      std::to_string(options_.max_message) + " bytes)",
                                  at.with_peer(op->peer));
    {
      std::lock_guard lk(mu_);
      for (TcpOp* op : ops) thread_.submit(op);
    }
    thread_.ring();
    std::unique_lock lk(mu_);
    auto done = [&] {
      return std::all_of(ops.begin(), ops.end(),
                         [](const TcpOp* op) { return op->result != TcpOp::Result::pending; });
    };
    const bool finished = deadline.wait(cv_, lk, [&] { return done() || failure_.failed(); });
    if (!done()) {
      lk.unlock();
      if (finished) {
        abandon(ops, nullptr);
        lk.lock();
        throw failure_.during(at);
      }
      const Overdue late = abandon(ops, &deadline);
      // No operation was still pending when the socket thread let go: they
      // completed just at the deadline, and are answered as completed.
      if (late.peer >= 0) throw timeout_error(late.text, at.with_peer(late.peer));
      lk.lock();
    }
    for (const TcpOp* op : ops) {
      if (op->result == TcpOp::Result::mismatch)
        throw size_mismatch(op->bytes, op->peer_bytes, op->peer, at);
    }
    for (const TcpOp* op : ops) {
      if (op->result != TcpOp::Result::failed) continue;
      // The first failure the transport heard of is the cause (a notice
      // naming the dead rank comes before the notifier's own connection ends).
      if (failure_.failed()) throw failure_.during(at);
      throw peer_error(op->what, at.with_peer(op->peer));
    }
  }

  void check_usable(const error_context& at) {
    std::lock_guard lk(mu_);
    failure_.throw_if_failed(rank_, at);
  }

  error_context where() const { return error_context{}.with_rank(rank_); }

 private:
  // The options, checked before any part is built from them (the socket
  // thread sizes its slots by the channels). A rendezvous_timeout or
  // peer_timeout beyond a century, which the socket thread's timers could
  // not count in nanoseconds, is no deadline, or a century.
  static TcpOptions checked(TcpOptions o) {
    if (o.world_size < 1) throw configuration_error("the world size must be at least 1");
    if (o.rank < 0 || o.rank >= o.world_size)
      throw configuration_error("rank " + std::to_string(o.rank) + " is outside a world of " +
                                std::to_string(o.world_size) + " ranks");
    const error_context at = error_context{}.with_rank(o.rank);
    if (o.peer_timeout.count() <= 0) throw configuration_error("peer_timeout must be positive", at);
    static_assert(int(wire::max_channels) == max_channels);
    check_channels_and_timeout("TcpOptions", o.channels, o.timeout, at);
    if (o.rendezvous_timeout.count() < 0)
      throw configuration_error(
          "TcpOptions::rendezvous_timeout must be at least 0 ms (0: no deadline), got " +
              std::to_string(o.rendezvous_timeout.count()) + " ms",
          at);
    constexpr std::chrono::milliseconds century = std::chrono::hours(24 * 365 * 100);
    if (o.rendezvous_timeout > century) o.rendezvous_timeout = std::chrono::milliseconds::zero();
    o.peer_timeout = std::min(o.peer_timeout, century);
    return o;
  }

  void take_submissions() {
    SocketThread::Batch& ops = batch_;
    const std::size_t n = thread_.take(ops);
    bool receives = false;
    for (std::size_t i = 0; i < n; ++i) {
      // Read before posting: a posted operation may complete, and its caller return, at once.
      Connection& c = *peers_[std::size_t(ops[i]->peer)];
      const bool receive = ops[i]->receive;
      receive ? c.post_receive(*ops[i]) : c.post_send(*ops[i]);
      receives = receives || receive;
    }
    // With channels, a message paused on one connection may stand in the way
    // of a receive just posted on another channel (tcp/connection.hpp).
    if (receives && options_.channels > 1)
      for (auto& q : peers_) q->reconsider();
  }

  // ------------------------------------------------------ for the parts --

  void complete(TcpOp& op, TcpOp::Result r, std::string what = {},
                std::uint64_t peer_bytes = 0) override {
    {
      std::lock_guard lk(mu_);
      op.result = r;
      op.what = std::move(what);
      op.peer_bytes = peer_bytes;
    }
    cv_.notify_all();
  }
  void fail_transport(int who, const std::string& text) override {
    fail_transport(who, text, true);
  }
  void closed_one() override {
    if (--closing_ == 0) finish_stop();
  }
  bool stopping() const override { return stopping_; }

  bool taken(wire::Purpose purpose, std::uint32_t rank) const override {
    if (purpose == wire::Purpose::rendezvous) return rendezvous_.registration_taken(rank);
    return !peers_[rank]->vacant();
  }
  void register_rank(std::shared_ptr<tcp::socket> sock, const wire::Hello& h,
                     const asio::ip::address& seen) override {
    rendezvous_.register_rank(std::move(sock), h, seen);
  }
  void claim(int rank, bool claimed) override { peers_[std::size_t(rank)]->claim(claimed); }
  void open_peer(int rank, tcp::socket s) override { rendezvous_.open_peer(rank, std::move(s)); }

  void setup_complete() override {
    liveness_.judge();
    std::lock_guard lk(mu_);
    setup_outcome_ = std::exception_ptr();
    cv_.notify_all();
  }
  void setup_failed(std::exception_ptr e) override {
    std::lock_guard lk(mu_);
    setup_outcome_ = e;
    cv_.notify_all();
  }

  // ----------------------------------------------------------- failures --

  // Fails the transport for good: `who` failed, for the reason `text`. The
  // first failure sticks. With `tell`, every other open peer gets a notice.
  void fail_transport(int who, const std::string& text, bool tell) {
    const std::string cut(failure_text(text));
    {
      std::lock_guard lk(mu_);
      if (!failure_.record(who, cut)) return;
    }
    cv_.notify_all();
    if (!tell) return;
    for (auto& q : peers_)
      if (q->is_open() && q->rank() != who && !q->closing()) q->queue_notice(who, cut);
  }

  // The caller gives up on `ops` (its deadline passed, or the transport
  // failed): the socket thread lets go of their buffers (copying the rest of
  // a half-written send, so that the stream stays whole, and reading the rest
  // of a half-read receive into nothing) and answers once nothing touches the
  // caller's memory any more. On a timeout (`overdue`: the deadline that
  // passed) it says why, and fails the transport.
  struct Overdue {
    std::string text;  // the timeout's message
    int peer = -1;     // the peer of the first operation still pending
  };
  Overdue abandon(std::span<TcpOp* const> span, const Deadline* overdue) {
    auto answered = std::make_shared<bool>(false);
    auto why = std::make_shared<Overdue>();
    std::vector<TcpOp*> ops(span.begin(), span.end());
    const bool timed_out = overdue != nullptr;
    std::optional<Deadline> deadline;
    if (overdue) deadline = *overdue;
    asio::post(thread_.io(), [this, ops, timed_out, deadline, answered, why] {
      // Operations the caller handed over whose doorbell has not been
      // answered yet are taken first, so that they are let go of like the rest.
      take_submissions();
      std::vector<Connection*> touched;
      for (TcpOp* op : ops) {
        if (op->result != TcpOp::Result::pending) continue;
        Connection& c = *peers_[std::size_t(op->peer)];
        if (timed_out && why->peer < 0) *why = {c.timeout_text(*op, *deadline), op->peer};
        c.let_go(*op);
        touched.push_back(&c);
        complete(*op, TcpOp::Result::failed, "abandoned");
      }
      for (Connection* c : touched) c->cancel_caller_io();
      if (timed_out && why->peer >= 0) fail_transport(rank_, why->text, true);
      answer_when_released(touched, answered);
    });
    std::unique_lock lk(mu_);
    cv_.wait_for(lk, tcp_tuning::abandon_bound, [&] { return *answered; });
    return *why;
  }

  void answer_when_released(std::vector<Connection*> touched, std::shared_ptr<bool> answered) {
    const bool busy = std::any_of(touched.begin(), touched.end(),
                                  [](const Connection* c) { return c->on_caller_memory(); });
    if (busy) {
      asio::post(thread_.io(),
                 [this, touched, answered] { answer_when_released(touched, answered); });
      return;
    }
    {
      std::lock_guard lk(mu_);
      *answered = true;
    }
    cv_.notify_all();
  }

  // ----------------------------------------------------------- shutdown --

  // Says goodbye to every peer (unless the transport failed: the peers know),
  // waits a moment for them to close, and stops the socket thread. What this
  // rank sent before is delivered: while a peer has not taken all of it (a
  // large message waits in its socket for a receive it has yet to post, and
  // the goodbye behind it), the close waits on, until the peer reads it and
  // closes, or the transport's timeout passes.
  void stop(bool goodbye) {
    if (!thread_.running()) return;
    const Deadline delivery(options_.timeout);
    asio::post(thread_.io(), [this, goodbye, delivery] {
      stopping_ = true;
      rendezvous_.close();
      liveness_.stop();
      bool failed;
      {
        std::lock_guard lk(mu_);
        failed = failure_.failed();
      }
      for (auto& q : peers_) {
        if (!q->is_open()) continue;
        ++closing_;
        q->begin_close(goodbye && !failed);  // without a goodbye: after the notices still queued
      }
      if (closing_ == 0) return finish_stop();
      finish_stop_after(failed ? tcp_tuning::failed_grace : tcp_tuning::goodbye_grace,
                        goodbye && !failed ? std::optional<Deadline>(delivery) : std::nullopt);
    });
    {
      // The socket thread's close ends by the delivery's deadline (none
      // without a timeout, or one the clock cannot count), and stop_bound
      // after it.
      std::unique_lock lk(mu_);
      const auto timeout = options_.timeout;
      const bool countable = timeout < std::chrono::milliseconds::max() - tcp_tuning::stop_bound;
      const Deadline bound(countable && timeout.count() > 0 ? timeout + tcp_tuning::stop_bound
                                                            : std::chrono::milliseconds::zero());
      bound.wait(cv_, lk, [&] { return stopped_; });
    }
    thread_.join();
  }

  // Ends the close after `wait`, or later while a peer has not taken what
  // was sent to it and `delivery` has not passed.
  void finish_stop_after(std::chrono::milliseconds wait, std::optional<Deadline> delivery) {
    auto timer = std::make_shared<asio::steady_timer>(thread_.io(), wait);
    timer->async_wait([this, timer, delivery](boost::system::error_code) {
      const bool undelivered =
          std::any_of(peers_.begin(), peers_.end(), [](const auto& q) { return q->undelivered(); });
      if (undelivered && delivery && !delivery->passed() && !failed())
        return finish_stop_after(tcp_tuning::delivery_poll, delivery);
      finish_stop();
    });
  }

  void finish_stop() {
    for (auto& q : peers_) q->close_socket();
    {
      std::lock_guard lk(mu_);
      stopped_ = true;
    }
    cv_.notify_all();
  }

  const TcpOptions options_;
  const int rank_;
  const int size_;

  // Shared with the calling thread.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  // Empty while the set-up is under way; then null, or why it failed.
  std::optional<std::exception_ptr> setup_outcome_;
  bool stopped_ = false;
  StickyFailure failure_;  // the first failure

  // The socket thread's io_context outlives every socket and timer below.
  SocketThread thread_;
  // Socket thread only.
  std::vector<std::unique_ptr<Connection>> peers_;
  SocketThread::Batch batch_;  // what take_submissions() takes
  PostedReceives posted_{1};   // sized to the channels once they are checked
  CheckedOrdinals ordinals_;   // the checked mode's, per channel (transport/contract.hpp)
  StashBudget budget_;
  Liveness liveness_;
  Gatekeeper gatekeeper_;
  Rendezvous rendezvous_;
  int closing_ = 0;
  bool stopping_ = false;
};

}  // namespace dssync::detail
