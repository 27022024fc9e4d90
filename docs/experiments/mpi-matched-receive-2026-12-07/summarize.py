#!/usr/bin/env python3
"""Medians over the four rounds of each binary's per-round ratios (our median
time over MPI_Allreduce's median time in the same run): ring and
halving-doubling at 64 KiB and 1 MiB, n = 8."""
import json
import os
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))
ROWS = [(name, size) for size in (65536, 1048576) for name in ("ring", "halving_doubling")]
for version in ("old", "new"):
    per_round = []
    for rnd in (1, 2, 3, 4):
        with open(os.path.join(HERE, f"mpib_{version}_{rnd}.json")) as f:
            d = json.load(f)
        med = {b["run_name"]: b["real_time"] for b in d["benchmarks"]
               if b.get("aggregate_name") == "median"}
        per_round.append([med[f"{n}/n:8/bytes:{s}/real_time"] /
                          med[f"mpi_allreduce/n:8/bytes:{s}/real_time"] for n, s in ROWS])
    cells = [f"{n} {s // 1024} KiB {statistics.median(c):.2f}" for (n, s), c in zip(ROWS, zip(*per_round))]
    print(version + ": " + ", ".join(cells))
