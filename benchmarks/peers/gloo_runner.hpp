#pragma once
// Gloo's side of the TCP comparisons (Debian libgloo-dev): connecting a Gloo
// context the way the launcher's processes can (DSSYNC_RANK,
// DSSYNC_WORLD_SIZE, a FileStore directory, keys prefixed with
// DSSYNC_JOB_TOKEN), and Gloo's all-reduce algorithms bound to one buffer.
// Gloo's C++ API only, no dssync: bench_gloo_allreduce_peer runs it alone,
// bench_tcp_interleaved beside dssync in the same processes.
//
// Rendezvous. The Debian Gloo (0.0~git20220518) has no TCP store, only
// FileStore, HashStore (in-process) and RedisStore. So the processes meet in a
// directory that all of them can see: on one host any local directory, across
// hosts a shared file system. Keys are prefixed with DSSYNC_JOB_TOKEN (a fresh
// token per launch), so runs never read each other's stale keys; without a
// token, the directory must be empty or unique to the run. Each rank deletes
// its own key files once every rank is connected. DSSYNC_MASTER_ADDR is used
// only to choose the local address: the device binds to the address this host
// uses to reach DSSYNC_MASTER_ADDR (default 127.0.0.1, so loopback); a
// hostname or interface name overrides that.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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

namespace bench {

using Context = std::shared_ptr<gloo::Context>;
using ReduceFn = void (*)(void*, const void*, const void*, std::size_t);

inline int env_int(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') throw std::runtime_error(std::string(name) + " is not set");
  return std::atoi(v);
}

inline std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}

// The local IPv4 address the kernel would send from to reach `peer` (a UDP
// connect sends nothing): 127.0.0.1 for a loopback master.
inline std::string local_address_towards(const std::string& peer) {
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

inline void barrier(const Context& ctx, uint32_t tag) {
  gloo::BarrierOptions opts(ctx);
  opts.setTag(tag);
  gloo::barrier(opts);
}

// One double reduced over all ranks with `fn` (max or min).
inline double reduce_scalar(const Context& ctx, double value, ReduceFn fn, uint32_t tag) {
  gloo::AllreduceOptions opts(ctx);
  opts.setOutput(&value, 1);
  opts.setReduceFunction(fn);
  opts.setTag(tag);
  gloo::allreduce(opts);
  return value;
}

inline constexpr uint32_t kDataTag = 1;
inline constexpr uint32_t kBarrierTag = 2;
inline constexpr uint32_t kScalarTag = 3;

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

inline std::unique_ptr<Runner> make_runner(const std::string& algo, const Context& ctx,
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

inline std::string label_for(const std::string& algo) {
  return algo == "hd" ? "gloo_halving_doubling" : "gloo_" + algo;
}

// The default store directory: $TMPDIR or /tmp, plus /dssync-gloo-store.
inline std::string default_gloo_store() { return env_or("TMPDIR", "/tmp") + "/dssync-gloo-store"; }

// Where Gloo's processes meet and which address they use: the options
// --store DIR, --hostname ADDR and --iface NAME of the programs.
struct GlooPlace {
  std::string store_dir = default_gloo_store();
  std::string hostname;
  std::string iface;

  // Takes one of the options above; false for any other key.
  bool take(const std::string& key, const std::string& value) {
    if (key == "--store") store_dir = value;
    else if (key == "--hostname") hostname = value;
    else if (key == "--iface") iface = value;
    else return false;
    return true;
  }
};

// A Gloo context of every rank, connected as a full mesh over Gloo's TCP
// device; `device` describes the device for the programs' headers.
struct GlooWorld {
  Context ctx;
  std::string device;
};
inline GlooWorld connect_gloo(int rank, int n, const GlooPlace& place) {
  const std::string& store_dir = place.store_dir;
  gloo::transport::tcp::attr attr;
  if (!place.iface.empty()) attr.iface = place.iface;
  else attr.hostname = place.hostname.empty() ? local_address_towards(env_or("DSSYNC_MASTER_ADDR", "127.0.0.1"))
                                              : place.hostname;
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
  return {ctx, device->str()};
}

}  // namespace bench
