#pragma once
// Groups are views, not communicators: a Group is an ordered list of global
// ranks, and a collective runs point-to-point over the one global transport
// between the ranks it lists. Nothing is created or registered per group.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/core/random.hpp"

namespace dssync {

// A non-owning view of the global ranks of one group, in order: position 0 is
// ranks[0]. Cheap to copy; the storage (a Partition, a vector) must outlive it.
class Group {
 public:
  constexpr Group() noexcept = default;
  constexpr Group(std::span<const int> ranks) noexcept : ranks_(ranks) {}
  Group(const std::vector<int>& ranks) noexcept : ranks_(ranks) {}
  // Only for a braced list in the same full expression as its use, e.g.
  // ring.all_reduce(t, Group({0, 1}), data).
  constexpr Group(std::initializer_list<int> ranks) noexcept : ranks_(ranks.begin(), ranks.size()) {}

  constexpr int size() const noexcept { return static_cast<int>(ranks_.size()); }
  constexpr int operator[](int position) const noexcept {
    return ranks_[static_cast<std::size_t>(position)];
  }
  constexpr std::span<const int> ranks() const noexcept { return ranks_; }
  constexpr auto begin() const noexcept { return ranks_.begin(); }
  constexpr auto end() const noexcept { return ranks_.end(); }

  // The position of a global rank in this group, or -1.
  constexpr int position_of(int rank) const noexcept {
    for (std::size_t i = 0; i < ranks_.size(); ++i)
      if (ranks_[i] == rank) return static_cast<int>(i);
    return -1;
  }
  constexpr bool contains(int rank) const noexcept { return position_of(rank) >= 0; }

  std::string to_string() const { return error_context::format_group(ranks_); }

 private:
  std::span<const int> ranks_;
};

// The position of `rank` in `group`; throws configuration_error if the rank is
// not a member, a member is outside the world, or a member appears twice, since
// no collective can run then. O(group size): a per-thread mark table, sized to
// the world once.
inline int checked_position(const Group& group, int rank, int world_size) {
  const auto where = [&] { return error_context{}.with_rank(rank).with_group(group.ranks()); };
  const int pos = group.position_of(rank);
  if (pos < 0) throw configuration_error("the calling rank is not a member of the group", where());
  thread_local std::vector<unsigned char> seen;
  if (seen.size() < static_cast<std::size_t>(world_size)) seen.resize(static_cast<std::size_t>(world_size));
  int checked = 0;
  auto unmark = [&] {
    for (int i = 0; i < checked; ++i) seen[static_cast<std::size_t>(group[i])] = 0;
  };
  for (; checked < group.size(); ++checked) {
    const int r = group[checked];
    if (r < 0 || r >= world_size) {
      unmark();
      throw configuration_error("group member " + std::to_string(r) + " is outside the world of " +
                                    std::to_string(world_size) + " ranks",
                                where());
    }
    if (seen[static_cast<std::size_t>(r)]) {
      unmark();
      throw configuration_error("rank " + std::to_string(r) + " appears twice in the group", where());
    }
    seen[static_cast<std::size_t>(r)] = 1;
  }
  unmark();
  return pos;
}

// Disjoint groups that cover ranks 0..n-1. Storage is flat and reused, so a
// synchronizer that refills its partition every iteration allocates nothing
// after the first.
class Partition {
 public:
  Partition() = default;

  // Groups given as lists of ranks; throws configuration_error unless they are
  // disjoint, non-empty and cover 0..n-1.
  Partition(int world_size, const std::vector<std::vector<int>>& groups) {
    std::vector<int> sizes;
    std::vector<int> order;
    for (const auto& g : groups) {
      sizes.push_back(static_cast<int>(g.size()));
      order.insert(order.end(), g.begin(), g.end());
    }
    assign(world_size, order, sizes);
  }

  // The identity order cut into consecutive groups of the given sizes.
  static Partition contiguous(std::span<const int> sizes) {
    Partition p;
    p.assign_contiguous(sizes);
    return p;
  }

  // The whole world as one group.
  static Partition whole(int world_size) {
    const int sizes[] = {world_size};
    return contiguous(sizes);
  }

  // Refills from the ranks in `order`, cut into consecutive groups of `sizes`.
  void assign(int world_size, std::span<const int> order, std::span<const int> sizes) {
    // Checked before anything changes: a caller that catches the error keeps
    // the partition it had.
    if (world_size >= 1 && order.size() != static_cast<std::size_t>(world_size))
      throw configuration_error("a partition of " + std::to_string(world_size) + " ranks lists " +
                                std::to_string(order.size()));
    resize(world_size, sizes);
    std::copy(order.begin(), order.end(), order_.begin());
    index();
  }

  // Refills as 0..n-1 in order, cut into consecutive groups of `sizes`.
  void assign_contiguous(std::span<const int> sizes) {
    long long n = 0;  // a sum past INT_MAX would wrap in an int
    for (int s : sizes) n += s > 0 ? s : 0;
    if (n > std::numeric_limits<int>::max())
      throw configuration_error("group sizes add up to " + std::to_string(n) +
                                ", more ranks than a partition can hold");
    resize(static_cast<int>(n), sizes);
    for (int r = 0; r < n; ++r) order_[static_cast<std::size_t>(r)] = r;
    index();
  }

  // The ranks, group after group, for a shuffle to permute in place while the
  // group sizes stay; reindex() must follow.
  std::span<int> members() noexcept { return order_; }
  void reindex() { index(); }

  int world_size() const noexcept { return static_cast<int>(order_.size()); }
  int num_groups() const noexcept {
    return offsets_.empty() ? 0 : static_cast<int>(offsets_.size()) - 1;
  }

  Group group(int index) const noexcept {
    const auto b = static_cast<std::size_t>(offsets_[static_cast<std::size_t>(index)]);
    const auto e = static_cast<std::size_t>(offsets_[static_cast<std::size_t>(index) + 1]);
    return Group(std::span<const int>(order_).subspan(b, e - b));
  }
  int group_index_of(int rank) const noexcept { return group_of_[static_cast<std::size_t>(rank)]; }
  Group group_of(int rank) const noexcept { return group(group_index_of(rank)); }
  int position_of(int rank) const noexcept { return position_of_[static_cast<std::size_t>(rank)]; }

  // A hash of who is grouped with whom, in which order: equal partitions hash
  // equal on every platform.
  std::uint64_t hash() const noexcept {
    std::uint64_t h = detail::mix64(static_cast<std::uint64_t>(order_.size()));
    for (int o : offsets_) h = detail::mix64(h ^ static_cast<std::uint64_t>(o));
    for (int r : order_) h = detail::mix64(h + static_cast<std::uint64_t>(r) * detail::golden_gamma);
    return h;
  }

  friend bool operator==(const Partition& a, const Partition& b) {
    return a.order_ == b.order_ && a.offsets_ == b.offsets_;
  }

  std::string to_string() const {
    std::string s;
    for (int i = 0; i < num_groups(); ++i) s += group(i).to_string();
    return s;
  }

 private:
  void resize(int world_size, std::span<const int> sizes) {
    if (world_size < 1) throw configuration_error("a partition needs at least one rank");
    order_.resize(static_cast<std::size_t>(world_size));
    offsets_.resize(sizes.size() + 1);
    offsets_[0] = 0;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      if (sizes[i] < 1)
        throw configuration_error("group " + std::to_string(i) + " of the partition is empty");
      // Added in an int, sizes past the world would wrap and could pass the
      // check below.
      if (sizes[i] > world_size - offsets_[i])
        throw configuration_error("group sizes add up to more than the world size " +
                                  std::to_string(world_size) + " (at group " + std::to_string(i) +
                                  ")");
      offsets_[i + 1] = offsets_[i] + sizes[i];
    }
    if (offsets_.back() != world_size)
      throw configuration_error("group sizes add up to " + std::to_string(offsets_.back()) +
                                ", not to the world size " + std::to_string(world_size));
    group_of_.resize(order_.size());
    position_of_.resize(order_.size());
  }

  void index() {
    std::fill(group_of_.begin(), group_of_.end(), -1);
    for (int g = 0; g < num_groups(); ++g) {
      const auto b = offsets_[static_cast<std::size_t>(g)];
      const auto e = offsets_[static_cast<std::size_t>(g) + 1];
      for (int i = b; i < e; ++i) {
        const int r = order_[static_cast<std::size_t>(i)];
        if (r < 0 || r >= world_size() || group_of_[static_cast<std::size_t>(r)] != -1)
          throw configuration_error("rank " + std::to_string(r) +
                                    " is out of range or in two groups of a partition");
        group_of_[static_cast<std::size_t>(r)] = g;
        position_of_[static_cast<std::size_t>(r)] = i - b;
      }
    }
  }

  std::vector<int> order_;    // ranks, group after group
  std::vector<int> offsets_;  // group g is order_[offsets_[g], offsets_[g+1])
  std::vector<int> group_of_;
  std::vector<int> position_of_;
};

}  // namespace dssync
