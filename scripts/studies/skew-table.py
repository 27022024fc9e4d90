#!/usr/bin/env python3
"""The table of EXPERIMENTS.md's skewed-data section, from the runs' CSVs
(scripts/studies/skew): per synchronizer the final test accuracy of the
averaged model on iid and skew:1 data with each normalization (the mean over
the seeds on disk, ± their sample standard deviation when there are several),
and the points skew:1 costs (of the means).

    scripts/studies/skew-table.py [OUT_DIR]
"""
import csv
import glob
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "../../docs/experiments/skew-2026-12-05")
ROWS = [("bsp", "BSP"), ("dssync", "DS-Sync g=2, random"), ("localsgd", "local SGD H=8"),
        ("gaia1", "Gaia 1 %"), ("skewscout", "SkewScout (Gaia 1 %, target 5 %)")]
PARTITIONS = [("iid", "iid"), ("skew1", "skew:1")]
NORMS = [("none", "none"), ("group32", "group:32"), ("batch", "batch")]


def final_accuracy(row, partition, norm):
    accs = []
    for p in sorted(glob.glob(os.path.join(OUT, "runs", f"{row}_{partition}_{norm}_seed*.csv"))):
        with open(p) as f:
            accs.append(float(list(csv.DictReader(f))[-1]["test_acc_avg"]))
    if not accs:
        return None, 0, None
    return statistics.fmean(accs), len(accs), statistics.stdev(accs) if len(accs) > 1 else None


def main():
    head = " | ".join(f"{pl}, {nl}" for p, pl in PARTITIONS for n, nl in NORMS)
    print(f"| synchronizer | {head} | skew:1 costs, points (none / group / batch) | seeds |")
    print("|---|" + "---:|" * (len(PARTITIONS) * len(NORMS) + 2))
    for row, label in ROWS:
        acc = {(p, n): final_accuracy(row, p, n) for p, _ in PARTITIONS for n, _ in NORMS}
        cells = ["" if acc[(p, n)][0] is None else f"{acc[(p, n)][0]:.4f}" +
                 ("" if acc[(p, n)][2] is None else f" ± {acc[(p, n)][2]:.4f}")
                 for p, _ in PARTITIONS for n, _ in NORMS]
        costs = [f"{100 * (acc[('iid', n)][0] - acc[('skew1', n)][0]):.1f}"
                 if acc[("iid", n)][0] is not None and acc[("skew1", n)][0] is not None else ""
                 for n, _ in NORMS]
        seeds = min(c for _, c, _ in acc.values())
        print(f"| {label} | " + " | ".join(cells) + " | " + " / ".join(costs) + f" | {seeds} |")


if __name__ == "__main__":
    main()
