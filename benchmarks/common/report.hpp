#pragma once
// One report for the measuring programs, as nccl-tests reports a collective:
// the time of one call, the algorithm bandwidth and the bus bandwidth, in
// 10^9 bytes/s. The bandwidths' definitions are the installed
// dssync/benchmark/bandwidth.hpp's (dssync::bench::algbw, busbw), which the
// Google Benchmark counters of dssync/benchmark.hpp use too; here they are
// also bench::algbw, bench::busbw.
//
// Row prints the line scripts/bench/tcp reads:
//   <label> <bytes> <R> <time per call, us> <algbw GB/s> <busbw GB/s>
// and print_modes the out-of-place and in-place columns of an nccl-tests table
// (bench_mpi_allreduce_peer). The Google Benchmark suites take their algbw
// and busbw counters from the same functions. Standard library and
// bandwidth.hpp only (itself standard library only): the peers built without
// dssync's transports (Gloo's, MPI's) include it too.

#include <cstddef>
#include <cstdio>
#include <string_view>

#include "dssync/benchmark/bandwidth.hpp"

namespace bench {

using dssync::bench::algbw;
using dssync::bench::busbw;
using dssync::bench::Collective;

// One measurement: `reps` calls per trial, `seconds` the time of one call (the
// median trial's time over reps).
struct Row {
  std::string_view label;
  std::size_t bytes;
  int reps;
  double seconds;

  double time_us() const { return seconds * 1e6; }
  double algbw() const { return bench::algbw(static_cast<double>(bytes), seconds); }
  double busbw(Collective collective, int n) const { return bench::busbw(collective, algbw(), n); }

  // "<label> <bytes> <R> <us> <algbw> <busbw>\n" on `out`, flushed (under the
  // launcher, rank 0's lines appear as they are measured).
  void print(Collective collective, int n, std::FILE* out = stdout) const {
    std::fprintf(out, "%.*s %zu %d %.2f %.3f %.3f\n", static_cast<int>(label.size()), label.data(), bytes,
                 reps, time_us(), algbw(), busbw(collective, n));
    std::fflush(out);
  }
};

// nccl-tests' table of one collective in both modes: the header lines, then
// per size " <bytes> <R>   <us> <algbw> <busbw>   <us> <algbw> <busbw>".
inline void print_modes_header(std::FILE* out = stdout) {
  std::fprintf(out, "#%11s %6s   %12s %9s %9s   %12s %9s %9s\n", "", "", "out-of-place", "", "", "in-place",
               "", "");
  std::fprintf(out, "#%11s %6s   %12s %9s %9s   %12s %9s %9s\n", "bytes", "R", "time_us", "algbw", "busbw",
               "time_us", "algbw", "busbw");
}

// out_of_place and in_place: the same bytes and reps, their own times.
inline void print_modes(const Row& out_of_place, const Row& in_place, Collective collective, int n,
                        std::FILE* out = stdout) {
  std::fprintf(out, " %11zu %6d   %12.2f %9.3f %9.3f   %12.2f %9.3f %9.3f\n", out_of_place.bytes,
               out_of_place.reps, out_of_place.time_us(), out_of_place.algbw(), out_of_place.busbw(collective, n),
               in_place.time_us(), in_place.algbw(), in_place.busbw(collective, n));
  std::fflush(out);
}

}  // namespace bench
