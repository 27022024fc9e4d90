#pragma once
// Consensus distance: how far the ranks' parameters are from agreeing,
// sum_i ||x_i - mean||^2 over the ranks' buffers.

#include <cstddef>
#include <span>
#include <vector>

#include "dssync/core/error.hpp"

namespace dssync::analysis {

template <class T>
double consensus_distance(std::span<const std::vector<T>> buffers) {
  if (buffers.empty()) return 0.0;
  const std::size_t len = buffers[0].size();
  for (const auto& b : buffers)
    if (b.size() != len)
      throw size_mismatch_error("consensus_distance needs buffers of one length");
  double total = 0;
  for (std::size_t k = 0; k < len; ++k) {
    double mean = 0;
    for (const auto& b : buffers) mean += static_cast<double>(b[k]);
    mean /= static_cast<double>(buffers.size());
    for (const auto& b : buffers) {
      const double d = static_cast<double>(b[k]) - mean;
      total += d * d;
    }
  }
  return total;
}

template <class T>
double consensus_distance(const std::vector<std::vector<T>>& buffers) {
  return consensus_distance(std::span<const std::vector<T>>(buffers));
}

}  // namespace dssync::analysis
