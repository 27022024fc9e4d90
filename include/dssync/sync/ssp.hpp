#pragma once
// SSPSync: bounded staleness with overlap (stale synchronous parallel, as in
// Petuum Bosen). The all-reduce of clock c's gradients runs in the background,
// on a channel of its own (transport/background.hpp), while the trainer goes
// on computing clocks c + 1 ... c + s; step() at clock c returns the mean of
// clock c - s, the newest one every worker is guaranteed to have finished:
//
//   dssync::SSPSync<dssync::InProcTransport> ssp(t, n_params, {.staleness = 2});
//   for each clock c:
//     gradient = grad(params);
//     ssp.step(gradient);            // gradient <- mean over ranks of clock c - s (zero for c < s)
//     params -= lr * gradient;
//   ssp.finish(rest);                // rest <- sum of the means still in flight
//   params -= lr * rest;
//
// Bosen's guarantee: no worker starts clock c + 1 before every worker has
// finished clock c - s, because the mean of clock c - s needs every worker's
// gradient of that clock. So the fastest worker is at most s clocks ahead of
// the slowest. With staleness 0, step() waits for its own clock: AllReduceSync
// on gradients (Average), bit for bit.
//
// Timing: the background runs one all-reduce at a time, in clock order; the
// trainer starts the next one whenever it finds the background idle (in
// step(), and at once while it waits). With compute time C per clock and an
// all-reduce that takes A alone, the period is C + A at s = 0 and max(C, A)
// at s >= 1. Under jitter in C the trainer waits only when it is s clocks
// ahead of the background; a permanent straggler still sets the pace.
//
// Memory: s + 1 gradient buffers, allocated at construction; a step allocates
// nothing (the background job captures only `this`).

#include <algorithm>
#include <chrono>
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
#include "dssync/sync/common.hpp"
#include "dssync/transport/background.hpp"

namespace dssync {

struct SSPSyncOptions {
  int staleness = 1;  // s: clock c applies the mean of clock c - s
  int channel = 1;    // the background's channel
  std::size_t bucket_bytes = default_bucket_bytes;
  // Before each background all-reduce every rank compares the synchronizer,
  // its place, the clock, the staleness and the gradient's length.
  bool checked = false;
  // The s + 1 gradient buffers are allocated at construction; more bytes than
  // this is a configuration_error naming them (as StaleSync's history).
  std::size_t max_history_bytes = std::size_t{1} << 30;
};

struct SSPStats : SyncStats {
  double wait_seconds = 0;     // of seconds: the trainer waiting for a clock's mean
  std::uint64_t reduced = 0;   // background all-reduces finished
  std::uint64_t max_in_flight = 0;  // most clocks submitted and not yet reduced
};

template <transport_with_channels Transport, class Reduce = RingReduce, element T = float>
  requires reduce_policy<Reduce, CountingTransport<Transport>, T> && reduce_op<Average, T>
class SSPSync {
 public:
  using transport_type = Transport;
  using op_type = Average;
  using value_type = T;
  using Options = SSPSyncOptions;

  SSPSync(Transport& t, std::size_t parameters, Options options = {}, Reduce reduce = {})
      : rank_(t.rank()),
        parameters_(parameters),
        options_(validated(options, t, parameters)),
        reduce_(std::move(reduce)),
        world_(t),
        jobs_(t, options_.channel, [this](Transport&, std::uint64_t c) { reduce_clock(c); },
              [this](std::uint64_t) { count_traffic(); }),
        channel_(jobs_.transport()),
        ordinal_(options_.checked ? detail::next_checked_ordinal(jobs_.transport()) : 0),
        buffers_((static_cast<std::size_t>(options_.staleness) + 1) * parameters) {}

  SSPSync(const SSPSync&) = delete;
  SSPSync& operator=(const SSPSync&) = delete;
  // A background all-reduce still running uses the buffers: it ends first
  // (its operations have their deadlines).
  ~SSPSync() { jobs_.settle(); }

  // Submits this clock's gradient and replaces it with the mean over all
  // ranks of clock c - s (zeros while c < s). Waits only for that clock.
  void step(std::span<T> gradient) {
    // Times the step; the traffic is the background's, counted as its jobs
    // end (count_traffic()).
    detail::StepScope scope(stats_, no_traffic_);
    check_length(gradient.size(), "step()");
    const std::uint64_t c = jobs_.submitted();
    std::copy(gradient.begin(), gradient.end(), buffer(c).begin());
    jobs_.submit();
    stats_.max_in_flight = jobs_.max_in_flight();
    stats_.reduced = jobs_.done();
    // The mean of clock handed_ is due once this clock is s past it (clock
    // c - s in a run; after finish() every mean has been handed out, and the
    // count starts again).
    const auto s = static_cast<std::uint64_t>(options_.staleness);
    if (c - handed_ < s) {
      std::fill(gradient.begin(), gradient.end(), T{});
      return;
    }
    wait_reduced(handed_ + 1);
    const std::span<const T> mean = buffer(handed_++);
    std::copy(mean.begin(), mean.end(), gradient.begin());
  }

  // Waits for every clock still in flight and leaves the sum of the means
  // not handed out yet in `rest` (in clock order), for the trainer to apply;
  // after it every rank has applied every clock's mean once. Every rank must
  // call it: a rank that does not leaves the others' background all-reduces
  // to time out naming it. Steps may follow (the staleness counts again
  // from there); a second finish() in a row gives zeros.
  void finish(std::span<T> rest) {
    check_length(rest.size(), "finish()");
    std::fill(rest.begin(), rest.end(), T{});
    const std::uint64_t clocks = jobs_.submitted();
    wait_reduced(clocks);
    for (; handed_ < clocks; ++handed_) {
      const std::span<const T> mean = buffer(handed_);
      for (std::size_t i = 0; i < parameters_; ++i) rest[i] += mean[i];
    }
  }

  int staleness() const noexcept { return options_.staleness; }
  std::size_t parameters() const noexcept { return parameters_; }
  // Clocks submitted, and clocks whose mean is known on this rank.
  std::uint64_t iteration() const noexcept { return jobs_.submitted(); }
  std::uint64_t reduced() const noexcept { return jobs_.done(); }
  Partition partition(std::uint64_t /*t*/) const { return world_.get(); }
  const SSPStats& stats() const noexcept { return stats_; }

 private:
  static Options validated(Options o, const Transport& t, std::size_t parameters) {
    const auto here = error_context{}.with_rank(t.rank());
    if (o.staleness < 0)
      throw configuration_error(
          "SSPSync's staleness must be at least 0, got " + std::to_string(o.staleness), here);
    const std::size_t copies = static_cast<std::size_t>(o.staleness) + 1;
    detail::check_history_bytes(
        "SSPSync's gradient buffers (" + std::to_string(copies) + " copies of " +
            std::to_string(parameters) + " elements of " + std::to_string(sizeof(T)) + " bytes)",
        copies, parameters, sizeof(T), o.max_history_bytes, "max_history_bytes", here);
    return o;
  }

  std::span<T> buffer(std::uint64_t clock) noexcept {
    const auto copies = static_cast<std::uint64_t>(options_.staleness) + 1;
    return std::span<T>(buffers_).subspan(static_cast<std::size_t>(clock % copies) * parameters_,
                                          parameters_);
  }

  // Waits until clocks [0, upto) are reduced, keeping the background busy.
  void wait_reduced(std::uint64_t upto) {
    stats_.wait_seconds += jobs_.wait_done(upto);
    stats_.reduced = jobs_.done();
  }
  // A job has ended: the channel's count holds every job's traffic so far.
  void count_traffic() {
    stats_.bytes_sent = channel_.count().bytes_sent;
    stats_.messages_sent = channel_.count().messages_sent;
  }

  // On the background: clock c's mean, in its buffer.
  void reduce_clock(std::uint64_t c) {
    const Group everyone = world_.get().group(0);
    const std::span<T> data = buffer(c);
    detail::with_context(channel_.rank(), c, everyone.ranks(), [&] {
      if (options_.checked) {
        const std::span<T> one[] = {data};
        detail::CheckedState state = detail::tensor_layout(std::span<const std::span<T>>(one));
        state.schedule = detail::type_hash<SSPSync>();
        for (const std::uint64_t v :
             {ordinal_, c, static_cast<std::uint64_t>(options_.staleness)})
          state.schedule = detail::mix64(state.schedule ^ detail::mix64(v));
        check_.verify(channel_, c, state);
      }
      const std::span<T> one[] = {data};
      detail::for_each_bucket(std::span<const std::span<T>>(one),
                              detail::bucket_elements<T>(options_.bucket_bytes), fusion_,
                              [&](std::span<T> bucket, unsigned index) {
                                reduce_.all_reduce(channel_, everyone, bucket, Average{},
                                                   make_tag(c, index % 127));
                              });
    });
  }

  void check_length(std::size_t got, const char* where) const {
    if (got != parameters_)
      throw configuration_error(
          std::string(where) + " got " + std::to_string(got) +
              " elements, but this SSPSync was made for " + std::to_string(parameters_) +
              " parameters",
          error_context{}.with_rank(rank_).with_iteration(jobs_.submitted()));
  }

  int rank_;
  std::size_t parameters_;
  Options options_;
  Reduce reduce_;
  detail::WorldPartition world_;
  detail::ConsistencyCheck check_;
  InOrderJobs<Transport> jobs_;
  CountingTransport<Transport> channel_;
  std::uint64_t ordinal_;
  std::uint64_t handed_ = 0;  // clocks whose mean step() or finish() has handed out
  std::vector<T> buffers_;
  detail::Scratch fusion_;
  SSPStats stats_;
  TrafficCount no_traffic_;
};

}  // namespace dssync
