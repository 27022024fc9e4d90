// A peer the TCP all-reduce is compared against: Gloo's own all-reduce over
// Gloo's TCP transport, timed the way bench_tcp_allreduce and
// bench_mpi_allreduce_peer are. A measuring tool, not a test; Gloo's C++ API
// only, no dssync.
//
//   scripts/dssync-run -n 8 bench_gloo_allreduce_peer [--sizes B,B,...]
//       [--trials T] [--algo ring,hd] [--store DIR] [--hostname ADDR | --iface NAME]
//
// Every process reads DSSYNC_RANK and DSSYNC_WORLD_SIZE, as the launcher sets
// them. Algorithms (--algo, default ring,hd):
//   ring          gloo::allreduce with AllreduceOptions::RING: reduce-scatter
//                 then all-gather around the ring in segments of at most 1 MiB,
//                 the bandwidth-optimal ring (what PyTorch's ProcessGroupGloo
//                 runs for CPU tensors)                          -> gloo_ring
//   hd            gloo::AllreduceHalvingDoubling                 -> gloo_halving_doubling
//   ring_chunked  gloo::AllreduceRingChunked (older ring API)    -> gloo_ring_chunked
//   bcube         gloo::allreduce with AllreduceOptions::BCUBE   -> gloo_bcube
//
// Rendezvous. The Debian Gloo (0.0~git20220518) has no TCP store, only
// FileStore, HashStore (in-process) and RedisStore. So the processes meet in a
// directory (--store DIR, default $TMPDIR or /tmp, plus /dssync-gloo-store,
// created if missing) that all of them can see: on one host any local
// directory, across hosts a shared file system. Keys are prefixed with
// DSSYNC_JOB_TOKEN (a fresh token per launch), so runs never read each other's
// stale keys; without a token, DIR must be empty or unique to the run. Each
// rank deletes its own key files once every rank is connected.
// DSSYNC_MASTER_ADDR is used only to choose the local address: the device binds
// to the address this host uses to reach DSSYNC_MASTER_ADDR (default
// 127.0.0.1, so loopback); --hostname ADDR or --iface NAME override that.
//
// For each size and algorithm: one checked all-reduce (rank r contributes
// r + 1 everywhere; every element must be n(n+1)/2 exactly, else every rank
// exits with a message), two warm-ups, then T trials of R calls, each trial
// started after a Gloo barrier; a trial's time is the slowest rank's (a Gloo
// all-reduce of one double with max). Rank 0 prints one line per size and
// algorithm:
//   <label> <bytes> <R> <median time per call, us> <algbw GB/s> <busbw GB/s>
// with algbw = bytes / time and busbw = algbw * 2(n-1)/n in 10^9 bytes/s.
// Lines starting with '#' are comments.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <gloo/allreduce.h>
#include <gloo/allreduce_halving_doubling.h>
#include <gloo/allreduce_ring_chunked.h>
#include <gloo/barrier.h>
#include <gloo/config.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/transport/tcp/device.h>

#include "cli.hpp"

namespace {

using Context = std::shared_ptr<gloo::Context>;
using ReduceFn = void (*)(void*, const void*, const void*, std::size_t);

using bench::split;

int env_int(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') throw std::runtime_error(std::string(name) + " is not set");
  return std::atoi(v);
}

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}

// The local IPv4 address the kernel would send from to reach `peer` (a UDP
// connect sends nothing): 127.0.0.1 for a loopback master.
std::string local_address_towards(const std::string& peer) {
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(9);
  if (inet_pton(AF_INET, peer.c_str(), &to.sin_addr) != 1)
    throw std::runtime_error("DSSYNC_MASTER_ADDR " + peer +
                             " is not an IPv4 address; pass --hostname or --iface");
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in me{};
  socklen_t len = sizeof me;
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&me), &len) == 0;
  const int err = errno;
  close(fd);
  if (!ok) throw std::runtime_error("no route to " + peer + ": " + std::strerror(err));
  char text[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &me.sin_addr, text, sizeof text);
  return text;
}

void barrier(const Context& ctx, uint32_t tag) {
  gloo::BarrierOptions opts(ctx);
  opts.setTag(tag);
  gloo::barrier(opts);
}

// One double reduced over all ranks with `fn` (max or min).
double reduce_scalar(const Context& ctx, double value, ReduceFn fn, uint32_t tag) {
  gloo::AllreduceOptions opts(ctx);
  opts.setOutput(&value, 1);
  opts.setReduceFunction(fn);
  opts.setTag(tag);
  gloo::allreduce(opts);
  return value;
}

constexpr uint32_t kDataTag = 1;
constexpr uint32_t kBarrierTag = 2;
constexpr uint32_t kScalarTag = 3;

// One algorithm bound to one buffer; call() runs one in-place all-reduce.
class Runner {
 public:
  virtual ~Runner() noexcept(false) = default;  // as gloo::Algorithm's
  virtual void call() = 0;
};

class NewApiRunner : public Runner {  // gloo::allreduce (ring or bcube)
 public:
  NewApiRunner(const Context& ctx, std::vector<float>& data,
               gloo::AllreduceOptions::Algorithm algorithm)
      : opts_(ctx) {
    opts_.setAlgorithm(algorithm);
    opts_.setOutput(data.data(), data.size());
    opts_.setReduceFunction(static_cast<ReduceFn>(&gloo::sum<float>));
    opts_.setTag(kDataTag);
  }
  void call() override { gloo::allreduce(opts_); }

 private:
  gloo::AllreduceOptions opts_;
};

template <class Algorithm>
class OldApiRunner : public Runner {  // gloo::Algorithm subclasses, set up once
 public:
  OldApiRunner(const Context& ctx, std::vector<float>& data)
      : algorithm_(ctx, std::vector<float*>{data.data()}, static_cast<int>(data.size())) {}
  void call() override { algorithm_.run(); }

 private:
  Algorithm algorithm_;
};

std::unique_ptr<Runner> make_runner(const std::string& algo, const Context& ctx,
                                    std::vector<float>& data) {
  if (algo == "ring")
    return std::make_unique<NewApiRunner>(ctx, data, gloo::AllreduceOptions::Algorithm::RING);
  if (algo == "bcube")
    return std::make_unique<NewApiRunner>(ctx, data, gloo::AllreduceOptions::Algorithm::BCUBE);
  if (algo == "hd")
    return std::make_unique<OldApiRunner<gloo::AllreduceHalvingDoubling<float>>>(ctx, data);
  if (algo == "ring_chunked")
    return std::make_unique<OldApiRunner<gloo::AllreduceRingChunked<float>>>(ctx, data);
  throw std::runtime_error("unknown algorithm " + algo + " (ring, hd, ring_chunked, bcube)");
}

std::string label_for(const std::string& algo) {
  return algo == "hd" ? "gloo_halving_doubling" : "gloo_" + algo;
}

void measure(const std::string& algo, const Context& ctx, std::size_t bytes, int trials) {
  const int n = ctx->size;
  const std::string label = label_for(algo);
  std::vector<float> data(bytes / sizeof(float), static_cast<float>(ctx->rank + 1));
  const auto runner = make_runner(algo, ctx, data);

  runner->call();
  const float want = static_cast<float>(n * (n + 1) / 2);
  const auto bad = std::find_if(data.begin(), data.end(), [want](float x) { return x != want; });
  if (bad != data.end())
    std::fprintf(stderr, "rank %d: %s gave a wrong sum at %zu bytes: element %zu is %g, not %g\n",
                 ctx->rank, label.c_str(), bytes, static_cast<std::size_t>(bad - data.begin()),
                 static_cast<double>(*bad), static_cast<double>(want));
  const double all_ok = reduce_scalar(ctx, bad == data.end() ? 1.0 : 0.0,
                                      static_cast<ReduceFn>(&gloo::min<double>), kScalarTag);
  if (all_ok != 1.0) {
    if (ctx->rank == 0)
      std::fprintf(stderr, "%s gave a wrong sum at %zu bytes\n", label.c_str(), bytes);
    std::exit(1);
  }

  // Zeros: repeated sums stay finite.
  std::fill(data.begin(), data.end(), 0.0f);
  const int reps = bench::reps_for(bytes, 50);  // as bench_tcp_allreduce
  runner->call();
  runner->call();
  std::vector<double> times;
  for (int t = 0; t < trials; ++t) {
    barrier(ctx, kBarrierTag);
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) runner->call();
    const double local = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    times.push_back(reduce_scalar(ctx, local, static_cast<ReduceFn>(&gloo::max<double>), kScalarTag));
  }
  std::sort(times.begin(), times.end());
  const double per_call = times[times.size() / 2] / reps;
  const double algbw = static_cast<double>(bytes) / per_call / 1e9;
  if (ctx->rank == 0) {
    std::printf("%s %zu %d %.2f %.3f %.3f\n", label.c_str(), bytes, reps, per_call * 1e6, algbw,
                algbw * 2.0 * (n - 1) / n);
    std::fflush(stdout);
  }
}

int run(int argc, char** argv) {
  std::vector<std::string> sizes = {"1048576", "4194304", "16777216"};
  std::vector<std::string> algos = {"ring", "hd"};
  int trials = 5;
  std::string store_dir = env_or("TMPDIR", "/tmp") + "/dssync-gloo-store";
  std::string hostname;
  std::string iface;
  const bool ok = bench::options(argc, argv, 1, [&](const std::string& key, const std::string& value) {
    if (key == "--sizes") sizes = split(value);
    else if (key == "--algo") algos = split(value);
    else if (key == "--trials") trials = std::max(1, std::atoi(value.c_str()));
    else if (key == "--store") store_dir = value;
    else if (key == "--hostname") hostname = value;
    else if (key == "--iface") iface = value;
    else return false;
    return true;
  });
  if (!ok) return 2;
  for (const auto& a : algos)
    if (a != "ring" && a != "hd" && a != "ring_chunked" && a != "bcube") {
      std::fprintf(stderr, "unknown algorithm %s (ring, hd, ring_chunked, bcube)\n", a.c_str());
      return 2;
    }

  const int rank = env_int("DSSYNC_RANK");
  const int n = env_int("DSSYNC_WORLD_SIZE");
  if (n < 1 || rank < 0 || rank >= n)
    throw std::runtime_error("DSSYNC_RANK / DSSYNC_WORLD_SIZE out of range");

  gloo::transport::tcp::attr attr;
  if (!iface.empty()) attr.iface = iface;
  else attr.hostname =
      hostname.empty() ? local_address_towards(env_or("DSSYNC_MASTER_ADDR", "127.0.0.1")) : hostname;
  auto device = gloo::transport::tcp::CreateDevice(attr);

  if (mkdir(store_dir.c_str(), 0700) != 0 && errno != EEXIST)
    throw std::runtime_error("mkdir " + store_dir + ": " + std::strerror(errno));
  gloo::rendezvous::FileStore files(store_dir);
  gloo::rendezvous::PrefixStore store(env_or("DSSYNC_JOB_TOKEN", "dssync-gloo"), files);
  auto context = std::make_shared<gloo::rendezvous::Context>(rank, n);
  context->setTimeout(std::chrono::seconds(120));
  context->connectFullMesh(store, device);
  const Context ctx = context;
  // Every rank has read every key: remove this rank's.
  barrier(ctx, kBarrierTag);
  for (const auto& path : files.getAllKeyFilePaths()) std::remove(path.c_str());

  if (rank == 0) {
    std::printf("# Gloo %d.%d.%d (Debian libgloo-dev), tcp device %s, FileStore %s\n",
                GLOO_VERSION_MAJOR, GLOO_VERSION_MINOR, GLOO_VERSION_PATCH,
                device->str().c_str(), store_dir.c_str());
    std::printf("# Gloo all-reduce, float sum, in place, %d ranks; median of %d trials, each the "
                "slowest rank's time for R calls\n",
                n, trials);
    std::printf("# label bytes R time_us algbw_GB/s busbw_GB/s (GB/s = 10^9 bytes/s; busbw = "
                "algbw * 2(n-1)/n)\n");
    std::fflush(stdout);
  }
  for (const auto& s : sizes) {
    const std::size_t bytes = std::stoull(s);
    if (bytes == 0 || bytes % sizeof(float) != 0)
      throw std::runtime_error("size " + s + " is not a positive multiple of 4");
    for (const auto& a : algos) measure(a, ctx, bytes, trials);
  }
  barrier(ctx, kBarrierTag);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gloo_allreduce_peer: %s\n", e.what());
    return 1;
  }
}
