#pragma once
// Delay policies for StaleSync: how many clocks old the parameters are on
// which a worker computes its gradient. A delay is a pure function of (seed,
// rank, clock), so every rank can compute every other rank's delay without a
// message, and a run is the same on every transport and every platform.

#include <concepts>
#include <cstdint>

#include "dssync/core/random.hpp"

namespace dssync {

// delay(seed, rank, clock) is in [0, bound()], the same for the same
// arguments on every rank, compiler and standard library. const and free of
// mutable state, like the shuffles: any thread may ask.
template <class D>
concept delay_policy = std::copy_constructible<D> &&
    requires(const D& d, std::uint64_t seed, int rank, std::uint64_t clock) {
  { d.delay(seed, rank, clock) } -> std::convertible_to<int>;
  { d.bound() } -> std::convertible_to<int>;
};

// Every worker is always s clocks behind: the delayed gradient descent whose
// stability docs/method.md ("Staleness emulation") gives in closed form.
struct FixedDelay {
  int s = 0;
  constexpr int delay(std::uint64_t /*seed*/, int /*rank*/,
                      std::uint64_t /*clock*/) const noexcept {
    return s;
  }
  constexpr int bound() const noexcept { return s; }
};

// The delay of each (worker, clock) drawn uniformly from {0, ..., s},
// independently, as Dai et al. (ICLR 2019) draw it. Exactly uniform: the
// library's counter generator (core/random.hpp) with Lemire's multiply-shift
// and its rejection step, which is taken with probability below (s+1) / 2^64
// and keeps the draw defined bit for bit. The generator's key separates this
// use of the seed from the shuffles' (which key by seed and iteration alone),
// so one seed can serve a DSSync and a StaleSync without their draws lining up.
struct UniformDelay {
  int s = 0;
  constexpr int delay(std::uint64_t seed, int rank, std::uint64_t clock) const noexcept {
    if (s <= 0) return 0;
    constexpr std::uint64_t domain = 0x64656c6179ULL;  // "delay"
    const std::uint64_t key = detail::mix64(
        detail::mix64(seed ^ domain) + static_cast<std::uint64_t>(rank) * detail::golden_gamma);
    CounterRng rng(key, clock);
    return static_cast<int>(rng.below(static_cast<std::uint64_t>(s) + 1));
  }
  constexpr int bound() const noexcept { return s; }
};

}  // namespace dssync
