#pragma once
// GADMM (group ADMM, Elgabli et al., JMLR 2020) and its dynamic-chain variant
// D-GADMM: decentralized consensus optimization, min_θ Σ_n f_n(θ), over a
// chain of workers. Even chain positions are heads, odd ones tails. Each
// iteration the heads solve their local problem against their neighbours'
// latest models, then the tails against the heads' new ones, then every worker
// moves its dual. A worker talks to at most two neighbours and never to a
// server. The library keeps the chain, the exchanges and the duals; the user's
// admm_problem solves the local problem.
//
// Node form, with the chain positions' neighbours nbr(n) (one or two):
//   heads:  θ_n ← argmin f_n(θ) + <μ_n, θ> + ρ/2 Σ_{m∈nbr(n)} ||θ - θ_m||²,
//           the tails' θ as of the previous iteration;
//   tails:  the same, with the heads' new θ;
//   all:    μ_n ← μ_n + ρ Σ_{m∈nbr(n)} (θ_n - θ_m), all θ new.
// On a fixed chain μ_n = λ_n - λ_{n-1}, the edge duals of the paper's
// constraints θ_n = θ_{n+1}; Σ_n μ_n = 0 at every iteration, since each edge
// adds ρ(θ_n - θ_m) at one end and its exact negative at the other.
//
// Messages. Heads need the tails' θ before they solve, tails need the heads'
// new θ, and the duals need both new θ's, so each worker sends its new θ to
// each neighbour exactly once an iteration: 2(N - 1) messages of 8·dim bytes
// in all, at most 2 a worker. Every exchange runs in two rounds of disjoint
// pairs of neighbours (positions (2i, 2i+1), then (2i-1, 2i)), so a blocking
// send waits on one peer and never on a chain of them.
//
// A new chain (the first iteration, and D-GADMM's redraws): a head's new
// neighbours sent their current θ to their old neighbours, not to it. Before
// the heads solve, every tail sends its current θ to its (new) head
// neighbours: N - 1 more messages at such an iteration, at most 4 a tail.
//
// The duals under a changing chain: each worker keeps its own node dual μ_n.
// Any μ with Σ μ_n = 0 is the node form of exactly one set of edge duals on
// any chain (λ at position p is the sum of μ over positions 0..p), so keeping
// μ is re-deriving the edge duals of the new chain, with no message; and the
// optimum's node duals, μ_n = -∇f_n(θ*), do not depend on the chain, so the
// progress made on one chain carries to the next. Resetting the duals at a
// redraw would throw that away: θ* with μ = 0 is no fixed point, and a chain
// redrawn every few iterations would never settle.

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "dssync/core/concepts.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/random.hpp"
#include "dssync/policy/chain.hpp"
#include "dssync/sync/common.hpp"

namespace dssync {

// A worker's local problem. solve(mu, neighbours_sum, neighbours, rho, theta)
// sets theta to argmin_θ f(θ) + <mu, θ> + rho/2 Σ_m ||θ - θ_m||², over the
// `neighbours` (0, 1 or 2) neighbours' models θ_m whose sum is neighbours_sum
// (Σ_m ||θ - θ_m||² = neighbours ||θ||² - 2 <neighbours_sum, θ> + const). theta
// comes in holding the worker's previous model, to warm-start an iterative
// solver. dim() is the length of θ.
template <class P>
concept admm_problem = requires(P& p, std::span<const double> mu,
                                std::span<const double> neighbours_sum, int neighbours, double rho,
                                std::span<double> theta) {
  { p.dim() } -> std::convertible_to<std::size_t>;
  p.solve(mu, neighbours_sum, neighbours, rho, theta);
};

struct GADMMOptions {
  double rho = 1.0;        // the penalty ρ, positive and finite, the same on every rank
  std::uint64_t seed = 0;  // the chain's draws (RandomChain)
  // Before each iteration every rank compares the synchronizer, ρ, seed,
  // iteration, chain and the problem's dim() (one all-reduce over the world),
  // and the models are checked to be finite before and after each local solve.
  bool checked = false;
};

template <transport Transport, chain_policy Chain = StaticChain>
class GADMM {
 public:
  using transport_type = Transport;
  using Options = GADMMOptions;

  GADMM(Transport& t, std::size_t dim, Options options = {}, Chain chain = {})
      : transport_(t),
        dim_(dim),
        options_(options),
        chain_(std::move(chain)),
        n_(t.size()),
        me_(t.rank()),
        mu_(dim, 0.0),
        left_(dim, 0.0),
        right_(dim, 0.0),
        sum_(dim, 0.0),
        order_(static_cast<std::size_t>(n_)),
        previous_(static_cast<std::size_t>(n_)),
        seen_(static_cast<std::size_t>(n_)),
        ordinal_(options.checked ? detail::next_checked_ordinal(t) : 0) {
    if (!(options_.rho > 0) || !std::isfinite(options_.rho)) {
      char text[64];
      std::snprintf(text, sizeof text, "%g", options_.rho);
      throw configuration_error(std::string("GADMM's rho must be positive and finite, got ") + text,
                                error_context{}.with_rank(me_));
    }
    draw_chain();  // a chain policy that does not fit fails here
  }

  // One iteration: the heads' solve and exchange, the tails' solve and
  // exchange, the dual update. `theta` is this rank's model, left by the
  // previous iterate() (or the starting point at the first); every rank calls
  // iterate() together.
  template <admm_problem P>
  void iterate(P& local, std::span<double> theta) {
    detail::StepScope scope(stats_, transport_.count());
    detail::with_context(me_, iteration_, order_, [&] {
      const std::size_t problem_dim = local.dim();
      if (options_.checked) {
        detail::CheckedState state{schedule(), detail::mix64(detail::type_hash<double>() ^ dim_),
                                   problem_dim};
        check_.verify(transport_, iteration_, state);
      }
      if (problem_dim != dim_)
        throw size_mismatch_error("the local problem's dim() is " + std::to_string(problem_dim) +
                                      ", GADMM was made for " + std::to_string(dim_),
                                  here());
      if (theta.size() != dim_)
        throw size_mismatch_error("theta holds " + std::to_string(theta.size()) +
                                      " elements, GADMM was made for " + std::to_string(dim_),
                                  here());
      if (options_.checked) require_finite(theta, "the model passed to iterate()");
      run(local, theta);
    });
    ++iteration_;
    std::swap(order_, previous_);
    draw_chain();
  }

  // This rank's dual μ_n (node form); Σ over the ranks is 0.
  std::span<const double> dual() const noexcept { return mu_; }
  // The chain of the iteration the next iterate() runs (position -> rank), and
  // this rank's position in it (even: a head).
  std::span<const int> chain() const noexcept { return order_; }
  int position() const noexcept { return position_; }
  std::size_t dim() const noexcept { return dim_; }
  std::uint64_t iteration() const noexcept { return iteration_; }
  const SyncStats& stats() const noexcept { return stats_; }

 private:
  template <class P>
  void run(P& local, std::span<double> theta) {
    const int p = position_;
    const bool head = p % 2 == 0;
    const bool has_left = p > 0, has_right = p + 1 < n_;
    const int left = has_left ? order_[static_cast<std::size_t>(p - 1)] : -1;
    const int right = has_right ? order_[static_cast<std::size_t>(p + 1)] : -1;
    const std::span<const double> mine(theta);
    const std::span<double> from_left(left_), from_right(right_);
    // Tails to heads: round one the pairs (2i, 2i+1), round two (2i+1, 2i+2).
    auto tails_to_heads = [&](tag_t tag) {
      if (head) {
        if (has_right) transport_.recv(right, from_right, tag);
        if (has_left) transport_.recv(left, from_left, tag);
      } else {
        transport_.send(left, mine, tag);  // a tail always has a head on its left
        if (has_right) transport_.send(right, mine, tag);
      }
    };
    // Heads to tails: round one the pairs (2i, 2i+1), round two (2i-1, 2i).
    auto heads_to_tails = [&](tag_t tag) {
      if (head) {
        if (has_right) transport_.send(right, mine, tag);
        if (has_left) transport_.send(left, mine, tag);
      } else {
        transport_.recv(left, from_left, tag);
        if (has_right) transport_.recv(right, from_right, tag);
      }
    };
    // A new chain: the heads' new neighbours have not sent them their θ yet.
    if (new_chain_) tails_to_heads(make_tag(iteration_, 0));
    if (head) solve(local, theta, has_left, has_right);
    heads_to_tails(make_tag(iteration_, 1));
    if (!head) solve(local, theta, has_left, has_right);
    tails_to_heads(make_tag(iteration_, 2));
    // μ += ρ Σ_m (θ - θ_m), one neighbour at a time, the left one first.
    const double rho = options_.rho;
    for (std::size_t i = 0; i < dim_; ++i) {
      if (has_left) mu_[i] += rho * (theta[i] - left_[i]);
      if (has_right) mu_[i] += rho * (theta[i] - right_[i]);
    }
  }

  template <class P>
  void solve(P& local, std::span<double> theta, bool has_left, bool has_right) {
    std::span<const double> sum(sum_);  // zeros when there is no neighbour (one rank)
    if (has_left && has_right) {
      for (std::size_t i = 0; i < dim_; ++i) sum_[i] = left_[i] + right_[i];
    } else if (has_left) {
      sum = left_;  // the neighbour's θ itself: 0 + θ would turn -0 into +0
    } else if (has_right) {
      sum = right_;
    }
    local.solve(std::span<const double>(mu_), sum, int(has_left) + int(has_right), options_.rho,
                theta);
    if (options_.checked) require_finite(theta, "the local solver's model");
  }

  // The chain of iteration_, checked to be a permutation; whether it differs
  // from the previous iteration's; and this rank's position.
  void draw_chain() {
    detail::with_context(me_, iteration_, {}, [&] {
      chain_.order(n_, options_.seed, iteration_, std::span<int>(order_));
    });
    std::fill(seen_.begin(), seen_.end(), char(0));
    for (int r : order_) {
      if (r < 0 || r >= n_ || seen_[static_cast<std::size_t>(r)])
        throw configuration_error("the chain policy's order at iteration " +
                                      std::to_string(iteration_) + " is not a permutation of " +
                                      std::to_string(n_) + " ranks",
                                  here());
      seen_[static_cast<std::size_t>(r)] = 1;
    }
    new_chain_ = iteration_ == 0 || order_ != previous_;
    position_ = static_cast<int>(std::find(order_.begin(), order_.end(), me_) - order_.begin());
  }

  void require_finite(std::span<const double> theta, const char* what) const {
    for (std::size_t i = 0; i < theta.size(); ++i)
      if (!std::isfinite(theta[i])) {
        char text[48];
        std::snprintf(text, sizeof text, "%g", theta[i]);
        throw error(
            std::string(what) + " is not finite: element " + std::to_string(i) + " is " + text,
            here());
      }
  }

  // What every rank must agree on before an iteration (checked mode).
  std::uint64_t schedule() const noexcept {
    std::uint64_t rho_bits;
    std::memcpy(&rho_bits, &options_.rho, sizeof rho_bits);
    std::uint64_t h = detail::mix64(detail::type_hash<GADMM>() ^ detail::mix64(ordinal_));
    for (std::uint64_t v : {iteration_, rho_bits, options_.seed})
      h = detail::mix64(h ^ detail::mix64(v + detail::golden_gamma));
    for (int r : order_) h = detail::mix64(h ^ static_cast<std::uint64_t>(r));
    return h;
  }

  error_context here() const { return error_context{}.with_rank(me_).with_iteration(iteration_); }

  CountingTransport<Transport> transport_;
  std::size_t dim_;
  Options options_;
  Chain chain_;
  int n_, me_;
  std::vector<double> mu_, left_, right_, sum_;  // right_/left_: the neighbours' latest θ
  std::vector<int> order_, previous_;            // the chains of this and the last iteration
  std::vector<char> seen_;
  detail::ConsistencyCheck check_;
  std::uint64_t ordinal_;
  int position_ = 0;
  bool new_chain_ = true;
  std::uint64_t iteration_ = 0;
  SyncStats stats_;
};

}  // namespace dssync
