#pragma once
// DSSync: Divide-and-Shuffle Synchronization. Each step the world is divided
// into small disjoint groups (Grouping), the membership is drawn anew from
// (seed, iteration) (Shuffle), and every group averages its members'
// parameters with a collective (Reduce), all groups at once.
//
// In matrix form X_{t+1} = W_t X_t with W_t the block-diagonal averaging matrix
// of iteration t's partition: symmetric, doubly stochastic, idempotent. The
// mean over all ranks never changes; the shuffle spreads every rank's update to
// all others over a few steps.

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dssync/collective/recursive_doubling.hpp"
#include "dssync/collective/ring.hpp"
#include "dssync/core/concepts.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/group.hpp"
#include "dssync/policy/grouping.hpp"
#include "dssync/policy/shuffle.hpp"
#include "dssync/sync/common.hpp"

namespace dssync {

struct DSSyncOptions {
  int group_size = 2;
  std::uint64_t seed = 0;
  // Before averaging, all ranks compare a hash of (seed, group size, iteration,
  // partition, element type) and the buffer length and fail with configuration_error naming the
  // first rank that disagrees. Costs one small all-reduce over the world per
  // step: for debugging and first runs.
  bool checked = false;
  std::size_t bucket_bytes = default_bucket_bytes;
};

namespace detail {

// The checked mode's exchange: every rank's (hash, length) reaches every rank
// through one all-reduce over the world, whatever the ranks believe about the
// partition, so a disagreement is reported and never deadlocks.
class ConsistencyCheck {
 public:
  explicit ConsistencyCheck(int world_size)
      : world_(Partition::whole(world_size)), table_(2 * static_cast<std::size_t>(world_size)) {}

  template <transport Transport>
  void verify(Transport& t, std::uint64_t iteration, std::uint64_t hash, std::uint64_t length) {
    const auto me = static_cast<std::size_t>(t.rank());
    std::fill(table_.begin(), table_.end(), 0);
    table_[2 * me] = hash;
    table_[2 * me + 1] = length;
    // A fixed tag: ranks that disagree on the iteration must still meet here.
    reduce_.all_reduce(t, world_.group(0), std::span<std::uint64_t>(table_), Sum{}, max_tag);
    for (std::size_t r = 0; r < table_.size() / 2; ++r) {
      const auto where = error_context{}.with_rank(t.rank()).with_peer(static_cast<int>(r)).with_iteration(iteration);
      if (table_[2 * r] != hash)
        throw configuration_error(
            "ranks disagree on the partition or the element type: different seed, group size, "
            "shuffle, iteration counter or element size",
            where);
      if (table_[2 * r + 1] != length)
        throw configuration_error("ranks synchronize buffers of different lengths (" +
                                      std::to_string(length) + " elements here, " +
                                      std::to_string(table_[2 * r + 1]) + " on the peer)",
                                  where);
    }
  }

 private:
  Partition world_;
  std::vector<std::uint64_t> table_;
  RecursiveDoublingReduce reduce_;
};

}  // namespace detail

template <transport Transport, shuffle_policy Shuffle = RandomShuffle,
          class Reduce = RingReduce, grouping_policy Grouping = FixedSizeGroups,
          class Op = Average>
  requires reduce_policy<Reduce, CountingTransport<Transport>>
class DSSync : public detail::StepOverloads<DSSync<Transport, Shuffle, Reduce, Grouping, Op>> {
 public:
  using detail::StepOverloads<DSSync>::step;
  using transport_type = Transport;
  using Options = DSSyncOptions;

  explicit DSSync(Transport& t, Options options = {}, Shuffle shuffle = {}, Reduce reduce = {},
                  Grouping grouping = {}, Op op = {})
      : transport_(t), options_(options), shuffle_(std::move(shuffle)), reduce_(std::move(reduce)),
        grouping_(std::move(grouping)), op_(std::move(op)), check_(t.size()) {
    if (options_.group_size < 1)
      throw configuration_error("group size must be at least 1, got " +
                                    std::to_string(options_.group_size),
                                error_context{}.with_rank(t.rank()));
    fill(0, partition_);  // fails here, on every rank, if the policies reject this world
  }

  // step(params) (from StepOverloads: one buffer, a container or a set of
  // tensors) lands here: it averages the parameters inside this rank's group
  // of the current iteration's partition, then advances the iteration. Tensors
  // are fused into buckets of options.bucket_bytes, one collective per bucket.
  template <element T>
  void step_tensors(std::span<const std::span<T>> tensors) {
    detail::StepScope scope(stats_, transport_.count());
    fill(iteration_, partition_);
    if (options_.checked) {
      std::uint64_t length = 0;
      for (const auto& x : tensors) length += x.size();
      check_.verify(transport_, iteration_, detail::mix64(consistency_hash() ^ sizeof(T)), length);
    }
    const Group group = partition_.group_of(transport_.rank());
    detail::for_each_bucket(tensors, detail::bucket_elements<T>(options_.bucket_bytes), fusion_,
                            [&](std::span<T> bucket, unsigned index) {
                              reduce_.all_reduce(transport_, group, bucket, op_,
                                                 make_tag(iteration_, index % 127));
                            });
    ++iteration_;
  }

  // Who is grouped with whom at iteration t (any t, past or future).
  Partition partition(std::uint64_t t) const {
    Partition p;
    fill(t, p);
    return p;
  }

  std::uint64_t iteration() const noexcept { return iteration_; }
  const SyncStats& stats() const noexcept { return stats_; }
  const Options& options() const noexcept { return options_; }

 private:
  void fill(std::uint64_t t, Partition& p) const {
    grouping_.layout(transport_.size(), options_.group_size, t, p);
    shuffle_.shuffle(options_.seed, t, p);
  }

  std::uint64_t consistency_hash() const noexcept {
    std::uint64_t h = partition_.hash();
    h = detail::mix64(h ^ options_.seed);
    h = detail::mix64(h ^ static_cast<std::uint64_t>(options_.group_size));
    return detail::mix64(h ^ iteration_);
  }

  CountingTransport<Transport> transport_;
  Options options_;
  Shuffle shuffle_;
  Reduce reduce_;
  Grouping grouping_;
  Op op_;
  detail::ConsistencyCheck check_;
  Partition partition_;
  detail::Scratch fusion_;
  std::uint64_t iteration_ = 0;
  SyncStats stats_;
};

}  // namespace dssync
