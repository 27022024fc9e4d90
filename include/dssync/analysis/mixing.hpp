#pragma once
// Mixing matrices: row i of W_t says how much of each rank's parameters rank i
// holds after step t (x_i <- sum_j W_t(i, j) x_j). For DSSync W_t is the
// block-diagonal averaging matrix of the partition; for gossip it is the
// topology's neighbour weights.

#include <cstdint>
#include <string>

#include "dssync/analysis/matrix.hpp"
#include "dssync/core/group.hpp"
#include "dssync/policy/topology.hpp"

namespace dssync::analysis {

// Averaging inside each group of a partition.
inline Matrix mixing_matrix(const Partition& p) {
  Matrix w(p.world_size());
  for (int g = 0; g < p.num_groups(); ++g) {
    const Group group = p.group(g);
    for (int i : group)
      for (int j : group) w(i, j) = 1.0 / group.size();
  }
  return w;
}

// Equal weights over the rank itself and the source of each exchange.
template <topology_policy Topology>
Matrix mixing_matrix(const Topology& topology, int n, std::uint64_t t) {
  Matrix w(n);
  const int k = topology.exchanges(n, t);
  for (int i = 0; i < n; ++i) {
    w(i, i) += 1.0 / (k + 1);
    for (int e = 0; e < k; ++e) w(i, topology.exchange(n, t, e, i).src) += 1.0 / (k + 1);
  }
  return w;
}

// The mixing matrix of iteration t of a synchronizer: from its partition(t),
// or from its topology.
template <class Sync>
Matrix mixing_matrix(const Sync& sync, std::uint64_t t) {
  if constexpr (requires { sync.partition(t); })
    return mixing_matrix(sync.partition(t));
  else
    return mixing_matrix(sync.topology(), sync.world_size(), t);
}

// W_{t0+steps-1} ... W_{t0+1} W_{t0}: the effect of `steps` steps from t0
// (none: the identity).
template <class Sync>
Matrix mixing_product(const Sync& sync, std::uint64_t t0, int steps) {
  if (steps < 0)
    throw configuration_error("mixing_product needs at least 0 steps, got " +
                              std::to_string(steps));
  if (steps == 0) return Matrix::identity(mixing_matrix(sync, t0).size());
  Matrix prod = mixing_matrix(sync, t0);
  for (int s = 1; s < steps; ++s) prod = mixing_matrix(sync, t0 + static_cast<std::uint64_t>(s)) * prod;
  return prod;
}

// The mean of W_t^T W_t over `samples` iterations from t0: the expected
// contraction of one step. For a random schedule it estimates E[W^T W]; for a
// periodic one it is exact over whole periods.
template <class Sync>
Matrix expected_wtw(const Sync& sync, std::uint64_t t0, int samples) {
  if (samples < 1)
    throw configuration_error("expected_wtw needs at least 1 sample, got " +
                              std::to_string(samples));
  Matrix sum(mixing_matrix(sync, t0).size());
  for (int s = 0; s < samples; ++s) {
    const Matrix w = mixing_matrix(sync, t0 + static_cast<std::uint64_t>(s));
    sum += w.transposed() * w;
  }
  sum *= 1.0 / samples;
  return sum;
}

}  // namespace dssync::analysis
