#pragma once
// StashBudget: what the connections of one transport share for messages
// that arrive before their receive: a bound on the bytes kept, the buffers
// they are kept in (reused, so that a running job allocates none), and a
// sink for payloads nobody waits for any more.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "dssync/transport/tcp/tuning.hpp"

namespace dssync::detail {

// On the socket thread only.
class StashBudget {
 public:
  explicit StashBudget(std::size_t limit) : limit_(limit) {}
  bool allows(std::uint64_t n) const { return within(n, limit_); }
  // Whether n more bytes stay within the bound and `beyond` it (0: no bound).
  bool allows(std::uint64_t n, std::size_t beyond) const {
    return beyond == 0 || within(n, limit_ > SIZE_MAX - beyond ? SIZE_MAX : limit_ + beyond);
  }
  void add(std::size_t n) { bytes_ += n; }
  void release(std::size_t n) { bytes_ -= n; }

  std::vector<std::byte> take_buffer(std::size_t n) {
    std::vector<std::byte> b;
    const auto it =
        std::find_if(pool_.begin(), pool_.end(), [&](const auto& v) { return v.capacity() >= n; });
    if (it != pool_.end()) {
      b = std::move(*it);
      pool_.erase(it);
    }
    b.resize(n);
    return b;
  }
  void give_buffer(std::vector<std::byte> b) {
    if (pool_.size() < tcp_tuning::pooled_buffers) pool_.push_back(std::move(b));
  }
  // Where the payloads nobody waits for go; its contents are never read.
  std::span<std::byte> sink() { return discard_; }

 private:
  // bytes_ + n <= bound, without overflow (bytes_ may be above the budget's
  // limit, by what was read aside).
  bool within(std::uint64_t n, std::size_t bound) const {
    return bytes_ <= bound && n <= bound - bytes_;
  }

  std::size_t limit_;
  std::size_t bytes_ = 0;
  std::vector<std::vector<std::byte>> pool_;
  std::array<std::byte, tcp_tuning::discard_piece> discard_{};
};

// Why `self` fails rather than read aside a message from `peer` past its bound.
inline std::string read_aside_refusal(int self, int peer, std::uint64_t length, int channel,
                                      std::uint32_t tag, std::size_t bound) {
  return "rank " + std::to_string(self) + " would hold more than " + std::to_string(bound) +
         " bytes of messages that arrived before their receive: rank " + std::to_string(peer) +
         " sent " + std::to_string(length) + " bytes on channel " + std::to_string(channel) +
         " (tag " + std::to_string(tag) +
         ") that no receive waits for, ahead of a receive on another channel "
         "(TcpOptions::max_unexpected + max_read_aside)";
}

// Why `self` fails: no memory to read aside a message from `peer`.
inline std::string read_aside_no_memory(int self, int peer, std::uint64_t length, int channel,
                                        std::uint32_t tag) {
  return "rank " + std::to_string(self) + " has no memory to hold " + std::to_string(length) +
         " bytes that rank " + std::to_string(peer) + " sent on channel " +
         std::to_string(channel) + " (tag " + std::to_string(tag) +
         ") before their receive was posted";
}

}  // namespace dssync::detail
