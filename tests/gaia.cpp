// GaiaSync: averaging inside data centers, significant updates across them
// (include/dssync/sync/gaia.hpp), and its significance filters
// (include/dssync/policy/significance.hpp). In-process here; every transport
// in the contract suite's "gaia" case.

#include <doctest/doctest.h>

#include <barrier>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "dssync/dssync.hpp"
#include "dssync/sync/gaia.hpp"
#include "outcome.hpp"

#include "allocations.hpp"

namespace {

using dssync::GaiaCombine;
using dssync::GaiaSchedule;
using dssync::GaiaSync;
using dssync::InProcTransport;
using dssync::InProcWorld;

// A float in [-1, 1) from (a, b, i), the same on every run.
float noise(std::uint64_t a, std::uint64_t b, std::size_t i) {
  const std::uint64_t h =
      dssync::detail::mix64(a * 0x9e3779b97f4a7c15ULL ^ dssync::detail::mix64(b) ^ (i + 1));
  return static_cast<float>(static_cast<double>(h >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
// A small dyadic value (k / 64, |k| < 16): sums of a few and their means over
// 2, 4 or 8 ranks are exact in float.
float dyadic(std::uint64_t a, std::uint64_t b, std::size_t i) {
  return static_cast<float>(static_cast<int>(dssync::detail::mix64(a * 131 + b * 7 + i) % 31) -
                            15) /
         64.0f;
}

// `len` values f(i); a model of the dyadic or noise values of one seed.
template <class F>
std::vector<float> values_of(std::size_t len, F f) {
  std::vector<float> v(len);
  for (std::size_t i = 0; i < len; ++i) v[i] = f(i);
  return v;
}
std::vector<float> dyadic_model(std::uint64_t a, std::size_t len) {
  return values_of(len, [a](std::size_t i) { return dyadic(a, 0, i); });
}
std::vector<float> noise_model(std::uint64_t a, std::size_t len) {
  return values_of(len, [a](std::size_t i) { return noise(a, 0, i); });
}

std::vector<std::string> labels(std::initializer_list<int> sizes) {
  std::vector<std::string> out;
  int d = 0;
  for (int m : sizes) {
    for (int k = 0; k < m; ++k) out.push_back("dc" + std::to_string(d));
    ++d;
  }
  return out;
}

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("significance filters: Gaia's relative rule at its edges, and the absolute one") {
  const dssync::RelativeSignificance rel;
  CHECK_FALSE(rel.significant(1.0, 2.0, 0.5));  // |a| = T |x|: equality is not sent
  CHECK(rel.significant(1.0000001, 2.0, 0.5));
  CHECK(rel.significant(-1.5, 2.0, 0.5));  // the sign does not matter
  CHECK(rel.significant(1.5, -2.0, 0.5));
  CHECK(rel.significant(1e-30, 0.0, 0.5));  // a change of a zero is always significant
  CHECK(rel.significant(1e-30, -0.0, 1e9));
  CHECK_FALSE(rel.significant(0.0, 0.0, 0.0));  // a zero update never is
  CHECK_FALSE(rel.significant(-0.0, 3.0, 0.0));
  CHECK(rel.significant(1e-30, 3.0, 0.0));  // threshold 0: every nonzero update
  const double inf = std::numeric_limits<double>::infinity();
  CHECK_FALSE(rel.significant(1e30, 1.0, inf));  // +infinity: none, not even changes of zeros
  CHECK_FALSE(rel.significant(1e30, 0.0, inf));
  CHECK(rel.significant(1e-30, inf, 0.0));  // threshold 0 beside an infinite value (0 * inf)
  CHECK_FALSE(rel.significant(1e30, inf, 0.5));  // nothing is large beside an infinite value
  // A NaN update never passes, beside a zero value (a change of a zero) either.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (const double x : {0.0, -0.0, 1.0, inf})
    for (const double threshold : {0.0, 0.01, inf}) CHECK_FALSE(rel.significant(nan, x, threshold));
  const dssync::AbsoluteSignificance abs_rule;
  CHECK_FALSE(abs_rule.significant(0.25, 100.0, 0.25));
  CHECK(abs_rule.significant(-0.2500001, 100.0, 0.25));
  CHECK_FALSE(abs_rule.significant(0.0, 0.0, 0.0));
  CHECK(abs_rule.significant(1e-30, 0.0, 0.0));
  for (const double threshold : {0.0, 0.01, inf})
    CHECK_FALSE(abs_rule.significant(nan, 0.0, threshold));
}

TEST_CASE("GaiaSync: one data center is AllReduceSync on parameters, bit for bit") {
  constexpr int n = 4;
  constexpr std::size_t len = 1003;
  std::vector<int> wrong(n, 0);
  InProcWorld(n).run([&](InProcTransport& t) {
    const int r = t.rank();
    const std::vector<float> initial = noise_model(7, len);
    std::vector<float> x = initial, y = initial;
    GaiaSync<InProcTransport> gaia(t, initial, std::vector<std::string>(n, "one"),
                                   {.threshold = 0.01, .bucket_bytes = 1024});
    dssync::AllReduceSync<InProcTransport> bsp(t, {.bucket_bytes = 1024});
    for (std::uint64_t c = 0; c < 10; ++c) {
      for (std::size_t i = 0; i < len; ++i) {
        const float g = 0.1f * noise(static_cast<std::uint64_t>(r), c, i);
        x[i] -= g;
        y[i] -= g;
      }
      gaia.step(x);
      bsp.step(y);
      wrong[static_cast<std::size_t>(r)] += !same_bits(x, y);
    }
    wrong[static_cast<std::size_t>(r)] += gaia.stats().wan_bytes != 0;
  });
  CHECK(wrong == std::vector<int>(n, 0));
}

TEST_CASE("GaiaSync: an infinite threshold keeps every data center to itself") {
  constexpr std::size_t len = 257;
  const auto dcs = labels({2, 4, 2});
  const int n = 8;
  for (const GaiaCombine combine : {GaiaCombine::sum, GaiaCombine::mean}) {
    CAPTURE(static_cast<int>(combine));
    std::vector<int> wrong(n, 0);
    InProcWorld(n).run([&](InProcTransport& t) {
      const int r = t.rank();
      const std::vector<float> initial = dyadic_model(1, len);
      std::vector<float> x = initial;
      GaiaSync<InProcTransport> gaia(
          t, initial, dcs,
          {.threshold = std::numeric_limits<double>::infinity(), .combine = combine});
      const dssync::Group dc(gaia.data_centers()[static_cast<std::size_t>(gaia.data_center())]);
      const double w = combine == GaiaCombine::sum ? 1.0 : double(dc.size()) / n;
      dssync::RingReduce ring;
      std::vector<float> ref = initial, mean(len);
      for (std::uint64_t c = 0; c < 6; ++c) {
        for (std::size_t i = 0; i < len; ++i)
          x[i] += dyadic(static_cast<std::uint64_t>(r) + 10, c, i);
        // What the data center's members average to, by the same ring.
        mean = x;
        ring.all_reduce(t, dc, std::span<float>(mean), dssync::Average{}, dssync::make_tag(200, 1));
        gaia.step(x);
        for (std::size_t i = 0; i < len; ++i) {
          const float want = combine == GaiaCombine::sum
                                 ? mean[i]
                                 : ref[i] + static_cast<float>(w) * (mean[i] - ref[i]);
          wrong[static_cast<std::size_t>(r)] += x[i] != want;
        }
        ref = x;
      }
      wrong[static_cast<std::size_t>(r)] += gaia.stats().wan_bytes != 0;
      wrong[static_cast<std::size_t>(r)] += gaia.stats().significant != 0;
    });
    CHECK(wrong == std::vector<int>(n, 0));
  }
}

TEST_CASE(
    "GaiaSync: an infinite threshold stays infinite under a learning-rate scale of 0 and during a "
    "linear move, which lands on its lower end") {
  // Zero parameters: at any finite threshold every nonzero update to them
  // would be significant, and a NaN threshold passes them too.
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<dssync::GaiaOptions> options = {
      {.threshold = inf},
      {.threshold = inf, .schedule = GaiaSchedule::linear, .lower = 0.01, .iterations = 4}};
  for (const auto& o : options) {
    CAPTURE(static_cast<int>(o.schedule));
    std::vector<int> wrong(4, 0);
    InProcWorld(4).run([&](InProcTransport& t) {
      const std::vector<float> initial(8, 0.0f);
      std::vector<float> x = initial;
      GaiaSync<InProcTransport> gaia(t, initial, labels({2, 2}), o);
      gaia.set_lr_scale(0);
      for (std::uint64_t c = 0; c < 4; ++c) {
        for (float& v : x) v += static_cast<float>(t.rank() + 1);
        gaia.step(x);
        wrong[static_cast<std::size_t>(t.rank())] += !std::isinf(gaia.stats().threshold);
      }
      wrong[static_cast<std::size_t>(t.rank())] += gaia.stats().wan_bytes != 0;
      if (o.schedule == GaiaSchedule::linear) {
        // The move is over at clock 4: it lands on `lower`, and the zeros' changes cross.
        gaia.step(x);
        wrong[static_cast<std::size_t>(t.rank())] += gaia.stats().threshold != 0.01;
        wrong[static_cast<std::size_t>(t.rank())] += gaia.stats().wan_bytes == 0;
      }
    });
    CHECK(wrong == std::vector<int>(4, 0));
  }
}

TEST_CASE(
    "GaiaSync: threshold 0 with the mean combine is the world's average, exactly on dyadic "
    "values") {
  // Data centers of 2 and 4 ranks: their means of dyadic values, and the
  // weights m_d / n, are exact in float, so every order of summation agrees.
  constexpr std::size_t len = 301;
  for (const auto& sizes :
       {std::vector<int>{4, 4}, std::vector<int>{2, 2, 2, 2}, std::vector<int>{4, 2, 2}}) {
    std::vector<std::string> dcs;
    for (std::size_t d = 0; d < sizes.size(); ++d)
      for (int k = 0; k < sizes[d]; ++k) dcs.push_back("dc" + std::to_string(d));
    const int n = static_cast<int>(dcs.size());
    CAPTURE(sizes.size());
    CAPTURE(sizes[0]);
    for (const bool sparse : {true, false}) {
      std::vector<int> wrong(n, 0);
      InProcWorld(n).run([&](InProcTransport& t) {
        const int r = t.rank();
        const std::vector<float> initial = dyadic_model(3, len);
        std::vector<float> x = initial, y = initial;
        GaiaSync<InProcTransport> gaia(
            t, initial, dcs,
            {.threshold = 0, .schedule = GaiaSchedule::constant, .sparse = sparse});
        dssync::AllReduceSync<InProcTransport> bsp(t);
        for (std::uint64_t c = 0; c < 8; ++c) {
          // Sparse updates on some steps, dense on others: both encodings run.
          for (std::size_t i = 0; i < len; ++i) {
            const float g = (c % 2 == 0 || i % 7 == 0)
                                ? dyadic(static_cast<std::uint64_t>(r) + 20, c, i)
                                : 0.0f;
            x[i] += g;
            y[i] += g;
          }
          gaia.step(x);
          bsp.step(y);
          for (std::size_t i = 0; i < len; ++i) wrong[static_cast<std::size_t>(r)] += x[i] != y[i];
        }
      });
      CHECK(wrong == std::vector<int>(n, 0));
    }
  }
  // Arbitrary floats: the same within rounding.
  const auto dcs = labels({3, 2});
  std::vector<double> worst(5, 0);
  InProcWorld(5).run([&](InProcTransport& t) {
    const int r = t.rank();
    const std::vector<float> initial = noise_model(4, len);
    std::vector<float> x = initial, y = initial;
    GaiaSync<InProcTransport> gaia(t, initial, dcs, {.threshold = 0});
    dssync::AllReduceSync<InProcTransport> bsp(t);
    for (std::uint64_t c = 0; c < 8; ++c) {
      for (std::size_t i = 0; i < len; ++i) {
        const float g = 0.01f * noise(static_cast<std::uint64_t>(r) + 30, c, i);
        x[i] += g;
        y[i] += g;
      }
      gaia.step(x);
      bsp.step(y);
      for (std::size_t i = 0; i < len; ++i)
        worst[static_cast<std::size_t>(r)] =
            std::max(worst[static_cast<std::size_t>(r)],
                     std::abs(double(x[i]) - y[i]) / std::max(1e-3, std::abs(double(y[i]))));
    }
  });
  for (double e : worst) CHECK(e < 1e-6);
}

TEST_CASE("GaiaSync: with a period of 3 the data centers meet on every third clock, then exactly") {
  // Threshold 0, the mean combine, dyadic updates: on clocks 2, 5, 8 every
  // data center holds the world's average (BSP on parameters), to the bit,
  // and only those clocks send bytes across. Between them a data center
  // trains on its own: its model is its members' average (what BSP inside
  // it gives), not a fraction of its update.
  constexpr std::size_t len = 101;
  const auto dcs = labels({4, 2, 2});
  constexpr int n = 8;
  std::vector<int> wrong(n, 0);
  InProcWorld(n).run([&](InProcTransport& t) {
    const int r = t.rank();
    const std::vector<float> initial = dyadic_model(6, len);
    std::vector<float> x = initial, y = initial;
    GaiaSync<InProcTransport> gaia(
        t, initial, dcs, {.threshold = 0, .schedule = GaiaSchedule::constant, .period = 3});
    dssync::AllReduceSync<InProcTransport> bsp(t);
    const dssync::Group dc(gaia.data_centers()[static_cast<std::size_t>(gaia.data_center())]);
    dssync::RingReduce ring;
    std::vector<float> mean(len);
    for (std::uint64_t c = 0; c < 9; ++c) {
      for (std::size_t i = 0; i < len; ++i) {
        const float g = dyadic(static_cast<std::uint64_t>(r) + 50, c, i);
        x[i] += g;
        y[i] += g;
      }
      mean = x;
      ring.all_reduce(t, dc, std::span<float>(mean), dssync::Average{}, dssync::make_tag(200, 1));
      const std::uint64_t before = gaia.stats().wan_bytes;
      gaia.step(x);
      bsp.step(y);
      const bool meets = c % 3 == 2;
      // Members 0 and 1 of each data center own the two shards.
      const bool owner = (r < 4 ? r : r < 6 ? r - 4 : r - 6) < 2;
      wrong[static_cast<std::size_t>(r)] += (gaia.stats().wan_bytes > before) != (meets && owner);
      for (std::size_t i = 0; i < len; ++i)
        wrong[static_cast<std::size_t>(r)] += x[i] != (meets ? y[i] : mean[i]);
    }
  });
  CHECK(wrong == std::vector<int>(n, 0));
}

TEST_CASE(
    "GaiaSync: nothing is lost: the models plus what waits to be sent are the sum of every "
    "update") {
  // Updates that do not depend on the parameters: rank i adds g_i(c) before
  // step c. Then data center d's model plus the other data centers' pending
  // updates is x0 + sum over clocks of the world's mean update, exactly
  // (dyadic values), while the filter holds some entries back.
  constexpr std::size_t len = 203;
  const auto dcs = labels({2, 4, 2});
  constexpr int n = 8;
  std::vector<std::vector<float>> model(n, std::vector<float>(len));
  std::vector<std::vector<float>> pending(n, std::vector<float>(len, 0.0f));  // by rank, in place
  std::vector<std::uint64_t> held(n, 0), sent(n, 0);
  std::vector<int> wrong(n, 0);
  std::barrier meet(n);
  InProcWorld(n).run([&](InProcTransport& t) {
    const int r = t.rank();
    const auto me = static_cast<std::size_t>(r);
    const std::vector<float> initial =
        values_of(len, [](std::size_t i) { return 1.0f + dyadic(5, 0, i); });
    std::vector<float> x = initial, expect = initial;
    GaiaSync<InProcTransport> gaia(t, initial, dcs,
                                   {.threshold = 0.05, .schedule = GaiaSchedule::constant});
    for (std::uint64_t c = 0; c < 12; ++c) {
      for (std::size_t i = 0; i < len; ++i)
        x[i] += dyadic(static_cast<std::uint64_t>(r) + 40, c, i);
      gaia.step(x);
      for (std::size_t i = 0; i < len; ++i) {
        float world = 0;
        for (int q = 0; q < n; ++q) world += dyadic(static_cast<std::uint64_t>(q) + 40, c, i);
        expect[i] += world / n;
      }
      model[me] = x;
      std::fill(pending[me].begin(), pending[me].end(), 0.0f);
      const auto acc = gaia.pending();
      for (std::size_t k = 0; k < acc.size(); ++k) {
        pending[me][gaia.pending_offset() + k] = acc[k];
        held[me] += acc[k] != 0;
      }
      meet.arrive_and_wait();
      // Data center d's model plus every other data center's pending updates.
      const auto& all = gaia.data_centers();
      for (std::size_t i = 0; i < len; ++i) {
        float lhs = x[i];
        for (std::size_t d = 0; d < all.size(); ++d) {
          if (static_cast<int>(d) == gaia.data_center()) continue;
          for (int q : all[d]) lhs += pending[static_cast<std::size_t>(q)][i];
        }
        wrong[me] += lhs != expect[i];
      }
      meet.arrive_and_wait();
    }
    sent[me] = gaia.stats().significant;
  });
  CHECK(wrong == std::vector<int>(n, 0));
  // The filter did both: some entries went, some waited.
  std::uint64_t total_held = 0, total_sent = 0;
  for (int r = 0; r < n; ++r)
    total_held += held[static_cast<std::size_t>(r)],
        total_sent += sent[static_cast<std::size_t>(r)];
  CHECK(total_held > 0);
  CHECK(total_sent > 0);
}

TEST_CASE("GaiaSync: the bytes across data centers are their closed form, pairs or dense") {
  // Two data centers of 2 and 3 ranks: members 0 and 1 of each own half of
  // the 16 parameters each; the third member of the second owns nothing. At
  // threshold 0 the significant entries are exactly the ones updated, the
  // same set S_c on every rank. Per step an owner sends its message length
  // (8 bytes, the all-gather's length exchange between two owners) and
  // min(2 |S_c ∩ shard|, 8) words of 4 bytes: pairs below, the dense shard
  // from half full on.
  constexpr std::size_t len = 16;
  const auto dcs = labels({2, 3});
  constexpr int n = 5;
  const std::vector<std::vector<std::size_t>> sets = {
      {}, {3}, {0, 1, 9}, {0, 2, 4, 6, 8}, {8, 9, 10, 11}, {1, 2, 3, 5, 7, 9, 15}};
  std::vector<int> wrong(n, 0);
  InProcWorld(n).run([&](InProcTransport& t) {
    const int r = t.rank();
    std::vector<float> x(len, 1.0f);
    // Gaia's sum: values stay multiples of 0.5, so a data center's average of
    // equal values is that value exactly and only the updated entries move.
    GaiaSync<InProcTransport> gaia(
        t, std::vector<float>(len, 1.0f), dcs,
        {.threshold = 0, .schedule = GaiaSchedule::constant, .combine = GaiaCombine::sum});
    const int position = r < 2 ? r : r - 2;
    for (std::uint64_t c = 0; c < sets.size(); ++c) {
      for (std::size_t i : sets[c]) x[i] += 0.5f;
      const std::uint64_t before = gaia.stats().wan_bytes;
      gaia.step(x);
      std::uint64_t want = 0;
      if (position < 2) {
        std::size_t picked = 0;
        for (std::size_t i : sets[c]) picked += i / 8 == static_cast<std::size_t>(position);
        want = 8 + 4 * std::min<std::size_t>(2 * picked, 8);
      }
      wrong[static_cast<std::size_t>(r)] += gaia.stats().wan_bytes - before != want;
    }
    // Every owner looked at its 8 entries each step.
    if (position < 2)
      wrong[static_cast<std::size_t>(r)] += gaia.stats().considered != 8 * sets.size();
  });
  CHECK(wrong == std::vector<int>(n, 0));
}

TEST_CASE("GaiaSync: the threshold follows the learning rate, stays, or moves linearly") {
  InProcWorld(2).run([&](InProcTransport& t) {
    const std::vector<float> initial(8, 1.0f);
    std::vector<float> x = initial;
    const auto dcs = labels({1, 1});
    GaiaSync<InProcTransport> follow(t, initial, dcs, {.threshold = 0.2});
    follow.set_lr_scale(0.5);
    follow.step(x);
    CHECK(follow.stats().threshold == doctest::Approx(0.1).epsilon(1e-15));
    follow.set_knob(0.4);
    follow.step(x);
    CHECK(follow.stats().threshold == doctest::Approx(0.2).epsilon(1e-15));
    GaiaSync<InProcTransport> fixed(t, initial, dcs,
                                    {.threshold = 0.2, .schedule = GaiaSchedule::constant});
    fixed.set_lr_scale(0.5);
    fixed.step(x);
    CHECK(fixed.stats().threshold == 0.2);
    GaiaSync<InProcTransport> linear(
        t, initial, dcs,
        {.threshold = 0.2, .schedule = GaiaSchedule::linear, .lower = 0.1, .iterations = 4});
    const double want[] = {0.2, 0.175, 0.15, 0.125, 0.1, 0.1};
    for (double w : want) {
      linear.step(x);
      CHECK(linear.stats().threshold == doctest::Approx(w).epsilon(1e-15));
    }
  });
}

TEST_CASE("GaiaSync: no allocation in steady state") {
  constexpr int n = 6;
  constexpr std::size_t len = 4099;
  const auto dcs = labels({2, 4});
  std::vector<std::uint64_t> counted(n, 1);
  InProcWorld(n).run([&](InProcTransport& t) {
    std::vector<float> x(len, 1.0f);
    GaiaSync<InProcTransport> gaia(t, x, dcs, {.threshold = 0.01, .bucket_bytes = 4096});
    for (std::uint64_t c = 0; c < 3; ++c) {
      for (std::size_t i = 0; i < len; ++i)
        x[i] += 0.01f * noise(static_cast<std::uint64_t>(t.rank()), c, i);
      gaia.step(x);
    }
    const std::uint64_t before = t_allocations;
    for (std::uint64_t c = 3; c < 13; ++c) {
      for (std::size_t i = 0; i < len; ++i)
        x[i] += 0.01f * noise(static_cast<std::uint64_t>(t.rank()), c, i);
      gaia.step(x);
    }
    counted[static_cast<std::size_t>(t.rank())] = t_allocations - before;
  });
  CHECK(counted == std::vector<std::uint64_t>(n, 0));
}

TEST_CASE("GaiaSync: bad input is a configuration_error naming what and where") {
  InProcWorld(4).run([&](InProcTransport& t) {
    const std::vector<float> x(8, 1.0f);
    const auto dcs = labels({2, 2});
    CHECK_THROWS_WITH_AS(GaiaSync<InProcTransport>(t, x, labels({2, 1})),
                         doctest::Contains("labels for 3 ranks in a world of 4"),
                         dssync::configuration_error);
    CHECK_THROWS_WITH_AS(GaiaSync<InProcTransport>(t, x, dcs, {.threshold = -0.1}),
                         doctest::Contains("threshold must be at least 0"),
                         dssync::configuration_error);
    CHECK_THROWS_AS(GaiaSync<InProcTransport>(t, x, dcs, {.threshold = std::nan("")}),
                    dssync::configuration_error);
    CHECK_THROWS_AS(
        GaiaSync<InProcTransport>(t, x, dcs, {.schedule = GaiaSchedule::linear, .lower = -1}),
        dssync::configuration_error);
    CHECK_THROWS_WITH_AS(GaiaSync<InProcTransport>(t, x, dcs, {.slack = -1}),
                         doctest::Contains("slack must be at least 0, got -1"),
                         dssync::configuration_error);
    // The slots of the clocks in flight are checked before they are allocated.
    CHECK_THROWS_WITH_AS(
        GaiaSync<InProcTransport>(t, x, dcs, {.slack = std::numeric_limits<int>::max()}),
        doctest::Contains("GaiaSync's slots (2147483648 slots of"), dssync::configuration_error);
    CHECK_THROWS_WITH_AS(GaiaSync<InProcTransport>(t, x, dcs, {.slack = 1, .max_history_bytes = 8}),
                         doctest::Contains("above max_history_bytes = 8"),
                         dssync::configuration_error);
    CHECK_THROWS_WITH_AS(GaiaSync<InProcTransport>(t, x, dcs, {.period = 0}),
                         doctest::Contains("period must be at least 1, got 0"),
                         dssync::configuration_error);
    GaiaSync<InProcTransport> gaia(t, x, dcs);
    std::vector<float> wrong(7);
    CHECK_THROWS_WITH_AS(gaia.step(wrong), doctest::Contains("made for 8 parameters"),
                         dssync::configuration_error);
    CHECK_THROWS_AS(gaia.set_knob(-1), dssync::configuration_error);
    CHECK_THROWS_AS(gaia.set_lr_scale(std::nan("")), dssync::configuration_error);
    try {
      gaia.step(wrong);
    } catch (const dssync::configuration_error& e) {
      CHECK(e.where().rank == t.rank());
    }
  });
}

TEST_CASE(
    "GaiaSync: checked mode names a NaN update and the rank that has it, and the others hear of "
    "it") {
  constexpr int n = 4;
  std::vector<dssync_test::Outcome> ends(n);
  try {
    InProcWorld(n, {.timeout = std::chrono::milliseconds(5000)}).run([&](InProcTransport& t) {
      try {
        std::vector<float> x(16, 1.0f);
        GaiaSync<InProcTransport> gaia(t, x, labels({2, 2}), {.checked = true});
        gaia.step(x);
        if (t.rank() == 2) x[11] = std::nanf("");
        gaia.step(x);
      } catch (...) {
        ends[static_cast<std::size_t>(t.rank())] = dssync_test::classify(std::current_exception());
        throw;
      }
    });
  } catch (const dssync::error&) {
  }
  CHECK(ends[2].kind == "configuration");
  CHECK(ends[2].what.find("parameter 11 is NaN") != std::string::npos);
  CHECK(ends[2].what.find("rank 2") != std::string::npos);
  CHECK(ends[2].what.find("iteration 1") != std::string::npos);
  for (int r : {0, 1, 3}) {
    CAPTURE(r);
    CHECK(ends[static_cast<std::size_t>(r)].kind == "peer");
    CHECK(ends[static_cast<std::size_t>(r)].what.find("parameter 11 is NaN") != std::string::npos);
  }
}

TEST_CASE(
    "GaiaSync with slack s: clock c's updates arrive at clock c + s exactly, and finish() delivers "
    "the rest") {
  // Updates that do not depend on the parameters, threshold 0, the mean
  // combine, dyadic values: after step c data center d holds
  //   x0 + sum_{k <= c} w_d u_d(k) + sum_{d' != d} sum_{k <= c - s} w_d' u_d'(k),
  // with u_d(k) the mean of its members' updates of clock k; after finish()
  // every data center holds x0 plus every clock's world mean.
  constexpr std::size_t len = 97;
  const auto dcs = labels({4, 2, 2});
  constexpr int n = 8;
  constexpr std::uint64_t clocks = 7;
  auto update = [](int rank, std::uint64_t c, std::size_t i) {
    return dyadic(static_cast<std::uint64_t>(rank) + 60, c, i);
  };
  for (const int s : {1, 2, 3}) {
    CAPTURE(s);
    std::vector<int> wrong(n, 0);
    InProcWorld(n).run([&](InProcTransport& t) {
      const int r = t.rank();
      const std::vector<float> initial = dyadic_model(8, len);
      std::vector<float> x = initial;
      GaiaSync<InProcTransport> gaia(
          t, initial, dcs, {.threshold = 0, .schedule = GaiaSchedule::constant, .slack = s});
      const auto& all = gaia.data_centers();
      // w_d u_d(k) of every data center, element i.
      auto share = [&](std::size_t d, std::uint64_t k, std::size_t i) {
        float sum = 0;
        for (int q : all[d]) sum += update(q, k, i);
        return sum / static_cast<float>(all[d].size()) * (static_cast<float>(all[d].size()) / n);
      };
      for (std::uint64_t c = 0; c < clocks; ++c) {
        for (std::size_t i = 0; i < len; ++i) x[i] += update(r, c, i);
        gaia.step(x);
        for (std::size_t i = 0; i < len; ++i) {
          float want = initial[i];
          for (std::size_t d = 0; d < all.size(); ++d)
            for (std::uint64_t k = 0; k <= c; ++k)
              if (static_cast<int>(d) == gaia.data_center() || k + std::uint64_t(s) <= c)
                want += share(d, k, i);
          wrong[static_cast<std::size_t>(r)] += x[i] != want;
        }
      }
      gaia.finish(x);
      for (std::size_t i = 0; i < len; ++i) {
        float want = initial[i];
        for (std::uint64_t k = 0; k < clocks; ++k) {
          float world = 0;
          for (int q = 0; q < n; ++q) world += update(q, k, i);
          want += world / n;
        }
        wrong[static_cast<std::size_t>(r)] += x[i] != want;
      }
      gaia.finish(x);  // a second finish() has nothing left to apply
      wrong[static_cast<std::size_t>(r)] +=
          gaia.stats().bytes_sent != gaia.stats().wan_bytes + gaia.stats().lan_bytes;
    });
    CHECK(wrong == std::vector<int>(n, 0));
  }
}

#ifdef DSSYNC_TEST_SIM
#include "dssync/transport/sim.hpp"

TEST_CASE(
    "GaiaSync on the simulator: with one data center 3x slower the fast one runs at most slack "
    "clocks ahead, and does") {
  // Two data centers of two ranks; the second computes three times as long
  // a clock. The fast data center cannot end step c before the slow one has
  // begun clock c - s (it waits for that clock's exchange), and with s >= 1
  // it uses the slack: it ends step c before the slow one begins c - s + 1.
  constexpr int n = 4;
  constexpr std::size_t len = 4096;
  constexpr std::uint64_t clocks = 14;
  constexpr double compute = 0.01;
  const auto dcs = labels({2, 2});
  for (const int s : {0, 1, 2}) {
    CAPTURE(s);
    std::vector<std::vector<double>> began(n), ended(n);
    std::vector<std::vector<float>> last(n);
    auto run = [&] {
      for (auto& v : began) v.clear();
      for (auto& v : ended) v.clear();
      dssync::SimWorld(n).run([&](dssync::SimTransport& t) {
        const int r = t.rank();
        std::vector<float> x(len, 1.0f);
        GaiaSync<dssync::SimTransport> gaia(t, x, dcs, {.threshold = 0.01, .slack = s});
        for (std::uint64_t c = 0; c < clocks; ++c) {
          t.compute(r >= 2 ? 3 * compute : compute);
          for (std::size_t i = 0; i < len; ++i)
            x[i] += 0.05f * noise(static_cast<std::uint64_t>(r), c, i);
          began[static_cast<std::size_t>(r)].push_back(t.now());
          gaia.step(x);
          ended[static_cast<std::size_t>(r)].push_back(t.now());
        }
        gaia.finish(x);
        last[static_cast<std::size_t>(r)] = x;
      });
    };
    run();
    const auto first_began = began, first_ended = ended;
    const auto first_last = last;
    run();
    CHECK(began == first_began);  // virtual time repeats to the bit
    CHECK(ended == first_ended);
    CHECK(last == first_last);
    int beyond = 0, used = 0;
    for (int fast : {0, 1})
      for (int slow : {2, 3})
        for (std::uint64_t c = std::uint64_t(s); c < clocks; ++c) {
          const auto& e = ended[static_cast<std::size_t>(fast)];
          const auto& b = began[static_cast<std::size_t>(slow)];
          beyond += e[c] < b[c - std::uint64_t(s)];
          if (c >= 4 && c - std::uint64_t(s) + 1 < clocks)
            used += e[c] < b[c - std::uint64_t(s) + 1];
        }
    CHECK(beyond == 0);
    if (s > 0) CHECK(used > 0);
    // After finish() the two data centers differ only by what the filters hold back.
    CHECK(last[0] == last[1]);
    CHECK(last[2] == last[3]);
  }
}
#endif

TEST_CASE(
    "GaiaSync with slack: steps may follow finish(), and the models still end at the world's "
    "average, exactly on dyadic values") {
  constexpr std::size_t len = 64;
  constexpr int n = 4;
  constexpr std::uint64_t clocks = 9;
  for (const int s : {1, 2}) {
    CAPTURE(s);
    std::vector<int> wrong(n, 0);
    InProcWorld(n).run([&](InProcTransport& t) {
      const int r = t.rank();
      const std::vector<float> initial = dyadic_model(8, len);
      std::vector<float> x = initial;
      GaiaSync<InProcTransport> gaia(
          t, initial, labels({2, 2}),
          {.threshold = 0, .schedule = GaiaSchedule::constant, .slack = s});
      for (std::uint64_t c = 0; c < clocks; ++c) {
        for (std::size_t i = 0; i < len; ++i) x[i] += dyadic(std::uint64_t(r) + 60, c, i);
        gaia.step(x);
        if (c == 3) gaia.finish(x);
      }
      gaia.finish(x);
      for (std::size_t i = 0; i < len; ++i) {
        float want = initial[i];
        for (std::uint64_t k = 0; k < clocks; ++k) {
          float world = 0;
          for (int q = 0; q < n; ++q) world += dyadic(std::uint64_t(q) + 60, k, i);
          want += world / n;
        }
        wrong[static_cast<std::size_t>(r)] += x[i] != want;
      }
    });
    CHECK(wrong == std::vector<int>(n, 0));
  }
}

TEST_CASE("GaiaSync: the next step synchronizes across data centers every period-th clock") {
  InProcWorld(2).run([&](InProcTransport& t) {
    std::vector<float> x(4, 1.0f);
    GaiaSync<InProcTransport> gaia(t, x, labels({1, 1}), {.period = 3});
    std::vector<bool> next;
    for (int c = 0; c < 7; ++c) {
      next.push_back(gaia.synchronizes_next());
      gaia.step(x);
    }
    CHECK(next == std::vector<bool>{false, false, true, false, false, true, false});
  });
}

TEST_CASE(
    "GaiaSync: checked mode stops ranks that disagree on the slack, or on the linear schedule's "
    "end, before any exchange") {
  constexpr int n = 4;
  const std::vector<std::function<dssync::GaiaOptions(int)>> disagreements = {
      [](int r) { return dssync::GaiaOptions{.slack = r == 3 ? 1 : 0, .checked = true}; },
      [](int r) {
        return dssync::GaiaOptions{.threshold = 0.5,
                                   .schedule = GaiaSchedule::linear,
                                   .lower = r == 1 ? 0.25 : 0.125,
                                   .iterations = 4,
                                   .checked = true};
      }};
  for (std::size_t k = 0; k < disagreements.size(); ++k) {
    CAPTURE(k);
    std::vector<dssync_test::Outcome> ends(n);
    try {
      InProcWorld(n, {.timeout = std::chrono::milliseconds(5000)}).run([&](InProcTransport& t) {
        try {
          std::vector<float> x(16, 1.0f);
          GaiaSync<InProcTransport> gaia(t, x, labels({2, 2}), disagreements[k](t.rank()));
          gaia.step(x);
        } catch (...) {
          ends[static_cast<std::size_t>(t.rank())] =
              dssync_test::classify(std::current_exception());
          throw;
        }
      });
    } catch (const dssync::error&) {
    }
    // Every rank stops: with the check's configuration_error, or, when another
    // rank's came first and failed the world, with the peer_error carrying it.
    int configuration = 0;
    for (int r = 0; r < n; ++r) {
      CAPTURE(r);
      const auto& kind = ends[static_cast<std::size_t>(r)].kind;
      CHECK((kind == "configuration" || kind == "peer"));
      configuration += kind == "configuration" ? 1 : 0;
      CHECK(ends[static_cast<std::size_t>(r)].what.find("ranks disagree") != std::string::npos);
    }
    CHECK(configuration >= 1);
  }
}
