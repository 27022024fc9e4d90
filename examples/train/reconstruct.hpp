// The training example's SFB reconstruction kernel: g = alpha U Vᵀ, with the
// same bits on every x86-64 CPU, whatever the build's flags.
//
// Each element is a chain of fused multiply-adds over the factors in order
// t = 0..k-1, started from zero and scaled by alpha once at the end:
//   g[i][j] = alpha * fma(u[k-1][i], v[k-1][j], ... fma(u[0][i], v[0][j], 0))
// A fused multiply-add rounds once, so the chain has one exact result, and
// the kernel computes it with AVX-512 or AVX2 instructions where the CPU has
// them (chosen at run time) and with std::fma elsewhere. The bits thus depend
// neither on the instruction set nor on where the buffers start, unlike a
// GEMM whose blocking follows the vector width (Eigen's, built for the CPU,
// can end a seed a few units of the fourth digit apart from one process run
// to the next), and the portable build runs at the speed of one built with
// -march=native. docs/design.md, decision 12, says why the example passes
// this kernel and not Eigen's GEMM.
//
// Layouts as SFBSync passes them: U column-major rows x k (factor t's column
// at u + t rows), V column-major cols x k, g row-major rows x cols.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define DSSYNC_EXAMPLE_X86_DISPATCH 1
#endif

namespace train {

namespace reconstruct_detail {

// A tile is mr rows x nr columns of g: out[i nr + j] = the fma chain over t of
// up[t mr + i] * vp[t nr + j] (the packed panels, zero-padded).
constexpr int mr = 6;
using Tile = void (*)(int k, const float* up, const float* vp, float* out);

inline void tile_portable(int k, const float* up, const float* vp, float* out) {
  constexpr int nr = 16;
  float acc[mr * nr] = {};
  for (int t = 0; t < k; ++t)
    for (int i = 0; i < mr; ++i)
      for (int j = 0; j < nr; ++j)
        acc[i * nr + j] = std::fma(up[t * mr + i], vp[t * nr + j], acc[i * nr + j]);
  std::copy(acc, acc + mr * nr, out);
}

#ifdef DSSYNC_EXAMPLE_X86_DISPATCH
// The two vector tiles differ only in their intrinsics and width. Each needs
// its own target attribute (the portable build compiles neither instruction
// set in), which a template cannot take from a parameter, so they are
// written out twice.
// 6 x 32: twelve 16-wide accumulators.
[[gnu::target("avx512f")]] inline void tile_avx512(int k, const float* up, const float* vp,
                                                   float* out) {
  __m512 acc[mr][2];
  for (auto& row : acc) row[0] = row[1] = _mm512_setzero_ps();
  for (int t = 0; t < k; ++t) {
    const __m512 v0 = _mm512_loadu_ps(vp + t * 32), v1 = _mm512_loadu_ps(vp + t * 32 + 16);
    for (int i = 0; i < mr; ++i) {
      const __m512 a = _mm512_set1_ps(up[t * mr + i]);
      acc[i][0] = _mm512_fmadd_ps(a, v0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(a, v1, acc[i][1]);
    }
  }
  for (int i = 0; i < mr; ++i) {
    _mm512_storeu_ps(out + i * 32, acc[i][0]);
    _mm512_storeu_ps(out + i * 32 + 16, acc[i][1]);
  }
}

// 6 x 16: twelve 8-wide accumulators.
[[gnu::target("avx2,fma")]] inline void tile_avx2(int k, const float* up, const float* vp,
                                                  float* out) {
  __m256 acc[mr][2];
  for (auto& row : acc) row[0] = row[1] = _mm256_setzero_ps();
  for (int t = 0; t < k; ++t) {
    const __m256 v0 = _mm256_loadu_ps(vp + t * 16), v1 = _mm256_loadu_ps(vp + t * 16 + 8);
    for (int i = 0; i < mr; ++i) {
      const __m256 a = _mm256_broadcast_ss(up + t * mr + i);
      acc[i][0] = _mm256_fmadd_ps(a, v0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(a, v1, acc[i][1]);
    }
  }
  for (int i = 0; i < mr; ++i) {
    _mm256_storeu_ps(out + i * 16, acc[i][0]);
    _mm256_storeu_ps(out + i * 16 + 8, acc[i][1]);
  }
}
#endif

struct Isa {
  const char* name;
  Tile tile;
  int nr;  // the tile's columns
};

inline Isa portable_isa() { return {"portable", tile_portable, 16}; }

// Every instruction set this CPU runs, widest first (the tests compare them).
inline std::vector<Isa> available_isas() {
  std::vector<Isa> all;
#ifdef DSSYNC_EXAMPLE_X86_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) all.push_back({"avx512", tile_avx512, 32});
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    all.push_back({"avx2", tile_avx2, 16});
#endif
  all.push_back(portable_isa());
  return all;
}

// The widest the CPU runs; "portable" off x86-64.
inline Isa best_isa() { return available_isas().front(); }

}  // namespace reconstruct_detail

// The kernel SFBSync calls (its reconstruct_kernel concept). It packs V into
// column panels once a call and U into row panels as it goes, in buffers that
// grow to the largest layer and are then reused: no allocation in the steady
// state. One object serves one thread at a time (SFBSync calls its kernel
// from the caller's thread only).
class FusedReconstruct {
 public:
  FusedReconstruct() : isa_(reconstruct_detail::best_isa()) {}
  explicit FusedReconstruct(reconstruct_detail::Isa isa) : isa_(isa) {}

  const char* isa() const noexcept { return isa_.name; }

  void operator()(int rows, int cols, int k, const float* u, const float* v, float alpha,
                  float* g) const {
    using reconstruct_detail::mr;
    const int nr = isa_.nr;
    const auto panels = static_cast<std::size_t>((cols + nr - 1) / nr);
    const auto K = static_cast<std::size_t>(k);
    vp_.resize(std::max(vp_.size(), panels * K * static_cast<std::size_t>(nr)));
    up_.resize(std::max(up_.size(), K * mr));
    out_.resize(static_cast<std::size_t>(mr * nr));
    // V's panel p holds columns p nr .. p nr + nr - 1, factor after factor.
    for (std::size_t p = 0; p < panels; ++p) {
      const int j0 = static_cast<int>(p) * nr, width = std::min(nr, cols - j0);
      float* panel = vp_.data() + p * K * static_cast<std::size_t>(nr);
      for (std::size_t t = 0; t < K; ++t) {
        const float* src = v + t * static_cast<std::size_t>(cols) + static_cast<std::size_t>(j0);
        float* dst = panel + t * static_cast<std::size_t>(nr);
        std::copy(src, src + width, dst);
        std::fill(dst + width, dst + nr, 0.0f);
      }
    }
    for (int i0 = 0; i0 < rows; i0 += mr) {
      const int height = std::min(mr, rows - i0);
      for (std::size_t t = 0; t < K; ++t) {
        const float* src = u + t * static_cast<std::size_t>(rows) + static_cast<std::size_t>(i0);
        float* dst = up_.data() + t * mr;
        std::copy(src, src + height, dst);
        std::fill(dst + height, dst + mr, 0.0f);
      }
      for (std::size_t p = 0; p < panels; ++p) {
        const int j0 = static_cast<int>(p) * nr, width = std::min(nr, cols - j0);
        isa_.tile(k, up_.data(), vp_.data() + p * K * static_cast<std::size_t>(nr), out_.data());
        for (int i = 0; i < height; ++i) {
          float* row = g + static_cast<std::size_t>(i0 + i) * static_cast<std::size_t>(cols) +
                       static_cast<std::size_t>(j0);
          const float* acc = out_.data() + i * nr;
          for (int j = 0; j < width; ++j) row[j] = alpha * acc[j];
        }
      }
    }
  }

 private:
  reconstruct_detail::Isa isa_;
  mutable std::vector<float> vp_, up_, out_;
};

}  // namespace train
