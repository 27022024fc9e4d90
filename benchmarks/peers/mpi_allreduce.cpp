// The peer the collectives are compared against: the MPI library's own
// MPI_Allreduce (MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD), timed the way
// nccl-tests times a collective. A measuring tool, not a test; plain MPI C API.
//
//   mpirun -np N ./bench_mpi_allreduce_peer [trials [most]]
//
// For each size: one checked all-reduce, then for each mode (out of place, in
// place) two warm-up calls and `trials` trials of R calls (about 256 MiB of
// buffer, between 5 and `most` calls, 1000 unless given; scripts/bench/tcp
// gives 50, as its other programs take), each trial between
// a barrier and MPI_Wtime on every rank; a trial's time is the maximum over the
// ranks. Rank 0 prints one line per size with the median trial's time per
// call, algbw = bytes / time and busbw = algbw * 2(n-1)/n, in 10^9 bytes/s.

#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "common/report.hpp"

namespace {

constexpr std::size_t sizes[] = {4u << 10, 256u << 10, 1u << 20, 16u << 20, 64u << 20};

// Calls per trial: about 256 MiB of buffer per trial, between 5 and `most`.
int reps_for(std::size_t bytes, int most) {
  return static_cast<int>(
      std::clamp<std::size_t>((256u << 20) / bytes, 5, static_cast<std::size_t>(most)));
}

// The median trial's time per call, in one mode (out of place or in place).
bench::Row measure(bool in_place, std::vector<float>& send, std::vector<float>& recv, int reps,
                   int trials) {
  const int count = static_cast<int>(recv.size());
  // Zeros: an in-place sum repeated many times stays finite.
  std::fill(send.begin(), send.end(), 0.0f);
  std::fill(recv.begin(), recv.end(), 0.0f);
  auto call = [&] {
    MPI_Allreduce(in_place ? MPI_IN_PLACE : send.data(), recv.data(), count, MPI_FLOAT, MPI_SUM,
                  MPI_COMM_WORLD);
  };
  call();
  call();
  std::vector<double> times;
  for (int trial = 0; trial < trials; ++trial) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = MPI_Wtime();
    for (int i = 0; i < reps; ++i) call();
    const double local = MPI_Wtime() - t0;
    double slowest = 0;
    MPI_Allreduce(&local, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    times.push_back(slowest);
  }
  std::sort(times.begin(), times.end());
  const double per_op = times[times.size() / 2] / reps;
  return {in_place ? "in_place" : "out_of_place", recv.size() * sizeof(float), reps, per_op};
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  int n = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  const int trials = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
  const int most = argc > 2 ? std::max(5, std::atoi(argv[2])) : 1000;

  if (rank == 0) {
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int length = 0;
    MPI_Get_library_version(version, &length);
    std::printf("# %.*s\n", static_cast<int>(std::find(version, version + length, '\n') - version),
                version);
    std::printf(
        "# MPI_Allreduce MPI_FLOAT MPI_SUM over %d ranks; median of %d trials, each the "
        "slowest rank's time for R calls\n",
        n, trials);
    std::printf("# GB/s = 10^9 bytes/s; busbw = algbw * 2(n-1)/n\n");
    bench::print_modes_header();
  }

  for (const std::size_t bytes : sizes) {
    const std::size_t count = bytes / sizeof(float);
    std::vector<float> send(count, static_cast<float>(rank + 1));
    std::vector<float> recv(count, 0.0f);
    MPI_Allreduce(send.data(), recv.data(), static_cast<int>(count), MPI_FLOAT, MPI_SUM,
                  MPI_COMM_WORLD);
    const float want = static_cast<float>(n * (n + 1) / 2);
    int ok = std::all_of(recv.begin(), recv.end(), [want](float x) { return x == want; }) ? 1 : 0;
    int all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
    if (!all_ok) {
      if (rank == 0) std::fprintf(stderr, "MPI_Allreduce gave a wrong sum at %zu bytes\n", bytes);
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    const int reps = reps_for(bytes, most);
    const bench::Row out = measure(false, send, recv, reps, trials);
    const bench::Row in = measure(true, send, recv, reps, trials);
    if (rank == 0) bench::print_modes(out, in, bench::Collective::all_reduce, n);
  }
  MPI_Finalize();
  return 0;
}
