// GADMM and D-GADMM (dssync/sync/gadmm.hpp) on Fashion-MNIST, with Eigen local
// solvers, workers as threads of an InProcWorld:
//
//   --problem ls        ridge least squares on all 60,000 training images
//                       (standardized pixels and a constant, one-hot targets):
//                       min_Θ 1/2 ||H Θ - Y||² + λ/2 ||Θ||², Θ of 785 x 10;
//   --problem logistic  L2-regularized logistic regression, sandal (label 5)
//                       against sneaker (label 7): min_θ Σ log(1 + e^{-y xᵀθ})
//                       + λ/2 ||θ||².
//
// The training set is cut into --workers contiguous shards; worker n holds
// f_n, its shard's loss plus λ/(2N) ||θ||². Every iteration prints, as CSV,
// the objective's relative error (F(θ_n) - F*) / F* of the worst and of the
// mean worker against the centralized optimum, and the bytes sent so far.
//
//   dssync_convex --problem ls --workers 8 --rho 1000 --iterations 100
//   dssync_convex --problem logistic --chain random --coherence 10
//   dssync_convex --synthetic 2000 ...   random images, no files (the test)

#include <Eigen/Dense>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <dssync/dssync.hpp>

#include "data.hpp"

namespace {

using Eigen::MatrixXd;
using Eigen::VectorXd;
using Map = Eigen::Map<MatrixXd>;
using ConstMap = Eigen::Map<const MatrixXd>;

// The rows (images, and a constant 1 last) and targets of one problem.
struct Rows {
  MatrixXd x;  // rows x (features + 1)
  MatrixXd y;  // rows x outputs: one-hot (ls) or ±1 (logistic)
};

Rows select(const train::Split& s, const std::string& problem, std::size_t limit) {
  std::vector<std::size_t> keep;
  for (std::size_t i = 0; i < s.size() && (limit == 0 || keep.size() < limit); ++i)
    if (problem == "ls" || s.y[i] == 5 || s.y[i] == 7) keep.push_back(i);
  const auto d = static_cast<Eigen::Index>(s.features);
  Rows r{MatrixXd(static_cast<Eigen::Index>(keep.size()), d + 1),
         MatrixXd::Zero(static_cast<Eigen::Index>(keep.size()), problem == "ls" ? 10 : 1)};
  for (std::size_t k = 0; k < keep.size(); ++k) {
    const auto row = static_cast<Eigen::Index>(k);
    for (Eigen::Index j = 0; j < d; ++j)
      r.x(row, j) = s.x[keep[k] * s.features + static_cast<std::size_t>(j)];
    r.x(row, d) = 1.0;
    if (problem == "ls")
      r.y(row, s.y[keep[k]]) = 1.0;
    else
      r.y(row, 0) = s.y[keep[k]] == 5 ? 1.0 : -1.0;
  }
  return r;
}

// Random 28 x 28 "images" whose mean depends on the label: the test's data,
// so that it needs no files.
train::Split synthetic(std::size_t count, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  train::Split s;
  s.features = 784;
  s.x.resize(count * s.features);
  s.y.resize(count);
  for (std::size_t i = 0; i < count; ++i) {
    s.y[i] = static_cast<int>(gen() % 10);
    for (std::size_t j = 0; j < s.features; ++j) {
      const double u = static_cast<double>(gen() >> 11) * 0x1.0p-53;
      const double shift =
          (double((j * 7 + static_cast<std::size_t>(s.y[i]) * 13) % 10) - 4.5) / 20;
      s.x[i * s.features + j] = static_cast<float>(2 * u - 1 + shift);
    }
  }
  return s;
}

// f(Θ) = 1/2 ||X Θ - Y||² + reg/2 ||Θ||². The factor of XᵀX + (reg + kρ) I is
// made once for each number of neighbours k and shared by all outputs.
class RidgeShard {
 public:
  RidgeShard(const MatrixXd& x, const MatrixXd& y, double reg)
      : outputs_(y.cols()), features_(x.cols()), reg_(reg) {
    gram_ = MatrixXd::Zero(features_, features_);
    gram_.selfadjointView<Eigen::Lower>().rankUpdate(x.transpose());
    gram_ = gram_.selfadjointView<Eigen::Lower>();
    xty_ = x.transpose() * y;
    rhs_.resize(features_, outputs_);
  }
  const MatrixXd& gram() const { return gram_; }
  const MatrixXd& xty() const { return xty_; }
  std::size_t dim() const { return static_cast<std::size_t>(features_ * outputs_); }

  void solve(std::span<const double> mu, std::span<const double> sum, int k, double rho,
             std::span<double> theta) {
    auto& f = factor_[k];
    if (rho_[k] != rho) {
      f.compute(gram_ + (reg_ + k * rho) * MatrixXd::Identity(features_, features_));
      rho_[k] = rho;
    }
    const ConstMap m(mu.data(), features_, outputs_), s(sum.data(), features_, outputs_);
    rhs_ = xty_ - m + rho * s;
    Map(theta.data(), features_, outputs_) = f.solve(rhs_);
  }

 private:
  Eigen::Index outputs_, features_;
  double reg_;
  MatrixXd gram_, xty_, rhs_;
  Eigen::LLT<MatrixXd> factor_[3];
  double rho_[3] = {-1, -1, -1};
};

double sigmoid(double z) {
  return z >= 0 ? 1 / (1 + std::exp(-z)) : std::exp(z) / (1 + std::exp(z));
}
double log1pexp(double z) {
  return z > 0 ? z + std::log1p(std::exp(-z)) : std::log1p(std::exp(z));
}

// g(θ) = Σ log(1 + e^{-y xᵀθ}) + <lin, θ> + c/2 ||θ||², minimized by Newton's
// method with the Newton step from conjugate gradients (Hessian-vector
// products, no Hessian), a backtracking line search, warm-started.
class LogisticShard {
 public:
  LogisticShard(MatrixXd x, VectorXd y, double reg)
      : x_(std::move(x)), y_(std::move(y)), reg_(reg) {
    const auto d = x_.cols();
    lin_ = VectorXd::Zero(d);
    for (VectorXd* v : {&grad_, &step_, &r_, &p_, &hp_, &trial_}) v->resize(d);
    for (VectorXd* v : {&z_, &w_, &xv_}) v->resize(x_.rows());
    // The loss's gradient at θ = 0 is -Xᵀy / 2: the scale the Newton
    // iterations' tolerance is relative to.
    scale_ = 1 + 0.5 * (x_.transpose() * y_).norm();
  }
  std::size_t dim() const { return static_cast<std::size_t>(x_.cols()); }

  // Σ log(1 + e^{-y xᵀθ}) + reg/2 ||θ||²: this shard's part of the objective
  // (const, for several threads at once: z is the caller's scratch).
  template <class V>
  double loss(const V& theta, VectorXd& z) const {
    z.noalias() = x_ * theta;
    double s = 0;
    for (Eigen::Index i = 0; i < z.size(); ++i) s += log1pexp(-y_[i] * z[i]);
    return s + 0.5 * reg_ * theta.squaredNorm();
  }

  void solve(std::span<const double> mu, std::span<const double> sum, int k, double rho,
             std::span<double> theta) {
    const auto d = static_cast<Eigen::Index>(theta.size());
    lin_ =
        Eigen::Map<const VectorXd>(mu.data(), d) - rho * Eigen::Map<const VectorXd>(sum.data(), d);
    Eigen::Map<VectorXd> t(theta.data(), d);
    minimize(t, reg_ + k * rho);
  }

  // The minimizer of g with c, from theta: until the gradient is 1e-10 of the
  // loss's at 0, the line search stalls, or 50 Newton steps.
  template <class V>
  void minimize(V& theta, double c) {
    for (int it = 0; it < 50; ++it) {
      z_.noalias() = x_ * theta;
      for (Eigen::Index i = 0; i < z_.size(); ++i) {
        const double s = sigmoid(-y_[i] * z_[i]);
        w_[i] = s * (1 - s);
        z_[i] = -y_[i] * s;  // d loss / d z
      }
      grad_.noalias() = x_.transpose() * z_;
      grad_ += lin_ + c * theta;
      const double g = grad_.norm();
      if (g <= 1e-10 * scale_) return;
      // CG on (Xᵀ W X + c I) step = grad.
      step_.setZero();
      r_ = grad_;
      p_ = r_;
      double rr = r_.squaredNorm();
      const double forcing = std::min(0.1, std::sqrt(g / scale_));
      for (int j = 0; j < 200 && std::sqrt(rr) > forcing * g; ++j) {
        xv_.noalias() = x_ * p_;
        xv_.array() *= w_.array();
        hp_.noalias() = x_.transpose() * xv_;
        hp_ += c * p_;
        const double alpha = rr / p_.dot(hp_);
        step_ += alpha * p_;
        r_ -= alpha * hp_;
        const double next = r_.squaredNorm();
        p_ = r_ + (next / rr) * p_;
        rr = next;
      }
      // Backtracking on g along -step.
      const double before = objective(theta, c);
      double a = 1;
      for (; a > 1e-8; a *= 0.5) {
        trial_ = theta - a * step_;
        if (objective(trial_, c) <= before - 1e-4 * a * grad_.dot(step_)) break;
      }
      if (a <= 1e-8) return;  // no descent left at this precision
      theta = trial_;
    }
  }

 private:
  template <class V>
  double objective(const V& theta, double c) {
    xv_.noalias() = x_ * theta;
    double s = 0;
    for (Eigen::Index i = 0; i < xv_.size(); ++i) s += log1pexp(-y_[i] * xv_[i]);
    return s + lin_.dot(theta) + 0.5 * c * theta.squaredNorm();
  }

  MatrixXd x_;
  VectorXd y_;
  double reg_, scale_;
  VectorXd lin_, grad_, step_, r_, p_, hp_, trial_, z_, w_, xv_;
};

struct Config {
  std::string problem = "ls";
  int workers = 8;
  double rho = 0;  // 0: the problem's default
  double lambda = 1;
  int iterations = 100;
  std::string chain = "static";
  int coherence = 10;
  std::uint64_t seed = 1;
  std::size_t train_limit = 0;
  std::size_t synthetic = 0;
  std::string data = train::default_data_dir;
  double expect_below = 0;  // > 0: exit 1 unless the last worst error is below it
};

// The shards [begin, end) of `rows` for worker r of n.
std::pair<Eigen::Index, Eigen::Index> shard(Eigen::Index rows, int r, int n) {
  return {rows * r / n, rows * (r + 1) / n};
}

// Runs the iterations; err[t][r] is worker r's relative objective error
// after iteration t. F(θ) - F* comes from objective_gap(θ).
template <class Chain, class Make, class Gap>
void run(const Config& c, Chain chain, Make make, Gap gap, std::vector<std::vector<double>>& err,
         std::vector<std::uint64_t>& bytes) {
  err.assign(static_cast<std::size_t>(c.iterations), std::vector<double>(std::size_t(c.workers)));
  std::vector<std::vector<std::uint64_t>> sent(static_cast<std::size_t>(c.iterations),
                                               std::vector<std::uint64_t>(std::size_t(c.workers)));
  dssync::InProcWorld(c.workers).run([&](dssync::InProcTransport& t) {
    auto problem = make(t.rank());
    std::vector<double> theta(problem.dim(), 0.0);
    dssync::GADMM<dssync::InProcTransport, Chain> g(t, problem.dim(),
                                                    {.rho = c.rho, .seed = c.seed}, chain);
    for (int k = 0; k < c.iterations; ++k) {
      g.iterate(problem, std::span<double>(theta));
      err[std::size_t(k)][std::size_t(t.rank())] = gap(theta);
      sent[std::size_t(k)][std::size_t(t.rank())] = g.stats().bytes_sent;
    }
  });
  bytes.assign(static_cast<std::size_t>(c.iterations), 0);
  for (std::size_t k = 0; k < sent.size(); ++k)
    for (auto b : sent[k]) bytes[k] += b;
}

template <class Chain>
int solve(const Config& c, Chain chain, const train::Split& split) {
  const Rows all = select(split, c.problem, c.train_limit);
  const Eigen::Index rows = all.x.rows(), d = all.x.cols();
  if (rows < c.workers) {
    std::fprintf(stderr, "%lld rows for %d workers\n", static_cast<long long>(rows), c.workers);
    return 2;
  }
  const double reg = c.lambda / c.workers;
  std::vector<std::vector<double>> err;
  std::vector<std::uint64_t> bytes;
  if (c.problem == "ls") {
    std::vector<RidgeShard> shards;
    MatrixXd gram = MatrixXd::Zero(d, d), xty = MatrixXd::Zero(d, all.y.cols());
    for (int r = 0; r < c.workers; ++r) {
      const auto [b, e] = shard(rows, r, c.workers);
      shards.emplace_back(all.x.middleRows(b, e - b), all.y.middleRows(b, e - b), reg);
      gram += shards.back().gram();
      xty += shards.back().xty();
    }
    // F(Θ) - F* = 1/2 tr((Θ - Θ*)ᵀ (XᵀX + λI) (Θ - Θ*)): a quadratic's gap,
    // without the cancellation of F(Θ) - F*.
    const MatrixXd a = gram + c.lambda * MatrixXd::Identity(d, d);
    const MatrixXd best = a.llt().solve(xty);
    const double fbest =
        0.5 * (all.x * best - all.y).squaredNorm() + 0.5 * c.lambda * best.squaredNorm();
    run(
        c, chain, [&](int r) { return shards[std::size_t(r)]; },
        [&](const std::vector<double>& theta) {
          const MatrixXd diff = ConstMap(theta.data(), d, all.y.cols()) - best;
          return 0.5 * (diff.transpose() * a * diff).trace() / fbest;
        },
        err, bytes);
  } else {
    std::vector<LogisticShard> shards;
    for (int r = 0; r < c.workers; ++r) {
      const auto [b, e] = shard(rows, r, c.workers);
      shards.emplace_back(all.x.middleRows(b, e - b), all.y.col(0).segment(b, e - b), reg);
    }
    // The centralized optimum: Newton-CG on all rows, with no linear term.
    LogisticShard central(all.x, all.y.col(0), c.lambda);
    VectorXd best = VectorXd::Zero(d), z;
    central.minimize(best, c.lambda);
    const double fbest = central.loss(best, z);
    run(
        c, chain, [&](int r) { return shards[std::size_t(r)]; },
        [&](const std::vector<double>& theta) {
          VectorXd scratch;
          const Eigen::Map<const VectorXd> t(theta.data(), d);
          return (central.loss(t, scratch) - fbest) / fbest;
        },
        err, bytes);
  }
  std::printf("iteration,worst_error,mean_error,bytes\n");
  for (std::size_t k = 0; k < err.size(); ++k) {
    double worst = 0, mean = 0;
    for (double e : err[k]) {
      worst = std::max(worst, e);
      mean += e / static_cast<double>(err[k].size());
    }
    std::printf("%zu,%.6e,%.6e,%llu\n", k + 1, worst, mean,
                static_cast<unsigned long long>(bytes[k]));
  }
  if (c.expect_below > 0) {
    const double last = *std::max_element(err.back().begin(), err.back().end());
    if (!(last < c.expect_below)) {
      std::fprintf(stderr, "the worst error after %d iterations is %g, not below %g\n",
                   c.iterations, last, c.expect_below);
      return 1;
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "GADMM and D-GADMM on Fashion-MNIST: ridge least squares, or sandal against "
      "sneaker by logistic regression"};
  Config c;
  app.add_option("--problem", c.problem, "ls or logistic")
      ->capture_default_str()
      ->check(CLI::IsMember({"ls", "logistic"}));
  app.add_option("--workers", c.workers, "workers (threads), the chain's length")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--rho", c.rho, "the ADMM penalty (default: 1000 for ls, 10 for logistic)");
  app.add_option("--lambda", c.lambda, "the L2 regularization of the whole objective")
      ->capture_default_str();
  app.add_option("--iterations", c.iterations)->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--chain", c.chain, "static (GADMM) or random (D-GADMM)")
      ->capture_default_str()
      ->check(CLI::IsMember({"static", "random"}));
  app.add_option("--coherence", c.coherence, "random: a new chain every this many iterations")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--seed", c.seed, "the random chains' seed")->capture_default_str();
  app.add_option("--train-limit", c.train_limit, "use only the first N training images (0: all)")
      ->capture_default_str();
  app.add_option("--synthetic", c.synthetic, "N random images instead of the files (tests)");
  app.add_option("--data", c.data, "directory with the four Fashion-MNIST IDX .gz files")
      ->capture_default_str();
  app.add_option("--expect-below", c.expect_below,
                 "exit 1 unless the last worst relative error is below this");
  CLI11_PARSE(app, argc, argv);
  if (c.rho == 0) c.rho = c.problem == "ls" ? 1000 : 10;
  try {
    const train::Split split =
        c.synthetic ? synthetic(c.synthetic, c.seed) : train::load_dataset(c.data).train;
    if (c.chain == "static") return solve(c, dssync::StaticChain{}, split);
    return solve(c, dssync::RandomChain{c.coherence}, split);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
}
