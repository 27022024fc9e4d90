#pragma once
// Dissemination barrier: in round k every member signals the member 2^k
// positions after it and waits for the signal of the member 2^k before it,
// ceil(log2 g) rounds of empty messages for any group size. After round k a
// member has heard, directly or through others, from the 2^(k+1) - 1 members
// before it, so after the last round from all of them: no member leaves before
// every member has entered.

#include <cstddef>
#include <span>

#include "dssync/collective/gather_common.hpp"

namespace dssync {

class DisseminationBarrier {
 public:
  struct Options {};

  DisseminationBarrier() = default;
  explicit DisseminationBarrier(Options) {}

  template <transport Transport>
  void barrier(Transport& t, const Group& g, tag_t tag = 0) {
    const detail::Member m = detail::member_of(t, g, tag);
    const std::span<const std::byte> signal;
    const std::span<std::byte> heard;
    for (int d = 1; d < m.size; d *= 2)
      t.sendrecv(g[(m.position + d) % m.size], signal, g[(m.position - d + m.size) % m.size], heard,
                 tag);
  }
};

}  // namespace dssync
