#pragma once
// A message of the simulated network, from its send to its receive, and a
// posted receive waiting for one. Both carry their channel: a message only
// ever matches a receive of its own channel.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "dssync/core/tag.hpp"

namespace dssync::detail {

// A list of pointers whose first lives in the list itself, and more in a
// block of their own. The simulator's per-rank and per-link lists (a port's
// posted receives, the flows that cross a link) hold one item most of the
// time, and a block apart would cost every message another cache miss once
// the world outgrows the caches. The block grows and is kept, never shrunk,
// so a steady state does not allocate.
template <class T>
class SimList {
 public:
  SimList() noexcept = default;
  SimList(const SimList& o) {
    for (T* x : o) push_back(x);
  }
  SimList& operator=(const SimList& o) {
    if (this != &o) {
      size_ = 0;
      for (T* x : o) push_back(x);
    }
    return *this;
  }
  ~SimList() {
    if (capacity_ > 1) delete[] items_.block;
  }

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  T** begin() noexcept { return data(); }
  T** end() noexcept { return data() + size_; }
  T* const* begin() const noexcept { return data(); }
  T* const* end() const noexcept { return data() + size_; }
  T*& operator[](std::size_t i) noexcept { return data()[i]; }
  T* back() const noexcept { return data()[size_ - 1]; }
  void pop_back() noexcept { --size_; }
  void push_back(T* x) {
    if (size_ == capacity_) grow();
    data()[size_++] = x;
  }
  // Removes the item at `at`, keeping the others' order.
  void erase(T** at) noexcept {
    std::move(at + 1, end(), at);
    --size_;
  }

 private:
  T** data() noexcept { return capacity_ > 1 ? items_.block : &items_.one; }
  T* const* data() const noexcept { return capacity_ > 1 ? items_.block : &items_.one; }
  void grow() {
    const std::uint32_t capacity = std::max<std::uint32_t>(4, 2 * capacity_);
    T** block = new T*[capacity];
    std::copy(begin(), end(), block);
    if (capacity_ > 1) delete[] items_.block;
    items_.block = block;
    capacity_ = capacity;
  }
  union {
    T* one;      // capacity 1: the item itself
    T** block;   // more: the block that holds them
  } items_{nullptr};
  std::uint32_t size_ = 0;
  std::uint32_t capacity_ = 1;
};

struct SimRecv;

struct SimMessage {
  int src = 0, dst = 0;
  int channel = 0;
  int src_fiber = 0;  // the fiber that sent it, woken when it has left
  tag_t tag = 0;
  const std::byte* data = nullptr;  // the sender's buffer, valid until it is sent
  std::size_t bytes = 0;
  std::vector<std::byte> staged;  // a copy, when it arrives before its receive
  // While it moves, a flow of the network (FlowNetwork, which alone uses these):
  double remaining = 0;             // virtual bytes still to move
  double rate = 0;                  // bytes/s now
  double since = 0;                 // when remaining was last brought up to date
  int links[4] = {-1, -1, -1, -1};  // the links of its path; -1: none
  double finish = 0;                // when its last byte leaves at the current rate
  int slot = -1;                    // its place in the network's list of flows; -1: not moving
  int heap = -1;                    // its place in the heap of finish times
  int on_link[4] = {};              // its place in each link's list of flows
  std::uint64_t seen = 0;           // the last rate update that visited it
  std::uint64_t component = 0;      // the last component whose rates were computed with it
  int order = -1;                   // its place in the component whose rates are being filled
  bool leaves_rack = false;         // sender and receiver in different racks (uplink_alpha)
  SimRecv* target = nullptr;        // the receive it was copied into (direct)
  // Its places in the simulator's queues (SimQueue): its sender's outbox, and
  // while at that outbox's head, the receiver's queue of waiting senders.
  SimMessage* next_out = nullptr;
  SimMessage* next_in = nullptr;
};

// A first-in first-out queue of messages linked through their own member
// Next: the simulator's ports hold two, and a port with nothing queued owns
// no memory (a std::deque allocates a block per port, and 65,536 ports'
// blocks are scattered over memory that every message would touch).
template <SimMessage* SimMessage::*Next>
class SimQueue {
 public:
  bool empty() const noexcept { return head_ == nullptr; }
  SimMessage* front() const noexcept { return head_; }
  void push_back(SimMessage* m) noexcept {
    m->*Next = nullptr;
    (head_ ? tail_->*Next : head_) = m;
    tail_ = m;
  }
  void pop_front() noexcept {
    SimMessage* m = head_;
    head_ = m->*Next;
    m->*Next = nullptr;
    if (!head_) tail_ = nullptr;
  }

 private:
  SimMessage* head_ = nullptr;
  SimMessage* tail_ = nullptr;
};

struct SimRecv {
  int src = -1;
  int channel = 0;
  int fiber = 0;  // the fiber that waits for it
  tag_t tag = 0;
  std::byte* into = nullptr;
  std::size_t bytes = 0;
  bool claimed = false;  // a message is on its way into it
  bool done = false;
  bool mismatch = false;       // the message that arrived had another length:
  std::size_t sent_bytes = 0;  // this one
};

// Why the engine woke a fiber: progress, or nothing can complete its wait
// (a deadlock, or a rank that failed).
enum class SimWoken : unsigned char { progress, deadlock, failure };

// What a fiber waits for in one operation: a send, a receive, or both (an
// exchange), and why it was last woken. A fiber waits in one operation at a
// time, so each has one record, kept by the simulator in one array rather
// than on the fiber's stack: the engine that ends the send or the receive
// touches a line of that array, not a page of a stack that is out of the
// caches. The fiber is woken when both halves are done, not at each.
struct alignas(64) SimOperation {
  SimRecv recv;
  bool receiving = false;  // it has a receive (recv)
  bool sent = true;        // its send has left, or it has none
  SimWoken woken = SimWoken::progress;
  bool complete() const noexcept { return sent && (!receiving || recv.done); }
};
static_assert(sizeof(SimOperation) == 64, "an operation record is one cache line");

}  // namespace dssync::detail
