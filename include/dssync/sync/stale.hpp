#pragma once
// StaleSync: staleness emulated exactly (Dai et al., "Toward understanding the
// impact of staleness in distributed machine learning", ICLR 2019). At clock c
// each worker computes its gradient at the parameters of clock c - r, r drawn
// by a delay policy from (seed, rank, c); the gradients are averaged over all
// ranks as in BSP and the trainer applies the mean to the current parameters:
//
//   for each clock c:
//     auto stale = sync.view(params);   // records params, returns clock c - r's copy
//     gradient = grad(stale);
//     sync.step(gradient);              // the mean over all ranks
//     params -= lr * gradient;
//
// The staleness is in the arithmetic, not in the timing: every rank waits for
// every other at each step, so a run is the same on every transport, and its
// statistics are those of the delay policy alone. docs/method.md ("Staleness
// emulation") gives the model and what it costs.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dssync/collective/ring.hpp"
#include "dssync/core/concepts.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/group.hpp"
#include "dssync/core/partition_cache.hpp"
#include "dssync/core/random.hpp"
#include "dssync/policy/delay.hpp"
#include "dssync/sync/common.hpp"

namespace dssync {

struct StaleSyncOptions {
  std::uint64_t seed = 0;  // the delay policy's draws
  std::size_t bucket_bytes = default_bucket_bytes;
  // As AllReduceSync's: before each step every rank compares the synchronizer,
  // its place among this rank's checked synchronizers, the iteration, the
  // delay policy's bound and the seed, and the gradient's length.
  bool checked = false;
  // The history is (bound + 1) copies of the parameters, allocated at
  // construction; above this many bytes the constructor refuses.
  std::size_t max_history_bytes = std::size_t{1} << 30;
};

template <transport Transport, delay_policy Delay = UniformDelay, class Reduce = RingReduce,
          element T = float>
requires reduce_policy<Reduce, CountingTransport<Transport>, T> && reduce_op<Average, T>
class StaleSync {
 public:
  using transport_type = Transport;
  using op_type = Average;
  using value_type = T;
  using Options = StaleSyncOptions;

  StaleSync(Transport& t, std::size_t parameters, Delay delay = {}, Options options = {},
            Reduce reduce = {})
      : transport_(t),
        parameters_(parameters),
        delay_(std::move(delay)),
        options_(options),
        reduce_(std::move(reduce)),
        world_(t),
        ordinal_(options.checked ? detail::next_checked_ordinal(t) : 0) {
    const auto here = error_context{}.with_rank(t.rank());
    const int bound = delay_.bound();
    if (bound < 0)
      throw configuration_error(
          "StaleSync's delay bound must be at least 0, got " + std::to_string(bound), here);
    copies_ = static_cast<std::size_t>(bound) + 1;
    detail::check_history_bytes(
        "StaleSync's history (" + std::to_string(copies_) + " copies of " +
            std::to_string(parameters_) + " parameters of " + std::to_string(sizeof(T)) + " bytes)",
        copies_, parameters_, sizeof(T), options_.max_history_bytes, "max_history_bytes", here);
    history_.resize(copies_ * parameters_);
  }

  // Records `params` as the parameters of the current clock c and returns the
  // copy of clock c - r (r = min(drawn delay, c): before clock s the oldest copy
  // is clock 0's), the point at which this worker computes its gradient for
  // clock c. The span stays valid until the next view(). Calling view() again
  // at the same clock records the parameters anew.
  std::span<const T> view(std::span<const T> params) {
    check_length(params.size(), "view()");
    const std::span<T> now = slot(iteration_);
    if (params.data() != now.data()) std::copy(params.begin(), params.end(), now.begin());
    viewed_ = true;
    return slot(iteration_ - static_cast<std::uint64_t>(delay()));
  }

  // gradient <- its mean over all ranks (AllReduceSync<Transport, Reduce,
  // Average> on gradients, bit for bit), then the clock advances. The gradient
  // must be computed after view() at this clock.
  void step(std::span<T> gradient) {
    detail::StepScope scope(stats_, transport_.count());
    const Group everyone = world_.get().group(0);
    detail::with_context(transport_.rank(), iteration_, everyone.ranks(), [&] {
      if (!viewed_)
        throw configuration_error(
            "step() without view() at this clock: call view(params) first, compute the "
            "gradient at the parameters it returns, then step(gradient)",
            error_context{}.with_rank(transport_.rank()));
      check_length(gradient.size(), "step()");
      if (options_.checked) {
        const std::span<T> one[] = {gradient};
        detail::CheckedState state = detail::tensor_layout(std::span<const std::span<T>>(one));
        // What every rank must agree on: the synchronizer and its place, the
        // clock, and the delays' seed and bound.
        state.schedule = detail::type_hash<StaleSync>();
        for (const std::uint64_t v : {ordinal_, iteration_, options_.seed,
                                      static_cast<std::uint64_t>(delay_.bound())})
          state.schedule = detail::mix64(state.schedule ^ detail::mix64(v));
        check_.verify(transport_, iteration_, state);
      }
      const std::span<T> one[] = {gradient};
      detail::for_each_bucket(std::span<const std::span<T>>(one),
                              detail::bucket_elements<T>(options_.bucket_bytes), fusion_,
                              [&](std::span<T> bucket, unsigned index) {
                                reduce_.all_reduce(transport_, everyone, bucket, Average{},
                                                   make_tag(iteration_, index % 127));
                              });
    });
    viewed_ = false;
    ++iteration_;
  }

  // The r this rank uses at the current clock: min(drawn delay, clock). A pure
  // function of (seed, rank, clock), so it may be asked before view() as well.
  // A drawn delay outside [0, bound()] is the policy's error: the ring of
  // copies holds only the last bound() + 1 clocks.
  int delay() const {
    const int drawn = delay_.delay(options_.seed, transport_.rank(), iteration_);
    if (drawn < 0 || drawn > bound())
      throw configuration_error("StaleSync's delay policy drew a delay of " +
                                    std::to_string(drawn) + ", outside 0.." +
                                    std::to_string(bound()) + " (its bound)",
                                error_context{}.with_rank(transport_.rank()).with_iteration(
                                    iteration_));
    return static_cast<int>(std::min<std::uint64_t>(static_cast<std::uint64_t>(drawn), iteration_));
  }

  int bound() const noexcept { return static_cast<int>(copies_ - 1); }
  std::size_t parameters() const noexcept { return parameters_; }
  std::size_t history_bytes() const noexcept { return history_.size() * sizeof(T); }

  // One group of everyone, at every clock: the gradients are averaged as in BSP.
  Partition partition(std::uint64_t /*t*/) const { return world_.get(); }

  std::uint64_t iteration() const noexcept { return iteration_; }
  const SyncStats& stats() const noexcept { return stats_; }

 private:
  // The copy of clock c: a ring of bound + 1 copies, so clock c overwrites
  // clock c - bound - 1, which no later view can ask for.
  std::span<T> slot(std::uint64_t clock) noexcept {
    return std::span<T>(history_).subspan(static_cast<std::size_t>(clock % copies_) * parameters_,
                                          parameters_);
  }

  void check_length(std::size_t got, const char* where) const {
    if (got != parameters_)
      throw configuration_error(
          std::string(where) + " got " + std::to_string(got) +
              " elements, but this StaleSync was made for " + std::to_string(parameters_) +
              " parameters",
          error_context{}.with_rank(transport_.rank()).with_iteration(iteration_));
  }

  CountingTransport<Transport> transport_;
  std::size_t parameters_;
  Delay delay_;
  Options options_;
  Reduce reduce_;
  detail::WorldPartition world_;
  detail::ConsistencyCheck check_;
  std::uint64_t ordinal_;
  std::size_t copies_ = 1;
  std::vector<T> history_;
  detail::Scratch fusion_;
  bool viewed_ = false;
  std::uint64_t iteration_ = 0;
  SyncStats stats_;
};

}  // namespace dssync
