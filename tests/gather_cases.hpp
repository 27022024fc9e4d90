#pragma once
// The closed forms of the broadcasts, all-gathers and the barrier, written once
// over any transport: tests/gather.cpp runs them on the in-process world,
// sim.cpp on the simulator, tcp.cpp over TCP with ranks as threads and mpi.cpp
// under mpirun. The inputs are deterministic functions of (rank, index), so
// each rank checks its own results against the closed form, and the same bits
// on every transport follow from every transport matching the same formula.
// A rank only records what it found; the caller asserts on its main thread
// (doctest's INFO and CAPTURE are per thread).

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "dssync/collective/all_gather_v.hpp"
#include "dssync/collective/auto_all_gather.hpp"
#include "dssync/collective/auto_broadcast.hpp"
#include "dssync/collective/barrier.hpp"
#include "dssync/collective/bruck_all_gather.hpp"
#include "dssync/collective/bruck_all_gather_v.hpp"
#include "dssync/collective/pipeline_broadcast.hpp"
#include "dssync/collective/ring_all_gather.hpp"
#include "dssync/collective/scatter_allgather_broadcast.hpp"
#include "dssync/collective/tree_broadcast.hpp"
#include "dssync/core/random.hpp"

namespace gather_cases {

using dssync::Group;
using dssync::tag_t;

// Element i of rank r's input: integers in [-10^6, 10^6] (exact in float),
// and for floating types a -0.0 and a quiet NaN whose payload names the rank at
// fixed places, so that anything but a bitwise copy (a conversion, an
// arithmetic pass) shows.
template <class T>
T value(int rank, std::size_t i) {
  if constexpr (std::is_floating_point_v<T>) {
    if (i % 101 == 5) return -T(0);
    if (i % 101 == 7) {
      if constexpr (sizeof(T) == 4)
        return std::bit_cast<T>(std::uint32_t{0x7fc00000u} | static_cast<std::uint32_t>(rank + 1));
      else
        return std::bit_cast<T>(std::uint64_t{0x7ff8000000000000u} |
                                static_cast<std::uint64_t>(rank + 1));
    }
  }
  const std::uint64_t h = dssync::detail::mix64(static_cast<std::uint64_t>(rank) * 1000003u + i);
  return static_cast<T>(static_cast<std::int64_t>(h % 2000001) - 1000000);
}

// The length of rank r's contribution to an all_gather_v at a scale: zero for
// every third rank, so that empty contributions sit between others.
inline std::size_t v_length(int rank, std::size_t scale) {
  return rank % 3 == 1 ? 0 : scale + static_cast<std::size_t>(rank);
}

template <class T>
const char* type_name() {
  if constexpr (std::is_same_v<T, float>) return "float";
  if constexpr (std::is_same_v<T, double>) return "double";
  if constexpr (std::is_same_v<T, std::int32_t>) return "int32";
  return "?";
}

// What one rank found: how many calls it checked and what was wrong.
struct Report {
  std::size_t calls = 0;
  std::vector<std::string> failures;

  void fail(std::string what) { failures.push_back(std::move(what)); }

  template <class T, class Want>
  void expect_bits(const std::string& what, std::span<const T> got, Want&& want) {
    ++calls;
    std::size_t wrong = 0, first = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
      const T w = want(i);
      if (std::memcmp(&got[i], &w, sizeof(T)) != 0 && wrong++ == 0) first = i;
    }
    if (wrong)
      fail(what + ": " + std::to_string(wrong) + " of " + std::to_string(got.size()) +
           " elements wrong, the first at " + std::to_string(first));
  }
};

// The sizes every algorithm runs with, and where the roots stop being all.
struct Plan {
  std::vector<std::size_t> sizes{0, 1, 3, 1000, (std::size_t{1} << 20) + 3};
  std::size_t every_root_below = std::size_t{1} << 20;  // larger: first and last member only
  std::vector<std::size_t> v_scales{0, 1, 1000, std::size_t{1} << 18};
};

// The plan where a big buffer costs much and reaches no new path (the
// simulator, one thread for every rank; TCP under ThreadSanitizer): up to
// 100,003 elements, the two ends of the group as roots at that size.
inline Plan small_plan() {
  Plan plan;
  plan.sizes = {0, 1, 3, 1000, 100003};
  plan.every_root_below = 100000;
  plan.v_scales = {0, 1, 1000, 50000};
  return plan;
}

inline std::vector<int> roots_for(const Group& g, std::size_t len, const Plan& plan) {
  if (len < plan.every_root_below) return {g.begin(), g.end()};
  if (g.size() == 1) return {g[0]};
  return {g[0], g[g.size() - 1]};
}

template <class T, class Algo, class Transport>
void broadcast_case(Transport& t, const Group& g, Algo& algo, const char* name, std::size_t len,
                    int root, tag_t tag, Report& r) {
  std::vector<T> data(len);
  // Members other than the root start from values of their own, which must go.
  for (std::size_t i = 0; i < len; ++i)
    data[i] = value<T>(t.rank() == root ? root : t.rank() + 1000, i);
  algo.broadcast(t, g, std::span<T>(data), root, tag);
  r.expect_bits(std::string(name) + " " + type_name<T>() + " n=" + std::to_string(len) +
                    " root=" + std::to_string(root) + " rank=" + std::to_string(t.rank()),
                std::span<const T>(data), [&](std::size_t i) { return value<T>(root, i); });
}

template <class T, class Algo, class Transport>
void all_gather_case(Transport& t, const Group& g, Algo& algo, const char* name, std::size_t len,
                     bool in_place, tag_t tag, Report& r) {
  const auto n = static_cast<std::size_t>(g.size());
  std::vector<T> mine(len), out(n * len, T(-7));
  for (std::size_t i = 0; i < len; ++i) mine[i] = value<T>(t.rank(), i);
  const std::size_t at = static_cast<std::size_t>(g.position_of(t.rank())) * len;
  if (in_place) {
    std::copy(mine.begin(), mine.end(), out.begin() + static_cast<std::ptrdiff_t>(at));
    algo.all_gather(t, g, std::span<const T>(out).subspan(at, len), std::span<T>(out), tag);
  } else {
    algo.all_gather(t, g, std::span<const T>(mine), std::span<T>(out), tag);
  }
  r.expect_bits(std::string(name) + (in_place ? " in place " : " ") + type_name<T>() +
                    " n=" + std::to_string(len) + " rank=" + std::to_string(t.rank()),
                std::span<const T>(out),
                [&](std::size_t i) { return value<T>(g[static_cast<int>(i / len)], i % len); });
}

// One all_gather_v at each scale into the same output vector (its capacity
// is reused): counts and data against the closed form.
template <class T, class Algo, class Transport>
void all_gather_v_cases(Transport& t, const Group& g, Algo& algo, const char* name,
                        const Plan& plan, tag_t tag, Report& r) {
  std::vector<T> out;
  std::vector<std::size_t> counts(static_cast<std::size_t>(g.size()));
  for (const std::size_t scale : plan.v_scales) {
    std::vector<T> mine(v_length(t.rank(), scale));
    for (std::size_t i = 0; i < mine.size(); ++i) mine[i] = value<T>(t.rank(), i);
    std::fill(counts.begin(), counts.end(), std::size_t(12345));
    algo.all_gather_v(t, g, std::span<const T>(mine), std::span<std::size_t>(counts), out, tag);
    const std::string what = std::string(name) + " " + type_name<T>() +
                             " scale=" + std::to_string(scale) +
                             " rank=" + std::to_string(t.rank());
    std::vector<int> owner;  // which position each output element came from
    std::vector<std::size_t> index;
    for (int p = 0; p < g.size(); ++p) {
      const std::size_t want = v_length(g[p], scale);
      if (counts[static_cast<std::size_t>(p)] != want)
        r.fail(what + ": counts[" + std::to_string(p) +
               "] = " + std::to_string(counts[static_cast<std::size_t>(p)]) + ", not " +
               std::to_string(want));
      for (std::size_t i = 0; i < want; ++i) {
        owner.push_back(g[p]);
        index.push_back(i);
      }
    }
    if (out.size() != owner.size()) {
      r.fail(what + ": " + std::to_string(out.size()) + " elements out, not " +
             std::to_string(owner.size()));
      continue;
    }
    r.expect_bits(what, std::span<const T>(out),
                  [&](std::size_t i) { return value<T>(owner[i], index[i]); });
  }
}

template <class F>
void for_each_type(F&& f) {
  f(float{});
  f(double{});
  f(std::int32_t{});
}

// Every generic broadcast and all-gather, every type, size and root of the
// plan, all_gather_v at every scale, and a few barriers: the whole suite on one
// rank of group g. Every member of g must call it with the same plan and tag.
template <class Transport>
Report run_all(Transport& t, const Group& g, const Plan& plan, tag_t tag) {
  Report r;
  dssync::TreeBroadcast tree;
  dssync::ScatterAllgatherBroadcast scatter_allgather;
  dssync::PipelineBroadcast pipeline;
  dssync::PipelineBroadcast pipeline_small({.segment_bytes = 4000});
  // Where segments are kept in flight, also the blocking exchange and one in flight.
  dssync::PipelineBroadcast pipeline_small_blocking({.segment_bytes = 4000, .in_flight = 0});
  dssync::PipelineBroadcast pipeline_small_one({.segment_bytes = 4000, .in_flight = 1});
  dssync::AutoBroadcast auto_broadcast;
  dssync::AutoBroadcast auto_broadcast_small(
      {.pipeline_from = 64, .pipeline_min_group = 3, .segment_bytes = 64 * 1024});
  dssync::RingAllGather ring;
  // Where segments are kept in flight: small ones (several a contribution),
  // one in flight, and the blocking steps.
  dssync::RingAllGather ring_small({.segment_bytes = 400});
  dssync::RingAllGather ring_small_one({.segment_bytes = 400, .in_flight = 1});
  dssync::RingAllGather ring_blocking({.in_flight = 0});
  dssync::BruckAllGather bruck;
  dssync::AutoAllGather auto_all_gather;
  dssync::AutoAllGather auto_all_gather_small({.ring_from = 64});
  dssync::RingAllGatherV all_gather_v;
  dssync::BruckAllGatherV bruck_v;
  dssync::DisseminationBarrier barrier;
  for_each_type([&](auto type) {
    using T = decltype(type);
    for (const std::size_t len : plan.sizes) {
      for (const int root : roots_for(g, len, plan)) {
        broadcast_case<T>(t, g, tree, "TreeBroadcast", len, root, tag, r);
        broadcast_case<T>(t, g, scatter_allgather, "ScatterAllgatherBroadcast", len, root, tag, r);
        broadcast_case<T>(t, g, pipeline, "PipelineBroadcast", len, root, tag, r);
        // Small segments at moderate sizes only: at 2^20 elements they are a
        // thousand messages a hop, minutes over TCP under a sanitizer.
        if (len <= 100003)
          broadcast_case<T>(t, g, pipeline_small, "PipelineBroadcast(4000)", len, root, tag, r);
        if constexpr (dssync::transport_with_posting<Transport, T>) {
          if (len <= 100003) {
            broadcast_case<T>(t, g, pipeline_small_blocking, "PipelineBroadcast(4000, blocking)",
                              len, root, tag, r);
            broadcast_case<T>(t, g, pipeline_small_one, "PipelineBroadcast(4000, 1 in flight)",
                              len, root, tag, r);
          }
        }
        broadcast_case<T>(t, g, auto_broadcast, "AutoBroadcast", len, root, tag, r);
        broadcast_case<T>(t, g, auto_broadcast_small, "AutoBroadcast(64)", len, root, tag, r);
      }
      for (const bool in_place : {false, true}) {
        if (in_place && len > 1000) continue;
        all_gather_case<T>(t, g, ring, "RingAllGather", len, in_place, tag, r);
        if constexpr (dssync::transport_with_posting<Transport, T>) {
          if (len <= 100003) {
            all_gather_case<T>(t, g, ring_small, "RingAllGather(400)", len, in_place, tag, r);
            all_gather_case<T>(t, g, ring_small_one, "RingAllGather(400, 1 in flight)", len,
                               in_place, tag, r);
            all_gather_case<T>(t, g, ring_blocking, "RingAllGather(blocking)", len, in_place,
                               tag, r);
          }
        }
        all_gather_case<T>(t, g, bruck, "BruckAllGather", len, in_place, tag, r);
        all_gather_case<T>(t, g, auto_all_gather, "AutoAllGather", len, in_place, tag, r);
        all_gather_case<T>(t, g, auto_all_gather_small, "AutoAllGather(64)", len, in_place, tag, r);
      }
    }
    all_gather_v_cases<T>(t, g, all_gather_v, "RingAllGatherV", plan, tag, r);
    all_gather_v_cases<T>(t, g, bruck_v, "BruckAllGatherV", plan, tag, r);
    barrier.barrier(t, g, tag);
  });
  return r;
}

// Rounds of a barrier in which one member (a different one each round) is
// slow before it arrives; each member counts its arrival in arrived[round]
// before the barrier and, after it, must see every member's. `slow` is how a
// member is slow on this transport (a sleep, or compute on the simulator).
template <class Transport>
void barrier_rounds(Transport& t, const Group& g, std::span<std::atomic<int>> arrived,
                    const std::function<void()>& slow, tag_t tag, Report& r) {
  dssync::DisseminationBarrier barrier;
  const int p = g.position_of(t.rank());
  for (std::size_t k = 0; k < arrived.size(); ++k) {
    if (p == static_cast<int>(k % static_cast<std::size_t>(g.size()))) slow();
    arrived[k].fetch_add(1);
    barrier.barrier(t, g, tag);
    ++r.calls;
    const int seen = arrived[k].load();
    if (seen != g.size())
      r.fail("barrier round " + std::to_string(k) + ": rank " + std::to_string(t.rank()) +
             " left when " + std::to_string(seen) + " of " + std::to_string(g.size()) +
             " members had arrived");
  }
}

}  // namespace gather_cases
