// The SMPI peer of bench_sim: the same ring all-reduce as dssync::RingReduce
// (reduce-scatter then all-gather, one MPI_Sendrecv of a 1/p block per step),
// written in plain MPI and run under SimGrid's smpirun, which simulates it.
// Prints rank 0's simulated time of one all-reduce (MPI_Wtime is virtual
// under SMPI). scripts/studies/sim-vs-smpi and scripts/bench/sim build and
// run it.
//
// With "shared" after BYTES the buffers come from SMPI_SHARED_MALLOC: every
// rank's buffer is the same physical memory and SMPI skips the copy of a
// message between shared buffers, so the run simulates the ring's timing
// without moving the megabytes (SMPI's counterpart of dssync_simulate's
// --real-bytes below --model-bytes). The values are then meaningless.
//
//   smpirun -np P -platform ring.xml -hostfile hosts ./smpi_ring_allreduce BYTES [shared]

#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, p = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &p);
  const long bytes = argc > 1 ? std::atol(argv[1]) : 1 << 20;
  const long n = bytes / static_cast<long>(sizeof(float));
  const long block = n / p;  // BYTES must divide evenly, as in the closed form
  const bool shared = argc > 2 && std::strcmp(argv[2], "shared") == 0;
  // A buffer of `count` floats: shared, or this rank's own (kept in `own`).
  std::vector<std::vector<float>> own;
  auto buffer = [&](long count) {
    if (shared)
      return static_cast<float*>(
          SMPI_SHARED_MALLOC(static_cast<std::size_t>(count) * sizeof(float)));
    own.emplace_back(static_cast<std::size_t>(count));
    return own.back().data();
  };
  float* const data = buffer(n);
  float* const in = buffer(block);
  std::fill_n(data, n, 1.0f);
  const int right = (rank + 1) % p, left = (rank + p - 1) % p;
  auto at = [&](long c) { return data + ((c % p + p) % p) * block; };

  MPI_Barrier(MPI_COMM_WORLD);
  const double start = MPI_Wtime();
  for (int s = 0; s + 1 < p; ++s) {  // reduce-scatter
    MPI_Sendrecv(at(rank - s), static_cast<int>(block), MPI_FLOAT, right, 1, in,
                 static_cast<int>(block), MPI_FLOAT, left, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    float* acc = at(rank - s - 1);
    for (long i = 0; i < block; ++i) acc[i] += in[i];
  }
  for (int s = 0; s + 1 < p; ++s)  // all-gather
    MPI_Sendrecv(at(rank + 1 - s), static_cast<int>(block), MPI_FLOAT, right, 2, at(rank - s),
                 static_cast<int>(block), MPI_FLOAT, left, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  const double took = MPI_Wtime() - start;
  if (rank == 0) std::printf("smpi_ring %d %ld %.9f\n", p, bytes, took);
  if (shared) {
    SMPI_SHARED_FREE(in);
    SMPI_SHARED_FREE(data);
  }
  MPI_Finalize();
  return 0;
}
