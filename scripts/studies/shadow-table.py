#!/usr/bin/env python3
"""The table of docs/experiments/shadow-2026-12-04/README.md, from the runs'
CSVs (scripts/studies/shadow): per row, virtual steps per second and their
ratio to --sync none (computing alone), ShadowSync's rounds per epoch (a
worker's rounds started, mean over workers) and mean merge lag (steps between
a round's snapshot and its merge, over all merges), the virtual seconds until
the averaged model first reached 0.80 and 0.85 (at a record: two an epoch), and the
final accuracy; over several seeds, the median and (lowest-highest), the
ratio to none taken seed by seed. A run's time includes ShadowSync's finish() (in its last
record), so the steps per second are a whole run's; for ShadowSync the table
also gives the seconds a worker spent inside step() before the last record
(mean over workers) and inside step() and finish() in the last record.

    scripts/studies/shadow-table.py [OUT_DIR]
"""
import csv
import glob
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "../../docs/experiments/shadow-2026-12-04")
WORKERS, BATCH, IMAGES = 64, 32, 60000
STEPS_PER_EPOCH = IMAGES // WORKERS // BATCH
TARGETS = (0.80, 0.85)
ROWS = [("none", "no synchronization"), ("bsp", "BSP (allreduce)"), ("ds2", "DS-Sync g=2"),
        ("localsgd", "local SGD H=8"), ("shadow-ma", "shadow-ma"), ("shadow-bmuf", "shadow-bmuf (eta 1 - 1/64)"),
        ("shadow-bmuf-eta0.9", "shadow-bmuf (eta 0.9)"),
        ("shadow-easgd", "shadow-easgd"), ("shadow-ds", "shadow-ds g=2")]


def mean(xs):
    return sum(xs) / len(xs) if xs else None


def figures(records):
    trained = [r for r in records if float(r["epoch"]) > 0]
    seconds = sum(float(r["seconds"]) for r in trained)
    epochs = float(trained[-1]["epoch"])
    hits = [next((float(r["wall_seconds"]) for r in records if float(r["test_acc_avg"]) >= t), None)
            for t in TARGETS]
    last = records[-1]
    return {"rate": epochs * STEPS_PER_EPOCH / seconds, "to": hits, "acc": float(last["test_acc_avg"]),
            "rounds": float(last.get("rounds") or 0) / epochs,
            "before": sum(float(r.get("sync_seconds") or 0) for r in trained[:-1]),
            "finish": float(last.get("sync_seconds") or 0), "lag": float(last.get("merge_lag") or 0)}


def lrs():
    found = set()
    for path in glob.glob(os.path.join(OUT, "runs", "*_lr*_seed*.csv")):
        found.add(os.path.basename(path).rsplit("_lr", 1)[1].split("_seed")[0])
    return sorted(found, key=float)


def main():
    for lr in lrs():
        print(f"lr {lr} (momentum 0.9, cosine)\n")
        table(lr)
        print()


def cell(xs, fmt):
    """Median and, over more than one run, (lowest-highest)."""
    if not xs:
        return "never"
    text = fmt.format(statistics.median(xs))
    return text + (f" ({fmt.format(min(xs))}-{fmt.format(max(xs))})" if len(xs) > 1 else "")


def table(lr):
    done = {}
    for row, _ in ROWS:
        runs = {}
        for path in sorted(glob.glob(os.path.join(OUT, "runs", f"{row}_lr{lr}_seed*.csv"))):
            with open(path) as f:
                runs[path.rsplit("_seed", 1)[1]] = figures(list(csv.DictReader(f)))
        if runs:
            done[row] = runs
    none = done.get("none", {})
    to_columns = " | ".join(f"s to {t:.2f}" for t in TARGETS)
    print(f"| synchronizer | steps/s (virtual) | of none | rounds/epoch | merge lag (steps) "
          f"| in step() before the last record, s | last record in step() and finish(), s | {to_columns} "
          "| final accuracy | seeds |")
    print("|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(TARGETS) + "---:|---:|")
    for row, label in ROWS:
        if row not in done:
            continue
        runs = list(done[row].values())
        of = cell([f["rate"] / none[seed]["rate"] for seed, f in done[row].items() if seed in none], "{:.3f}")
        tos = []
        for k in range(len(TARGETS)):
            hits = [f["to"][k] for f in runs if f["to"][k] is not None]
            tos.append(cell(hits, "{:.2f}") + ("" if not hits or len(hits) == len(runs)
                                               else f", {len(hits)} of {len(runs)}"))
        shadow = row.startswith("shadow")
        rounds = cell([f["rounds"] for f in runs], "{:.2f}") if shadow else ""
        lag = cell([f["lag"] for f in runs], "{:.2f}") if shadow else ""
        before = cell([f["before"] for f in runs], "{:.4f}") if shadow else ""
        finish = cell([f["finish"] for f in runs], "{:.4f}") if shadow else ""
        print(f"| {label} | {cell([f['rate'] for f in runs], '{:.1f}')} | {of} | {rounds} | {lag} | {before} "
              f"| {finish} | {' | '.join(tos)} | {cell([f['acc'] for f in runs], '{:.4f}')} | {len(runs)} |")


if __name__ == "__main__":
    main()
