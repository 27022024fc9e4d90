#pragma once
// What one background round of ShadowSync does (sync/shadow.hpp): a class
// template Round<Channel, T> with
//   using Options = ...;
//   Round(Channel& channel, std::size_t parameters, Options options);
//   void round(std::span<T> work, std::uint64_t index);
// round() runs on the background context, on the channel it was made with,
// and turns this rank's snapshot (`work`) into the round's target in place;
//   const SyncStats& stats() const;
// is the traffic of the rounds so far (read between rounds only).
// Every rank runs the same rounds in the same order, so a round's state (a
// global model, a centre) is replicated bit for bit on every rank. Rounds
// allocate only in their first call.
//
// - ShadowAverage: model averaging over the world (AllReduceSync, Average).
// - ShadowBMUF: blockwise model-update filtering (Chen and Huo, 2016): the
//   average is filtered through block momentum eta and block learning rate
//   zeta against a global model every rank holds.
// - ShadowEASGD: elastic averaging (Zhang, Choromanska and LeCun, 2015) with
//   the centre replicated on every rank instead of a parameter server.
// - ShadowDS: a DS-Sync step (group averaging, groups reshuffled each round).

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dssync/collective/ring.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/group.hpp"
#include "dssync/sync/allreduce.hpp"
#include "dssync/sync/dssync.hpp"

namespace dssync {

template <class Channel, class T>
class ShadowAverage {
 public:
  using Options = AllReduceSyncOptions;
  ShadowAverage(Channel& channel, std::size_t /*parameters*/, Options options = {})
      : sync_(channel, options) {}
  void round(std::span<T> work, std::uint64_t /*index*/) { sync_.step(work); }
  const SyncStats& stats() const noexcept { return sync_.stats(); }

 private:
  AllReduceSync<Channel, RingReduce, Average> sync_;
};

struct ShadowBMUFOptions {
  double block_momentum = 0.9;  // eta, in [0, 1)
  double block_lr = 1.0;        // zeta, > 0
  std::size_t bucket_bytes = default_bucket_bytes;
};

// Round r: a = mean of the snapshots; the global model w moves by
// delta <- eta delta + zeta (a - w), and every rank's target is the new w.
// The first round sets w = a (nothing to filter yet). With zeta = 1 the new
// w is computed as a + eta delta_old, so that eta = 0 is model averaging to
// the bit.
template <class Channel, class T>
class ShadowBMUF {
 public:
  using Options = ShadowBMUFOptions;
  ShadowBMUF(Channel& channel, std::size_t /*parameters*/, Options options = {})
      : options_(checked(options, channel.rank())),
        average_(channel, {.bucket_bytes = options.bucket_bytes}) {}

  void round(std::span<T> work, std::uint64_t /*index*/) {
    average_.step(work);
    if (global_.empty()) {
      global_.assign(work.begin(), work.end());
      delta_.assign(work.size(), T{});
      return;
    }
    const T eta = static_cast<T>(options_.block_momentum);
    const T zeta = static_cast<T>(options_.block_lr);
    for (std::size_t i = 0; i < work.size(); ++i) {
      const T w = zeta == T(1) ? work[i] + eta * delta_[i]
                               : global_[i] + (eta * delta_[i] + zeta * (work[i] - global_[i]));
      delta_[i] = w - global_[i];
      global_[i] = w;
      work[i] = w;
    }
  }
  const SyncStats& stats() const noexcept { return average_.stats(); }

 private:
  static Options checked(Options o, int rank) {
    if (!(o.block_momentum >= 0 && o.block_momentum < 1))
      throw configuration_error("ShadowBMUF's block_momentum must be in [0, 1), got " +
                                    std::to_string(o.block_momentum),
                                error_context{}.with_rank(rank));
    if (!(o.block_lr > 0) || !std::isfinite(o.block_lr))
      throw configuration_error(
          "ShadowBMUF's block_lr must be positive and finite, got " + std::to_string(o.block_lr),
          error_context{}.with_rank(rank));
    return o;
  }
  Options options_;
  AllReduceSync<Channel, RingReduce, Average> average_;
  std::vector<T> global_, delta_;
};

struct ShadowEASGDOptions {
  double alpha = 0.1;  // the elastic pull, 0 < alpha and n * alpha < 2
  std::size_t bucket_bytes = default_bucket_bytes;
};

// Round r: with the centre c (the same on every rank) and the snapshots x_i,
//   target_i = x_i - alpha (x_i - c),   c <- c + alpha * sum_i (x_i - c).
// So the centre's distance to the average of the snapshots shrinks by the
// factor (1 - n alpha) each round and a worker's to the centre by (1 - alpha):
// the centre diverges unless |1 - n alpha| < 1, which the constructor
// checks. The first round sets c to the average.
template <class Channel, class T>
class ShadowEASGD {
 public:
  using Options = ShadowEASGDOptions;
  ShadowEASGD(Channel& channel, std::size_t parameters, Options options = {})
      : options_(checked(options, channel.rank(), channel.size())),
        n_(channel.size()),
        sum_(channel, {.bucket_bytes = options.bucket_bytes}),
        sums_(parameters) {}

  void round(std::span<T> work, std::uint64_t /*index*/) {
    std::copy(work.begin(), work.end(), sums_.begin());
    sum_.step(std::span<T>(sums_));
    const T alpha = static_cast<T>(options_.alpha);
    const T n = static_cast<T>(n_);
    if (centre_.empty()) {
      centre_.resize(work.size());
      for (std::size_t i = 0; i < work.size(); ++i) centre_[i] = sums_[i] / n;
    }
    for (std::size_t i = 0; i < work.size(); ++i) {
      const T c = centre_[i];
      work[i] -= alpha * (work[i] - c);
      centre_[i] = c + alpha * (sums_[i] - n * c);
    }
  }
  std::span<const T> centre() const noexcept { return centre_; }
  const SyncStats& stats() const noexcept { return sum_.stats(); }

 private:
  static Options checked(Options o, int rank, int n) {
    if (!(o.alpha > 0) || !(o.alpha * n < 2) || !(o.alpha < 2))
      throw configuration_error(
          "ShadowEASGD's alpha must be in (0, 2/n) = (0, " + std::to_string(2.0 / n) +
              ") for a world of " + std::to_string(n) +
              ": the centre moves by 1 - n * alpha of its distance to the average each round "
              "and diverges otherwise; got " +
              std::to_string(o.alpha),
          error_context{}.with_rank(rank));
    return o;
  }
  Options options_;
  int n_;
  AllReduceSync<Channel, RingReduce, Sum> sum_;
  std::vector<T> sums_, centre_;
};

// One DS-Sync step a round: the snapshot is averaged in its group, and the
// groups are redrawn from (seed, round) as in DSSync.
template <class Channel, class T>
class ShadowDS {
 public:
  using Options = DSSyncOptions;
  ShadowDS(Channel& channel, std::size_t /*parameters*/, Options options = {})
      : sync_(channel, options) {}
  void round(std::span<T> work, std::uint64_t /*index*/) { sync_.step(work); }
  const SyncStats& stats() const noexcept { return sync_.stats(); }

 private:
  DSSync<Channel> sync_;
};

}  // namespace dssync
