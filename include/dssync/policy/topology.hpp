#pragma once
// Gossip graphs for GossipSync (D-PSGD-style neighbour averaging). A topology
// lists, for iteration t, a number of exchanges; in exchange k every rank sends
// its buffer to dst(k, rank) and receives from src(k, rank), where dst and src
// are inverse permutations, so all ranks exchange at once without deadlock.
// Each received buffer and the rank's own get equal weight 1/(exchanges + 1).

#include <bit>
#include <concepts>
#include <cmath>
#include <cstdint>
#include <string>

#include "dssync/core/error.hpp"

namespace dssync {

struct Exchange {
  int dst;
  int src;
};

// A gossip graph: exchanges(n, t) exchanges at iteration t, and exchange(n, t,
// k, rank) says whom rank sends to and receives from in the k-th.
template <class T>
concept topology_policy = requires(const T& topo, int n, std::uint64_t t, int k, int rank) {
  { topo.exchanges(n, t) } -> std::convertible_to<int>;
  { topo.exchange(n, t, k, rank) } -> std::convertible_to<Exchange>;
};

namespace detail {
constexpr int wrap(long long r, int n) noexcept {
  return static_cast<int>(((r % n) + n) % n);
}
// Exchange with the ranks s ahead and s behind on a cycle of n.
constexpr Exchange shift(int rank, int s, int n) noexcept {
  return {wrap(static_cast<long long>(rank) + s, n), wrap(static_cast<long long>(rank) - s, n)};
}
}  // namespace detail

// Ring: neighbours r-1 and r+1 (one neighbour when n = 2, none when n = 1).
// Second largest eigenvalue of the mixing matrix: (1 + 2 cos(2 pi / n)) / 3.
struct RingTopology {
  int exchanges(int n, std::uint64_t /*t*/) const noexcept { return n >= 3 ? 2 : n - 1; }
  Exchange exchange(int n, std::uint64_t /*t*/, int k, int rank) const noexcept {
    return detail::shift(rank, k == 0 ? 1 : -1, n);
  }
};

// 2-D torus of rows x cols = n: neighbours left, right, up, down (a dimension
// of 2 gives one neighbour along it, of 1 none). By default the most nearly
// square factorization of n.
struct TorusTopology {
  int rows = 0;  // 0: choose from n
  int cols = 0;

  int exchanges(int n, std::uint64_t /*t*/) const {
    const auto [r, c] = shape(n);
    return along(c) + along(r);
  }
  Exchange exchange(int n, std::uint64_t /*t*/, int k, int rank) const {
    const auto [r, c] = shape(n);
    const int row = rank / c, col = rank % c;
    if (k < along(c)) {
      const int s = k == 0 ? 1 : -1;
      return {row * c + detail::wrap(col + s, c), row * c + detail::wrap(col - s, c)};
    }
    const int s = k == along(c) ? 1 : -1;
    return {detail::wrap(row + s, r) * c + col, detail::wrap(row - s, r) * c + col};
  }

  struct Shape {
    int rows, cols;
  };
  Shape shape(int n) const {
    if (rows != 0 || cols != 0) {  // given: both at least 1, their product n (without overflow)
      if (rows < 1 || cols < 1 || static_cast<long long>(rows) * cols != n)
        throw configuration_error("a " + std::to_string(rows) + " x " + std::to_string(cols) +
                                  " torus does not fit a world of " + std::to_string(n));
      return {rows, cols};
    }
    int r = static_cast<int>(std::sqrt(static_cast<double>(n)));
    while (r > 1 && n % r != 0) --r;
    return {r, n / r};
  }

 private:
  static int along(int d) noexcept { return d >= 3 ? 2 : d - 1; }
};

// Static exponential graph (as in SGP): rank r sends to r + 2^k and receives
// from r - 2^k for every 2^k < n. A directed graph with log2(n) neighbours;
// doubly stochastic, not symmetric.
struct ExponentialTopology {
  int exchanges(int n, std::uint64_t /*t*/) const noexcept {
    return n <= 1 ? 0 : std::bit_width(static_cast<unsigned>(n - 1));
  }
  Exchange exchange(int n, std::uint64_t /*t*/, int k, int rank) const noexcept {
    return detail::shift(rank, 1 << k, n);
  }
};

// One-peer exponential schedule (as in BlueFog's dynamic topology): at
// iteration t a single exchange with shift 2^(t mod log2 n), weights 1/2. For
// n a power of two, log2(n) consecutive steps give the exact global average.
struct OnePeerExponentialTopology {
  int exchanges(int n, std::uint64_t /*t*/) const noexcept { return n <= 1 ? 0 : 1; }
  Exchange exchange(int n, std::uint64_t t, int /*k*/, int rank) const noexcept {
    const auto period = static_cast<std::uint64_t>(std::bit_width(static_cast<unsigned>(n - 1)));
    return detail::shift(rank, 1 << (t % period), n);
  }
};

}  // namespace dssync
