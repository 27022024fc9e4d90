#!/usr/bin/env python3
"""The plot of scripts/studies/bed-training: test accuracy of the averaged model
against training time, every seed of DS-Sync and BSP, the targets drawn.

    bed-training-plot.py RECORD_DIR PNG TITLE
"""
import csv
import glob
import os
import subprocess
import sys

COLORS = {"dssync g=2 random": "#1f77b4", "bsp allreduce": "#d62728"}
NAMES = {"dssync g=2 random": "DS-Sync g=2", "bsp allreduce": "BSP"}
TARGETS = [0.84, 0.85, 0.86]


def main(record, png, title):
    series = []
    for path in sorted(glob.glob(os.path.join(record, "seed*.csv"))):
        seed = os.path.basename(path)[4:-4]
        runs = {}
        for row in csv.DictReader(open(path)):
            runs.setdefault(row["label"], []).append(row)
        for label, rows in runs.items():
            dat = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"bed_{seed}_{label.split()[0]}.dat")
            with open(dat, "w") as f:
                for r in rows[1:]:
                    f.write(f"{r['wall_seconds']} {r['test_acc_avg']}\n")
            series.append((dat, label, seed))
    script = ["set terminal pngcairo size 1000,600 font 'sans,11'", f"set output '{png}'",
              f"set title '{title}'", "set grid", "set key bottom right",
              "set xlabel 'training time (s; evaluation not timed)'",
              "set ylabel 'test accuracy (averaged model)'", "set yrange [0.80:0.88]"]
    for t in TARGETS:
        script.append(f"set arrow from graph 0, first {t} to graph 1, first {t} nohead dt 2 lc rgb '#888888'")
        script.append(f"set label '{t:.2f}' at graph 0.01, first {t + 0.001} tc rgb '#666666'")
    plots = [f"'{dat}' using 1:2 with linespoints lw 1.5 pt 7 ps 0.5 lc rgb '{COLORS.get(label, '#000')}' "
             f"title '{NAMES.get(label, label)}, seed {seed}'" for dat, label, seed in series]
    script.append("plot " + ", ".join(plots))
    subprocess.run(["gnuplot"], input="\n".join(script), text=True, check=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
