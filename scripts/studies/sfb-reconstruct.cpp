// The reconstruction's CPU time, alone: what one rank of the training example
// spent per step rebuilding a layer's mean gradient from the gathered factors
// with Eigen's GEMM, the example's kernel until 2026-12-06 (the records of
// docs/experiments/sfb-2026-12-04 and sfb-beside-2026-12-05). Built by
// scripts/studies/sfb with the Release build's flags (-O3 -DNDEBUG, no
// -march), one thread, as dssync_train is. The kernels of today, beside
// Eigen's, are measured by bench_sfb_kernels (benchmarks/inproc/sfb_kernels.cpp).
//
//   sfb-reconstruct ROWS COLS K REPS   ->  "rows,cols,k,reps,median_ms,min_ms"
#include <Eigen/Core>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: sfb-reconstruct ROWS COLS K REPS\n");
    return 2;
  }
  const int rows = std::atoi(argv[1]), cols = std::atoi(argv[2]), k = std::atoi(argv[3]),
            reps = std::atoi(argv[4]);
  using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>;
  using Map = Eigen::Map<Matrix>;
  using ConstMap = Eigen::Map<const Matrix>;
  std::vector<float> u(static_cast<std::size_t>(rows) * k), v(static_cast<std::size_t>(cols) * k),
      g(static_cast<std::size_t>(rows) * cols);
  for (std::size_t i = 0; i < u.size(); ++i) u[i] = static_cast<float>(i % 7) * 0.125f;
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i % 5) * 0.25f;
  std::vector<double> ms;
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    Map gt(g.data(), cols, rows);
    gt.noalias() = 0.125f * (ConstMap(v.data(), cols, k) * ConstMap(u.data(), rows, k).transpose());
    const auto took = std::chrono::steady_clock::now() - start;
    ms.push_back(std::chrono::duration<double, std::milli>(took).count());
  }
  std::sort(ms.begin(), ms.end());
  std::printf("%d,%d,%d,%d,%.4f,%.4f,%g\n", rows, cols, k, reps, ms[ms.size() / 2], ms.front(),
              static_cast<double>(g[g.size() / 2]));
  return 0;
}
