#pragma once
// CLI11 validators for the example programs' numeric options. CLI11 2.1.2's
// Range, PositiveNumber and NonNegativeNumber let NaN through (it fails every
// comparison) and print their bounds with 300 digits, and an unsigned option
// takes "-5" as 2^64 - 5. These reject such values and say what is expected.

#include <CLI/CLI.hpp>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <sstream>
#include <string>

namespace dssync_cli {

// Which ends belong to a FiniteRange.
enum class Ends { closed, open_below, open_above, open };

namespace detail {

inline std::string shown(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

// Checks a value as CLI11 converts it to double: `ok` must hold, else the
// message is "must be <expected>, got <value>".
inline CLI::Validator finite_check(std::function<bool(double)> ok, const std::string& expected,
                                   const std::string& desc) {
  return CLI::Validator(
      [ok, expected](std::string& input) {
        double v = 0;
        if (!CLI::detail::lexical_cast(input, v)) return "must be a number, got '" + input + "'";
        if (!std::isfinite(v) || !ok(v)) return "must be " + expected + ", got " + input;
        return std::string();
      },
      desc);
}

}  // namespace detail

inline const CLI::Validator Finite =
    detail::finite_check([](double) { return true; }, "a finite number", "FINITE");
inline const CLI::Validator FinitePositive =
    detail::finite_check([](double v) { return v > 0; }, "a finite number above 0", "POSITIVE");
inline const CLI::Validator FiniteNonNegative = detail::finite_check(
    [](double v) { return v >= 0; }, "a finite number, at least 0", "NONNEGATIVE");

// A finite number in [lo, hi], or with `ends` open (lo, hi], [lo, hi), (lo, hi).
inline CLI::Validator FiniteRange(double lo, double hi, Ends ends = Ends::closed) {
  const bool open_lo = ends == Ends::open_below || ends == Ends::open;
  const bool open_hi = ends == Ends::open_above || ends == Ends::open;
  const std::string range =
      (open_lo ? "(" : "[") + detail::shown(lo) + ", " + detail::shown(hi) + (open_hi ? ")" : "]");
  return detail::finite_check(
      [=](double v) { return (open_lo ? v > lo : v >= lo) && (open_hi ? v < hi : v <= hi); },
      "a number in " + range, "in " + range);
}

// For unsigned integer options: CLI11 converts with strtoull, which wraps "-5"
// around to 2^64 - 5 and saturates a value past 2^64 - 1 without a word.
inline const CLI::Validator NotNegative(
    [](std::string& input) {
      std::size_t at = 0;
      while (at < input.size() && std::isspace(static_cast<unsigned char>(input[at]))) ++at;
      if (at < input.size() && input[at] == '-') return "must not be negative, got " + input;
      errno = 0;
      std::strtoull(input.c_str(), nullptr, 0);
      if (errno == ERANGE) return "must be at most 2^64 - 1, got " + input;
      return std::string();  // anything else: CLI11's conversion judges it
    },
    "NONNEGATIVE");

}  // namespace dssync_cli
