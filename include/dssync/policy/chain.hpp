#pragma once
// Chain policies for GADMM (sync/gadmm.hpp): which rank sits at which position
// of the chain at iteration t. Every rank computes the same chain from
// (seed, t) alone, as the shuffles compute groups, so a new chain costs no
// message. Policies are const and allocate nothing: order() fills the caller's
// span.

#include <concepts>
#include <cstdint>
#include <numeric>
#include <span>
#include <string>

#include "dssync/core/error.hpp"
#include "dssync/core/random.hpp"

namespace dssync {

// order(n, seed, t, out) fills out[0..n) with a permutation of the ranks
// 0..n-1: out[p] is the rank at chain position p at iteration t. Even
// positions are heads, odd ones tails.
template <class C>
concept chain_policy = std::copy_constructible<C> &&
    requires(const C& c, int n, std::uint64_t seed, std::uint64_t t, std::span<int> out) {
  c.order(n, seed, t, out);
};

// The chain in rank order, at every iteration: GADMM as the paper states it.
struct StaticChain {
  void order(int /*n*/, std::uint64_t /*seed*/, std::uint64_t /*t*/,
             std::span<int> out) const noexcept {
    std::iota(out.begin(), out.end(), 0);
  }
};

// D-GADMM: a uniformly random chain, drawn anew every `coherence` iterations
// (the chain of iteration t is the Fisher-Yates permutation of the library's
// generator on stream t / coherence), so the chain of a slow or far link does
// not stay in place. Every rank draws the same chain without a message.
struct RandomChain {
  int coherence = 1;

  void order(int /*n*/, std::uint64_t seed, std::uint64_t t, std::span<int> out) const {
    if (coherence < 1)
      throw configuration_error("RandomChain's coherence must be at least 1 iteration, got " +
                                std::to_string(coherence));
    std::iota(out.begin(), out.end(), 0);
    CounterRng rng(seed, t / static_cast<std::uint64_t>(coherence));
    random_permute(out, rng);
  }
};

}  // namespace dssync
