// Broadcasts, all-gathers and the barrier over InProcTransport: the closed
// forms of tests/gather_cases.hpp on worlds of 1 to 9 ranks and on concurrent
// sub-groups, a barrier that holds everyone for a slow member, the errors
// (lengths that differ, a root outside the group, outputs of the wrong size),
// and no allocation once the scratch memory has grown.

#include <doctest/doctest.h>

#include "outcome.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <new>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "dssync/core/concepts.hpp"
#include "dssync/transport/counting.hpp"
#include "dssync/transport/inproc.hpp"
#include "gather_cases.hpp"

#include "allocations.hpp"

namespace {

using dssync::Group;
using dssync::InProcTransport;
using dssync::InProcWorld;
using gather_cases::Report;
using namespace std::chrono_literals;

constexpr dssync::InProcOptions options{.timeout = std::chrono::seconds(20)};

static_assert(dssync::broadcast_policy<dssync::TreeBroadcast, InProcTransport>);
static_assert(dssync::broadcast_policy<dssync::ScatterAllgatherBroadcast, InProcTransport, double>);
static_assert(dssync::broadcast_policy<dssync::PipelineBroadcast, InProcTransport, float>);
static_assert(dssync::broadcast_policy<dssync::AutoBroadcast, InProcTransport, std::int32_t>);
static_assert(dssync::all_gather_policy<dssync::RingAllGather, InProcTransport>);
static_assert(dssync::all_gather_policy<dssync::BruckAllGather, InProcTransport, double>);
static_assert(dssync::all_gather_policy<dssync::AutoAllGather, InProcTransport, std::int32_t>);

std::vector<int> iota_group(int n) {
  std::vector<int> v(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = i;
  return v;
}

void check_reports(const std::vector<Report>& reports, std::size_t min_calls) {
  for (std::size_t r = 0; r < reports.size(); ++r) {
    CAPTURE(r);
    CHECK(reports[r].calls >= min_calls);
    for (const std::string& f : reports[r].failures) FAIL_CHECK(f);
  }
}

// ------------------------------------------------------------ closed forms --

TEST_CASE("every algorithm, type, size and root on worlds of 1 to 9 ranks") {
  // The largest size still spans two of the in-process world's 256 KiB
  // segments for every type (4 and 8 bytes), at a third of a mebibyte's cost.
  gather_cases::Plan plan;
  plan.sizes = {0, 1, 3, 1000, 100003};
  plan.every_root_below = 100000;
  plan.v_scales = {0, 1, 1000, 100003};
  for (int n = 1; n <= 9; ++n) {
    CAPTURE(n);
    const std::vector<int> members = iota_group(n);
    std::vector<Report> reports(static_cast<std::size_t>(n));
    InProcWorld(n, options).run([&](InProcTransport& t) {
      reports[static_cast<std::size_t>(t.rank())] =
          gather_cases::run_all(t, Group(members), plan, 0);
    });
    check_reports(reports, 100);
  }
}

TEST_CASE("a group in another order, beside another group running at once") {
  // Group [5 2 7] of a world of 8 with tag 3, and the others as [6 0 4 1 3]
  // with tag 4, concurrently: roots and positions are the groups' own.
  const std::vector<int> a{5, 2, 7};
  const std::vector<int> b{6, 0, 4, 1, 3};
  gather_cases::Plan plan;
  plan.sizes = {0, 1, 3, 1000, 100003};
  plan.v_scales = {0, 1, 1000, 50000};
  std::vector<Report> reports(8);
  InProcWorld(8, options).run([&](InProcTransport& t) {
    const bool in_a = Group(a).contains(t.rank());
    reports[static_cast<std::size_t>(t.rank())] =
        gather_cases::run_all(t, Group(in_a ? a : b), plan, in_a ? 3 : 4);
  });
  check_reports(reports, 100);
}

TEST_CASE("a member that computes slowly holds everyone at the barrier") {
  // Each round another member sleeps before it arrives; nobody may leave the
  // barrier before every member has counted its arrival.
  for (int n = 1; n <= 9; ++n) {
    CAPTURE(n);
    const std::vector<int> members = iota_group(n);
    std::vector<std::atomic<int>> arrived(static_cast<std::size_t>(n) + 2);
    std::vector<Report> reports(static_cast<std::size_t>(n));
    InProcWorld(n, options).run([&](InProcTransport& t) {
      gather_cases::barrier_rounds(
          t, Group(members), std::span<std::atomic<int>>(arrived),
          [] { std::this_thread::sleep_for(20ms); }, 0,
          reports[static_cast<std::size_t>(t.rank())]);
    });
    check_reports(reports, arrived.size());
  }
  // And two sub-groups at once, each with its own counters and tag.
  const std::vector<int> a{5, 2, 7};
  const std::vector<int> b{6, 0, 4, 1, 3};
  std::vector<std::atomic<int>> arrived_a(4), arrived_b(6);
  std::vector<Report> reports(8);
  InProcWorld(8, options).run([&](InProcTransport& t) {
    const bool in_a = Group(a).contains(t.rank());
    gather_cases::barrier_rounds(
        t, Group(in_a ? a : b), std::span<std::atomic<int>>(in_a ? arrived_a : arrived_b),
        [] { std::this_thread::sleep_for(20ms); }, in_a ? 3 : 4,
        reports[static_cast<std::size_t>(t.rank())]);
  });
  check_reports(reports, 4);
}

TEST_CASE("PipelineBroadcast sends each member's buffer once, in the closed form's segments") {
  // Segments of 64 bytes: 16 floats. Every member but the chain's last sends
  // the whole buffer once, in len / 16 full segments and the remainder (an
  // empty message when len is a multiple of 16); the last sends nothing.
  const dssync::PipelineBroadcast pipeline({.segment_bytes = 64});
  for (int n : {2, 3, 5}) {
    for (const std::size_t len : {std::size_t{0}, std::size_t{7}, std::size_t{32},
                                  std::size_t{40}}) {
      const int root = n / 2;
      CAPTURE(n);
      CAPTURE(len);
      const std::vector<int> members = iota_group(n);
      std::vector<dssync::TrafficCount> counts(static_cast<std::size_t>(n));
      std::vector<int> right(static_cast<std::size_t>(n));
      InProcWorld(n, options).run([&](InProcTransport& base) {
        dssync::CountingTransport<InProcTransport> t(base);
        std::vector<float> d(len);
        for (std::size_t i = 0; i < len; ++i)
          d[i] = t.rank() == root ? static_cast<float>(i) + 0.5f : -1.0f;
        dssync::PipelineBroadcast copy = pipeline;
        copy.broadcast(t, Group(members), std::span<float>(d), root, 1);
        counts[static_cast<std::size_t>(t.rank())] = t.count();
        bool ok = true;
        for (std::size_t i = 0; i < len; ++i) ok = ok && d[i] == static_cast<float>(i) + 0.5f;
        right[static_cast<std::size_t>(t.rank())] = ok;
      });
      const std::uint64_t segments = len / 16 + 1;
      CHECK(pipeline.segments<float>(len) == segments);
      const int last = (root + n - 1) % n;  // the chain runs up from the root
      for (int r = 0; r < n; ++r) {
        CAPTURE(r);
        CHECK(right[static_cast<std::size_t>(r)]);
        const auto& c = counts[static_cast<std::size_t>(r)];
        CHECK(c.bytes_sent == (r == last ? 0 : 4 * len));
        CHECK(c.messages_sent == (r == last ? 0 : segments));
      }
    }
  }
}

TEST_CASE("AutoBroadcast and AutoAllGather choose by size and group size") {
  using B = dssync::AutoBroadcast::Choice;
  const dssync::AutoBroadcast broadcast;
  CHECK(broadcast.choose(0, 8) == B::tree);
  CHECK(broadcast.choose(16 * 1024 * 1024 - 1, 8) == B::tree);
  CHECK(broadcast.choose(16 * 1024 * 1024, 8) == B::pipeline);
  CHECK(broadcast.choose(16 * 1024 * 1024, 3) == B::pipeline);
  CHECK(broadcast.choose(16 * 1024 * 1024, 2) == B::tree);
  // Two members never take the chain, whatever the options say.
  const dssync::AutoBroadcast eager(
      {.pipeline_from = 0, .pipeline_min_group = 0});
  CHECK(eager.choose(0, 3) == B::pipeline);
  CHECK(eager.choose(1 << 30, 2) == B::tree);
  using A = dssync::AutoAllGather::Choice;
  const dssync::AutoAllGather all_gather;
  CHECK(all_gather.choose(4 * 1024 * 1024 - 1) == A::bruck);
  CHECK(all_gather.choose(4 * 1024 * 1024) == A::ring);
}

// ------------------------------------------------------------------ errors --

// Runs f on every rank of a world of n; returns what run() threw and what each
// rank threw.
template <class F>
std::pair<std::string, std::vector<std::string>> run_kinds(int n, F&& f) {
  std::vector<std::string> kinds(static_cast<std::size_t>(n), "none");
  std::string first = "none";
  try {
    InProcWorld(n, options).run([&](InProcTransport& t) {
      try {
        f(t);
      } catch (...) {
        kinds[static_cast<std::size_t>(t.rank())] = dssync_test::classify(std::current_exception()).kind;
        throw;
      }
    });
  } catch (...) {
    first = dssync_test::classify(std::current_exception()).kind;
  }
  return {first, kinds};
}

// A detected mismatch first; the others learn of the failure as peer_error or
// a mismatch of their own, never a timeout.
void check_mismatch(const std::pair<std::string, std::vector<std::string>>& got) {
  CHECK(got.first == "size_mismatch");
  for (const std::string& k : got.second) {
    CAPTURE(k);
    CHECK((k == "size_mismatch" || k == "peer" || k == "none"));
  }
}

// Segments of four floats, so that the mismatch cases span several segments
// (including lengths that are whole multiples of the segment).
struct SmallSegments : dssync::PipelineBroadcast {
  SmallSegments() : PipelineBroadcast({.segment_bytes = 16}) {}
};

template <class Algo>
void broadcast_mismatch(const char* name) {
  struct Case {
    std::size_t root_len, other_len;
  };
  for (const Case c : {Case{10, 11}, Case{11, 10}, Case{0, 5}, Case{5, 0}, Case{1000, 999},
                        Case{8, 12}, Case{12, 8}, Case{4, 0}, Case{0, 4}}) {
    for (int n : {2, 3, 5, 8}) {
      for (int root : {0, n - 1}) {
        // One member (the last, or the first when the root is last) differs.
        const int odd = root == n - 1 ? 0 : n - 1;
        CAPTURE(name);
        CAPTURE(c.root_len);
        CAPTURE(c.other_len);
        CAPTURE(n);
        CAPTURE(root);
        const std::vector<int> members = iota_group(n);
        check_mismatch(run_kinds(n, [&](InProcTransport& t) {
          std::vector<float> d(t.rank() == odd ? c.other_len : c.root_len, 1.0f);
          Algo algo;
          algo.broadcast(t, Group(members), std::span<float>(d), root);
        }));
      }
    }
  }
}

TEST_CASE("a broadcast whose members pass different lengths fails, without hanging") {
  broadcast_mismatch<dssync::TreeBroadcast>("TreeBroadcast");
  broadcast_mismatch<dssync::ScatterAllgatherBroadcast>("ScatterAllgatherBroadcast");
  broadcast_mismatch<dssync::PipelineBroadcast>("PipelineBroadcast");
  broadcast_mismatch<SmallSegments>("PipelineBroadcast(16)");
  broadcast_mismatch<dssync::AutoBroadcast>("AutoBroadcast");
}

template <class Algo>
void all_gather_mismatch(const char* name) {
  for (const std::size_t odd_len :
       {std::size_t{0}, std::size_t{4}, std::size_t{6}, std::size_t{3000}}) {
    for (int n : {2, 3, 5, 8}) {
      for (int odd : {0, n / 2}) {
        CAPTURE(name);
        CAPTURE(odd_len);
        CAPTURE(n);
        CAPTURE(odd);
        const std::vector<int> members = iota_group(n);
        check_mismatch(run_kinds(n, [&](InProcTransport& t) {
          const std::size_t len = t.rank() == odd ? odd_len : 5;
          std::vector<float> mine(len, 1.0f), out(static_cast<std::size_t>(n) * len);
          Algo algo;
          algo.all_gather(t, Group(members), std::span<const float>(mine), std::span<float>(out));
        }));
      }
    }
  }
}

TEST_CASE("an all-gather whose members pass different lengths fails, without hanging") {
  all_gather_mismatch<dssync::RingAllGather>("RingAllGather");
  all_gather_mismatch<dssync::BruckAllGather>("BruckAllGather");
  all_gather_mismatch<dssync::AutoAllGather>("AutoAllGather");
}

// Each case is wrong on every rank, so every rank must throw
// configuration_error before it moves a byte.
template <class F>
void check_configuration_everywhere(int n, F&& f) {
  const auto got = run_kinds(n, f);
  CHECK(got.first == "configuration");
  CHECK(got.second == std::vector<std::string>(static_cast<std::size_t>(n), "configuration"));
}

TEST_CASE("a root outside the group is a configuration_error on every member") {
  const std::vector<int> members{0, 2, 3};
  for (int root : {1, 4, -1, 99}) {
    CAPTURE(root);
    std::string message;
    check_configuration_everywhere(4, [&](InProcTransport& t) {
      if (t.rank() == 1) throw dssync::configuration_error("not a member");  // stands aside
      std::vector<double> d(7);
      dssync::TreeBroadcast tree;
      dssync::ScatterAllgatherBroadcast sag;
      dssync::PipelineBroadcast pipeline;
      dssync::AutoBroadcast automatic;
      auto expect = [&](auto& algo) {
        try {
          algo.broadcast(t, Group(members), std::span<double>(d), root, 5);
        } catch (const dssync::configuration_error& e) {
          if (t.rank() == 0) message = e.what();
          return;
        }
        throw std::runtime_error("no configuration_error");
      };
      expect(tree);
      expect(sag);
      expect(pipeline);
      expect(automatic);
      throw dssync::configuration_error("as expected");
    });
    CHECK(message.find("root, rank " + std::to_string(root)) != std::string::npos);
    CHECK(message.find("group [0 2 3]") != std::string::npos);
  }
}

TEST_CASE("an output of the wrong size is a configuration_error naming the sizes") {
  const std::vector<int> members = iota_group(3);
  std::string message;
  check_configuration_everywhere(3, [&](InProcTransport& t) {
    std::vector<float> mine(4), out(11);
    try {
      dssync::RingAllGather().all_gather(t, Group(members), std::span<const float>(mine),
                                         std::span<float>(out));
    } catch (const dssync::configuration_error& e) {
      if (t.rank() == 0) message = e.what();
    }
    // Every algorithm checks, and the counts of all_gather_v too.
    std::vector<float> longer(13);
    auto expect = [&](auto&& call) {
      try {
        call();
      } catch (const dssync::configuration_error&) {
        return;
      }
      throw std::runtime_error("no configuration_error");
    };
    expect([&] {
      dssync::BruckAllGather().all_gather(t, Group(members), std::span<const float>(mine),
                                          std::span<float>(longer));
    });
    expect([&] {
      dssync::AutoAllGather().all_gather(t, Group(members), std::span<const float>(mine),
                                         std::span<float>(out));
    });
    expect([&] {
      std::vector<std::size_t> counts(2);
      std::vector<float> all;
      dssync::RingAllGatherV().all_gather_v(t, Group(members), std::span<const float>(mine),
                                            std::span<std::size_t>(counts), all);
    });
    expect([&] {
      std::vector<std::size_t> counts(4);
      std::vector<float> all;
      dssync::BruckAllGatherV().all_gather_v(t, Group(members), std::span<const float>(mine),
                                             std::span<std::size_t>(counts), all);
    });
    throw dssync::configuration_error("as expected");
  });
  CHECK(message.find("11 elements") != std::string::npos);
  CHECK(message.find("needs 12") != std::string::npos);
}

TEST_CASE("a group the caller cannot run with, or a bad tag, is a configuration_error") {
  const std::vector<int> not_me_groups[] = {{}, {0, 1, 2, 3}, {0, 1, 1}};
  for (const auto& members : not_me_groups) {
    CAPTURE(Group(members).to_string());
    check_configuration_everywhere(3, [&](InProcTransport& t) {
      std::vector<float> d(3), out(9);
      auto expect = [&](auto&& call) {
        try {
          call();
        } catch (const dssync::configuration_error&) {
          return;
        }
        throw std::runtime_error("no configuration_error");
      };
      expect([&] { dssync::TreeBroadcast().broadcast(t, Group(members), std::span<float>(d), 0); });
      expect([&] {
        dssync::RingAllGather().all_gather(t, Group(members), std::span<const float>(d),
                                           std::span<float>(out));
      });
      expect([&] { dssync::DisseminationBarrier().barrier(t, Group(members)); });
      throw dssync::configuration_error("as expected");
    });
  }
  const std::vector<int> members = iota_group(3);
  for (dssync::tag_t tag : {-1, dssync::max_tag + 1}) {
    CAPTURE(tag);
    check_configuration_everywhere(3, [&](InProcTransport& t) {
      dssync::DisseminationBarrier().barrier(t, Group(members), tag);
    });
  }
}

// ----------------------------------------------------------------- scratch --


TEST_CASE("repeated calls allocate nothing once the output has grown") {
  for (int n : {1, 2, 3, 5, 8}) {
    CAPTURE(n);
    const std::vector<int> members = iota_group(n);
    const std::vector<int> reversed(members.rbegin(), members.rend());
    std::vector<std::size_t> counted(static_cast<std::size_t>(n));
    std::vector<Report> reports(static_cast<std::size_t>(n));
    InProcWorld(n, options).run([&](InProcTransport& t) {
      const auto me = static_cast<std::size_t>(t.rank());
      dssync::AutoBroadcast broadcast(
          {.pipeline_from = 4096, .pipeline_min_group = 3, .segment_bytes = 4096});
      dssync::AutoAllGather all_gather({.ring_from = 4096});
      dssync::RingAllGatherV all_gather_v;
      dssync::BruckAllGatherV bruck_v;
      dssync::DisseminationBarrier barrier;
      std::vector<float> data(5000), mine(700), out(700 * static_cast<std::size_t>(n));
      std::vector<std::size_t> counts(static_cast<std::size_t>(n));
      std::vector<float> v_out;
      auto round = [&](const Group& g) {
        for (std::size_t len : {std::size_t{3}, std::size_t{5000}})
          broadcast.broadcast(t, g, std::span<float>(data).first(len), g[n - 1], 2);
        for (std::size_t len : {std::size_t{3}, std::size_t{700}})
          all_gather.all_gather(t, g, std::span<const float>(mine).first(len),
                                std::span<float>(out).first(len * static_cast<std::size_t>(n)), 2);
        all_gather_v.all_gather_v(t, g, std::span<const float>(mine).first(100 * me),
                                  std::span<std::size_t>(counts), v_out, 2);
        bruck_v.all_gather_v(t, g, std::span<const float>(mine).first(100 * me),
                             std::span<std::size_t>(counts), v_out, 2);
        barrier.barrier(t, g, 2);
      };
      round(Group(members));  // may allocate: the lengths' scratch, the output vector
      counted[me] = allocations_in([&] {
        round(Group(members));
        round(Group(reversed));  // every member's role changes
      });
      for (int p = 0; p < n; ++p)
        if (counts[static_cast<std::size_t>(p)] !=
            100 * static_cast<std::size_t>(reversed[static_cast<std::size_t>(p)]))
          reports[me].fail("counts after the reversed round");
    });
    for (std::size_t r = 0; r < counted.size(); ++r) {
      CAPTURE(r);
      CHECK(counted[r] == 0u);
    }
    check_reports(reports, 0);
  }
}

// ------------------------------------------------------------ fixed bugs --

// A group of one moves no message, so only an up-front check can refuse the
// tag there as a group of two does.
TEST_CASE("a bad tag is a configuration_error on groups of 1 and 2 alike") {
  for (int n : {1, 2}) {
    const std::vector<int> members = iota_group(n);
    for (dssync::tag_t tag : {-1, dssync::max_tag + 1}) {
      CAPTURE(n);
      CAPTURE(tag);
      auto each = [&](auto&& call) {
        check_configuration_everywhere(n, [&](InProcTransport& t) {
          std::vector<float> d(3), out(3 * static_cast<std::size_t>(n)), v_out;
          std::vector<std::size_t> counts(static_cast<std::size_t>(n));
          call(t, std::span<float>(d), std::span<float>(out), counts, v_out);
        });
      };
      const Group g(members);
      each([&](InProcTransport& t, std::span<float> d, auto, auto&, auto&) {
        dssync::AutoBroadcast().broadcast(t, g, d, 0, tag);
      });
      each([&](InProcTransport& t, std::span<float> d, auto, auto&, auto&) {
        dssync::ScatterAllgatherBroadcast().broadcast(t, g, d, 0, tag);
      });
      each([&](InProcTransport& t, std::span<float> d, auto, auto&, auto&) {
        dssync::PipelineBroadcast().broadcast(t, g, d, 0, tag);
      });
      each([&](InProcTransport& t, std::span<float> d, std::span<float> out, auto&, auto&) {
        dssync::AutoAllGather().all_gather(t, g, std::span<const float>(d), out, tag);
      });
      each([&](InProcTransport& t, std::span<float> d, std::span<float> out, auto&, auto&) {
        dssync::RingAllGather().all_gather(t, g, std::span<const float>(d), out, tag);
      });
      each([&](InProcTransport& t, std::span<float> d, auto, std::vector<std::size_t>& counts,
               std::vector<float>& v_out) {
        dssync::BruckAllGatherV().all_gather_v(t, g, std::span<const float>(d),
                                               std::span<std::size_t>(counts), v_out, tag);
      });
      each([&](InProcTransport& t, std::span<float> d, auto, std::vector<std::size_t>& counts,
               std::vector<float>& v_out) {
        dssync::RingAllGatherV().all_gather_v(t, g, std::span<const float>(d),
                                              std::span<std::size_t>(counts), v_out, tag);
      });
      each([&](InProcTransport& t, auto, auto, auto&, auto&) {
        dssync::DisseminationBarrier().barrier(t, g, tag);
      });
    }
  }
}

// Counts whose sum wraps to 0 would pass the size check against an empty
// output. The output is an empty view of a guarded buffer, so that the old
// code's writes past its end land in the guard, not in the heap.
TEST_CASE("all_gather_known refuses counts whose sum wraps past SIZE_MAX") {
  for (int n : {2, 3}) {
    CAPTURE(n);
    const std::vector<int> members = iota_group(n);
    std::vector<std::size_t> counts(static_cast<std::size_t>(n), 1);
    counts.back() = SIZE_MAX - static_cast<std::size_t>(n - 2);  // the sum is exactly 2^64
    std::vector<std::vector<float>> guards(static_cast<std::size_t>(n),
                                           std::vector<float>(16, 7.0f));
    check_configuration_everywhere(n, [&](InProcTransport& t) {
      const auto me = static_cast<std::size_t>(t.rank());
      std::vector<float> mine(me + 1 < counts.size() ? 1 : 0, 42.0f);
      dssync::RingAllGatherV().all_gather_known(t, Group(members), std::span<const float>(mine),
                                                std::span<const std::size_t>(counts),
                                                std::span<float>(guards[me].data(), 0));
    });
    for (const auto& guard : guards) CHECK(guard == std::vector<float>(16, 7.0f));
  }
}

// Gathering again from a view of the last call's output: the output grows
// (and moves) under `mine`, or, with room reserved, is overwritten around it.
template <class Algo>
void gather_v_from_own_output(const char* name) {
  for (const bool grows : {true, false}) {
    CAPTURE(name);
    CAPTURE(grows);
    const int n = 3;
    const std::vector<int> members = iota_group(n);
    std::vector<int> ok(n, 0);
    InProcWorld(n, options).run([&](InProcTransport& t) {
      Algo algo;
      std::vector<std::size_t> counts(n);
      std::vector<int> out;
      out.reserve(grows ? 4 : 64);
      const std::vector<int> first(2, 100 + t.rank());
      algo.all_gather_v(t, Group(members), std::span<const int>(first),
                        std::span<std::size_t>(counts), out);
      // All of it (6 elements), then, in the second round, this rank's block of
      // the output (the member's own contribution, at another offset).
      const std::vector<int> again(out.begin(), out.end());
      algo.all_gather_v(t, Group(members), std::span<const int>(out),
                        std::span<std::size_t>(counts), out);
      bool good = out.size() == again.size() * n;
      for (std::size_t i = 0; good && i < out.size(); ++i) good = out[i] == again[i % again.size()];
      algo.all_gather_v(
          t, Group(members),
          std::span<const int>(out).subspan(6 * static_cast<std::size_t>(t.rank()) + 2, 3),
          std::span<std::size_t>(counts), out);
      good = good && out.size() == 9;
      // Every member's three from offset 2 of its block: again[2..4].
      for (std::size_t i = 0; good && i < out.size(); ++i) good = out[i] == again[2 + i % 3];
      ok[static_cast<std::size_t>(t.rank())] = good;
    });
    CHECK(ok == std::vector<int>(n, 1));
  }
}

TEST_CASE("all_gather_v from a view of its own last output gathers the right values") {
  gather_v_from_own_output<dssync::RingAllGatherV>("RingAllGatherV");
  gather_v_from_own_output<dssync::BruckAllGatherV>("BruckAllGatherV");
}

// Lengths that straddle AutoBroadcast's threshold take different algorithms on
// different members. Whatever else happens, no member may return normally
// holding anything but the root's buffer: the member whose length is one
// chain segment once got the root's first segment as a whole tree message.
TEST_CASE("AutoBroadcast with lengths across its threshold never returns a wrong buffer") {
  const dssync::InProcOptions quick{.timeout = std::chrono::seconds(2)};
  struct Case {
    int n;
    std::size_t root_len, other_len;
  };
  // 4096 bytes and more take the chain, in segments of 256 floats.
  for (const Case c : {Case{3, 1024, 256}, Case{3, 256, 1024}, Case{4, 1024, 256},
                       Case{3, 1024, 255}, Case{3, 1024, 257}, Case{5, 300, 1024}}) {
    for (int odd = 1; odd < c.n; ++odd) {
      CAPTURE(c.n);
      CAPTURE(c.root_len);
      CAPTURE(c.other_len);
      CAPTURE(odd);
      const std::vector<int> members = iota_group(c.n);
      std::vector<std::string> wrong(static_cast<std::size_t>(c.n));
      try {
        InProcWorld(c.n, quick).run([&](InProcTransport& t) {
          dssync::AutoBroadcast b(
              {.pipeline_from = 4096, .pipeline_min_group = 3, .segment_bytes = 1024});
          const std::size_t len = t.rank() == odd ? c.other_len : c.root_len;
          std::vector<float> d(len, -1.0f);
          if (t.rank() == 0)
            for (std::size_t i = 0; i < len; ++i) d[i] = static_cast<float>(i);
          b.broadcast(t, Group(members), std::span<float>(d), 0);
          bool same = len == c.root_len;
          for (std::size_t i = 0; same && i < len; ++i) same = d[i] == static_cast<float>(i);
          if (!same)
            wrong[static_cast<std::size_t>(t.rank())] =
                "rank " + std::to_string(t.rank()) + " returned normally holding a wrong buffer";
        });
      } catch (const dssync::error&) {
        // Expected: size_mismatch_error, or peer_error / timeout_error on the others.
      }
      for (const std::string& w : wrong) CHECK_MESSAGE(w.empty(), w);
    }
  }
}

}  // namespace
