// DS-Sync under mpirun: the hello program with MPITransport. Every process is
// one rank; the loop is the same as with the in-process world.
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

#include <boost/mpi/collectives.hpp>
#include <boost/mpi/environment.hpp>
#include <chrono>
#include <cstdio>
#include <vector>

int main(int argc, char** argv) {
  boost::mpi::environment env(argc, argv);
  // MPI_COMM_WORLD; any operation that waits longer than 2 minutes (the
  // default) fails. Zero would wait forever.
  dssync::MPITransport t({.timeout = std::chrono::minutes(2)});
  try {
    std::vector<float> params(1 << 20, float(t.rank()));
    dssync::DSSync<dssync::MPITransport, dssync::RandomShuffle, dssync::RingReduce> sync(
        t, {.group_size = 2, .seed = 42});

    for (int it = 0; it < 10; ++it) {
      // ... the local optimizer step on params ...
      sync.step(params);
    }

    // How far apart the ranks still are: the spread of params[0].
    const float lo =
        boost::mpi::all_reduce(t.communicator(), params[0], boost::mpi::minimum<float>());
    const float hi =
        boost::mpi::all_reduce(t.communicator(), params[0], boost::mpi::maximum<float>());
    if (t.rank() == 0)
      std::printf("%d ranks, 10 steps of DS-Sync g=2: params[0] in [%.4f, %.4f] (mean %.1f), "
                  "%.1f ms/step, %.1f MB sent per rank\n",
                  t.size(), lo, hi, (t.size() - 1) / 2.0, sync.stats().seconds * 1e3 / 10,
                  sync.stats().bytes_sent / 1e6);
  } catch (const dssync::error& e) {
    std::fprintf(stderr, "rank %d: %s\n", t.rank(), e.what());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
}
