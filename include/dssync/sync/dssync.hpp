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
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "dssync/collective/recursive_doubling.hpp"
#include "dssync/collective/ring.hpp"
#include "dssync/core/concepts.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/group.hpp"
#include "dssync/core/partition_cache.hpp"
#include "dssync/policy/grouping.hpp"
#include "dssync/policy/shuffle.hpp"
#include "dssync/sync/common.hpp"

namespace dssync {

struct DSSyncOptions {
  int group_size = 2;
  std::uint64_t seed = 0;
  // Before averaging, all ranks compare what they are about to do and fail
  // with configuration_error naming the first rank that disagrees, instead of
  // mixing garbage or waiting forever: the synchronizer (its type and its place
  // among the checked synchronizers this rank made), seed, group size,
  // shuffle, op, iteration and partition; the element type; the number, order
  // and lengths of the tensors. Costs one small all-reduce over the world per
  // step (its measured cost: docs/benchmarks.md, "Synchronizers on 8
  // in-process ranks").
  bool checked = false;
  std::size_t bucket_bytes = default_bucket_bytes;
};

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
        grouping_(std::move(grouping)), op_(std::move(op)),
        ordinal_(options.checked ? detail::next_checked_ordinal(t) : 0) {
    if (options_.group_size < 1)
      throw configuration_error("group size must be at least 1, got " +
                                    std::to_string(options_.group_size),
                                error_context{}.with_rank(t.rank()));
    current(0);  // fails here, on every rank, if the policies reject this world
  }

  using op_type = Op;

  // step(params) (from StepOverloads: one buffer, a container or a set of
  // tensors) lands here: it averages the parameters inside this rank's group
  // of the current iteration's partition, then advances the iteration. Tensors
  // are fused into buckets of options.bucket_bytes, one collective per bucket.
  template <element T>
  void step_tensors(std::span<const std::span<T>> tensors) {
    detail::StepScope scope(stats_, transport_.count());
    const Partition& partition = current(iteration_);
    const Group group = partition.group_of(transport_.rank());
    detail::with_context(transport_.rank(), iteration_, group.ranks(), [&] {
      if (options_.checked) {
        detail::CheckedState state = detail::tensor_layout(tensors);
        state.schedule = schedule_hash(partition);
        check_.verify(transport_, iteration_, state);
      }
      detail::for_each_bucket(tensors, detail::bucket_elements<T>(options_.bucket_bytes), fusion_,
                              [&](std::span<T> bucket, unsigned index) {
                                reduce_.all_reduce(transport_, group, bucket, op_,
                                                   make_tag(iteration_, index % 127));
                              });
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
  // A policy's error names this rank and iteration t.
  void fill(std::uint64_t t, Partition& p) const {
    detail::with_context(transport_.rank(), t, {}, [&] {
      grouping_.layout(transport_.size(), options_.group_size, t, p);
      if constexpr (requires { shuffle_.shuffle(options_.seed, t, options_.group_size, p); })
        shuffle_.shuffle(options_.seed, t, options_.group_size, p);
      else
        shuffle_.shuffle(options_.seed, t, p);
    });
  }

  // Iteration t's partition: this rank's own, or the one copy of the
  // transport's cache when its ranks share one (the simulator) and the
  // policies are stateless, so that the partition depends on the key alone.
  // Policies with state (labels) are not shared: two synchronizers with equal
  // keys could hold different labels.
  const Partition& current(std::uint64_t t) {
    if constexpr (std::is_empty_v<Shuffle> && std::is_empty_v<Grouping>) {
      if (detail::PartitionCache* cache = detail::partition_cache_of(transport_)) {
        // The policies in order: one type that is both, or the two swapped,
        // must not hash as another pair.
        detail::PartitionCache::Key key{
            .policies = detail::mix64(detail::mix64(detail::type_hash<Shuffle>()) +
                                      detail::type_hash<Grouping>()),
            .seed = options_.seed,
            .group_size = static_cast<std::uint64_t>(options_.group_size)};
        if (!instance_) instance_ = cache->instance(transport_.rank(), key);
        key.iteration = t;
        key.instance = *instance_;
        return shared_.get(*cache, key, [&](Partition& p) { fill(t, p); });
      }
    }
    fill(t, partition_);
    return partition_;
  }

  std::uint64_t schedule_hash(const Partition& partition) const noexcept {
    std::uint64_t h = detail::type_hash<DSSync>();
    for (std::uint64_t v : {ordinal_, options_.seed, static_cast<std::uint64_t>(options_.group_size),
                            iteration_, partition.hash()})
      h = detail::mix64(h ^ v);
    return h;
  }

  CountingTransport<Transport> transport_;
  Options options_;
  Shuffle shuffle_;
  Reduce reduce_;
  Grouping grouping_;
  Op op_;
  detail::ConsistencyCheck check_;
  std::uint64_t ordinal_;
  Partition partition_;             // this rank's own copy, when not shared
  detail::SharedPartition shared_;  // the shared copy's hold, when shared
  std::optional<std::uint64_t> instance_;  // in the shared cache, taken at the first current()
  detail::Scratch fusion_;
  std::uint64_t iteration_ = 0;
  SyncStats stats_;
};

}  // namespace dssync
