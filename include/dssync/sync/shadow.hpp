#pragma once
// ShadowSync: synchronization beside training (Zheng et al., ShadowSync,
// 2020). The trainer never waits for the network: its step() hands a
// snapshot of the parameters to a background round on a channel of its own
// (transport/background.hpp) whenever the last round has finished, and merges
// a finished round's result keeping the progress made since the snapshot:
//
//   x <- target + (x - snapshot)
//
// What a round does is a policy (policy/round.hpp): model averaging, BMUF,
// EASGD with a replicated centre, or a DS-Sync step.
//
//   dssync::ShadowSync<dssync::InProcTransport, dssync::ShadowBMUF> shadow(t, n_params);
//   for each batch: { sgd_step(params); shadow.step(params); }
//   shadow.finish(params);   // one last round every rank joins: equal parameters
//
// max_lag bounds how many steps a round may stay in flight after the step
// that started it: with 0 every step runs a whole round and waits for it
// (with ShadowAverage: AllReduceSync on parameters, bit for bit); by default
// there is no bound and the trainer only waits in finish(). With a bound L
// every round is merged exactly L steps after the step that started it,
// waiting for it then if it has not ended, and never earlier: so every rank
// starts round r at the same step whatever the timing, the run is the same
// to the bit on every transport, and no rank can wait in step() for a round
// that a rank already in finish() has not started. (A round merged as soon as
// it ended could be followed at once by one that a faster rank, already in
// finish(), would start only after agreeing with the slower one: a deadlock.)
//
// period spaces the rounds: a round starts at most every `period` steps (the
// first at the first step). By default one starts as soon as the last has
// been merged, so the network is never idle; where the traffic costs the
// trainer CPU (more ranks than cores, a kernel network path), a period trades
// fresher averages for a faster trainer. With max_lag 0 and model averaging a
// period P averages after steps 0, P, 2P, ...: local SGD's schedule.
//
// Rounds are collective: every rank runs round r as its r-th round, whenever
// its own background is free, so ranks start them at different steps. So that
// finish() ends in step, the ranks first agree on the number of rounds (the
// most any rank started, on the trainer's channel, where no round can be in
// the way), run the rounds they lack, then average the parameters exactly
// once more: consensus exactly zero.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "dssync/collective/ring.hpp"
#include "dssync/core/concepts.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/group.hpp"
#include "dssync/core/partition_cache.hpp"
#include "dssync/policy/round.hpp"
#include "dssync/sync/allreduce.hpp"
#include "dssync/sync/common.hpp"
#include "dssync/transport/background.hpp"

namespace dssync {

struct ShadowSyncOptions {
  // Steps a round may stay in flight after the step that started it, before
  // step() waits for it; the default never waits.
  std::uint64_t max_lag = std::numeric_limits<std::uint64_t>::max();
  // Steps from one round's start to the next's, at least (0 and 1: start as
  // soon as the background is free).
  std::uint64_t period = 0;
  int channel = 1;  // the background's channel
};

// bytes_sent and messages_sent: the rounds' and finish()'s final average's,
// as of the last merge (the count of the agreement in finish() is left out:
// one value).
struct ShadowStats : SyncStats {
  std::uint64_t rounds = 0;     // rounds started
  std::uint64_t merges = 0;     // rounds merged
  std::uint64_t lag_steps = 0;  // sum over merges of the steps between snapshot and merge
  double wait_seconds = 0;      // of seconds: step() or finish() waiting for a round
};

template <transport_with_channels Transport, template <class, class> class Round = ShadowAverage,
          element T = float>
class ShadowSync {
 public:
  using transport_type = Transport;
  using value_type = T;
  using Options = ShadowSyncOptions;
  using round_type = Round<Transport, T>;

  ShadowSync(Transport& t, std::size_t parameters, Options options = {},
             typename round_type::Options round_options = {})
      : trainer_(t),
        parameters_(parameters),
        options_(options),
        background_(t, options.channel),
        round_(background_.transport(), parameters, round_options),
        final_(t),
        world_(t),
        snapshot_(parameters),
        work_(parameters) {}

  ShadowSync(const ShadowSync&) = delete;
  ShadowSync& operator=(const ShadowSync&) = delete;
  ~ShadowSync() {
    if (running_) background_.wait(std::chrono::milliseconds(0));
  }

  // Merges the round in flight if it has finished (without a max_lag) or
  // reached max_lag (waiting for it then), and starts the next round on a
  // snapshot of `params` when none is in flight. A background error is
  // rethrown here, with the round and group it happened in.
  void step(std::span<T> params) {
    detail::StepScope scope(stats_, no_traffic_);
    check_length(params.size(), "step()");
    const bool bounded = options_.max_lag != std::numeric_limits<std::uint64_t>::max();
    if (running_ && (since_ >= options_.max_lag || (!bounded && background_.ready())))
      merge(params);
    if (!running_ && (stats_.rounds == 0 || since_ >= options_.period)) start(params);
    if (running_ && since_ >= options_.max_lag) merge(params);
    ++since_;
  }

  // Ends synchronization: every rank must call it. Afterwards every rank
  // holds the same parameters, bit for bit.
  void finish(std::span<T> params) {
    check_length(params.size(), "finish()");
    // The number of rounds: the most any rank started.
    double most = static_cast<double>(stats_.rounds);
    RingReduce{}.all_reduce(trainer_, world_.get().group(0), std::span<double>(&most, 1), Max{},
                            make_tag(0, 126));
    if (running_) merge(params);
    while (stats_.rounds < static_cast<std::uint64_t>(most)) {
      start(params);
      merge(params);
    }
    final_.step(params);
    stats_.bytes_sent = round_.stats().bytes_sent + final_.stats().bytes_sent;
    stats_.messages_sent = round_.stats().messages_sent + final_.stats().messages_sent;
  }

  std::size_t parameters() const noexcept { return parameters_; }
  std::uint64_t rounds() const noexcept { return stats_.rounds; }
  bool round_in_flight() const noexcept { return running_; }
  const round_type& round_policy() const noexcept { return round_; }
  const ShadowStats& stats() const noexcept { return stats_; }

 private:
  void start(std::span<const T> params) {
    std::copy(params.begin(), params.end(), snapshot_.begin());
    std::copy(params.begin(), params.end(), work_.begin());
    const std::uint64_t index = stats_.rounds++;
    running_ = true;
    since_ = 0;
    background_.start([this, index](Transport&) { round_.round(std::span<T>(work_), index); });
  }

  // x <- target + (x - snapshot), once the round has ended.
  void merge(std::span<T> params) {
    if (!background_.ready()) {
      const auto start = std::chrono::steady_clock::now();
      background_.wait(std::chrono::milliseconds(0));
      stats_.wait_seconds +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    running_ = false;
    // The round has ended: its traffic can be read.
    stats_.bytes_sent = round_.stats().bytes_sent;
    stats_.messages_sent = round_.stats().messages_sent;
    background_.get();
    for (std::size_t i = 0; i < parameters_; ++i)
      params[i] = work_[i] + (params[i] - snapshot_[i]);
    ++stats_.merges;
    stats_.lag_steps += since_;
  }

  void check_length(std::size_t got, const char* where) const {
    if (got != parameters_)
      throw configuration_error(
          std::string(where) + " got " + std::to_string(got) +
              " elements, but this ShadowSync was made for " + std::to_string(parameters_) +
              " parameters",
          error_context{}.with_rank(trainer_.rank()).with_iteration(stats_.steps));
  }

  Transport& trainer_;
  std::size_t parameters_;
  Options options_;
  Background<Transport> background_;
  round_type round_;
  AllReduceSync<Transport, RingReduce, Average> final_;
  detail::WorldPartition world_;
  std::vector<T> snapshot_, work_;
  bool running_ = false;
  std::uint64_t since_ = 0;  // steps since the last round started
  ShadowStats stats_;
  TrafficCount no_traffic_;
};

}  // namespace dssync
