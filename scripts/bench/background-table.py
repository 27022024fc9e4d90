#!/usr/bin/env python3
"""The tables of scripts/bench/background from its records: per transport the
median over rounds of each method's median, the ratios beside/alone and
both/(2 alone); MPI single against multiple thread level; and the foreground
rows before and after channels. Usage: background-table.py RECORD_DIR."""
import csv
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def main(folder: Path) -> None:
    by = defaultdict(list)
    with open(folder / "background.csv") as f:
        for row in csv.DictReader(f):
            by[(row["transport"], row["method"])].append(float(row["median_ms"]))
    rounds = max((len(v) for v in by.values()), default=0)
    print(f"Foreground all-reduce, 4 ranks, 4 MiB: median over {rounds} rounds (ms)")
    print("| transport | alone | beside a background all-reduce | both until done | beside / alone | both / (2 x alone) |")
    print("|---|---|---|---|---|---|")
    for tr in ("inproc", "mpi", "tcp"):
        if (tr, "alone") not in by:
            continue
        a = statistics.median(by[(tr, "alone")])
        b = statistics.median(by[(tr, "beside")])
        c = statistics.median(by[(tr, "both")])
        print(f"| {tr} | {a:.2f} | {b:.2f} | {c:.2f} | {b / a:.2f} | {c / (2 * a):.2f} |")
    if ("mpi_single", "alone") in by:
        s = statistics.median(by[("mpi_single", "alone")])
        m = statistics.median(by[("mpi", "alone")])
        print(f"\nMPI alone: single thread level {s:.2f} ms, MPI_THREAD_MULTIPLE {m:.2f} ms "
              f"(multiple / single {m / s:.2f}; per round: "
              + ", ".join(f"{x / y:.2f}" for x, y in zip(by[("mpi", "alone")], by[("mpi_single", "alone")]))
              + ")")
    cost = folder / "unused_cost.csv"
    if not cost.exists():
        return
    ms = defaultdict(list)
    with open(cost) as f:
        for row in csv.DictReader(f):
            if row["ms"]:
                ms[(row["program"], row["row"], row["build"])].append(float(row["ms"]))
    keys = sorted({(p, r) for p, r, _ in ms})
    if not keys:
        return
    print("\nChannels unused: the foreground rows before and after (median over rounds, ms)")
    print("| program | row | before | after | after / before | per round |")
    print("|---|---|---|---|---|---|")
    for p, r in keys:
        before, after = ms.get((p, r, "before"), []), ms.get((p, r, "after"), [])
        if not before or not after:
            continue
        b, a = statistics.median(before), statistics.median(after)
        per = ", ".join(f"{y / x:.2f}" for x, y in zip(before, after))
        print(f"| {p} | {r} | {b:.3f} | {a:.3f} | {a / b:.2f} | {per} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
