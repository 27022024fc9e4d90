// The floor under any ring all-reduce over TCP on this machine: the ring's
// traffic alone, over plain sockets, with nothing else. A measuring tool for
// scripts/bench/tcp, started as n processes by the launcher.
//
//   scripts/tools/dssync-run -n 8 bench_tcp_floor [--sizes B,B,...] [--trials T]
//
// One "call" is what a ring all-reduce of B bytes sends and receives on each
// rank: 2(n-1) steps, each a block of B/n bytes to the next rank while a block
// of B/n arrives from the previous one (both at once, one thread, poll(2)),
// with no reduction, no framing, no copy in user space and no background
// thread. The kernel's work per byte (a copy in, a copy out, the loopback's
// per-packet path) is all that is timed, so no all-reduce that moves the
// ring's bytes (ring, halving-doubling: the same 2(n-1)/n B per rank) over
// TCP on this machine can be faster. TcpTransport only meets the ranks (it
// tells each rank its neighbour's port) and times the trials; it is idle
// meanwhile.
//
// Like bench_tcp_allreduce: two warm-up calls, then T trials of R calls, each
// trial started after a barrier, a trial's time the slowest rank's. Rank 0
// prints one line per size:
//   tcp_ring_traffic <bytes> <R> <median time per call, us> <algbw GB/s> <busbw GB/s>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "dssync/tcp.hpp"

#include "common/cli.hpp"
#include "common/report.hpp"
#include "tcp/trials.hpp"

namespace {

using bench::split;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "bench_tcp_floor: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

int make_socket() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) fail("socket");
  return fd;
}

// Sends `out` to `to` and receives `in` from `from`, both at once.
void exchange(int to, const std::byte* out, int from, std::byte* in, std::size_t bytes) {
  std::size_t sent = 0, got = 0;
  while (sent < bytes || got < bytes) {
    pollfd p[2] = {{to, static_cast<short>(sent < bytes ? POLLOUT : 0), 0},
                   {from, static_cast<short>(got < bytes ? POLLIN : 0), 0}};
    if (::poll(p, 2, 10000) <= 0) fail("poll (no progress in 10 s)");
    if (p[0].revents & (POLLOUT | POLLERR | POLLHUP)) {
      const ssize_t n = ::send(to, out + sent, bytes - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0 && errno != EAGAIN) fail("send");
      if (n > 0) sent += static_cast<std::size_t>(n);
    }
    if (p[1].revents & (POLLIN | POLLERR | POLLHUP)) {
      const ssize_t n = ::recv(from, in + got, bytes - got, MSG_DONTWAIT);
      if (n == 0) fail("recv (the previous rank closed)");
      if (n < 0 && errno != EAGAIN) fail("recv");
      if (n > 0) got += static_cast<std::size_t>(n);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> sizes = {"1048576", "4194304", "16777216"};
  int trials = 5;
  const bool ok = bench::options(argc, argv, 1, [&](const std::string& key, const std::string& value) {
    if (key == "--sizes") sizes = split(value);
    else if (key == "--trials") trials = std::max(1, std::atoi(value.c_str()));
    else return false;
    return true;
  });
  if (!ok) return 2;
  try {
    dssync::TcpTransport t;  // DSSYNC_* from the launcher
    const int n = t.size(), me = t.rank();
    const std::vector<int> ranks = bench::every_rank(t);
    const dssync::Group world(ranks);
    dssync::RecursiveDoublingReduce small;
    const char* host = std::getenv("DSSYNC_MASTER_ADDR");  // one machine: every rank's address
    if (!host) host = "127.0.0.1";

    // Listen, tell everyone the port, connect to the next rank, accept the previous.
    const int listener = make_socket();
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    if (::inet_pton(AF_INET, host, &addr.sin_addr) != 1) fail("inet_pton (DSSYNC_MASTER_ADDR)");
    if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) fail("bind");
    if (::listen(listener, 4) != 0) fail("listen");
    socklen_t len = sizeof addr;
    if (::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) fail("getsockname");
    std::vector<std::int64_t> ports(static_cast<std::size_t>(n), 0);
    ports[static_cast<std::size_t>(me)] = ntohs(addr.sin_port);
    small.all_reduce(t, world, std::span<std::int64_t>(ports), dssync::Sum{}, 1);
    const int next = make_socket();
    sockaddr_in to = addr;
    to.sin_port = htons(static_cast<std::uint16_t>(ports[static_cast<std::size_t>((me + 1) % n)]));
    if (::connect(next, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) fail("connect");
    const int prev = ::accept(listener, nullptr, nullptr);
    if (prev < 0) fail("accept");
    const int one = 1;
    for (int fd : {next, prev}) ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

    if (me == 0)
      std::printf("# the ring's traffic alone over plain TCP sockets, %d ranks; median of %d trials, "
                  "each the slowest rank's time for R calls\n",
                  n, trials);
    for (const auto& s : sizes) {
      const std::size_t bytes = std::stoull(s), block = bytes / static_cast<std::size_t>(n);
      std::vector<std::byte> data(bytes), in(block);
      const auto call = [&] {
        for (int step = 0; step < 2 * (n - 1); ++step) {
          const std::size_t b = static_cast<std::size_t>((me - step + 2 * n) % n) * block;
          exchange(next, data.data() + b, prev, in.data(), block);
        }
      };
      const int reps = bench::reps_for(bytes, 50);
      call();
      call();
      const double per_call = bench::median_trial_seconds(t, world, trials, [&] {
                                for (int r = 0; r < reps; ++r) call();
                              }) / reps;
      // The ring's bytes are an all-reduce's: its busbw.
      if (me == 0) bench::Row{"tcp_ring_traffic", bytes, reps, per_call}.print(bench::Collective::all_reduce, n);
    }
    ::close(next);
    ::close(prev);
    ::close(listener);
  } catch (const dssync::error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
