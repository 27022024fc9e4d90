// GaiaSync: training across data centers. 8 ranks as threads in 4 data
// centers of 2 minimize f_r(x) = |x - a_r|^2 / 2 with local gradient steps.
// Each data center averages every step; across data centers only the
// updates that are significant (1 % of the value) travel.
//
// Checks: at threshold 0 GaiaSync is the world's average, so it follows BSP
// (AllReduceSync on parameters) to rounding. At 1 %, with the same a_r in
// every data center (iid data) it reaches the optimum sending a small part
// of threshold 0's wide-area bytes; with a_r that differ between data
// centers (skewed data) each data center keeps pulling toward its own
// optimum, the updates stay significant, and the saving is gone.
#include <dssync/dssync.hpp>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

constexpr int ranks = 8, steps = 200;
constexpr std::size_t dims = 10000;
const std::vector<std::string> dcs = {"a", "a", "b", "b", "c", "c", "d", "d"};

// Rank r's optimum for element i; `skew` moves each data center's apart.
float target(int r, std::size_t i, float skew) {
  return 1.5f + 0.001f * static_cast<float>(i % 10) + skew * (static_cast<float>(r / 2) - 1.5f);
}

template <class Sync>
std::vector<float> train(dssync::InProcTransport& t, Sync& sync, float skew) {
  std::vector<float> x(dims, 0.0f);
  for (int s = 0; s < steps; ++s) {
    for (std::size_t i = 0; i < dims; ++i) x[i] -= 0.05f * (x[i] - target(t.rank(), i, skew));
    sync.step(x);
  }
  return x;
}

int main() {
  bool ok = true;
  for (const float skew : {0.0f, 1.0f}) {
    double gap_bsp = 0, gap_zero = 0, gap_gaia = 0, bytes_zero = 0, bytes_gaia = 0, significant = 0;
    dssync::InProcWorld(ranks).run([&](dssync::InProcTransport& t) {
      const std::vector<float> x0(dims, 0.0f);
      dssync::AllReduceSync<dssync::InProcTransport> all(t);
      const auto bsp = train(t, all, skew);
      dssync::GaiaSync<dssync::InProcTransport> zero(t, x0, dcs, {.threshold = 0});
      const auto exact = train(t, zero, skew);
      dssync::GaiaSync<dssync::InProcTransport> one(
          t, x0, dcs, {.threshold = 0.01, .schedule = dssync::GaiaSchedule::constant});
      const auto gaia = train(t, one, skew);
      if (t.rank() != 0) return;
      // The optimum of the sum: the mean of the targets, 1.5 + 0.001 (i mod 10).
      for (std::size_t i = 0; i < dims; ++i) {
        const double opt = 1.5 + 0.001 * static_cast<double>(i % 10);
        gap_bsp = std::max(gap_bsp, std::abs(bsp[i] - opt));
        gap_zero = std::max(gap_zero, std::abs(double(exact[i]) - bsp[i]));
        gap_gaia = std::max(gap_gaia, std::abs(gaia[i] - opt));
      }
      bytes_zero = static_cast<double>(zero.stats().wan_bytes);
      bytes_gaia = static_cast<double>(one.stats().wan_bytes);
      significant = one.stats().significant_fraction();
    });
    std::printf(
        "%s data: threshold 0 is BSP within %.1e; at 1 %% the largest distance from the "
        "optimum is %.4f (BSP %.4f), with %.1f %% of threshold 0's wide-area bytes "
        "(%.1f %% of entries significant)\n",
        skew == 0 ? "iid" : "skewed", gap_zero, gap_gaia, gap_bsp, 100 * bytes_gaia / bytes_zero,
        100 * significant);
    ok = ok && gap_zero < 1e-5 && gap_gaia < 0.05;
    if (skew == 0) ok = ok && bytes_gaia < 0.5 * bytes_zero;
  }
  return ok ? 0 : 1;
}
