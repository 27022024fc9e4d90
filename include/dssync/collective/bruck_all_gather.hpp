#pragma once
// Bruck's all-gather: ceil(log2 g) rounds for any group size. After round k a
// member holds the contributions of the 2^k positions from its own onwards
// (cyclically); in the round it sends what it holds, up to what the other
// still lacks, to the member 2^k positions before it and receives as much from
// the member 2^k after it. The fewest rounds an all-gather can take, with the
// ring's bytes ((g-1)/g of the output per member): the algorithm for small
// contributions, where latency is everything.
//
// The contributions land in place, in position order, so no final rotation and
// no scratch is needed: a range that wraps past the last position goes as two
// messages (both ends know where it wraps).

#include <algorithm>
#include <cstddef>
#include <span>

#include "dssync/collective/gather_common.hpp"

namespace dssync {

class BruckAllGather {
 public:
  struct Options {};

  BruckAllGather() = default;
  explicit BruckAllGather(Options) {}

  // As RingAllGather::all_gather: out[p * mine.size() + i] becomes element i
  // of the member at position p; out.size() must be g.size() * mine.size().
  template <transport Transport, element T>
  void all_gather(Transport& t, const Group& g, std::span<const T> mine, std::span<T> out,
                  tag_t tag = 0) {
    const detail::Member m = detail::member_of(t, g, tag);
    detail::check_gather_output(t, g, mine.size(), out.size(), tag);
    const std::size_t len = mine.size();
    const int n = m.size;
    const int p = m.position;
    const auto own = out.subspan(static_cast<std::size_t>(p) * len, len);
    if (mine.data() != own.data()) std::copy(mine.begin(), mine.end(), own.begin());
    for (int d = 1; d < n; d *= 2) {
      const int count = std::min(d, n - d);  // what the member d before this one lacks
      const int from = (p + d) % n;
      const auto out_pieces = detail::cyclic_blocks(out, len, n, p, count);
      const auto in_pieces = detail::cyclic_blocks(out, len, n, from, count);
      detail::exchange_pieces(t, g[(p - d + n) % n], out_pieces, g[from], in_pieces, tag);
    }
  }
};

}  // namespace dssync
