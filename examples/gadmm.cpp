// GADMM: least squares split across 4 workers on a chain, each solving its own
// small problem in plain C++; every worker reaches the centralized solution
// while talking only to its chain neighbours. The local solver is what a user
// writes: any type with dim() and solve() (the dssync::admm_problem concept).
#include <dssync/dssync.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <span>
#include <vector>

constexpr int workers = 4, rows = 25, iterations = 40;

// f(θ) = ||A θ - y||² / 2 over this worker's rows of y = θ0 a0 + θ1 a1 + noise,
// kept as the 2 x 2 matrix AᵀA = [p q; q r] and the vector Aᵀy = (s, t).
struct LeastSquares {
  double p = 0, q = 0, r = 0, s = 0, t = 0;
  explicit LeastSquares(int worker) {
    std::mt19937_64 gen(static_cast<unsigned>(worker));
    std::uniform_real_distribution<double> u(-1, 1);
    for (int n = 0; n < rows; ++n) {
      const double a0 = u(gen), a1 = u(gen), y = 1.5 * a0 - 2.0 * a1 + 0.1 * u(gen);
      p += a0 * a0, q += a0 * a1, r += a1 * a1, s += a0 * y, t += a1 * y;
    }
  }
  std::size_t dim() const { return 2; }
  // argmin f(θ) + <mu, θ> + rho/2 Σ_m ||θ - θ_m||²:
  // (AᵀA + rho·neighbours·I) θ = Aᵀy - mu + rho·Σ_m θ_m, by Cramer's rule.
  void solve(std::span<const double> mu, std::span<const double> sum, int neighbours, double rho,
             std::span<double> theta) const {
    const double a = p + rho * neighbours, d = r + rho * neighbours;
    const double b0 = s - mu[0] + rho * sum[0], b1 = t - mu[1] + rho * sum[1];
    theta[0] = (d * b0 - q * b1) / (a * d - q * q);
    theta[1] = (a * b1 - q * b0) / (a * d - q * q);
  }
};
static_assert(dssync::admm_problem<LeastSquares>);

int main() {
  LeastSquares all(0);  // the centralized problem: everyone's AᵀA and Aᵀy summed
  for (int w = 1; w < workers; ++w) {
    const LeastSquares x(w);
    all.p += x.p, all.q += x.q, all.r += x.r, all.s += x.s, all.t += x.t;
  }
  std::vector<double> optimum(2), zero(2, 0.0);
  all.solve(zero, zero, 0, 1.0, std::span(optimum));  // no neighbours: argmin f

  std::vector<double> error(iterations * workers);  // max |θ - θ*| per iteration and worker
  std::vector<std::uint64_t> bytes(workers);
  dssync::InProcWorld(workers).run([&](dssync::InProcTransport& t) {
    const LeastSquares local(t.rank());
    dssync::GADMM<dssync::InProcTransport> gadmm(t, 2, {.rho = 10.0});  // StaticChain: 0-1-2-3
    std::vector<double> theta(2, 0.0);
    for (int it = 0; it < iterations; ++it) {
      gadmm.iterate(local, std::span(theta));  // heads solve, then tails, then the duals move
      error[it * workers + t.rank()] =
          std::max(std::abs(theta[0] - optimum[0]), std::abs(theta[1] - optimum[1]));
    }
    bytes[t.rank()] = gadmm.stats().bytes_sent;
  });

  for (int it = 0; it < iterations; ++it)
    std::printf(
        "iteration %2d: largest error over the workers %.2e\n", it + 1,
        *std::max_element(error.begin() + it * workers, error.begin() + (it + 1) * workers));
  // Every iteration each worker sends its θ (2 doubles) to each neighbour:
  // 2(N-1) messages; the first chain costs N-1 more.
  std::uint64_t sent = 0;
  for (std::uint64_t b : bytes) sent += b;
  const std::uint64_t expected = (2 * (workers - 1) * iterations + (workers - 1)) * 2 * 8;
  std::printf("bytes sent by all workers: %llu (closed form %llu)\n",
              static_cast<unsigned long long>(sent), static_cast<unsigned long long>(expected));
  const double last = *std::max_element(error.end() - workers, error.end());
  return last < 1e-8 && sent == expected ? 0 : 1;
}
