#pragma once
// Bruck's all-gather for contributions whose lengths differ and are not known
// beforehand: ceil(log2 g) rounds for the lengths, then ceil(log2 g) for the
// data, against the ring's g - 1 (RingAllGatherV), with the same bytes. The
// algorithm for a group whose links have a long latency: GaiaSync's owners
// across data centers, where every round costs the wide-area one-way delay.
//
// Each member works in a rotated buffer that starts with its own
// contribution: after the round at distance d it holds the contributions of
// the 2d positions from its own onwards (cyclically), in that order, so what
// it sends (the first min(d, g - d) of them) and what it receives (those of
// the member d positions on, appended) are each one contiguous message, and
// no round needs a second one where the range wraps past the last position.
// A final copy puts the contributions in position order. The rotated buffers
// are scratch kept from call to call: once large enough, nothing is allocated.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dssync/collective/gather_common.hpp"
#include "dssync/core/scratch.hpp"

namespace dssync {

class BruckAllGatherV {
 public:
  struct Options {};

  BruckAllGatherV() = default;
  explicit BruckAllGatherV(Options) {}

  // Room for groups of up to `members` whose contributions total up to
  // `elements` of T: later calls within both allocate nothing but what
  // `out` needs to grow.
  template <element T>
  void reserve(std::size_t members, std::size_t elements) {
    lengths_.reserve<std::uint64_t>(members);
    offsets_.reserve<std::size_t>(members + 1);
    data_.reserve<T>(elements);
  }

  // As RingAllGatherV::all_gather_v: counts[p] becomes the length of the
  // contribution of the member at position p, and `out` (resized to their
  // sum) the contributions concatenated in position order. counts.size()
  // must be g.size() (configuration_error otherwise).
  template <transport Transport, element T>
  void all_gather_v(Transport& t, const Group& g, std::span<const T> mine,
                    std::span<std::size_t> counts, std::vector<T>& out, tag_t tag = 0) {
    const detail::Member m = detail::member_of(t, g, tag);
    const int n = m.size;
    const int p = m.position;
    detail::check_gather_counts(t, g, counts.size(), tag);
    const auto un = static_cast<std::size_t>(n);
    // The lengths, rotated: lengths[i] is position (p + i) mod n's, as 64-bit
    // integers whatever size_t is on the peer. Then where each rotated
    // contribution starts in the rotated data (n + 1 offsets).
    const auto lengths = lengths_.get<std::uint64_t>(un);
    lengths[0] = mine.size();
    rounds(
        t, g, p, n, std::span<std::uint64_t>(lengths),
        [](int i) { return static_cast<std::size_t>(i); }, tag);
    const auto offsets = offsets_.get<std::size_t>(un + 1);
    offsets[0] = 0;
    for (std::size_t i = 0; i < un; ++i) {
      offsets[i + 1] = offsets[i] + static_cast<std::size_t>(lengths[i]);
      counts[(static_cast<std::size_t>(p) + i) % un] = static_cast<std::size_t>(lengths[i]);
    }
    const std::size_t total = offsets[un];
    const auto rotated = data_.get<T>(total);
    std::copy(mine.begin(), mine.end(), rotated.begin());
    rounds(
        t, g, p, n, rotated, [&](int i) { return offsets[static_cast<std::size_t>(i)]; }, tag);
    // Positions p..n-1 come first in the rotated buffer, then 0..p-1.
    out.resize(total);
    const std::size_t tail = offsets[un - static_cast<std::size_t>(p)];
    const std::size_t head = total - tail;  // the elements of positions 0..p-1
    std::copy(rotated.begin(), rotated.begin() + static_cast<std::ptrdiff_t>(tail),
              out.begin() + static_cast<std::ptrdiff_t>(head));
    std::copy(rotated.begin() + static_cast<std::ptrdiff_t>(tail), rotated.end(), out.begin());
  }

 private:
  // Bruck's rounds over a rotated buffer whose first contribution is this
  // member's; start(i) is where rotated contribution i begins (start(n) the
  // end). Before the round at distance d the member holds d contributions;
  // it sends the first min(d, n - d) to the member d positions before it and
  // appends as many from the member d positions after it.
  template <transport Transport, element T, class Start>
  static void rounds(Transport& t, const Group& g, int p, int n, std::span<T> rotated, Start start,
                     tag_t tag) {
    for (int d = 1; d < n; d *= 2) {
      const int count = std::min(d, n - d);
      t.sendrecv(g[(p - d + n) % n], std::span<const T>(rotated.first(start(count))),
                 g[(p + d) % n], rotated.subspan(start(d), start(d + count) - start(d)), tag);
    }
  }

  detail::Scratch lengths_;
  detail::Scratch offsets_;
  detail::Scratch data_;
};

}  // namespace dssync
