#pragma once
// Chooses the all-gather by the size of the output: Bruck's ceil(log2 g)
// rounds while latency dominates, the ring beyond (the same bytes, but each
// member talks only to its two neighbours and every step's message is one
// contribution long, where Bruck's last rounds move half the output at once).
// Every member that passes the same lengths and group chooses alike; members
// whose lengths differ may not, and choose_for keeps that from hiding the
// mismatch.
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

  // choose()'s answer for an output of `output` elements of T from
  // contributions of `length` over Transport, but for one length: where the
  // ring moves contributions in segments, a contribution of exactly one full
  // segment takes the ring even below ring_from. Members whose lengths
  // straddle the threshold choose differently; a Bruck member and a ring
  // member exchange messages only where the ring's neighbour is also Bruck's
  // partner at distance g - 1, one contribution each way: the Bruck member's
  // whole one, and the ring member's first segment, min(segment, length),
  // which would equal a Bruck member's length only for that one length (a
  // blocking ring sends whole contributions, all longer than any Bruck
  // member's). With it out of Bruck, such a message always has a length its
  // receiver does not expect: a straddling mismatch ends in
  // size_mismatch_error, peer_error or the deadline, never in a member
  // returning with a truncated contribution (docs/design.md, "Thresholds").
  template <element T, class Transport = void>
  Choice choose_for(std::size_t length, std::size_t output) const noexcept {
    const Choice c = choose(output * sizeof(T));
    if (c == Choice::bruck && ring_.posts<Transport, T>() && length == ring_.segment_length<T>())
      return Choice::ring;
    return c;
  }

  template <transport Transport, element T>
  void all_gather(Transport& t, const Group& g, std::span<const T> mine, std::span<T> out,
                  tag_t tag = 0) {
    if (choose_for<T, Transport>(mine.size(), out.size()) == Choice::bruck)
      return bruck_.all_gather(t, g, mine, out, tag);
    return ring_.all_gather(t, g, mine, out, tag);
  }

 private:
  Options options_;
  BruckAllGather bruck_;
  RingAllGather ring_;
};

}  // namespace dssync
