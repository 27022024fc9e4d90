#pragma once
// InProcWorld runs n ranks as threads of one process; each gets an
// InProcTransport. A send posts a descriptor of the sender's buffer and blocks;
// the receiver copies straight from that buffer into its own (one copy, no
// staging) and releases the sender. Waiting is on condition variables, never by
// spinning: 16 ranks on 2 cores is an ordinary configuration.
//
// Failure (the contract of transport/contract.hpp): when a rank's function
// throws, every blocked operation of every other rank ends with peer_error
// naming it, and run() rethrows the first exception. A rank waiting on a peer
// that has already returned fails at once, and every operation ends with
// timeout_error once InProcOptions::timeout has passed since it began (zero:
// no deadline).
//
// Channels (transport/background.hpp): each rank has InProcOptions::channels
// of them, each its own queue of posted sends and its own condition variable,
// so a rank's trainer and its background context wait and match apart.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/core/ops.hpp"
#include "dssync/core/tag.hpp"
#include "dssync/transport/contract.hpp"

namespace dssync {

struct InProcOptions {
  // How long one operation (send, recv, sendrecv) may take from its start
  // before it fails with timeout_error; zero waits without a deadline.
  std::chrono::milliseconds timeout = default_timeout;
  // How many channels each rank has (transport_with_channels): channel c of
  // a rank talks only to channel c of the others. Each is a queue and a
  // condition variable per rank; unused ones cost nothing.
  int channels = 2;
};

namespace detail {

// A posted send. It lives on the sender's stack; the sender does not return
// before the receiver is done with it or it has been unlinked.
struct InProcMessage {
  enum class State { posted, copying, done, mismatched };
  int src = 0;
  int dst = 0;
  tag_t tag = 0;
  const std::byte* data = nullptr;
  std::size_t bytes = 0;
  std::size_t receiver_bytes = 0;  // set when the sizes disagree
  State state = State::posted;
  InProcMessage* next = nullptr;
};

struct InProcShared {
  explicit InProcShared(int n, InProcOptions o)
      : size(n),
        options(o),
        slots(std::size_t(n) * std::size_t(o.channels)),
        wake(std::make_unique<std::condition_variable[]>(slots)),
        inbox(slots),
        exited(std::size_t(n), false),
        waiting_on(slots, -1),
        left_wait(slots, std::chrono::steady_clock::now()),
        ordinals(slots) {}

  struct Queue {  // FIFO of posted messages to one rank, linked through next
    InProcMessage* head = nullptr;
    InProcMessage* tail = nullptr;
  };

  const int size;
  const InProcOptions options;
  // Everything per rank and channel is at slot(rank, channel).
  const std::size_t slots;
  std::mutex mu;                                     // guards everything below
  std::unique_ptr<std::condition_variable[]> wake;   // only that rank's channel waits on it
  std::vector<Queue> inbox;
  std::vector<bool> exited;                          // per rank
  // Who each rank's channel is blocked on (-1: none, it runs its own code),
  // and when it last left a wait: a timeout can then name the rank that holds
  // everyone up.
  std::vector<int> waiting_on;
  std::vector<std::chrono::steady_clock::time_point> left_wait;
  StickyFailure failure;
  CheckedOrdinals ordinals;  // per slot; atomic, outside mu

  std::size_t slot(int rank, int channel) const {
    return std::size_t(channel) * std::size_t(size) + std::size_t(rank);
  }
  void notify(std::size_t s) { wake[s].notify_one(); }
  void notify_all_ranks() {
    for (std::size_t s = 0; s < slots; ++s) notify(s);
  }
};

}  // namespace detail

class InProcTransport {
 public:
  int rank() const noexcept { return rank_; }
  int size() const noexcept { return shared_->size; }

  // Channels (transport_with_channels, transport/background.hpp).
  int channels() const noexcept { return shared_->options.channels; }
  int channel_index() const noexcept { return channel_; }
  InProcTransport channel(int c) const {
    detail::check_channel(rank_, channels(), c);
    return InProcTransport(shared_, rank_, c);
  }
  // The checked mode's numbering of this rank's synchronizers on this channel
  // (transport/contract.hpp).
  std::uint64_t next_checked_ordinal() noexcept { return shared_->ordinals.next(slot()); }

  template <class T>
    requires element<std::remove_const_t<T>>
  void send(int dst, std::span<T> data, tag_t tag) {
    detail::check_send(rank_, size(), dst, tag);
    const detail::Deadline deadline(shared_->options.timeout);
    detail::InProcMessage m = make_message(dst, std::as_bytes(data), tag);
    post(m);
    wait_sent(m, deadline);
  }

  template <class T>
    requires element<T>
  void recv(int src, std::span<T> data, tag_t tag) {
    detail::check_recv(rank_, size(), src, tag);
    receive(src, std::as_writable_bytes(data), tag, detail::Deadline(shared_->options.timeout));
  }

  // Sends to dst and receives from src at once; dst and src may be the same
  // rank, or both this rank (a copy). One deadline covers both directions.
  template <class T, class U>
    requires element<std::remove_const_t<T>> && element<U>
  void sendrecv(int dst, std::span<T> out, int src, std::span<U> in, tag_t tag) {
    if (detail::check_sendrecv(rank_, size(), dst, src, tag)) {
      check_usable(src, tag);
      return detail::self_exchange(std::as_bytes(out), std::as_writable_bytes(in), rank_, tag);
    }
    const detail::Deadline deadline(shared_->options.timeout);
    detail::InProcMessage m = make_message(dst, std::as_bytes(out), tag);
    post(m);
    try {
      receive(src, std::as_writable_bytes(in), tag, deadline);
    } catch (const size_mismatch_error&) {
      finish_send_then_rethrow(m, deadline);
    } catch (...) {
      retract(m);
      throw;
    }
    wait_sent(m, deadline);
  }

  // sendrecv without the receive copy: `use` gets a read-only view of the
  // `count` incoming elements, in the sender's own memory, and must be done
  // with it when it returns (it is not called when count is 0). A ring step
  // combines straight from the neighbour's buffer this way, saving a pass over
  // memory.
  template <element T, class Use>
    requires std::invocable<Use&, std::span<const T>>
  void sendrecv_view(int dst, std::span<const T> out, int src, std::size_t count, Use&& use,
                     tag_t tag) {
    if (count > std::numeric_limits<std::size_t>::max() / sizeof(T))
      throw configuration_error("sendrecv_view of " + std::to_string(count) + " elements of " +
                                    std::to_string(sizeof(T)) +
                                    " bytes: more bytes than a size_t holds",
                                where(src, tag));
    if (detail::check_sendrecv(rank_, size(), dst, src, tag)) {
      check_usable(src, tag);
      if (out.size() != count)
        throw detail::size_mismatch(count * sizeof(T), out.size_bytes(), rank_, where(src, tag));
      if (count) use(out);
      return;
    }
    const detail::Deadline deadline(shared_->options.timeout);
    detail::InProcMessage m = make_message(dst, std::as_bytes(out), tag);
    post(m);
    try {
      receive(src, count * sizeof(T), tag, deadline, [&](const std::byte* data) {
        use(std::span<const T>(reinterpret_cast<const T*>(data), count));
      });
    } catch (const size_mismatch_error&) {
      finish_send_then_rethrow(m, deadline);
    } catch (...) {
      retract(m);
      throw;
    }
    wait_sent(m, deadline);
  }

 private:
  friend class InProcWorld;
  InProcTransport(detail::InProcShared* shared, int rank, int channel = 0)
      : shared_(shared), rank_(rank), channel_(channel) {}

  // This rank's (or a peer's) queue, condition variable and wait marks on
  // this channel.
  std::size_t slot() const { return shared_->slot(rank_, channel_); }
  std::size_t slot(int r) const { return shared_->slot(r, channel_); }

  using clock = std::chrono::steady_clock;
  using lock = std::unique_lock<std::mutex>;

  error_context where(int peer, tag_t tag) const { return detail::p2p_context(rank_, peer, tag); }

  detail::InProcMessage make_message(int dst, std::span<const std::byte> data, tag_t tag) const {
    detail::InProcMessage m;
    m.src = rank_;
    m.dst = dst;
    m.tag = tag;
    m.data = data.data();
    m.bytes = data.size();
    return m;
  }

  // Throws if the world has failed; called with the lock held. An operation
  // that finds it failed as it starts says so in the contract's words for
  // that (`starting`); one that was waiting, in the words for this.
  void check_failed(int peer, tag_t tag, bool starting = false) const {
    if (!shared_->failure.failed()) return;
    if (starting) throw shared_->failure.earlier(rank_, where(peer, tag));
    throw shared_->failure.during(where(peer, tag));
  }
  // The same, taking the lock: for a copy with itself, which waits for no one.
  void check_usable(int peer, tag_t tag) const {
    lock lk(shared_->mu);
    check_failed(peer, tag, true);
  }

  // Marks this rank as blocked on `peer` for the lifetime of the guard, or
  // until clear(); both with the world's lock held.
  class WaitMark {
   public:
    WaitMark(detail::InProcShared* s, std::size_t slot, int peer) : s_(s), slot_(slot) {
      s_->waiting_on[slot_] = peer;
    }
    ~WaitMark() { clear(); }
    WaitMark(const WaitMark&) = delete;
    WaitMark& operator=(const WaitMark&) = delete;
    void clear() {
      if (!s_) return;
      s_->waiting_on[slot_] = -1;
      s_->left_wait[slot_] = clock::now();
      s_ = nullptr;
    }

   private:
    detail::InProcShared* s_;
    std::size_t slot_;
  };

  // For a timeout message: follows who waits on whom from `peer` to the rank
  // that holds everyone up, a rank busy in its own code, or to a cycle of
  // ranks waiting on each other. Called with the lock held.
  std::string stall_report(int peer) const {
    const auto& waiting_on = shared_->waiting_on;
    std::string chain = "rank " + std::to_string(peer);
    int q = peer;
    for (int hops = 0; hops <= size(); ++hops) {
      if (shared_->exited[static_cast<std::size_t>(q)]) return "; " + chain + " has returned";
      const int next = waiting_on[slot(q)];
      if (next < 0) {
        const double busy = std::chrono::duration<double>(
                                clock::now() - shared_->left_wait[slot(q)])
                                .count();
        char secs[32];
        std::snprintf(secs, sizeof secs, "%.1f", busy);
        return "; " + chain + (hops ? ", which" : "") + " is in no dssync operation: rank " +
               std::to_string(q) + " is stalled in its own code (for " + secs + " s)";
      }
      if (next == rank_)
        return "; " + chain + " waits on this rank: the ranks wait on each other (calls in another "
               "order, or another seed, group size or iteration on some rank)";
      chain += " waits on rank " + std::to_string(next);
      q = next;
    }
    return "; " + chain + ": a cycle of ranks waiting on each other";
  }

  void post(detail::InProcMessage& m) {
    {
      lock lk(shared_->mu);
      check_failed(m.dst, m.tag, true);
      auto& q = shared_->inbox[slot(m.dst)];
      if (q.tail)
        q.tail->next = &m;
      else
        q.head = &m;
      q.tail = &m;
    }
    shared_->notify(slot(m.dst));
  }

  // Removes m from its receiver's queue; if the receiver is copying from it,
  // waits for the copy to end (it always does) so the buffer outlives it.
  void unlink_locked(lock& lk, detail::InProcMessage& m) {
    using S = detail::InProcMessage::State;
    if (m.state == S::posted) {
      auto& q = shared_->inbox[slot(m.dst)];
      detail::InProcMessage* prev = nullptr;
      for (auto* p = q.head; p; prev = p, p = p->next) {
        if (p != &m) continue;
        (prev ? prev->next : q.head) = p->next;
        if (q.tail == p) q.tail = prev;
        break;
      }
      m.state = S::done;
    }
    shared_->wake[slot()].wait(lk, [&] { return m.state != S::copying; });
  }

  void retract(detail::InProcMessage& m) {
    lock lk(shared_->mu);
    unlink_locked(lk, m);
  }

  // A sendrecv whose receive did not fit: the transport stays usable, so its
  // send goes on to its peer as on every transport, and the mismatch is
  // what the caller hears (a later error of the send too is left to the
  // peer's side). Called in the mismatch's catch handler.
  [[noreturn]] void finish_send_then_rethrow(detail::InProcMessage& m,
                                             const detail::Deadline& deadline) {
    try {
      wait_sent(m, deadline);
    } catch (const error&) {
    }
    throw;
  }

  // A peer returned while this rank still needed it: the ranks are out of
  // step, and the world fails, naming the peer (as TCP fails when a peer
  // leaves while needed). Called with the lock held; returns the error.
  peer_error left_behind(int peer, tag_t tag, const char* what) {
    shared_->failure.record(peer, "rank " + std::to_string(peer) + " returned while rank " +
                                      std::to_string(rank_) + " still needed it");
    shared_->notify_all_ranks();
    return peer_error(what, where(peer, tag));
  }

  // A timeout fails the world, as the contract's first failure sticks: the
  // others' waits end naming this rank, and its later calls throw at once.
  // Called with the lock held; returns the error to throw.
  timeout_error failing(timeout_error e) {
    shared_->failure.record(rank_, e.message());
    shared_->notify_all_ranks();
    return e;
  }

  // Blocks until the receiver has taken m.
  void wait_sent(detail::InProcMessage& m, const detail::Deadline& deadline) {
    using S = detail::InProcMessage::State;
    lock lk(shared_->mu);
    WaitMark mark(shared_, slot(), m.dst);
    auto& wake = shared_->wake[slot()];
    while (m.state == S::posted || m.state == S::copying) {
      if (m.state == S::posted) {
        if (shared_->failure.failed()) {
          unlink_locked(lk, m);
          check_failed(m.dst, m.tag);
        }
        if (shared_->exited[static_cast<std::size_t>(m.dst)]) {
          unlink_locked(lk, m);
          throw left_behind(m.dst, m.tag,
                            "the peer returned without receiving a message sent to it");
        }
        if (deadline.passed()) {
          unlink_locked(lk, m);
          throw failing(detail::timed_out(detail::send_text(m.dst), deadline, m.dst,
                                          where(m.dst, m.tag),
                                          "; no receive matched it" + stall_report(m.dst)));
        }
        deadline.wait_once(wake, lk);
      } else {
        // The receiver is copying: it always ends, and wakes this rank then
        // (past the deadline a timed wait would return at once, and spin).
        wake.wait(lk);
      }
    }
    if (m.state == S::mismatched)
      throw detail::size_mismatch_sent(m.bytes, m.receiver_bytes, m.dst, where(m.dst, m.tag));
  }

  // Waits for the first message from src with this tag, checks that it has
  // `bytes` bytes, and hands the sender's buffer to use(const std::byte*)
  // while the sender stays blocked.
  template <class Use>
  void receive(int src, std::size_t bytes, tag_t tag, const detail::Deadline& deadline, Use&& use) {
    using S = detail::InProcMessage::State;
    lock lk(shared_->mu);
    auto& q = shared_->inbox[slot()];
    auto& wake = shared_->wake[slot()];
    detail::InProcMessage* prev = nullptr;
    detail::InProcMessage* m = nullptr;
    check_failed(src, tag, true);  // a failed world fails every later operation at once
    WaitMark mark(shared_, slot(), src);
    for (;;) {
      prev = nullptr;
      for (m = q.head; m; prev = m, m = m->next)
        if (m->src == src && m->tag == tag) break;
      if (m) break;
      check_failed(src, tag);
      if (shared_->exited[static_cast<std::size_t>(src)])
        throw left_behind(src, tag, "the peer returned without sending the message waited for");
      if (deadline.passed())
        throw failing(detail::timed_out(detail::receive_text(src), deadline, src, where(src, tag),
                                        pending_from(src) + stall_report(src)));
      deadline.wait_once(wake, lk);
    }
    mark.clear();
    (prev ? prev->next : q.head) = m->next;
    if (q.tail == m) q.tail = prev;
    m->next = nullptr;
    if (m->bytes != bytes) {
      m->state = S::mismatched;
      m->receiver_bytes = bytes;
      const std::size_t sent = m->bytes;
      lk.unlock();
      shared_->notify(slot(src));
      throw detail::size_mismatch(bytes, sent, src, where(src, tag));
    }
    m->state = S::copying;
    lk.unlock();
    struct Release {  // the sender is released even if use() throws
      InProcTransport* self;
      detail::InProcMessage* m;
      int src;
      ~Release() {
        {
          lock relock(self->shared_->mu);
          m->state = detail::InProcMessage::State::done;
        }
        self->shared_->notify(self->slot(src));
      }
    } release{this, m, src};
    if (bytes) use(m->data);
  }

  void receive(int src, std::span<std::byte> out, tag_t tag, const detail::Deadline& deadline) {
    receive(src, out.size(), tag, deadline,
            [&](const std::byte* data) { std::memcpy(out.data(), data, out.size()); });
  }

  // For a timeout message: the tags that did arrive from src, which shows a
  // peer that ran ahead or fell behind. Called with the lock held.
  std::string pending_from(int src) const {
    std::string tags;
    for (auto* p = shared_->inbox[slot()].head; p; p = p->next)
      if (p->src == src) tags += (tags.empty() ? "" : ", ") + std::to_string(p->tag);
    return tags.empty() ? std::string("; nothing from the peer is pending")
                        : "; pending from the peer: tags " + tags;
  }

  detail::InProcShared* shared_;
  int rank_;
  int channel_;
};

// n ranks as threads. run(f) calls f(InProcTransport&) on every rank at once
// and returns when all have returned; the first exception any rank threw is
// rethrown here, after every rank has stopped.
class InProcWorld {
 public:
  explicit InProcWorld(int n, InProcOptions options = {}) : size_(n), options_(options) {
    if (n < 1)
      throw configuration_error("an in-process world needs at least one rank, got " +
                                std::to_string(n));
    detail::check_channels_and_timeout("InProcOptions", options.channels, options.timeout);
  }

  int size() const noexcept { return size_; }

  template <class F>
    requires std::invocable<F&, InProcTransport&>
  void run(F&& f) {
    detail::InProcShared shared(size_, options_);
    std::exception_ptr first;
    std::vector<std::thread> threads;
    threads.reserve(static_cast<std::size_t>(size_));
    auto rank = [&](int r) {
      InProcTransport t(&shared, r);
      try {
        f(t);
        std::lock_guard lk(shared.mu);
        shared.exited[static_cast<std::size_t>(r)] = true;
      } catch (...) {
        std::lock_guard lk(shared.mu);
        // The first failure's error; a rank whose timeout failed the world
        // recorded it already, and a rank left behind by one that returned
        // recorded that one, whose function threw nothing.
        if (shared.failure.record(r, detail::describe_exception(std::current_exception())) ||
            (!first && (shared.failure.rank() == r ||
                        shared.exited[static_cast<std::size_t>(shared.failure.rank())])))
          first = std::current_exception();
      }
      shared.notify_all_ranks();
    };
    // A rank whose thread cannot be started fails the world, naming it: the
    // ranks already running then stop waiting for it, and are joined.
    int unstarted = -1;
    std::string why;
    for (int r = 0; r < size_ && unstarted < 0; ++r) {
      try {
        threads.emplace_back(rank, r);
      } catch (const std::system_error& e) {
        unstarted = r;
        why = e.what();
        {
          std::lock_guard lk(shared.mu);
          shared.failure.record(r, "its thread could not be started: " + why);
        }
        shared.notify_all_ranks();
      }
    }
    for (auto& t : threads) t.join();
    if (unstarted >= 0)
      throw configuration_error("an in-process world of " + std::to_string(size_) +
                                    " ranks could not start the thread of rank " +
                                    std::to_string(unstarted) + ": " + why,
                                error_context{}.with_rank(unstarted));
    if (first) std::rethrow_exception(first);
  }

 private:
  int size_;
  InProcOptions options_;
};

}  // namespace dssync
