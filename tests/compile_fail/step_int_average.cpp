// expect: concept dssync::reduce_op.*TruncatedAverage
// Average over integers would truncate silently; it does not compile.
#include <dssync/dssync.hpp>

#include <cstdint>
#include <vector>

void f(dssync::InProcTransport& t) {
  dssync::DSSync<dssync::InProcTransport> sync(t, {.group_size = 2});
  std::vector<std::int32_t> counts(10);
  sync.step(counts);
}
