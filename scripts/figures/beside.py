"""Synchronization beside training: SIMULATION.md's SSPSync table and
EXPERIMENTS.md's ShadowSync table (scripts/studies/ssp and shadow), and
docs/benchmarks.md's background-channel tables (scripts/bench/background).
Each is the table its study's own script prints from the records, read back
here, so that the numbers are computed in one place."""
import os
import subprocess
import sys

from figures.lib import path, table

SSP = "docs/experiments/ssp-2026-12-04/runs"
SHADOW = "docs/experiments/shadow-2026-12-04/runs"
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


@table("background-overlap", BACKGROUND)
def background_overlap(records):
    return printed_tables("scripts/bench/background-table.py", os.path.dirname(records[0]))[0]


@table("background-unused", BACKGROUND)
def background_unused(records):
    return printed_tables("scripts/bench/background-table.py", os.path.dirname(records[0]))[1]
