#!/usr/bin/env python3
"""EXPERIMENTS.md's tables of ShadowSync on the shaped network, from the
records of scripts/studies/shadow-bed (OUT_DIR/<part>/<set>/seed<S>.csv:
the training example's CSV, a row a record, every row set starting with
--sync none in the same process run). Three tables: the issue's rows over 3
epochs (the blocking ones with 8 records an epoch, ShadowSync's with one, at
each spacing of the rounds); 12 epochs of paced rounds against BSP's 3; and
ShadowSync's pace with 8 records an epoch against one (a round goes on while
a record stops training, in time no row is charged for).

Per row and seed: the pace against no synchronization (the seconds of
--sync none over the row's seconds for the same steps), once over the
records before the last (training alone: ShadowSync's finish() is in the
last) and once over the whole run; ShadowSync's rounds per epoch, mean merge
lag, and what a round costs the trainer (its training seconds beyond none's
before the last record, over the rounds started by then, in ms); the
training seconds until the averaged model first reached 0.85 (at a record);
the final test accuracy. A cell is the median over the seeds and, in
parentheses, the lowest and highest.

    scripts/studies/shadow-bed-table.py [OUT_DIR]
"""
import csv
import glob
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "../../docs/experiments/shadow-bed-2026-12-05")
TARGET = 0.85
PERIODS = (0, 58, 117, 234)
LONG_PERIODS = (117, 234)
POLICIES = ["shadow-ma", "shadow-bmuf", "shadow-easgd", "shadow-ds"]
NAMES = {"none": "no synchronization", "bsp": "BSP (ring all-reduce)", "dssync": "DS-Sync g=2",
         "localsgd": "local SGD H=8", "shadow-ma": "shadow-ma", "shadow-bmuf": "shadow-bmuf (eta 1 - 1/8)",
         "shadow-easgd": "shadow-easgd (n alpha 0.9)", "shadow-ds": "shadow-ds g=2"}


def runs(row_set):
    """{sync: [per-seed records]} in the order the rows ran, and the seeds."""
    out, seeds = {}, []
    for path in sorted(glob.glob(os.path.join(OUT, row_set, "seed*.csv"))):
        seeds.append(os.path.basename(path)[4:-4])
        with open(path) as f:
            by = {}
            for r in csv.DictReader(f):
                by.setdefault(r["label"].split(" ")[0], []).append(r)
        for sync, records in by.items():
            out.setdefault(sync, []).append(records)
    return out, seeds


def figures(records, none):
    trained = [r for r in records if float(r["epoch"]) > 0]
    base = [r for r in none if float(r["epoch"]) > 0]
    assert [r["steps"] for r in trained] == [r["steps"] for r in base], "rows of one set differ in steps"
    sec = [float(r["seconds"]) for r in trained]
    none_sec = [float(r["seconds"]) for r in base]
    epochs = float(trained[-1]["epoch"])
    last = records[-1]
    rounds = float(last["rounds"] or 0)
    # What a round costs the trainer: its training seconds beyond none's, before
    # the last record (no finish()), over the rounds started by then.
    before = float(records[-2]["rounds"] or 0) if len(trained) > 1 else 0
    return {"steady": sum(none_sec[:-1]) / sum(sec[:-1]), "whole": sum(none_sec) / sum(sec),
            "per_round": (sum(sec[:-1]) - sum(none_sec[:-1])) / before * 1e3 if before else None,
            "to": next((float(r["wall_seconds"]) for r in records if float(r["test_acc_avg"]) >= TARGET), None),
            "acc": float(last["test_acc_avg"]), "seconds": sum(sec), "epochs": epochs,
            "rounds": rounds / epochs, "lag": float(last["merge_lag"] or 0)}


def cell(xs, fmt):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "never"
    s = fmt.format(statistics.median(xs))
    if len(xs) > 1:
        s += f" ({fmt.format(min(xs))}-{fmt.format(max(xs))})"
    return s


def to_cell(fs):
    hits = [f["to"] for f in fs]
    reached = sum(h is not None for h in hits)
    if reached < len(hits):
        return (cell(hits, "{:.1f}") + f", {reached} of {len(hits)}") if reached else "never"
    return cell(hits, "{:.1f}")


def set_figures(row_set):
    rs, seeds = runs(row_set)
    if not rs:
        return {}, seeds
    return {sync: [figures(r, n) for r, n in zip(records, rs["none"])] for sync, records in rs.items()}, seeds


def start_label(period):
    return "when free" if period == 0 else f"every {period} steps"


def row(name, start, records, fs, shadow):
    print(f"| {name} | {start} | {records} | {cell([f['steady'] for f in fs], '{:.3f}')} "
          f"| {cell([f['whole'] for f in fs], '{:.3f}')} "
          f"| {cell([f['rounds'] for f in fs], '{:.2f}') if shadow else ''} "
          f"| {cell([f['lag'] for f in fs], '{:.1f}') if shadow else ''} "
          f"| {cell([f['per_round'] for f in fs], '{:.0f}') if shadow else ''} "
          f"| {to_cell(fs)} | {cell([f['acc'] for f in fs], '{:.4f}')} | {len(fs)} |")


def main_table():
    """The issue's rows, 3 epochs: the blocking ones with 8 records an epoch,
    ShadowSync's with one (its pace), for each spacing of the rounds."""
    sync, _ = set_figures("evals8/continuous")
    paced = {p: set_figures(f"pace/period{p}")[0] for p in PERIODS}
    print(f"| synchronizer | rounds start | records/epoch | pace of none, training | pace of none, with finish() "
          f"| rounds/epoch | merge lag (steps) | trainer ms a round | s to {TARGET:.2f} | final accuracy | seeds |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in ("none", "bsp", "dssync", "localsgd"):
        if s in sync:
            row(NAMES[s], "", 8, sync[s], False)
    for s in POLICIES:
        for p in PERIODS:
            if s in paced[p]:
                row(NAMES[s], start_label(p), 1, paced[p][s], True)


def long_table():
    """12 epochs of the paced rounds against BSP's 3 (8 records an epoch)."""
    sync, _ = set_figures("evals8/continuous")
    print(f"| synchronizer | rounds start | epochs | training s | pace of none, training "
          f"| pace of none, with finish() | s to {TARGET:.2f} | final accuracy | seeds |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    rows = [(NAMES[s], "", sync[s]) for s in ("bsp", "dssync") if s in sync]
    for p in LONG_PERIODS:
        long, _ = set_figures(f"long/period{p}")
        rows += [(NAMES[s], start_label(p) if s != "none" else "", long[s]) for s in long
                 if s != "none" or p == LONG_PERIODS[0]]
    for name, start, fs in rows:
        print(f"| {name} | {start} | {fs[0]['epochs']:g} | {cell([f['seconds'] for f in fs], '{:.1f}')} "
              f"| {cell([f['steady'] for f in fs], '{:.3f}')} | {cell([f['whole'] for f in fs], '{:.3f}')} | {to_cell(fs)} "
              f"| {cell([f['acc'] for f in fs], '{:.4f}')} | {len(fs)} |")


def evals_table():
    """The pace of the same rounds with 8 records an epoch and with one."""
    print("| round policy | rounds start | pace, 8 records an epoch | merge lag | pace, one record an epoch "
          "| merge lag | seeds |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for s in POLICIES:
        for p in (0, 58, 117):
            eight, _ = set_figures("evals8/continuous" if p == 0 else f"evals8/period{p}")
            one, _ = set_figures(f"pace/period{p}")
            if s not in eight or s not in one:
                continue
            e, o = eight[s], one[s]
            print(f"| {NAMES[s]} | {start_label(p)} | {cell([f['steady'] for f in e], '{:.3f}')} "
                  f"| {cell([f['lag'] for f in e], '{:.1f}')} | {cell([f['steady'] for f in o], '{:.3f}')} "
                  f"| {cell([f['lag'] for f in o], '{:.1f}')} | {min(len(e), len(o))} |")


if __name__ == "__main__":
    for t in (main_table, long_table, evals_table):
        t()
        print()
