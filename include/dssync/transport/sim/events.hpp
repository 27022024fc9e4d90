#pragma once
// The simulator's timers and arrivals, taken least (time, sequence number)
// first. Most events are pushed in that order already: an arrival is due a
// fixed latency after now, and now only grows, so a synchronous step's
// arrivals come in the order they are due. Those wait in a first-in,
// first-out ring; the others (a compute timer, an arrival with the wide-area
// delay among plain ones) in a heap. The two give the order one heap would,
// since no two events have the same (time, sequence number), at a fraction of
// a heap's cost per event when most of them take the ring.

#include <algorithm>
#include <cstddef>
#include <functional>
#include <utility>
#include <vector>

namespace dssync::detail {

// Event: has operator>, a strict order in which no two events are equal.
template <class Event>
class SimEvents {
 public:
  bool empty() const noexcept { return count_ == 0 && heap_.empty(); }
  void clear() noexcept {
    head_ = count_ = 0;
    heap_.clear();
  }

  void push(const Event& e) {
    if (count_ == 0 || !(back() > e)) {
      if (count_ == ring_.size()) grow();
      ring_[(head_ + count_) & (ring_.size() - 1)] = e;
      ++count_;
      return;
    }
    heap_.push_back(e);
    std::push_heap(heap_.begin(), heap_.end(), std::greater<>{});
  }
  // The least event; not empty().
  const Event& top() const noexcept { return from_ring() ? ring_[head_] : heap_.front(); }
  void pop() {
    if (from_ring()) {
      head_ = (head_ + 1) & (ring_.size() - 1);
      --count_;
      return;
    }
    std::pop_heap(heap_.begin(), heap_.end(), std::greater<>{});
    heap_.pop_back();
  }

 private:
  const Event& back() const noexcept { return ring_[(head_ + count_ - 1) & (ring_.size() - 1)]; }
  bool from_ring() const noexcept {
    return count_ > 0 && (heap_.empty() || heap_.front() > ring_[head_]);
  }
  // Twice the room, the events in order from the start (a power of two, so
  // that a place wraps with a mask).
  void grow() {
    std::vector<Event> bigger(std::max<std::size_t>(64, 2 * ring_.size()));
    for (std::size_t i = 0; i < count_; ++i) bigger[i] = ring_[(head_ + i) & (ring_.size() - 1)];
    ring_ = std::move(bigger);
    head_ = 0;
  }

  std::vector<Event> ring_;  // in order from head_; its size a power of two (or 0)
  std::size_t head_ = 0, count_ = 0;
  std::vector<Event> heap_;
};

}  // namespace dssync::detail
