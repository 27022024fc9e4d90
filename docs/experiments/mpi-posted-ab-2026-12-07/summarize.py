#!/usr/bin/env python3
"""ab.sh's rounds: for each build, the median over the rounds of each row's
time over Open MPI's own call (the slowest rank's medians of one run), and of
each collective's time in flight over its blocking exchange in the same run
(whose code no build changed: the control), with the lowest and highest
round beside, and in how many rounds the build's in-flight ratio was below
328ec21's of the same round."""
import glob
import json
import os
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = {"broadcast_pipeline": "mpi_bcast", "broadcast_pipeline_blocking": "mpi_bcast",
        "all_gather_ring": "mpi_allgather", "all_gather_ring_blocking": "mpi_allgather"}
PAIRS = {"broadcast_pipeline": "broadcast_pipeline_blocking",
         "all_gather_ring": "all_gather_ring_blocking"}
BUILDS = (("328", "328ec21 (MPI_Irecv)"), ("head", "59b97ec (matched)"),
          ("rematch", "59b97ec + match after test"))


def medians(path):
    with open(path) as f:
        d = json.load(f)
    return {b["run_name"].split("/")[0]: b["max_rank_ms"] for b in d["benchmarks"]
            if b.get("aggregate_name") == "median"}


def rounds(v):
    """The runs of build v in round order, up to the first unfinished one."""
    out = []
    for r in range(1, len(glob.glob(os.path.join(HERE, f"{v}_*.json"))) + 1):
        try:
            out.append(medians(os.path.join(HERE, f"{v}_{r}.json")))
        except (ValueError, KeyError):
            break
    return out


def show(x):
    return f"{statistics.median(x):.2f} ({min(x):.2f}-{max(x):.2f})"


runs = {v: rounds(v) for v, _ in BUILDS}
n = min(len(r) for r in runs.values())
print(f"{n} rounds of each build, 5 repetitions a run")
for v, what in BUILDS:
    rs = runs[v][:n]
    print(what)
    print("  over Open MPI: " + ", ".join(
        f"{k} {show([m[k] / m[p] for m in rs])}" for k, p in PEER.items()))
    parts = []
    for k, b in PAIRS.items():
        mine = [m[k] / m[b] for m in rs]
        base = [m[k] / m[b] for m in runs["328"][:n]]
        below = sum(x < y for x, y in zip(mine, base))
        parts.append(f"{k} / blocking {show(mine)}"
                     + ("" if v == "328" else f", below 328ec21's in {below} of {n}"))
    print("  in flight over blocking: " + "; ".join(parts))
