#!/usr/bin/env python3
"""Aggregates the runs of scripts/studies/experiments: the markdown table of
EXPERIMENTS.md (scripts/figures/experiments.py computes it, as
scripts/check-figures does) and its plots (gnuplot).

    python3 scripts/studies/experiments-table.py <out dir>
"""
import math
import os
import statistics
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from figures.experiments import NAMES, ORDER, fashion_mnist, study_runs  # noqa: E402


def main(out):
    runs_dir = os.path.join(os.path.abspath(out), "runs")
    runs = study_runs(runs_dir)
    rows = fashion_mnist([runs_dir])
    seeds = max(len(v) for v in runs.values())
    table = "\n".join(["| " + " | ".join(rows[0]) + " |", "|---|" + "---:|" * (len(rows[0]) - 1)] +
                      ["| " + " | ".join(r) + " |" for r in rows[1:]])
    table += f"\n\nMean over {seeds} seeds; ± is half the range (max - min) / 2.\n"
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(table)
    print(table)

    # Per-epoch means over seeds, one data file per configuration, for gnuplot.
    series = []
    for name in ORDER:
        if name not in runs:
            continue
        path = os.path.join(out, f"mean_{name}.dat")
        with open(path, "w") as f:
            f.write("# epoch wall_seconds test_acc_avg consensus train_loss\n")
            for e in range(len(runs[name][0])):
                cols = []
                for key in ("wall_seconds", "test_acc_avg", "consensus", "train_loss"):
                    vals = [float(rows[e][key]) for rows in runs[name] if e < len(rows)]
                    vals = [v for v in vals if not math.isnan(v)]
                    cols.append(statistics.mean(vals) if vals else float("nan"))
                f.write(f"{e} " + " ".join(f"{v:.6g}" for v in cols) + "\n")
        series.append((name, path))

    def plot(png, xcol, ycol, xlabel, ylabel, extra=""):
        script = [f"set terminal pngcairo size 900,600 font 'sans,11'", f"set output '{png}'",
                  "set grid", "set key bottom right", f"set xlabel '{xlabel}'",
                  f"set ylabel '{ylabel}'", extra]
        plot_cmds = [f"'{path}' using {xcol}:{ycol} with linespoints lw 2 title '{NAMES[name]}'"
                     for name, path in series]
        script.append("plot " + ", ".join(plot_cmds))
        subprocess.run(["gnuplot"], input="\n".join(script), text=True, check=True)

    plot(os.path.join(out, "accuracy.png"), 1, 3, "epoch", "test accuracy (averaged model)",
         "set yrange [0.82:0.9]\nset xrange [1:*]")
    plot(os.path.join(out, "consensus.png"), 1, 4, "epoch",
         "consensus distance (mean ||x_i - mean||^2)",
         "set logscale y\nset xrange [1:*]\nset format y '10^{%L}'\nset key bottom left")
    print("plots:", ", ".join(os.path.join(out, p) for p in ("accuracy.png", "consensus.png")))


if __name__ == "__main__":
    main(sys.argv[1])
