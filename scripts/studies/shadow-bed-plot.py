#!/usr/bin/env python3
"""The plot of scripts/studies/shadow-bed: test accuracy of the averaged model
against training time (log scale), every seed of BSP, DS-Sync g=2 and local
SGD H=8 (evals8/continuous, 3 epochs) and of model averaging and DS-Sync
rounds every 234 steps (long/period234, 12 epochs), 0.85 drawn.

    shadow-bed-plot.py [RECORD_DIR [PNG]]
"""
import csv
import glob
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RECORD = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "../../docs/experiments/shadow-bed-2026-12-05")
PNG = sys.argv[2] if len(sys.argv) > 2 else os.path.join(RECORD, "accuracy_time.png")
# (set, the label's first word, name, colour)
ROWS = [("evals8/continuous", "bsp", "BSP", "#d62728"),
        ("evals8/continuous", "dssync", "DS-Sync g=2", "#1f77b4"),
        ("evals8/continuous", "localsgd", "local SGD H=8", "#7f7f7f"),
        ("long/period234", "shadow-ma", "shadow-ma, a round every 234 steps", "#2ca02c"),
        ("long/period234", "shadow-ds", "shadow-ds g=2, a round every 234 steps", "#9467bd")]


def main():
    tmp = os.environ.get("TMPDIR", "/tmp")
    plots = []
    for row_set, first, name, colour in ROWS:
        for i, path in enumerate(sorted(glob.glob(os.path.join(RECORD, row_set, "seed*.csv")))):
            rows = [r for r in csv.DictReader(open(path)) if r["label"].split(" ")[0] == first]
            dat = os.path.join(tmp, f"shadow_bed_{first}_{os.path.basename(path)[:-4]}.dat")
            with open(dat, "w") as f:
                for r in rows[1:]:
                    f.write(f"{r['wall_seconds']} {r['test_acc_avg']}\n")
            title = f"title '{name}'" if i == 0 else "notitle"
            plots.append(f"'{dat}' using 1:2 with linespoints lw 1.5 pt 7 ps 0.5 lc rgb '{colour}' {title}")
    script = ["set terminal pngcairo size 1000,600 font 'sans,11'", f"set output '{PNG}'",
              "set title '8 TCP processes, 100 Mbit/s bed, 2 cores: every seed (1, 2, 3)'", "set grid",
              "set key bottom right", "set logscale x",
              "set xlabel 'training time (s, log scale; evaluation not timed)'",
              "set ylabel 'test accuracy (averaged model)'", "set yrange [0.70:0.89]",
              "set arrow from graph 0, first 0.85 to graph 1, first 0.85 nohead dt 2 lc rgb '#888888'",
              "plot " + ", ".join(plots)]
    subprocess.run(["gnuplot"], input="\n".join(script), text=True, check=True)
    print(PNG)


if __name__ == "__main__":
    main()
