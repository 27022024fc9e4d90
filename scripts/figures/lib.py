"""What scripts/check-figures checks, and the helpers its figure modules use.

A document states a measured figure in one of two ways:

- A table. The line `<!-- table: NAME -->` stands right above it; NAME is a
  table some module of scripts/figures/ registers with `@table(NAME, records)`.
  Its function reads the records and returns the table's rows (header first,
  the separator row left out) as lists of cell strings; the document's table
  must be those cells, letter for letter (bold marks and surrounding blanks
  aside). A table of no measurement (a list of policies, a flag reference) is
  marked `<!-- table: reference -->`. Every table of a checked document carries
  one of the two marks.
- A figure in the prose. A module registers `claim(doc, text, records)`: the
  text, formatted from the records, must occur in the document.

Either way the document must name every record its figures come from (the
path as written in the repository, relative to its root), and every record
must exist.
"""
import csv
import json
import math
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TABLES = {}   # name -> (records, function)
CLAIMS = []   # (doc, text, records)


def table(name, records):
    def register(function):
        if name in TABLES:
            raise ValueError(f"table {name} registered twice")
        TABLES[name] = (list(records), function)
        return function
    return register


def claim(doc, text, records):
    CLAIMS.append((doc, text, list(records)))


def path(record):
    return os.path.join(ROOT, record)


def read_csv(record):
    with open(path(record), newline="") as f:
        return list(csv.DictReader(f))


def read_json(record):
    with open(path(record)) as f:
        return json.load(f)


# Google Benchmark's JSON.
UNIT = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def gbench(record, aggregate="median"):
    """{run_name: its median (or another aggregate's) row} of a Google Benchmark JSON."""
    return {b["run_name"]: b for b in read_json(record)["benchmarks"]
            if b.get("run_type") == "aggregate" and b.get("aggregate_name") == aggregate}


def seconds(row, key="real_time"):
    """A Google Benchmark row's time in seconds."""
    return row[key] * UNIT[row.get("time_unit", "ns")]


# The training example's CSV: one row per evaluation, `wall_seconds` the
# training time so far.
def time_to(rows, target):
    """Training seconds until the averaged model first reached target (inf: never)."""
    return next((float(r["wall_seconds"]) for r in rows if float(r["test_acc_avg"]) >= target),
                math.inf)


def epochs_to(rows, target):
    """Epochs trained until the averaged model first reached target (inf: never)."""
    return next((float(r["epoch"]) for r in rows if float(r["test_acc_avg"]) >= target), math.inf)


def per_epoch(rows):
    """Training seconds per epoch over a run."""
    return float(rows[-1]["wall_seconds"]) / float(rows[-1]["epoch"])


MARK = re.compile(r"^<!--\s*table:\s*(\S+)\s*-->\s*$")


def split_row(line):
    cells = line.strip().strip("|").split("|")
    return [c.strip().replace("**", "") for c in cells]


def doc_tables(text):
    """[(line number, mark or None, rows)] of every markdown table in text."""
    lines = text.split("\n")
    found = []
    i = 0
    in_code = False
    while i < len(lines):
        if lines[i].startswith("```"):
            in_code = not in_code
        if not in_code and lines[i].startswith("|") and i + 1 < len(lines) \
                and re.match(r"^\|[\s:|-]+\|\s*$", lines[i + 1]):
            start = i
            rows = [split_row(lines[i])]
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(split_row(lines[i]))
                i += 1
            j = start - 1
            while j >= 0 and not lines[j].strip():
                j -= 1
            m = MARK.match(lines[j].strip()) if j >= 0 else None
            found.append((start + 1, m.group(1) if m else None, rows))
            continue
        i += 1
    return found
