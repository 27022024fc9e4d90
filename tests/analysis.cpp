// Mixing analysis: the eigenvalue solver on matrices with known spectra, the
// mixing matrices of partitions and gossip graphs against closed forms
// (docs/method.md: the spectral gaps, the one-peer exponential schedule), the
// expected contraction of a random shuffle, and the consensus distance.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numbers>
#include <random>
#include <span>
#include <stdexcept>
#include <vector>

#include "dssync/dssync.hpp"

#include "shape_only.hpp"

namespace {

using dssync::Partition;
using dssync::analysis::Matrix;
using dssync::analysis::mixing_matrix;
using dssync::analysis::mixing_product;
using dssync::analysis::second_largest_eigenvalue;
using dssync::analysis::symmetric_eigenvalues;


// A topology on its own, seen as analysis sees a GossipSync.
template <class Topology>
struct TopologyView {
  Topology topo;
  int n;
  const Topology& topology() const { return topo; }
  int world_size() const { return n; }
};

double uniform01(std::mt19937_64& gen) { return static_cast<double>(gen() >> 11) * 0x1.0p-53; }

bool doubly_stochastic(const Matrix& w, double tol = 1e-12) {
  for (int i = 0; i < w.size(); ++i) {
    double row = 0, col = 0;
    for (int j = 0; j < w.size(); ++j) {
      row += w(i, j);
      col += w(j, i);
      if (w(i, j) < 0) return false;
    }
    if (std::abs(row - 1) > tol || std::abs(col - 1) > tol) return false;
  }
  return true;
}
bool symmetric(const Matrix& w) { return w.max_abs_difference(w.transposed()) == 0.0; }

// ------------------------------------------------------------------- Matrix --

TEST_CASE("Matrix: identity, product, transpose, sums") {
  Matrix a(2);
  a(0, 0) = 1, a(0, 1) = 2, a(1, 0) = 3, a(1, 1) = 4;
  Matrix b(2);
  b(0, 0) = 0, b(0, 1) = 1, b(1, 0) = 1, b(1, 1) = 0;
  const Matrix ab = a * b;  // swaps the columns of a
  CHECK(ab(0, 0) == 2);
  CHECK(ab(0, 1) == 1);
  CHECK(ab(1, 0) == 4);
  CHECK(ab(1, 1) == 3);
  const Matrix ba = b * a;  // swaps the rows
  CHECK(ba(0, 0) == 3);
  CHECK(ba(1, 1) == 2);
  CHECK((a * Matrix::identity(2)).max_abs_difference(a) == 0);
  CHECK((Matrix::identity(2) * a).max_abs_difference(a) == 0);
  CHECK(a.transposed()(0, 1) == 3);
  Matrix c = a;
  c += a;
  c *= 0.5;
  CHECK(c.max_abs_difference(a) == 0);
  CHECK(a.max_abs_difference(b) == 4);
}

// -------------------------------------------------------------- eigenvalues --

TEST_CASE("symmetric_eigenvalues: matrices with known spectra, largest first") {
  Matrix d(4);
  d(0, 0) = 2, d(1, 1) = -1, d(2, 2) = 7, d(3, 3) = 0.5;
  CHECK(symmetric_eigenvalues(d) == std::vector<double>{7, 2, 0.5, -1});

  Matrix two(2);
  two(0, 0) = 2, two(0, 1) = 1, two(1, 0) = 1, two(1, 1) = 2;
  const auto ev2 = symmetric_eigenvalues(two);
  REQUIRE(ev2.size() == 2);
  CHECK(ev2[0] == doctest::Approx(3).epsilon(1e-14));
  CHECK(ev2[1] == doctest::Approx(1).epsilon(1e-14));
  CHECK(second_largest_eigenvalue(two) == doctest::Approx(1).epsilon(1e-14));

  // The path Laplacian-like tridiagonal(-1, 2, -1) of size 3: 2 - sqrt2, 2, 2 + sqrt2.
  Matrix t(3);
  for (int i = 0; i < 3; ++i) t(i, i) = 2;
  t(0, 1) = t(1, 0) = t(1, 2) = t(2, 1) = -1;
  const auto ev3 = symmetric_eigenvalues(t);
  CHECK(ev3[0] == doctest::Approx(2 + std::numbers::sqrt2).epsilon(1e-13));
  CHECK(ev3[1] == doctest::Approx(2).epsilon(1e-13));
  CHECK(ev3[2] == doctest::Approx(2 - std::numbers::sqrt2).epsilon(1e-13));

  // tridiagonal(1, 0, 1) of size n: 2 cos(pi k / (n + 1)), k = 1..n.
  constexpr int n = 20;
  Matrix path(n);
  for (int i = 0; i + 1 < n; ++i) path(i, i + 1) = path(i + 1, i) = 1;
  const auto evp = symmetric_eigenvalues(path);
  for (int k = 1; k <= n; ++k)
    CHECK(std::abs(evp[static_cast<std::size_t>(k - 1)] - 2 * std::cos(std::numbers::pi * k / (n + 1))) <
          1e-12);

  CHECK(symmetric_eigenvalues(Matrix(0)).empty());
  CHECK(second_largest_eigenvalue(Matrix(1, 5.0)) == 0.0);

  // Tiny entries are rotated too: [[0, s], [s, 0]] has eigenvalues s and -s
  // at any scale, where the squares of the entries underflow (1e-170, 1e-300)
  // or overflow (1e160, 1e300) too.
  for (double scale : {1.0, 1e-14, 1e-100, 1e-170, 1e-300, 1e160, 1e300}) {
    CAPTURE(scale);
    Matrix tiny(2);
    tiny(0, 1) = tiny(1, 0) = scale;
    const auto evt = symmetric_eigenvalues(tiny);
    CHECK(evt[0] / scale == doctest::Approx(1).epsilon(1e-14));
    CHECK(evt[1] / scale == doctest::Approx(-1).epsilon(1e-14));
  }
}

TEST_CASE("symmetric_eigenvalues: a random symmetric matrix keeps trace and Frobenius norm") {
  constexpr int n = 24;
  std::mt19937_64 gen(7);
  Matrix a(n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j <= i; ++j) a(i, j) = a(j, i) = uniform01(gen) * 2 - 1;
  const auto ev = symmetric_eigenvalues(a);
  REQUIRE(ev.size() == std::size_t(n));
  CHECK(std::is_sorted(ev.begin(), ev.end(), std::greater<>()));
  double trace = 0, frob = 0, sum = 0, sumsq = 0;
  for (int i = 0; i < n; ++i) {
    trace += a(i, i);
    for (int j = 0; j < n; ++j) frob += a(i, j) * a(i, j);
  }
  for (double e : ev) sum += e, sumsq += e * e;
  CHECK(sum == doctest::Approx(trace).epsilon(1e-12));
  CHECK(sumsq == doctest::Approx(frob).epsilon(1e-12));
  // And each is an eigenvalue: A - e I is singular, its smallest |eigenvalue| ~ 0.
  for (double e : {ev.front(), ev[n / 2], ev.back()}) {
    Matrix shifted = a;
    for (int i = 0; i < n; ++i) shifted(i, i) -= e;
    const auto s = symmetric_eigenvalues(shifted);
    double smallest = std::abs(s[0]);
    for (double x : s) smallest = std::min(smallest, std::abs(x));
    CHECK(smallest < 1e-10);
  }
}

TEST_CASE("mixing_matrix(Partition): block averaging with eigenvalue 1 per group, 0 otherwise") {
  const Partition p(7, {{0, 3}, {1, 2, 6}, {4}, {5}});
  const Matrix w = mixing_matrix(p);
  CHECK(w(0, 3) == 0.5);
  CHECK(w(3, 3) == 0.5);
  CHECK(w(1, 6) == 1.0 / 3);
  CHECK(w(4, 4) == 1.0);
  CHECK(w(0, 1) == 0.0);
  CHECK(symmetric(w));
  CHECK(doubly_stochastic(w));
  CHECK((w * w).max_abs_difference(w) < 1e-15);  // idempotent
  const auto ev = symmetric_eigenvalues(w);
  for (std::size_t i = 0; i < ev.size(); ++i) {
    CAPTURE(i);
    if (i < 4)
      CHECK(std::abs(ev[i] - 1) < 1e-12);  // as many ones as groups
    else
      CHECK(std::abs(ev[i]) < 1e-12);
  }
  CHECK(mixing_matrix(Partition::whole(5)).max_abs_difference(Matrix(5, 0.2)) < 1e-16);
  const int ones[] = {1, 1, 1};
  CHECK(mixing_matrix(Partition::contiguous(ones)).max_abs_difference(Matrix::identity(3)) == 0);
}

// -------------------------------------------------------------------- gossip --

TEST_CASE("Ring: second eigenvalue (1 + 2 cos(2 pi / n)) / 3 and the spectral gaps of docs/method.md") {
  struct Case {
    int n;
    double gap;  // docs/method.md, about 4 pi^2 / (3 n^2)
    double digits;
  };
  for (const Case c : {Case{8, 0.195, 0.001}, Case{16, 0.0508, 0.0001}, Case{32, 0.0128, 0.0001}}) {
    CAPTURE(c.n);
    const Matrix w = mixing_matrix(dssync::RingTopology{}, c.n, 0);
    CHECK(symmetric(w));
    CHECK(doubly_stochastic(w));
    CHECK(w(0, 0) == 1.0 / 3);
    CHECK(w(0, 1) == 1.0 / 3);
    CHECK(w(0, c.n - 1) == 1.0 / 3);
    CHECK(w(0, 2) == 0.0);
    const double lambda2 = second_largest_eigenvalue(w);
    CHECK(std::abs(lambda2 - (1 + 2 * std::cos(2 * std::numbers::pi / c.n)) / 3) < 1e-9);
    CHECK(std::abs((1 - lambda2) - c.gap) < c.digits);
    CHECK(symmetric_eigenvalues(w)[0] == doctest::Approx(1).epsilon(1e-12));
  }
  // Small rings: n = 2 has one neighbour (weights 1/2), n = 1 none.
  const Matrix w2 = mixing_matrix(dssync::RingTopology{}, 2, 0);
  CHECK(w2.max_abs_difference(Matrix(2, 0.5)) == 0);
  CHECK(mixing_matrix(dssync::RingTopology{}, 1, 0).max_abs_difference(Matrix::identity(1)) == 0);
}

TEST_CASE("Torus: symmetric and doubly stochastic, exponential graph: doubly stochastic") {
  for (int n : {4, 6, 8, 9, 12, 16, 20, 25, 36}) {
    CAPTURE(n);
    const Matrix torus = mixing_matrix(dssync::TorusTopology{}, n, 0);
    CHECK(symmetric(torus));
    CHECK(doubly_stochastic(torus));
    const Matrix expo = mixing_matrix(dssync::ExponentialTopology{}, n, 0);
    CHECK(doubly_stochastic(expo));
    // Mixing: the spectral gap of W^T W is positive (the graphs are connected).
    CHECK(second_largest_eigenvalue(torus.transposed() * torus) < 1 - 1e-6);
    CHECK(second_largest_eigenvalue(expo.transposed() * expo) < 1 - 1e-6);
  }
  // A 4 x 4 torus: four neighbours, weights 1/5; eigenvalues (1 + 2cos(2pi a/4)
  // + 2cos(2pi b/4)) / 5, the second largest 3/5.
  const Matrix t16 = mixing_matrix(dssync::TorusTopology{}, 16, 0);
  CHECK(t16(5, 5) == 0.2);
  CHECK(t16(5, 4) == 0.2);
  CHECK(t16(5, 6) == 0.2);
  CHECK(t16(5, 1) == 0.2);
  CHECK(t16(5, 9) == 0.2);
  CHECK(t16(5, 0) == 0.0);
  CHECK(second_largest_eigenvalue(t16) == doctest::Approx(0.6).epsilon(1e-12));
  // The exponential graph on n = 8 is directed: not symmetric.
  CHECK_FALSE(symmetric(mixing_matrix(dssync::ExponentialTopology{}, 8, 0)));
}

TEST_CASE("Exponential graph: |lambda_2| = 1 - 2/(log2 n + 1) for n a power of two (docs/method.md)") {
  // W is circulant, hence normal: its singular values are |eigenvalues|, so
  // the second eigenvalue of W^T W is |lambda_2|^2.
  for (int n : {4, 8, 16, 32}) {
    CAPTURE(n);
    const Matrix w = mixing_matrix(dssync::ExponentialTopology{}, n, 0);
    const double modulus = std::sqrt(second_largest_eigenvalue(w.transposed() * w));
    CHECK(1 - modulus == doctest::Approx(2.0 / (std::log2(n) + 1)).epsilon(1e-9));
  }
}

TEST_CASE("One-peer exponential: exact average after log2(n) steps (mixing product)") {
  for (int n : {2, 4, 8, 16, 32}) {
    CAPTURE(n);
    const int k = static_cast<int>(std::log2(n));
    const TopologyView<dssync::OnePeerExponentialTopology> view{{}, n};
    const Matrix avg(n, 1.0 / n);
    for (std::uint64_t t0 : {0u, 1u, 3u}) {
      CHECK(mixing_product(view, t0, k).max_abs_difference(avg) < 1e-12);
      if (k > 1) CHECK(mixing_product(view, t0, k - 1).max_abs_difference(avg) > 0.5 / n);
    }
    CHECK(doubly_stochastic(mixing_matrix(view, 5)));
    // No step: the identity; a negative count is refused, as is a mean of no
    // samples.
    CHECK(mixing_product(view, 0, 0).max_abs_difference(Matrix::identity(n)) == 0);
    CHECK_THROWS_AS(mixing_product(view, 0, -1), dssync::configuration_error);
    CHECK_THROWS_AS(dssync::analysis::expected_wtw(view, 0, 0), dssync::configuration_error);
  }
  // The same through a GossipSync, which is what analysis is for.
  ShapeOnly t{16, 3};
  dssync::GossipSync<ShapeOnly, dssync::OnePeerExponentialTopology> sync(t);
  CHECK(sync.world_size() == 16);
  CHECK(mixing_product(sync, 0, 4).max_abs_difference(Matrix(16, 1.0 / 16)) < 1e-12);
  // A ring never gets there: after 4 steps far from the average.
  dssync::GossipSync<ShapeOnly, dssync::RingTopology> ring(t);
  CHECK(mixing_product(ring, 0, 4).max_abs_difference(Matrix(16, 1.0 / 16)) > 0.05);
}

// ------------------------------------------------- synchronizers' partitions --

TEST_CASE("mixing_matrix(sync, t) follows the synchronizer's partition") {
  ShapeOnly t{12, 0};
  dssync::DSSync<ShapeOnly, dssync::RandomShuffle> sync(t, {.group_size = 3, .seed = 17});
  for (std::uint64_t it = 0; it < 5; ++it) {
    const Matrix w = mixing_matrix(sync, it);
    CHECK(w.max_abs_difference(mixing_matrix(sync.partition(it))) == 0);
    CHECK(symmetric(w));
    CHECK(doubly_stochastic(w));
  }
  const Matrix prod = mixing_product(sync, 2, 3);
  const Matrix manual = mixing_matrix(sync, 4) * mixing_matrix(sync, 3) * mixing_matrix(sync, 2);
  CHECK(prod.max_abs_difference(manual) < 1e-15);

  dssync::AllReduceSync<ShapeOnly> bsp(t);
  CHECK(mixing_matrix(bsp, 9).max_abs_difference(Matrix(12, 1.0 / 12)) < 1e-16);

  dssync::LocalSGD<dssync::DSSync<ShapeOnly, dssync::RandomShuffle>> local(
      t, {.period = 4, .inner = {.group_size = 3, .seed = 17}});
  CHECK(mixing_matrix(local, 0).max_abs_difference(Matrix::identity(12)) == 0);
  CHECK(mixing_matrix(local, 3).max_abs_difference(mixing_matrix(sync, 0)) == 0);
  CHECK(mixing_matrix(local, 7).max_abs_difference(mixing_matrix(sync, 1)) == 0);
}

TEST_CASE("expected_wtw: RandomShuffle n = 16, g = 4 contracts by (n-g)/(g(n-1)) = 0.2") {
  constexpr int n = 16, g = 4;
  ShapeOnly t{n, 0};
  dssync::DSSync<ShapeOnly, dssync::RandomShuffle> sync(t, {.group_size = g, .seed = 3});
  const Matrix e = dssync::analysis::expected_wtw(sync, 0, 80000);
  CHECK(symmetric(e));
  const auto ev = symmetric_eigenvalues(e);
  const double expected = double(n - g) / (g * (n - 1));
  CHECK(expected == doctest::Approx(0.2));
  CHECK(ev[0] == doctest::Approx(1).epsilon(1e-12));  // the all-ones direction
  CHECK(ev[1] == doctest::Approx(expected).epsilon(0.03));
  CHECK(ev.back() == doctest::Approx(expected).epsilon(0.03));

  // A static partition does not contract the directions across its groups:
  // second eigenvalue 1.
  dssync::DSSync<ShapeOnly, dssync::NoShuffle> fixed(t, {.group_size = g});
  CHECK(second_largest_eigenvalue(dssync::analysis::expected_wtw(fixed, 0, 10)) ==
        doctest::Approx(1).epsilon(1e-12));
  // The butterfly over a whole period: (W0 + W1)/2 with eigenvalues 1, 1/2, 0.
  dssync::DSSync<ShapeOnly, dssync::ButterflyShuffle> butterfly(t, {.group_size = g});
  const auto evb = symmetric_eigenvalues(dssync::analysis::expected_wtw(butterfly, 0, 2));
  CHECK(evb[1] == doctest::Approx(0.5).epsilon(1e-12));
  CHECK(std::abs(evb.back()) < 1e-12);
}

// ---------------------------------------------------------------- consensus --

TEST_CASE("consensus_distance: sum_i ||x_i - mean||^2") {
  using dssync::analysis::consensus_distance;
  const std::vector<std::vector<double>> two = {{1, 2}, {3, 4}};
  CHECK(consensus_distance(two) == 4.0);  // mean (2, 3): 1 + 1 + 1 + 1
  const std::vector<std::vector<double>> three = {{0}, {0}, {3}};
  CHECK(consensus_distance(three) == doctest::Approx(6.0).epsilon(1e-15));  // 1 + 1 + 4
  const std::vector<std::vector<int>> ints = {{1, -1}, {1, -1}, {1, -1}};
  CHECK(consensus_distance(ints) == 0.0);
  const std::vector<std::vector<float>> one_rank = {{5.f, 6.f}};
  CHECK(consensus_distance(one_rank) == 0.0);
  CHECK(consensus_distance(std::vector<std::vector<double>>{}) == 0.0);
  const std::vector<std::vector<double>> empty_buffers = {{}, {}};
  CHECK(consensus_distance(empty_buffers) == 0.0);
  CHECK(consensus_distance(std::span<const std::vector<double>>(two)) == 4.0);

  // Random: equals n times the per-coordinate variance summed.
  std::mt19937_64 gen(1);
  std::vector<std::vector<double>> bufs(5, std::vector<double>(9));
  for (auto& b : bufs)
    for (double& x : b) x = uniform01(gen);
  double expected = 0;
  for (int k = 0; k < 9; ++k) {
    double s = 0, sq = 0;
    for (const auto& b : bufs) s += b[static_cast<std::size_t>(k)], sq += b[static_cast<std::size_t>(k)] * b[static_cast<std::size_t>(k)];
    expected += sq - s * s / 5;
  }
  CHECK(consensus_distance(bufs) == doctest::Approx(expected).epsilon(1e-12));

  const std::vector<std::vector<double>> ragged = {{1, 2}, {3}};
  CHECK_THROWS_AS((void)consensus_distance(ragged), dssync::size_mismatch_error);
  CHECK_THROWS_AS((void)consensus_distance(ragged), dssync::error);
}

TEST_CASE("consensus_distance: one step of averaging shrinks it by the partition's projection") {
  // Applying W of a partition to buffers: the distance becomes the sum over
  // groups of (group size) * ||group mean - global mean||^2.
  const Partition p(6, {{0, 1, 2}, {3, 4}, {5}});
  std::vector<std::vector<double>> x = {{6}, {0}, {3}, {10}, {2}, {-3}};
  // mean 3; group means 3, 6, -3: 3*0 + 2*9 + 1*36 = 54.
  std::vector<std::vector<double>> y(6, std::vector<double>(1));
  const Matrix w = mixing_matrix(p);
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 6; ++j) y[static_cast<std::size_t>(i)][0] += w(i, j) * x[static_cast<std::size_t>(j)][0];
  CHECK(dssync::analysis::consensus_distance(y) == doctest::Approx(54).epsilon(1e-14));
  CHECK(dssync::analysis::consensus_distance(x) == doctest::Approx(9 + 9 + 0 + 49 + 1 + 36).epsilon(1e-14));
}

}  // namespace
