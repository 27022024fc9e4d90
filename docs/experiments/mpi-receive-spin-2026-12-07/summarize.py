#!/usr/bin/env python3
"""Medians over the four rounds of each binary's per-round ratios (our median
time over Open MPI's own call's median time in the same run): the tree
broadcast over MPI_Bcast and the ring all-reduce over MPI_Allreduce, at 1 MiB
and 16 MiB, n = 8, with the lowest and highest round; then rank 0's CPU share
while it waited in a 128 MiB recv (wait_cpu.txt), median and range.

    summarize.py [FOLDER]     (default: this folder; spin-alone/ holds the first version's runs)
"""
import json
import os
import re
import statistics
import sys

HERE = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
ROWS = [("broadcast_tree", "mpi_bcast"), ("broadcast_pipeline", "mpi_bcast"), ("ring", "mpi_allreduce")]
for version in ("old", "new"):
    per_round = {}
    for rnd in (1, 2, 3, 4):
        with open(os.path.join(HERE, f"mpib_{version}_{rnd}.json")) as f:
            d = json.load(f)
        med = {}
        for b in d["benchmarks"]:
            if b.get("aggregate_name") != "median":
                continue
            m = re.match(r"([a-z_]+)/n:8/bytes:(\d+)/", b["run_name"])
            med[(m.group(1), int(m.group(2)) >> 20)] = b["real_time"]
        for ours, theirs in ROWS:
            for mib in (1, 16):
                if (ours, mib) in med:  # the first runs had no chain rows
                    per_round.setdefault((ours, mib), []).append(med[(ours, mib)] / med[(theirs, mib)])
    cells = [f"{name} {mib} MiB {statistics.median(r):.2f} ({min(r):.2f}-{max(r):.2f})"
             for (name, mib), r in per_round.items()]
    with open(os.path.join(HERE, "wait_cpu.txt")) as f:
        lines = [line for line in f if line.startswith(version + " ")]
    shares = [float(re.search(r"([\d.]+) % of the wall time", x).group(1)) for x in lines]
    waits = [float(re.search(r"waited ([\d.]+) s", x).group(1)) for x in lines]
    cells.append(f"CPU while waiting for 128 MiB {statistics.median(shares):.1f} % "
                 f"({min(shares):.1f}-{max(shares):.1f}), the wait {statistics.median(waits):.2f} s "
                 f"({min(waits):.2f}-{max(waits):.2f})")
    print(version + ": " + ", ".join(cells))
