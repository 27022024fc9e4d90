// expect: reduce_op
// Calling a collective directly with a non-numeric element fails at the call.
#include <dssync/dssync.hpp>

#include <vector>

void f(dssync::InProcTransport& t) {
  dssync::RingReduce ring;
  float x[4] = {};
  std::vector<std::span<float>> v = {std::span<float>(x)};
  ring.all_reduce(t, dssync::Group({0}), std::span<std::span<float>>(v), dssync::Sum{});
}
