// dssync's own synchronizers under SimGrid's SMPI: the very code that runs on
// SimTransport, over a transport made of plain MPI calls, so that the two
// simulators time the same sequence of messages. Prints the slowest rank's
// simulated seconds per step (MPI_Wtime is virtual under SMPI).
// scripts/studies/sim-vs-smpi builds it with smpicxx and runs it beside dssync_simulate.
//
//   smpirun -np P -platform PLATFORM.xml -hostfile HOSTS ./smpi_dssync_steps SYNC BYTES STEPS [RACK]
//
// SYNC: ring, hd (AllReduceSync with RingReduce or HalvingDoublingReduce),
// dssync (random groups of 2), dssync-topo (TopologyAwareGroups over racks of
// RACK consecutive ranks), gossip (ring). BYTES: the buffer, real bytes.

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include <dssync/dssync.hpp>

namespace {

// The transport concept in plain MPI: blocking calls on MPI_COMM_WORLD. One
// message per block, as on SimTransport and TcpTransport.
class SmpiTransport {
 public:
  static constexpr std::size_t segment_bytes = SIZE_MAX;

  SmpiTransport() {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  int rank() const { return rank_; }
  int size() const { return size_; }

  template <class T>
  void send(int dst, std::span<T> data, dssync::tag_t tag) {
    MPI_Send(data.data(), count(data), MPI_BYTE, dst, mpi_tag(tag), MPI_COMM_WORLD);
  }
  template <class T>
  void recv(int src, std::span<T> data, dssync::tag_t tag) {
    MPI_Recv(data.data(), count(data), MPI_BYTE, src, mpi_tag(tag), MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  }
  template <class T, class U>
  void sendrecv(int dst, std::span<T> out, int src, std::span<U> in, dssync::tag_t tag) {
    MPI_Sendrecv(out.data(), count(out), MPI_BYTE, dst, mpi_tag(tag), in.data(), count(in), MPI_BYTE, src,
                 mpi_tag(tag), MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  }

 private:
  template <class T>
  static int count(std::span<T> s) {
    return static_cast<int>(s.size_bytes());
  }
  // Messages of one step match in order anyway; the tag only has to fit MPI's.
  static int mpi_tag(dssync::tag_t tag) { return static_cast<int>(tag % 32749); }

  int rank_ = 0, size_ = 1;
};

template <class Sync>
double run(Sync& sync, std::vector<float>& x, int steps) {
  // From iteration 0, as dssync_simulate counts, so both see the same
  // partitions. (Virtual time does not see the first step's allocations.)
  MPI_Barrier(MPI_COMM_WORLD);
  const double start = MPI_Wtime();
  for (int s = 0; s < steps; ++s) sync.step(x);
  const double mine = MPI_Wtime() - start;
  double slowest = 0;
  MPI_Allreduce(&mine, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return slowest / steps;
}

std::vector<std::string> rack_labels(int n, int rack) {
  std::vector<std::string> labels;
  for (int r = 0; r < n; ++r) labels.push_back("rack" + std::to_string(r / rack));
  return labels;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  if (argc < 4) {
    std::fprintf(stderr, "usage: smpi_dssync_steps SYNC BYTES STEPS [RACK]\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  const std::string name = argv[1];
  const std::size_t bytes = std::strtoull(argv[2], nullptr, 10);
  const int steps = std::atoi(argv[3]);
  const int rack = argc > 4 ? std::atoi(argv[4]) : 0;
  SmpiTransport t;
  std::vector<float> x(bytes / sizeof(float), static_cast<float>(t.rank()));
  using namespace dssync;
  double per_step = 0;
  if (name == "ring") {
    AllReduceSync<SmpiTransport, RingReduce> s(t);
    per_step = run(s, x, steps);
  } else if (name == "hd") {
    AllReduceSync<SmpiTransport, HalvingDoublingReduce> s(t);
    per_step = run(s, x, steps);
  } else if (name == "dssync") {
    DSSync<SmpiTransport, RandomShuffle> s(t, {.group_size = 2, .seed = 1});
    per_step = run(s, x, steps);
  } else if (name == "dssync-topo" && rack > 0) {
    DSSync<SmpiTransport, NoShuffle, RingReduce, TopologyAwareGroups> s(
        t, {.group_size = 2, .seed = 1}, {}, {}, TopologyAwareGroups(rack_labels(t.size(), rack)));
    per_step = run(s, x, steps);
  } else if (name == "gossip") {
    GossipSync<SmpiTransport, RingTopology> s(t);
    per_step = run(s, x, steps);
  } else {
    if (t.rank() == 0) std::fprintf(stderr, "unknown synchronizer %s (or dssync-topo without RACK)\n", name.c_str());
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  if (t.rank() == 0) std::printf("smpi_steps %s %d %zu %.9f\n", name.c_str(), t.size(), bytes, per_step);
  MPI_Finalize();
  return 0;
}
