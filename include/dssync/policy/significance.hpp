#pragma once
// Significance filters for GaiaSync: which accumulated updates are worth
// sending across the wide-area network now. A filter answers, for one
// parameter, whether the update `a` accumulated since it was last sent is
// significant beside the parameter's current value `x`, under the threshold
// `threshold` of this clock. An update that is not significant is kept and
// accumulates with the next ones: a filter delays updates, it never drops them.

#include <cmath>
#include <concepts>

namespace dssync {

template <class F>
concept significance_filter = requires(const F& f, double a, double x, double threshold) {
  { f.significant(a, x, threshold) } -> std::same_as<bool>;
};

// Gaia's rule: send when the update is large relative to the value,
// |a / x| > threshold, strictly (equality stays). A zero value with a nonzero
// update is sent (any change of a zero is infinitely large relative to it); a
// zero update never is, nor a NaN one (not even beside a zero: it stays home).
// A threshold of 0 sends every nonzero update (beside an infinite value too);
// +infinity sends none, not even the changes of zeros: it is the switch that
// keeps a data center to itself. Computed as |a| > threshold |x| in double,
// which needs no division by x.
struct RelativeSignificance {
  bool significant(double a, double x, double threshold) const noexcept {
    if (!(std::abs(a) > 0) || std::isinf(threshold)) return false;  // a zero or NaN update
    if (x == 0 || threshold == 0) return true;
    return std::abs(a) > threshold * std::abs(x);
  }
};

// Send when the update itself is large: |a| > threshold, strictly.
struct AbsoluteSignificance {
  bool significant(double a, double /*x*/, double threshold) const noexcept {
    return a != 0 && std::abs(a) > threshold;
  }
};

}  // namespace dssync
