// SSPSync: bounded staleness with the all-reduce in the background
// (include/dssync/sync/ssp.hpp). In-process here; on the simulator (virtual
// time: the bound and the period) when it is built with the tests.

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
#include <limits>
#include <vector>

#include "dssync/dssync.hpp"
#include "dssync/sync/ssp.hpp"
#include "outcome.hpp"
#ifdef DSSYNC_TEST_SIM
#include "dssync/transport/sim.hpp"
#endif

#include "allocations.hpp"

namespace {

using dssync::InProcTransport;
using dssync::InProcWorld;

// A dyadic gradient of rank r at clock c: its means over 4 or 8 ranks are exact.
float gradient_value(int rank, std::uint64_t clock, std::size_t i) {
  return float((rank * 7 + int(clock) * 3 + int(i % 5)) % 16) / 8.0f;
}
void fill_gradient(std::span<float> g, int rank, std::uint64_t clock) {
  for (std::size_t i = 0; i < g.size(); ++i) g[i] = gradient_value(rank, clock, i);
}
float mean_over(int n, std::uint64_t clock, std::size_t i) {
  float sum = 0;
  for (int q = 0; q < n; ++q) sum += gradient_value(q, clock, i);
  return sum / float(n);
}

}  // namespace

TEST_CASE("SSPSync: step(c) returns the exact mean of clock c - s (zeros before), finish() the rest") {
  constexpr int n = 4;
  constexpr std::size_t len = 1001;
  constexpr std::uint64_t clocks = 9;
  for (const int s : {0, 1, 2, 4}) {
    CAPTURE(s);
    std::vector<int> wrong(n, 0);
    InProcWorld(n).run([&](InProcTransport& t) {
      dssync::SSPSync<InProcTransport> ssp(t, len, {.staleness = s});
      std::vector<float> g(len), rest(len);
      int& bad = wrong[static_cast<std::size_t>(t.rank())];
      for (std::uint64_t c = 0; c < clocks; ++c) {
        fill_gradient(g, t.rank(), c);
        ssp.step(g);
        for (std::size_t i = 0; i < len; ++i) {
          const float want = c < std::uint64_t(s) ? 0.0f : mean_over(n, c - std::uint64_t(s), i);
          bad += g[i] != want;
        }
      }
      ssp.finish(rest);
      for (std::size_t i = 0; i < len; ++i) {
        float want = 0;
        for (std::uint64_t c = clocks - std::uint64_t(s); c < clocks; ++c) want += mean_over(n, c, i);
        bad += rest[i] != want;
      }
      if (ssp.reduced() != clocks) ++bad;
      if (ssp.stats().reduced != clocks || ssp.stats().steps != clocks) ++bad;
      if (ssp.stats().max_in_flight > std::uint64_t(s) + 1) ++bad;
    });
    CHECK(wrong == std::vector<int>(n, 0));
  }
}

TEST_CASE(
    "SSPSync: every clock's mean is handed out once, across a second finish() and steps after "
    "finish()") {
  // Clocks 0-4, finish(), finish() again, clocks 5-8, finish(): each clock's
  // exact mean comes out once, in clock order, the first s after a finish()
  // as zeros.
  constexpr int n = 4;
  constexpr std::size_t len = 257;
  for (const int s : {1, 2}) {
    CAPTURE(s);
    std::vector<int> wrong(n, 0);
    InProcWorld(n).run([&](InProcTransport& t) {
      dssync::SSPSync<InProcTransport> ssp(t, len, {.staleness = s});
      std::vector<float> g(len), rest(len);
      int& bad = wrong[static_cast<std::size_t>(t.rank())];
      std::uint64_t next = 0;  // the clock whose mean comes out next
      auto expect = [&](std::span<const float> got, std::uint64_t upto) {
        for (std::size_t i = 0; i < len; ++i) {
          float want = 0;
          for (std::uint64_t c = next; c < upto; ++c) want += mean_over(n, c, i);
          bad += got[i] != want;
        }
        next = upto;
      };
      std::uint64_t since = 0;  // steps since the last finish()
      for (std::uint64_t c = 0; c < 9; ++c) {
        if (c == 5) {
          ssp.finish(rest);
          expect(rest, 5);
          ssp.finish(rest);
          expect(rest, 5);
          since = 0;
        }
        fill_gradient(g, t.rank(), c);
        ssp.step(g);
        expect(g, since++ < std::uint64_t(s) ? next : next + 1);
      }
      ssp.finish(rest);
      expect(rest, 9);
    });
    CHECK(wrong == std::vector<int>(n, 0));
  }
}

TEST_CASE("SSPSync: stats() counts every background all-reduce's bytes, finish() included") {
  // A ring all-reduce of 1000 floats on 4 ranks: each sends 2 (n - 1) blocks of 250.
  constexpr int n = 4;
  std::vector<std::uint64_t> sent(n);
  InProcWorld(n).run([&](InProcTransport& t) {
    dssync::SSPSync<InProcTransport> ssp(t, 1000, {.staleness = 2});
    std::vector<float> g(1000, 1.0f), rest(1000);
    for (int c = 0; c < 9; ++c) ssp.step(g);
    ssp.finish(rest);
    sent[static_cast<std::size_t>(t.rank())] = ssp.stats().bytes_sent;
  });
  CHECK(sent == std::vector<std::uint64_t>(n, 9 * 6 * 1000));
}

TEST_CASE("SSPSync: a job that ended while the trainer was away is collected once") {
  // The trainer sleeps between clocks, so each background all-reduce has
  // ended before the next step() and before finish() look at it: counting
  // it twice would leave a clock unreduced on this rank (and the others
  // waiting for it).
  constexpr int n = 3;
  std::vector<std::uint64_t> reduced(n), counted(n);
  std::vector<int> wrong(n, 0);
  InProcWorld(n).run([&](InProcTransport& t) {
    dssync::SSPSync<InProcTransport> ssp(t, 64, {.staleness = 1});
    std::vector<float> g(64), rest(64);
    for (std::uint64_t c = 0; c < 6; ++c) {
      fill_gradient(g, t.rank(), c);
      ssp.step(g);
      if (c >= 1)
        for (std::size_t i = 0; i < g.size(); ++i)
          wrong[static_cast<std::size_t>(t.rank())] += g[i] != mean_over(n, c - 1, i);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ssp.finish(rest);
    reduced[static_cast<std::size_t>(t.rank())] = ssp.reduced();
    counted[static_cast<std::size_t>(t.rank())] = ssp.stats().reduced;
  });
  CHECK(reduced == std::vector<std::uint64_t>(n, 6));
  CHECK(counted == std::vector<std::uint64_t>(n, 6));
  CHECK(wrong == std::vector<int>(n, 0));
}

TEST_CASE("SSPSync: staleness 0 is AllReduceSync on gradients (Average), bit for bit") {
  constexpr int n = 5;
  constexpr std::size_t len = 3001;
  std::vector<std::vector<float>> ssp_params(n), bsp_params(n);
  auto train = [&](auto make_step, std::vector<std::vector<float>>& out) {
    InProcWorld(n).run([&](InProcTransport& t) {
      auto step = make_step(t);
      std::vector<float> params(len), g(len);
      for (std::size_t i = 0; i < len; ++i) params[i] = 0.001f * float(i % 97);
      for (int c = 0; c < 20; ++c) {
        for (std::size_t i = 0; i < len; ++i)
          g[i] = std::sin(params[i] * 3.0f + float(t.rank())) * 0.37f;  // not dyadic
        step(g);
        for (std::size_t i = 0; i < len; ++i) params[i] -= 0.05f * g[i];
      }
      out[static_cast<std::size_t>(t.rank())] = params;
    });
  };
  train(
      [&](InProcTransport& t) {
        return [ssp = std::make_shared<dssync::SSPSync<InProcTransport>>(
                    t, len, dssync::SSPSyncOptions{.staleness = 0, .bucket_bytes = 4096})](
                   std::vector<float>& g) { ssp->step(g); };
      },
      ssp_params);
  train(
      [&](InProcTransport& t) {
        return [bsp = std::make_shared<
                    dssync::AllReduceSync<InProcTransport, dssync::RingReduce, dssync::Average>>(
                    t, dssync::AllReduceSyncOptions{.bucket_bytes = 4096})](std::vector<float>& g) {
          bsp->step(std::span<float>(g));
        };
      },
      bsp_params);
  for (int r = 0; r < n; ++r) {
    CHECK(ssp_params[static_cast<std::size_t>(r)] == bsp_params[static_cast<std::size_t>(r)]);
    CHECK(ssp_params[static_cast<std::size_t>(r)] == ssp_params[0]);
  }
}

TEST_CASE("SSPSync: no allocation in steady state, on the trainer or in the background") {
  constexpr int n = 3;
  constexpr std::size_t len = 20000;
  std::barrier meet(n);
  std::vector<std::uint64_t> counted(n, 99);
  InProcWorld(n).run([&](InProcTransport& t) {
    dssync::SSPSync<InProcTransport> ssp(t, len, {.staleness = 2, .bucket_bytes = 16384});
    std::vector<float> g(len, 1.0f);
    for (int c = 0; c < 4; ++c) ssp.step(g);  // warm-up: scratch buffers grow
    meet.arrive_and_wait();
    const std::uint64_t before = g_allocations.load();
    for (int c = 0; c < 10; ++c) ssp.step(g);
    meet.arrive_and_wait();
    counted[static_cast<std::size_t>(t.rank())] = g_allocations.load() - before;
    meet.arrive_and_wait();
  });
  // Every rank's window covers every rank's ten steps and background jobs.
  CHECK(counted == std::vector<std::uint64_t>(n, 0));
}

TEST_CASE("SSPSync: a rank that stops stepping is named by the others within the deadline") {
  constexpr int n = 3;
  std::vector<dssync_test::Outcome> ends(n);
  try {
    InProcWorld(n, {.timeout = std::chrono::milliseconds(500)}).run([&](InProcTransport& t) {
      try {
        dssync::SSPSync<InProcTransport> ssp(t, 64, {.staleness = 1});
        std::vector<float> g(64, 1.0f), rest(64);
        const int clocks = t.rank() == 2 ? 2 : 6;
        for (int c = 0; c < clocks; ++c) ssp.step(g);
        if (t.rank() == 2) {
          std::this_thread::sleep_for(std::chrono::milliseconds(2500));
          return;
        }
        ssp.finish(rest);
      } catch (...) {
        ends[static_cast<std::size_t>(t.rank())] = dssync_test::classify(std::current_exception());
        throw;
      }
    });
  } catch (const dssync::error&) {
  }
  // The first rank to time out names rank 2; a rank still waiting on that one may hear of
  // its failure before its own deadline passes, and then ends in a peer_error whose text
  // carries the first rank's timeout. Either way rank 2 and the clock are named.
  int timed_out = 0;
  for (int r = 0; r < 2; ++r) {
    CAPTURE(r);
    CAPTURE(ends[static_cast<std::size_t>(r)].what);
    const auto& kind = ends[static_cast<std::size_t>(r)].kind;
    CHECK((kind == "timeout" || kind == "peer"));
    timed_out += kind == "timeout" ? 1 : 0;
    CHECK(ends[static_cast<std::size_t>(r)].what.find("did not complete within") !=
          std::string::npos);
    CHECK(ends[static_cast<std::size_t>(r)].what.find("rank 2") != std::string::npos);
    CHECK(ends[static_cast<std::size_t>(r)].what.find("iteration 2") != std::string::npos);
  }
  CHECK(timed_out >= 1);
  CHECK(ends[2].kind == "none");
}

TEST_CASE("SSPSync: bad input is a configuration_error naming the rank") {
  InProcWorld(2).run([&](InProcTransport& t) {
    CHECK_THROWS_AS(dssync::SSPSync<InProcTransport>(t, 8, {.staleness = -1}),
                    dssync::configuration_error);
    CHECK_THROWS_AS(dssync::SSPSync<InProcTransport>(t, 8, {.channel = 0}),
                    dssync::configuration_error);
    CHECK_THROWS_AS(dssync::SSPSync<InProcTransport>(t, 8, {.channel = 2}),
                    dssync::configuration_error);
    // The s + 1 buffers are checked before they are allocated: 4 x 8 floats are 128 bytes.
    CHECK_NOTHROW(dssync::SSPSync<InProcTransport>(t, 8, {.staleness = 3, .max_history_bytes = 128}));
    CHECK_THROWS_WITH_AS(
        dssync::SSPSync<InProcTransport>(t, 8, {.staleness = 3, .max_history_bytes = 127}),
        doctest::Contains("(4 copies of 8 elements of 4 bytes) needs 128 bytes, above "
                          "max_history_bytes = 127"),
        dssync::configuration_error);
    // The largest staleness: no overflow of s + 1, and the default limit of 1 GiB.
    try {
      dssync::SSPSync<InProcTransport>(t, 8, {.staleness = std::numeric_limits<int>::max()});
      FAIL("no throw");
    } catch (const dssync::configuration_error& e) {
      const std::string what = e.what();
      CAPTURE(what);
      CHECK(what.find("2147483648 copies") != std::string::npos);
      CHECK(what.find("max_history_bytes = 1073741824") != std::string::npos);
      CHECK(what.find("rank " + std::to_string(t.rank())) != std::string::npos);
    }
    dssync::SSPSync<InProcTransport> ssp(t, 8, {.staleness = 1});
    std::vector<float> wrong(7);
    CHECK_THROWS_WITH_AS(ssp.step(wrong), doctest::Contains("made for 8 parameters"),
                         dssync::configuration_error);
  });
}

#ifdef DSSYNC_TEST_SIM
namespace {

struct Timeline {
  std::vector<std::vector<double>> submitted;  // [rank][clock]: step(c) called
  std::vector<std::vector<double>> returned;   // [rank][clock]: step(c) returned
};

// Every rank computes `compute` seconds a clock (times its straggler factor)
// and steps an SSPSync of `len` floats.
Timeline run_sim(int n, int s, double compute, std::size_t len, std::uint64_t clocks,
                 dssync::SimOptions options = {}) {
  Timeline tl{std::vector<std::vector<double>>(n), std::vector<std::vector<double>>(n)};
  dssync::SimWorld(n, options).run([&](dssync::SimTransport& t) {
    dssync::SSPSync<dssync::SimTransport> ssp(t, len, {.staleness = s});
    std::vector<float> g(len, 1.0f), rest(len);
    auto& sub = tl.submitted[static_cast<std::size_t>(t.rank())];
    auto& ret = tl.returned[static_cast<std::size_t>(t.rank())];
    for (std::uint64_t c = 0; c < clocks; ++c) {
      t.compute(compute);
      sub.push_back(t.now());
      ssp.step(g);
      ret.push_back(t.now());
    }
    ssp.finish(rest);
  });
  return tl;
}

// The virtual time of one ring all-reduce of len floats alone on the network.
double all_reduce_alone(int n, std::size_t len) {
  double took = 0;
  dssync::SimWorld(n).run([&](dssync::SimTransport& t) {
    std::vector<float> v(len, 1.0f);
    dssync::RingReduce ring;
    std::vector<int> all(static_cast<std::size_t>(n));
    for (int r = 0; r < n; ++r) all[static_cast<std::size_t>(r)] = r;
    ring.all_reduce(t, dssync::Group(all), std::span<float>(v), dssync::Average{}, 0);
    if (t.rank() == 0) took = t.now();
  });
  return took;
}

}  // namespace

TEST_CASE("SSPSync on the simulator: the period is C + A at s = 0 and max(C, A) at s >= 1") {
  constexpr int n = 4;
  constexpr std::size_t len = 250000;  // 1 MB: A is about 2 ms at 1.25 GB/s
  const double a = all_reduce_alone(n, len);
  REQUIRE(a > 0);
  for (const double compute : {0.5 * a, 2.0 * a}) {
    for (const int s : {0, 1, 2}) {
      CAPTURE(compute);
      CAPTURE(s);
      const Timeline tl = run_sim(n, s, compute, len, 16);
      const double want = s == 0 ? compute + a : std::max(compute, a);
      // Steady state: from clock 8 on, on every rank.
      for (int r = 0; r < n; ++r)
        for (std::size_t c = 9; c < 16; ++c) {
          const auto& ret = tl.returned[static_cast<std::size_t>(r)];
          CHECK(ret[c] - ret[c - 1] == doctest::Approx(want).epsilon(1e-9));
        }
    }
  }
}

TEST_CASE("SSPSync on the simulator: with one rank 3x slower no rank runs more than s clocks ahead") {
  constexpr int n = 4;
  for (const int s : {0, 1, 3}) {
    CAPTURE(s);
    const Timeline tl = run_sim(n, s, 1e-3, 20000, 24,
                                {.straggler_fraction = 0.25, .straggler_slowdown = 3.0, .seed = 5});
    // Clock c + 1 starts when step(c) returns; it needs every rank to have
    // finished clock c - s (submitted it).
    int violations = 0, tight = 0;
    for (int p = 0; p < n; ++p)
      for (std::size_t c = std::size_t(s); c < 24; ++c) {
        double latest = 0;
        for (int q = 0; q < n; ++q)
          latest = std::max(latest, tl.submitted[static_cast<std::size_t>(q)][c - std::size_t(s)]);
        const double start_next = tl.returned[static_cast<std::size_t>(p)][c];
        violations += start_next < latest;
        tight += start_next < latest + 1e-3;  // the bound is what holds the fast ranks back
      }
    CHECK(violations == 0);
    CHECK(tight > 0);
  }
}

TEST_CASE("SSPSync on the simulator: two runs are identical to the bit") {
  const dssync::SimOptions o{.straggler_fraction = 0.25, .straggler_slowdown = 2.0, .seed = 9};
  const Timeline a = run_sim(4, 2, 7e-4, 30000, 12, o);
  const Timeline b = run_sim(4, 2, 7e-4, 30000, 12, o);
  CHECK(a.submitted == b.submitted);
  CHECK(a.returned == b.returned);
}
#endif
