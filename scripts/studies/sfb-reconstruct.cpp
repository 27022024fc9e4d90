// The reconstruction's CPU time, alone: what one rank of the training example
// spends per step rebuilding a layer's mean gradient from the gathered
// factors. KERNEL is "eigen" (Eigen's GEMM, the kernel the example passed
// until 2026-12-06) or one instruction set of the example's FusedReconstruct
// (examples/train/reconstruct.hpp): "avx512", "avx2" or "portable" (one the
// CPU lacks prints nothing). Built by scripts/studies/sfb with the Release
// build's flags (-O3 -DNDEBUG, no -march), one thread, as dssync_train is.
//
//   sfb-reconstruct KERNEL ROWS COLS K REPS
//     ->  "kernel,rows,cols,k,reps,median_ms,min_ms,check"
#include <Eigen/Core>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "reconstruct.hpp"

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: sfb-reconstruct KERNEL ROWS COLS K REPS\n");
    return 2;
  }
  const std::string kernel = argv[1];
  const int rows = std::atoi(argv[2]), cols = std::atoi(argv[3]), k = std::atoi(argv[4]),
            reps = std::atoi(argv[5]);
  std::vector<float> u(static_cast<std::size_t>(rows) * k), v(static_cast<std::size_t>(cols) * k),
      g(static_cast<std::size_t>(rows) * cols);
  for (std::size_t i = 0; i < u.size(); ++i) u[i] = static_cast<float>(i % 7) * 0.125f;
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i % 5) * 0.25f;
  std::function<void()> rebuild;
  if (kernel == "eigen") {
    using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>;
    rebuild = [&] {
      Eigen::Map<Matrix> gt(g.data(), cols, rows);
      gt.noalias() = 0.125f * (Eigen::Map<const Matrix>(v.data(), cols, k) *
                               Eigen::Map<const Matrix>(u.data(), rows, k).transpose());
    };
  } else {
    const auto isas = train::reconstruct_detail::available_isas();
    const auto isa = std::find_if(isas.begin(), isas.end(), [&](const auto& i) { return i.name == kernel; });
    if (isa == isas.end()) return 0;
    rebuild = [&, fused = train::FusedReconstruct(*isa)] {
      fused(rows, cols, k, u.data(), v.data(), 0.125f, g.data());
    };
  }
  std::vector<double> ms;
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    rebuild();
    const auto took = std::chrono::steady_clock::now() - start;
    ms.push_back(std::chrono::duration<double, std::milli>(took).count());
  }
  std::sort(ms.begin(), ms.end());
  std::printf("%s,%d,%d,%d,%d,%.4f,%.4f,%g\n", kernel.c_str(), rows, cols, k, reps, ms[ms.size() / 2],
              ms.front(), static_cast<double>(g[g.size() / 2]));
  return 0;
}
