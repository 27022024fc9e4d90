// expect: shuffle_policy
// A shuffle that takes the partition by value would shuffle a copy.
#include <dssync/dssync.hpp>

struct WrongShuffle {
  void shuffle(std::uint64_t, std::uint64_t, dssync::Partition) const {}
};

void f(dssync::InProcTransport& t) {
  dssync::DSSync<dssync::InProcTransport, WrongShuffle> sync(t, {.group_size = 2});
}
