#!/usr/bin/env python3
"""The tables of SIMULATION.md's geo study, from the runs' CSVs
(scripts/studies/geo): 64 workers in 8 data centers, 100 Mbit/s and 50 ms
between them.

1. Per partition (normalization none): virtual seconds per epoch, the
   virtual seconds until the averaged model first reached 0.80 and 0.85 test
   accuracy (at a record, two an epoch; the mean over the seeds that reached
   it, with how many did when not all), the speed as a share of the same
   synchronizer's run without the wide-area limits (lan, seed 1), the final
   accuracy (mean and spread over the seeds), the megabytes that left their
   data center per step (all workers together) and Gaia's significant share.
2. Final accuracy by normalization and partition, and what skew:1 costs.
3. The bars of the study, computed.

    scripts/studies/geo-table.py [OUT_DIR]
"""
import csv
import glob
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "../../docs/experiments/geo-2026-12-05")
TARGETS = (0.80, 0.85)
ROWS = [("bsp-hd", "BSP, halving-doubling"), ("bsp-hier", "BSP, hierarchical"),
        ("dssync", "DS-Sync, RackGroups"), ("localsgd", "local SGD H=8, hierarchical"),
        ("gaia1", "Gaia 1 %"), ("gaia20", "Gaia 20 %"), ("gaia1-s1", "Gaia 1 %, slack 1"),
        ("gaia20-s1", "Gaia 20 %, slack 1"), ("gaia1-p32", "Gaia 1 %, period 32, slack 32"),
        ("skewscout", "SkewScout (Gaia 1 %, target 5 %)"), ("skewscout20", "SkewScout (Gaia 20 %, target 5 %)"),
        ("skewscout-p8", "SkewScout (Gaia 1 %, target 5 %, every 8 steps)"),
        ("skewscout20-p8", "SkewScout (Gaia 20 %, target 5 %, every 8 steps)"),
        ("skewscout20-host", "SkewScout (Gaia 20 %, target 5 %, beside the host's model)"),
        ("skewscout-lsgd", "SkewScout (local SGD from H=8, target 5 %)"),
        ("skewscout-lsgd-host", "SkewScout (local SGD from H=8, target 5 %, beside the host's model)"),
        ("skewscout-lsgd-host-t10", "SkewScout (local SGD from H=8, target 10 %, beside the host's model)"),
        ("skewscout-lsgd-host-t20", "SkewScout (local SGD from H=8, target 20 %, beside the host's model)"),
        ("skewscout-lsgd-sync", "SkewScout (local SGD from H=8, target 5 %, before the synchronization)"),
        ("skewscout-lsgd-host-sync",
         "SkewScout (local SGD from H=8, target 5 %, beside the host's model, before the synchronization)"),
        ("skewscout-lsgd-host-sync-min2",
         "SkewScout (local SGD from H=8, target 5 %, beside the host's model, before the synchronization, H >= 2)"),
        ("skewscout-lsgd-host-sync-min3",
         "SkewScout (local SGD from H=8, target 5 %, beside the host's model, before the synchronization, H >= 3)"),
        ("localsgd-h2", "local SGD H=2, hierarchical"), ("localsgd-h3", "local SGD H=3, hierarchical"),
        ("localsgd-h4", "local SGD H=4, hierarchical")]
PARTITIONS = [("iid", "iid"), ("skew1", "skew:1")]
NORMS = [("none", "none"), ("group32", "group:32"), ("batch", "batch")]


def load(net, row, partition, norm):
    runs = []
    for p in sorted(glob.glob(os.path.join(OUT, "runs", f"{net}_{row}_{partition}_{norm}_seed*.csv"))):
        with open(p) as f:
            runs.append(list(csv.DictReader(f)))
    return runs


def figures(records):
    trained = [r for r in records if float(r["epoch"]) > 0]
    seconds = sum(float(r["seconds"]) for r in trained)
    epochs = float(trained[-1]["epoch"])
    steps = sum(float(r["steps"]) for r in trained)
    wan = sum(float(r["wan_bytes"]) for r in trained)
    significant = [float(r["significant"]) for r in trained if r["significant"] not in ("nan", "")]
    reach = {t: next((float(r["wall_seconds"]) for r in records if float(r["test_acc_avg"]) >= t), None)
             for t in TARGETS}
    finite = all(math.isfinite(float(r["test_loss_avg"])) for r in records)
    return {"epoch_s": seconds / epochs, "reach": reach, "acc": float(records[-1]["test_acc_avg"]),
            "wan_mb": wan / steps / 1e6, "significant": sum(significant) / len(significant) if significant else None,
            "finite": finite}


def mean(xs):
    return sum(xs) / len(xs) if xs else None


def spread(xs):
    if len(xs) < 2:
        return 0.0
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def summary(net, row, partition, norm):
    runs = [figures(r) for r in load(net, row, partition, norm)]
    if not runs:
        return None
    accs = [f["acc"] for f in runs]
    out = {"n": len(runs), "epoch_s": mean([f["epoch_s"] for f in runs]), "acc": mean(accs),
           "sd": spread(accs), "wan_mb": mean([f["wan_mb"] for f in runs]),
           "significant": mean([f["significant"] for f in runs if f["significant"] is not None]),
           "diverged": sum(not f["finite"] for f in runs)}
    for t in TARGETS:
        hits = [f["reach"][t] for f in runs if f["reach"][t] is not None]
        out[t] = (mean(hits), len(hits))
    return out


def reach_text(s, t):
    value, hits = s[t]
    if not hits:
        return "never"
    return f"{value:.1f}" + ("" if hits == s["n"] else f" ({hits}/{s['n']})")


def main():
    lan = {(row, p): summary("lan", row, p, "none") for row, _ in ROWS for p, _ in PARTITIONS}
    wan = {(row, p, n): summary("wan", row, p, n) for row, _ in ROWS for p, _ in PARTITIONS for n, _ in NORMS}

    print("| partition | synchronizer | virtual s/epoch | s to 0.80 | s to 0.85 | % of LAN speed "
          "| final accuracy | seeds | WAN MB/step | significant |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p, plabel in PARTITIONS:
        for row, label in ROWS:
            s = wan[(row, p, "none")]
            if s is None:
                continue
            base = lan[(row, p)]
            speed = f"{100 * base['epoch_s'] / s['epoch_s']:.1f}" if base else ""
            sig = f"{100 * s['significant']:.1f} %" if s["significant"] is not None else ""
            acc = f"{s['acc']:.4f} ± {s['sd']:.4f}" + (f" ({s['diverged']} diverged)" if s["diverged"] else "")
            print(f"| {plabel} | {label} | {s['epoch_s']:.2f} | {reach_text(s, 0.80)} | {reach_text(s, 0.85)} "
                  f"| {speed} | {acc} | {s['n']} | {s['wan_mb']:.3f} | {sig} |")
    print()

    head = " | ".join(f"{pl} {nl}" for p, pl in PARTITIONS for n, nl in NORMS)
    print(f"| synchronizer | {head} | skew:1 costs (none / group / batch) |")
    print("|---|" + "---:|" * (len(PARTITIONS) * len(NORMS) + 1))
    for row, label in ROWS:
        if not any(wan[(row, p, n)] for p, _ in PARTITIONS for n, _ in NORMS):
            continue
        cells, costs = [], []
        for p, _ in PARTITIONS:
            for n, _ in NORMS:
                s = wan[(row, p, n)]
                cells.append(f"{s['acc']:.4f}" + ("" if s["n"] == 3 else f" ({s['n']})") if s else "")
        for n, _ in NORMS:
            a, b = wan[(row, "iid", n)], wan[(row, "skew1", n)]
            costs.append(f"{100 * (a['acc'] - b['acc']):.1f}" if a and b else "")
        print(f"| {label} | " + " | ".join(cells) + " | " + " / ".join(costs) + " |")
    print()

    # The bars, against hierarchical BSP (the fair baseline), norm none.
    print("| bar | synchronizer | measured | met |")
    print("|---|---|---|---|")
    bsp, hd = wan[("bsp-hier", "iid", "none")], wan[("bsp-hd", "iid", "none")]
    for row in ("gaia1", "gaia20", "gaia1-s1", "gaia1-p32"):
        s, base = wan[(row, "iid", "none")], lan[(row, "iid")]
        if not (s and bsp and hd and base):
            continue
        label = dict(ROWS)[row]
        points = 100 * (s["acc"] - bsp["acc"])
        speed = 100 * base["epoch_s"] / s["epoch_s"]
        share = 100 * s["wan_mb"] / bsp["wan_mb"]
        print(f"| iid: within 0.5 point of BSP | {label} | {points:+.2f} points | {'yes' if points >= -0.5 else 'no'} |")
        print(f"| iid: 80 % of LAN speed or more | {label} | {speed:.1f} % | {'yes' if speed >= 80 else 'no'} |")
        print(f"| iid: under 10 % of BSP's WAN bytes | {label} | {share:.1f} % "
              f"({100 * s['wan_mb'] / hd['wan_mb']:.1f} % of halving-doubling's) | {'yes' if share < 10 else 'no'} |")
    # Each SkewScout row against the synchronizer it turns, the local SGD ones
    # also against Gaia 20 %, whose loss the study's bar names; then its bytes.
    # Local SGD at fixed periods of 2 to 4 steps follows, measured alike: the
    # points between which SkewScout moves local SGD's period.
    lsgd_refs = ("localsgd", "gaia20")
    for scout, refs in (("skewscout", ("gaia1",)), ("skewscout20", ("gaia20",)), ("skewscout-p8", ("gaia1",)),
                        ("skewscout20-p8", ("gaia20",)), ("skewscout20-host", ("gaia20",)),
                        ("skewscout-lsgd", lsgd_refs), ("skewscout-lsgd-host", lsgd_refs),
                        ("skewscout-lsgd-host-t10", lsgd_refs), ("skewscout-lsgd-host-t20", lsgd_refs),
                        ("skewscout-lsgd-sync", lsgd_refs), ("skewscout-lsgd-host-sync", lsgd_refs),
                        ("skewscout-lsgd-host-sync-min2", lsgd_refs), ("skewscout-lsgd-host-sync-min3", lsgd_refs),
                        ("localsgd-h2", lsgd_refs), ("localsgd-h3", lsgd_refs), ("localsgd-h4", lsgd_refs)):
        sc, bs = wan[(scout, "skew1", "none")], wan[("bsp-hier", "skew1", "none")]
        if not (sc and bs):
            continue
        label = dict(ROWS)[scout]
        for ref in refs:
            gs = wan[(ref, "skew1", "none")]
            if not gs:
                continue
            lost = bs["acc"] - gs["acc"]
            if lost > 0:
                rec = 100 * (sc["acc"] - gs["acc"]) / lost
                print(f"| skew:1: recovers two thirds of {dict(ROWS)[ref]}'s loss to BSP ({100 * lost:.2f} points) "
                      f"| {label} | {rec:.0f} % | {'yes' if rec >= 200 / 3 else 'no'} |")
            else:
                print(f"| skew:1: recovers two thirds of {dict(ROWS)[ref]}'s loss to BSP (none: "
                      f"{-100 * lost:.2f} points above) | {label} | nothing to recover | - |")
        share = 100 * sc["wan_mb"] / bs["wan_mb"]
        print(f"| skew:1: under half of BSP's WAN bytes | {label} | {share:.1f} % | {'yes' if share < 50 else 'no'} |")


if __name__ == "__main__":
    main()
