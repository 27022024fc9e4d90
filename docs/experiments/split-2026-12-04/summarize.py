#!/usr/bin/env python3
"""The before/after figures of the split of tcp.hpp and sim.hpp, from the
records beside this script.

    summarize.py            both tables
"""
import glob
import json
import os
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))


def sim_ring(folder="sim-ring", title=""):
    times = {"before": [], "after": []}
    virtual = {"before": set(), "after": set()}
    for path in sorted(glob.glob(os.path.join(HERE, folder, "*.json"))):
        which = os.path.basename(path).split("-")[0]
        with open(path) as f:
            for b in json.load(f)["benchmarks"]:
                if b.get("run_type") != "iteration":
                    continue
                times[which].append(b["real_time"])
                virtual[which].add(repr(b["virtual_s"]))
    print(f"bench_sim BM_SimRingAllReduce, 1024 ranks, 1 MiB (wall ms per run){title}")
    for which in ("before", "after"):
        t = times[which]
        print(f"  {which:6} {len(t):2} runs  median {statistics.median(t):7.1f}  "
              f"min {min(t):7.1f}  max {max(t):7.1f}  virtual_s {sorted(virtual[which])}")
    ratio = statistics.median(times["after"]) / statistics.median(times["before"])
    print(f"  after / before (medians) {ratio:.3f}; virtual times the same bits: "
          f"{virtual['before'] == virtual['after']}")


def tcp_interleaved():
    paired = {"before": [], "after": []}
    ours = {"before": [], "after": []}
    for path in sorted(glob.glob(os.path.join(HERE, "tcp-interleaved", "*.txt"))):
        which = os.path.basename(path).split("-")[0]
        best = None
        with open(path) as f:
            for line in f:
                w = line.split()
                if line.startswith("# paired"):
                    paired[which] += [float(x) for x in w[3:]]
                elif w and w[0].startswith("dssync_"):
                    best = float(w[3]) if best is None else min(best, float(w[3]))
        ours[which].append(best)
    print("bench_tcp_interleaved, 8 processes, 16 MiB (Gloo's better time over ours, per trial)")
    for which in ("before", "after"):
        p = paired[which]
        print(f"  {which:6} {len(p):2} trials  paired median {statistics.median(p):.3f}  "
              f"lowest {min(p):.3f}  highest {max(p):.3f}  ours' best per run (us) "
              f"{', '.join(f'{x:.0f}' for x in ours[which])}")


if __name__ == "__main__":
    sim_ring()
    print()
    sim_ring("sim-ring-quiet", ", quiet re-run 2026-12-05")
    print()
    tcp_interleaved()
