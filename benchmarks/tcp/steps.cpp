// Per-step times of synchronizers over TcpTransport, and a ping-pong to fit
// the alpha-beta model: what SIMULATION.md's validation measures on the shaped
// network (scripts/studies/sim-validate), started as n processes by the launcher.
//
//   dssync-run -n 8 bench_tcp_steps steps [--sizes B,...] [--sync ring,dssync,gossip] [--steps K] [--trials T]
//     (also dssync-fixed: DSSync g=2 with NoShuffle, the same pairs every step;
//     shifts: gossip's traffic alone, the whole buffer to the right neighbour
//     while receiving from the left, then the other way round, no averaging;
//     shifts-same: two shifts to the right; --trace 1 prints every shift of
//     these two on stderr as "trace <rank> <exchange> <dst> <src> <start s>
//     <end s>", steady-clock times, comparable between ranks of one machine)
//   dssync-run -n 2 bench_tcp_steps pingpong [--sizes B,...] [--trials T]
//
// steps: for each size and synchronizer, 2 warm-up steps, then T trials of K
// steps, each trial started after a barrier; a trial's time is the slowest
// rank's. Rank 0 prints "<sync> <bytes> <median ms per step>".
// pingpong: ranks 0 and 1 bounce a message T times per size; rank 0 prints
// "pingpong <bytes> <median one-way us> <min> <max>", then
// "exchange <bytes> <median us> <min> <max>" for a sendrecv of that size both
// ways at once.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "dssync/tcp.hpp"

#include "common/cli.hpp"
#include "tcp/trials.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

using bench::split;

double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

// The steady clock in seconds: one clock for every process of this machine.
double clock_seconds() { return seconds_since(clock_type::time_point{}); }

template <class Sync>
double ms_per_step(dssync::TcpTransport& t, const dssync::Group& world, Sync& sync, std::vector<float>& x,
                   int steps, int trials) {
  for (int w = 0; w < 2; ++w) sync.step(x);
  return bench::median_trial_seconds(t, world, trials, [&] {
           for (int s = 0; s < steps; ++s) sync.step(x);
         }) / steps * 1e3;
}

// Two ring shifts of the whole buffer per step, as GossipSync's exchanges,
// without the averaging: to the right and back (alternate), or twice to the
// right, so that each connection carries data one way only.
struct Shifts {
  dssync::TcpTransport& t;
  bool alternate;
  bool trace;
  std::vector<float> in{};
  unsigned exchange = 0;

  void step(std::vector<float>& x) {
    const int n = t.size(), me = t.rank();
    in.resize(x.size());
    for (int e = 0; e < 2; ++e, ++exchange) {
      const bool left = alternate && e == 1;
      const int dst = (me + (left ? n - 1 : 1)) % n, src = (me + (left ? 1 : n - 1)) % n;
      const double start = clock_seconds();
      t.sendrecv(dst, std::span<const float>(x), src, std::span<float>(in), dssync::make_tag(exchange / 2, e));
      if (trace)
        std::fprintf(stderr, "trace %d %u %d %d %.6f %.6f\n", me, exchange, dst, src, start, clock_seconds());
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_tcp_steps steps|pingpong [options]\n");
    return 2;
  }
  const std::string mode = argv[1];
  std::vector<std::string> sizes = {"1048576", "4194304", "16777216"};
  std::vector<std::string> syncs = {"ring", "dssync", "gossip"};
  int steps = 10, trials = 5;
  bool trace = false;
  const bool ok = bench::options(argc, argv, 2, [&](const std::string& key, const std::string& value) {
    if (key == "--sizes") sizes = split(value);
    else if (key == "--sync") syncs = split(value);
    else if (key == "--steps") steps = std::max(1, std::atoi(value.c_str()));
    else if (key == "--trials") trials = std::max(1, std::atoi(value.c_str()));
    else if (key == "--trace") trace = value != "0";
    else return false;
    return true;
  });
  if (!ok) return 2;
  try {
    dssync::TcpTransport t;
    if (mode == "pingpong") {
      if (t.size() < 2) throw dssync::configuration_error("pingpong needs 2 ranks");
      for (const auto& s : sizes) {
        std::vector<std::byte> buf(std::stoull(s));
        std::vector<double> times;
        for (int i = 0; i < trials + 1; ++i) {
          const auto start = clock_type::now();
          if (t.rank() == 0) {
            t.send(1, std::span<std::byte>(buf), 1);
            t.recv(1, std::span<std::byte>(buf), 1);
          } else if (t.rank() == 1) {
            t.recv(0, std::span<std::byte>(buf), 1);
            t.send(0, std::span<std::byte>(buf), 1);
          }
          if (i > 0) times.push_back(seconds_since(start) / 2 * 1e6);  // the first one warms up
        }
        std::sort(times.begin(), times.end());
        if (t.rank() == 0)
          std::printf("pingpong %s %.2f %.2f %.2f\n", s.c_str(), times[times.size() / 2], times.front(), times.back());
        // Both ways at once (a sendrecv between the two): what a DS-Sync pair does.
        std::vector<std::byte> in(buf.size());
        times.clear();
        for (int i = 0; i < trials + 1 && t.rank() < 2; ++i) {
          const auto start = clock_type::now();
          t.sendrecv(1 - t.rank(), std::span<std::byte>(buf), 1 - t.rank(), std::span<std::byte>(in), 2);
          if (i > 0) times.push_back(seconds_since(start) * 1e6);
        }
        std::sort(times.begin(), times.end());
        if (t.rank() == 0)
          std::printf("exchange %s %.2f %.2f %.2f\n", s.c_str(), times[times.size() / 2], times.front(), times.back());
        std::fflush(stdout);
      }
      return 0;
    }
    const std::vector<int> ranks = bench::every_rank(t);
    const dssync::Group world(ranks);
    for (const auto& s : sizes) {
      std::vector<float> x(std::stoull(s) / sizeof(float), static_cast<float>(t.rank()));
      for (const auto& name : syncs) {
        double ms = 0;
        if (name == "ring") {
          dssync::AllReduceSync<dssync::TcpTransport, dssync::RingReduce> sync(t);
          ms = ms_per_step(t, world, sync, x, steps, trials);
        } else if (name == "dssync") {
          dssync::DSSync<dssync::TcpTransport> sync(t, {.group_size = 2, .seed = 1});
          ms = ms_per_step(t, world, sync, x, steps, trials);
        } else if (name == "dssync-fixed") {  // the same pairs every step: no shuffle
          dssync::DSSync<dssync::TcpTransport, dssync::NoShuffle> sync(t, {.group_size = 2, .seed = 1});
          ms = ms_per_step(t, world, sync, x, steps, trials);
        } else if (name == "gossip") {
          dssync::GossipSync<dssync::TcpTransport> sync(t);
          ms = ms_per_step(t, world, sync, x, steps, trials);
        } else if (name == "shifts" || name == "shifts-same") {
          Shifts sync{t, name == "shifts", trace};
          ms = ms_per_step(t, world, sync, x, steps, trials);
        } else {
          throw dssync::configuration_error("unknown synchronizer " + name +
                                            " (ring, dssync, dssync-fixed, gossip, shifts, shifts-same)");
        }
        if (t.rank() == 0) std::printf("%s %s %.3f\n", name.c_str(), s.c_str(), ms);
        std::fflush(stdout);
      }
    }
  } catch (const dssync::error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
