#pragma once
// SimTransport::context: the background context of a simulated rank
// (transport/background.hpp), a second fiber of the rank on its own channel.
// Part of sim.hpp, which includes it; either may be included first.

#include <algorithm>
#include <boost/context/fiber.hpp>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/transport/sim.hpp"

namespace dssync {

// The second context of a rank (transport/background.hpp): a fiber of the
// rank on the context's channel, in slot (rank, channel). A monitor needs no
// lock on one thread; update() wakes the fibers waiting in await(), which
// sleep in virtual time. A wait that nothing can end any more (every fiber
// waits, and none in an operation whose error could end it) is a deadlock and
// throws timeout_error, as an operation's would.
class SimTransport::context {
 public:
  explicit context(SimTransport& channel)
      : world_(channel.world_), rank_(channel.rank_), channel_(channel.channel_) {
    waiters_.reserve(2);  // the two fibers of the pair: no allocation later
  }
  context(const context&) = delete;
  context& operator=(const context&) = delete;

  // Spawns the fiber; it runs when the caller next blocks. A body that throws
  // fails the rank, as a rank's function does (Background catches its jobs'
  // errors itself).
  template <class Body>
  void start(Body body) {
    SimWorld& w = *world_;
    const int fiber = w.slot(rank_, channel_);
    if (channel_ == 0)
      throw configuration_error(
          "on the simulator a background context needs a channel other than 0: channel 0 "
          "is the rank's own fiber",
          error_context{}.with_rank(rank_));
    if (w.fibers_.live(fiber))
      throw configuration_error(
          "channel " + std::to_string(channel_) + " of this rank already has a background context",
          error_context{}.with_rank(rank_));
    fiber_ = fiber;
    returned_ = false;
    w.fibers_.spawn(fiber, [this, body = std::move(body)](int) mutable {
      try {
        body();
      } catch (const boost::context::detail::forced_unwind&) {
        throw;  // the fiber is being destroyed: let it unwind
      } catch (...) {
        world_->fail(rank_, std::current_exception());
      }
      update([this] { returned_ = true; });
    });
  }

  template <class F>
  void update(F&& f) {
    f();
    for (int w : waiters_) world_->fibers_.wake(w);
  }

  // Sleeps the calling fiber until ready(). There is no wall-clock deadline in
  // virtual time, so d is not used.
  template <class P>
  bool await(P&& ready, const detail::Deadline& /*d*/) {
    SimWorld& w = *world_;
    const int me = w.fibers_.current();
    while (!ready()) {
      waiters_.push_back(me);
      w.awaiting_[static_cast<std::size_t>(me)] = 1;
      w.woken(me) = SimWorld::Woken::progress;
      w.fibers_.block(me);
      w.awaiting_[static_cast<std::size_t>(me)] = 0;
      waiters_.erase(std::find(waiters_.begin(), waiters_.end(), me));
      if (w.woken(me) != SimWorld::Woken::progress && !ready())
        throw timeout_error("a wait for the background context on channel " +
                                std::to_string(channel_) + " cannot end: at virtual time " +
                                detail::virtual_seconds(w.now_) +
                                " s every rank waits, so the program deadlocks",
                            error_context{}.with_rank(rank_));
    }
    return true;
  }

  // Called in a catch (...) handler (Background's): rethrows the exception
  // with which a fiber being destroyed unwinds, which must reach the fiber's
  // bottom.
  static void rethrow_if_unwinding() {
    try {
      throw;
    } catch (const boost::context::detail::forced_unwind&) {
      throw;
    } catch (...) {
    }
  }

  // Waits until the body has returned.
  void join() {
    if (fiber_ >= 0)
      await([this] { return returned_; }, detail::Deadline(std::chrono::milliseconds(0)));
  }

 private:
  SimWorld* world_;
  int rank_;
  int channel_;
  int fiber_ = -1;
  bool returned_ = false;
  std::vector<int> waiters_;  // fibers blocked in await()
};

}  // namespace dssync
