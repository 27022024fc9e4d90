// SFBSync (sufficient factor broadcasting with the per-layer hybrid) on real
// ranks (threads of an InProcWorld): the rebuilt gradient is the dense mean,
// bitwise on dyadic inputs and on every rank; the bytes of each layer and step
// are the closed forms for the example MLP's shapes; the hybrid's rule and its
// boundary; a short last batch; errors; no allocation once warm.

#include <doctest/doctest.h>

#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <span>
#include <string>
#include <vector>

#include "dssync/dssync.hpp"

#include "allocations.hpp"

namespace {

using dssync::AllReduceSync;
using dssync::FactorView;
using dssync::InProcTransport;
using dssync::InProcWorld;
using dssync::SFBLayer;
using dssync::SFBMode;
using dssync::SFBSync;

using namespace std::chrono_literals;

std::size_t sz(int i) { return static_cast<std::size_t>(i); }

InProcWorld make_world(int n) { return InProcWorld(n, {.timeout = 60s}); }

// A flat gradient: fully connected layers (rows x cols, row-major) and the
// biases or other tensors between them.
struct Model {
  std::vector<SFBLayer> layers;
  std::size_t total;
};

// The training example's 784-256-128-10 MLP: W1 b1 W2 b2 W3 b3.
Model mlp() {
  return {{{256, 784, 0}, {128, 256, 200960}, {10, 128, 233856}}, 235146};
}

// A small model whose layers the hybrid treats differently: a bias before the
// first layer, two adjacent layers, a gap, a layer at the end of a bias. The
// largest Σk each takes as factors: A 16x24: 767/40 = 19; B 3x5: 29/8 = 3;
// C 12x12: 287/24 = 11.
Model small() { return {{{16, 24, 3}, {3, 5, 387}, {12, 12, 407}}, 555}; }

std::uint64_t hash(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// One rank's factors and the local gradient they stand for. Dyadic values
// (small multiples of 1/8 and 1/4) make every product and sum below exact.
struct Local {
  std::vector<std::vector<float>> u, v;
  std::vector<FactorView> views;
  std::vector<float> gradient;
};

Local make_local(const Model& m, int rank, std::span<const int> ks, bool dyadic, std::uint64_t seed,
                 float scale = 1.0f) {
  Local x;
  std::uint64_t h = hash(seed * 1000003 + static_cast<std::uint64_t>(rank));
  auto next = [&](int modulus, float unit) {
    h = hash(h);
    if (dyadic)
      return float(static_cast<int>(h % static_cast<std::uint64_t>(modulus)) - modulus / 2) * unit;
    return float(double(h >> 11) * 0x1.0p-53 * 2.0 - 1.0);
  };
  x.gradient.resize(m.total);
  for (auto& g : x.gradient) g = next(9, 0.125f);  // biases and gaps
  for (std::size_t l = 0; l < m.layers.size(); ++l) {
    const auto [rows, cols, offset] = m.layers[l];
    const int k = ks[l];
    auto& u = x.u.emplace_back(sz(rows * k));
    auto& v = x.v.emplace_back(sz(cols * k));
    for (auto& e : u) e = next(9, 0.125f) * scale;
    for (auto& e : v) e = next(7, 0.25f);
    for (int i = 0; i < rows; ++i)
      for (int j = 0; j < cols; ++j) {
        double s = 0;
        for (int t = 0; t < k; ++t) s += double(u[sz(i + t * rows)]) * double(v[sz(j + t * cols)]);
        x.gradient[offset + sz(i * cols + j)] = static_cast<float>(s);
      }
  }
  for (std::size_t l = 0; l < m.layers.size(); ++l)
    x.views.push_back({m.layers[l].rows, m.layers[l].cols, ks[l], x.u[l].data(), x.v[l].data()});
  return x;
}

std::vector<int> same_k(const Model& m, int k) { return std::vector<int>(m.layers.size(), k); }

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

double relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, n = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    d += (double(a[i]) - double(b[i])) * (double(a[i]) - double(b[i]));
    n += double(b[i]) * double(b[i]);
  }
  return std::sqrt(d / n);
}

// Every rank's gradient after one step of AllReduceSync (Average) on the local
// gradients: the dense mean.
std::vector<std::vector<float>> dense_mean(const Model& m, int n,
                                           std::vector<std::vector<int>> ks, bool dyadic,
                                           std::uint64_t seed) {
  std::vector<std::vector<float>> out(sz(n));
  make_world(n).run([&](InProcTransport& t) {
    Local x = make_local(m, t.rank(), ks[sz(t.rank())], dyadic, seed);
    AllReduceSync<InProcTransport> sync(t);
    sync.step(std::span<float>(x.gradient));
    out[sz(t.rank())] = std::move(x.gradient);
  });
  return out;
}

// Every rank's gradient after one SFB step in `mode`, and its stats.
struct Run {
  std::vector<std::vector<float>> gradient;
  std::vector<dssync::SFBStats> stats;
};
Run sfb_step(const Model& m, int n, std::vector<std::vector<int>> ks, bool dyadic,
             std::uint64_t seed, SFBMode mode) {
  Run r{std::vector<std::vector<float>>(sz(n)), std::vector<dssync::SFBStats>(sz(n))};
  make_world(n).run([&](InProcTransport& t) {
    Local x = make_local(m, t.rank(), ks[sz(t.rank())], dyadic, seed);
    SFBSync<InProcTransport> sync(t, m.layers, {.mode = mode});
    sync.step(std::span<float>(x.gradient), std::span<const FactorView>(x.views));
    r.gradient[sz(t.rank())] = std::move(x.gradient);
    r.stats[sz(t.rank())] = sync.stats();
  });
  return r;
}

std::vector<std::vector<int>> everyone(const Model& m, int n, int k) {
  return std::vector<std::vector<int>>(sz(n), same_k(m, k));
}

}  // namespace

// ------------------------------------------------------------ the mean --

TEST_CASE("The rebuilt gradient is the dense mean: bitwise on dyadic inputs, on every rank") {
  const Model m = small();
  for (int n : {4, 2}) {
    CAPTURE(n);
    const auto ks = everyone(m, n, 2);  // Σk = 2n <= 8: A and C as factors, B (limit 3) dense
    const auto want = dense_mean(m, n, ks, true, 7);
    for (SFBMode mode : {SFBMode::factors, SFBMode::hybrid, SFBMode::dense}) {
      CAPTURE(static_cast<int>(mode));
      const Run got = sfb_step(m, n, ks, true, 7, mode);
      for (int r = 0; r < n; ++r) {
        CAPTURE(r);
        CHECK(same_bits(got.gradient[sz(r)], want[sz(r)]));
        CHECK(same_bits(got.gradient[sz(r)], got.gradient[0]));
      }
      // The choices the rule makes at Σk = 2n.
      const auto& layers = got.stats[0].layers;
      CHECK(layers[0].last_factors == (mode != SFBMode::dense));
      CHECK(layers[1].last_factors == (mode == SFBMode::factors));
      CHECK(layers[2].last_factors == (mode == SFBMode::factors || mode == SFBMode::hybrid));
    }
  }
  // The dense mean by hand: (1/P) Σ_p G_p, exact in double and in float.
  const int n = 4;
  const auto ks = everyone(m, n, 3);
  const Run got = sfb_step(m, n, ks, true, 9, SFBMode::factors);
  std::vector<double> sum(m.total, 0.0);
  for (int r = 0; r < n; ++r) {
    const Local x = make_local(m, r, ks[sz(r)], true, 9);
    for (std::size_t i = 0; i < m.total; ++i) sum[i] += x.gradient[i];
  }
  std::vector<float> mean(m.total);
  for (std::size_t i = 0; i < m.total; ++i) mean[i] = static_cast<float>(sum[i] / n);
  CHECK(same_bits(got.gradient[0], mean));
}

TEST_CASE("On random inputs the rebuilt gradient is within 1e-6 of AllReduceSync's") {
  const Model m = small();
  for (int n : {3, 4}) {
    CAPTURE(n);
    const auto ks = everyone(m, n, 8);
    const auto want = dense_mean(m, n, ks, false, 21);
    for (SFBMode mode : {SFBMode::factors, SFBMode::hybrid}) {
      const Run got = sfb_step(m, n, ks, false, 21, mode);
      for (int r = 0; r < n; ++r) {
        CAPTURE(r);
        CHECK(relative_difference(got.gradient[sz(r)], want[sz(r)]) < 1e-6);
        CHECK(same_bits(got.gradient[sz(r)], got.gradient[0]));
      }
    }
    // Dense mode is AllReduceSync: the same bits and the same bytes.
    const Run dense = sfb_step(m, n, ks, false, 21, SFBMode::dense);
    for (int r = 0; r < n; ++r) CHECK(same_bits(dense.gradient[sz(r)], want[sz(r)]));
    CHECK(dense.stats[0].k_bytes == 0);
    CHECK(dense.stats[0].bytes_sent == dense.stats[0].dense_bytes);
  }
}

// ------------------------------------------------------------- the bytes --

namespace {

// Bytes only: the kernel is not what these tests look at.
struct NoKernel {
  void operator()(int, int, int, const float*, const float*, float, float*) const noexcept {}
};

// What rank p sends in one step, from first principles. n ranks, each with k
// samples for every layer; `factors` the layers the step rebuilds.
struct Expected {
  std::uint64_t k_bytes, dense_bytes, total;
  std::vector<std::uint64_t> layer;
};
Expected closed_form(const Model& m, int n, int k, int p, const std::vector<bool>& factors) {
  Expected e{};
  // The k's: Bruck's all-gather of one 8-byte k per layer and rank. In the
  // round at distance d a rank sends the min(d, n - d) contributions the rank
  // d before it lacks; over the rounds each goes out once, but its receiver's.
  std::uint64_t blocks = 0;
  for (int d = 1; d < n; d *= 2) blocks += static_cast<std::uint64_t>(std::min(d, n - d));
  CHECK(blocks == static_cast<std::uint64_t>(n - 1));
  e.k_bytes = blocks * m.layers.size() * 8;
  // A rebuilt layer: the ring all-gather of [U_q | V_q], k (rows + cols)
  // floats per rank; a rank passes on every contribution but its right
  // neighbour's (the last one it receives).
  std::size_t dense = m.total;
  for (std::size_t l = 0; l < m.layers.size(); ++l) {
    const auto [rows, cols, offset] = m.layers[l];
    const std::uint64_t per_rank = static_cast<std::uint64_t>(k) * std::uint64_t(rows + cols) * 4;
    e.layer.push_back(factors[l] ? per_rank * std::uint64_t(n - 1) : 0);
    if (factors[l]) dense -= sz(rows) * sz(cols);
  }
  // The rest, packed into one buffer of N floats: the ring all-reduce cuts it
  // into n blocks (the first N mod n one longer); in the reduce-scatter rank p
  // sends every block but block p+1, in the all-gather every block but p+2.
  auto block = [&](int i) { return dense / sz(n) + (sz(i) < dense % sz(n) ? 1 : 0); };
  e.dense_bytes = 4 * (2 * dense - block((p + 1) % n) - block((p + 2) % n));
  e.total = e.k_bytes + e.dense_bytes;
  for (auto b : e.layer) e.total += b;
  return e;
}

}  // namespace

TEST_CASE("Bytes per layer and per step are the closed forms, for the example MLP's shapes") {
  const Model m = mlp();
  struct Case {
    int n, k;
    std::vector<bool> factors;  // W1, W2, W3
  };
  const Case cases[] = {
      {8, 32, {true, false, false}},
      {16, 32, {false, false, false}},
      {64, 4, {true, false, false}},
      {8, 2, {true, true, true}},
  };
  for (const Case& c : cases) {
    CAPTURE(c.n);
    CAPTURE(c.k);
    std::vector<dssync::SFBStats> stats(sz(c.n));
    make_world(c.n).run([&](InProcTransport& t) {
      // Factors of the right shapes; their values do not matter here.
      std::vector<std::vector<float>> u, v;
      std::vector<FactorView> views;
      for (const SFBLayer& l : m.layers) {
        u.emplace_back(sz(l.rows * c.k));
        v.emplace_back(sz(l.cols * c.k));
      }
      for (std::size_t l = 0; l < m.layers.size(); ++l)
        views.push_back({m.layers[l].rows, m.layers[l].cols, c.k, u[l].data(), v[l].data()});
      std::vector<float> gradient(m.total);
      SFBSync<InProcTransport, dssync::RingReduce, NoKernel> sync(t, m.layers,
                                                                  {.expected_k = c.k});
      for (int step = 0; step < 2; ++step)
        sync.step(std::span<float>(gradient), std::span<const FactorView>(views));
      stats[sz(t.rank())] = sync.stats();
    });
    for (int p = 0; p < c.n; ++p) {
      CAPTURE(p);
      const dssync::SFBStats& s = stats[sz(p)];
      const Expected e = closed_form(m, c.n, c.k, p, c.factors);
      for (std::size_t l = 0; l < 3; ++l) {
        CAPTURE(l);
        CHECK(s.layers[l].last_factors == c.factors[l]);
        CHECK(s.layers[l].last_total_k == std::uint64_t(c.n * c.k));
        CHECK(s.layers[l].factor_steps == (c.factors[l] ? 2u : 0u));
        CHECK(s.layers[l].factor_bytes == 2 * e.layer[l]);
      }
      CHECK(s.k_bytes == 2 * e.k_bytes);
      CHECK(s.dense_bytes == 2 * e.dense_bytes);
      CHECK(s.bytes_sent == 2 * e.total);
      CHECK(s.steps == 2);
    }
  }
}

// --------------------------------------------------------------- the rule --

TEST_CASE("The hybrid's rule: factors iff Σk (rows + cols) < 2 rows cols (ties go dense)") {
  // Layers whose boundary falls on an integer: n x n at Σk = n; 2 x 6 at
  // Σk (8) = 24, Σk = 3; and the MLP's, whose limits are 401407/1040 = 385,
  // 65535/384 = 170 and 2559/138 = 18.
  const std::vector<SFBLayer> layers = {
      {64, 64, 0}, {2, 6, 4096}, {256, 784, 4108}, {128, 256, 204812}, {10, 128, 237580}};
  struct Row {
    int layer;
    std::uint64_t total_k;
    bool factors;
  };
  const Row table[] = {
      {0, 63, true},    {0, 64, false},  {0, 65, false},  {0, 0, true},
      {1, 2, true},     {1, 3, false},   {2, 385, true},  {2, 386, false},
      {3, 170, true},   {3, 171, false}, {4, 18, true},   {4, 19, false},
      // The example's (P, K): 8 x 32, 16 x 32, 64 x 4, 8 x 2.
      {2, 256, true},   {3, 256, false}, {4, 256, false}, {2, 512, false},
      {3, 512, false},  {4, 512, false}, {2, 16, true},   {3, 16, true},
      {4, 16, true},
  };
  for (const Row& row : table) {
    const auto [r, c, o] = layers[sz(row.layer)];
    // The rule in exact integers, as the design states it.
    const bool rule = row.total_k * std::uint64_t(r + c) < 2 * std::uint64_t(r) * std::uint64_t(c);
    CAPTURE(row.layer);
    CAPTURE(row.total_k);
    CHECK(rule == row.factors);
  }
  make_world(2).run([&](InProcTransport& t) {
    SFBSync<InProcTransport> hybrid(t, layers);
    SFBSync<InProcTransport> dense(t, layers, {.mode = SFBMode::dense});
    SFBSync<InProcTransport> factors(t, layers, {.mode = SFBMode::factors});
    for (const Row& row : table) {
      CHECK(hybrid.uses_factors(row.layer, row.total_k) == row.factors);
      CHECK_FALSE(dense.uses_factors(row.layer, row.total_k));
      CHECK(factors.uses_factors(row.layer, row.total_k));
    }
    CHECK_THROWS_WITH_AS((void)hybrid.uses_factors(5, 1),
                         doctest::Contains("no layer 5 (there are 5)"),
                         dssync::configuration_error);
    try {
      (void)hybrid.uses_factors(-1, 1);
      FAIL("no throw");
    } catch (const dssync::configuration_error& e) {
      CHECK(e.where().rank == t.rank());
    }
  });
  // One rank has nothing to send either way: the hybrid stays dense.
  make_world(1).run([&](InProcTransport& t) {
    SFBSync<InProcTransport> hybrid(t, layers);
    CHECK_FALSE(hybrid.uses_factors(0, 1));
  });
}

// --------------------------------------------------- a short last batch --

TEST_CASE("A short last batch: unequal k (one rank empty) gives the concatenated batch's mean") {
  const Model m = small();
  const int n = 4;
  // 16 samples in all; each rank scales its U by P / Σk = 1/4, so that the
  // mean over ranks is the mean over the 16 samples, and everything stays
  // dyadic. Σk = 16: A as factors (limit 19), B and C dense in the hybrid.
  const int k[] = {8, 5, 3, 0};
  for (SFBMode mode : {SFBMode::factors, SFBMode::hybrid}) {
    CAPTURE(static_cast<int>(mode));
    std::vector<std::vector<float>> got(sz(n));
    std::vector<dssync::SFBStats> stats(sz(n));
    make_world(n).run([&](InProcTransport& t) {
      Local x = make_local(m, t.rank(), same_k(m, k[t.rank()]), true, 5, 0.25f);
      SFBSync<InProcTransport> sync(t, m.layers, {.mode = mode});
      sync.step(std::span<float>(x.gradient), std::span<const FactorView>(x.views));
      got[sz(t.rank())] = std::move(x.gradient);
      stats[sz(t.rank())] = sync.stats();
    });
    // The concatenated batch's gradient, by hand: in a layer, (1/16) of the
    // sum over the 16 samples of u vᵀ (the factors without the 1/4); elsewhere
    // the ranks' mean.
    std::vector<float> want(m.total);
    std::vector<bool> in_layer(m.total, false);
    for (const SFBLayer& l : m.layers)
      std::fill_n(in_layer.begin() + static_cast<std::ptrdiff_t>(l.offset), l.rows * l.cols, true);
    std::vector<double> sum(m.total, 0.0);
    for (int r = 0; r < n; ++r) {
      const Local x = make_local(m, r, same_k(m, k[r]), true, 5);
      for (std::size_t i = 0; i < m.total; ++i) sum[i] += x.gradient[i];
    }
    for (std::size_t i = 0; i < m.total; ++i)
      want[i] = static_cast<float>(sum[i] / (in_layer[i] ? 16 : n));
    for (int r = 0; r < n; ++r) {
      CAPTURE(r);
      CHECK(same_bits(got[sz(r)], want));
      CHECK(stats[sz(r)].layers[0].last_factors);
      CHECK(stats[sz(r)].layers[0].last_total_k == 16);
      CHECK(stats[sz(r)].layers[2].last_factors == (mode == SFBMode::factors));
      // The all-gather with known counts: rank r passes on all 16 samples'
      // factors but its right neighbour's.
      const std::uint64_t floats = std::uint64_t(16 - k[(r + 1) % n]) * (16 + 24);
      CHECK(stats[sz(r)].layers[0].factor_bytes == 4 * floats);
    }
  }
}

// ------------------------------------------- the all-gather of known counts --

TEST_CASE("RingAllGatherV::all_gather_known: known counts (one 0), in place, nothing else sent") {
  const int n = 3;
  const std::size_t counts[] = {2, 0, 3};
  std::vector<std::vector<float>> out(sz(n));
  std::vector<std::uint64_t> bytes(sz(n));
  std::vector<std::string> what(sz(n));
  make_world(n).run([&](InProcTransport& t) {
    dssync::CountingTransport<InProcTransport> c(t);
    const dssync::Partition world = dssync::Partition::whole(n);  // a Group is a view of it
    const dssync::Group g = world.group(0);
    std::vector<float> all(5, -1.0f);
    const std::size_t at[] = {0, 2, 2};
    const auto me = sz(t.rank());
    const auto mine = std::span<float>(all).subspan(at[me], counts[me]);
    for (std::size_t i = 0; i < mine.size(); ++i) mine[i] = float(10 * t.rank() + int(i));
    dssync::RingAllGatherV gather;
    gather.all_gather_known(c, g, std::span<const float>(mine), std::span<const std::size_t>(counts),
                            std::span<float>(all));
    out[me] = all;
    bytes[me] = c.count().bytes_sent;
    try {  // a contribution other than its count: refused before any message
      gather.all_gather_known(c, g, std::span<const float>(all).first(1),
                              std::span<const std::size_t>(counts), std::span<float>(all));
    } catch (const dssync::configuration_error& e) {
      what[me] = e.what();
    }
  });
  for (int r = 0; r < n; ++r) {
    CAPTURE(r);
    CHECK(out[sz(r)] == std::vector<float>{0, 1, 20, 21, 22});
    // Everything but the right neighbour's contribution, 4 bytes a float.
    CHECK(bytes[sz(r)] == 4 * (5 - counts[sz((r + 1) % n)]));
    CHECK((what[sz(r)].find("contributes 1 elements where its count says") != std::string::npos) ==
          (counts[sz(r)] != 1));
  }
}

// ----------------------------------------------------------------- errors --

TEST_CASE("Layers out of order, overlapping or empty are refused at construction") {
  make_world(1).run([&](InProcTransport& t) {
    using S = SFBSync<InProcTransport>;
    CHECK_NOTHROW(S(t, {{2, 3, 0}, {4, 5, 6}}));  // adjacent is fine
    CHECK_THROWS_WITH_AS(S(t, {{2, 3, 0}, {4, 5, 5}}),
                         doctest::Contains("layer 1 starts at offset 5"),
                         dssync::configuration_error);
    CHECK_THROWS_AS(S(t, {{4, 5, 10}, {2, 3, 0}}), dssync::configuration_error);
    CHECK_THROWS_WITH_AS(S(t, {{0, 3, 0}}), doctest::Contains("layer 0 is 0 x 3"),
                         dssync::configuration_error);
    // A layer whose end would wrap past the largest size (and let a layer
    // before it through, with a gradient far too short).
    const std::size_t top = std::numeric_limits<std::size_t>::max() - 1;
    const std::string at = "layer 0 at offset " + std::to_string(top);
    CHECK_THROWS_WITH_AS(S(t, {{2, 2, top}, {1, 1, 2}}), doctest::Contains(at.c_str()),
                         dssync::configuration_error);
  });
}

TEST_CASE("Factor views that do not fit: a configuration_error on every rank, naming layer, rank "
          "and iteration") {
  const Model m = small();
  const int n = 4;
  // bad: 1 = rank 2's layer 1 view has the wrong cols at iteration 1;
  //      2 = rank 1 passes two views for three layers at iteration 0;
  //      3 = rank 3's gradient is too short.
  for (int bad : {1, 2, 3}) {
    CAPTURE(bad);
    std::vector<std::string> what(sz(n));
    make_world(n).run([&](InProcTransport& t) {
      Local x = make_local(m, t.rank(), same_k(m, 2), false, 3);
      SFBSync<InProcTransport> sync(t, m.layers);
      std::span<const FactorView> views(x.views);
      std::span<float> gradient(x.gradient);
      try {
        if (bad == 1) {
          sync.step(gradient, views);
          if (t.rank() == 2) x.views[1].cols = 6;
        }
        if (bad == 2 && t.rank() == 1) views = views.first(2);
        if (bad == 3 && t.rank() == 3) gradient = gradient.first(500);
        sync.step(gradient, views);
      } catch (const dssync::configuration_error& e) {
        what[sz(t.rank())] = e.what();
      }
    });
    for (int r = 0; r < n; ++r) {
      CAPTURE(what[sz(r)]);
      CHECK(what[sz(r)].find("rank " + std::to_string(r)) != std::string::npos);
      if (bad == 1) {
        CHECK(what[sz(r)].find("layer 1") != std::string::npos);
        CHECK(what[sz(r)].find("iteration 1") != std::string::npos);
        CHECK(what[sz(r)].find(r == 2 ? "3 x 6 with k 2; the layer is 3 x 5" : "rank 2's") !=
              std::string::npos);
      } else if (bad == 2) {
        CHECK(what[sz(r)].find("iteration 0") != std::string::npos);
        CHECK(what[sz(r)].find(r == 1 ? "2 factor views for 3 layers" : "rank 1 passed") !=
              std::string::npos);
      } else {
        CHECK(what[sz(r)].find(r == 3 ? "the gradient has 500 elements" : "rank 3's gradient") !=
              std::string::npos);
      }
    }
  }
}

// ------------------------------------------------------ no steady allocation --

TEST_CASE("Steady state: a step allocates nothing once warm, as the choices change with k") {
  const Model m = small();
  const int n = 4;
  struct Result {
    std::uint64_t hybrid, factors, dense, checked;
  };
  std::vector<Result> results(sz(n));
  make_world(n).run([&](InProcTransport& t) {
    // Full batches of 4 (Σk = 16: A as factors) and short ones of 1 (Σk = 4: A
    // and C), alternating: the dense part changes shape every step.
    Local full = make_local(m, t.rank(), same_k(m, 4), false, 1);
    Local part = make_local(m, t.rank(), same_k(m, 1), false, 2);
    auto measure = [&](dssync::SFBOptions o) {
      SFBSync<InProcTransport> sync(t, m.layers, o);
      auto step = [&](Local& x) {
        sync.step(std::span<float>(x.gradient), std::span<const FactorView>(x.views));
      };
      step(full), step(part);
      const std::uint64_t before = t_allocations;
      for (int it = 0; it < 5; ++it) step(full), step(part);
      return t_allocations - before;
    };
    Result& res = results[sz(t.rank())];
    res.hybrid = measure({.bucket_bytes = 256, .expected_k = 4});
    res.factors = measure({.mode = SFBMode::factors, .expected_k = 4});
    res.dense = measure({.mode = SFBMode::dense});
    res.checked = measure({.bucket_bytes = 256, .checked = true});
  });
  for (int r = 0; r < n; ++r) {
    CAPTURE(r);
    CHECK(results[sz(r)].hybrid == 0);
    CHECK(results[sz(r)].factors == 0);
    CHECK(results[sz(r)].dense == 0);
    CHECK(results[sz(r)].checked == 0);
  }
}

// ----------------------------------------------- in the background --

namespace {

// Every rank's gradients over `steps` steps (k alternating between 4 and 1,
// so the choices and the dense part's shape change), and its stats.
struct Steps {
  std::vector<std::vector<float>> gradients;  // rank-major, step after step
  std::vector<dssync::SFBStats> stats;
};
Steps sfb_steps(const Model& m, int n, int steps, dssync::SFBOptions o) {
  Steps out{std::vector<std::vector<float>>(sz(n)), std::vector<dssync::SFBStats>(sz(n))};
  make_world(n).run([&](InProcTransport& t) {
    SFBSync<InProcTransport> sync(t, m.layers, o);
    for (int s = 0; s < steps; ++s) {
      Local x = make_local(m, t.rank(), same_k(m, s % 2 ? 1 : 4), false, 40 + std::uint64_t(s));
      sync.step(std::span<float>(x.gradient), std::span<const FactorView>(x.views));
      auto& all = out.gradients[sz(t.rank())];
      all.insert(all.end(), x.gradient.begin(), x.gradient.end());
    }
    out.stats[sz(t.rank())] = sync.stats();
  });
  return out;
}

}  // namespace

TEST_CASE("Traffic in the background: the same bits, bytes and messages as in sequence") {
  const Model m = small();
  for (int n : {4, 3}) {
    CAPTURE(n);
    for (std::size_t bucket : {std::size_t{256}, dssync::default_bucket_bytes}) {
      CAPTURE(bucket);
      const Steps after = sfb_steps(m, n, 6, {.bucket_bytes = bucket});
      const Steps background = sfb_steps(m, n, 6, {.bucket_bytes = bucket, .background_channel = 1});
      for (int r = 0; r < n; ++r) {
        CAPTURE(r);
        CHECK(same_bits(background.gradients[sz(r)], after.gradients[sz(r)]));
        const dssync::SFBStats &a = after.stats[sz(r)], &b = background.stats[sz(r)];
        CHECK(b.dense_bytes == a.dense_bytes);
        CHECK(b.dense_bytes > 0);
        CHECK(b.k_bytes == a.k_bytes);
        CHECK(b.bytes_sent == a.bytes_sent);
        CHECK(b.messages_sent == a.messages_sent);
        CHECK(b.steps == 6);
        for (std::size_t l = 0; l < m.layers.size(); ++l) {
          CHECK(b.layers[l].factor_steps == a.layers[l].factor_steps);
          CHECK(b.layers[l].factor_bytes == a.layers[l].factor_bytes);
        }
      }
      // Both choices were made: A as factors at Σk = 4n and n (limit 19), C
      // only at Σk = n (limit 11).
      CHECK(after.stats[0].layers[0].factor_steps == 6);
      CHECK(after.stats[0].layers[2].factor_steps == 3);
    }
  }
}

TEST_CASE("Traffic in the background: a channel that is not there, or none, is refused") {
  const Model m = small();
  std::vector<std::string> what(4);
  make_world(2).run([&](InProcTransport& t) {
    auto message = [&](auto make) {
      try {
        make();
      } catch (const dssync::configuration_error& e) {
        return std::string(e.what());
      }
      return std::string("no error");
    };
    const auto r = sz(t.rank()) * 2;
    what[r] = message([&] { SFBSync<InProcTransport> s(t, m.layers, {.background_channel = 2}); });
    dssync::CountingTransport<InProcTransport> counted(t);
    what[r + 1] = message([&] {
      SFBSync<dssync::CountingTransport<InProcTransport>> s(counted, m.layers, {.background_channel = 1});
    });
  });
  for (int r = 0; r < 2; ++r) {
    CAPTURE(r);
    CHECK(what[sz(2 * r)].find("background_channel 2 is not a channel of this transport (it has 2)") !=
          std::string::npos);
    CHECK(what[sz(2 * r)].find("rank " + std::to_string(r)) != std::string::npos);
    CHECK(what[sz(2 * r + 1)].find("needs a transport with channels") != std::string::npos);
  }
  // The caller's own channel cannot be the background's.
  std::vector<std::string> own(2);
  make_world(2).run([&](InProcTransport& t) {
    InProcTransport one = t.channel(1);
    try {
      SFBSync<InProcTransport> s(one, m.layers, {.background_channel = 1});
      own[sz(t.rank())] = "no error";
    } catch (const dssync::configuration_error& e) {
      own[sz(t.rank())] = e.what();
    }
  });
  for (const auto& w : own) CHECK(w.find("a channel of its own") != std::string::npos);
}

TEST_CASE("Traffic in the background: nothing allocated once warm, on either context") {
  const Model m = small();
  const int n = 4;
  std::barrier<> together(n);
  std::uint64_t counted = 1;
  make_world(n).run([&](InProcTransport& t) {
    Local full = make_local(m, t.rank(), same_k(m, 4), false, 1);
    Local part = make_local(m, t.rank(), same_k(m, 1), false, 2);
    SFBSync<InProcTransport> sync(t, m.layers,
                                  {.bucket_bytes = 256, .expected_k = 4, .background_channel = 1});
    auto step = [&](Local& x) {
      sync.step(std::span<float>(x.gradient), std::span<const FactorView>(x.views));
    };
    step(full), step(part);
    together.arrive_and_wait();
    const std::uint64_t before = g_allocations.load();
    together.arrive_and_wait();
    for (int it = 0; it < 5; ++it) step(full), step(part);
    together.arrive_and_wait();
    if (t.rank() == 0) counted = g_allocations.load() - before;
  });
  // Every thread of the process, the ranks' and their background contexts'.
  CHECK(counted == 0);
}
