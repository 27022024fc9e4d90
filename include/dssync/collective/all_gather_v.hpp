#pragma once
// All-gather of contributions whose lengths differ between members, where no
// member knows the others' lengths beforehand: first the lengths (one
// std::uint64_t per member, by Bruck's all-gather in ceil(log2 g) rounds), then
// the data around the ring of group positions, every step sending and
// receiving a contribution whose length both ends now know. Because the
// lengths are agreed first, no member can receive a length it did not expect.
//
// The output is a std::vector the call resizes to the total: its capacity is
// kept from call to call, so once it is large enough nothing is allocated.
// all_gather_known is the same ring for callers that already agreed on the
// lengths (SFBSync exchanges them with its decision data): no second exchange.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "dssync/collective/bruck_all_gather.hpp"
#include "dssync/collective/gather_common.hpp"
#include "dssync/core/scratch.hpp"

namespace dssync {

class RingAllGatherV {
 public:
  struct Options {};

  RingAllGatherV() = default;
  explicit RingAllGatherV(Options) {}

  // counts[p] becomes the length of the contribution of the member at position
  // p, and `out` (resized to their sum) the contributions concatenated in
  // position order. counts.size() must be g.size() (configuration_error
  // otherwise). `mine` may point into `out` (the last call's output gathered
  // again): it is copied aside before `out` is resized.
  template <transport Transport, element T>
  void all_gather_v(Transport& t, const Group& g, std::span<const T> mine,
                    std::span<std::size_t> counts, std::vector<T>& out, tag_t tag = 0) {
    const detail::Member m = detail::member_of(t, g, tag);
    const int n = m.size;
    detail::check_gather_counts(t, g, counts.size(), tag);
    // The lengths, as 64-bit integers whatever size_t is on the peer.
    const auto lengths = lengths_.get<std::uint64_t>(static_cast<std::size_t>(n));
    const std::uint64_t own = mine.size();
    bruck_.all_gather(t, g, std::span<const std::uint64_t>(&own, 1), lengths, tag);
    const auto offsets = offsets_.get<std::size_t>(static_cast<std::size_t>(n) + 1);
    offsets[0] = 0;
    for (int q = 0; q < n; ++q)
      counts[static_cast<std::size_t>(q)] =
          static_cast<std::size_t>(lengths[static_cast<std::size_t>(q)]);
    sum_counts(t, g, counts, offsets, tag, "all_gather_v");
    // A `mine` inside out's storage (the last call's output gathered again)
    // would dangle once out grows, and be overwritten by the ring if not:
    // copy it aside first, into scratch kept from call to call.
    if (overlaps(mine, out)) {
      const auto aside = aside_.get<T>(mine.size());
      std::copy(mine.begin(), mine.end(), aside.begin());
      mine = aside;
    }
    out.resize(offsets[static_cast<std::size_t>(n)]);
    ring(t, g, m, mine, offsets, std::span<T>(out), tag);
  }

  // The same ring when every member already knows every length (a caller that
  // agreed on them in an exchange of its own): counts[p] elements of the
  // member at position p land in `out` (their sum long) in position order, and
  // nothing else is exchanged. `mine` must be counts[position] long
  // (configuration_error otherwise); it may be this member's own block of out.
  template <transport Transport, element T>
  void all_gather_known(Transport& t, const Group& g, std::span<const T> mine,
                        std::span<const std::size_t> counts, std::span<T> out, tag_t tag = 0) {
    const detail::Member m = detail::member_of(t, g, tag);
    const auto n = static_cast<std::size_t>(m.size);
    detail::check_gather_counts(t, g, counts.size(), tag, "all_gather_known");
    const auto offsets = offsets_.get<std::size_t>(n + 1);
    sum_counts(t, g, counts, offsets, tag, "all_gather_known");
    const std::size_t own = counts[static_cast<std::size_t>(m.position)];
    if (mine.size() != own || out.size() != offsets[n])
      throw configuration_error(
          "all_gather_known: this member contributes " + std::to_string(mine.size()) +
              " elements where its count says " + std::to_string(own) + ", into an output of " +
              std::to_string(out.size()) + " for counts summing to " + std::to_string(offsets[n]),
          detail::call_context(t, g, tag));
    ring(t, g, m, mine, offsets, out, tag);
  }

 private:
  // offsets[q] = counts[0] + ... + counts[q - 1]. A sum that wraps past
  // SIZE_MAX would pass the size check against a short output and send the
  // ring past its end: configuration_error instead, before anything moves.
  template <transport Transport>
  static void sum_counts(const Transport& t, const Group& g, std::span<const std::size_t> counts,
                         std::span<std::size_t> offsets, tag_t tag, const char* call) {
    offsets[0] = 0;
    for (std::size_t q = 0; q < counts.size(); ++q) {
      if (counts[q] > SIZE_MAX - offsets[q])
        throw configuration_error(
            std::string(call) + "'s counts overflow: adding the " + std::to_string(counts[q]) +
                " elements of rank " + std::to_string(g[static_cast<int>(q)]) + " (position " +
                std::to_string(q) + ") to " + std::to_string(offsets[q]) + " wraps past SIZE_MAX",
            detail::call_context(t, g, tag));
      offsets[q + 1] = offsets[q] + counts[q];
    }
  }

  // Whether `mine` lies in the storage `out` owns (its capacity, not only its
  // size: resize may reuse or move all of it). std::less orders any pointers.
  template <element T>
  static bool overlaps(std::span<const T> mine, const std::vector<T>& out) {
    if (mine.empty() || out.capacity() == 0) return false;
    const std::less<const T*> before;
    return before(mine.data(), out.data() + out.capacity()) &&
           before(out.data(), mine.data() + mine.size());
  }

  template <transport Transport, element T>
  static void ring(Transport& t, const Group& g, detail::Member m, std::span<const T> mine,
                   std::span<const std::size_t> offsets, std::span<T> all, tag_t tag) {
    const int n = m.size;
    const int p = m.position;
    auto block = [&](int q) {
      const auto b = offsets[static_cast<std::size_t>(q)];
      return all.subspan(b, offsets[static_cast<std::size_t>(q) + 1] - b);
    };
    if (mine.data() != block(p).data()) std::copy(mine.begin(), mine.end(), block(p).begin());
    const int right = g[(p + 1) % n];
    const int left = g[(p + n - 1) % n];
    // At step s pass on the contribution of position p-s and receive that of
    // position p-s-1, each as long as its owner said.
    for (int s = 0; s + 1 < n; ++s)
      t.sendrecv(right, std::span<const T>(block((p - s + n) % n)), left,
                 block((p - s - 1 + 2 * n) % n), tag);
  }

  BruckAllGather bruck_;
  detail::Scratch lengths_;
  detail::Scratch offsets_;
  detail::Scratch aside_;
};

}  // namespace dssync
