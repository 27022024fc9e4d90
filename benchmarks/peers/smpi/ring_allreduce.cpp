// The SMPI peer of bench_sim: the same ring all-reduce as dssync::RingReduce
// (reduce-scatter then all-gather, one MPI_Sendrecv of a 1/p block per step),
// written in plain MPI and run under SimGrid's smpirun, which simulates it.
// Prints rank 0's simulated time of one all-reduce (MPI_Wtime is virtual
// under SMPI). scripts/bench/sim builds and runs it.
//
//   smpirun -np P -platform ring.xml -hostfile hosts ./smpi_ring_allreduce BYTES

#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, p = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &p);
  const long bytes = argc > 1 ? std::atol(argv[1]) : 1 << 20;
  const long n = bytes / static_cast<long>(sizeof(float));
  const long block = n / p;  // BYTES must divide evenly, as in the closed form
  std::vector<float> data(static_cast<std::size_t>(n), 1.0f), in(static_cast<std::size_t>(block));
  const int right = (rank + 1) % p, left = (rank + p - 1) % p;
  auto at = [&](long c) { return data.data() + ((c % p + p) % p) * block; };

  MPI_Barrier(MPI_COMM_WORLD);
  const double start = MPI_Wtime();
  for (int s = 0; s + 1 < p; ++s) {  // reduce-scatter
    MPI_Sendrecv(at(rank - s), static_cast<int>(block), MPI_FLOAT, right, 1, in.data(), static_cast<int>(block),
                 MPI_FLOAT, left, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    float* acc = at(rank - s - 1);
    for (long i = 0; i < block; ++i) acc[i] += in[static_cast<std::size_t>(i)];
  }
  for (int s = 0; s + 1 < p; ++s)  // all-gather
    MPI_Sendrecv(at(rank + 1 - s), static_cast<int>(block), MPI_FLOAT, right, 2, at(rank - s),
                 static_cast<int>(block), MPI_FLOAT, left, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  const double took = MPI_Wtime() - start;
  if (rank == 0) std::printf("smpi_ring %d %ld %.9f\n", p, bytes, took);
  MPI_Finalize();
  return 0;
}
