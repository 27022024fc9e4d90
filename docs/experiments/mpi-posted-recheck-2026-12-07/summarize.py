#!/usr/bin/env python3
"""The chain broadcast and the ring all-gather at 16 MiB, n = 8, with
segments in flight and blocking, over Open MPI's own call (the slowest
rank's medians): first the rerun of the whole 16 MiB table
(mpi_n8_16mib.json), then ab.sh's rounds, the median over the rounds of each
round's ratio with the lowest and highest round."""
import json
import os
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = {"broadcast_pipeline": "mpi_bcast", "broadcast_pipeline_blocking": "mpi_bcast",
        "all_gather_ring": "mpi_allgather", "all_gather_ring_blocking": "mpi_allgather"}


def medians(name):
    with open(os.path.join(HERE, name)) as f:
        d = json.load(f)
    return {b["run_name"].split("/")[0]: b["max_rank_ms"] for b in d["benchmarks"]
            if b.get("aggregate_name") == "median"}


m = medians("mpi_n8_16mib.json")
print("rerun: " + ", ".join(f"{k} {m[k] / m[p]:.2f}" for k, p in PEER.items()))
for v, what in (("328", "328ec21"), ("head", "ce3c5b1")):
    per = {k: [] for k in PEER}
    for r in (1, 2, 3):
        m = medians(f"{v}_{r}.json")
        for k, p in PEER.items():
            per[k].append(m[k] / m[p])
    print(f"{what}: " + ", ".join(f"{k} {statistics.median(x):.2f} ({min(x):.2f}-{max(x):.2f})"
                                  for k, x in per.items()))
