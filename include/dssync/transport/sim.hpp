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
// The cost model (docs/simulation.md says more):
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
//   alpha once.
// - compute(s) advances the rank's clock by s seconds (times its straggler
//   factor).
// When every rank waits and nothing moves, the program has deadlocked in
// virtual time: every waiting rank throws timeout_error naming what it waits
// for (or peer_error naming a rank that failed). There is no wall-clock
// timeout: virtual time has no hung peer, only a deadlock, which is found at
// once. Otherwise the contract is transport/contract.hpp's.

#include <algorithm>
#include <boost/context/fiber.hpp>
#include <boost/context/protected_fixedsize_stack.hpp>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <limits>
#include <memory>
#include <queue>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "dssync/core/concepts.hpp"

// Under AddressSanitizer every switch of stacks is announced to it, or an
// exception thrown on a rank's stack looks like a stack error.
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define DSSYNC_SIM_ASAN 1
#else
#define DSSYNC_SIM_ASAN 0
#endif
#include "dssync/core/error.hpp"
#include "dssync/core/ops.hpp"
#include "dssync/core/random.hpp"
#include "dssync/core/tag.hpp"
#include "dssync/transport/contract.hpp"

namespace dssync {

struct SimOptions {
  double alpha = 5e-6;             // seconds of latency per message
  double bandwidth = 1.25e9;       // bytes/s of a host's link, each direction
  int ranks_per_host = 1;          // ranks 0..k-1 on host 0, and so on
  double local_bandwidth = 2e10;   // bytes/s between two ranks of one host
  int hosts_per_rack = 0;          // 0: one rack, no uplinks
  double uplink_bandwidth = 0;     // bytes/s of a rack's uplink each direction (0: unlimited)
  double byte_scale = 1.0;         // virtual bytes on the wire per real byte
  double straggler_fraction = 0;   // share of ranks whose compute is slower
  double straggler_slowdown = 2.0; // their compute time factor
  std::uint64_t seed = 1;          // who straggles
  std::size_t stack_bytes = 256 * 1024;  // per rank fiber
};

struct SimResult {
  std::vector<double> finish;  // each rank's virtual time when its function returned
  double makespan = 0;         // the latest of them
  std::uint64_t messages = 0;
  double virtual_bytes = 0;    // on the wire, all ranks
};

class SimWorld;

namespace detail {

struct SimMessage {
  int src = 0, dst = 0;
  tag_t tag = 0;
  const std::byte* data = nullptr;  // the sender's buffer, valid until it is sent
  std::size_t bytes = 0;
  std::vector<std::byte> staged;    // a copy, when it arrives before its receive
  bool direct = false;              // copied straight into a posted receive
  double remaining = 0;             // virtual bytes still to move
  double rate = 0;                  // bytes/s now
  double since = 0;                 // when remaining was last brought up to date
  int links[4] = {-1, -1, -1, -1};
  bool* sent_flag = nullptr;        // the sender's completion flag
  struct SimRecv* target = nullptr; // the receive it was copied into (direct)
};

struct SimRecv {
  int src = -1;
  tag_t tag = 0;
  std::byte* into = nullptr;
  std::size_t bytes = 0;
  bool claimed = false;  // a message is on its way into it
  bool done = false;
  bool mismatch = false;        // the message that arrived had another length:
  std::size_t sent_bytes = 0;   // this one
};

}  // namespace detail

class SimTransport {
 public:
  int rank() const noexcept { return rank_; }
  int size() const noexcept;
  // This rank's virtual time, in seconds.
  double now() const noexcept;
  // Spends `seconds` of virtual time computing (times the straggler factor).
  void compute(double seconds);
  // Whether this rank is one of the stragglers.
  bool straggler() const noexcept;
  // Every rank is a fiber of one thread, so the checked synchronizers are
  // numbered per rank here rather than per thread (sync/common.hpp).
  std::uint64_t next_checked_ordinal() noexcept { return checked_ordinals_++; }

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
  SimTransport(SimWorld* w, int rank) : world_(w), rank_(rank) {}
  SimWorld* world_;
  int rank_;
  std::uint64_t checked_ordinals_ = 0;
};

class SimWorld {
 public:
  explicit SimWorld(int n, SimOptions options = {}) : n_(n), o_(options) {
    if (n < 1) throw configuration_error("a simulated world needs at least one rank, got " + std::to_string(n));
    auto positive = [](double v, const char* what) {
      if (!(v > 0) || !std::isfinite(v))
        throw configuration_error(std::string("SimOptions::") + what + " must be positive and finite, got " +
                                  std::to_string(v));
    };
    positive(o_.bandwidth, "bandwidth");
    positive(o_.local_bandwidth, "local_bandwidth");
    positive(o_.byte_scale, "byte_scale");
    if (!(o_.alpha >= 0) || !std::isfinite(o_.alpha))
      throw configuration_error("SimOptions::alpha must be at least 0, got " + std::to_string(o_.alpha));
    if (o_.uplink_bandwidth < 0 || !std::isfinite(o_.uplink_bandwidth))
      throw configuration_error("SimOptions::uplink_bandwidth must be at least 0 (0: unlimited)");
    if (o_.ranks_per_host < 1 || o_.hosts_per_rack < 0)
      throw configuration_error("SimOptions: ranks_per_host must be at least 1 and hosts_per_rack at least 0");
    if (o_.straggler_fraction < 0 || o_.straggler_fraction > 1 || !(o_.straggler_slowdown > 0))
      throw configuration_error("SimOptions: straggler_fraction in [0, 1] and straggler_slowdown > 0");
  }

  int size() const noexcept { return n_; }
  const SimOptions& options() const noexcept { return o_; }

  // Runs f(SimTransport&) as every rank, each in its own fiber, and returns
  // the virtual times. The first exception of a rank is rethrown after every
  // rank has ended.
  template <class F>
    requires std::invocable<F&, SimTransport&>
  SimResult run(F&& f) {
    reset();
    std::exception_ptr first;
    namespace ctx = boost::context;
    for (int r = 0; r < n_; ++r) {
      Rank& me = ranks_[static_cast<std::size_t>(r)];
      me.self = ctx::fiber(std::allocator_arg, Stack{ctx::protected_fixedsize_stack(o_.stack_bytes), &me},
                           [this, r, &f, &first](ctx::fiber&& sched) {
        Rank& rk = ranks_[static_cast<std::size_t>(r)];
#if DSSYNC_SIM_ASAN
        __sanitizer_finish_switch_fiber(nullptr, &sched_bottom_, &sched_size_);
#endif
        rk.sched = std::move(sched);
        SimTransport t(this, r);
        try {
          f(t);
        } catch (const boost::context::detail::forced_unwind&) {
          throw;  // the fiber is being destroyed: let it unwind
        } catch (...) {
          if (failure_.record(r, detail::describe_exception(std::current_exception())))
            first = std::current_exception();
        }
        rk.done = true;
        rk.finish = now_;
#if DSSYNC_SIM_ASAN
        __sanitizer_start_switch_fiber(nullptr, sched_bottom_, sched_size_);
#endif
        return std::move(rk.sched);
      });
      ready_.push_back(r);
    }
    loop();
    SimResult res;
    res.messages = messages_;
    res.virtual_bytes = virtual_bytes_;
    for (const Rank& rk : ranks_) {
      res.finish.push_back(rk.finish);
      res.makespan = std::max(res.makespan, rk.finish);
    }
    ranks_.clear();
    if (first) std::rethrow_exception(first);
    return res;
  }

 private:
  friend class SimTransport;
  using Message = detail::SimMessage;

  struct Rank {
    boost::context::fiber self, sched;
    const void* stack_bottom = nullptr;  // for AddressSanitizer's fiber switches
    std::size_t stack_size = 0;
    void* fake_stack = nullptr;
    bool done = false;
    bool waiting = false;
    double finish = 0;
    double factor = 1;  // compute time factor
    std::deque<Message*> outbox;  // not yet started, in issue order
    bool sending = false;         // its send port moves a message
    bool receiving = false;       // its receive port takes a message
    std::deque<Message*> inbox_waiting;  // heads of senders' outboxes, waiting for this port
    std::vector<Message*> unexpected;    // arrived before their receive
    std::vector<detail::SimRecv*> posted;
    std::vector<Message*> in_flight;     // copies on their way here (alpha)
    // Why the engine woke it: progress, or nothing can complete its wait
    // (a deadlock, or a rank that failed).
    enum class Woken { progress, deadlock, failure } woken = Woken::progress;
  };
  // A rank's stack, remembered for AddressSanitizer.
  struct Stack {
    boost::context::protected_fixedsize_stack inner;
    Rank* rank;
    boost::context::stack_context allocate() {
      boost::context::stack_context sc = inner.allocate();
      rank->stack_bottom = static_cast<const char*>(sc.sp) - sc.size;
      rank->stack_size = sc.size;
      return sc;
    }
    void deallocate(boost::context::stack_context& sc) noexcept { inner.deallocate(sc); }
  };
  struct Link {
    double capacity = 0;  // bytes/s; infinity: not a constraint
    double residual = 0;
    int unfrozen = 0;
  };
  struct Event {  // a timer or an arrival
    double time;
    std::uint64_t seq;
    int rank;          // timer: the rank to wake
    Message* message;  // arrival: the message
    bool operator>(const Event& e) const { return time != e.time ? time > e.time : seq > e.seq; }
  };

  // ---- topology --------------------------------------------------------------
  int host_of(int r) const { return r / o_.ranks_per_host; }
  int hosts() const { return (n_ + o_.ranks_per_host - 1) / o_.ranks_per_host; }
  int rack_of_host(int h) const { return o_.hosts_per_rack > 0 ? h / o_.hosts_per_rack : 0; }
  int racks() const { return o_.hosts_per_rack > 0 ? (hosts() + o_.hosts_per_rack - 1) / o_.hosts_per_rack : 1; }
  // Links: host h up 3h, down 3h+1, local 3h+2; then rack k up, down.
  int host_up(int h) const { return 3 * h; }
  int host_down(int h) const { return 3 * h + 1; }
  int host_local(int h) const { return 3 * h + 2; }
  int rack_up(int k) const { return 3 * hosts() + 2 * k; }
  int rack_down(int k) const { return 3 * hosts() + 2 * k + 1; }

  void route(Message& m) const {
    const int a = host_of(m.src), b = host_of(m.dst);
    if (a == b) {
      m.links[0] = host_local(a);
      return;
    }
    m.links[0] = host_up(a);
    m.links[1] = host_down(b);
    const int ra = rack_of_host(a), rb = rack_of_host(b);
    if (ra != rb && o_.uplink_bandwidth > 0) {
      m.links[2] = rack_up(ra);
      m.links[3] = rack_down(rb);
    }
  }

  void reset() {
    ranks_.clear();
    ranks_.resize(static_cast<std::size_t>(n_));
    links_.assign(static_cast<std::size_t>(3 * hosts() + 2 * racks()), Link{});
    for (int h = 0; h < hosts(); ++h) {
      links_[static_cast<std::size_t>(host_up(h))].capacity = o_.bandwidth;
      links_[static_cast<std::size_t>(host_down(h))].capacity = o_.bandwidth;
      links_[static_cast<std::size_t>(host_local(h))].capacity = o_.local_bandwidth;
    }
    for (int k = 0; k < racks(); ++k) {
      const double c = o_.uplink_bandwidth > 0 ? o_.uplink_bandwidth : std::numeric_limits<double>::infinity();
      links_[static_cast<std::size_t>(rack_up(k))].capacity = c;
      links_[static_cast<std::size_t>(rack_down(k))].capacity = c;
    }
    // Stragglers: a seeded choice of round(fraction * n) ranks.
    const int slow = static_cast<int>(std::lround(o_.straggler_fraction * n_));
    std::vector<int> order(static_cast<std::size_t>(n_));
    for (int r = 0; r < n_; ++r) order[static_cast<std::size_t>(r)] = r;
    CounterRng rng(o_.seed, 0x5354524147ULL);
    random_permute(std::span<int>(order), rng);
    for (int i = 0; i < slow; ++i) ranks_[static_cast<std::size_t>(order[static_cast<std::size_t>(i)])].factor = o_.straggler_slowdown;
    flows_.clear();
    events_ = {};
    ready_.clear();
    now_ = 0;
    seq_ = 0;
    messages_ = 0;
    virtual_bytes_ = 0;
    failure_ = {};
    flows_changed_ = false;
  }

  // ---- fibers ------------------------------------------------------------------
  // Called by a rank: sleeps until the engine wakes it.
  void block(int r) {
    Rank& rk = ranks_[static_cast<std::size_t>(r)];
    rk.waiting = true;
#if DSSYNC_SIM_ASAN
    __sanitizer_start_switch_fiber(&rk.fake_stack, sched_bottom_, sched_size_);
#endif
    rk.sched = std::move(rk.sched).resume();
#if DSSYNC_SIM_ASAN
    __sanitizer_finish_switch_fiber(rk.fake_stack, &sched_bottom_, &sched_size_);
#endif
  }
  void wake(int r) {
    Rank& rk = ranks_[static_cast<std::size_t>(r)];
    if (rk.waiting) {
      rk.waiting = false;
      ready_.push_back(r);
    }
  }

  void loop() {
    for (;;) {
      while (!ready_.empty()) {
        const int r = ready_.front();
        ready_.pop_front();
        Rank& rk = ranks_[static_cast<std::size_t>(r)];
#if DSSYNC_SIM_ASAN
        __sanitizer_start_switch_fiber(&sched_fake_stack_, rk.stack_bottom, rk.stack_size);
#endif
        rk.self = std::move(rk.self).resume();
#if DSSYNC_SIM_ASAN
        __sanitizer_finish_switch_fiber(sched_fake_stack_, nullptr, nullptr);
#endif
      }
      if (std::all_of(ranks_.begin(), ranks_.end(), [](const Rank& rk) { return rk.done; })) return;
      if (!advance()) deadlock();
    }
  }

  // Every rank waits and nothing moves: each waiting rank is woken to throw.
  void deadlock() {
    for (int r = 0; r < n_; ++r) {
      Rank& rk = ranks_[static_cast<std::size_t>(r)];
      if (rk.done || !rk.waiting) continue;
      rk.woken = failure_.failed() ? Rank::Woken::failure : Rank::Woken::deadlock;
      wake(r);
    }
  }

  // Moves virtual time to the next event and handles everything due then.
  // False when there is nothing left to happen.
  bool advance() {
    if (flows_changed_) rates();
    double next = std::numeric_limits<double>::infinity();
    for (const Message* m : flows_) next = std::min(next, finish_time(*m));
    if (!events_.empty()) next = std::min(next, events_.top().time);
    if (next == std::numeric_limits<double>::infinity()) return false;
    now_ = next;
    // Flows that end now: their last byte has left.
    for (std::size_t i = 0; i < flows_.size();) {
      Message* m = flows_[i];
      if (finish_time(*m) <= now_) {
        flows_[i] = flows_.back();
        flows_.pop_back();
        flows_changed_ = true;
        transmitted(*m);
      } else {
        ++i;
      }
    }
    while (!events_.empty() && events_.top().time <= now_) {
      const Event e = events_.top();
      events_.pop();
      if (e.message) arrived(*e.message);
      else wake(e.rank);
    }
    return true;
  }

  double finish_time(const Message& m) const {
    return m.remaining <= 0 ? m.since : m.since + m.remaining / m.rate;
  }

  // Max-min fair rates by progressive filling: repeatedly the link whose
  // residual capacity per unfrozen flow is least fixes the rate of the flows
  // that cross it.
  void rates() {
    flows_changed_ = false;
    for (Link& l : links_) l.residual = l.capacity, l.unfrozen = 0;
    for (Message* m : flows_)
      for (int l : m->links)
        if (l >= 0) ++links_[static_cast<std::size_t>(l)].unfrozen;
    std::vector<double>& rate = rate_scratch_;
    rate.assign(flows_.size(), -1.0);
    std::size_t left = flows_.size();
    while (left > 0) {
      double share = std::numeric_limits<double>::infinity();
      for (const Link& l : links_)
        if (l.unfrozen > 0) share = std::min(share, l.residual / l.unfrozen);
      for (std::size_t i = 0; i < flows_.size(); ++i) {
        if (rate[i] >= 0) continue;
        bool bottleneck = false;
        for (int l : flows_[i]->links)
          if (l >= 0) {
            const Link& k = links_[static_cast<std::size_t>(l)];
            bottleneck = bottleneck || k.residual / k.unfrozen <= share;
          }
        if (!bottleneck) continue;
        rate[i] = share;
        --left;
        for (int l : flows_[i]->links)
          if (l >= 0) {
            Link& k = links_[static_cast<std::size_t>(l)];
            k.residual -= share;
            --k.unfrozen;
          }
      }
    }
    for (std::size_t i = 0; i < flows_.size(); ++i) {
      Message& m = *flows_[i];
      if (m.rate == rate[i]) continue;
      if (m.rate > 0) m.remaining = std::max(0.0, m.remaining - m.rate * (now_ - m.since));
      m.since = now_;
      m.rate = rate[i];
    }
  }

  // ---- ports -------------------------------------------------------------------
  void issue(Message& m) {
    ++messages_;
    virtual_bytes_ += static_cast<double>(m.bytes) * o_.byte_scale;
    route(m);
    Rank& s = ranks_[static_cast<std::size_t>(m.src)];
    s.outbox.push_back(&m);
    if (!s.sending && s.outbox.size() == 1) offer(m);
  }
  // m is at the head of its sender's outbox and the sender's port is free.
  void offer(Message& m) {
    Rank& d = ranks_[static_cast<std::size_t>(m.dst)];
    if (d.receiving) {
      d.inbox_waiting.push_back(&m);
      return;
    }
    start(m);
  }
  void start(Message& m) {
    Rank& s = ranks_[static_cast<std::size_t>(m.src)];
    Rank& d = ranks_[static_cast<std::size_t>(m.dst)];
    s.outbox.pop_front();
    s.sending = true;
    d.receiving = true;
    m.remaining = static_cast<double>(m.bytes) * o_.byte_scale;
    m.rate = 0;
    m.since = now_;
    flows_.push_back(&m);
    flows_changed_ = true;
  }
  // The last byte of m has left its sender: the bytes are taken now (the
  // sender may reuse its buffer), and the receiver has them alpha later.
  void transmitted(Message& m) {
    Rank& s = ranks_[static_cast<std::size_t>(m.src)];
    Rank& d = ranks_[static_cast<std::size_t>(m.dst)];
    // Straight into a posted receive of the same size, unless an earlier
    // message from the same sender and tag is still on its way (in order).
    const bool earlier = std::any_of(d.in_flight.begin(), d.in_flight.end(), [&](const Message* e) {
      return e->src == m.src && e->tag == m.tag;
    });
    detail::SimRecv* into = earlier ? nullptr : open_recv_for(d, m);
    if (into && into->bytes == m.bytes) {
      into->claimed = true;
      if (m.bytes) std::memcpy(into->into, m.data, m.bytes);
      m.target = into;
    } else {
      m.staged.assign(m.data, m.data + m.bytes);
      d.in_flight.push_back(&m);
    }
    m.data = nullptr;
    *m.sent_flag = true;
    wake(m.src);
    events_.push({now_ + o_.alpha, seq_++, -1, &m});
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
    Rank& d = ranks_[static_cast<std::size_t>(m.dst)];
    if (m.target) {
      finish_recv(d, *m.target, m.dst);
      release(m);
      return;
    }
    d.in_flight.erase(std::find(d.in_flight.begin(), d.in_flight.end(), &m));
    if (detail::SimRecv* r = open_recv_for(d, m)) {
      deliver(m, *r);
      finish_recv(d, *r, m.dst);
      release(m);
      return;
    }
    d.unexpected.push_back(&m);
  }
  // The first posted receive for m's sender and tag that no message has
  // claimed yet.
  static detail::SimRecv* open_recv_for(const Rank& d, const Message& m) {
    for (detail::SimRecv* r : d.posted)
      if (!r->claimed && r->src == m.src && r->tag == m.tag) return r;
    return nullptr;
  }
  void deliver(const Message& m, detail::SimRecv& r) {
    if (r.bytes != m.bytes) {
      r.mismatch = true;
      r.sent_bytes = m.bytes;
    } else if (m.bytes) {
      std::memcpy(r.into, m.staged.data(), m.bytes);
    }
  }
  void finish_recv(Rank& d, detail::SimRecv& r, int rank) {
    r.done = true;
    d.posted.erase(std::find(d.posted.begin(), d.posted.end(), &r));
    wake(rank);
  }

  // ---- what a rank calls -----------------------------------------------------
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
    m.data = nullptr;
    m.sent_flag = nullptr;
    for (int& l : m.links) l = -1;
    pool_.push_back(&m);
  }

  // Posts a receive, or takes a message that arrived already.
  void post(int r, detail::SimRecv& rv) {
    Rank& rk = ranks_[static_cast<std::size_t>(r)];
    for (auto it = rk.unexpected.begin(); it != rk.unexpected.end(); ++it) {
      Message* m = *it;
      if (m->src != rv.src || m->tag != rv.tag) continue;
      deliver(*m, rv);
      rv.done = true;
      rk.unexpected.erase(it);
      release(*m);
      return;
    }
    rk.posted.push_back(&rv);
  }
  void cancel(int r, detail::SimRecv& rv) {
    Rank& rk = ranks_[static_cast<std::size_t>(r)];
    auto it = std::find(rk.posted.begin(), rk.posted.end(), &rv);
    if (it != rk.posted.end()) rk.posted.erase(it);
  }


  // One operation of rank r: an optional send and an optional receive,
  // waited for together.
  void operate(int r, int dst, std::span<const std::byte> out, int src, std::span<std::byte> in, tag_t tag,
               bool do_send, bool do_recv) {
    Rank& rk = ranks_[static_cast<std::size_t>(r)];
    const error_context at = detail::p2p_context(r, do_recv ? src : dst, tag);
    if (failure_.failed() && failure_.rank() != r) throw failure_.during(at);
    detail::SimRecv rv;
    bool sent = !do_send;
    if (do_recv) {
      rv.src = src;
      rv.tag = tag;
      rv.into = in.data();
      rv.bytes = in.size();
      post(r, rv);
    }
    if (do_send) {
      Message& m = acquire();
      m.src = r;
      m.dst = dst;
      m.tag = tag;
      m.data = out.data();
      m.bytes = out.size();
      m.sent_flag = &sent;
      issue(m);
    }
    while (!(sent && (!do_recv || rv.done))) {
      rk.woken = Rank::Woken::progress;
      block(r);
      if (rk.woken != Rank::Woken::progress && !(sent && (!do_recv || rv.done))) {
        // Deadlock, or a failed rank: nothing will ever complete this.
        if (do_recv && !rv.done) cancel(r, rv);
        if (rk.woken == Rank::Woken::failure) throw failure_.during(at);
        const bool receiving = do_recv && !rv.done;
        const int peer = receiving ? src : dst;
        throw timeout_error((receiving ? detail::receive_text(peer) : detail::send_text(peer)) +
                                " cannot complete: at virtual time " + std::to_string(now_) +
                                " s every rank waits, so the program deadlocks",
                            at.with_peer(peer));
      }
    }
    if (rv.mismatch) throw detail::size_mismatch(rv.bytes, rv.sent_bytes, src, at);
  }

  int n_;
  SimOptions o_;
  std::vector<Rank> ranks_;
  std::vector<Link> links_;
  std::vector<Message*> flows_;
  std::vector<double> rate_scratch_;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events_;
  std::deque<int> ready_;
  double now_ = 0;
  std::uint64_t seq_ = 0;
  std::uint64_t messages_ = 0;
  double virtual_bytes_ = 0;
  detail::StickyFailure failure_;
  bool flows_changed_ = false;
  std::vector<std::unique_ptr<Message>> owned_;
  const void* sched_bottom_ = nullptr;  // the scheduler's stack, for AddressSanitizer
  std::size_t sched_size_ = 0;
  void* sched_fake_stack_ = nullptr;
  std::vector<Message*> pool_;
};

inline int SimTransport::size() const noexcept { return world_->n_; }
inline double SimTransport::now() const noexcept { return world_->now_; }
inline bool SimTransport::straggler() const noexcept { return world_->ranks_[static_cast<std::size_t>(rank_)].factor != 1.0; }

inline void SimTransport::compute(double seconds) {
  if (!(seconds >= 0) || !std::isfinite(seconds))
    throw configuration_error("compute time must be at least 0, got " + std::to_string(seconds),
                              error_context{}.with_rank(rank_));
  SimWorld& w = *world_;
  const double t = w.now_ + seconds * w.ranks_[static_cast<std::size_t>(rank_)].factor;
  w.events_.push({t, w.seq_++, rank_, nullptr});
  w.block(rank_);
  if (w.now_ < t) throw timeout_error("woken before its compute time ended", error_context{}.with_rank(rank_));
}

template <class T>
  requires element<std::remove_const_t<T>>
void SimTransport::send(int dst, std::span<T> data, tag_t tag) {
  detail::check_send(rank_, size(), dst, tag);
  world_->operate(rank_, dst, std::as_bytes(data), -1, {}, tag, true, false);
}

template <class T>
  requires element<T>
void SimTransport::recv(int src, std::span<T> data, tag_t tag) {
  detail::check_recv(rank_, size(), src, tag);
  world_->operate(rank_, -1, {}, src, std::as_writable_bytes(data), tag, false, true);
}

template <class T, class U>
  requires element<std::remove_const_t<T>> && element<U>
void SimTransport::sendrecv(int dst, std::span<T> out, int src, std::span<U> in, tag_t tag) {
  const auto ob = std::as_bytes(out);
  const auto ib = std::as_writable_bytes(in);
  if (detail::check_sendrecv(rank_, size(), dst, src, tag))  // with itself: a copy, no time
    return detail::self_exchange(ob, ib, rank_, tag);
  world_->operate(rank_, dst, ob, src, ib, tag, true, true);
}

}  // namespace dssync
