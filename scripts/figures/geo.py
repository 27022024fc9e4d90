"""Across data centers and skewed data: SIMULATION.md's geo study
(scripts/studies/geo) and EXPERIMENTS.md's skewed-data table
(scripts/studies/skew). Each is the table its study's own script prints from
the records, read back here, so that the numbers are computed in one place."""
import os

from figures.beside import printed_tables
from figures.lib import table

GEO = "docs/experiments/geo-2026-12-05/runs"
GEO_LR005 = "docs/experiments/geo-2026-12-05/lr0.05/runs"
SKEW = "docs/experiments/skew-2026-12-05/runs"


def geo(index):
    return lambda records: printed_tables("scripts/studies/geo-table.py", os.path.dirname(records[0]))[index]


table("geo", [GEO])(geo(0))
table("geo-norms", [GEO])(geo(1))
table("geo-bars", [GEO])(geo(2))
table("geo-lr0.05", [GEO_LR005])(geo(0))
table("geo-bars-lr0.05", [GEO_LR005])(geo(2))


@table("skew", [SKEW])
def skew(records):
    return printed_tables("scripts/studies/skew-table.py", os.path.dirname(records[0]))[0]
