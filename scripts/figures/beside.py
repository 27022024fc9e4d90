"""Synchronization beside training: SIMULATION.md's SSPSync table and
EXPERIMENTS.md's ShadowSync tables (scripts/studies/ssp, shadow and
shadow-bed), and
docs/benchmarks.md's background-channel tables (scripts/bench/background).
Each is the table its study's own script prints from the records, read back
here, so that the numbers are computed in one place."""
import os
import subprocess
import sys

from figures.lib import claim, path, table

SSP = "docs/experiments/ssp-2026-12-04/runs"
SHADOW = "docs/experiments/shadow-2026-12-04/runs"
SHADOW_BED = ["docs/experiments/shadow-bed-2026-12-05/pace", "docs/experiments/shadow-bed-2026-12-05/long",
              "docs/experiments/shadow-bed-2026-12-05/evals8"]
BACKGROUND = ["docs/experiments/background-2026-12-04/background.csv",
              "docs/experiments/background-2026-12-04/unused_cost.csv"]


def printed_tables(script, folder):
    """The markdown tables `script FOLDER` prints, each a list of rows of cells
    (the alignment rows left out)."""
    out = subprocess.run([sys.executable, path(script), path(folder)], check=True,
                         capture_output=True, text=True).stdout
    tables, current = [], None
    for line in out.split("\n"):
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if all(set(c) <= set("-:") for c in cells):
                continue
            if current is None:
                current = []
                tables.append(current)
            current.append(cells)
        else:
            current = None
    return tables


@table("ssp", [SSP])
def ssp(records):
    return printed_tables("scripts/studies/ssp-table.py", os.path.dirname(records[0]))[0]


@table("shadow", [SHADOW])
def shadow(records):
    return printed_tables("scripts/studies/shadow-table.py", os.path.dirname(records[0]))[0]


def shadow_bed_tables():
    return printed_tables("scripts/studies/shadow-bed-table.py", os.path.dirname(SHADOW_BED[0]))


@table("shadow-bed", SHADOW_BED)
def shadow_bed(records):
    return shadow_bed_tables()[0]


@table("shadow-bed-long", SHADOW_BED)
def shadow_bed_long(records):
    return shadow_bed_tables()[1]


@table("shadow-bed-records", SHADOW_BED)
def shadow_bed_records(records):
    return shadow_bed_tables()[2]


@table("background-overlap", BACKGROUND)
def background_overlap(records):
    return printed_tables("scripts/bench/background-table.py", os.path.dirname(records[0]))[0]


@table("background-unused", BACKGROUND)
def background_unused(records):
    return printed_tables("scripts/bench/background-table.py", os.path.dirname(records[0]))[1]


def _shadow_bed_claims():
    if not all(os.path.isdir(path(r)) for r in SHADOW_BED):
        return
    main_t, long_t, records_t = shadow_bed_tables()

    def find(t, name, start, epochs=None):
        for r in t:
            if r[0] == name and r[1] == start and (epochs is None or r[2] == epochs):
                return r
        raise KeyError((name, start))

    doc = "EXPERIMENTS.md"
    ma234, ma117, ma58 = (find(main_t, "shadow-ma", f"every {p} steps") for p in (234, 117, 58))
    l234, l117 = (find(long_t, "shadow-ma", f"every {p} steps") for p in (234, 117))
    ds, bsp = find(long_t, "DS-Sync g=2", ""), find(long_t, "BSP (ring all-reduce)", "")
    claim(doc, f"Model averaging every 234 steps runs at {ma234[3]} of the pace of computing alone "
          f"over 3 epochs and {l234[4]} over 12", SHADOW_BED[:2])
    claim(doc, f"every 117 steps the same averaging reads {ma117[3].split()[0]} in the 3-epoch set and "
          f"{l117[4].split()[0]} in the 12-epoch one", SHADOW_BED[:2])
    claim(doc, f"every 58 steps it is under it ({ma58[3].split()[0]})", SHADOW_BED[:1])
    def secs(c):  # "7.1 (6.4-7.3)" -> "7.1 s (6.4-7.3)"
        v, _, rest = c.partition(" ")
        return f"{v} s {rest}".strip()
    claim(doc, f"Model averaging every 234 steps reaches 0.85 after {secs(l234[6])}, against DS-Sync g=2's "
          f"{secs(ds[6])} and BSP's {secs(bsp[6].split()[0])}", SHADOW_BED)
    claim(doc, f"ends at {l234[7].split()[0]} after 12 epochs", SHADOW_BED[1:2])
    costs = [find(main_t, "shadow-ma", s)[7].split()[0]
             for s in ("when free", "every 58 steps", "every 117 steps", "every 234 steps")]
    claim(doc, f"model averaging: {costs[0]}, {costs[1]}, {costs[2]} and {costs[3]} ms started when free",
          SHADOW_BED[:1])
    m58 = find(records_t, "shadow-ma", "every 58 steps")
    claim(doc, f"the mean merge lag fell to {float(m58[3].split()[0]):.0f} steps, from "
          f"{float(m58[5].split()[0]):.0f} with one record an epoch) and the pace read "
          f"{float(m58[2].split()[0]):.2f} instead of {float(m58[4].split()[0]):.2f}", SHADOW_BED[::2])


_shadow_bed_claims()
