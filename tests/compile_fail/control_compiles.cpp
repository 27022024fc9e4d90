// expect: compiles
// The harness's control: the right types compile, so a failure of the other
// cases is the library's check and not a broken include path or flag.
#include <dssync/dssync.hpp>

#include <cstdint>
#include <vector>

void f(dssync::InProcTransport& t) {
  dssync::DSSync<dssync::InProcTransport> sync(t, {.group_size = 2});
  std::vector<float> w(10);
  sync.step(w);
  dssync::DSSync<dssync::InProcTransport, dssync::ButterflyShuffle, dssync::RingReduce,
                 dssync::FixedSizeGroups, dssync::TruncatedAverage>
      counts_sync(t, {.group_size = 2});
  std::vector<std::int32_t> counts(10);
  counts_sync.step(counts);
}
