#!/usr/bin/env python3
"""Aggregates the runs of scripts/studies/experiments: the markdown table of
EXPERIMENTS.md (mean and spread over seeds) and its plots (gnuplot).

    python3 scripts/studies/experiments-table.py <out dir>
"""
import csv
import glob
import math
import os
import statistics
import subprocess
import sys

ORDER = ["bsp", "dssync_g2_random", "dssync_g2_butterfly", "dssync_g4_random",
         "dssync_g2_noshuffle", "gossip_ring", "localsgd_h8"]
NAMES = {"bsp": "BSP (all-reduce of gradients)", "dssync_g2_random": "DS-Sync g=2, random",
         "dssync_g2_butterfly": "DS-Sync g=2, butterfly", "dssync_g4_random": "DS-Sync g=4, random",
         "dssync_g2_noshuffle": "DS-Sync g=2, no shuffle", "gossip_ring": "gossip, ring",
         "localsgd_h8": "local SGD, H=8"}


def spread(values):
    return (max(values) - min(values)) / 2 if len(values) > 1 else 0.0


def main(out):
    runs = {}
    for path in sorted(glob.glob(os.path.join(out, "runs", "*_seed*.csv"))):
        name = os.path.basename(path).rsplit("_seed", 1)[0]
        with open(path) as f:
            rows = [r for r in csv.DictReader(f)]
        runs.setdefault(name, []).append(rows)
    lines = ["| synchronizer | test acc, averaged model | test acc, worst worker | s / epoch | MB sent / worker / epoch | vs BSP bytes | consensus distance at the end |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    bsp_bytes = None
    for name in ORDER:
        if name not in runs:
            continue
        finals = [rows[-1] for rows in runs[name]]
        acc = [float(r["test_acc_avg"]) for r in finals]
        worst = [float(r["test_acc_worst"]) for r in finals]
        secs = [statistics.mean(float(r["seconds"]) for r in rows[1:]) for rows in runs[name]]
        mbytes = [statistics.mean(float(r["bytes_per_worker"]) for r in rows[1:]) / 1e6 for rows in runs[name]]
        cons = [float(r["consensus"]) for r in finals]
        if name == "bsp":
            bsp_bytes = statistics.mean(mbytes)
        ratio = f"{statistics.mean(mbytes) / bsp_bytes:.3f}" if bsp_bytes else ""
        lines.append(
            f"| {NAMES[name]} | {statistics.mean(acc):.4f} ± {spread(acc):.4f} | "
            f"{statistics.mean(worst):.4f} ± {spread(worst):.4f} | {statistics.mean(secs):.2f} | "
            f"{statistics.mean(mbytes):.1f} | {ratio} | {statistics.mean(cons):.3g} |")
    seeds = max((len(v) for v in runs.values()), default=0)
    lines.append("")
    lines.append(f"Mean over {seeds} seeds; ± is half the range (max - min) / 2.")
    table = "\n".join(lines) + "\n"
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
    plot(os.path.join(out, "time.png"), 2, 3, "training time (s)", "test accuracy (averaged model)",
         "set yrange [0.82:0.9]")
    plot(os.path.join(out, "consensus.png"), 1, 4, "epoch",
         "consensus distance (mean ||x_i - mean||^2)",
         "set logscale y\nset xrange [1:*]\nset format y '10^{%L}'\nset key bottom left")
    print("plots:", ", ".join(os.path.join(out, p) for p in ("accuracy.png", "time.png", "consensus.png")))


if __name__ == "__main__":
    main(sys.argv[1])
