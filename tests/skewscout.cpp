// SkewScout: the accuracy-loss controller around a synchronizer's
// communication knob (include/dssync/sync/skewscout.hpp), and the knobs it
// turns: GaiaSync's threshold and LocalSGD's period.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "dssync/dssync.hpp"
#include "dssync/sync/gaia.hpp"
#include "dssync/sync/skewscout.hpp"

namespace {

using dssync::InProcTransport;
using dssync::InProcWorld;
using dssync::SkewScout;

// A synchronizer that only has a knob.
struct Dial {
  using transport_type = InProcTransport;
  double value = 1;
  std::uint64_t turns = 0;
  template <class P>
  void step(P&&) {}
  double knob() const { return value; }
  void set_knob(double k) {
    value = k;
    ++turns;
  }
};

}  // namespace

TEST_CASE(
    "SkewScout: a scripted loss sequence gives the documented knob trajectory on every rank") {
  // Three data centers of two; each rank's model carries its data center in
  // element 0. A leader's probe scores a model from home 1 and a visitor
  // 1 - loss[p] in period p, so AL is exactly loss[p] (dyadic).
  const std::vector<std::string> dcs = {"a", "a", "b", "b", "c", "c"};
  const std::vector<double> loss = {0, 0.5, 0.03125, 0.0625, 0, 0.75, 0.015625,
                                    0, 0,   1,       1,      1, 1,    1};
  // target 1/16, relax 1/2: the band [1/32, 1/16] keeps the knob; halve
  // above it, double below it, within [1/8, 4].
  const std::vector<double> knob = {2, 1, 1, 1, 2, 1, 2, 4, 4, 2, 1, 0.5, 0.25, 0.125};
  constexpr std::uint64_t period = 3;
  std::vector<std::vector<double>> seen(6);
  std::vector<int> calls(6, 0);
  InProcWorld(6).run([&](InProcTransport& t) {
    const int r = t.rank();
    const float home = static_cast<float>(r / 2);
    std::uint64_t p = 0;
    Dial dial;
    SkewScout<Dial> scout(t, dial, dcs,
                          {.target = 0.0625, .period = period, .knob_min = 0.125, .knob_max = 4},
                          [&](std::span<const float> model) {
                            ++calls[static_cast<std::size_t>(r)];
                            return model[0] == home ? 1.0 : 1.0 - loss[p];
                          });
    std::vector<float> x(5, home);
    for (std::uint64_t step = 0; step < period * loss.size(); ++step) {
      scout.step(x);
      if ((step + 1) % period == 0) {
        seen[static_cast<std::size_t>(r)].push_back(dial.knob());
        CHECK(scout.stats().loss == loss[p]);
        CHECK(scout.stats().knob == dial.knob());
        ++p;
      }
    }
  });
  for (int r = 0; r < 6; ++r) {
    CAPTURE(r);
    CHECK(seen[static_cast<std::size_t>(r)] == knob);
    // Leaders score their own model and a visitor each period; the others never.
    CHECK(calls[static_cast<std::size_t>(r)] ==
          (r % 2 == 0 ? 2 * static_cast<int>(loss.size()) : 0));
  }
  // The rule alone.
  const dssync::SkewScoutOptions o{.target = 0.0625, .knob_min = 0.125, .knob_max = 4};
  CHECK(SkewScout<Dial>::next_knob(1, 0.0625, o) == 1);
  CHECK(SkewScout<Dial>::next_knob(1, 0.0625000001, o) == 0.5);
  CHECK(SkewScout<Dial>::next_knob(1, 0.03125, o) == 1);
  CHECK(SkewScout<Dial>::next_knob(1, 0.0312499, o) == 2);
  CHECK(SkewScout<Dial>::next_knob(0.2, 1, o) == 0.125);
  CHECK(SkewScout<Dial>::next_knob(3, 0, o) == 4);
}

TEST_CASE(
    "SkewScout's baselines: the visitor's home accuracy counts how much harder the host's data "
    "is, the host's model does not") {
  // Three data centers of two whose probes differ in difficulty: the probe of
  // data center k scores its own model at base[k] and, unless the models are
  // alike, any other at base[k] - 1/8 (a model carries its data center in
  // element 0). All values dyadic.
  const std::vector<std::string> dcs = {"a", "a", "b", "b", "c", "c"};
  const std::vector<double> base = {1, 0.5, 0.25};
  auto run = [&](dssync::SkewScoutBaseline baseline, bool alike) {
    std::vector<double> loss(6, -1);
    InProcWorld(6).run([&](InProcTransport& t) {
      const int dc = t.rank() / 2;
      Dial dial;
      SkewScout<Dial> scout(t, dial, dcs, {.target = 0.0625, .period = 1, .baseline = baseline},
                            [&](std::span<const float> model) {
                              const double b = base[static_cast<std::size_t>(dc)];
                              return alike || model[0] == static_cast<float>(dc) ? b : b - 0.125;
                            });
      const std::vector<float> x(3, static_cast<float>(dc));
      loss[static_cast<std::size_t>(t.rank())] = scout.adjust(x);
    });
    return loss;
  };
  using dssync::SkewScoutBaseline;
  // Models the probes score alike: the paper's estimate is the largest drop
  // in difficulty from one data center's probe to the next's, max(1/2, 1/2,
  // 0); beside the host's model the visitor loses nothing.
  CHECK(run(SkewScoutBaseline::visitor_home, true) == std::vector<double>(6, 0.5));
  CHECK(run(SkewScoutBaseline::host_model, true) == std::vector<double>(6, 0.0));
  // Models that differ: max((1 - 3/8) / 1, (1/2 - 1/8) / (1/2), 0) = 3/4
  // against max over hosts of (1/8) / base = 1/2.
  CHECK(run(SkewScoutBaseline::visitor_home, false) == std::vector<double>(6, 0.75));
  CHECK(run(SkewScoutBaseline::host_model, false) == std::vector<double>(6, 0.5));
}

TEST_CASE(
    "SkewScout around GaiaSync: identical data and models give a loss of exactly zero, and the "
    "threshold loosens") {
  const std::vector<std::string> dcs = {"a", "b", "a", "b"};
  std::vector<std::vector<double>> thresholds(4);
  InProcWorld(4).run([&](InProcTransport& t) {
    std::vector<float> x(64);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 7) - 3.0f;
    dssync::GaiaSync<InProcTransport> gaia(
        t, x, dcs, {.threshold = 0.01, .schedule = dssync::GaiaSchedule::constant});
    // A deterministic score of the model: the share of positive entries.
    SkewScout scout(t, gaia, dcs, {.target = 0.05, .period = 2, .knob_max = 0.16},
                    [](std::span<const float> m) {
                      int positive = 0;
                      for (float v : m) positive += v > 0;
                      return static_cast<double>(positive) / static_cast<double>(m.size());
                    });
    for (int step = 0; step < 12; ++step) {
      for (std::size_t i = 0; i < x.size(); ++i)
        x[i] += 0.125f * static_cast<float>((i + step) % 3) - 0.125f;
      scout.step(x);  // every rank the same update: the models stay identical
      if (step % 2 == 1) {
        CHECK(scout.stats().loss == 0.0);
        thresholds[static_cast<std::size_t>(t.rank())].push_back(gaia.knob());
      }
    }
  });
  const std::vector<double> want = {0.02, 0.04, 0.08, 0.16, 0.16, 0.16};
  for (const auto& th : thresholds) {
    REQUIRE(th.size() == want.size());
    for (std::size_t k = 0; k < want.size(); ++k)
      CHECK(th[k] == doctest::Approx(want[k]).epsilon(1e-15));
  }
}

TEST_CASE("LocalSGD's period is a knob: a new period counts from the last synchronization") {
  InProcWorld(2).run([&](InProcTransport& t) {
    using Local = dssync::LocalSGD<dssync::AllReduceSync<InProcTransport>>;
    Local local(t, {.period = 4});
    std::vector<float> x(3, 1.0f);
    std::vector<std::uint64_t> synced;
    for (std::uint64_t step = 0; step < 20; ++step) {
      if (step == 9) local.set_knob(3);     // last synchronization at 7: next at 10, 13, 16, 19
      if (step == 14) local.set_knob(1.4);  // rounds to 1; last at 13: every step from 14
      if (local.synchronizes(step)) synced.push_back(step);
      local.step(x);
    }
    CHECK(synced == std::vector<std::uint64_t>{3, 7, 10, 13, 14, 15, 16, 17, 18, 19});
    CHECK(local.inner().stats().steps == synced.size());
    CHECK(local.knob() == 1);
    CHECK_THROWS_AS(local.partition(12), dssync::configuration_error);
    CHECK_NOTHROW(local.partition(15));
    CHECK_THROWS_AS(local.set_knob(0.5), dssync::configuration_error);
  });
}

TEST_CASE(
    "LocalSGD: a period set before any synchronization since the last change counts from the last "
    "one that ran, and partition() names the inner step that runs") {
  InProcWorld(4).run([&](InProcTransport& t) {
    using Local = dssync::LocalSGD<dssync::DSSync<InProcTransport>>;
    Local local(t, {.period = 4, .inner = {.group_size = 2, .seed = 7}});
    std::vector<float> x(8, static_cast<float>(t.rank()));
    std::vector<std::uint64_t> synced;
    int wrong = 0;
    for (std::uint64_t step = 0; step < 16; ++step) {
      if (step == 2) local.set_knob(2);  // none yet: 2 and 4 steps after the start, so 3
      if (step == 3) local.set_knob(4);  // still none (step 1 never ran as one): 3, then 7
      if (step == 8) local.set_knob(3);  // the last at 7: 10, 13, ...
      if (step == 9) local.set_knob(2);  // 10 never ran: from 7 on, 9, 11, 13, 15
      if (local.synchronizes(step)) {
        synced.push_back(step);
        wrong += local.partition(step).to_string() !=
                 local.inner().partition(local.inner().iteration()).to_string();
      }
      local.step(x);
    }
    CHECK(synced == std::vector<std::uint64_t>{3, 7, 9, 11, 13, 15});
    CHECK(wrong == 0);
    CHECK(local.inner().iteration() == synced.size());
    CHECK_THROWS_AS(local.partition(8), dssync::configuration_error);
  });
}

TEST_CASE("SkewScout around LocalSGD: a loss above target shortens the period to one") {
  const std::vector<std::string> dcs = {"a", "b"};
  std::vector<std::vector<double>> periods(2);
  InProcWorld(2).run([&](InProcTransport& t) {
    using Local = dssync::LocalSGD<dssync::AllReduceSync<InProcTransport>>;
    Local local(t, {.period = 8});
    // A leader scores its own model first, then the visitor: 0.9 at home,
    // 0.45 away, so AL = 0.5 every period.
    int calls = 0;
    SkewScout scout(t, local, dcs, {.target = 0.05, .period = 8, .knob_min = 1},
                    [&](std::span<const float>) { return calls++ % 2 == 0 ? 0.9 : 0.45; });
    std::vector<float> x(4, static_cast<float>(t.rank()));
    for (int step = 0; step < 40; ++step) {
      scout.step(x);
      if (step % 8 == 7) {
        CHECK(scout.stats().loss == 0.5);
        periods[static_cast<std::size_t>(t.rank())].push_back(local.knob());
      }
    }
  });
  CHECK(periods[0] == std::vector<double>{4, 2, 1, 1, 1});
  CHECK(periods[1] == periods[0]);
}

TEST_CASE(
    "SkewScout around LocalSGD: the knob is the controller's own, so a rounded period moves, and "
    "it stays at 1 or more with the default bounds") {
  // Factors 1.4 and 0.9 from whole periods round back to where they were
  // when the period itself is fed back; the controller's continuous value
  // moves on. Loosening from 1 (AL = 0): 1.4, 1.96, 2.744, 3.8416 give
  // periods 1, 2, 3, 4. Tightening from 3 (AL = 0.5): 2.7, 2.43 give 3, 2.
  // Halving from 8 with knob_min 0 stops at LocalSGD's lowest period, 1.
  const std::vector<std::string> dcs = {"a", "b"};
  struct Case {
    int start;
    double away;  // the visitor's score; home scores 0.9
    dssync::SkewScoutOptions options;
    std::vector<double> periods;
  };
  const std::vector<Case> cases = {
      {1, 0.9, {.target = 0.05, .period = 4, .loosen = 1.4}, {1, 2, 3, 4}},
      {3, 0.45, {.target = 0.05, .period = 4, .tighten = 0.9}, {3, 2, 2, 2}},
      {8, 0.45, {.target = 0.05, .period = 4}, {4, 2, 1, 1, 1, 1}},
  };
  for (const Case& c : cases) {
    CAPTURE(c.start);
    std::vector<std::vector<double>> periods(2);
    InProcWorld(2).run([&](InProcTransport& t) {
      using Local = dssync::LocalSGD<dssync::AllReduceSync<InProcTransport>>;
      Local local(t, {.period = c.start});
      int calls = 0;
      SkewScout scout(t, local, dcs, c.options,
                      [&](std::span<const float>) { return calls++ % 2 == 0 ? 0.9 : c.away; });
      std::vector<float> x(4, static_cast<float>(t.rank()));
      for (std::size_t step = 0; step < 4 * c.periods.size(); ++step) {
        scout.step(x);
        if (step % 4 == 3) periods[static_cast<std::size_t>(t.rank())].push_back(local.knob());
      }
    });
    CHECK(periods[0] == c.periods);
    CHECK(periods[1] == periods[0]);
  }
  // A finite knob stays finite, so it can tighten again.
  const dssync::SkewScoutOptions o{};
  const double top = SkewScout<Dial>::next_knob(std::numeric_limits<double>::max(), 0, o);
  CHECK(top == std::numeric_limits<double>::max());
  CHECK(SkewScout<Dial>::next_knob(top, 1, o) == top * 0.5);
}

TEST_CASE(
    "SkewScout's moments around LocalSGD: after the step that averaged the models the estimate is "
    "0, before it the drift of a whole period") {
  // Two data centers of one rank. Every step the caller sets its model to
  // 1/4 (rank 0) or 3/4 (rank 1), as local training on different data
  // would; a synchronization averages both to 1/2. The probe scores a model
  // by its first entry, so beside the host's model the visitor loses
  // (3/4 - 1/4) / (3/4) = 2/3 of it before an average and 0 after.
  const std::vector<std::string> dcs = {"a", "b"};
  using Local = dssync::LocalSGD<dssync::AllReduceSync<InProcTransport>>;
  using dssync::SkewScoutMoment;
  struct Trace {
    std::vector<std::uint64_t> estimated_at;  // steps (from 0) whose estimate had just been made
    std::vector<double> losses;
    std::vector<std::uint64_t> synced;
  };
  auto run = [&](SkewScoutMoment moment, std::uint64_t period, double target) {
    std::vector<Trace> traces(2);
    InProcWorld(2).run([&](InProcTransport& t) {
      Local local(t, {.period = 4});
      SkewScout scout(t, local, dcs,
                      {.target = target,
                       .period = period,
                       .knob_min = 1,
                       .knob_max = 4,
                       .baseline = dssync::SkewScoutBaseline::host_model,
                       .moment = moment},
                      [](std::span<const float> m) { return static_cast<double>(m[0]); });
      Trace& trace = traces[static_cast<std::size_t>(t.rank())];
      CHECK(std::isnan(scout.stats().loss));  // no estimate yet
      std::vector<float> x(3);
      for (std::uint64_t step = 0; step < 24; ++step) {
        std::fill(x.begin(), x.end(), t.rank() == 0 ? 0.25f : 0.75f);
        const bool syncs = local.synchronizes_next();
        if (syncs) trace.synced.push_back(step);
        const auto before = scout.stats().estimates;
        scout.step(x);
        CHECK(x[0] == (syncs ? 0.5f : t.rank() == 0 ? 0.25f : 0.75f));
        if (scout.stats().estimates == before) continue;
        trace.estimated_at.push_back(step);
        trace.losses.push_back(scout.stats().loss);
      }
    });
    CHECK(traces[0].losses == traces[1].losses);
    CHECK(traces[0].synced == traces[1].synced);
    return traces[0];
  };
  const double drift = (0.75 - 0.25) / 0.75;

  SUBCASE("estimates every 4 steps with the period 4: after_step sees averaged models") {
    const Trace after = run(SkewScoutMoment::after_step, 4, 0.9);
    CHECK(after.estimated_at == std::vector<std::uint64_t>{3, 7, 11, 15, 19, 23});
    CHECK(after.losses == std::vector<double>(6, 0.0));
    const Trace before = run(SkewScoutMoment::before_sync, 4, 0.9);
    CHECK(before.estimated_at == after.estimated_at);
    CHECK(before.losses == std::vector<double>(6, drift));
  }
  SUBCASE("every 6 steps: before_sync waits for the synchronization after the period's end") {
    const Trace before = run(SkewScoutMoment::before_sync, 6, 0.9);
    // Periods end after steps 5, 11, 17 and 23; synchronizations at 3, 7, ...
    CHECK(before.estimated_at == std::vector<std::uint64_t>{7, 11, 19, 23});
    CHECK(before.losses == std::vector<double>(4, drift));
    CHECK(before.synced == std::vector<std::uint64_t>{3, 7, 11, 15, 19, 23});
  }
  SUBCASE("the knob turns after the synchronization it measured: the new period counts from it") {
    // Target 1/2 < 2/3: every estimate halves the period, down to 1.
    const Trace before = run(SkewScoutMoment::before_sync, 4, 0.5);
    CHECK(before.estimated_at == std::vector<std::uint64_t>{3, 7, 11, 15, 19, 23});
    CHECK(before.losses == std::vector<double>(6, drift));
    CHECK(before.synced == std::vector<std::uint64_t>{3, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
                                                      18, 19, 20, 21, 22, 23});
  }
}

TEST_CASE("SkewScout: bad options and probes are configuration_errors naming the rank") {
  InProcWorld(2).run([&](InProcTransport& t) {
    Dial dial;
    const std::vector<std::string> dcs = {"a", "b"};
    auto probe = [](std::span<const float>) { return 0.5; };
    using dssync::SkewScoutOptions;
    for (const SkewScoutOptions& o :
         {SkewScoutOptions{.target = 0}, SkewScoutOptions{.period = 0},
          SkewScoutOptions{.tighten = 1}, SkewScoutOptions{.loosen = 1},
          SkewScoutOptions{.relax = 0}, SkewScoutOptions{.knob_min = 2, .knob_max = 1},
          SkewScoutOptions{.baseline = static_cast<dssync::SkewScoutBaseline>(7)},
          SkewScoutOptions{.moment = static_cast<dssync::SkewScoutMoment>(7)}})
      CHECK_THROWS_AS(SkewScout<Dial>(t, dial, dcs, o, probe), dssync::configuration_error);
    CHECK_THROWS_WITH_AS(SkewScout<Dial>(t, dial, {"a"}, {}, probe),
                         doctest::Contains("labels for 1 ranks in a world of 2"),
                         dssync::configuration_error);
    CHECK_THROWS_AS(SkewScout<Dial>(t, dial, dcs, {}, nullptr), dssync::configuration_error);
  });
}

TEST_CASE(
    "SkewScout: a probe that returns no accuracy is a configuration_error naming the rank and the "
    "step the estimate belongs to, in either moment") {
  const std::vector<std::string> dcs = {"a", "b"};
  auto bad = [](std::span<const float>) { return 1.5; };
  // The message of the configuration_error `steps` throws ("" when none).
  auto message = [](auto&& steps) -> std::string {
    try {
      steps();
    } catch (const dssync::configuration_error& e) {
      return e.what();
    }
    return "";
  };
  using dssync::SkewScoutMoment;
  for (const auto moment : {SkewScoutMoment::after_step, SkewScoutMoment::before_sync}) {
    CAPTURE(static_cast<int>(moment));
    InProcWorld(2).run([&](InProcTransport& t) {
      // Every step synchronizes: the estimate of the period of 4 belongs to step 3.
      Dial dial;
      SkewScout<Dial> scout(t, dial, dcs, {.period = 4, .moment = moment}, bad);
      std::vector<float> x(2, 1.0f);
      const std::string what = message([&] {
        for (int step = 0; step < 4; ++step) scout.step(x);
      });
      CHECK(what.find("returned 1.5") != std::string::npos);
      CHECK(what.find("(rank " + std::to_string(t.rank()) + ", ") != std::string::npos);
      CHECK(what.find(", iteration 3)") != std::string::npos);
    });
  }
  // Around LocalSGD with a period of 4, before_sync waits from the end of
  // the first 6 steps for the synchronization of step 7.
  InProcWorld(2).run([&](InProcTransport& t) {
    using Local = dssync::LocalSGD<dssync::AllReduceSync<InProcTransport>>;
    Local local(t, {.period = 4});
    SkewScout scout(t, local, dcs, {.period = 6, .moment = SkewScoutMoment::before_sync}, bad);
    std::vector<float> x(2, 1.0f);
    int step = 0;
    const std::string what = message([&] {
      for (; step < 12; ++step) scout.step(x);
    });
    CHECK(what.find(", iteration 7)") != std::string::npos);
    CHECK(step == 7);
  });
}
