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
import os
import re
import statistics

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


def median(values):
    return statistics.median(values)


def fmt(value, digits):
    """Fixed-point with `digits` decimals, as the documents print them."""
    return f"{value:.{digits}f}"


def sig(value, digits=3):
    """`digits` significant digits, no exponent for the sizes we print."""
    if value == 0:
        return "0"
    text = f"{value:.{digits}g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        return f"{float(mantissa) * 10 ** int(exponent):.0f}"
    return text


def gbench_medians(record, key="real_time"):
    """Google Benchmark JSON -> {run_name: median of `key` over repetitions}.

    Uses the `_median` aggregates when the run wrote them, else the median of
    the iteration rows.
    """
    data = read_json(record)
    rows = {}
    medians = {}
    for b in data["benchmarks"]:
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                medians[b["run_name"]] = b[key]
        else:
            rows.setdefault(b.get("run_name", b["name"]), []).append(b[key])
    out = {name: statistics.median(v) for name, v in rows.items()}
    out.update(medians)
    return out


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
