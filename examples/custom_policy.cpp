// A user-written shuffle plugged into DSSync. A shuffle policy is any type with
//   void shuffle(std::uint64_t seed, std::uint64_t iteration, dssync::Partition& p) const
// that rewrites the grouping's layout in place (dssync::shuffle_policy checks it).
//
// This one is a "ring shift" schedule: at iteration t the groups are
// consecutive ranks starting at offset t mod n, so each rank meets new
// neighbours every step without any randomness.
#include <dssync/dssync.hpp>

#include <algorithm>
#include <cstdio>
#include <vector>

struct RingShiftShuffle {
  void shuffle(std::uint64_t /*seed*/, std::uint64_t iteration, dssync::Partition& p) const {
    auto members = p.members();  // ranks, group after group; sizes stay
    const auto n = static_cast<std::ptrdiff_t>(members.size());
    for (std::ptrdiff_t i = 0; i < n; ++i)
      members[static_cast<std::size_t>(i)] = static_cast<int>((i + static_cast<std::ptrdiff_t>(iteration % static_cast<std::uint64_t>(n))) % n);
    p.reindex();
  }
};
static_assert(dssync::shuffle_policy<RingShiftShuffle>);

int main() {
  constexpr int n = 6;
  dssync::InProcWorld world(n);
  std::vector<double> result(n);
  world.run([&](dssync::InProcTransport& t) {
    std::vector<double> params(1000, 100.0 * t.rank());
    dssync::DSSync<dssync::InProcTransport, RingShiftShuffle, dssync::AutoReduce> sync(
        t, {.group_size = 3});
    for (int it = 0; it < 4; ++it) sync.step(std::span(params));
    result[static_cast<std::size_t>(t.rank())] = params[0];
    if (t.rank() == 0)
      for (std::uint64_t it = 0; it < 3; ++it)
        std::printf("iteration %llu: %s\n", static_cast<unsigned long long>(it),
                    sync.partition(it).to_string().c_str());
  });
  const double mean = 100.0 * (n - 1) / 2;
  for (int r = 0; r < n; ++r)
    std::printf("rank %d: %.3f (mean %.1f)\n", r, result[static_cast<std::size_t>(r)], mean);
}
