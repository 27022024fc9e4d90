// DS-Sync over plain TCP: one process per rank, started by the launcher,
// which sets the DSSYNC_* variables TcpTransport reads.
//
//   scripts/tools/dssync-run -n 4 ./tcp_dssync
//
// The loop a trainer has, with a toy model so that the result has a closed
// form: every rank starts from rank 0's parameters (a broadcast), takes a
// local "optimizer step" that pulls its parameters towards its own rank,
// x <- x - lr (x - rank), then averages with DS-Sync (random pairs). DS-Sync
// keeps the mean over ranks, so the mean model follows
// m <- m - lr (m - c), c = (n-1)/2, whatever the groups were; at the end an
// all-reduce gives every rank that mean (the model one evaluates). It checks
// that the averaged model is the closed form, and that every rank holds the
// very same bits (a hash of the parameters, all-gathered), and exits 1
// otherwise. The ctest "examples: tcp_dssync under dssync-run, 4 ranks" runs it.
#include <dssync/tcp.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <vector>

namespace {

// FNV-1a over the bytes of the parameters: equal hashes, equal bits.
std::uint64_t hash(std::span<const float> x) {
  std::uint64_t h = 1469598103934665603ull;
  for (const std::byte b : std::as_bytes(x)) h = (h ^ std::to_integer<std::uint64_t>(b)) * 1099511628211ull;
  return h;
}

}  // namespace

int main() {
  try {
    // From DSSYNC_RANK, DSSYNC_WORLD_SIZE, DSSYNC_MASTER_ADDR, DSSYNC_MASTER_PORT,
    // DSSYNC_JOB_TOKEN (and DSSYNC_TIMEOUT_MS etc. where set); returns when this
    // rank is connected to every other.
    dssync::TcpTransport t;
    const int n = t.size(), me = t.rank();
    const dssync::Partition world = dssync::Partition::whole(n);
    const dssync::tag_t tag = dssync::make_tag(0, 127);  // a channel no synchronizer uses

    // 1. Identical start: rank 0 initializes, everyone receives its parameters.
    std::vector<float> params(1 << 18);  // 1 MiB
    std::vector<float> initial(params.size());
    for (std::size_t i = 0; i < initial.size(); ++i) initial[i] = static_cast<float>(i % 1000) / 1000.0f;
    if (me == 0) params = initial;
    dssync::AutoBroadcast().broadcast(t, world.group(0), std::span<float>(params), 0, tag);

    // 2. The loop: local step, then step() on the parameters. Checked mode
    // compares seed, group size, iteration and tensor lengths across ranks
    // before every step (worth it on a first run; costs a small all-reduce).
    const float lr = 0.1f;
    const int steps = 20;
    dssync::DSSync<dssync::TcpTransport> sync(t, {.group_size = 2, .seed = 42, .checked = true});
    for (int s = 0; s < steps; ++s) {
      for (float& x : params) x -= lr * (x - static_cast<float>(me));
      sync.step(params);
    }

    // 3. Evaluate the averaged model: an all-reduce of a copy (the workers keep
    // their own parameters and go on training from them).
    std::vector<float> averaged = params;
    dssync::AllReduceSync<dssync::TcpTransport>(t).step(averaged);

    const double c = (n - 1) / 2.0;
    const double decay = std::pow(1.0 - lr, steps);
    double worst = 0;
    for (std::size_t i = 0; i < averaged.size(); ++i)
      worst = std::max(worst, std::abs(averaged[i] - (c + (initial[i] - c) * decay)));

    const std::uint64_t mine = hash(averaged);
    std::vector<std::uint64_t> all(static_cast<std::size_t>(n));
    dssync::AutoAllGather().all_gather(t, world.group(0), std::span<const std::uint64_t>(&mine, 1),
                                       std::span<std::uint64_t>(all), tag);
    const bool same = std::all_of(all.begin(), all.end(), [&](std::uint64_t h) { return h == mine; });
    const bool close = worst < 1e-4;

    if (me == 0)
      std::printf(
          "%d ranks, %d steps of DS-Sync g=2 over TCP: averaged model %s the closed form "
          "(largest error %.2g), %s on every rank; %.2f ms/step, %.1f MB sent per rank\n",
          n, steps, close ? "matches" : "DOES NOT MATCH", worst,
          same ? "bitwise the same" : "DIFFERENT", sync.stats().seconds * 1e3 / steps,
          static_cast<double>(sync.stats().bytes_sent) / 1e6);
    return close && same ? 0 : 1;
  } catch (const dssync::error& e) {
    // The launcher sees the exit code, ends the other ranks and returns it.
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
