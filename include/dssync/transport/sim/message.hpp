#pragma once
// A message of the simulated network, from its send to its receive, and a
// posted receive waiting for one. Both carry their channel: a message only
// ever matches a receive of its own channel.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "dssync/core/tag.hpp"

namespace dssync::detail {

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
  bool* sent_flag = nullptr;        // the sender's completion flag
  // The receive the sender waits for together with this send (an exchange),
  // if any: the sender is woken when both are done, not before.
  const SimRecv* sibling = nullptr;
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
  // The send its fiber waits for together with it, if any (its completion
  // flag): the fiber is woken when both are done.
  const bool* sibling_sent = nullptr;
  bool mismatch = false;       // the message that arrived had another length:
  std::size_t sent_bytes = 0;  // this one
};

}  // namespace dssync::detail
