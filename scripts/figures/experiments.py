"""EXPERIMENTS.md: the Fashion-MNIST study and time to accuracy on the shaped network."""
import glob
import math
import os
import re
import statistics

from figures.lib import claim, epochs_to, path, per_epoch, read_csv, table, time_to

STUDY = "docs/experiments/fashion-mnist-2026-12-04/runs"
ORDER = ["bsp", "dssync_g2_random", "dssync_g2_butterfly", "dssync_g4_random",
         "dssync_g2_noshuffle", "gossip_ring", "localsgd_h8"]
NAMES = {"bsp": "BSP (all-reduce of gradients)", "dssync_g2_random": "DS-Sync g=2, random",
         "dssync_g2_butterfly": "DS-Sync g=2, butterfly", "dssync_g4_random": "DS-Sync g=4, random",
         "dssync_g2_noshuffle": "DS-Sync g=2, no shuffle", "gossip_ring": "gossip, ring",
         "localsgd_h8": "local SGD, H=8 (all-reduce every 8 steps)"}


def study_runs(record):
    """{configuration: [rows of one seed's run]} from scripts/studies/experiments' runs."""
    runs = {}
    for p in sorted(glob.glob(os.path.join(path(record), "*_seed*.csv"))):
        name = os.path.basename(p).rsplit("_seed", 1)[0]
        runs.setdefault(name, []).append(read_csv(os.path.relpath(p, path(""))))
    return runs


def half_range(values):
    return (max(values) - min(values)) / 2


@table("fashion-mnist", [STUDY])
def fashion_mnist(records):
    runs = study_runs(records[0])
    rows = [["synchronizer", "test acc, averaged model", "test acc, worst worker",
             "MB sent / worker / epoch", "vs BSP bytes", "consensus distance at the end"]]
    bsp = None
    for name in ORDER:
        finals = [r[-1] for r in runs[name]]
        acc = [float(r["test_acc_avg"]) for r in finals]
        worst = [float(r["test_acc_worst"]) for r in finals]
        mb = statistics.mean(statistics.mean(float(x["bytes_per_worker"]) for x in r[1:]) / 1e6
                             for r in runs[name])
        bsp = mb if name == "bsp" else bsp
        cons = statistics.mean(float(r["consensus"]) for r in finals)
        rows.append([NAMES[name], f"{statistics.mean(acc):.4f} ± {half_range(acc):.4f}",
                     f"{statistics.mean(worst):.4f} ± {half_range(worst):.4f}", f"{mb:.1f}",
                     f"{mb / bsp:.3f}", f"{cons:.2g}".replace("e-0", "e-").replace("e+0", "e")])
    return rows


# Time to accuracy on the bed: one CSV per seed, each holding DS-Sync's and
# BSP's runs (`label` column), one row per evaluation.
DSSYNC, BSP = "dssync g=2 random", "bsp allreduce"
TARGETS = [0.84, 0.845, 0.85, 0.855, 0.86, 0.865]


def bed_runs(record):
    """[(seed, {label: rows})] of one bed directory."""
    seeds = []
    for p in sorted(glob.glob(os.path.join(path(record), "seed*.csv"))):
        by_label = {}
        for row in read_csv(os.path.relpath(p, path(""))):
            by_label.setdefault(row["label"], []).append(row)
        seeds.append((os.path.basename(p)[4:-4], by_label))
    return seeds


def spread(values, digits, unit=""):
    """'median (min-max)' over seeds; a seed that never got there counts as infinite."""
    def f(v):
        return "never" if math.isinf(v) else f"{v:.{digits}f}"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{f(med)}{unit}"
    return f"{f(med)}{unit} ({f(min(values))}-{f(max(values))})"


def bed_table(record):
    seeds = bed_runs(record)
    rows = [["target accuracy", "DS-Sync g=2, random", "BSP", "BSP / DS-Sync"]]

    def line(label, ds, bsp, digits=1, unit=" s"):
        ratio = [b / d if not math.isinf(d) else 0.0 for d, b in zip(ds, bsp)]
        rows.append([label, spread(ds, digits, unit), spread(bsp, digits, unit), spread(ratio, 2)])

    def both(f):
        return [f(s[DSSYNC]) for _, s in seeds], [f(s[BSP]) for _, s in seeds]

    for t in TARGETS:
        line(f"{t:.3f}", *both(lambda rows: time_to(rows, t)))
    finals = [float(s[BSP][-1]["test_acc_avg"]) - 0.005 for _, s in seeds]
    line("BSP's final - 0.005", [time_to(s[DSSYNC], f) for (_, s), f in zip(seeds, finals)],
         [time_to(s[BSP], f) for (_, s), f in zip(seeds, finals)])
    line("one epoch", *both(per_epoch))
    for t in (0.85, 0.86):
        line(f"epochs to {t:.3f}", *both(lambda rows: epochs_to(rows, t)), digits=3, unit="")
    rows.append(["final accuracy", spread([float(s[DSSYNC][-1]["test_acc_avg"]) for _, s in seeds], 4),
                 spread([float(s[BSP][-1]["test_acc_avg"]) for _, s in seeds], 4), ""])
    return rows


for _rate in ("100mbit", "25mbit", "25mbit-fifo"):
    table(f"bed-{_rate}", [f"docs/experiments/bed-{_rate}-2026-12-04"])(lambda records: bed_table(records[0]))


# The training example's epoch beside PyTorch's: scripts/bench/train's rounds.
SPEED = "docs/experiments/train-speed-2026-12-07"
# The compute of the same day as the bed runs below (bed-steps).
SPEED_BED = "docs/experiments/train-speed-2026-12-04"
SPEED_NAMES = {"dssync g=2 random": "`dssync_train`, 8 workers, DS-Sync g=2",
               "bsp allreduce": "`dssync_train`, 8 workers, BSP",
               "none": "`dssync_train`, 8 workers, no synchronization"}


def speed_rows(record):
    """[(label, [seconds per epoch, one per round])]: ours from the rounds' CSVs, PyTorch's from rounds.txt."""
    ours = {}
    for p in sorted(glob.glob(os.path.join(path(record), "round*.csv"))):
        for row in read_csv(os.path.relpath(p, path(""))):
            if row["epoch"] != "0":
                ours.setdefault(row["label"], []).append(float(row["seconds"]))
    out = [(SPEED_NAMES.get(k, k), v) for k, v in ours.items()]
    torch = {}
    with open(os.path.join(path(record), "rounds.txt")) as f:
        for line in f:
            m = re.match(r"pytorch (\S+) cpu, (\d+) threads, batch (\d+): ([\d.]+) s per epoch", line)
            if m:
                blas = "OpenBLAS" if "openblas" in line.rsplit("BLAS", 1)[-1] else "reference BLAS"
                key = (f"PyTorch {m.group(1).split('+')[0]} on the CPU ({blas}), one process, "
                       f"{m.group(2)} threads, batch {m.group(3)}")
                torch.setdefault(key, []).append(float(m.group(4)))
    return out + list(torch.items())


@table("train-speed", [SPEED])
def train_speed(records):
    rows = [["", "seconds per epoch (60,000 images): median (lowest-highest)"]]
    for label, v in speed_rows(records[0]):
        rows.append([label, f"{statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})"])
    return rows


def _study_claims():
    runs = study_runs(STUDY)

    def final(name, key):
        return statistics.mean(float(r[-1][key]) for r in runs[name])

    def spread_points(name):
        acc = [float(r[-1]["test_acc_avg"]) for r in runs[name]]
        return 100 * (max(acc) - min(acc))
    ds, bsp = final("dssync_g2_random", "test_acc_avg"), final("bsp", "test_acc_avg")
    claim("EXPERIMENTS.md", f"DS-Sync with pairs and a random shuffle ends {100 * (bsp - ds):.2f} points "
          f"below BSP ({ds:.4f} against {bsp:.4f})", [STUDY])
    claim("EXPERIMENTS.md", f"the three seeds' ranges ({spread_points('dssync_g2_random'):.2f} and "
          f"{spread_points('bsp'):.2f} points)", [STUDY])
    g4, bf = final("dssync_g4_random", "test_acc_avg"), final("dssync_g2_butterfly", "test_acc_avg")
    claim("EXPERIMENTS.md", f"Groups of 4 end {100 * (bsp - g4):.2f} points below BSP and the butterfly "
          f"{100 * (bsp - bf):.2f}", [STUDY])
    ns_acc, ns_worst = final("dssync_g2_noshuffle", "test_acc_avg"), final("dssync_g2_noshuffle",
                                                                           "test_acc_worst")
    ns_cons = final("dssync_g2_noshuffle", "consensus")
    claim("EXPERIMENTS.md", f"the consensus distance grows to {ns_cons:.0f} and stays there, and the "
          f"average of the four models is a worse model ({ns_acc:.3f}) than any of them (worst "
          f"{ns_worst:.3f})", [STUDY])
    loc = final("localsgd_h8", "test_acc_avg")
    claim("EXPERIMENTS.md", f"sends an eighth of the bytes and ends {100 * (bsp - loc):.2f} points below BSP",
          [STUDY])


_study_claims()


# The step on the bed, split: what the link's rate allows for the bytes a
# worker sends, and the compute of 8 workers on the 2 cores.
MODEL_BYTES = 940584
STEPS_PER_EPOCH = 60000 // (8 * 32)
RATES = [("100 Mbit/s", "docs/experiments/bed-100mbit-2026-12-04", 100e6 / 8),
         ("25 Mbit/s", "docs/experiments/bed-25mbit-2026-12-04", 25e6 / 8)]


def step_split(records):
    speed = dict(speed_rows(records[-1]))
    compute = statistics.median(speed[SPEED_NAMES["none"]]) / STEPS_PER_EPOCH
    header = ["ms per step"]
    measured, wire, rest = ["measured (median over seeds)"], \
        ["the bytes a worker sends, at the link's rate"], ["left: measured - bytes - compute"]
    comp = ["compute: 8 workers on the 2 cores, no synchronization"]
    for (rate, _, bytes_per_s), record in zip(RATES, records[:-1]):
        seeds = bed_runs(record)
        for label, name, sent in ((DSSYNC, "DS-Sync g=2", MODEL_BYTES),
                                  (BSP, "BSP", 2 * 7 / 8 * MODEL_BYTES)):
            step = statistics.median(per_epoch(s[label]) for _, s in seeds) / STEPS_PER_EPOCH
            header.append(f"{name}, {rate}")
            measured.append(f"{1000 * step:.0f}")
            wire.append(f"{1000 * sent / bytes_per_s:.0f}")
            comp.append(f"{1000 * compute:.0f}")
            rest.append(f"{1000 * (step - sent / bytes_per_s - compute):.0f}")
    return [header, measured, wire, comp, rest]


table("bed-steps", [r for _, r, _ in RATES] + [SPEED_BED])(step_split)


def _bed_claims():
    """The figures of "What DS-Sync gains here", each from its bed's records."""
    doc = "EXPERIMENTS.md"
    for rate, record, _ in RATES:
        seeds = bed_runs(record)

        def med(f):
            return statistics.median(f(s) for _, s in seeds)
        step = med(lambda s: per_epoch(s[BSP]) / per_epoch(s[DSSYNC]))
        at = {t: med(lambda s: time_to(s[BSP], t) / time_to(s[DSSYNC], t)) for t in TARGETS}
        claim(doc, f"At {rate} a DS-Sync step is {step:.2f}x faster than BSP's", [record])
        claim(doc, f"at {rate} it reaches 0.84 {at[0.84]:.2f}x, 0.85 {at[0.85]:.2f}x and 0.86 "
              f"{at[0.86]:.2f}x sooner", [record])


_bed_claims()
