// How much CPU a rank burns while it waits for a peer inside MPITransport.
//
//   mpirun -np 2 bench_mpi_wait_cpu [compute_seconds [message_bytes]]   (default 3, 1024)
//
// Rank 1 computes (a busy loop) for compute_seconds, then sends one message of
// message_bytes to rank 0; rank 0 sits in recv meanwhile and prints its own CPU time
// over the wait (CLOCK_PROCESS_CPUTIME_ID: all of its threads, Open MPI's
// progress thread included) as a share of the wall time. Ranks above 1 only
// take part in making the transport. A waiting rank that spins shows ~100 %;
// one that sleeps shows a few percent at most.
//
// On an oversubscribed machine the spinning rank also slows the one computing;
// run with as many cores as ranks to read the percentage alone.

#include "dssync/mpi.hpp"  // first: it sets up <mpi.h>

#include <boost/mpi/environment.hpp>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <span>
#include <vector>

namespace {

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Keeps a core busy for `seconds` of wall time.
double compute(double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  volatile double acc = 0;
  while (std::chrono::steady_clock::now() < end)
    for (int i = 0; i < 10000; ++i) acc = acc + 1e-9 * i;
  return acc;
}

}  // namespace

int main(int argc, char** argv) {
  boost::mpi::environment env(argc, argv);
  const double compute_seconds = argc > 1 ? std::atof(argv[1]) : 3.0;
  const auto message_bytes = static_cast<std::size_t>(argc > 2 ? std::atof(argv[2]) : 1024);
  dssync::MPITransport t;
  if (t.size() < 2) {
    std::fprintf(stderr, "bench_mpi_wait_cpu: needs at least 2 ranks\n");
    return 1;
  }
  std::vector<float> message(message_bytes / sizeof(float), 1.0f);
  if (t.rank() == 1) {
    compute(compute_seconds);
    t.send(0, std::span<const float>(message), 0);
  } else if (t.rank() == 0) {
    const double cpu0 = cpu_seconds();
    const auto wall0 = std::chrono::steady_clock::now();
    t.recv(1, std::span<float>(message), 0);
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
    const double cpu = cpu_seconds() - cpu0;
    std::printf("rank 0 waited %.3f s in recv of %zu bytes, CPU %.3f s: %.1f %% of the wall time\n",
                wall, message.size() * sizeof(float), cpu, 100.0 * cpu / wall);
  }
  return 0;
}
