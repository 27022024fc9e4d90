// DS-Sync under mpirun: the hello program with MPITransport. Every process is
// one rank; the loop is the same as with the in-process world. The ranks start
// from rank 0's parameters (a broadcast) and gather their spread at the end.
//
//   mpirun -np 8 ./mpi_dssync
//   mpirun -H host1:4,host2:4 -np 8 ./mpi_dssync
//
// What a program under MPI does with a dssync error: print it with the rank
// and call MPI_Abort, so that mpirun ends every rank at once. Ranks that
// disagree (another seed, one step() too many) no longer hang: the rank whose
// wait passes MPIOptions::timeout throws timeout_error and tells the others,
// whose waits end with peer_error naming it.
#include <dssync/mpi.hpp>

#include <algorithm>
#include <boost/mpi/environment.hpp>
#include <chrono>
#include <cstdio>
#include <span>
#include <vector>

int main(int argc, char** argv) {
  boost::mpi::environment env(argc, argv);
  // MPI_COMM_WORLD; any operation that waits longer than 2 minutes (the
  // default) fails. Zero would wait forever.
  dssync::MPITransport t({.timeout = std::chrono::minutes(2)});
  try {
    const dssync::Partition world = dssync::Partition::whole(t.size());
    // Rank 0 makes the initial parameters (here a constant; in a real job a
    // seeded initializer or a checkpoint only it reads) and every rank starts
    // from them. dssync::MPINativeBroadcast would use MPI_Bcast instead.
    std::vector<float> params(1 << 20);
    if (t.rank() == 0) std::fill(params.begin(), params.end(), 0.5f);
    dssync::AutoBroadcast().broadcast(t, world.group(0), std::span<float>(params), /*root=*/0);

    dssync::DSSync<dssync::MPITransport, dssync::RandomShuffle, dssync::RingReduce> sync(
        t, {.group_size = 2, .seed = 42});
    for (int it = 0; it < 10; ++it) {
      // ... the local optimizer step on params; here each rank drifts by its
      // rank on the first step, so that there is something to average ...
      if (it == 0)
        for (float& p : params) p += static_cast<float>(t.rank());
      sync.step(params);
    }

    // How far apart the ranks still are: every rank's params[0], gathered.
    std::vector<float> firsts(static_cast<std::size_t>(t.size()));
    dssync::AutoAllGather().all_gather(t, world.group(0), std::span<const float>(params).first(1),
                                       std::span<float>(firsts));
    const auto [lo, hi] = std::minmax_element(firsts.begin(), firsts.end());
    if (t.rank() == 0)
      std::printf(
          "%d ranks, 10 steps of DS-Sync g=2: params[0] in [%.4f, %.4f] (mean %.1f), "
          "%.1f ms/step, %.1f MB sent per rank\n",
          t.size(), *lo, *hi, 0.5 + (t.size() - 1) / 2.0, sync.stats().seconds * 1e3 / 10,
          sync.stats().bytes_sent / 1e6);
  } catch (const dssync::error& e) {
    std::fprintf(stderr, "rank %d: %s\n", t.rank(), e.what());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
}
