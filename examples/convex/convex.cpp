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
// f_n, its shard's loss plus λ/(2N) ||θ||². Every --every iterations it prints,
// as CSV, the objective's relative error (F(θ_n) - F*) / F* of the worst and
// of the mean worker against the centralized optimum, the bytes all workers
// sent so far and, on the simulator (--transport sim), the virtual seconds.
//
//   --method gadmm | dgadmm   GADMM on a static / random chain
//   --method gd               gradient descent, gradients by AllReduceSync
//   --method dsgd | gossip    a gradient step, then DSSync (pairs) or
//                             GossipSync (ring) averaging of the models
// (docs/gadmm.md compares them.)
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
#ifdef DSSYNC_CONVEX_WITH_SIM
#include <dssync/transport/sim.hpp>
#endif

#include "../cli_checks.hpp"
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

  // ∇f(Θ) = (XᵀX + reg I) Θ - XᵀY, for the gradient methods.
  void gradient(std::span<const double> theta, std::span<double> out) {
    const ConstMap t(theta.data(), features_, outputs_);
    Map g(out.data(), features_, outputs_);
    g.noalias() = gram_ * t;
    g += reg_ * t - xty_;
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

  // ∇ of the shard's loss + reg/2 ||θ||² (no linear term), for the gradient
  // methods.
  void gradient(std::span<const double> theta, std::span<double> out) {
    const auto d = static_cast<Eigen::Index>(theta.size());
    const Eigen::Map<const VectorXd> t(theta.data(), d);
    z_.noalias() = x_ * t;
    for (Eigen::Index i = 0; i < z_.size(); ++i) z_[i] = -y_[i] * sigmoid(-y_[i] * z_[i]);
    Eigen::Map<VectorXd> g(out.data(), d);
    g.noalias() = x_.transpose() * z_;
    g += reg_ * t;
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
  std::string method = "gadmm";
  int workers = 8;
  double rho = 0;  // 0: the problem's default
  double lambda = 1;
  int iterations = 100;
  int every = 1;  // evaluate the objective every this many iterations
  std::string chain = "static";
  int coherence = 10;
  std::uint64_t seed = 1;
  std::size_t train_limit = 0;
  std::size_t synthetic = 0;
  std::string data = train::default_data_dir;
  double expect_below = 0;  // > 0: exit 1 unless the last worst error is below it
  std::string transport = "inproc";
  double sim_gbit = 1, sim_alpha = 5e-6, sim_oversubscription = 4, sim_compute = 0;
  int sim_hosts_per_rack = 8;
};

// The shards [begin, end) of `rows` for worker r of n.
std::pair<Eigen::Index, Eigen::Index> shard(Eigen::Index rows, int r, int n) {
  return {rows * r / n, rows * (r + 1) / n};
}

// What the runs record at each evaluated iteration, per worker.
struct Records {
  std::vector<int> iteration;               // 1-based
  std::vector<std::vector<double>> err;     // [eval][rank]: relative objective error
  std::vector<std::vector<std::uint64_t>> sent;  // [eval][rank]: bytes this rank sent so far
  std::vector<std::vector<double>> clock;   // [eval][rank]: virtual seconds (sim), else 0
};

template <class T>
double clock_of(const T& t) {
  if constexpr (requires { t.now(); })
    return t.now();
  else
    return 0;
}

// One worker's iterations of the chosen method, recording into `rec` at the
// evaluated iterations (every c.every-th and the last).
//  gadmm, dgadmm: GADMM on a static or random chain, from θ = 0.
//  gd:     θ ← θ - (1/L) ∇F(θ), ∇F/N by AllReduceSync's average of the
//          workers' gradients (so the step is N/L on the average); every
//          worker holds the same θ.
//  dsgd:   θ_n ← θ_n - (N/L) ∇f_n(θ_n), then DS-Sync (groups of 2) averages
//          the models: decentralized GD with a constant step.
//  gossip: the same gradient step, then GossipSync on a ring averages each
//          model with its two neighbours'.
template <class Transport, class Chain, class Problem, class Gap>
void worker(Transport& t, const Config& c, Chain chain, Problem& problem, Gap gap, double L,
            Records& rec) {
  const auto me = static_cast<std::size_t>(t.rank());
  std::vector<double> theta(problem.dim(), 0.0), grad(problem.dim(), 0.0);
  const double step = c.workers / L;
  std::size_t e = 0;
  auto record = [&](int k, std::uint64_t bytes) {
    if ((k + 1) % c.every != 0 && k + 1 != c.iterations) return;
    rec.err[e][me] = gap(theta);
    rec.sent[e][me] = bytes;
    rec.clock[e][me] = clock_of(t);
    ++e;
  };
  auto compute = [&] {
    if constexpr (requires { t.compute(0.0); })
      t.compute(c.sim_compute);
  };
  auto descend = [&](auto& sync) {
    for (int k = 0; k < c.iterations; ++k) {
      problem.gradient(theta, grad);
      for (std::size_t i = 0; i < theta.size(); ++i) theta[i] -= step * grad[i];
      compute();
      sync.step(theta);
      record(k, sync.stats().bytes_sent);
    }
  };
  if (c.method == "gadmm" || c.method == "dgadmm") {
    dssync::GADMM<Transport, Chain> g(t, problem.dim(), {.rho = c.rho, .seed = c.seed}, chain);
    for (int k = 0; k < c.iterations; ++k) {
      compute();
      g.iterate(problem, std::span<double>(theta));
      record(k, g.stats().bytes_sent);
    }
  } else if (c.method == "gd") {
    dssync::AllReduceSync<Transport> sync(t);
    for (int k = 0; k < c.iterations; ++k) {
      problem.gradient(theta, grad);
      compute();
      sync.step(grad);  // the average gradient, ∇F / N
      for (std::size_t i = 0; i < theta.size(); ++i) theta[i] -= step * grad[i];
      record(k, sync.stats().bytes_sent);
    }
  } else if (c.method == "dsgd") {
    dssync::DSSync<Transport> sync(t, {.group_size = 2, .seed = c.seed});
    descend(sync);
  } else {
    dssync::GossipSync<Transport> sync(t);
    descend(sync);
  }
}

template <class Chain, class Make, class Gap>
void run(const Config& c, Chain chain, Make make, Gap gap, double L, Records& rec) {
  const auto n = static_cast<std::size_t>(c.workers);
  for (int k = 0; k < c.iterations; ++k)
    if ((k + 1) % c.every == 0 || k + 1 == c.iterations) rec.iteration.push_back(k + 1);
  rec.err.assign(rec.iteration.size(), std::vector<double>(n));
  rec.sent.assign(rec.iteration.size(), std::vector<std::uint64_t>(n));
  rec.clock.assign(rec.iteration.size(), std::vector<double>(n));
  if (c.transport == "sim") {
#ifdef DSSYNC_CONVEX_WITH_SIM
    const dssync::SimOptions o{
        .alpha = c.sim_alpha,
        .bandwidth = c.sim_gbit * 1e9 / 8,
        .hosts_per_rack = c.sim_hosts_per_rack,
        .uplink_bandwidth = c.sim_hosts_per_rack > 0 ? c.sim_hosts_per_rack * c.sim_gbit * 1e9 / 8 /
                                                           c.sim_oversubscription
                                                     : 0,
        .stack_bytes = 1 << 20,  // Eigen keeps GEMM blocks on the stack
    };
    dssync::SimWorld(c.workers, o).run([&](dssync::SimTransport& t) {
      auto problem = make(t.rank());
      worker(t, c, chain, problem, gap, L, rec);
    });
#else
    throw dssync::configuration_error("this build has no simulated transport");
#endif
  } else {
    dssync::InProcWorld(c.workers).run([&](dssync::InProcTransport& t) {
      auto problem = make(t.rank());
      worker(t, c, chain, problem, gap, L, rec);
    });
  }
}

// The largest eigenvalue of the symmetric positive semi-definite a, by power
// iteration from a fixed start until it changes by less than 1e-12.
double largest_eigenvalue(const MatrixXd& a) {
  VectorXd v = VectorXd::Ones(a.rows()).normalized(), w;
  double value = 0;
  for (int it = 0; it < 10000; ++it) {
    w.noalias() = a * v;
    const double next = v.dot(w);
    v = w.normalized();
    if (std::abs(next - value) <= 1e-12 * next) return next;
    value = next;
  }
  return value;
}

// The largest of `errors`, NaN if any is: a diverged worker must not vanish
// from the worst (std::max(w, NaN) keeps w) nor pass --expect-below.
double worst_of(const std::vector<double>& errors) {
  double worst = 0;
  for (const double e : errors) {
    if (std::isnan(e)) return e;
    if (e > worst) worst = e;
  }
  return worst;
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
  Records rec;
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
    // F's Hessian is XᵀX + λI on each output's column.
    const double L = c.method == "gadmm" || c.method == "dgadmm" ? 1 : largest_eigenvalue(a);
    run(
        c, chain, [&](int r) { return shards[std::size_t(r)]; },
        [&](const std::vector<double>& theta) {
          const MatrixXd diff = ConstMap(theta.data(), d, all.y.cols()) - best;
          return 0.5 * (diff.transpose() * a * diff).trace() / fbest;
        },
        L, rec);
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
    // F's Hessian is Xᵀ W X + λI with W's entries σ(1 - σ) at most 1/4.
    double L = 1;
    if (c.method != "gadmm" && c.method != "dgadmm") {
      MatrixXd gram = MatrixXd::Zero(d, d);
      gram.selfadjointView<Eigen::Lower>().rankUpdate(all.x.transpose(), 0.25);
      gram = gram.selfadjointView<Eigen::Lower>();
      L = largest_eigenvalue(gram) + c.lambda;
    }
    run(
        c, chain, [&](int r) { return shards[std::size_t(r)]; },
        [&](const std::vector<double>& theta) {
          VectorXd scratch;
          const Eigen::Map<const VectorXd> t(theta.data(), d);
          return (central.loss(t, scratch) - fbest) / fbest;
        },
        L, rec);
  }
  const bool sim = c.transport == "sim";
  std::printf(sim ? "iteration,worst_error,mean_error,bytes,virtual_seconds\n"
                  : "iteration,worst_error,mean_error,bytes\n");
  for (std::size_t k = 0; k < rec.err.size(); ++k) {
    const double worst = worst_of(rec.err[k]);
    double mean = 0, clock = 0;
    std::uint64_t bytes = 0;
    for (std::size_t r = 0; r < rec.err[k].size(); ++r) {
      mean += rec.err[k][r] / static_cast<double>(rec.err[k].size());
      bytes += rec.sent[k][r];
      clock = std::max(clock, rec.clock[k][r]);
    }
    std::printf("%d,%.6e,%.6e,%llu", rec.iteration[k], worst, mean,
                static_cast<unsigned long long>(bytes));
    if (sim) std::printf(",%.9f", clock);
    std::printf("\n");
  }
  if (c.expect_below > 0) {
    const double last = worst_of(rec.err.back());
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
  using namespace dssync_cli;
  app.add_option("--problem", c.problem, "ls or logistic")
      ->capture_default_str()
      ->check(CLI::IsMember({"ls", "logistic"}));
  app.add_option("--method", c.method,
                 "gadmm, dgadmm (GADMM on a random chain), gd (AllReduceSync), dsgd (gradient "
                 "step then DSSync groups of 2) or gossip (gradient step then GossipSync ring)")
      ->capture_default_str()
      ->check(CLI::IsMember({"gadmm", "dgadmm", "gd", "dsgd", "gossip"}));
  app.add_option("--every", c.every, "evaluate the objective every this many iterations")
      ->capture_default_str()
      ->check(FinitePositive);
  app.add_option("--transport", c.transport, "inproc (threads) or sim (virtual time)")
      ->capture_default_str()
      ->check(CLI::IsMember({"inproc", "sim"}));
  app.add_option("--sim-bandwidth", c.sim_gbit, "sim: host link, Gbit/s")
      ->capture_default_str()
      ->check(FinitePositive);
  app.add_option("--sim-alpha", c.sim_alpha, "sim: latency per message, s")
      ->capture_default_str()
      ->check(FiniteNonNegative);
  app.add_option("--sim-hosts-per-rack", c.sim_hosts_per_rack, "sim: hosts per rack, 0: one rack")
      ->capture_default_str()
      ->check(FiniteNonNegative);
  app.add_option("--sim-oversubscription", c.sim_oversubscription,
                 "sim: rack uplink = rack bandwidth / this")
      ->capture_default_str()
      ->check(FinitePositive);
  app.add_option("--sim-compute", c.sim_compute,
                 "sim: virtual compute seconds per iteration (0: communication only)")
      ->capture_default_str()
      ->check(FiniteNonNegative);
  app.add_option("--workers", c.workers, "workers (threads), the chain's length")
      ->capture_default_str()
      ->check(FinitePositive);
  // 0 stays the default: scripts/studies/gadmm passes it to the methods
  // without a penalty.
  app.add_option("--rho", c.rho, "the ADMM penalty (0 or not given: 1000 for ls, 10 for logistic)")
      ->check(FiniteNonNegative);
  // Above 0: the ridge optimum's Cholesky factor needs XᵀX + λI definite,
  // and a separable logistic problem has no minimum without it.
  app.add_option("--lambda", c.lambda, "the L2 regularization of the whole objective, above 0")
      ->capture_default_str()
      ->check(FinitePositive);
  app.add_option("--iterations", c.iterations)->capture_default_str()->check(FinitePositive);
  app.add_option("--chain", c.chain, "static (GADMM) or random (D-GADMM)")
      ->capture_default_str()
      ->check(CLI::IsMember({"static", "random"}));
  app.add_option("--coherence", c.coherence, "random: a new chain every this many iterations")
      ->capture_default_str()
      ->check(FinitePositive);
  app.add_option("--seed", c.seed, "the random chains' seed")
      ->capture_default_str()
      ->check(NotNegative);
  app.add_option("--train-limit", c.train_limit, "use only the first N training images (0: all)")
      ->capture_default_str()
      ->check(NotNegative);
  app.add_option("--synthetic", c.synthetic, "N random images instead of the files (tests)")
      ->check(NotNegative);
  app.add_option("--data", c.data, "directory with the four Fashion-MNIST IDX .gz files")
      ->capture_default_str();
  app.add_option("--expect-below", c.expect_below,
                 "exit 1 unless the last worst relative error is below this (0: no check)")
      ->check(FiniteNonNegative);
  CLI11_PARSE(app, argc, argv);
  // Each finite, the uplink's bytes/s need not be.
  if (!std::isfinite(c.sim_gbit * 1e9 / 8 * std::max(1, c.sim_hosts_per_rack) /
                     c.sim_oversubscription)) {
    std::fprintf(stderr, "--sim-bandwidth is too large for the uplinks' bytes/s\n");
    return 2;
  }
  if (c.rho == 0) c.rho = c.problem == "ls" ? 1000 : 10;
  try {
    const train::Split split =
        c.synthetic ? synthetic(c.synthetic, c.seed) : train::load_dataset(c.data).train;
    if (c.method == "dgadmm") c.chain = "random";
    if (c.chain == "static") return solve(c, dssync::StaticChain{}, split);
    return solve(c, dssync::RandomChain{c.coherence}, split);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
}
