// SFB's reconstruction kernels, one thread: what a rank spends rebuilding a
// layer's mean gradient from the gathered factors, g = alpha U Vᵀ with
// Σk = 256 (8 ranks x 32 samples), for the training example's MLP layers
// (W1 256 x 784, W2 128 x 256). Beside each other in one run:
//
//   blocked           the library's default, BlockedReconstruct (sync/sfb.hpp)
//   eigen             Eigen's GEMM, the training example's kernel until 2026-12-06
//   fused_<isa>       the example's FusedReconstruct (examples/train/reconstruct.hpp)
//                     in each instruction set this CPU runs: avx512, avx2, portable
//
// Counter GFLOPs: 2 rows cols k per rebuild over the time. Rows are
// "BM_Reconstruct/<kernel>/<rows>x<cols>". Run with
// --benchmark_enable_random_interleaving and repetitions (scripts/bench/inproc).

#include <benchmark/benchmark.h>

#include <Eigen/Core>

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include <dssync/sync/sfb.hpp>

#include "reconstruct.hpp"

namespace {

using Kernel = std::function<void(int, int, int, const float*, const float*, float, float*)>;

void rebuild(benchmark::State& state, const Kernel& kernel, int rows, int cols) {
  constexpr int k = 256;
  std::vector<float> u(static_cast<std::size_t>(rows) * k), v(static_cast<std::size_t>(cols) * k),
      g(static_cast<std::size_t>(rows) * cols);
  for (std::size_t i = 0; i < u.size(); ++i) u[i] = static_cast<float>(i % 7) * 0.125f;
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i % 5) * 0.25f;
  for (auto _ : state) {
    kernel(rows, cols, k, u.data(), v.data(), 0.125f, g.data());
    benchmark::DoNotOptimize(g.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOPs"] = benchmark::Counter(2.0 * rows * cols * k * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

void eigen(int rows, int cols, int k, const float* u, const float* v, float alpha, float* g) {
  using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>;
  Eigen::Map<Matrix> gt(g, cols, rows);
  gt.noalias() = alpha * (Eigen::Map<const Matrix>(v, cols, k) * Eigen::Map<const Matrix>(u, rows, k).transpose());
}

void register_all() {
  std::vector<std::pair<std::string, Kernel>> kernels = {{"blocked", dssync::BlockedReconstruct{}},
                                                         {"eigen", eigen}};
  for (const auto& isa : train::reconstruct_detail::available_isas())
    kernels.emplace_back(std::string("fused_") + isa.name, train::FusedReconstruct(isa));
  for (const auto& [name, kernel] : kernels)
    for (const auto& [rows, cols] : {std::pair{256, 784}, std::pair{128, 256}}) {
      const std::string id = "BM_Reconstruct/" + name + "/" + std::to_string(rows) + "x" + std::to_string(cols);
      benchmark::RegisterBenchmark(id.c_str(), [kernel = kernel, rows = rows, cols = cols](benchmark::State& s) {
        rebuild(s, kernel, rows, cols);
      })->Unit(benchmark::kMillisecond);
    }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
