#pragma once
// LocalSGD: runs any synchronizer once every H steps; in between, ranks train
// alone. Inner's options pass through, e.g.
//   LocalSGD<DSSync<InProcTransport>> sync(t, {.period = 4, .inner = {.group_size = 2}});
// The period is a communication knob (knob(), set_knob(): SkewScout turns it):
// a new period counts from the last synchronization, so every rank that sets
// it before the same step keeps synchronizing on the same steps.

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/core/group.hpp"
#include "dssync/sync/common.hpp"

namespace dssync {

template <class Inner>
class LocalSGD {
 public:
  using transport_type = typename Inner::transport_type;
  struct Options {
    int period = 1;  // H: synchronize on steps H-1, 2H-1, ... (after every H local steps)
    typename Inner::Options inner = {};
  };

  // Arguments after the options go to Inner's constructor after its own
  // options (a Reduce that needs labels, say).
  template <class... InnerArgs>
  explicit LocalSGD(transport_type& t, Options options = {}, InnerArgs&&... inner_args)
      : options_(options),
        rank_(t.rank()),
        world_size_(t.size()),
        inner_(t, options.inner, std::forward<InnerArgs>(inner_args)...) {
    if (options_.period < 1)
      throw configuration_error("LocalSGD period must be at least 1, got " +
                                    std::to_string(options_.period),
                                error_context{}.with_rank(t.rank()));
  }

  template <class Params>
  void step(Params&& params) {
    if (synchronizes(iteration_)) inner_.step(std::forward<Params>(params));
    ++iteration_;
  }

  // Whether step t (from the last change of the period on) synchronizes:
  // every period steps counted from anchor_, the step after the last
  // synchronization before that change (0 when there was none).
  bool synchronizes(std::uint64_t t) const noexcept {
    return t >= from_ && (t + 1 - anchor_) % period() == 0;
  }

  // Whether the next step() synchronizes.
  bool synchronizes_next() const noexcept { return synchronizes(iteration_); }

  // At a synchronizing step, the inner synchronizer's partition for its own
  // iteration; otherwise every rank alone. Steps before the last change of
  // the period are not kept: asking for them is a configuration_error.
  Partition partition(std::uint64_t t) const
    requires requires(const Inner& s) { s.partition(t); }
  {
    if (t < from_)
      throw configuration_error("LocalSGD's period changed at step " + std::to_string(from_) +
                                    ": its schedule before the change, step " + std::to_string(t) +
                                    " included, is not kept",
                                error_context{}.with_rank(rank_).with_iteration(t));
    if (synchronizes(t)) return inner_.partition(syncs_before_ + syncs_since_change(t + 1) - 1);
    const std::vector<int> ones(static_cast<std::size_t>(world_size_), 1);
    return Partition::contiguous(ones);
  }

  // The communication knob: the period H (larger: less communication), and
  // its range (set_knob() refuses less than 1 and caps at max_period).
  static constexpr double max_period = 1e9;
  double knob() const noexcept { return options_.period; }
  std::pair<double, double> knob_bounds() const noexcept { return {1.0, max_period}; }
  // Sets H to `period` rounded to the nearest integer; synchronizations go
  // on H, 2H, ... steps after the last one (or after the start), from the
  // next step on.
  void set_knob(double period) {
    if (!(period >= 1) || !std::isfinite(period))
      throw configuration_error(
          "LocalSGD period must be at least 1 and finite, got " + std::to_string(period),
          error_context{}.with_rank(rank_).with_iteration(iteration_));
    const int h = static_cast<int>(std::lround(std::min(period, max_period)));
    if (h == options_.period) return;
    // Re-anchor at the step after the last synchronization, if one happened
    // since the last change (a step of the old schedule before that change
    // never ran under it).
    const std::uint64_t done = syncs_since_change(iteration_);
    if (done > 0) anchor_ = iteration_ - (iteration_ - anchor_) % this->period();
    syncs_before_ += done;
    from_ = iteration_;
    options_.period = h;
  }

  std::uint64_t iteration() const noexcept { return iteration_; }
  // The inner synchronizer's traffic and time, with steps counting this
  // synchronizer's step() calls (local ones included), as SyncStats says.
  SyncStats stats() const noexcept {
    SyncStats s = inner_.stats();
    s.steps = iteration_;
    return s;
  }
  const Inner& inner() const noexcept { return inner_; }

 private:
  // The synchronizations of the period in force in steps [from_, t), t >= from_.
  std::uint64_t syncs_since_change(std::uint64_t t) const noexcept {
    return (t - anchor_) / period() - (from_ - anchor_) / period();
  }

  Options options_;
  int rank_;
  int world_size_;
  Inner inner_;
  std::uint64_t iteration_ = 0;
  std::uint64_t anchor_ = 0;        // where the period in force starts counting
  std::uint64_t from_ = 0;          // the step from which it is in force
  std::uint64_t syncs_before_ = 0;  // synchronizations before from_
  std::uint64_t period() const noexcept { return static_cast<std::uint64_t>(options_.period); }
};

}  // namespace dssync
