#!/usr/bin/env python3
"""The staleness study's record and plot from its runs (scripts/studies/staleness).

    staleness-table.py OUT_DIR

Reads OUT_DIR/runs/<model>_<optimizer>_s<S>_seed<seed>.csv (the training
example's CSV, one row per evaluation of the averaged model) and writes
OUT_DIR/runs.csv, one row per run: the target, the steps (batches) until the
averaged model first reached it (empty: not reached), the final accuracy and
the epochs run; then OUT_DIR/staleness.png with gnuplot: steps to target over
those of s = 0 (same model, optimizer and seed) against s, the mean over the
seeds with their min and max, one line per model, one panel per optimizer.

The target is 0.85 for the MLPs; for softmax regression, which may not reach
0.85 on Fashion-MNIST, the highest multiple of 0.01 that every s = 0 run of it
(both optimizers, every seed) reached.
"""
import csv
import glob
import math
import os
import shutil
import subprocess
import sys

STEPS_PER_EPOCH = 60000 // 8 // 32  # 8 workers, batch 32 each (the study's)
MODELS = ["softmax", "mlp128", "mlp256-128", "mlp256-256-128"]
OPTIMIZERS = ["sgd", "momentum"]
TARGET = 0.85


def steps_at(epoch, evals):
    """The global step of a record at (fractional) `epoch`, as the trainer places them."""
    if epoch == 0:
        return 0
    e = math.ceil(epoch - 1e-9)
    part = round((epoch - (e - 1)) * evals)
    return (e - 1) * STEPS_PER_EPOCH + STEPS_PER_EPOCH * part // evals


def read_runs(out):
    runs = []
    for p in sorted(glob.glob(os.path.join(out, "runs", "*_seed*.csv"))):
        model, optimizer, s, seed = os.path.basename(p)[:-4].split("_")
        with open(p, newline="") as f:
            rows = list(csv.DictReader(f))
        epochs = [float(r["epoch"]) for r in rows]
        evals = round(1 / epochs[1])
        runs.append({"model": model, "optimizer": optimizer, "s": int(s[1:]), "seed": int(seed[4:]),
                     "steps": [steps_at(e, evals) for e in epochs],
                     "acc": [float(r["test_acc_avg"]) for r in rows], "epochs": epochs[-1]})
    return runs


def targets(runs):
    t = {m: TARGET for m in MODELS}
    best = [max(r["acc"]) for r in runs if r["model"] == "softmax" and r["s"] == 0]
    if best:
        t["softmax"] = math.floor(min(best) * 100 + 1e-9) / 100
    return t


def main(out):
    runs = read_runs(out)
    target = targets(runs)
    for r in runs:
        hit = [s for s, a in zip(r["steps"], r["acc"]) if a >= target[r["model"]]]
        r["to_target"] = hit[0] if hit else None
    runs.sort(key=lambda r: (MODELS.index(r["model"]), OPTIMIZERS.index(r["optimizer"]), r["s"], r["seed"]))
    with open(os.path.join(out, "runs.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "optimizer", "s", "seed", "target", "steps_to_target", "final_accuracy",
                    "epochs_run"])
        for r in runs:
            w.writerow([r["model"], r["optimizer"], r["s"], r["seed"], f"{target[r['model']]:.2f}",
                        "" if r["to_target"] is None else r["to_target"], f"{r['acc'][-1]:.4f}",
                        f"{r['epochs']:g}"])
    # The plot's data: per optimizer and model, per s, the mean, min and max
    # ratio over the seeds, when every seed reached the target (else a blank
    # line, which gnuplot draws as a gap); a file each.
    base = {(r["model"], r["optimizer"], r["seed"]): r["to_target"] for r in runs if r["s"] == 0}
    os.makedirs(os.path.join(out, "plot"), exist_ok=True)
    lines = {}
    for opt in OPTIMIZERS:
        for model in MODELS:
            points = []
            for s in sorted({r["s"] for r in runs}):
                these = [r for r in runs if (r["model"], r["optimizer"], r["s"]) == (model, opt, s)]
                ratios = [r["to_target"] / base[(model, opt, r["seed"])] for r in these
                          if r["to_target"] is not None and base.get((model, opt, r["seed"]))]
                if ratios and len(ratios) == len(these):
                    points.append(f"{s} {sum(ratios) / len(ratios):.4f} {min(ratios):.4f} {max(ratios):.4f}\n")
                else:
                    points.append("\n")  # a gap in the line: some seed never got there
            if any(p != "\n" for p in points):
                lines[(opt, model)] = os.path.join(out, "plot", f"{model}_{opt}.dat")
                with open(lines[(opt, model)], "w") as f:
                    f.writelines(points)
    if not shutil.which("gnuplot"):
        print("gnuplot is not installed (Debian: gnuplot-nox): no plot")
        return
    names = {"softmax": f"softmax regression (to {target['softmax']:.2f})", "mlp128": "MLP 128",
             "mlp256-128": "MLP 256,128", "mlp256-256-128": "MLP 256,256,128"}
    titles = {"sgd": "SGD (lr 0.5)", "momentum": "momentum 0.9 (lr 0.05)"}
    gp = ["set terminal pngcairo size 1200,480 font 'sans,11'",
          f"set output '{os.path.join(out, 'staleness.png')}'",
          "set multiplot layout 1,2 title 'Steps to target test accuracy (0.85 for the MLPs), "
          "normalized by s = 0; mean and min-max over seeds; no point: not every seed reached it'",
          "set logscale x 2", "set xrange [0.7:22]", "set xtics ('0' 0.8, 1, 2, 4, 8, 16)",
          "set xlabel 'staleness s (UniformDelay, 8 workers)'",
          "set ylabel 'normalized steps to target'", "set grid", "set key top left"]
    for i, opt in enumerate(OPTIMIZERS):
        gp.append(f"set title '{titles[opt]}'")
        plots = []
        for j, model in enumerate(MODELS):
            if (opt, model) in lines:
                # s = 0 is drawn at 0.8 on the logarithmic axis.
                plots.append(f"'{lines[(opt, model)]}' using ($1 == 0 ? 0.8 : $1):2:3:4 with yerrorlines "
                             f"lw 2 lc {j + 1} title '{names[model]}'")
        plots = plots or ["NaN notitle"]
        gp.append("plot " + ", ".join(plots))
    gp.append("unset multiplot")
    subprocess.run(["gnuplot"], input="\n".join(gp) + "\n", text=True, check=True)
    print(f"wrote {os.path.join(out, 'runs.csv')} and {os.path.join(out, 'staleness.png')}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: staleness-table.py OUT_DIR")
    main(sys.argv[1])
