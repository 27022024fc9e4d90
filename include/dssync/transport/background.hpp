#pragma once
// Channels and the background context: how a rank synchronizes beside its
// training loop without rewriting a single collective.
//
// A transport with channels (the concept transport_with_channels) gives each
// rank several channels. channel(c) is a transport of the same type, of the
// same rank, whose messages go only to channel c of the other ranks: the
// collectives and synchronizers run on it unchanged. Channel 0 is the
// transport itself. Two execution contexts of one rank may use two different
// channels at the same time (never one channel from two contexts at once). A
// failure on any channel fails the transport on all of them, and the contract
// of transport/contract.hpp holds on every channel.
//
// Background<Tr> is the second context of a rank: a thread (on the simulator,
// a fiber of the same rank) that runs jobs on one channel while the caller
// goes on:
//
//   dssync::Background bg(transport);            // channel 1
//   bg.start([&](auto& channel) { ring.all_reduce(channel, g, data, Sum{}, 0); });
//   ... compute ...
//   if (bg.wait(std::chrono::seconds(5))) bg.get();  // rethrows the job's error
//
// One job at a time; start() while a job runs is a configuration_error. The
// job is kept in a std::function, so a callable of at most two pointers (a
// lambda capturing `this` or two references) is stored without allocating,
// and a synchronizer that starts a job every step allocates nothing.
//
// A transport may run the second context itself by defining a nested type
// `context` (the simulator does: a fiber, waits in virtual time); otherwise it
// is a thread (detail::ThreadContext). A context is a monitor:
//   context(Tr& channel);
//   void start(Body body);                // runs body() in the new context, once
//   void update(F f);                     // f() under the monitor, then wakes the waiters
//   bool await(P ready, Deadline d);      // sleeps until ready() (checked under
//                                         // the monitor) or d passes; returns ready()
//   void join();                          // after body() has returned
// On the simulator a wait has no wall-clock deadline; a wait nothing can end
// is a deadlock in virtual time and ends with timeout_error, as every other
// wait there.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <concepts>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "dssync/core/concepts.hpp"
#include "dssync/core/error.hpp"
#include "dssync/transport/contract.hpp"

namespace dssync {

// Optional: channels. channels() is how many this transport has (its
// options say), channel_index() which one this object is, channel(c) the
// same rank's channel c.
template <class T>
concept transport_with_channels = transport<T> && requires(T& t, const T& ct, int c) {
  { ct.channels() } -> std::convertible_to<int>;
  { ct.channel_index() } -> std::convertible_to<int>;
  { t.channel(c) } -> std::same_as<T>;
};

namespace detail {

// The second context of a rank as an OS thread: a mutex and a condition
// variable make the monitor. Waiting sleeps; it never spins.
class ThreadContext {
 public:
  template <class Tr>
  explicit ThreadContext(Tr&) {}
  ThreadContext(const ThreadContext&) = delete;
  ThreadContext& operator=(const ThreadContext&) = delete;

  template <class Body>
  void start(Body body) {
    thread_ = std::thread(std::move(body));
  }
  template <class F>
  void update(F&& f) {
    {
      std::lock_guard lk(mu_);
      f();
    }
    cv_.notify_all();
  }
  template <class P>
  bool await(P&& ready, const Deadline& d) {
    std::unique_lock lk(mu_);
    return d.wait(cv_, lk, ready);
  }
  void join() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
};

// A context on a fiber (the simulator's) unwinds a fiber it destroys with an
// exception of its own, which no catch may keep: the job's catch-all lets it
// pass when the context has a static rethrow_if_unwinding(), called inside a
// catch (...) handler.
template <class Context>
void rethrow_if_unwinding() {
  if constexpr (requires { Context::rethrow_if_unwinding(); }) Context::rethrow_if_unwinding();
}

template <class Tr>
struct context_of {
  using type = ThreadContext;
};
template <class Tr>
  requires requires { typename Tr::context; }
struct context_of<Tr> {
  using type = typename Tr::context;
};

}  // namespace detail

template <transport_with_channels Tr>
class Background {
 public:
  using job_type = std::function<void(Tr&)>;

  // Starts the second context on channel `c` (1 unless said) of `t`'s rank.
  explicit Background(Tr& t, int c = 1)
      : channel_(checked_channel(t, c)), rank_(t.rank()), context_(channel_) {
    context_.start([this] { loop(); });
  }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;

  // Waits for the job that runs (its error is dropped: call get() to see
  // it), then ends the context.
  ~Background() {
    context_.update([this] { stop_ = true; });
    context_.await([this] { return ended_; }, Deadline(std::chrono::milliseconds(0)));
    context_.join();
  }

  // The channel the jobs run on.
  Tr& transport() noexcept { return channel_; }

  // Runs job(channel) in the background. Throws configuration_error while a
  // job runs; rethrows, instead of starting, the error of a finished job
  // nobody has got().
  template <class F>
    requires std::invocable<F&, Tr&>
  void start(F&& job) {
    bool busy = false;
    std::exception_ptr left;
    context_.update([&] {
      busy = state_ == State::running;
      if (busy) return;
      left = std::exchange(error_, nullptr);
      if (left) return;
      job_ = std::forward<F>(job);
      state_ = State::running;
    });
    if (busy)
      throw configuration_error("a background job is still running: wait for it before starting "
                                "the next",
                                error_context{}.with_rank(rank_));
    if (left) std::rethrow_exception(left);
  }

  // Whether no job is running (the last one, if any, has finished).
  bool ready() {
    bool r = false;
    context_.update([&] { r = state_ != State::running; });
    return r;
  }
  // Waits until the running job ends or `timeout` passes (zero: no limit;
  // negative: a configuration_error, as for the transports' timeouts);
  // returns whether it ended.
  bool wait(std::chrono::milliseconds timeout) {
    if (timeout.count() < 0)
      throw configuration_error(
          "Background::wait needs a timeout of at least 0 ms (0: no limit), got " +
              std::to_string(timeout.count()) + " ms",
          error_context{}.with_rank(rank_));
    return context_.await([this] { return state_ != State::running; }, Deadline(timeout));
  }
  // Waits for the running job and rethrows its error, once. The job's
  // operations have their transport's deadlines, so this wait ends.
  void get() {
    wait(std::chrono::milliseconds(0));
    std::exception_ptr e;
    context_.update([&] { e = std::exchange(error_, nullptr); });
    if (e) std::rethrow_exception(e);
  }

 private:
  using Deadline = detail::Deadline;
  enum class State { idle, running };

  static Tr checked_channel(Tr& t, int c) {
    if (c == t.channel_index())
      throw configuration_error("the background needs a channel of its own, not the caller's (" +
                                    std::to_string(c) + ")",
                                error_context{}.with_rank(t.rank()));
    return t.channel(c);
  }

  void loop() {
    for (;;) {
      context_.await([this] { return stop_ || state_ == State::running; },
                     Deadline(std::chrono::milliseconds(0)));
      bool stop = false;
      context_.update([&] { stop = stop_ && state_ != State::running; });
      if (stop) break;
      std::exception_ptr e;
      try {
        job_(channel_);
      } catch (...) {
        detail::rethrow_if_unwinding<typename detail::context_of<Tr>::type>();
        e = std::current_exception();
      }
      // Moved, not copied: this context keeps no reference, so the error is
      // destroyed by the caller that got it (a copy released here later
      // would race with the caller's reads as far as ThreadSanitizer can
      // see, the reference count living in the uninstrumented libstdc++).
      context_.update([&] {
        error_ = std::move(e);
        state_ = State::idle;
      });
    }
    context_.update([this] { ended_ = true; });
  }

  Tr channel_;
  int rank_;
  typename detail::context_of<Tr>::type context_;
  job_type job_;
  State state_ = State::idle;
  std::exception_ptr error_;
  bool stop_ = false;
  bool ended_ = false;
};

// Jobs 0, 1, 2, ... (a synchronizer's clocks) run on a Background one at a
// time and in order, with a single function run(channel, k) for job k. The
// caller submits them; a job starts as soon as the background is idle and the
// caller comes by: in submit(), in poll(), and at once while it waits in
// wait_done(). So the caller never blocks to start a job, and the background
// never runs ahead of what was submitted. `ended(k)`, if given, runs on the
// caller's context when it collects job k, before the job's error is
// rethrown: the one moment the caller may read what the job wrote without a
// race (the channel's traffic count, say) while no job runs. The functions
// are kept from construction on; starting a job allocates nothing.
template <transport_with_channels Tr>
class InOrderJobs {
 public:
  using run_type = std::function<void(Tr&, std::uint64_t)>;
  using ended_type = std::function<void(std::uint64_t)>;

  InOrderJobs(Tr& t, int channel, run_type run, ended_type ended = {})
      : background_(t, channel), run_(std::move(run)), ended_(std::move(ended)) {}
  InOrderJobs(const InOrderJobs&) = delete;
  InOrderJobs& operator=(const InOrderJobs&) = delete;
  ~InOrderJobs() { settle(); }

  // Waits for the job that runs, if one does, without collecting it. An
  // owner whose buffers the jobs use calls it first in its destructor (the
  // job's operations have their deadlines, so this ends).
  void settle() {
    if (running_) background_.wait(std::chrono::milliseconds(0));
  }

  // The channel the jobs run on.
  Tr& transport() noexcept { return background_.transport(); }

  // One more job; returns its number.
  std::uint64_t submit() {
    const std::uint64_t k = submitted_++;
    max_in_flight_ = std::max(max_in_flight_, submitted_ - done_);
    poll();
    return k;
  }
  // Collects a job that has ended (rethrowing its error) and starts the next.
  void poll() {
    if (running_ && background_.ready()) collect();
    if (!running_ && done_ < submitted_) {
      running_ = true;
      background_.start([this](Tr& channel) { run_(channel, done_); });
    }
  }
  // Waits until jobs [0, upto) have ended, keeping the background busy;
  // returns the seconds it waited. upto must not exceed submitted().
  double wait_done(std::uint64_t upto) {
    if (done_ >= upto) return 0;
    const auto start = std::chrono::steady_clock::now();
    while (done_ < upto) {
      poll();
      if (done_ >= upto) break;
      // done_ < upto <= submitted_: a job runs now.
      background_.wait(std::chrono::milliseconds(0));
      collect();
    }
    poll();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  std::uint64_t submitted() const noexcept { return submitted_; }
  std::uint64_t done() const noexcept { return done_; }  // jobs [0, done) have ended
  std::uint64_t max_in_flight() const noexcept { return max_in_flight_; }

 private:
  // The running job has ended (ready() or wait() synchronized with it). It
  // counts as done before its error is rethrown: the next poll() starts the
  // next job, not this one again.
  void collect() {
    running_ = false;
    background_.wait(std::chrono::milliseconds(0));
    const std::uint64_t job = done_++;
    if (ended_) ended_(job);
    background_.get();
  }

  Background<Tr> background_;
  run_type run_;
  ended_type ended_;
  std::uint64_t submitted_ = 0;
  std::uint64_t done_ = 0;  // job done_ is the one that runs, if one does
  std::uint64_t max_in_flight_ = 0;
  bool running_ = false;
};

}  // namespace dssync
