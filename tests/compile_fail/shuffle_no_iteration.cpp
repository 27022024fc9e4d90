// expect: shuffle_policy
// A shuffle without the iteration cannot change the groups from step to step.
#include <dssync/dssync.hpp>

struct NoIteration {
  void shuffle(std::uint64_t, dssync::Partition&) const {}
};

void f(dssync::InProcTransport& t) {
  dssync::DSSync<dssync::InProcTransport, NoIteration> sync(t, {.group_size = 2});
}
