#pragma once
// GossipSync: decentralized neighbour averaging (D-PSGD). Each step every rank
// replaces its parameters by the mean of its own and its neighbours' in the
// topology at that iteration. No global collective at all: each rank talks to
// a few peers, and consensus comes from repeated mixing.

#include <cstdint>
#include <span>

#include "dssync/core/concepts.hpp"
#include "dssync/policy/topology.hpp"
#include "dssync/sync/common.hpp"

namespace dssync {

struct GossipSyncOptions {
  std::size_t bucket_bytes = default_bucket_bytes;
};

template <transport Transport, topology_policy Topology = RingTopology>
class GossipSync : public detail::StepOverloads<GossipSync<Transport, Topology>> {
 public:
  using detail::StepOverloads<GossipSync>::step;
  using transport_type = Transport;
  using Options = GossipSyncOptions;
  // Each rank takes the plain mean of its own and its neighbours' parameters.
  using op_type = Average;

  explicit GossipSync(Transport& t, Options options = {}, Topology topology = {})
      : transport_(t), options_(options), topology_(std::move(topology)) {
    // A topology that does not fit fails here, naming the rank.
    detail::with_context(t.rank(), 0, {}, [&] { (void)topology_.exchanges(t.size(), 0); });
  }

  // step(params) (from StepOverloads) lands here. Tensors are fused into
  // buckets as in DSSync; each bucket makes one round of the topology's
  // exchanges.
  template <element T>
  void step_tensors(std::span<const std::span<T>> tensors) {
    detail::StepScope scope(stats_, transport_.count());
    const int n = transport_.size(), me = transport_.rank();
    detail::with_context(me, iteration_, {}, [&] {
      const int k = topology_.exchanges(n, iteration_);
      detail::for_each_bucket(
          tensors, detail::bucket_elements<T>(options_.bucket_bytes), fusion_,
          [&](std::span<T> x, unsigned index) {
            auto acc = acc_.get<T>(x.size());
            auto in = in_.get<T>(x.size());
            detail::copy(acc, std::span<const T>(x));
            for (int e = 0; e < k; ++e) {
              const Exchange ex = topology_.exchange(n, iteration_, e, me);
              transport_.sendrecv(ex.dst, std::span<const T>(x), ex.src, in,
                                  make_tag(iteration_, index % 127));
              // The mean of k + 1 buffers: the last sum also divides, in the
              // same pass.
              if (e + 1 == k)
                detail::combine_finish(Average{}, acc, std::span<const T>(in), false, k + 1);
              else
                detail::combine_right(Sum{}, acc, std::span<const T>(in));
            }
            detail::copy(x, std::span<const T>(acc));
          });
    });
    ++iteration_;
  }

  const Topology& topology() const noexcept { return topology_; }
  int world_size() const { return transport_.size(); }
  std::uint64_t iteration() const noexcept { return iteration_; }
  const SyncStats& stats() const noexcept { return stats_; }

 private:
  CountingTransport<Transport> transport_;
  Options options_;
  Topology topology_;
  detail::Scratch acc_, in_, fusion_;
  std::uint64_t iteration_ = 0;
  SyncStats stats_;
};

}  // namespace dssync
