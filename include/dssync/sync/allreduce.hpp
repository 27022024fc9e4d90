#pragma once
// AllReduceSync: the bulk-synchronous baseline. Every step all-reduces over the
// whole world, on parameters (Average) or on gradients (Sum or Average).

#include <cstdint>
#include <span>

#include "dssync/collective/ring.hpp"
#include "dssync/core/concepts.hpp"
#include "dssync/core/group.hpp"
#include "dssync/core/partition_cache.hpp"
#include "dssync/sync/common.hpp"

namespace dssync {

struct AllReduceSyncOptions {
  std::size_t bucket_bytes = default_bucket_bytes;
  // As DSSyncOptions::checked: every rank compares synchronizer, op,
  // iteration, element type and tensor lengths before the step.
  bool checked = false;
};

template <transport Transport, class Reduce = RingReduce, class Op = Average>
  requires reduce_policy<Reduce, CountingTransport<Transport>>
class AllReduceSync : public detail::StepOverloads<AllReduceSync<Transport, Reduce, Op>> {
 public:
  using detail::StepOverloads<AllReduceSync>::step;
  using transport_type = Transport;
  using op_type = Op;
  using Options = AllReduceSyncOptions;

  explicit AllReduceSync(Transport& t, Options options = {}, Reduce reduce = {}, Op op = {})
      : transport_(t), options_(options), reduce_(std::move(reduce)), op_(std::move(op)),
        world_(t),
        ordinal_(options.checked ? detail::next_checked_ordinal(t) : 0) {}

  // step(params) (from StepOverloads: one buffer, a container or a set of
  // tensors) lands here: one all-reduce over the world per fusion bucket.
  template <element T>
  void step_tensors(std::span<const std::span<T>> tensors) {
    detail::StepScope scope(stats_, transport_.count());
    const Group everyone = world_.get().group(0);
    detail::with_context(transport_.rank(), iteration_, everyone.ranks(), [&] {
      if (options_.checked) {
        detail::CheckedState state = detail::tensor_layout(tensors);
        state.schedule = detail::mix64(detail::type_hash<AllReduceSync>() ^
                                       detail::mix64(ordinal_ ^ detail::mix64(iteration_)));
        check_.verify(transport_, iteration_, state);
      }
      detail::for_each_bucket(tensors, detail::bucket_elements<T>(options_.bucket_bytes), fusion_,
                              [&](std::span<T> bucket, unsigned index) {
                                reduce_.all_reduce(transport_, everyone, bucket, op_,
                                                   make_tag(iteration_, index % 127));
                              });
    });
    ++iteration_;
  }

  // One group of everyone, at every iteration.
  Partition partition(std::uint64_t /*t*/) const { return world_.get(); }

  std::uint64_t iteration() const noexcept { return iteration_; }
  const SyncStats& stats() const noexcept { return stats_; }

 private:
  CountingTransport<Transport> transport_;
  Options options_;
  Reduce reduce_;
  Op op_;
  detail::WorldPartition world_;
  detail::ConsistencyCheck check_;
  std::uint64_t ordinal_;
  detail::Scratch fusion_;
  std::uint64_t iteration_ = 0;
  SyncStats stats_;
};

}  // namespace dssync
