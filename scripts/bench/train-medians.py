#!/usr/bin/env python3
"""The closing medians of scripts/bench/train: seconds per epoch of the
training example (its per-round CSVs) and of PyTorch (its lines in
rounds.txt), median, min and max over the rounds.

    train-medians.py OUT_DIR ROUNDS

OUT_DIR holds round1.csv .. round<ROUNDS>.csv and rounds.txt.
"""
import csv
import re
import statistics
import sys


def main(argv):
    out, rounds = argv[1], int(argv[2])
    ours = {}
    for r in range(1, rounds + 1):
        for row in csv.DictReader(open(f"{out}/round{r}.csv")):
            if row["epoch"] != "0":
                ours.setdefault(row["label"], []).append(float(row["seconds"]))
    for label, v in ours.items():
        print(f"dssync_train {label:22s} {statistics.median(v):6.2f} s per epoch (min {min(v):.2f}, max {max(v):.2f})")
    torch = {}
    for line in open(f"{out}/rounds.txt"):
        m = re.match(r"pytorch (\S+) cpu, (\d+) threads, batch (\d+): ([\d.]+) s per epoch", line)
        if m:
            torch.setdefault((m.group(1), m.group(3)), []).append(float(m.group(4)))
    for (version, batch), v in torch.items():
        print(f"pytorch {version} batch {batch:>3}            {statistics.median(v):6.2f} s per epoch (min {min(v):.2f}, max {max(v):.2f})")


if __name__ == "__main__":
    main(sys.argv)
