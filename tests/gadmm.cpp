// GADMM and D-GADMM (sync/gadmm.hpp) on real ranks (threads of an
// InProcWorld), with local solvers written here in plain C++: least squares
// (a cached Cholesky factor) and L2-regularized logistic regression (Newton
// with a dense solve). Convergence to the centralized optimum, the N = 2 case
// against textbook two-block ADMM bit for bit, the duals' zero sum, the random
// chain drawn alike on every rank without a message, the traffic's closed
// form, the errors, and no allocation in the steady state.

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "dssync/dssync.hpp"

#include "allocations.hpp"
#include "each_rank.hpp"

namespace {

using dssync::GADMM;
using dssync::GADMMOptions;
using dssync::InProcTransport;
using dssync::InProcWorld;
using dssync::RandomChain;
using dssync::StaticChain;
using namespace std::chrono_literals;

using Vec = std::vector<double>;
using Mat = std::vector<double>;  // row-major, square d x d

std::size_t sz(int i) {
  return static_cast<std::size_t>(i);
}

InProcWorld make_world(int n) {
  return InProcWorld(n, {.timeout = 60s});
}

double uniform(std::mt19937_64& gen, double lo, double hi) {  // mt19937_64 is specified
  return lo + (hi - lo) * (static_cast<double>(gen() >> 11) * 0x1.0p-53);
}

// ------------------------------------------------------- dense linear algebra --

// In place: the lower Cholesky factor of the d x d matrix a.
void cholesky(Mat& a, std::size_t d) {
  for (std::size_t j = 0; j < d; ++j) {
    double s = a[j * d + j];
    for (std::size_t k = 0; k < j; ++k) s -= a[j * d + k] * a[j * d + k];
    if (!(s > 0)) throw std::runtime_error("cholesky: the matrix is not positive definite");
    a[j * d + j] = std::sqrt(s);
    for (std::size_t i = j + 1; i < d; ++i) {
      double t = a[i * d + j];
      for (std::size_t k = 0; k < j; ++k) t -= a[i * d + k] * a[j * d + k];
      a[i * d + j] = t / a[j * d + j];
    }
  }
}

// x <- (L L^T)^{-1} x.
void cholesky_solve(const Mat& l, std::size_t d, std::span<double> x) {
  for (std::size_t i = 0; i < d; ++i) {
    for (std::size_t k = 0; k < i; ++k) x[i] -= l[i * d + k] * x[k];
    x[i] /= l[i * d + i];
  }
  for (std::size_t i = d; i-- > 0;) {
    for (std::size_t k = i + 1; k < d; ++k) x[i] -= l[k * d + i] * x[k];
    x[i] /= l[i * d + i];
  }
}

// A worker's data: rows x (n x d, row-major) and targets y.
struct Data {
  std::size_t d = 0;
  std::vector<double> x, y;
  std::size_t rows() const { return y.size(); }
};

// Well-conditioned regression data: entries uniform in [-1, 1], y = x θ + noise.
std::vector<Data> regression_data(int workers, std::size_t d, std::size_t rows,
                                  std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  Vec truth(d);
  for (auto& v : truth) v = uniform(gen, -2, 2);
  std::vector<Data> all(sz(workers));
  for (auto& w : all) {
    w.d = d;
    for (std::size_t i = 0; i < rows; ++i) {
      double dot = 0;
      for (std::size_t j = 0; j < d; ++j) {
        w.x.push_back(uniform(gen, -1, 1));
        dot += w.x.back() * truth[j];
      }
      w.y.push_back(dot + uniform(gen, -0.1, 0.1));
    }
  }
  return all;
}

// Binary labels ±1 from a noisy linear rule.
std::vector<Data> classification_data(int workers, std::size_t d, std::size_t rows,
                                      std::uint64_t seed) {
  std::vector<Data> all = regression_data(workers, d, rows, seed);
  std::mt19937_64 gen(seed + 1);
  for (auto& w : all)
    for (auto& y : w.y) y = y + uniform(gen, -1, 1) > 0 ? 1.0 : -1.0;
  return all;
}

// f(θ) = 1/2 ||X θ - y||². The Cholesky factors of XᵀX + kρI for k = 0, 1, 2
// are made on first use of each (k, ρ) and kept: solve allocates nothing after.
struct LeastSquares {
  Data data;
  Mat gram;                   // XᵀX
  Vec xty;                    // Xᵀy
  std::array<Mat, 3> factor;  // by neighbours
  std::array<double, 3> rho_of{-1, -1, -1};

  explicit LeastSquares(Data d) : data(std::move(d)) {
    const std::size_t n = data.d;
    gram.assign(n * n, 0.0);
    xty.assign(n, 0.0);
    for (std::size_t r = 0; r < data.rows(); ++r)
      for (std::size_t i = 0; i < n; ++i) {
        xty[i] += data.x[r * n + i] * data.y[r];
        for (std::size_t j = 0; j < n; ++j)
          gram[i * n + j] += data.x[r * n + i] * data.x[r * n + j];
      }
  }
  std::size_t dim() const { return data.d; }
  // The factor for k neighbours at ρ, made on first use.
  const Mat& factor_for(int k, double rho) {
    const std::size_t n = data.d;
    Mat& f = factor[sz(k)];
    if (rho_of[sz(k)] != rho) {
      f = gram;
      for (std::size_t i = 0; i < n; ++i) f[i * n + i] += k * rho;
      cholesky(f, n);
      rho_of[sz(k)] = rho;
    }
    return f;
  }
  void solve(std::span<const double> mu, std::span<const double> sum, int k, double rho,
             std::span<double> theta) {
    const std::size_t n = data.d;
    const Mat& f = factor_for(k, rho);
    for (std::size_t i = 0; i < n; ++i) theta[i] = xty[i] - mu[i] + rho * sum[i];
    cholesky_solve(f, n, theta);
  }
};

// (Σ XᵀX)^{-1} Σ Xᵀy.
Vec least_squares_optimum(const std::vector<Data>& all) {
  const std::size_t d = all[0].d;
  Mat g(d * d, 0.0);
  Vec b(d, 0.0);
  for (const auto& w : all) {
    LeastSquares p(w);
    for (std::size_t i = 0; i < d * d; ++i) g[i] += p.gram[i];
    for (std::size_t i = 0; i < d; ++i) b[i] += p.xty[i];
  }
  cholesky(g, d);
  cholesky_solve(g, d, b);
  return b;
}

double sigmoid(double z) {
  return z >= 0 ? 1 / (1 + std::exp(-z)) : std::exp(z) / (1 + std::exp(z));
}

// f(θ) = Σ_i log(1 + exp(-y_i x_iᵀθ)) + reg/2 ||θ||²; the sum of the
// workers' f is the centralized objective with reg · N. Newton from the warm
// start until the step is below 1e-14 relative.
struct Logistic {
  Data data;
  double reg;
  Vec grad, step;
  Mat hess;

  Logistic(Data d, double r)
      : data(std::move(d)),
        reg(r),
        grad(data.d),
        step(data.d),
        hess(data.d * data.d),
        lin_(data.d) {}
  std::size_t dim() const { return data.d; }

  // Gradient and Hessian of f + <lin, θ> + c/2 ||θ||² at theta.
  void derivatives(std::span<const double> lin, double c, std::span<const double> theta) {
    const std::size_t n = data.d;
    for (std::size_t i = 0; i < n; ++i) grad[i] = lin[i] + (reg + c) * theta[i];
    std::fill(hess.begin(), hess.end(), 0.0);
    for (std::size_t i = 0; i < n; ++i) hess[i * n + i] = reg + c;
    for (std::size_t r = 0; r < data.rows(); ++r) {
      const double* x = &data.x[r * n];
      double z = 0;
      for (std::size_t i = 0; i < n; ++i) z += x[i] * theta[i];
      const double s = sigmoid(-data.y[r] * z);  // σ(-y z)
      for (std::size_t i = 0; i < n; ++i) grad[i] -= data.y[r] * s * x[i];
      const double w = s * (1 - s);
      for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < n; ++j) hess[i * n + j] += w * x[i] * x[j];
    }
  }
  // Minimizes f + <lin, θ> + c/2 ||θ||², Newton from theta.
  void newton(std::span<const double> lin, double c, std::span<double> theta) {
    const std::size_t n = data.d;
    for (int it = 0; it < 100; ++it) {
      derivatives(lin, c, theta);
      std::copy(grad.begin(), grad.end(), step.begin());
      cholesky(hess, n);
      cholesky_solve(hess, n, step);
      double norm = 0, size = 0;
      for (std::size_t i = 0; i < n; ++i) {
        theta[i] -= step[i];
        norm = std::max(norm, std::abs(step[i]));
        size = std::max(size, std::abs(theta[i]));
      }
      if (norm <= 1e-14 * std::max(size, 1.0)) return;
    }
  }
  void solve(std::span<const double> mu, std::span<const double> sum, int k, double rho,
             std::span<double> theta) {
    // f + <mu - ρ sum, θ> + kρ/2 ||θ||²: the penalty up to a constant.
    for (std::size_t i = 0; i < data.d; ++i) step[i] = mu[i] - rho * sum[i];
    std::copy(step.begin(), step.end(), lin_.begin());
    newton(lin_, k * rho, theta);
  }
  Vec lin_;
};

Vec logistic_optimum(const std::vector<Data>& all, double reg) {
  Data joined = all[0];
  joined.x.clear();
  joined.y.clear();
  for (const auto& w : all) {
    joined.x.insert(joined.x.end(), w.x.begin(), w.x.end());
    joined.y.insert(joined.y.end(), w.y.begin(), w.y.end());
  }
  Logistic p(joined, reg * static_cast<double>(all.size()));
  Vec theta(joined.d, 0.0), zero(joined.d, 0.0);
  p.newton(zero, 0, theta);
  return theta;
}

double max_relative_error(const Vec& x, const Vec& want) {
  double err = 0, scale = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    err = std::max(err, std::abs(x[i] - want[i]));
    scale = std::max(scale, std::abs(want[i]));
  }
  return err / scale;
}

// Every rank's θ after `iterations` iterations from θ = 0 (rank r's problem:
// make(r)).
template <class Chain = StaticChain, class Make>
std::vector<Vec> run_gadmm(int n, int iterations, GADMMOptions options, Make make,
                           Chain chain = {}) {
  std::vector<Vec> out(sz(n));
  make_world(n).run([&](InProcTransport& t) {
    auto problem = make(t.rank());
    Vec theta(problem.dim(), 0.0);
    GADMM<InProcTransport, Chain> g(t, problem.dim(), options, chain);
    for (int k = 0; k < iterations; ++k) g.iterate(problem, std::span<double>(theta));
    out[sz(t.rank())] = theta;
  });
  return out;
}

}  // namespace

// ------------------------------------------------------------- convergence --

TEST_CASE("GADMM: least squares reaches the centralized optimum on every worker") {
  for (int n : {2, 5, 8}) {
    const auto data = regression_data(n, 6, 30, 100 + n);
    const Vec want = least_squares_optimum(data);
    const auto got =
        run_gadmm(n, 200, {.rho = 20}, [&](int r) { return LeastSquares(data[sz(r)]); });
    for (int r = 0; r < n; ++r) {
      INFO("N = " << n << ", rank " << r);
      CHECK(max_relative_error(got[sz(r)], want) < 1e-6);
    }
  }
}

TEST_CASE("GADMM: L2-regularized logistic regression reaches the centralized Newton optimum") {
  for (int n : {2, 5, 8}) {
    const auto data = classification_data(n, 6, 40, 200 + n);
    const double reg = 0.1;
    const Vec want = logistic_optimum(data, reg);
    const auto got =
        run_gadmm(n, 200, {.rho = 2}, [&](int r) { return Logistic(data[sz(r)], reg); });
    for (int r = 0; r < n; ++r) {
      INFO("N = " << n << ", rank " << r);
      CHECK(max_relative_error(got[sz(r)], want) < 1e-6);
    }
  }
}

// ------------------------------------------------- N = 2 is two-block ADMM --

namespace {
// Rank r's starting model: different per rank, so that the first exchange
// matters.
Vec start_theta(int rank, std::size_t d) {
  Vec v(d);
  for (std::size_t i = 0; i < d; ++i) v[i] = 0.25 * double(rank + 1) - 0.125 * double(i);
  return v;
}

// Textbook consensus ADMM for min f_0(x) + f_1(z) s.t. x = z, unscaled dual λ:
//   x ← argmin f_0(x) + <λ, x> + ρ/2 ||x - z||²
//   z ← argmin f_1(z) - <λ, z> + ρ/2 ||x - z||²
//   λ ← λ + ρ (x - z)
template <class P>
void textbook_admm(P& f0, P& f1, double rho, int iterations, Vec& x, Vec& z, Vec& lambda) {
  const std::size_t d = x.size();
  lambda.assign(d, 0.0);
  Vec minus(d);
  for (int k = 0; k < iterations; ++k) {
    f0.solve(lambda, z, 1, rho, std::span<double>(x));
    for (std::size_t i = 0; i < d; ++i) minus[i] = -lambda[i];
    f1.solve(minus, x, 1, rho, std::span<double>(z));
    for (std::size_t i = 0; i < d; ++i) lambda[i] += rho * (x[i] - z[i]);
  }
}

bool same_bits(const Vec& a, const Vec& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

template <class Make>
void check_two_block(Make make, double rho, int iterations) {
  const std::size_t d = make(0).dim();
  std::vector<Vec> theta(2), mu(2);
  make_world(2).run([&](InProcTransport& t) {
    auto problem = make(t.rank());
    Vec th = start_theta(t.rank(), d);
    GADMM<InProcTransport> g(t, d, {.rho = rho});
    for (int k = 0; k < iterations; ++k) g.iterate(problem, std::span<double>(th));
    theta[sz(t.rank())] = th;
    mu[sz(t.rank())].assign(g.dual().begin(), g.dual().end());
  });
  auto f0 = make(0), f1 = make(1);
  Vec x = start_theta(0, d), z = start_theta(1, d), lambda;
  textbook_admm(f0, f1, rho, iterations, x, z, lambda);
  Vec minus(d);
  for (std::size_t i = 0; i < d; ++i) minus[i] = -lambda[i];
  CHECK(same_bits(theta[0], x));
  CHECK(same_bits(theta[1], z));
  CHECK(same_bits(mu[0], lambda));
  CHECK(same_bits(mu[1], minus));
}
}  // namespace

TEST_CASE("GADMM: two workers are textbook two-block consensus ADMM, bit for bit") {
  const auto ls = regression_data(2, 6, 30, 7);
  check_two_block([&](int r) { return LeastSquares(ls[sz(r)]); }, 3.0, 40);
  const auto lr = classification_data(2, 6, 40, 8);
  check_two_block([&](int r) { return Logistic(lr[sz(r)], 0.1); }, 2.0, 40);
}

// ------------------------------------------------------- the duals' zero sum --

namespace {
// f(θ) = c/2 ||θ - a||², its minimizer rounded to a multiple of 2^-10: with
// ρ = 1 every θ, difference and dual is a dyadic number of few bits, so no
// operation rounds and the duals' sum is exactly zero.
struct Dyadic {
  double c;
  Vec a;
  std::size_t dim() const { return a.size(); }
  void solve(std::span<const double> mu, std::span<const double> sum, int k, double rho,
             std::span<double> theta) const {
    for (std::size_t i = 0; i < a.size(); ++i)
      theta[i] = std::round((c * a[i] - mu[i] + rho * sum[i]) / (c + k * rho) * 1024) / 1024;
  }
};
Dyadic dyadic_problem(int rank, std::size_t d) {
  Dyadic p{double(rank % 3 + 1), Vec(d)};
  for (std::size_t i = 0; i < d; ++i) p.a[i] = double((rank * 7 + int(i) * 3) % 11) - 5.5;
  return p;
}

// [iteration][rank] -> μ after that iteration.
template <class Chain, class Make>
std::vector<std::vector<Vec>> dual_history(int n, int iterations, double rho, Make make,
                                           Chain chain) {
  std::vector<std::vector<Vec>> mu(sz(iterations), std::vector<Vec>(sz(n)));
  make_world(n).run([&](InProcTransport& t) {
    auto problem = make(t.rank());
    Vec th = start_theta(t.rank(), problem.dim());
    GADMM<InProcTransport, Chain> g(t, problem.dim(), {.rho = rho, .seed = 5}, chain);
    for (int k = 0; k < iterations; ++k) {
      g.iterate(problem, std::span<double>(th));
      mu[sz(k)][sz(t.rank())].assign(g.dual().begin(), g.dual().end());
    }
  });
  return mu;
}
}  // namespace

TEST_CASE("GADMM: the duals sum to zero at every iteration") {
  SUBCASE("exactly, with dyadic models") {
    for (int n : {2, 5, 7}) {
      const auto check = [&](const auto& history) {
        bool moved = false;
        for (std::size_t k = 0; k < history.size(); ++k)
          for (std::size_t i = 0; i < 4; ++i) {
            double s = 0;
            for (int r = 0; r < n; ++r) {
              s += history[k][sz(r)][i];
              moved = moved || history[k][sz(r)][i] != 0;
            }
            INFO("N = " << n << ", iteration " << k << ", element " << i);
            REQUIRE(s == 0.0);
          }
        CHECK(moved);
      };
      auto make = [](int r) { return dyadic_problem(r, 4); };
      check(dual_history(n, 60, 1.0, make, StaticChain{}));
      check(dual_history(n, 60, 1.0, make, RandomChain{2}));
    }
  }
  SUBCASE("within rounding, least squares") {
    const int n = 6;
    const auto data = regression_data(n, 6, 30, 11);
    auto make = [&](int r) { return LeastSquares(data[sz(r)]); };
    const auto check = [&](const auto& history) {
      for (std::size_t k = 0; k < history.size(); ++k)
        for (std::size_t i = 0; i < 6; ++i) {
          double s = 0, size = 0;
          for (int r = 0; r < n; ++r) {
            s += history[k][sz(r)][i];
            size += std::abs(history[k][sz(r)][i]);
          }
          INFO("iteration " << k << ", element " << i << ": sum " << s << " of sizes " << size);
          REQUIRE(std::abs(s) <= 1e-12 * std::max(size, 1.0));
        }
    };
    check(dual_history(n, 100, 5.0, make, StaticChain{}));
    check(dual_history(n, 100, 5.0, make, RandomChain{3}));
  }
}

// --------------------------------------------------------------- D-GADMM --

namespace {
// Per rank: the chain before each iteration and the messages and bytes sent
// in it; the final θ.
struct Trace {
  std::vector<std::vector<int>> chains;
  std::vector<int> positions;
  std::vector<std::uint64_t> messages, bytes;
  Vec theta;
};

template <class Chain, class Make>
std::vector<Trace> trace_gadmm(int n, int iterations, GADMMOptions options, Make make,
                               Chain chain) {
  std::vector<Trace> out(sz(n));
  make_world(n).run([&](InProcTransport& t) {
    auto problem = make(t.rank());
    Trace& tr = out[sz(t.rank())];
    Vec th(problem.dim(), 0.0);
    GADMM<InProcTransport, Chain> g(t, problem.dim(), options, chain);
    for (int k = 0; k < iterations; ++k) {
      tr.chains.emplace_back(g.chain().begin(), g.chain().end());
      tr.positions.push_back(g.position());
      const auto before = g.stats();
      g.iterate(problem, std::span<double>(th));
      tr.messages.push_back(g.stats().messages_sent - before.messages_sent);
      tr.bytes.push_back(g.stats().bytes_sent - before.bytes_sent);
    }
    CHECK(g.stats().steps == std::uint64_t(iterations));
    CHECK(g.iteration() == std::uint64_t(iterations));
    tr.theta = th;
  });
  return out;
}

// The closed form: at iteration t every rank sends its new θ to each of its
// deg(p) neighbours once, and at a new chain (t = 0, or a chain that differs
// from t - 1's) each tail first sends its current θ to each neighbour too.
template <class Chain>
void check_traffic(const std::vector<Trace>& traces, int n, std::size_t dim, Chain chain,
                   std::uint64_t seed) {
  std::vector<int> order(sz(n)), previous(sz(n));
  for (std::size_t t = 0; t < traces[0].chains.size(); ++t) {
    chain.order(n, seed, t, std::span<int>(order));
    const bool fresh = t == 0 || order != previous;
    std::uint64_t messages = 0, bytes = 0;
    for (int r = 0; r < n; ++r) {
      const Trace& tr = traces[sz(r)];
      INFO("N = " << n << ", iteration " << t << ", rank " << r);
      REQUIRE(tr.chains[t] == order);  // the same chain everywhere, drawn without a message
      const int p = tr.positions[t];
      REQUIRE(order[sz(p)] == r);
      const std::uint64_t degree = std::uint64_t(p > 0) + std::uint64_t(p + 1 < n);
      const std::uint64_t want = degree + (fresh && p % 2 == 1 ? degree : 0);
      CHECK(tr.messages[t] == want);
      CHECK(tr.bytes[t] == want * 8 * dim);
      if (!fresh) CHECK(tr.messages[t] <= 2);
      messages += tr.messages[t];
      bytes += tr.bytes[t];
    }
    const std::uint64_t edges = std::uint64_t(n - 1);
    CHECK(messages == 2 * edges + (fresh ? edges : 0));
    CHECK(bytes == (2 * edges + (fresh ? edges : 0)) * 8 * dim);
    previous = order;
  }
}
}  // namespace

TEST_CASE("D-GADMM: every rank draws the same chain without a message and reaches the optimum") {
  const RandomChain chain{10};
  for (int n : {5, 8}) {
    const auto data = regression_data(n, 6, 30, 300 + n);
    const Vec want = least_squares_optimum(data);
    const GADMMOptions options{.rho = 20, .seed = 42};
    const auto traces = trace_gadmm(
        n, 300, options, [&](int r) { return LeastSquares(data[sz(r)]); }, chain);
    check_traffic(traces, n, 6, chain, options.seed);
    // The chain really moves: it is redrawn every 10 iterations, and not the
    // rank order.
    int redraws = 0;
    for (std::size_t t = 1; t < traces[0].chains.size(); ++t)
      redraws += traces[0].chains[t] != traces[0].chains[t - 1];
    CHECK(redraws >= 25);
    for (int r = 0; r < n; ++r) {
      INFO("least squares, N = " << n << ", rank " << r);
      CHECK(max_relative_error(traces[sz(r)].theta, want) < 1e-6);
    }
    const auto ldata = classification_data(n, 6, 40, 400 + n);
    const Vec lwant = logistic_optimum(ldata, 0.1);
    const auto lgot = run_gadmm(
        n, 300, {.rho = 2, .seed = 42}, [&](int r) { return Logistic(ldata[sz(r)], 0.1); }, chain);
    for (int r = 0; r < n; ++r) {
      INFO("logistic, N = " << n << ", rank " << r);
      CHECK(max_relative_error(lgot[sz(r)], lwant) < 1e-6);
    }
  }
}

TEST_CASE("GADMM: bytes and messages per iteration are the closed form") {
  for (int n : {1, 2, 3, 5, 8}) {
    const auto make = [](int r) { return dyadic_problem(r, 5); };
    check_traffic(trace_gadmm(n, 12, {}, make, StaticChain{}), n, 5, StaticChain{}, 0);
    check_traffic(trace_gadmm(n, 12, {.seed = 3}, make, RandomChain{3}), n, 5, RandomChain{3}, 3);
    check_traffic(trace_gadmm(n, 12, {.seed = 4}, make, RandomChain{1}), n, 5, RandomChain{1}, 4);
  }
}

// ----------------------------------------------------------------- errors --

namespace {
// Runs f on every rank of a world of n and returns the first failure.
template <class F>
std::exception_ptr first_failure(int n, F f) {
  try {
    make_world(n).run(f);
  } catch (...) {
    return std::current_exception();
  }
  return nullptr;
}

// What a failure was, if it is an E.
struct Caught {
  bool matched = false;
  std::string what;
  dssync::error_context where;
};
template <class E>
Caught as(const std::exception_ptr& e) {
  Caught c;
  try {
    if (e) std::rethrow_exception(e);
    c.what = "no failure";
  } catch (const E& x) {
    c = {true, x.what(), x.where()};
  } catch (const std::exception& x) {
    c.what = x.what();
  }
  return c;
}
}  // namespace

TEST_CASE("GADMM: a rho that is not positive and finite is a configuration_error") {
  for (double rho : {0.0, -1.0, std::nan(""), HUGE_VAL, -HUGE_VAL}) {
    InProcWorld(1).run([&](InProcTransport& t) {
      INFO("rho " << rho);
      try {
        GADMM<InProcTransport> g(t, 3, {.rho = rho});
        FAIL("no throw");
      } catch (const dssync::configuration_error& e) {
        CHECK(std::string(e.what()).find("rho must be positive and finite") != std::string::npos);
        CHECK(e.where().rank == 0);
      }
    });
  }
}

namespace {
// A chain policy that knows no rank and fails at iteration 1: drawn at the end
// of iteration 0's iterate().
struct ChainFailingAt1 {
  void order(int n, std::uint64_t, std::uint64_t t, std::span<int> out) const {
    if (t == 1) throw dssync::configuration_error("no chain at this iteration");
    for (int i = 0; i < n; ++i) out[sz(i)] = i;
  }
};
}  // namespace

TEST_CASE("GADMM: a chain policy's error names the rank and the iteration") {
  using dssync_test::each_rank_names;
  // In the constructor: RandomChain's coherence 0.
  each_rank_names("coherence must be at least 1", 0, [](InProcTransport& t) {
    GADMM<InProcTransport, RandomChain> g(t, 3, {}, RandomChain{0});
  });
  // After an iteration: the next chain.
  each_rank_names("no chain at this iteration", 1, [](InProcTransport& t) {
    auto problem = dyadic_problem(t.rank(), 3);
    Vec th(3, 0.0);
    GADMM<InProcTransport, ChainFailingAt1> g(t, 3);
    g.iterate(problem, std::span<double>(th));
  });
}

TEST_CASE("GADMM: models of different lengths") {
  SUBCASE("across ranks: size_mismatch_error from the exchange") {
    const auto e = first_failure(3, [](InProcTransport& t) {
      const std::size_t d = t.rank() == 1 ? 7 : 6;
      auto problem = dyadic_problem(t.rank(), d);
      Vec th(d, 0.0);
      GADMM<InProcTransport> g(t, d);
      for (int k = 0; k < 3; ++k) g.iterate(problem, std::span<double>(th));
    });
    const Caught x = as<dssync::size_mismatch_error>(e);
    REQUIRE_MESSAGE(x.matched, x.what);
    CHECK(x.where.iteration == 0);
  }
  SUBCASE("across ranks, checked: every rank stops before a message moves") {
    const auto e = first_failure(3, [](InProcTransport& t) {
      const std::size_t d = t.rank() == 1 ? 7 : 6;
      auto problem = dyadic_problem(t.rank(), d);
      Vec th(d, 0.0);
      GADMM<InProcTransport> g(t, d, {.checked = true});
      g.iterate(problem, std::span<double>(th));
    });
    const Caught x = as<dssync::configuration_error>(e);
    REQUIRE_MESSAGE(x.matched, x.what);
    CHECK(x.what.find("different lengths") != std::string::npos);
  }
  SUBCASE("the problem's dim() or theta differ from the constructor's") {
    InProcWorld(1).run([](InProcTransport& t) {
      auto problem = dyadic_problem(0, 5);
      Vec th(5, 0.0), shorter(4, 0.0);
      GADMM<InProcTransport> g(t, 4);
      CHECK_THROWS_AS(g.iterate(problem, std::span<double>(th)), dssync::size_mismatch_error);
      auto four = dyadic_problem(0, 4);
      GADMM<InProcTransport> h(t, 4);
      CHECK_THROWS_AS(h.iterate(four, std::span<double>(th)), dssync::size_mismatch_error);
      CHECK_NOTHROW(h.iterate(four, std::span<double>(shorter)));
    });
  }
}

namespace {
// Dyadic, but its solve returns NaN at one iteration on one rank.
struct Poisoned {
  Dyadic inner;
  int bad_call;
  int calls = 0;
  std::size_t dim() const { return inner.dim(); }
  void solve(std::span<const double> mu, std::span<const double> sum, int k, double rho,
             std::span<double> theta) {
    inner.solve(mu, sum, k, rho, theta);
    if (calls++ == bad_call) theta[2] = std::nan("");
  }
};
}  // namespace

TEST_CASE("GADMM: checked mode stops a non-finite model, naming rank and iteration") {
  const auto e = first_failure(4, [](InProcTransport& t) {
    Poisoned problem{dyadic_problem(t.rank(), 4), t.rank() == 2 ? 3 : -1};
    Vec th(4, 0.0);
    GADMM<InProcTransport> g(t, 4, {.checked = true});
    for (int k = 0; k < 6; ++k) g.iterate(problem, std::span<double>(th));
  });
  const Caught x = as<dssync::error>(e);
  REQUIRE_MESSAGE(x.matched, x.what);
  CHECK(x.what.find("the local solver's model is not finite: element 2 is nan") !=
        std::string::npos);
  CHECK(x.where.rank == 2);
  CHECK(x.where.iteration == 3);

  // A non-finite starting model, too.
  const auto s = first_failure(2, [](InProcTransport& t) {
    auto problem = dyadic_problem(t.rank(), 3);
    Vec th(3, 0.0);
    if (t.rank() == 1) th[0] = HUGE_VAL;
    GADMM<InProcTransport> g(t, 3, {.checked = true});
    g.iterate(problem, std::span<double>(th));
  });
  const Caught y = as<dssync::error>(s);
  REQUIRE_MESSAGE(y.matched, y.what);
  CHECK(y.what.find("the model passed to iterate() is not finite: element 0 is inf") !=
        std::string::npos);
  CHECK(y.where.rank == 1);
}

// ------------------------------------------------------- no steady allocation --

TEST_CASE("GADMM: an iteration allocates nothing once warm") {
  const int n = 5;
  const auto data = regression_data(n, 6, 30, 17);
  std::vector<std::uint64_t> counts(sz(n) * 4, 99);
  make_world(n).run([&](InProcTransport& t) {
    auto run = [&](auto g, int slot) {
      LeastSquares problem(data[sz(t.rank())]);
      for (int k = 0; k < 3; ++k) problem.factor_for(k, 4.0);  // the test's solver, warmed
      Vec th(6, 0.0);
      for (int k = 0; k < 2; ++k) g.iterate(problem, std::span<double>(th));
      const std::uint64_t before = t_allocations;
      for (int k = 0; k < 20; ++k) g.iterate(problem, std::span<double>(th));
      counts[sz(t.rank()) * 4 + sz(slot)] = t_allocations - before;
    };
    run(GADMM<InProcTransport>(t, 6, {.rho = 4}), 0);
    run(GADMM<InProcTransport>(t, 6, {.rho = 4, .checked = true}), 1);
    run(GADMM<InProcTransport, RandomChain>(t, 6, {.rho = 4, .seed = 1}, RandomChain{3}), 2);
    run(GADMM<InProcTransport, RandomChain>(t, 6, {.rho = 4, .seed = 1, .checked = true},
                                            RandomChain{1}),
        3);
  });
  for (std::size_t i = 0; i < counts.size(); ++i) {
    INFO("rank " << i / 4 << ", variant " << i % 4);
    CHECK(counts[i] == 0);
  }
}
