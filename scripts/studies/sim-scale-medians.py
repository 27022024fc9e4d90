"""The median wall microseconds per simulated message of each size, for one
network and synchronizer of study 9's record (scripts/studies/sim-scale-plot),
as SIMULATION.md's tables compute them (scripts/figures/scale.py).

    sim-scale-medians.py SCALE_CSV NETWORK SYNCHRONIZER

prints "ranks microseconds" lines, the ranks in order."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from figures.scale import grouped, per_message_us  # noqa: E402


def main(record, network, synchronizer):
    runs = grouped(network, os.path.abspath(record))
    for n in sorted(n for sync, n in runs if sync == synchronizer):
        print(n, per_message_us(runs[(synchronizer, n)]))


if __name__ == "__main__":
    main(*sys.argv[1:4])
