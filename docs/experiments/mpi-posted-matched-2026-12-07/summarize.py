#!/usr/bin/env python3
"""Medians over the four rounds of each binary's per-round ratios (our median
time over Open MPI's own call's median time in the same run): the chain
broadcast over MPI_Bcast and the ring all-gather over MPI_Allgather, at 1 MiB
and 16 MiB, n = 8, with the lowest and highest of the four rounds."""
import json
import os
import re
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))
ROWS = [("broadcast_pipeline", "mpi_bcast"), ("all_gather_ring", "mpi_allgather")]
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
                per_round.setdefault((ours, mib), []).append(med[(ours, mib)] / med[(theirs, mib)])
    cells = [f"{name} {mib} MiB {statistics.median(r):.2f} ({min(r):.2f}-{max(r):.2f})"
             for (name, mib), r in per_round.items()]
    print(version + ": " + ", ".join(cells))
