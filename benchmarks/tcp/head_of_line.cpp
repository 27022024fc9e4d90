// Head-of-line blocking between TcpTransport's channels, which share one
// connection per pair: the latency of a small channel-0 ping-pong alone, and
// while the rank's Background sends large messages on channel 1 to the same
// peer. Two processes under the launcher:
//
//   scripts/tools/dssync-run -n 2 bench_tcp_head_of_line [--small 4096]
//       [--big 33554432] [--transfers 5] [--pings 300]
//
// Rank 0 prints one CSV row per phase: phase,pings,median_us,p90_us,max_us,
// and the time of each large transfer. The first transfer touches its
// buffers for the first time and is left out of the "during" phase.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "dssync/tcp.hpp"
#include "dssync/transport/background.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

double micros(clock_type::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

void row(const char* phase, std::vector<double> us) {
  std::sort(us.begin(), us.end());
  const std::size_t n = us.size();
  std::printf("%s,%zu,%.1f,%.1f,%.1f\n", phase, n, us[n / 2], us[n * 9 / 10], us.back());
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t small = 4096, big = std::size_t{32} << 20;
  int transfers = 5, pings = 300;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const char* v = argv[i + 1];
    if (k == "--small") small = std::strtoull(v, nullptr, 10);
    else if (k == "--big") big = std::strtoull(v, nullptr, 10);
    else if (k == "--transfers") transfers = std::atoi(v);
    else if (k == "--pings") pings = std::atoi(v);
  }
  dssync::TcpTransport t;
  if (t.size() != 2) {
    std::fprintf(stderr, "bench_tcp_head_of_line runs on 2 ranks\n");
    return 2;
  }
  const int r = t.rank(), peer = 1 - r;
  std::vector<std::byte> ping(small), bulk(big, std::byte{1});
  // One ping-pong: rank 0 sends and waits for the answer; its time.
  auto pingpong = [&] {
    const auto start = clock_type::now();
    if (r == 0) {
      t.send(peer, std::span<const std::byte>(ping), 1);
      t.recv(peer, std::span<std::byte>(ping), 2);
    } else {
      t.recv(peer, std::span<std::byte>(ping), 1);
      t.send(peer, std::span<const std::byte>(ping), 2);
    }
    return micros(clock_type::now() - start);
  };
  for (int i = 0; i < 50; ++i) pingpong();  // warm-up
  std::vector<double> alone, during, transfer_ms;
  for (int i = 0; i < pings; ++i) alone.push_back(pingpong());

  dssync::Background bg(t);
  for (int k = 0; k < transfers; ++k) {
    std::atomic<bool> done{false};
    const auto start = clock_type::now();
    bg.start([&](dssync::TcpTransport& ch) {
      if (r == 0)
        ch.send(peer, std::span<const std::byte>(bulk), 7);
      else
        ch.recv(peer, std::span<std::byte>(bulk), 7);
      done = true;
    });
    // Ping-pong until rank 0's transfer is done; rank 0 says when, on tag 3.
    for (;;) {
      std::byte more[1] = {std::byte(done.load() ? 0 : 1)};
      if (r == 0)
        t.send(peer, std::span<const std::byte>(more), 3);
      else
        t.recv(peer, std::span<std::byte>(more), 3);
      if (more[0] == std::byte{0}) break;
      const double us = pingpong();
      if (k > 0) during.push_back(us);
    }
    bg.get();
    transfer_ms.push_back(micros(clock_type::now() - start) / 1e3);
  }
  if (r == 0) {
    std::printf("phase,pings,median_us,p90_us,max_us\n");
    row("alone", alone);
    if (!during.empty()) row("during_channel_1_transfers", during);
    std::printf("# %zu-byte pings; %zu-byte channel-1 transfers (ms):", small, big);
    for (const double ms : transfer_ms) std::printf(" %.1f", ms);
    std::printf("\n");
  }
  return 0;
}
