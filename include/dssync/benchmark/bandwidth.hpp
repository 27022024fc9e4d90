#pragma once
// Bandwidths as nccl-tests reports a collective (its doc/PERFORMANCE.md), in
// 10^9 bytes/s:
//
//   algbw = bytes / time
//   busbw = algbw * factor, the factor by collective, so that busbw is
//           comparable across collectives and world sizes and reaches the
//           hardware's bandwidth:
//             all-reduce  2(n-1)/n
//             all-gather  (n-1)/n  (bytes: the whole gathered buffer, n blocks)
//             broadcast   1
//
// and the bytes a ring all-reduce sends per rank, 2(n-1)/n x bytes, the yardstick
// of a synchronizer's traffic. Standard library only: dssync/benchmark.hpp
// reports its counters with these, and so do dssync's own measuring programs,
// those built without Google Benchmark included.

namespace dssync::bench {

enum class Collective { all_reduce, all_gather, broadcast };

// 10^9 bytes/s for `bytes` in `seconds`.
inline double algbw(double bytes, double seconds) { return bytes / seconds / 1e9; }

// The bus bandwidth of `collective` over n ranks for an algorithm bandwidth
// (written out per collective, in one order, so that every program rounds the
// same way).
inline double busbw(Collective collective, double algbw_gbps, int n) {
  switch (collective) {
    case Collective::all_reduce: return algbw_gbps * 2.0 * (n - 1) / n;
    case Collective::all_gather: return algbw_gbps * (n - 1) / n;
    case Collective::broadcast: return algbw_gbps;
  }
  return algbw_gbps;
}

// The bytes each rank sends in a ring all-reduce of `bytes` over n ranks:
// 2(n-1)/n x bytes (0 for one rank).
inline double ring_all_reduce_bytes(int n, double bytes) { return 2.0 * (n - 1) / n * bytes; }

}  // namespace dssync::bench
