#!/usr/bin/env python3
"""The table of docs/experiments/ssp-2026-12-04/README.md, from the runs'
CSVs (scripts/studies/ssp): per setting and row, the virtual milliseconds per
step, the virtual seconds until the averaged model first reached 0.85 test
accuracy (at a record: two an epoch), the final accuracy, and for SSP the
trainer's waiting for means as a share of the training time. Then the
reference periods the README compares with: A, the all-reduce alone, read off
the calibration row (BSP, every step exactly C: its period is C + A), and
for the jitter setting the mean compute time 2C, max(2C, A), and BSP's
expected period E[max of 64 computes] + A = C (1 + H_64) + A.

    scripts/studies/ssp-table.py [OUT_DIR]
"""
import csv
import glob
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "../../docs/experiments/ssp-2026-12-04")
WORKERS, BATCH, IMAGES, C = 64, 32, 60000, 0.0011
STEPS_PER_EPOCH = IMAGES // WORKERS // BATCH  # the training example's steps_per_epoch
TARGET = 0.85
SETTINGS = [("jitter", "compute C (1 + J), J ~ Exp(1)"), ("straggler", "rank 0 computes 2C, the others C"),
            ("jitter-sgd", "the jitter, plain SGD at lr 0.5"),
            ("jitter-lr0.05", "the jitter, momentum 0.9 at lr 0.05"), ("calibration", "every step C")]
ROWS = [("bsp", "BSP (allreduce)"), ("ssp1", "SSP s=1"), ("ssp2", "SSP s=2"), ("ssp4", "SSP s=4"),
        ("ds2", "DS-Sync g=2")]


def load(setting, row):
    runs = []
    for path in sorted(glob.glob(os.path.join(OUT, "runs", f"{setting}_{row}_seed*.csv"))):
        with open(path) as f:
            runs.append(list(csv.DictReader(f)))
    return runs


def figures(records):
    trained = [r for r in records if float(r["epoch"]) > 0]
    seconds = sum(float(r["seconds"]) for r in trained)
    steps = float(trained[-1]["epoch"]) * STEPS_PER_EPOCH
    waiting = sum(float(r.get("sync_seconds") or 0) for r in trained)
    hit = next((float(r["wall_seconds"]) for r in records if float(r["test_acc_avg"]) >= TARGET), None)
    return {"ms": 1e3 * seconds / steps, "to": hit, "acc": float(records[-1]["test_acc_avg"]),
            "wait": waiting / seconds if seconds else 0.0}


def mean(xs):
    return sum(xs) / len(xs) if xs else None


def main():
    table = {}
    print(f"| setting | synchronizer | ms/step (virtual) | BSP's / this | s to {TARGET:.2f} | final accuracy "
          "| SSP waiting |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for setting, _ in SETTINGS:
        for row, label in ROWS:
            runs = [figures(r) for r in load(setting, row)]
            if not runs:
                continue
            ms = mean([f["ms"] for f in runs])
            hits = [f["to"] for f in runs if f["to"] is not None]
            to = f"{mean(hits):.2f}" + ("" if len(hits) == len(runs) else f" ({len(hits)}/{len(runs)} runs)") \
                if hits else "never"
            acc = mean([f["acc"] for f in runs])
            wait = f"{100 * mean([f['wait'] for f in runs]):.1f}%" if row.startswith("ssp") else ""
            table[(setting, row)] = ms
            speed = f"{table[(setting, 'bsp')] / ms:.3f}" if (setting, "bsp") in table else ""
            print(f"| {setting} | {label} | {ms:.2f} | {speed} | {to} | {acc:.4f} | {wait} |")
    print()
    if ("calibration", "bsp") in table:
        a = table[("calibration", "bsp")] - 1e3 * C
        harmonic = sum(1.0 / k for k in range(1, WORKERS + 1))
        print(f"A (all-reduce alone) = calibration BSP period - C = {a:.2f} ms")
        print(f"jitter: mean compute 2C = {2e3 * C:.2f} ms, max(2C, A) = {max(2e3 * C, a):.2f} ms, "
              f"BSP expected C (1 + H_64) + A = {1e3 * C * (1 + harmonic) + a:.2f} ms (H_64 = {harmonic:.3f})")
        print(f"straggler: max(2C, A) = {max(2e3 * C, a):.2f} ms, BSP 2C + A = {2e3 * C + a:.2f} ms")


if __name__ == "__main__":
    main()
