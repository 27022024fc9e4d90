// The smallest complete DS-Sync program: 8 ranks as threads, each with its own
// parameters, averaged in random pairs every step.
#include <dssync/dssync.hpp>

#include <cstdio>
#include <mutex>
#include <vector>

int main() {
  dssync::InProcWorld world(8);
  std::mutex print;
  world.run([&](dssync::InProcTransport& t) {
    std::vector<float> params(1 << 20, float(t.rank()));  // rank r starts at r
    dssync::DSSync<dssync::InProcTransport, dssync::RandomShuffle, dssync::RingReduce> sync(
        t, {.group_size = 2, .seed = 42});

    for (int it = 0; it < 10; ++it) {
      // ... the local optimizer step on params goes here ...
      sync.step(std::span(params));  // average inside this step's group
    }

    // The mean over ranks is still 3.5; each rank is now close to it.
    std::lock_guard lock(print);
    std::printf("rank %d: params[0] = %.4f, group at step 0: %s, sent %.1f MB\n", t.rank(),
                params[0], sync.partition(0).group_of(t.rank()).to_string().c_str(),
                sync.stats().bytes_sent / 1e6);
  });
}
