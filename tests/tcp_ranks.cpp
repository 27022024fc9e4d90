// TcpTransport as real processes on loopback, one per rank, started by
// scripts/tools/dssync-run (or tests/tcp_kill.sh), configured from DSSYNC_*.
//
//   tcp_ranks check   every collective's closed-form sum, and every
//                     synchronizer bitwise equal to the same run in an
//                     in-process world (each rank runs that world itself, so
//                     nothing needs gathering); exit 0 when all hold.
//   tcp_ranks steps S DSSync steps over 1 MiB until S are done, printing
//                     "rank R step K" every 50 steps; a dssync error ends the
//                     rank with exit code 3 and one line "rank R: <what>".

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "dssync/tcp.hpp"

namespace {

int failures = 0;

void expect(bool ok, const std::string& what, int rank) {
  if (ok) return;
  ++failures;
  std::printf("rank %d: FAILED %s\n", rank, what.c_str());
}

std::vector<int> iota_ranks(int n) {
  std::vector<int> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

template <class Reduce>
void closed_form(dssync::TcpTransport& t, const char* name) {
  const int n = t.size();
  const auto ranks = iota_ranks(n);
  for (const std::size_t count : {std::size_t{1}, std::size_t{13}, std::size_t{262147}}) {
    std::vector<float> x(count);
    for (std::size_t i = 0; i < count; ++i) x[i] = float((t.rank() + 1) * int(1 + i % 7));
    Reduce{}.all_reduce(t, dssync::Group(ranks), std::span<float>(x), dssync::Sum{}, 21);
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < count; ++i) wrong += x[i] != float(n * (n + 1) / 2 * int(1 + i % 7));
    expect(wrong == 0, std::string(name) + " sum of " + std::to_string(count) + " floats: " +
                           std::to_string(wrong) + " wrong",
           t.rank());
  }
}

std::vector<float> start_values(int rank, std::size_t count) {
  std::mt19937 g(static_cast<std::uint32_t>(777 + rank));
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> x(count);
  for (auto& v : x) v = u(g);
  return x;
}

// Runs `steps` steps of the synchronizer Make<Transport> builds, from
// start_values, and returns this rank's parameters.
template <template <class> class Sync, class Transport, class... Options>
std::vector<float> run_steps(Transport& t, int steps, Options... options) {
  Sync<Transport> sync(t, options...);
  auto x = start_values(t.rank(), 10007);
  for (int s = 0; s < steps; ++s) {
    for (auto& v : x) v += 0.001f * float(t.rank() + 1);  // the local "training"
    sync.step(std::span<float>(x));
  }
  return x;
}

template <class T>
using Ds = dssync::DSSync<T>;
template <class T>
using DsButterflyHd = dssync::DSSync<T, dssync::ButterflyShuffle, dssync::HalvingDoublingReduce>;
template <class T>
using Full = dssync::AllReduceSync<T>;
template <class T>
using Gossip = dssync::GossipSync<T>;
// LocalSGD's options type depends on the transport; this one takes its parts.
template <class T>
struct Local : dssync::LocalSGD<dssync::DSSync<T>> {
  Local(T& t, int period, dssync::DSSyncOptions inner)
      : dssync::LocalSGD<dssync::DSSync<T>>(t, {.period = period, .inner = inner}) {}
};

template <template <class> class Sync, class... Options>
void same_as_inproc(dssync::TcpTransport& t, const char* name, Options... options) {
  const int steps = 5;
  const auto mine = run_steps<Sync>(t, steps, options...);
  dssync::InProcWorld world(t.size());
  std::vector<float> expected;
  std::mutex mu;
  world.run([&](dssync::InProcTransport& local) {
    auto x = run_steps<Sync>(local, steps, options...);
    if (local.rank() == t.rank()) {
      std::lock_guard lk(mu);
      expected = std::move(x);
    }
  });
  expect(expected.size() == mine.size() &&
             std::memcmp(expected.data(), mine.data(), mine.size() * sizeof(float)) == 0,
         std::string(name) + " differs from the in-process world", t.rank());
}

int check(dssync::TcpTransport& t) {
  closed_form<dssync::RingReduce>(t, "RingReduce");
  closed_form<dssync::HalvingDoublingReduce>(t, "HalvingDoublingReduce");
  closed_form<dssync::RecursiveDoublingReduce>(t, "RecursiveDoublingReduce");
  closed_form<dssync::TreeReduce>(t, "TreeReduce");
  closed_form<dssync::AutoReduce>(t, "AutoReduce");
  same_as_inproc<Ds>(t, "DSSync g=2", dssync::DSSyncOptions{.group_size = 2, .seed = 3});
  same_as_inproc<Ds>(t, "DSSync g=3 checked, small buckets",
                     dssync::DSSyncOptions{.group_size = 3, .seed = 4, .checked = true, .bucket_bytes = 4096});
  same_as_inproc<DsButterflyHd>(t, "DSSync butterfly + halving-doubling",
                                dssync::DSSyncOptions{.group_size = 2, .seed = 5});
  same_as_inproc<Full>(t, "AllReduceSync");
  same_as_inproc<Gossip>(t, "GossipSync");
  same_as_inproc<Local>(t, "LocalSGD(DSSync)", 2, dssync::DSSyncOptions{.group_size = 2, .seed = 6});
  std::printf("rank %d: %s\n", t.rank(), failures ? "FAILED" : "all checks hold");
  return failures ? 1 : 0;
}

int steps(dssync::TcpTransport& t, long total) {
  dssync::DSSync<dssync::TcpTransport> sync(t, {.group_size = 2, .seed = 1});
  std::vector<float> x(std::size_t{1} << 18, float(t.rank()));
  for (long s = 0; s < total; ++s) {
    sync.step(std::span<float>(x));
    if (s % 50 == 0) {
      std::printf("rank %d step %ld\n", t.rank(), s);
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "check";
  try {
    dssync::TcpTransport t;
    if (mode == "check") return check(t);
    if (mode == "steps") return steps(t, argc > 2 ? std::atol(argv[2]) : 1000000);
    std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
    return 2;
  } catch (const dssync::error& e) {
    std::printf("%s: %s\n", std::getenv("DSSYNC_RANK") ? std::getenv("DSSYNC_RANK") : "?", e.what());
    std::fflush(stdout);
    return 3;
  }
}
