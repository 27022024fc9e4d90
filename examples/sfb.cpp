// SFBSync: one fully connected layer's gradient sent as its sufficient
// factors. With a batch of k samples the layer's gradient is δ xᵀ summed over
// the samples, U Vᵀ with U (rows x k) the output errors and V (cols x k) the
// inputs; 4 ranks all-gather their U and V and each rebuilds the mean
// gradient, instead of all-reducing rows x cols numbers. Checked against the
// dense mean; the bytes of both ways are printed.
#include <dssync/dssync.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <span>
#include <vector>

constexpr int ranks = 4, rows = 64, cols = 128, k = 4;  // W is rows x cols, batch of k
constexpr std::size_t weights = rows * cols, total = weights + rows;  // W, then its bias

int main() {
  double worst = 0;
  std::uint64_t dense_bytes = 0, factor_bytes = 0, layer_bytes = 0;
  bool chose_factors = false;
  dssync::InProcWorld(ranks).run([&](dssync::InProcTransport& t) {
    // This rank's batch: U and V column-major, one column per sample.
    std::mt19937 gen(static_cast<unsigned>(t.rank()));
    std::uniform_real_distribution<float> u01(-1, 1);
    std::vector<float> u(rows * k), v(cols * k), gradient(total, 0.0f);
    for (float& x : u) x = u01(gen);
    for (float& x : v) x = u01(gen);
    for (int i = 0; i < rows; ++i) {  // the dense local gradient W = U Vᵀ, and the bias Σ δ
      for (int j = 0; j < cols; ++j)
        for (int s = 0; s < k; ++s) gradient[i * cols + j] += u[s * rows + i] * v[s * cols + j];
      for (int s = 0; s < k; ++s) gradient[weights + i] += u[s * rows + i];
    }
    std::vector<float> dense = gradient;

    const std::vector<dssync::SFBLayer> layers = {{.rows = rows, .cols = cols, .offset = 0}};
    const dssync::FactorView mine{.rows = rows, .cols = cols, .k = k, .u = u.data(), .v = v.data()};
    // Hybrid (the default): factors when Σk (rows + cols) < 2 rows cols: 16 x 192 < 2 x 8192.
    dssync::SFBSync<dssync::InProcTransport> sfb(t, layers);
    sfb.step(gradient, std::span(&mine, 1));  // W rebuilt from factors, the bias all-reduced
    dssync::SFBSync<dssync::InProcTransport> all_reduce(t, layers,
                                                        {.mode = dssync::SFBMode::dense});
    all_reduce.step(dense, {});  // the dense mean, for comparison

    if (t.rank() != 0) return;
    for (std::size_t i = 0; i < total; ++i)
      worst = std::max(worst, double(std::abs(gradient[i] - dense[i])));
    chose_factors = sfb.stats().layers[0].last_factors;
    factor_bytes = sfb.stats().bytes_sent;
    layer_bytes = sfb.stats().layers[0].factor_bytes;
    dense_bytes = all_reduce.stats().bytes_sent;
  });
  std::printf(
      "rank 0 sent %llu bytes in dense mode, %llu with factors (%s); "
      "largest difference from the dense mean %.1e\n",
      static_cast<unsigned long long>(dense_bytes), static_cast<unsigned long long>(factor_bytes),
      chose_factors ? "the hybrid chose factors" : "the hybrid chose dense", worst);
  // A ring all-gather: each rank passes on every rank's factors but one.
  const std::uint64_t expected = (ranks - 1) * k * (rows + cols) * sizeof(float);
  std::printf("the layer's factors: %llu bytes (closed form (P-1) k (rows+cols) 4 = %llu)\n",
              static_cast<unsigned long long>(layer_bytes),
              static_cast<unsigned long long>(expected));
  return chose_factors && worst < 1e-5 && layer_bytes == expected ? 0 : 1;
}
