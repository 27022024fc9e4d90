#pragma once
// Chooses the algorithm by buffer size and group size: recursive doubling while
// latency dominates, halving-doubling for groups of a power of two up to a
// large size (its 2 log2 g steps beat ring's 2(g-1) when every step costs a
// thread hand-off or a network round), ring beyond that and for other group
// sizes (where halving-doubling pays for its fold). Every member of a group
// sees the same size and group, so all choose alike.
// The thresholds come from a sweep on the in-process world (docs/benchmarks.md, "Choosing
// an algorithm"); pass your own for another network.

#include <bit>
#include <cstddef>
#include <span>

#include "dssync/collective/halving_doubling.hpp"
#include "dssync/collective/recursive_doubling.hpp"
#include "dssync/collective/ring.hpp"

namespace dssync {

class AutoReduce {
 public:
  struct Options {
    std::size_t recursive_doubling_below = 64 * 1024;         // bytes
    std::size_t halving_doubling_below = 16 * 1024 * 1024;   // bytes, power-of-two groups
    RingReduce::Options ring = {};
  };

  AutoReduce() = default;
  explicit AutoReduce(Options o) : options_(o), ring_(o.ring) {}

  enum class Choice { recursive_doubling, halving_doubling, ring };

  Choice choose(std::size_t bytes, int group_size) const noexcept {
    if (bytes < options_.recursive_doubling_below) return Choice::recursive_doubling;
    if (bytes < options_.halving_doubling_below &&
        std::has_single_bit(static_cast<unsigned>(group_size)))
      return Choice::halving_doubling;
    return Choice::ring;
  }

  template <transport Transport, element T, reduce_op<T> Op = Sum>
  void all_reduce(Transport& t, const Group& g, std::span<T> data, Op op = {}, tag_t tag = 0) {
    switch (choose(data.size_bytes(), g.size())) {
      case Choice::recursive_doubling:
        return recursive_doubling_.all_reduce(t, g, data, op, tag);
      case Choice::halving_doubling:
        return halving_doubling_.all_reduce(t, g, data, op, tag);
      case Choice::ring:
        return ring_.all_reduce(t, g, data, op, tag);
    }
  }

 private:
  Options options_;
  RecursiveDoublingReduce recursive_doubling_;
  HalvingDoublingReduce halving_doubling_;
  RingReduce ring_;
};

}  // namespace dssync
