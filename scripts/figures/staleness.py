"""EXPERIMENTS.md: the staleness study (Dai et al.), from scripts/studies/staleness's record."""
import statistics

from figures.lib import read_csv, table

RECORD = "docs/experiments/staleness-2026-12-04/runs.csv"
MODELS = {"softmax": "softmax regression", "mlp128": "MLP 128", "mlp256-128": "MLP 256,128",
          "mlp256-256-128": "MLP 256,256,128"}
OPTIMIZERS = {"sgd": "SGD, lr 0.5", "momentum": "momentum 0.9, lr 0.05"}


def ratios(rows):
    """{(model, optimizer, s): ([steps / s = 0's steps of each seed that reached], seeds)}."""
    base = {(r["model"], r["optimizer"], r["seed"]): r["steps_to_target"] for r in rows
            if r["s"] == "0"}
    out = {}
    for r in rows:
        key = (r["model"], r["optimizer"], int(r["s"]))
        reached, seeds = out.setdefault(key, ([], []))
        seeds.append(r["seed"])
        b = base[(r["model"], r["optimizer"], r["seed"])]
        if r["steps_to_target"] and b:
            reached.append(int(r["steps_to_target"]) / int(b))
    return out


def cell(reached, seeds):
    """'mean (min-max)' over the seeds; else the ratios of those that reached the target and
    how many did not."""
    if len(reached) < len(seeds):
        missing = len(seeds) - len(reached)
        if not reached:
            return "not reached"
        return f"{', '.join(f'{x:.2f}' for x in reached)}; {missing} of {len(seeds)} not reached"
    return f"{statistics.mean(reached):.2f} ({min(reached):.2f}-{max(reached):.2f})"


@table("staleness", [RECORD])
def staleness(records):
    rows = read_csv(records[0])
    r = ratios(rows)
    s_values = sorted({int(x["s"]) for x in rows} - {0})
    out = [["model", "optimizer", "target", "steps at s = 0, mean (min-max)"]
           + [f"s = {s}" for s in s_values]]
    for model, name in MODELS.items():
        for opt, opt_name in OPTIMIZERS.items():
            base = [int(x["steps_to_target"]) for x in rows if (x["model"], x["optimizer"], x["s"])
                    == (model, opt, "0") and x["steps_to_target"]]
            runs = [x for x in rows if (x["model"], x["optimizer"]) == (model, opt)]
            if not runs:
                continue
            steps = (f"{statistics.mean(base):.0f} ({min(base)}-{max(base)})" if base
                     else "not reached")
            out.append([name, opt_name, runs[0]["target"], steps]
                       + [cell(*r[(model, opt, s)]) if (model, opt, s) in r else "-"
                          for s in s_values])
    return out
