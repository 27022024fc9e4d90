#pragma once
// The simulator's ranks as fibers: one OS thread runs them all, one at a time,
// and switches only when a fiber blocks. A rank has one fiber per execution
// context (its own, and a background one per channel in use), each in a slot
// of its own. FiberScheduler owns the fibers, their stacks, the queue of
// fibers ready to run and the switches (announced to AddressSanitizer, or an
// exception thrown on a fiber's stack looks like a stack error). What a fiber
// waits for and who wakes it is the world's.

#include <sys/mman.h>
#include <unistd.h>

#include <boost/context/fiber.hpp>
#include <boost/context/stack_context.hpp>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <deque>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "dssync/core/error.hpp"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define DSSYNC_SIM_ASAN 1
#else
#define DSSYNC_SIM_ASAN 0
#endif

namespace dssync::detail {

class FiberScheduler {
 public:
  // Forgets every fiber (destroying one unwinds its stack) and makes n empty
  // slots. The slots never move, so a running fiber may keep a reference.
  void reset(int n) {
    fibers_.clear();
    fibers_.resize(static_cast<std::size_t>(n));
    ready_.clear();
    live_ = 0;
    current_ = -1;
  }

  // Makes the fiber of slot r, ready to run body(r) on a stack of
  // stack_bytes; the slot must not hold a live fiber (a finished one is
  // replaced). The body must let boost::context::detail::forced_unwind pass:
  // it is how a fiber that never finished is unwound when it is destroyed.
  template <class Body>
  void spawn(int r, std::size_t stack_bytes, Body body) {
    namespace ctx = boost::context;
    Fiber& me = at(r);
    me.spawned = true;
    me.done = false;
    ++live_;
    me.waiting = false;
    me.self =
        ctx::fiber(std::allocator_arg, Stack{GuardedStack{stack_bytes}, &me},
                   [this, r, body = std::move(body)](ctx::fiber&& sched) mutable {
                     Fiber& f = at(r);
#if DSSYNC_SIM_ASAN
                     __sanitizer_finish_switch_fiber(nullptr, &sched_bottom_, &sched_size_);
#endif
                     f.sched = std::move(sched);
                     body(r);
                     f.done = true;
                     --live_;
#if DSSYNC_SIM_ASAN
                     __sanitizer_start_switch_fiber(nullptr, sched_bottom_, sched_size_);
#endif
                     return std::move(f.sched);
                   });
    ready_.push_back(r);
  }

  // Called on fiber r: sleeps until wake(r).
  void block(int r) {
    Fiber& f = at(r);
    f.waiting = true;
#if DSSYNC_SIM_ASAN
    __sanitizer_start_switch_fiber(&f.fake_stack, sched_bottom_, sched_size_);
#endif
    f.sched = std::move(f.sched).resume();
#if DSSYNC_SIM_ASAN
    __sanitizer_finish_switch_fiber(f.fake_stack, &sched_bottom_, &sched_size_);
#endif
  }

  // Makes a blocked fiber ready; one that is running or ready already stays as it is.
  void wake(int r) {
    Fiber& f = at(r);
    if (f.waiting) {
      f.waiting = false;
      ready_.push_back(r);
    }
  }

  bool waiting(int r) const {
    return fibers_[static_cast<std::size_t>(r)].waiting;
  }
  // Whether slot r holds a fiber that has not finished.
  bool live(int r) const {
    const Fiber& f = fibers_[static_cast<std::size_t>(r)];
    return f.spawned && !f.done;
  }
  // Counted, not scanned: the event loop asks after every event.
  bool all_done() const noexcept { return live_ == 0; }
  int slots() const noexcept {
    return static_cast<int>(fibers_.size());
  }
  // The fiber that runs now (-1: none, the scheduler itself).
  int current() const noexcept {
    return current_;
  }

  // Runs the ready fibers, in the order they became ready, until none is.
  void run_ready() {
    while (!ready_.empty()) {
      const int r = ready_.front();
      ready_.pop_front();
      Fiber& f = at(r);
      current_ = r;
#if DSSYNC_SIM_ASAN
      __sanitizer_start_switch_fiber(&sched_fake_stack_, f.stack_bottom, f.stack_size);
#endif
      f.self = std::move(f.self).resume();
#if DSSYNC_SIM_ASAN
      __sanitizer_finish_switch_fiber(sched_fake_stack_, nullptr, nullptr);
#endif
      current_ = -1;
    }
  }

 private:
  struct Fiber {
    boost::context::fiber self, sched;
    const void* stack_bottom = nullptr;  // for AddressSanitizer's fiber switches
    std::size_t stack_size = 0;
    void* fake_stack = nullptr;
    bool spawned = false;
    bool done = false;
    bool waiting = false;
  };
  // A fiber's stack with a guard page below it, so that an overflow is a
  // segmentation fault, never a write into another fiber's stack. Boost's
  // protected_fixedsize_stack ignores a failed mprotect in a release build,
  // which leaves the stack unguarded; it fails once the process has
  // vm.max_map_count mappings (65530 by default), and each guarded stack
  // takes two: about 32,000 fibers. Here that is a clear error instead.
  struct GuardedStack {
    std::size_t bytes;
    boost::context::stack_context allocate() {
      const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
      const std::size_t size = (bytes + page - 1) / page * page + page;
      void* vp = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (vp == MAP_FAILED) throw std::bad_alloc();
      if (::mprotect(vp, page, PROT_NONE) != 0) {
        const int err = errno;
        ::munmap(vp, size);
        throw configuration_error(
            std::string("cannot protect the guard page of a simulated fiber's stack (") +
            std::strerror(err) +
            "): each fiber's stack takes two memory mappings, and the process has reached "
            "its limit (vm.max_map_count, 65530 by default: about 32,000 ranks); raise it "
            "(sysctl vm.max_map_count) to simulate more ranks");
      }
      boost::context::stack_context sc;
      sc.size = size;
      sc.sp = static_cast<char*>(vp) + size;
      return sc;
    }
    void deallocate(boost::context::stack_context& sc) noexcept {
      ::munmap(static_cast<char*>(sc.sp) - sc.size, sc.size);
    }
  };
  // A fiber's stack, remembered for AddressSanitizer.
  struct Stack {
    GuardedStack inner;
    Fiber* fiber;
    boost::context::stack_context allocate() {
      boost::context::stack_context sc = inner.allocate();
      fiber->stack_bottom = static_cast<const char*>(sc.sp) - sc.size;
      fiber->stack_size = sc.size;
      return sc;
    }
    void deallocate(boost::context::stack_context& sc) noexcept {
#if DSSYNC_SIM_ASAN
      // The frames at the top of a finished fiber never return (it leaves by a
      // switch), so their redzones stay poisoned; a later stack mapped at the
      // same address would inherit them and fail its first store.
      __asan_unpoison_memory_region(static_cast<char*>(sc.sp) - sc.size, sc.size);
#endif
      inner.deallocate(sc);
    }
  };

  Fiber& at(int r) {
    return fibers_[static_cast<std::size_t>(r)];
  }

  std::vector<Fiber> fibers_;
  std::deque<int> ready_;
  int current_ = -1;
  int live_ = 0;  // fibers spawned and not finished
  const void* sched_bottom_ = nullptr;  // the scheduler's stack, for AddressSanitizer
  std::size_t sched_size_ = 0;
  void* sched_fake_stack_ = nullptr;
};

}  // namespace dssync::detail
