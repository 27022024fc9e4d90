// ShadowSync and its rounds (include/dssync/sync/shadow.hpp,
// policy/round.hpp). In-process here; on the simulator when it is built with
// the tests.

#include <doctest/doctest.h>

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "dssync/dssync.hpp"
#include "dssync/sync/shadow.hpp"
#include "outcome.hpp"
#ifdef DSSYNC_TEST_SIM
#include "dssync/transport/sim.hpp"
#endif

#include "allocations.hpp"

namespace {

using dssync::InProcTransport;
using dssync::InProcWorld;

constexpr std::size_t kLen = 2003;

// A trainer-like local step: params move along a gradient that depends on
// the rank and the parameters (not dyadic).
void local_step(std::span<float> params, int rank) {
  for (std::size_t i = 0; i < params.size(); ++i)
    params[i] -= 0.05f * std::sin(params[i] * 3.0f + float(rank)) * 0.37f;
}
std::vector<float> start_params(std::size_t len) {
  std::vector<float> p(len);
  for (std::size_t i = 0; i < len; ++i) p[i] = 0.001f * float(i % 97);
  return p;
}

// Runs `steps` local steps, each followed by sync.step(params), on n ranks;
// returns every rank's parameters.
template <class MakeSync>
std::vector<std::vector<float>> train(int n, int steps, MakeSync make, bool finish = false) {
  std::vector<std::vector<float>> out(static_cast<std::size_t>(n));
  InProcWorld(n).run([&](InProcTransport& t) {
    auto sync = make(t);
    std::vector<float> params = start_params(kLen);
    for (int s = 0; s < steps; ++s) {
      local_step(params, t.rank());
      sync->step(std::span<float>(params));
    }
    if constexpr (requires { sync->finish(std::span<float>(params)); })
      if (finish) sync->finish(std::span<float>(params));
    out[static_cast<std::size_t>(t.rank())] = params;
  });
  return out;
}

}  // namespace

TEST_CASE("ShadowSync: lag bound 0 with model averaging is AllReduceSync on parameters, bit for bit") {
  const auto shadow = train(5, 12, [](InProcTransport& t) {
    return std::make_unique<dssync::ShadowSync<InProcTransport>>(
        t, kLen, dssync::ShadowSyncOptions{.max_lag = 0});
  });
  const auto bsp = train(5, 12, [](InProcTransport& t) {
    return std::make_unique<dssync::AllReduceSync<InProcTransport>>(t);
  });
  CHECK(shadow == bsp);
  for (const auto& p : shadow) CHECK(p == shadow[0]);
}

namespace {
// AllReduceSync on parameters after steps 0, P, 2P, ...: local SGD's schedule.
template <class T>
struct EveryP {
  EveryP(T& t, int p) : sync(t), period(p) {}
  dssync::AllReduceSync<T> sync;
  int period;
  int step_ = 0;
  void step(std::span<float> p) {
    if (step_++ % period == 0) sync.step(p);
  }
};
}  // namespace

TEST_CASE("ShadowSync: a period P with lag bound 0 averages after steps 0, P, 2P, ... and nowhere else") {
  for (const int period : {2, 3, 5}) {
    CAPTURE(period);
    const auto shadow = train(4, 13, [&](InProcTransport& t) {
      return std::make_unique<dssync::ShadowSync<InProcTransport>>(
          t, kLen, dssync::ShadowSyncOptions{.max_lag = 0, .period = std::uint64_t(period)});
    });
    const auto local = train(4, 13, [&](InProcTransport& t) {
      return std::make_unique<EveryP<InProcTransport>>(t, period);
    });
    CHECK(shadow == local);
    // 13 steps: the last average was after step 12 only when P divides 12.
    CHECK((shadow[0] == shadow[1]) == (12 % period == 0));
  }
}

TEST_CASE("ShadowSync: with a period P and no lag bound, a rank starts at most ceil(steps / P) rounds") {
  constexpr int n = 3, steps = 20, period = 6;
  std::vector<std::uint64_t> rounds(n), after(n);
  std::vector<std::vector<float>> out(n);
  InProcWorld(n).run([&](InProcTransport& t) {
    dssync::ShadowSync<InProcTransport> shadow(t, kLen, {.period = period});
    std::vector<float> x = start_params(kLen);
    for (int s = 0; s < steps; ++s) {
      local_step(x, t.rank());
      shadow.step(std::span<float>(x));
    }
    const auto r = static_cast<std::size_t>(t.rank());
    rounds[r] = shadow.stats().rounds;
    shadow.finish(std::span<float>(x));
    after[r] = shadow.stats().rounds;
    out[r] = x;
  });
  for (int r = 0; r < n; ++r) {
    CAPTURE(r);
    CHECK(rounds[std::size_t(r)] >= 1);
    CHECK(rounds[std::size_t(r)] <= (steps + period - 1) / period);
    // finish() runs the rounds a rank lacks: every rank ends with the most any started.
    CHECK(after[std::size_t(r)] == *std::max_element(rounds.begin(), rounds.end()));
    CHECK(out[std::size_t(r)] == out[0]);
  }
}

TEST_CASE("ShadowSync: stats() counts the rounds' bytes and the final average's") {
  // A ring all-reduce of 1000 floats on 4 ranks: each sends 2 (n - 1) blocks of 250.
  constexpr int n = 4;
  std::vector<std::uint64_t> sent(n), rounds(n);
  InProcWorld(n).run([&](InProcTransport& t) {
    dssync::ShadowSync<InProcTransport> shadow(t, 1000, {.max_lag = 0});
    std::vector<float> x(1000, 1.0f);
    for (int s = 0; s < 5; ++s) shadow.step(std::span<float>(x));
    shadow.finish(std::span<float>(x));
    sent[static_cast<std::size_t>(t.rank())] = shadow.stats().bytes_sent;
    rounds[static_cast<std::size_t>(t.rank())] = shadow.stats().rounds;
  });
  CHECK(rounds == std::vector<std::uint64_t>(n, 5));
  CHECK(sent == std::vector<std::uint64_t>(n, (5 + 1) * 6 * 1000));
}

TEST_CASE("ShadowSync: BMUF with zero block momentum and block_lr 1 is model averaging, bit for bit") {
  const auto bmuf = train(4, 10, [](InProcTransport& t) {
    return std::make_unique<dssync::ShadowSync<InProcTransport, dssync::ShadowBMUF>>(
        t, kLen, dssync::ShadowSyncOptions{.max_lag = 0},
        dssync::ShadowBMUFOptions{.block_momentum = 0, .block_lr = 1});
  });
  const auto ma = train(4, 10, [](InProcTransport& t) {
    return std::make_unique<dssync::ShadowSync<InProcTransport>>(
        t, kLen, dssync::ShadowSyncOptions{.max_lag = 0});
  });
  CHECK(bmuf == ma);
  // With momentum it is not.
  const auto moving = train(4, 10, [](InProcTransport& t) {
    return std::make_unique<dssync::ShadowSync<InProcTransport, dssync::ShadowBMUF>>(
        t, kLen, dssync::ShadowSyncOptions{.max_lag = 0},
        dssync::ShadowBMUFOptions{.block_momentum = 0.5, .block_lr = 1});
  });
  CHECK(moving != ma);
}

TEST_CASE("ShadowEASGD: the centre and the workers contract by exactly 1 - n alpha and 1 - alpha") {
  constexpr int n = 4;
  constexpr double alpha = 0.125;  // 1 - n alpha = 1/2, 1 - alpha = 7/8
  std::vector<int> wrong(n, 0);
  InProcWorld(n).run([&](InProcTransport& t) {
    dssync::ShadowEASGD<InProcTransport, float> easgd(t, 3, {.alpha = alpha});
    const int r = t.rank();
    // Round 0 sets the centre to the average of the snapshots.
    std::vector<float> x{float(r), float(2 * r), -float(r)};  // averages 1.5, 3, -1.5
    easgd.round(x, 0);
    int& bad = wrong[static_cast<std::size_t>(r)];
    const std::vector<float> c0{1.5f, 3.0f, -1.5f};
    for (int i = 0; i < 3; ++i) {
      bad += easgd.centre()[std::size_t(i)] != c0[std::size_t(i)] - 0.0f;  // c + n a (avg - c) = avg
    }
    // Round 1 from snapshots averaging avg1: centre - avg1 halves, x - c shrinks by 7/8.
    std::vector<float> y{float(r) + 4.0f, float(2 * r) - 8.0f, 0.5f * float(r)};
    const std::vector<float> avg1{1.5f + 4.0f, 3.0f - 8.0f, 0.75f};
    const std::vector<float> snapshot = y;
    easgd.round(y, 1);
    for (int i = 0; i < 3; ++i) {
      const auto k = std::size_t(i);
      bad += easgd.centre()[k] - avg1[k] != 0.5f * (c0[k] - avg1[k]);
      bad += y[k] - c0[k] != 0.875f * (snapshot[k] - c0[k]);
    }
  });
  CHECK(wrong == std::vector<int>(n, 0));
}

TEST_CASE("ShadowSync: the progress made between snapshot and merge is kept exactly") {
  constexpr int n = 4;
  std::vector<int> wrong(n, 0);
  InProcWorld(n).run([&](InProcTransport& t) {
    dssync::ShadowSync<InProcTransport> shadow(t, 6, {.max_lag = 1});
    const int r = t.rank();
    std::vector<float> x{float(r), 1, 2, 3, float(-r), 0.5f};  // dyadic
    shadow.step(std::span<float>(x));  // snapshot, round 0 starts
    const std::vector<float> delta{0.25f, -0.5f, 1, 2, 0.125f, -4};
    for (std::size_t i = 0; i < x.size(); ++i) x[i] += delta[i];
    shadow.step(std::span<float>(x));  // lag 1: merges round 0
    const std::vector<float> avg{1.5f, 1, 2, 3, -1.5f, 0.5f};
    for (std::size_t i = 0; i < x.size(); ++i) wrong[std::size_t(r)] += x[i] != avg[i] + delta[i];
    std::vector<float> end = x;
    shadow.finish(std::span<float>(end));
  });
  CHECK(wrong == std::vector<int>(n, 0));
}

TEST_CASE("ShadowSync: finish() leaves every rank the same parameters, whatever the rounds ran") {
  for (int variant = 0; variant < 4; ++variant) {
    CAPTURE(variant);
    std::vector<std::vector<float>> out(5);
    std::vector<std::uint64_t> rounds(5);
    InProcWorld(5).run([&](InProcTransport& t) {
      std::vector<float> params = start_params(kLen);
      auto run = [&](auto& shadow) {
        // Uneven ranks: rank r steps 10 + 3r times, so they start different numbers of rounds.
        for (int s = 0; s < 10 + 3 * t.rank(); ++s) {
          local_step(params, t.rank());
          shadow.step(std::span<float>(params));
        }
        shadow.finish(std::span<float>(params));
        rounds[static_cast<std::size_t>(t.rank())] = shadow.rounds();
      };
      if (variant == 0) {
        dssync::ShadowSync<InProcTransport> s(t, kLen);
        run(s);
      } else if (variant == 1) {
        dssync::ShadowSync<InProcTransport, dssync::ShadowBMUF> s(t, kLen);
        run(s);
      } else if (variant == 2) {
        dssync::ShadowSync<InProcTransport, dssync::ShadowEASGD> s(t, kLen, {}, {.alpha = 0.2});
        run(s);
      } else {
        dssync::ShadowSync<InProcTransport, dssync::ShadowDS> s(t, kLen, {}, {.group_size = 2});
        run(s);
      }
      out[static_cast<std::size_t>(t.rank())] = params;
    });
    for (int r = 1; r < 5; ++r) {
      CHECK(out[std::size_t(r)] == out[0]);
      CHECK(rounds[std::size_t(r)] == rounds[0]);
    }
  }
}

TEST_CASE("ShadowSync: a background error surfaces at the next step() with its round and group") {
  std::vector<dssync_test::Outcome> ends(2);
  try {
    InProcWorld(2, {.timeout = std::chrono::milliseconds(2000)}).run([&](InProcTransport& t) {
      try {
        const std::size_t len = t.rank() == 0 ? 8 : 9;  // a size mismatch in round 0
        dssync::ShadowSync<InProcTransport> shadow(t, len, {.max_lag = 1});
        std::vector<float> x(len, 1.0f);
        shadow.step(std::span<float>(x));  // starts round 0, returns
        shadow.step(std::span<float>(x));  // merges it: rethrows
      } catch (...) {
        ends[static_cast<std::size_t>(t.rank())] = dssync_test::classify(std::current_exception());
        throw;
      }
    });
  } catch (const dssync::error&) {
  }
  bool mismatch = false;
  for (const auto& e : ends) {
    CAPTURE(e.what);
    CHECK(e.kind != "none");
    if (e.kind != "size_mismatch") continue;
    mismatch = true;
    CHECK(e.what.find("iteration 0") != std::string::npos);
    CHECK(e.what.find("group [0 1]") != std::string::npos);
  }
  CHECK(mismatch);
}

TEST_CASE("ShadowSync: no allocation in steady state") {
  constexpr int n = 3;
  std::barrier meet(n);
  std::vector<std::uint64_t> counted(n, 99);
  InProcWorld(n).run([&](InProcTransport& t) {
    dssync::ShadowSync<InProcTransport, dssync::ShadowBMUF> shadow(t, kLen, {.max_lag = 1});
    std::vector<float> params = start_params(kLen);
    for (int s = 0; s < 4; ++s) shadow.step(std::span<float>(params));
    meet.arrive_and_wait();
    const std::uint64_t before = g_allocations.load();
    for (int s = 0; s < 10; ++s) {
      local_step(params, t.rank());
      shadow.step(std::span<float>(params));
    }
    meet.arrive_and_wait();
    counted[static_cast<std::size_t>(t.rank())] = g_allocations.load() - before;
    meet.arrive_and_wait();
    shadow.finish(std::span<float>(params));
  });
  CHECK(counted == std::vector<std::uint64_t>(n, 0));
}

TEST_CASE("ShadowSync: bad options are configuration_errors naming the rank") {
  InProcWorld(4).run([&](InProcTransport& t) {
    using Easgd = dssync::ShadowSync<InProcTransport, dssync::ShadowEASGD>;
    CHECK_THROWS_WITH_AS(Easgd(t, 4, {}, {.alpha = 0.5}), doctest::Contains("diverges"),
                         dssync::configuration_error);  // n alpha = 2
    CHECK_THROWS_AS(Easgd(t, 4, {}, {.alpha = 0}), dssync::configuration_error);
    CHECK_THROWS_AS(Easgd(t, 4, {}, {.alpha = std::nan("")}), dssync::configuration_error);
    using Bmuf = dssync::ShadowSync<InProcTransport, dssync::ShadowBMUF>;
    CHECK_THROWS_AS(Bmuf(t, 4, {}, {.block_momentum = 1.0}), dssync::configuration_error);
    CHECK_THROWS_AS(Bmuf(t, 4, {}, {.block_lr = -1.0}), dssync::configuration_error);
    dssync::ShadowSync<InProcTransport> ok(t, 4);
    std::vector<float> wrong(5);
    CHECK_THROWS_WITH_AS(ok.step(std::span<float>(wrong)), doctest::Contains("made for 4"),
                         dssync::configuration_error);
    std::vector<float> right(4, 1.0f);
    ok.finish(std::span<float>(right));
  });
}

#ifdef DSSYNC_TEST_SIM
TEST_CASE(
    "ShadowSync with max_lag 2: every round is merged two steps after it started, so a slower "
    "rank cannot strand finish(), and threads and the simulator agree to the bit") {
  // Rank 1 is much slower. Were a round merged as soon as it ended, rank 1
  // would start round 3 at once and wait for it in step 5, while rank 0,
  // done with its steps, waits in finish() for rank 1: a deadlock.
  constexpr int n = 2, steps = 7;
  constexpr std::size_t len = 100000;  // a round takes about 0.1 s of virtual time
  std::vector<std::vector<float>> threads(n), sim(n);
  std::vector<int> wrong(n, 0);
  auto train = [&](auto& t, auto&& slow_down, std::vector<std::vector<float>>& out) {
    using Tr = std::remove_reference_t<decltype(t)>;
    dssync::ShadowSync<Tr> shadow(t, len, {.max_lag = 2});
    std::vector<float> params = start_params(len);
    int& bad = wrong[static_cast<std::size_t>(t.rank())];
    for (int s = 0; s < steps; ++s) {
      slow_down(t);
      local_step(params, t.rank());
      shadow.step(std::span<float>(params));
      bad += shadow.rounds() != static_cast<std::uint64_t>(s / 2 + 1);  // at steps 0, 2, 4, 6
    }
    bad += shadow.stats().lag_steps != 2 * shadow.stats().merges;
    shadow.finish(std::span<float>(params));
    out[static_cast<std::size_t>(t.rank())] = params;
  };
  InProcWorld(n, {.timeout = std::chrono::seconds(20)}).run([&](InProcTransport& t) {
    train(
        t,
        [](InProcTransport& tr) {
          if (tr.rank() == 1) std::this_thread::sleep_for(std::chrono::milliseconds(20));
        },
        threads);
  });
  dssync::SimWorld(n, {.bandwidth = 4e6}).run([&](dssync::SimTransport& t) {
    train(
        t, [](dssync::SimTransport& tr) { tr.compute(tr.rank() == 1 ? 0.3 : 0.001); }, sim);
  });
  CHECK(wrong == std::vector<int>(n, 0));
  CHECK(threads[0] == threads[1]);
  CHECK(sim == threads);
}

TEST_CASE("ShadowSync on the simulator: the trainer never waits, and two runs agree to the bit") {
  auto run = [] {
    std::vector<std::vector<float>> out(8);
    std::vector<double> finish(8);
    dssync::SimOptions o{.bandwidth = 1.25e7, .straggler_fraction = 0.25, .seed = 3};
    dssync::SimWorld(8, o).run([&](dssync::SimTransport& t) {
      dssync::ShadowSync<dssync::SimTransport, dssync::ShadowDS> shadow(t, kLen);
      std::vector<float> params = start_params(kLen);
      for (int s = 0; s < 30; ++s) {
        t.compute(1e-3);
        local_step(params, t.rank());
        shadow.step(std::span<float>(params));
      }
      // No waiting in step(): 30 steps take 30 compute times (times the straggler factor).
      finish[static_cast<std::size_t>(t.rank())] = t.now() / (t.straggler() ? 2.0 : 1.0);
      shadow.finish(std::span<float>(params));
      out[static_cast<std::size_t>(t.rank())] = params;
    });
    return std::make_pair(out, finish);
  };
  const auto a = run();
  const auto b = run();
  CHECK(a.first == b.first);
  CHECK(a.second == b.second);
  for (const double f : a.second) CHECK(f == doctest::Approx(30e-3).epsilon(1e-9));
  for (const auto& p : a.first) CHECK(p == a.first[0]);
}
#endif
