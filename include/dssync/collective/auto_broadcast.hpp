#pragma once
// Chooses the broadcast by buffer size and group size: the binomial tree while
// latency dominates (small buffers, small groups), the pipelined chain for
// large buffers, where the tree's root sends log2(g) whole copies one after the
// other and the chain moves each byte once per member with every link busy.
// Every member that passes the same length and group chooses alike; members
// whose lengths differ may not, and choose_for keeps that from hiding the
// mismatch.
// The threshold comes from sweeps on 2 cores: in process the tree wins up to
// 4 MiB and the chain from 16 MiB; over MPITransport at 16 MiB the chain is the
// fastest of ours, the tree the slowest (docs/design.md, "Broadcast,
// all-gather, barrier"; the records: docs/experiments/collectives-2026-12-04/).
// On a network, where every hop costs the whole buffer's time on the wire, the
// chain pays off at smaller sizes: pass your own threshold there.

#include <algorithm>
#include <cstddef>
#include <span>

#include "dssync/collective/pipeline_broadcast.hpp"
#include "dssync/collective/tree_broadcast.hpp"

namespace dssync {

class AutoBroadcast {
 public:
  struct Options {
    std::size_t pipeline_from = 16 * 1024 * 1024;  // bytes
    int pipeline_min_group = 3;                    // members; two always take the tree
    std::size_t segment_bytes = PipelineBroadcast::Options{}.segment_bytes;
  };

  AutoBroadcast() = default;
  explicit AutoBroadcast(Options o)
      : options_(o), pipeline_({.segment_bytes = o.segment_bytes}) {}

  enum class Choice { tree, pipeline };

  Choice choose(std::size_t bytes, int group_size) const noexcept {
    if (group_size < std::max(3, options_.pipeline_min_group) || bytes < options_.pipeline_from)
      return Choice::tree;
    return Choice::pipeline;
  }

  // choose()'s answer for `length` elements of T over Transport, but for one
  // length: a buffer of exactly one full chain segment takes the chain even
  // below pipeline_from. Members whose lengths straddle the threshold choose
  // differently, and a tree member only ever receives its parent's first
  // message, which from a chain member is its first segment: min(segment,
  // length), which would equal a tree member's whole length only for that one
  // length. With it out of the tree, every message between a tree member and
  // a chain member has a length the receiver does not expect, so a straddling
  // mismatch ends in size_mismatch_error (or, where the two algorithms' peers
  // differ, peer_error or the deadline), never in a member returning with a
  // truncated copy (docs/design.md, "Thresholds").
  template <element T, class Transport = void>
  Choice choose_for(std::size_t length, int group_size) const noexcept {
    const Choice c = choose(length * sizeof(T), group_size);
    if (c == Choice::tree && group_size >= std::max(3, options_.pipeline_min_group) &&
        length == pipeline_.segment_length<T, Transport>())
      return Choice::pipeline;
    return c;
  }

  template <transport Transport, element T>
  void broadcast(Transport& t, const Group& g, std::span<T> data, int root, tag_t tag = 0) {
    if (choose_for<T, Transport>(data.size(), g.size()) == Choice::tree)
      return tree_.broadcast(t, g, data, root, tag);
    return pipeline_.broadcast(t, g, data, root, tag);
  }

 private:
  Options options_;
  TreeBroadcast tree_;
  PipelineBroadcast pipeline_;
};

}  // namespace dssync
