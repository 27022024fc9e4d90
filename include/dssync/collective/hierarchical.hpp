#pragma once
// Hierarchical all-reduce for a world whose ranks sit in places (racks, data
// centers) joined by slower links: a label per rank names its place. It is the
// fair baseline across data centers: a flat ring pays the wide-area latency on
// every rack crossing of its chain and sends most of its bytes over the slow
// links.
//
// The "2-D" form: with K the size of the smallest label present in the group,
// the buffer is cut into K columns, and in every label the members at label
// positions 0..K-1 own one column each (the member at position q owns column
// q mod K, the ones at K and beyond help the owner of their column).
//  1. Inside each label, a ring reduce-scatter over all its members, on blocks
//     that are pieces of columns (column c is cut into one piece per member
//     of the column: its owner and its helpers); each helper then hands its
//     reduced piece to its column's owner. The owner holds its column summed
//     over its label.
//  2. Across labels, the owners of column c (one per label) all-reduce it by
//     halving-doubling: 2 log2(L) steps for L labels, each of which pays the
//     wide-area latency, against a ring's 2(L-1), with the ring's bytes.
//  3. Inside each label, the owners hand the helpers their pieces back and a
//     ring all-gather gives every member the whole buffer.
// Why this form rather than "ring all-reduce in the label, leaders all-reduce,
// leaders broadcast": the bytes that leave a label are the least an
// all-reduce among L places can send, 2(L-1)/L of the buffer each way for L a
// power of two (halving-doubling's fold adds a column for some owners
// otherwise), and they leave spread over K members' links, 1/K of the buffer
// from each owner; every member of a label works in every phase. The leader
// form sends as many bytes across but funnels them through one member's link.
// With labels of equal size (the usual case) there are no helpers, and phases
// 1 and 3 are a plain reduce-scatter and all-gather. With one label it is a
// ring all-reduce; with one member per label, halving-doubling over the group.
//
// Every element is combined at one place only (its piece's ring, then the
// column's halving-doubling, which leaves the same bits on all its members)
// and copied from there, so every member ends with the same bits, on every
// transport: nothing depends on timing. The op's finishing step (Average's
// division) runs after the column is complete, on each of its owners, on the
// same bits, with the size of the whole group: Average is the sum over the
// group divided by |g|, as in the other all-reduces, whatever the split into
// labels (not a mean of means).
//
// One tag serves all phases: messages between two ranks with one tag arrive
// in order, and every pair of members meets in the phases in the same program
// order on both sides (the pairs of phase 2 are in different labels, so never
// a pair of phase 1 or 3).

#include <algorithm>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "dssync/collective/common.hpp"
#include "dssync/collective/halving_doubling.hpp"
#include "dssync/core/error.hpp"

namespace dssync {

class HierarchicalReduce {
 public:
  // A label per rank of the world (equal strings: the same place). Labels of
  // ranks outside a call's group are ignored.
  explicit HierarchicalReduce(const std::vector<std::string>& label_of_rank) {
    std::vector<std::string> seen;
    label_.reserve(label_of_rank.size());
    for (const std::string& l : label_of_rank) {
      const auto it = std::find(seen.begin(), seen.end(), l);
      label_.push_back(static_cast<int>(it - seen.begin()));
      if (it == seen.end()) seen.push_back(l);
    }
    size_storage(static_cast<int>(seen.size()));
  }

  // Consecutive ranks in places of `ranks_per_label`: rank r is in place
  // r / ranks_per_label, for a world of any size (as the simulator lays out
  // racks of consecutive hosts).
  explicit HierarchicalReduce(int ranks_per_label) : per_label_(ranks_per_label) {
    if (ranks_per_label < 1)
      throw configuration_error("HierarchicalReduce needs at least one rank per label, got " +
                                std::to_string(ranks_per_label));
  }

  template <transport Transport, element T, reduce_op<T> Op = Sum>
  void all_reduce(Transport& t, const Group& g, std::span<T> data, Op op = {}, tag_t tag = 0) {
    const detail::Member me = detail::member_of(t, g, tag);
    split(t.size(), g, t.rank(), tag);
    const std::size_t n = data.size();
    const int mine = slot_[static_cast<std::size_t>(label_of(t.rank()))];
    const int s = count_[static_cast<std::size_t>(mine)];
    const std::span<const int> label(members_.data() + offset_[static_cast<std::size_t>(mine)],
                                     static_cast<std::size_t>(s));
    const int q = static_cast<int>(std::find(label.begin(), label.end(), t.rank()) - label.begin());
    int k = s;  // columns: the smallest label's size
    for (int i = 0; i < labels_; ++i) k = std::min(k, count_[static_cast<std::size_t>(i)]);
    const auto K = static_cast<std::size_t>(k);
    release_slots(g);

    // Column c, and piece j of it in a label of s members (the column's owner
    // has piece 0, its helpers at q = c + jK the others). Ring position q
    // holds piece q / K of column q mod K.
    auto column = [&](int c) { return detail::block(n, K, static_cast<std::size_t>(c)); };
    auto pieces = [&](int c) { return (s - c + k - 1) / k; };
    auto piece = [&](int c, int j) {
      const detail::Block col = column(c);
      const detail::Block b = detail::block(col.length, static_cast<std::size_t>(pieces(c)),
                                            static_cast<std::size_t>(j));
      return detail::Block{col.offset + b.offset, b.length};
    };
    auto block_of = [&](int position) { return piece(position % k, position / k); };
    const Combine<Op> plain{op};  // the op without its finishing step

    if constexpr (!transport_with_view<Transport, T>) {
      std::size_t largest = 0;  // what any ring position of a label this size receives
      for (int c = 0; c < k; ++c) largest = std::max(largest, piece(c, 0).length);
      scratch_.reserve<T>(largest);
    }
    across_.reserve<T>(column(0).length);

    const int right = label[static_cast<std::size_t>((q + 1) % s)];
    const int left = label[static_cast<std::size_t>((q + s - 1) % s)];
    auto at = [&](int position) { return ((position % s) + s) % s; };

    // 1. Reduce-scatter around the label's ring: at step i send the partial
    // sum of block q-i-1, combine block q-i-2 from the left. Block b starts
    // at position b+1 and ends complete at position b.
    for (int i = 0; i + 1 < s; ++i) {
      detail::exchange_combine(t, right,
                               std::span<const T>(detail::sub(data, block_of(at(q - i - 1)))), left,
                               detail::sub(data, block_of(at(q - i - 2))), plain,
                               /*in_is_lower=*/true, scratch_, tag);
    }
    // Helpers hand their pieces to their column's owner.
    if (q >= k) {
      t.send(label[static_cast<std::size_t>(q % k)],
             std::span<const T>(detail::sub(data, block_of(q))), tag);
    } else {
      for (int j = 1; j < pieces(q); ++j)
        t.recv(label[static_cast<std::size_t>(q + j * k)], detail::sub(data, piece(q, j)), tag);

      // 2. The owners of this column, one per label in order of first
      // appearance, all-reduce it; then the op finishes it over the group.
      const std::span<T> col = detail::sub(data, column(q));
      if (labels_ > 1) {
        cross_.clear();
        for (int i = 0; i < labels_; ++i)
          cross_.push_back(
              members_[static_cast<std::size_t>(offset_[static_cast<std::size_t>(i)] + q)]);
        across_.all_reduce(t, Group(std::span<const int>(cross_)), col, plain, tag);
      }
      detail::finish(op, col, me.size);

      // 3. The pieces go back to the helpers.
      for (int j = 1; j < pieces(q); ++j)
        t.send(label[static_cast<std::size_t>(q + j * k)],
               std::span<const T>(detail::sub(data, piece(q, j))), tag);
    }
    if (q >= k) t.recv(label[static_cast<std::size_t>(q % k)], detail::sub(data, block_of(q)), tag);
    // All-gather around the label's ring: at step i pass on block q-i, receive
    // block q-i-1.
    for (int i = 0; i + 1 < s; ++i)
      t.sendrecv(right, std::span<const T>(detail::sub(data, block_of(at(q - i)))), left,
                 detail::sub(data, block_of(at(q - i - 1))), tag);
  }

 private:
  // Op's combine alone: the parts of the algorithm must not finish (Average
  // would divide by a part's size); the whole finishes once at the end.
  template <class Op>
  struct Combine {
    Op op;
    template <class T>
    T operator()(T a, T b) const {
      return static_cast<T>(op(a, b));
    }
  };

  int label_of(int rank) const noexcept {
    return per_label_ > 0 ? rank / per_label_ : label_[static_cast<std::size_t>(rank)];
  }

  void size_storage(int labels) {
    slot_.assign(static_cast<std::size_t>(labels), -1);
    count_.assign(static_cast<std::size_t>(labels), 0);
    offset_.assign(static_cast<std::size_t>(labels) + 1, 0);
    fill_.assign(static_cast<std::size_t>(labels), 0);
  }

  // Groups g's members by label, labels in order of first appearance in g
  // (slot i), members in g's order: members_[offset_[i], offset_[i] +
  // count_[i]). Only slot_ is indexed by label; release_slots(g) sets it back
  // to -1. Allocates only when the world or the number of labels
  // grows past what it saw before.
  void split(int world, const Group& g, int rank, tag_t tag) {
    if (per_label_ == 0 && static_cast<std::size_t>(world) != label_.size())
      throw configuration_error(
          "HierarchicalReduce has labels for " + std::to_string(label_.size()) +
              " ranks, the world has " + std::to_string(world),
          error_context{}.with_rank(rank).with_group(g.ranks()).with_tag(tag));
    if (per_label_ > 0) {
      const int labels = (world + per_label_ - 1) / per_label_;
      if (static_cast<std::size_t>(labels) > slot_.size()) size_storage(labels);
    }
    if (members_.size() < static_cast<std::size_t>(world)) {
      members_.resize(static_cast<std::size_t>(world));
      cross_.reserve(static_cast<std::size_t>(world));
    }
    labels_ = 0;
    for (int r : g) {
      int& slot = slot_[static_cast<std::size_t>(label_of(r))];
      if (slot < 0) {
        slot = labels_++;
        count_[static_cast<std::size_t>(slot)] = 0;
      }
      ++count_[static_cast<std::size_t>(slot)];
    }
    offset_[0] = 0;
    for (int i = 0; i < labels_; ++i)
      offset_[static_cast<std::size_t>(i) + 1] =
          offset_[static_cast<std::size_t>(i)] + count_[static_cast<std::size_t>(i)];
    // Fill, counting each slot up again from its offset.
    for (int i = 0; i < labels_; ++i)
      fill_[static_cast<std::size_t>(i)] = offset_[static_cast<std::size_t>(i)];
    for (int r : g) {
      const int slot = slot_[static_cast<std::size_t>(label_of(r))];
      members_[static_cast<std::size_t>(fill_[static_cast<std::size_t>(slot)]++)] = r;
    }
  }
  void release_slots(const Group& g) {
    for (int r : g) slot_[static_cast<std::size_t>(label_of(r))] = -1;
  }

  std::vector<int> label_;  // per rank of the world, a label index (empty: per_label_)
  int per_label_ = 0;
  std::vector<int> slot_;    // per label: its slot in the current group, or -1
  std::vector<int> count_;   // per slot
  std::vector<int> offset_;  // per slot, and one past the last
  std::vector<int> fill_;
  std::vector<int> members_;
  std::vector<int> cross_;  // the owners of this member's column, one per label
  int labels_ = 0;
  detail::Scratch scratch_;
  HalvingDoublingReduce across_;
};

}  // namespace dssync
