// What a background all-reduce costs the trainer's foreground one, per
// transport (bench_background_inproc, bench_background_mpi under mpirun,
// bench_background_tcp under dssync-run). Each trial runs, in an order drawn
// afresh per trial (the same on every rank):
//
//   alone    the foreground ring all-reduce of B bytes on channel 0, reps times
//   beside   the same while the rank's Background runs reps ring all-reduces
//            of B bytes on channel 1 (time: until the foreground is done)
//   both     the foreground and the background reps times each, until both
//            are done: against 2 x alone, what overlapping them saves
//
// Times are the slowest rank's per call; a row is the median over trials.
// Output: one CSV row per method, "transport,ranks,bytes,method,median_ms,
// trials", and the ratios beside/alone and both/(2 alone).
//
//   bench_background_inproc [--ranks 4] [--bytes 4194304] [--trials 15] [--reps 4]
//   mpirun -np 4 bench_background_mpi [--thread-level multiple|single] ...
//     (single: only "alone", with MPI initialized without threads, so that
//     two runs give the cost of MPI_THREAD_MULTIPLE itself)
//   dssync-run -n 4 bench_background_tcp ...

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "dssync/dssync.hpp"
#if defined(DSSYNC_BENCH_MPI)
#include <boost/mpi/environment.hpp>

#include "dssync/mpi.hpp"
#elif defined(DSSYNC_BENCH_TCP)
#include "dssync/tcp.hpp"
#endif

namespace {

struct Args {
  int ranks = 4;
  std::size_t bytes = std::size_t{4} << 20;
  int trials = 15;
  int reps = 4;
  bool threads = true;  // MPI: initialize with MPI_THREAD_MULTIPLE
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--ranks") a.ranks = std::atoi(v.c_str());
    else if (k == "--bytes") a.bytes = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "--trials") a.trials = std::atoi(v.c_str());
    else if (k == "--reps") a.reps = std::atoi(v.c_str());
    else if (k == "--thread-level") a.threads = v == "multiple";
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      std::exit(2);
    }
  }
  return a;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

template <class Tr>
double slowest(Tr& t, const std::vector<int>& world, double v) {
  double x[1] = {v};
  dssync::RecursiveDoublingReduce().all_reduce(t, dssync::Group(world), std::span<double>(x),
                                               dssync::Max{}, dssync::make_tag(0, 126));
  return x[0];
}

// Runs the trials on this rank; rank 0 prints the rows.
template <class Tr>
void measure(Tr& t, const char* transport, const Args& a, bool with_background) {
  std::vector<int> world(static_cast<std::size_t>(t.size()));
  std::iota(world.begin(), world.end(), 0);
  const std::size_t n = a.bytes / sizeof(float);
  std::vector<float> fg(n, 1.0f), bg_data(n, 2.0f);
  dssync::RingReduce ring, bg_ring;
  auto foreground = [&] {
    for (int r = 0; r < a.reps; ++r)
      ring.all_reduce(t, dssync::Group(world), std::span<float>(fg), dssync::Average{}, 1);
  };
  std::vector<std::string> names{"alone"};
  if (with_background) names.insert(names.end(), {"beside", "both"});
  std::vector<std::vector<double>> seconds(names.size());
  std::mt19937 order_rng(7);
  std::vector<std::size_t> order(names.size());
  // The background context lives across the trials, as a synchronizer's does.
  std::optional<dssync::Background<Tr>> bg;
  if (with_background) bg.emplace(t);
  auto background_job = [&](Tr& ch) {
    for (int r = 0; r < a.reps; ++r)
      bg_ring.all_reduce(ch, dssync::Group(world), std::span<float>(bg_data), dssync::Average{}, 1);
  };
  for (int trial = -1; trial < a.trials; ++trial) {  // trial -1 warms up, untimed
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::shuffle(order.begin(), order.end(), order_rng);
    for (const std::size_t m : order) {
      slowest(t, world, 0);  // barrier
      const auto start = std::chrono::steady_clock::now();
      double took = 0;
      if (names[m] == "alone") {
        foreground();
        took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      } else {
        bg->start(background_job);
        foreground();
        took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        bg->get();
        if (names[m] == "both")
          took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      }
      const double worst = slowest(t, world, took);
      if (trial >= 0) seconds[m].push_back(worst / a.reps);
    }
  }
  if (t.rank() != 0) return;
  std::printf("transport,ranks,bytes,method,median_ms,trials\n");
  std::vector<double> med;
  for (std::size_t m = 0; m < names.size(); ++m) {
    med.push_back(median(seconds[m]));
    std::printf("%s,%d,%zu,%s,%.4f,%d\n", transport, t.size(), a.bytes, names[m].c_str(),
                med.back() * 1e3, a.trials);
  }
  if (with_background)
    std::printf("# %s: beside/alone %.3f, both/(2 alone) %.3f\n", transport, med[1] / med[0],
                med[2] / (2 * med[0]));
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
#if defined(DSSYNC_BENCH_MPI)
  boost::mpi::environment env(argc, argv, a.threads ? boost::mpi::threading::multiple
                                                    : boost::mpi::threading::single);
  dssync::MPITransport t({.channels = a.threads ? 2 : 1});
  measure(t, a.threads ? "mpi" : "mpi_single", a, a.threads);
#elif defined(DSSYNC_BENCH_TCP)
  dssync::TcpTransport t;
  measure(t, "tcp", a, true);
#else
  dssync::InProcWorld(a.ranks).run(
      [&](dssync::InProcTransport& t) { measure(t, "inproc", a, true); });
#endif
  return 0;
}
