#!/usr/bin/env python3
"""The final table of scripts/bench/tcp, from everything its runs printed.

    tcp-table.py RUNS_FILE NP

RUNS_FILE holds the rounds ("## round <k> <program>" before each run's lines)
with rows "<label> <bytes> <R> <time_us> <algbw> <busbw>" (benchmarks/common/report.hpp)
and bench_tcp_interleaved's "# paired <bytes> <ratio> ..." comments; NP is the
number of processes (for busbw). Prints, per program family, the median over
the rounds of each label and size, its range and its ratio to the best Gloo
row at that size; then bench_tcp_interleaved's rows and paired ratios.
"""
import statistics
import sys


def main(argv):
    rows = {}    # (program, label, bytes) -> [(time_us, R), ...], one per round
    paired = {}  # bytes -> every trial's ratio of bench_tcp_interleaved, all rounds
    program = None
    for line in open(argv[1]):
        if line.startswith("## round "):
            program = line.split()[3]
            continue
        f = line.split()
        if line.startswith("# paired ") and len(f) > 3:
            paired.setdefault(int(f[2]), []).extend(float(x) for x in f[3:])
            continue
        if len(f) != 6 or line.startswith("#"):
            continue
        try:
            size, reps, t = int(f[1]), int(f[2]), float(f[3])
        except ValueError:
            continue
        rows.setdefault((program, f[0], size), []).append((t, reps))

    def order(key):
        _, label, size = key
        family = {"dssync": 0, "gloo": 1, "mpi": 2}.get(label.split("_")[0], 3)
        return (size, family, label)

    median = {k: statistics.median(t for t, _ in v) for k, v in rows.items()}
    n = int(argv[2])

    def table(keys):
        best_gloo = {}
        for key in keys:
            _, label, size = key
            if label.startswith("gloo_"):
                best_gloo[size] = min(median[key], best_gloo.get(size, median[key]))
        print("%-24s %10s %5s %7s %12s %12s %12s %8s %8s %8s" %
              ("label", "bytes", "R", "rounds", "time_us", "min_us", "max_us", "algbw", "busbw", "vs_gloo"))
        last = None
        for key in sorted(keys, key=order):
            _, label, size = key
            if last is not None and size != last:
                print()
            last = size
            times = [t for t, _ in rows[key]]
            m = median[key]
            algbw = size / (m * 1e-6) / 1e9
            busbw = algbw * 2 * (n - 1) / n
            ratio = "%.2f" % (m / best_gloo[size]) if size in best_gloo else "-"
            print("%-24s %10d %5d %7d %12.1f %12.1f %12.1f %8.3f %8.3f %8s" %
                  (label, size, rows[key][0][1], len(times), m, min(times), max(times), algbw, busbw, ratio))

    print("# time_us: median over the rounds of each run's median trial; min/max over the rounds")
    print("# GB/s from the median; busbw = algbw * 2(n-1)/n; vs_gloo = time / best Gloo time at that size")
    print("# each program in processes of its own:")
    table([k for k in rows if k[0] != "interleaved"])
    inter = [k for k in rows if k[0] == "interleaved"]
    if inter:
        print()
        print("# bench_tcp_interleaved: dssync and Gloo in the same processes, trials interleaved:")
        table(inter)
        for size in sorted(paired):
            r = sorted(paired[size])
            print("# %d bytes, Gloo's better time over ours per trial, %d trials: median %.3f, "
                  "quartiles %.3f and %.3f, lowest %.3f" %
                  (size, len(r), statistics.median(r), r[len(r) // 4], r[(3 * len(r)) // 4], r[0]))


if __name__ == "__main__":
    main(sys.argv)
