#pragma once
// SimTransport: the transport concept over a simulated network in virtual
// time. The collectives and synchronizers run unchanged and move real bytes;
// only the clock is simulated. Link dssync::sim (Boost.Context).
//
//   dssync::SimWorld world(1024, {.alpha = 5e-6, .bandwidth = 1.25e9});
//   auto result = world.run([&](dssync::SimTransport& t) { ... t.now() ... });
//
// Ranks are fibers, not threads: one OS thread runs them all, one at a time,
// and switches to another only when a rank blocks in the transport or in
// compute(). Nothing is ever concurrent, so a run is deterministic: the same
// program, seed and network give the same virtual times, bit for bit.
//
// The parts, one a file: sim/options.hpp (SimOptions, SimResult),
// sim/fibers.hpp (the ranks' fibers), sim/network.hpp (links, routes, which
// flows' rates a change recomputes), sim/filling.hpp (max-min rates by
// progressive filling), sim/events.hpp (timers and arrivals in time order),
// sim/message.hpp, sim/context.hpp (a rank's
// background context); this file has the world (ports, matching, virtual
// time) and SimTransport.
//
// The cost model (SIMULATION.md says more):
// - A message of b real bytes is b * byte_scale virtual bytes on the wire.
// - Each rank has one send port and one receive port (full duplex): it sends
//   its messages one at a time in the order it issued them, and receives one
//   at a time; a message starts when its sender's port has finished the ones
//   before it and its receiver's port is free.
// - While it moves, a message is a flow over the links of its path: the
//   sender host's link up, the rack uplinks up and down when it leaves its
//   rack, the receiver host's link down (two ranks on one host use the host's
//   local link instead). Flows that share a link share it max-min fairly: the
//   rates are recomputed (progressive filling) whenever a flow starts or ends.
// - The sender's send is done when the last byte has left; the receiver has
//   the message alpha seconds later. So a message alone on its links takes
//   alpha + size / bandwidth, and a rank that sends several in a row pays
//   alpha once. A message between two racks (hosts_per_rack > 0) arrives
//   alpha + uplink_alpha after its last byte left: the wide-area delay.
// - compute(s) advances the rank's clock by s seconds (times its straggler
//   factor); compute(0) returns at once, without handing over its turn.
// When every rank waits and nothing moves, the program has deadlocked in
// virtual time: every waiting rank throws timeout_error naming what it waits
// for (or peer_error naming a rank that failed). There is no wall-clock
// timeout: virtual time has no hung peer, only a deadlock, which is found at
// once. Otherwise the contract is transport/contract.hpp's.
//
// Channels and the background (transport/background.hpp): channel(c) is the
// same rank on channel c (SimOptions::channels of them); a message matches
// only a receive of its own channel, in order per sender, tag and channel.
// The channels of a rank share its two ports, so their messages queue in one
// outbox in issue order. SimTransport::context runs a Background as a second
// fiber of the rank, on its channel: it communicates while the rank's own
// fiber computes, so the two overlap in virtual time. Every wake-up (a send or
// receive done, a compute timer, a deadlock) goes to the fiber that waits.

#include <algorithm>
#include <boost/context/fiber.hpp>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "dssync/core/concepts.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/ops.hpp"
#include "dssync/core/partition_cache.hpp"
#include "dssync/core/random.hpp"
#include "dssync/core/tag.hpp"
#include "dssync/transport/background.hpp"
#include "dssync/transport/contract.hpp"
#include "dssync/transport/sim/events.hpp"
#include "dssync/transport/sim/fibers.hpp"
#include "dssync/transport/sim/message.hpp"
#include "dssync/transport/sim/network.hpp"
#include "dssync/transport/sim/options.hpp"

namespace dssync {

class SimWorld;

class SimTransport {
 public:
  class context;

  int rank() const noexcept { return rank_; }
  int size() const noexcept;
  // Channels (transport/background.hpp): this rank on channel c, whose
  // messages meet only channel c of the other ranks.
  int channels() const noexcept;
  int channel_index() const noexcept { return channel_; }
  SimTransport channel(int c) const {
    detail::check_channel(rank_, channels(), c);
    return SimTransport(world_, rank_, c);
  }
  // This rank's virtual time, in seconds.
  double now() const noexcept;
  // Virtual bytes this rank has sent, on all its channels, that left its
  // rack (the wide-area traffic, when racks stand for data centers).
  double uplink_bytes() const noexcept;
  // Spends `seconds` of virtual time computing (times the straggler factor);
  // 0 returns at once.
  void compute(double seconds);
  // Whether this rank is one of the stragglers.
  bool straggler() const noexcept;
  // Every rank is a fiber of one thread, so the checked synchronizers are
  // numbered here rather than per thread (sync/common.hpp): per rank and
  // channel, so that a background synchronizer does not shift the trainer's.
  std::uint64_t next_checked_ordinal() noexcept;
  // The world's one copy of each partition the synchronizers ask for
  // (core/partition_cache.hpp): n ranks in one process would otherwise
  // compute and hold n copies of a world-sized partition.
  detail::PartitionCache* partition_cache() const noexcept;

  // A simulated network: collectives send a block as one message, so that a
  // ring step costs one latency, as in the closed forms.
  static constexpr std::size_t segment_bytes = SIZE_MAX;

  template <class T>
  requires element<std::remove_const_t<T>>
  void send(int dst, std::span<T> data, tag_t tag);
  template <class T>
  requires element<T>
  void recv(int src, std::span<T> data, tag_t tag);
  template <class T, class U>
  requires element<std::remove_const_t<T>> && element<U>
  void sendrecv(int dst, std::span<T> out, int src, std::span<U> in, tag_t tag);

 private:
  friend class SimWorld;
  SimTransport(SimWorld* w, int rank, int channel = 0)
      : world_(w), rank_(rank), channel_(channel) {}
  SimWorld* world_;
  int rank_;
  int channel_;
};

class SimWorld {
 public:
  explicit SimWorld(int n, SimOptions options = {}) : size_(n), options_(options), partitions_(n) {
    detail::validate(n, options_);
  }

  int size() const noexcept { return size_; }
  const SimOptions& options() const noexcept { return options_; }

  // Runs f(SimTransport&) as every rank, each in its own fiber, and returns
  // the virtual times. The first exception of a rank is rethrown after every
  // rank has ended.
  template <class F>
  requires std::invocable<F&, SimTransport&> SimResult run(F&& f) {
    reset();
    for (int r = 0; r < size_; ++r) {
      fibers_.spawn(r, [this, &f](int rank) {
        SimTransport t(this, rank);
        try {
          f(t);
        } catch (const boost::context::detail::forced_unwind&) {
          throw;  // the fiber is being destroyed: let it unwind
        } catch (...) {
          fail(rank, std::current_exception());
        }
        port(rank).finish = now_;
      });
    }
    loop();
    std::exception_ptr first = std::exchange(first_, nullptr);
    SimResult res;
    res.messages = messages_;
    res.switches = fibers_.switches();
    res.virtual_bytes = virtual_bytes_;
    res.uplink_bytes = uplink_bytes_;
    res.stack_guard_pages = fibers_.guard_pages();
    res.message_records = owned_.size();
    for (const Port& p : ports_) {
      res.finish.push_back(p.finish);
      res.makespan = std::max(res.makespan, p.finish);
    }
    fibers_.reset(0);  // unwinds the fibers that did not end, measuring their stacks
    res.stack_bytes_used = fibers_.stack_used();
    if (first) std::rethrow_exception(first);
    return res;
  }

 private:
  friend class SimTransport;
  friend class SimTransport::context;
  using Message = detail::SimMessage;
  using Recv = detail::SimRecv;
  using Operation = detail::SimOperation;

  // A rank's ports and what waits at them (full duplex: it sends one message
  // at a time in the order it issued them, and receives one at a time). Two
  // cache lines: its flags, outbox, posted receives and copies in flight in
  // the first, the rest in the second.
  struct alignas(64) Port {
    bool sending = false;                               // its send port moves a message
    bool receiving = false;                             // its receive port takes a message
    detail::SimQueue<&Message::next_out> outbox;        // not yet started, in issue order
    detail::SimList<Recv> posted;                       // in the order they were posted
    detail::SimList<Message> in_flight;                 // copies on their way here (alpha)
    alignas(64) detail::SimQueue<&Message::next_in> inbox_waiting;  // senders' outbox heads waiting here
    detail::SimList<Message> unexpected;                            // arrived before their receive
    double finish = 0;                                  // virtual time its function returned
    double uplink_bytes = 0;                            // virtual bytes it sent that left its rack
    double factor = 1;                                  // compute time factor
  };
  using Woken = detail::SimWoken;
  struct Event {  // a timer or an arrival
    double time;
    std::uint64_t seq;
    int fiber;         // timer: the fiber to wake
    Message* message;  // arrival: the message
    bool operator>(const Event& e) const { return time != e.time ? time > e.time : seq > e.seq; }
  };
  // One side of an operation.
  struct Outgoing {
    int dst;
    std::span<const std::byte> bytes;
  };
  struct Incoming {
    int src;
    std::span<std::byte> bytes;
  };

  Port& port(int r) { return ports_[static_cast<std::size_t>(r)]; }
  // The fibers: slot rank + channel * size. A rank's own fiber is its slot on
  // channel 0; a background context on channel c takes slot (rank, c).
  int slot(int rank, int channel) const noexcept { return rank + channel * size_; }
  Woken& woken(int fiber) { return operation(fiber).woken; }
  Operation& operation(int fiber) { return operations_[static_cast<std::size_t>(fiber)]; }

  // Records that `rank` failed with e, the run's error if it is the first.
  void fail(int rank, std::exception_ptr e) {
    // A rank whose own timeout failed the world recorded it already.
    if (failure_.record(rank, detail::describe_exception(e)) ||
        (failure_.rank() == rank && !first_))
      first_ = e;
  }

  void reset() {
    ports_.clear();
    ports_.resize(static_cast<std::size_t>(size_));
    const int slots = size_ * options_.channels;
    fibers_.reset(slots, options_.stack_bytes, options_.stack_guard, size_);
    operations_.assign(static_cast<std::size_t>(slots), Operation{});
    awaiting_.assign(static_cast<std::size_t>(slots), 0);
    ordinals_ = detail::CheckedOrdinals(static_cast<std::size_t>(slots));
    partitions_.trim();
    network_.reset(options_, size_);
    // Stragglers: a seeded choice of round(fraction * n) ranks.
    const int slow = static_cast<int>(std::lround(options_.straggler_fraction * size_));
    std::vector<int> order(static_cast<std::size_t>(size_));
    for (int r = 0; r < size_; ++r) order[static_cast<std::size_t>(r)] = r;
    CounterRng rng(options_.seed, 0x5354524147ULL);
    random_permute(std::span<int>(order), rng);
    for (int i = 0; i < slow; ++i)
      port(order[static_cast<std::size_t>(i)]).factor = options_.straggler_slowdown;
    events_.clear();
    now_ = 0;
    seq_ = 0;
    messages_ = 0;
    virtual_bytes_ = 0;
    uplink_bytes_ = 0;
    failure_ = {};
    first_ = nullptr;
    // Every message record is free again, also those a failed run left
    // unmatched or moving.
    pool_.clear();
    for (const auto& m : owned_) release(*m);
  }

  // ---- virtual time --------------------------------------------------------
  void loop() {
    for (;;) {
      fibers_.run_ready();
      if (fibers_.all_done()) return;
      if (!advance()) deadlock();
    }
  }

  // Every fiber waits and nothing moves: each fiber waiting in an operation
  // is woken to throw. Their errors may end the waits of background contexts
  // (context::await), so those are woken only when nothing else waits: then
  // no wait can ever end.
  void deadlock() {
    const Woken why = failure_.failed() ? Woken::failure : Woken::deadlock;
    bool operations = false;
    for (int f = 0; f < fibers_.slots(); ++f)
      operations = operations || (fibers_.waiting(f) && !awaiting_[static_cast<std::size_t>(f)]);
    for (int f = 0; f < fibers_.slots(); ++f) {
      if (!fibers_.waiting(f) || (operations && awaiting_[static_cast<std::size_t>(f)])) continue;
      woken(f) = why;
      fibers_.wake(f);
    }
  }

  // Moves virtual time to the next event and handles everything due then.
  // False when there is nothing left to happen.
  bool advance() {
    double next = network_.next_finish(now_);
    if (!events_.empty()) next = std::min(next, events_.top().time);
    if (next == std::numeric_limits<double>::infinity()) return false;
    now_ = next;
    // Flows that end now: their last byte has left.
    network_.finish_until(now_, [this](Message& m) { transmitted(m); });
    while (!events_.empty() && events_.top().time <= now_) {
      const Event e = events_.top();
      events_.pop();
      if (e.message)
        arrived(*e.message);
      else
        fibers_.wake(e.fiber);
    }
    return true;
  }

  // ---- ports ---------------------------------------------------------------
  void issue(Message& m) {
    ++messages_;
    const double bytes = static_cast<double>(m.bytes) * options_.byte_scale;
    virtual_bytes_ += bytes;
    network_.route(m);
    if (m.leaves_rack) {
      port(m.src).uplink_bytes += bytes;
      uplink_bytes_ += bytes;
    }
    Port& s = port(m.src);
    s.outbox.push_back(&m);
    if (!s.sending && s.outbox.front() == &m) offer(m);
  }
  // m is at the head of its sender's outbox and the sender's port is free.
  void offer(Message& m) {
    Port& d = port(m.dst);
    if (d.receiving) {
      d.inbox_waiting.push_back(&m);
      return;
    }
    start(m);
  }
  void start(Message& m) {
    Port& s = port(m.src);
    Port& d = port(m.dst);
    s.outbox.pop_front();
    s.sending = true;
    d.receiving = true;
    network_.start(m, static_cast<double>(m.bytes) * options_.byte_scale, now_);
  }
  // The last byte of m has left its sender: the bytes are taken now (the
  // sender may reuse its buffer), and the receiver has them alpha later.
  void transmitted(Message& m) {
    Port& s = port(m.src);
    Port& d = port(m.dst);
    // Straight into a posted receive of the same size, unless an earlier
    // message from the same sender, tag and channel is still on its way (in
    // order).
    const bool earlier = std::any_of(d.in_flight.begin(), d.in_flight.end(), [&](const Message* e) {
      return e->src == m.src && e->tag == m.tag && e->channel == m.channel;
    });
    Recv* into = earlier ? nullptr : open_recv_for(d, m);
    if (into && into->bytes == m.bytes) {
      into->claimed = true;
      if (m.bytes) std::memcpy(into->into, m.data, m.bytes);
      m.target = into;
    } else {
      m.staged.assign(m.data, m.data + m.bytes);
      d.in_flight.push_back(&m);
    }
    m.data = nullptr;
    operation(m.src_fiber).sent = true;
    wake_if_complete(m.src_fiber);
    // A message that leaves its rack also pays the wide-area delay. Every
    // message between two ranks pays the same latency, so they still arrive in
    // the order they were sent.
    const double latency = options_.alpha + (m.leaves_rack ? options_.uplink_alpha : 0.0);
    events_.push({now_ + latency, seq_++, -1, &m});
    // The ports take their next messages.
    s.sending = false;
    d.receiving = false;
    if (!d.inbox_waiting.empty()) {
      Message* next = d.inbox_waiting.front();
      d.inbox_waiting.pop_front();
      start(*next);
    }
    if (!s.sending && !s.outbox.empty()) offer(*s.outbox.front());
  }

  void arrived(Message& m) {
    Port& d = port(m.dst);
    if (m.target) {
      finish_recv(d, *m.target);
      release(m);
      return;
    }
    d.in_flight.erase(std::find(d.in_flight.begin(), d.in_flight.end(), &m));
    if (Recv* r = open_recv_for(d, m)) {
      deliver(m, *r);
      finish_recv(d, *r);
      release(m);
      return;
    }
    d.unexpected.push_back(&m);
  }

  // ---- matching --------------------------------------------------------------
  // The first posted receive for m's sender, tag and channel that no message
  // has claimed yet.
  static Recv* open_recv_for(const Port& d, const Message& m) {
    for (Recv* r : d.posted)
      if (!r->claimed && r->src == m.src && r->tag == m.tag && r->channel == m.channel) return r;
    return nullptr;
  }
  static void deliver(const Message& m, Recv& r) {
    if (r.bytes != m.bytes) {
      r.mismatch = true;
      r.sent_bytes = m.bytes;
    } else if (m.bytes) {
      std::memcpy(r.into, m.staged.data(), m.bytes);
    }
  }
  void finish_recv(Port& d, Recv& r) {
    r.done = true;
    d.posted.erase(std::find(d.posted.begin(), d.posted.end(), &r));
    wake_if_complete(r.fiber);
  }
  // A fiber runs again when its whole operation is done: waking it for half
  // an exchange would only switch to its stack and back.
  void wake_if_complete(int fiber) {
    if (operation(fiber).complete()) fibers_.wake(fiber);
  }
  // Posts a receive, or takes a message that arrived already.
  void post(int r, Recv& rv) {
    Port& p = port(r);
    for (auto it = p.unexpected.begin(); it != p.unexpected.end(); ++it) {
      Message* m = *it;
      if (m->src != rv.src || m->tag != rv.tag || m->channel != rv.channel) continue;
      deliver(*m, rv);
      rv.done = true;
      p.unexpected.erase(it);
      release(*m);
      return;
    }
    p.posted.push_back(&rv);
  }
  void cancel(int r, Recv& rv) {
    Port& p = port(r);
    auto it = std::find(p.posted.begin(), p.posted.end(), &rv);
    if (it != p.posted.end()) p.posted.erase(it);
  }

  // ---- messages --------------------------------------------------------------
  Message& acquire() {
    if (pool_.empty()) {
      owned_.push_back(std::make_unique<Message>());
      return *owned_.back();
    }
    Message* m = pool_.back();
    pool_.pop_back();
    return *m;
  }
  void release(Message& m) {
    m.target = nullptr;
    m.leaves_rack = false;
    m.data = nullptr;
    for (int& l : m.links) l = -1;
    pool_.push_back(&m);
  }

  // ---- what a rank calls -------------------------------------------------------
  // Throws if the world has failed: what a copy with itself checks.
  void check_usable(int r, int peer, tag_t tag) const {
    if (failure_.failed()) throw failure_.earlier(r, detail::p2p_context(r, peer, tag));
  }

  // One operation of rank r on `channel`: a send, a receive, or both, waited
  // for together by the fiber that calls.
  void operate(int r, int channel, std::optional<Outgoing> out, std::optional<Incoming> in,
               tag_t tag) {
    const int me = fibers_.current();
    // Where, for an error: made only when one is thrown (it holds a string).
    auto at = [&] { return detail::p2p_context(r, in ? in->src : out->dst, tag); };
    if (failure_.failed()) throw failure_.earlier(r, at());
    if (out && !std::isfinite(static_cast<double>(out->bytes.size()) * options_.byte_scale))
      throw configuration_error("a message of " + std::to_string(out->bytes.size()) +
                                    " bytes times SimOptions::byte_scale (" +
                                    std::to_string(options_.byte_scale) +
                                    ") is more virtual bytes than a double holds",
                                at());
    Operation& op = operation(me);
    op.recv = Recv{};
    op.sent = !out;
    op.receiving = in.has_value();
    Recv& rv = op.recv;
    if (in) {
      rv.src = in->src;
      rv.channel = channel;
      rv.fiber = me;
      rv.tag = tag;
      rv.into = in->bytes.data();
      rv.bytes = in->bytes.size();
      post(r, rv);
    }
    if (out) {
      Message& m = acquire();
      m.src = r;
      m.dst = out->dst;
      m.channel = channel;
      m.src_fiber = me;
      m.tag = tag;
      m.data = out->bytes.data();
      m.bytes = out->bytes.size();
      issue(m);
    }
    while (!op.complete()) {
      woken(me) = Woken::progress;
      fibers_.block(me);
      if (woken(me) != Woken::progress && !op.complete()) {
        // Deadlock, or a failed rank: nothing will ever complete this.
        if (in && !rv.done) cancel(r, rv);
        if (woken(me) == Woken::failure) throw failure_.during(at());
        const bool receiving = in && !rv.done;
        const int peer = receiving ? in->src : out->dst;
        timeout_error e((receiving ? detail::receive_text(peer) : detail::send_text(peer)) +
                            " cannot complete: at virtual time " + detail::virtual_seconds(now_) +
                            " s every rank waits, so the program deadlocks",
                        at().with_peer(peer));
        // A timeout fails the world, as on every transport: a program that
        // catches it finds every later operation failed.
        failure_.record(r, e.message());
        throw e;
      }
    }
    if (rv.mismatch) throw detail::size_mismatch(rv.bytes, rv.sent_bytes, in->src, at());
  }

  int size_;
  SimOptions options_;
  detail::PartitionCache partitions_;  // before the fibers: their synchronizers release into it
  detail::FiberScheduler fibers_;
  detail::FlowNetwork network_;
  std::vector<Port> ports_;
  detail::SimEvents<Event> events_;
  double now_ = 0;
  std::uint64_t seq_ = 0;
  std::uint64_t messages_ = 0;
  double virtual_bytes_ = 0;
  double uplink_bytes_ = 0;
  detail::StickyFailure failure_;
  std::exception_ptr first_;             // the run's error: the first failure's
  std::vector<Operation> operations_;    // per fiber: what it waits in (never resized in a run)
  std::vector<char> awaiting_;           // per fiber: it waits in a context's await
  detail::CheckedOrdinals ordinals_;     // per (rank, channel): next_checked_ordinal
  std::vector<std::unique_ptr<Message>> owned_;
  std::vector<Message*> pool_;
};

inline int SimTransport::size() const noexcept {
  return world_->size_;
}
inline int SimTransport::channels() const noexcept {
  return world_->options_.channels;
}
inline detail::PartitionCache* SimTransport::partition_cache() const noexcept {
  return &world_->partitions_;
}

inline std::uint64_t SimTransport::next_checked_ordinal() noexcept {
  return world_->ordinals_.next(static_cast<std::size_t>(world_->slot(rank_, channel_)));
}
inline double SimTransport::now() const noexcept {
  return world_->now_;
}
inline double SimTransport::uplink_bytes() const noexcept {
  return world_->ports_[static_cast<std::size_t>(rank_)].uplink_bytes;
}
inline bool SimTransport::straggler() const noexcept {
  return world_->ports_[static_cast<std::size_t>(rank_)].factor != 1.0;
}

inline void SimTransport::compute(double seconds) {
  if (!(seconds >= 0) || !std::isfinite(seconds))
    throw configuration_error("compute time must be at least 0, got " + std::to_string(seconds),
                              error_context{}.with_rank(rank_));
  SimWorld& w = *world_;
  if (seconds == 0) return;  // no time passes: nothing to wait for, no turn to hand over
  const double t = w.now_ + seconds * w.port(rank_).factor;
  if (!std::isfinite(t))
    throw configuration_error("compute time of " + std::to_string(seconds) + " s (times " +
                                  std::to_string(w.port(rank_).factor) +
                                  ", this rank's slowdown) takes the virtual clock past a double",
                              error_context{}.with_rank(rank_));
  const int me = w.fibers_.current();  // only the calling fiber computes
  w.events_.push({t, w.seq_++, me, nullptr});
  w.fibers_.block(me);
  if (w.now_ < t)
    throw timeout_error("woken before its compute time ended", error_context{}.with_rank(rank_));
}

template <class T>
requires element<std::remove_const_t<T>>
void SimTransport::send(int dst, std::span<T> data, tag_t tag) {
  detail::check_send(rank_, size(), dst, tag);
  world_->operate(rank_, channel_, SimWorld::Outgoing{dst, std::as_bytes(data)}, std::nullopt, tag);
}

template <class T>
requires element<T>
void SimTransport::recv(int src, std::span<T> data, tag_t tag) {
  detail::check_recv(rank_, size(), src, tag);
  world_->operate(rank_, channel_, std::nullopt,
                  SimWorld::Incoming{src, std::as_writable_bytes(data)}, tag);
}

template <class T, class U>
requires element<std::remove_const_t<T>> && element<U>
void SimTransport::sendrecv(int dst, std::span<T> out, int src, std::span<U> in, tag_t tag) {
  const auto ob = std::as_bytes(out);
  const auto ib = std::as_writable_bytes(in);
  if (detail::check_sendrecv(rank_, size(), dst, src, tag)) {  // with itself: a copy, no time
    world_->check_usable(rank_, src, tag);
    return detail::self_exchange(ob, ib, rank_, tag);
  }
  world_->operate(rank_, channel_, SimWorld::Outgoing{dst, ob}, SimWorld::Incoming{src, ib}, tag);
}

}  // namespace dssync

// SimTransport::context, the background context of a rank.
#include "dssync/transport/sim/context.hpp"
