#pragma once
// SkewScout: keeps the accuracy lost to skewed data under a target while
// communicating as little as it can, after Hsieh et al. (ICML'20, "The
// Non-IID Data Quagmire"). It wraps any synchronizer with a communication
// knob (knob() and set_knob(); larger means less communication: GaiaSync's
// threshold, LocalSGD's period) and turns the knob by what it measures:
//
//   dssync::GaiaSync<Tr> gaia(t, initial, dcs, {.threshold = 0.2});
//   dssync::SkewScout scout(t, gaia, dcs, {.target = 0.05, .period = 500},
//                           [&](std::span<const float> model) { return accuracy(model, probe); });
//   for each step: local step; scout.step(params);
//
// Every `period` steps, after the inner step, the data centers' leaders (the
// first rank of each) pass their models one step around the ring of data
// centers (d to d + 1), with the accuracy each scored on its own probe set.
// Leader d + 1 scores the visitor on its probe; the visitor's loss is
//   AL_d = max(0, (A_{d,d} - A_{d,d+1}) / A_{d,d})
// (the share of its home accuracy it loses on data it has not seen: model
// travelling, the paper's estimate of what skew costs). With
// SkewScoutBaseline::host_model the visitor is compared with the host's own
// model on the same probe instead,
//   AL_d = max(0, (A_{d+1,d+1} - A_{d,d+1}) / A_{d+1,d+1}),
// the share the host would lose with the visitor's model: how far the data
// centers' models have drifted apart, which communication can close. Where
// each data center holds other classes, the paper's AL also counts how much
// harder one data center's classes are than another's, which no knob
// changes (identical models score AL > 0), so under strong skew it stays
// above any small target and the knob only tightens. A max all-reduce
// over the world gives every rank AL = max_d AL_d, and every rank applies the
// same rule to the knob:
//   AL > target            : knob <- max(knob_min, knob * tighten)
//   AL < target * relax    : knob <- min(knob_max, knob * loosen)
//   otherwise              : unchanged
// The knob here is the controller's own value, kept continuous: the inner
// synchronizer may round what it is given (LocalSGD's period is a whole
// number of steps), and a rounded value fed back would never leave 1 under
// a factor of 1.4. It stays within the inner's bounds where the inner has
// them (knob_bounds(): LocalSGD's period is at least 1), and a finite knob
// stays finite. A knob the caller turned on the inner since the last
// estimate is taken as it is. A knob of 0 stays 0 unless knob_min > 0.
// (The multiplicative rule with a band between relax * target and target is
// this library's choice; the paper states the contract, "keep the estimated
// loss under the target with the least communication", not the rule.)
//
// When the estimate is taken (SkewScoutOptions::moment): by default after
// the inner step that ends the period. Around a synchronizer that does not
// synchronize every step (LocalSGD) that step may be the one that averaged
// the models, and then every visitor is its host's model and AL is 0
// whatever the skew: the estimate measures where in the inner period it
// fell. SkewScoutMoment::before_sync waits, once a period has ended, for the
// inner's next synchronizing step (synchronizes_next(); a synchronizer
// without it synchronizes every step) and estimates on the models that step
// is about to average, the drift of one whole inner period; the knob turns
// after that step, so the new period counts from that synchronization.
//
// The probe function is the caller's: it scores a model (the flat
// parameters) on a small fixed sample of this data center's training data
// and must be deterministic. Only leaders call it. With one data center
// nothing travels and AL is 0.

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "dssync/collective/recursive_doubling.hpp"
#include "dssync/core/concepts.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/group.hpp"
#include "dssync/core/partition_cache.hpp"
#include "dssync/policy/grouping.hpp"
#include "dssync/sync/common.hpp"

namespace dssync {

// A synchronizer whose communication can be turned: knob() larger means
// less communication.
template <class S>
concept communication_knob = requires(S& s, const S& cs, double k) {
  { cs.knob() } -> std::convertible_to<double>;
  s.set_knob(k);
};

// A knob with a range of valid values, {lowest, highest} (LocalSGD's period
// is at least 1): the controller keeps it inside.
template <class S>
concept bounded_knob = communication_knob<S> && requires(const S& s) {
  { s.knob_bounds() } -> std::convertible_to<std::pair<double, double>>;
};

// A synchronizer that can say whether its next step synchronizes (LocalSGD).
template <class S>
concept says_when_it_synchronizes = requires(const S& s) {
  { s.synchronizes_next() } -> std::convertible_to<bool>;
};

// When, in the step that ends a period, the estimate is taken.
enum class SkewScoutMoment {
  after_step,   // after the inner step that ends the period
  before_sync,  // before the inner's next synchronizing step, on the models it averages
};

// What a travelled model is compared with on its host's probe.
enum class SkewScoutBaseline {
  visitor_home,  // its own accuracy at home (the paper's model travelling)
  host_model,    // the host's model on the same probe
};

struct SkewScoutOptions {
  double target = 0.05;        // the largest estimated accuracy loss to allow
  std::uint64_t period = 500;  // steps between estimates
  double tighten = 0.5;        // knob factor when the loss is above target (in (0, 1))
  double loosen = 2.0;         // knob factor when it is below relax * target (> 1)
  double relax = 0.5;          // the band [relax * target, target] leaves the knob alone
  double knob_min = 0;
  double knob_max = std::numeric_limits<double>::infinity();
  SkewScoutBaseline baseline = SkewScoutBaseline::visitor_home;
  SkewScoutMoment moment = SkewScoutMoment::after_step;
};

struct SkewScoutStats {
  std::uint64_t estimates = 0;  // periods measured
  // The last estimate AL, the same on every rank (NaN before the first).
  double loss = std::numeric_limits<double>::quiet_NaN();
  double knob = 0;  // the inner synchronizer's knob after it
};

template <communication_knob Inner>
class SkewScout {
 public:
  using transport_type = typename Inner::transport_type;
  using Options = SkewScoutOptions;
  using Probe = std::function<double(std::span<const float>)>;

  SkewScout(transport_type& t, Inner& inner, const std::vector<std::string>& dc_of_rank,
            Options options, Probe accuracy)
      : transport_(t),
        inner_(inner),
        options_(validated(options, t.rank())),
        accuracy_(std::move(accuracy)),
        world_(t) {
    const auto here = error_context{}.with_rank(t.rank());
    if (dc_of_rank.size() != static_cast<std::size_t>(t.size()))
      throw configuration_error("SkewScout has data-center labels for " +
                                    std::to_string(dc_of_rank.size()) + " ranks in a world of " +
                                    std::to_string(t.size()),
                                here);
    if (!accuracy_) throw configuration_error("SkewScout needs a probe function", here);
    for (const auto& dc : detail::ranks_by_label(dc_of_rank)) leaders_.push_back(dc.front());
    leader_ = Group(leaders_).position_of(t.rank());
    knob_ = seen_ = stats_.knob = inner_.knob();
  }

  // The inner step and, once every `period` steps, an estimate and the
  // knob's turn (when: SkewScoutOptions::moment). Every rank calls it with
  // its own parameters.
  template <class Params>
  void step(Params&& params) {
    if (options_.moment == SkewScoutMoment::after_step) {
      inner_.step(params);
      if (++steps_ % options_.period == 0) adjust(std::span<const float>(params));
      return;
    }
    due_ = due_ || (steps_ + 1) % options_.period == 0;
    const bool now = due_ && inner_synchronizes_next();
    const double loss = now ? estimate(std::span<const float>(params), steps_) : 0;
    inner_.step(params);
    ++steps_;
    if (now) {
      turn(loss);
      due_ = false;
    }
  }

  // One estimate of the accuracy loss from `params` (this rank's model; only
  // the leaders' travel) and the knob's turn; the same AL on every rank.
  // step() calls it every period (SkewScoutMoment::after_step; before_sync
  // estimates and turns apart); call it directly to drive it yourself.
  double adjust(std::span<const float> params) {
    const double loss = estimate(params, steps_ > 0 ? steps_ - 1 : 0);
    turn(loss);
    return loss;
  }

  // The rule alone: the knob after an estimate `loss`.
  static double next_knob(double knob, double loss, const Options& o) noexcept {
    if (loss > o.target) return std::max(o.knob_min, knob * o.tighten);
    if (loss < o.target * o.relax) {
      const double up = knob * o.loosen;
      const bool overflow = std::isinf(up) && std::isfinite(knob);
      return std::min(o.knob_max, overflow ? std::numeric_limits<double>::max() : up);
    }
    return knob;
  }

  const SkewScoutStats& stats() const noexcept { return stats_; }
  Inner& inner() noexcept { return inner_; }

 private:
  static Options validated(Options o, int rank) {
    const auto here = error_context{}.with_rank(rank);
    auto fail = [&](const std::string& what) {
      throw configuration_error("SkewScoutOptions::" + what, here);
    };
    if (!(o.target > 0) || !std::isfinite(o.target))
      fail("target must be positive and finite, got " + std::to_string(o.target));
    if (o.period < 1) fail("period must be at least 1");
    if (!(o.tighten > 0 && o.tighten < 1))
      fail("tighten must lie in (0, 1), got " + std::to_string(o.tighten));
    if (!(o.loosen > 1) || !std::isfinite(o.loosen))
      fail("loosen must be above 1 and finite, got " + std::to_string(o.loosen));
    if (!(o.relax > 0 && o.relax <= 1))
      fail("relax must lie in (0, 1], got " + std::to_string(o.relax));
    if (o.baseline != SkewScoutBaseline::visitor_home &&
        o.baseline != SkewScoutBaseline::host_model)
      fail("baseline must be visitor_home or host_model, got " +
           std::to_string(static_cast<int>(o.baseline)));
    if (o.moment != SkewScoutMoment::after_step && o.moment != SkewScoutMoment::before_sync)
      fail("moment must be after_step or before_sync, got " +
           std::to_string(static_cast<int>(o.moment)));
    if (!(o.knob_min >= 0) || !(o.knob_max >= o.knob_min))
      fail("knob_min must be at least 0 and at most knob_max, got " + std::to_string(o.knob_min) +
           " and " + std::to_string(o.knob_max));
    return o;
  }

  void turn(double loss) {
    if (inner_.knob() != seen_) knob_ = inner_.knob();  // turned by the caller since
    double next = next_knob(knob_, loss, options_);
    if constexpr (bounded_knob<Inner>) {
      const auto [lowest, highest] = inner_.knob_bounds();
      next = std::clamp(next, lowest, highest);
    }
    if (next != knob_) {
      knob_ = next;
      inner_.set_knob(next);
    }
    seen_ = inner_.knob();
    ++stats_.estimates;
    stats_.loss = loss;
    stats_.knob = seen_;
  }

  bool inner_synchronizes_next() const {
    if constexpr (says_when_it_synchronizes<Inner>)
      return inner_.synchronizes_next();
    else
      return true;
  }

  // Model travelling among the leaders, then the max over the world; errors
  // name `step`, the index (from 0) of the step the estimate belongs to: the
  // one it follows (after_step) or precedes (before_sync).
  double estimate(std::span<const float> params, std::uint64_t step) {
    double result = 0;
    detail::with_context(transport_.rank(), step, std::span<const int>(leaders_),
                         [&] { result = travel_and_agree(params, step); });
    return result;
  }
  double travel_and_agree(std::span<const float> params, std::uint64_t step) {
    const int me = transport_.rank();
    // Channel 126: 127 is left to the program (docs/design.md, "Tags").
    const tag_t tag = make_tag(stats_.estimates, 126);
    double loss = 0;
    const int d = static_cast<int>(leaders_.size());
    if (leader_ >= 0 && d > 1) {
      const auto where = error_context{}.with_rank(me).with_iteration(step);
      visitor_.resize(params.size());
      const int next = leaders_[static_cast<std::size_t>((leader_ + 1) % d)];
      const int prev = leaders_[static_cast<std::size_t>((leader_ + d - 1) % d)];
      double home[1] = {score(params, where)};
      double theirs[1] = {0};
      transport_.sendrecv(next, params, prev, std::span<float>(visitor_), tag);
      transport_.sendrecv(next, std::span<const std::byte>(std::as_bytes(std::span<double>(home))),
                          prev, std::as_writable_bytes(std::span<double>(theirs)), tag);
      const double away = score(visitor_, where);
      // The visitor's loss on data it has not seen, as a share of its home
      // accuracy or of what the host's model scores here.
      const double base =
          options_.baseline == SkewScoutBaseline::visitor_home ? theirs[0] : home[0];
      if (base > 0) loss = std::max(0.0, (base - away) / base);
    }
    double all[1] = {loss};
    reduce_.all_reduce(transport_, world_.get().group(0), std::span<double>(all), Max{}, tag);
    return all[0];
  }

  double score(std::span<const float> model, const error_context& where) {
    const double a = accuracy_(model);
    if (!(a >= 0 && a <= 1))
      throw configuration_error("SkewScout's probe function returned " + std::to_string(a) +
                                    ", not an accuracy in [0, 1]",
                                where);
    return a;
  }

  transport_type& transport_;
  Inner& inner_;
  Options options_;
  Probe accuracy_;
  detail::WorldPartition world_;
  std::vector<int> leaders_;  // the first rank of each data center, in label order
  int leader_ = -1;           // this rank's place among them, or -1
  std::vector<float> visitor_;
  RecursiveDoublingReduce reduce_;
  std::uint64_t steps_ = 0;
  bool due_ = false;  // before_sync: a period has ended, the estimate waits for a synchronization
  double knob_ = 0;   // the controller's knob, continuous (the inner may round it)
  double seen_ = 0;   // the inner's knob after the last turn
  SkewScoutStats stats_;
};

}  // namespace dssync
