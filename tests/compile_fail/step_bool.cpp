// expect: concept dssync::element
// bool is no element: Average over bool would be a logical OR.
#include <dssync/dssync.hpp>

void f(dssync::InProcTransport& t) {
  dssync::DSSync<dssync::InProcTransport> sync(t, {.group_size = 2});
  bool flags[4] = {};
  sync.step(std::span<bool>(flags));
}
