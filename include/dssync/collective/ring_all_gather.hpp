#pragma once
// Ring all-gather: every member's contribution travels once around the ring of
// group positions, g-1 steps that each pass one contribution to the right
// neighbour and take one from the left, straight into the output. Every member
// sends and receives (g-1)/g of the output, the least an all-gather can, and
// talks only to its two neighbours; its g-1 latencies make it poor for small
// contributions.

#include <algorithm>
#include <cstddef>
#include <span>

#include "dssync/collective/gather_common.hpp"

namespace dssync {

class RingAllGather {
 public:
  struct Options {};

  RingAllGather() = default;
  explicit RingAllGather(Options) {}

  // out[p * mine.size() + i] becomes element i of the member at position p.
  // out.size() must be g.size() * mine.size() (configuration_error otherwise);
  // members passing different lengths get size_mismatch_error. `mine` may be
  // this member's own block of `out` (gathering in place).
  template <transport Transport, element T>
  void all_gather(Transport& t, const Group& g, std::span<const T> mine, std::span<T> out,
                  tag_t tag = 0) {
    const detail::Member m = detail::member_of(t, g);
    detail::check_gather_output(t, g, mine.size(), out.size(), tag);
    const std::size_t len = mine.size();
    const int n = m.size;
    const int p = m.position;
    auto block = [&](int b) { return out.subspan(static_cast<std::size_t>(b) * len, len); };
    if (mine.data() != block(p).data()) std::copy(mine.begin(), mine.end(), block(p).begin());
    const int right = g[(p + 1) % n];
    const int left = g[(p + n - 1) % n];
    // At step s pass on the contribution of position p-s (this member's own at
    // first) and receive that of position p-s-1.
    for (int s = 0; s + 1 < n; ++s)
      t.sendrecv(right, std::span<const T>(block((p - s + n) % n)), left,
                 block((p - s - 1 + 2 * n) % n), tag);
  }
};

}  // namespace dssync
