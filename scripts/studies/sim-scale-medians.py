"""The median wall microseconds per simulated message of each size, for one
network and synchronizer of study 9's record (scripts/studies/sim-scale-plot).

    sim-scale-medians.py SCALE_CSV NETWORK SYNCHRONIZER

prints "ranks microseconds" lines, the ranks in order."""
import csv
import statistics
import sys


def main(record, network, synchronizer):
    runs = {}
    for r in csv.DictReader(open(record)):
        if r["network"] == network and r["synchronizer"] == synchronizer:
            runs.setdefault(int(r["ranks"]), []).append(float(r["sim_wall_seconds"]) / float(r["messages"]) * 1e6)
    for n in sorted(runs):
        print(n, statistics.median(runs[n]))


if __name__ == "__main__":
    main(*sys.argv[1:4])
