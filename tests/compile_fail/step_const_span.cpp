// expect: pass mutable elements
// A model given as spans of const floats cannot be averaged in place.
#include <dssync/dssync.hpp>

#include <vector>

void f(dssync::InProcTransport& t) {
  dssync::DSSync<dssync::InProcTransport> sync(t, {.group_size = 2});
  std::vector<float> w(10), b(3);
  std::vector<std::span<const float>> tensors = {w, b};
  sync.step(tensors);
}
