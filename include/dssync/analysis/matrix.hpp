#pragma once
// A small dense square matrix and the eigenvalues of symmetric ones (cyclic
// Jacobi rotations): enough for mixing matrices of up to a few hundred ranks
// without a linear-algebra dependency.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <limits>
#include <vector>

namespace dssync::analysis {

class Matrix {
 public:
  explicit Matrix(int n = 0, double fill = 0.0)
      : n_(n), a_(static_cast<std::size_t>(n) * static_cast<std::size_t>(n), fill) {}
  static Matrix identity(int n) {
    Matrix m(n);
    for (int i = 0; i < n; ++i) m(i, i) = 1.0;
    return m;
  }

  int size() const noexcept { return n_; }
  double& operator()(int i, int j) noexcept { return a_[index(i, j)]; }
  double operator()(int i, int j) const noexcept { return a_[index(i, j)]; }

  friend Matrix operator*(const Matrix& x, const Matrix& y) {
    Matrix z(x.n_);
    for (int i = 0; i < x.n_; ++i)
      for (int k = 0; k < x.n_; ++k) {
        const double xik = x(i, k);
        if (xik == 0.0) continue;
        for (int j = 0; j < x.n_; ++j) z(i, j) += xik * y(k, j);
      }
    return z;
  }
  Matrix transposed() const {
    Matrix t(n_);
    for (int i = 0; i < n_; ++i)
      for (int j = 0; j < n_; ++j) t(j, i) = (*this)(i, j);
    return t;
  }
  Matrix& operator+=(const Matrix& o) {
    for (std::size_t i = 0; i < a_.size(); ++i) a_[i] += o.a_[i];
    return *this;
  }
  Matrix& operator*=(double s) {
    for (double& x : a_) x *= s;
    return *this;
  }
  double max_abs_difference(const Matrix& o) const {
    double d = 0;
    for (std::size_t i = 0; i < a_.size(); ++i) d = std::max(d, std::abs(a_[i] - o.a_[i]));
    return d;
  }

 private:
  std::size_t index(int i, int j) const noexcept {
    return static_cast<std::size_t>(i) * static_cast<std::size_t>(n_) + static_cast<std::size_t>(j);
  }
  int n_;
  std::vector<double> a_;
};

// All eigenvalues of a symmetric matrix, largest first.
inline std::vector<double> symmetric_eigenvalues(Matrix a) {
  const int n = a.size();
  // Converged when what is off the diagonal is at rounding's level beside the
  // whole matrix (n x n entries of about eps ||A|| each): relative, so that a
  // matrix of tiny entries (the spectrum of a long product of mixing
  // matrices, less J) is not returned unrotated. The matrix is first scaled
  // by the power of two nearest its largest entry (exactly: the spectrum is
  // only rescaled, and every rotation is the same to the bit), so that the
  // squares below neither underflow (entries of 1e-170) nor overflow (1e160).
  double largest = 0;
  for (int p = 0; p < n; ++p)
    for (int q = 0; q < n; ++q) largest = std::max(largest, std::abs(a(p, q)));
  int exponent = 0;
  if (largest > 0 && std::isfinite(largest)) {
    std::frexp(largest, &exponent);
    for (int p = 0; p < n; ++p)
      for (int q = 0; q < n; ++q) a(p, q) = std::ldexp(a(p, q), -exponent);
  }
  double norm = 0;
  for (int p = 0; p < n; ++p)
    for (int q = 0; q < n; ++q) norm += a(p, q) * a(p, q);
  const double eps = static_cast<double>(n) * std::numeric_limits<double>::epsilon();
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0;
    for (int p = 0; p < n; ++p)
      for (int q = p + 1; q < n; ++q) off += a(p, q) * a(p, q);
    if (off <= eps * eps * norm) break;
    for (int p = 0; p < n; ++p)
      for (int q = p + 1; q < n; ++q) {
        if (std::abs(a(p, q)) < 1e-300) continue;
        // The rotation that zeroes a(p, q) (Golub & Van Loan, symmetric Schur).
        const double theta = (a(q, q) - a(p, p)) / (2 * a(p, q));
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::abs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), s = t * c;
        for (int k = 0; k < n; ++k) {  // columns p and q
          const double akp = a(k, p), akq = a(k, q);
          a(k, p) = c * akp - s * akq;
          a(k, q) = s * akp + c * akq;
        }
        for (int k = 0; k < n; ++k) {  // rows p and q
          const double apk = a(p, k), aqk = a(q, k);
          a(p, k) = c * apk - s * aqk;
          a(q, k) = s * apk + c * aqk;
        }
      }
  }
  std::vector<double> ev(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) ev[static_cast<std::size_t>(i)] = std::ldexp(a(i, i), exponent);
  std::sort(ev.begin(), ev.end(), std::greater<>());
  return ev;
}

// The second largest eigenvalue of a symmetric matrix: for a mixing matrix
// (largest eigenvalue 1, eigenvector all ones), how slowly it mixes.
inline double second_largest_eigenvalue(const Matrix& symmetric) {
  const auto ev = symmetric_eigenvalues(symmetric);
  return ev.size() < 2 ? 0.0 : ev[1];
}

}  // namespace dssync::analysis
