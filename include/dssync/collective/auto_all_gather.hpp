#pragma once
// Chooses the all-gather by the size of the output: Bruck's ceil(log2 g)
// rounds while latency dominates, the ring beyond (the same bytes, but each
// member talks only to its two neighbours and every step's message is one
// contribution long, where Bruck's last rounds move half the output at once).
// Every member sees the same lengths and group, so all choose alike.
// The threshold comes from a sweep on the in-process world on 2 cores
// (docs/design.md, "Broadcast, all-gather, barrier"; the measurements and their
// records: docs/experiments/collectives-2026-12-04/README.md).
// Pass your own for another network.

#include <cstddef>
#include <span>

#include "dssync/collective/bruck_all_gather.hpp"
#include "dssync/collective/ring_all_gather.hpp"

namespace dssync {

class AutoAllGather {
 public:
  struct Options {
    std::size_t ring_from = 4 * 1024 * 1024;  // bytes of the whole output
  };

  AutoAllGather() = default;
  explicit AutoAllGather(Options o) : options_(o) {}

  enum class Choice { bruck, ring };

  Choice choose(std::size_t output_bytes) const noexcept {
    return output_bytes < options_.ring_from ? Choice::bruck : Choice::ring;
  }

  template <transport Transport, element T>
  void all_gather(Transport& t, const Group& g, std::span<const T> mine, std::span<T> out,
                  tag_t tag = 0) {
    if (choose(out.size_bytes()) == Choice::bruck) return bruck_.all_gather(t, g, mine, out, tag);
    return ring_.all_gather(t, g, mine, out, tag);
  }

 private:
  Options options_;
  BruckAllGather bruck_;
  RingAllGather ring_;
};

}  // namespace dssync
