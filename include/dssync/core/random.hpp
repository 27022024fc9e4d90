#pragma once
// The library's own random numbers. Every rank must compute the same partition
// from the same (seed, iteration) on any compiler and standard library, so
// nothing here uses std::*_distribution or std::shuffle, whose outputs the
// standard leaves to the implementation.

#include <cstdint>
#include <numeric>
#include <span>

namespace dssync {

namespace detail {
// The SplitMix64 finalizer: a bijection on 64 bits with full avalanche.
constexpr std::uint64_t mix64(std::uint64_t z) noexcept {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
inline constexpr std::uint64_t golden_gamma = 0x9e3779b97f4a7c15ULL;
__extension__ typedef unsigned __int128 uint128;  // GCC and Clang; __extension__ keeps -Wpedantic quiet
}  // namespace detail

// Counter-based generator: output k of stream s under seed is a fixed function
// of (seed, s, k). Any rank can jump straight to iteration t's stream without
// replaying earlier ones, and no state crosses iterations.
class CounterRng {
 public:
  constexpr CounterRng(std::uint64_t seed, std::uint64_t stream) noexcept
      : key_(detail::mix64(detail::mix64(seed) ^ (stream * detail::golden_gamma + 1))) {}

  constexpr std::uint64_t next() noexcept {
    ++counter_;
    return detail::mix64(key_ + counter_ * detail::golden_gamma);
  }

  // Uniform in [0, bound), bound > 0: Lemire's multiply-shift with rejection,
  // exactly uniform and defined here bit for bit.
  constexpr std::uint64_t below(std::uint64_t bound) noexcept {
    detail::uint128 m = static_cast<detail::uint128>(next()) * bound;
    auto low = static_cast<std::uint64_t>(m);
    if (low < bound) {
      const std::uint64_t threshold = (0 - bound) % bound;
      while (low < threshold) {
        m = static_cast<detail::uint128>(next()) * bound;
        low = static_cast<std::uint64_t>(m);
      }
    }
    return static_cast<std::uint64_t>(m >> 64);
  }

 private:
  std::uint64_t key_;
  std::uint64_t counter_ = 0;
};

// Fisher-Yates from the back, drawing with CounterRng::below: a uniformly
// random permutation of the elements, identical everywhere for the same rng.
template <class T>
constexpr void random_permute(std::span<T> items, CounterRng& rng) noexcept {
  for (std::size_t i = items.size(); i > 1; --i) {
    const auto j = static_cast<std::size_t>(rng.below(i));
    T tmp = items[i - 1];
    items[i - 1] = items[j];
    items[j] = tmp;
  }
}

}  // namespace dssync
