"""EXPERIMENTS.md, "Sufficient factor broadcasting": SFBSync in the training
example against BSP and DS-Sync g=2 (scripts/studies/sfb).

Records under docs/experiments/sfb-2026-12-04: bed-mlp/, bed-softmax/ and
bed-none/ (the shaped network, scripts/studies/bed-training), reconstruct.csv
(scripts/studies/sfb-reconstruct.cpp), bytes/ and sim/ (the simulated network,
two steps a run). The bytes' closed forms are computed here, from the shapes.
"""
import glob
import math
import os
import statistics

from figures.lib import claim, gbench, path, read_csv, seconds, table, time_to

DOC = "EXPERIMENTS.md"
DIR = "docs/experiments/sfb-2026-12-04"
BED, SOFTMAX, NONE = f"{DIR}/bed-mlp", f"{DIR}/bed-softmax", f"{DIR}/bed-none"
BED25 = f"{DIR}/bed-mlp-25mbit"
RECONSTRUCT, BYTES, SIM = f"{DIR}/reconstruct.csv", f"{DIR}/bytes", f"{DIR}/sim"
INPROC = f"{DIR}/inproc"

BSP, HYBRID, FACTORS, DSSYNC = "bsp allreduce", "sfb hybrid", "sfb factors", "dssync g=2 random"
ROWS = [(BSP, "BSP (ring all-reduce)"), (HYBRID, "SFB hybrid"), (FACTORS, "SFB, all factors"),
        (DSSYNC, "DS-Sync g=2")]
SOFTMAX_SUFFIX = " softmax"

# The models as SFBSync sees them: (rows, cols) of each weight matrix, and the
# parameter count (weights and biases).
MLP = [(256, 784), (128, 256), (10, 128)]
SOFTMAX_LAYERS = [(10, 784)]


def size(layers):
    return sum(r * c + r for r, c in layers)


# ----------------------------------------------------------- closed forms --
def ring_all_reduce(n_floats, n, p):
    """Bytes rank p sends in a ring all-reduce of n_floats floats over n ranks:
    the buffer in n blocks (the first n_floats mod n one longer); the
    reduce-scatter sends every block but p+1, the all-gather every block but p+2."""
    if n == 1:
        return 0

    def block(i):
        return n_floats // n + (1 if i < n_floats % n else 0)
    return 4 * (2 * n_floats - block((p + 1) % n) - block((p + 2) % n))


def limit(rows, cols):
    """The most sum k for which a layer goes as factors: sum k (rows + cols) < 2 rows cols."""
    return (2 * rows * cols - 1) // (rows + cols)


def sfb_bytes(layers, n, k, p, mode):
    """Bytes rank p sends in one SFBSync step, every rank with k samples."""
    sent = 8 * (n - 1) * len(layers)  # the k's, Bruck's all-gather: n-1 blocks of L 8-byte k's
    dense = size(layers)
    for rows, cols in layers:
        if mode == "factors" or n * k <= limit(rows, cols):
            sent += 4 * (n - 1) * k * (rows + cols)  # ring all-gather of [U | V]
            dense -= rows * cols
    return sent + ring_all_reduce(dense, n, p)


def predicted(label, layers, n, k, p):
    if label.startswith(BSP):
        return ring_all_reduce(size(layers), n, p)
    if label.startswith(HYBRID):
        return sfb_bytes(layers, n, k, p, "hybrid")
    if label.startswith(FACTORS):
        return sfb_bytes(layers, n, k, p, "factors")
    if label.startswith(DSSYNC):
        return ring_all_reduce(size(layers), 2, p % 2)  # the ring of its pair
    raise ValueError(label)


def predicted_max(label, layers, n, k):
    """What the example reports: the most any worker sent."""
    return max(predicted(label, layers, n, k, p) for p in range(n))


def predicted_mean(label, layers, n, k):
    return statistics.mean(predicted(label, layers, n, k, p) for p in range(n))


# ------------------------------------------------------------- the records --
def runs(record):
    """[(seed, {label: rows})] of a directory of the example's CSVs."""
    out = []
    for p in sorted(glob.glob(os.path.join(path(record), "*.csv"))):
        by_label = {}
        for row in read_csv(os.path.relpath(p, path(""))):
            by_label.setdefault(row["label"], []).append(row)
        out.append((os.path.basename(p)[:-4], by_label))
    return out


def window_steps(rows, n=8, batch=32, samples=60000, epochs=1):
    """Steps in each evaluation window (rows after the start), as the example cuts an epoch."""
    steps = samples // n // batch
    parts = (len(rows) - 1) // epochs
    return [steps * (i + 1) // parts - steps * i // parts for i in range(parts)] * epochs


def ms_per_step(rows):
    """ms per step of each window of a run."""
    return [1000 * float(r["seconds"]) / s for r, s in zip(rows[1:], window_steps(rows))]


def bytes_per_step(rows):
    return [float(r["bytes_per_worker"]) / s for r, s in zip(rows[1:], window_steps(rows))]


def spread(values, digits):
    med, lo, hi = (f"{v:.{digits}f}" for v in (statistics.median(values), min(values), max(values)))
    return med if lo == hi else f"{med} ({lo}-{hi})"


def bed_ratios(seeds, label):
    """Each window's ms per step over BSP's same window of the same seed."""
    return [x / b for _, s in seeds for x, b in zip(ms_per_step(s[label]), ms_per_step(s[BSP]))]


@table("sfb-bed", [BED])
def sfb_bed(records):
    return bed_rows(records[0], ROWS)


@table("sfb-bed-25mbit", [BED25])
def sfb_bed_25mbit(records):
    return bed_rows(records[0], ROWS[:2])


def bed_rows(record, which):
    seeds = runs(record)
    rows = [["synchronizer", "ms per step", "step / BSP's", "MB / worker / step, measured",
             "predicted", "bytes / BSP's", "final test accuracy"]]
    bsp_bytes = predicted_max(BSP, MLP, 8, 32)
    for label, name in which:
        ms = [m for _, s in seeds for m in ms_per_step(s[label])]
        mb = [b / 1e6 for _, s in seeds for b in bytes_per_step(s[label])]
        pred = predicted_max(label, MLP, 8, 32)
        acc = [float(s[label][-1]["test_acc_avg"]) for _, s in seeds]
        rows.append([name, spread(ms, 0), spread(bed_ratios(seeds, label), 2), spread(mb, 4),
                     f"{pred / 1e6:.4f}", f"{pred / bsp_bytes:.3f}", spread(acc, 4)])
    return rows


# The hybrid with its traffic in the background (SFBOptions::background_channel),
# one sitting a build: each seed's run with the background, then the one in
# sequence, BSP first in both.
SITTING = "docs/experiments/sfb-beside-2026-12-05"
BUILDS = [("", "default (-O3)"), ("native/", "-march=native")]
BESIDE = " beside"


def background_records():
    return [f"{SITTING}/{sub}bed-mlp-{how}" for sub, _ in BUILDS for how in ("sequential", "beside")]


def background_rows(records, builds):
    """Per build, the sequential and then the background process runs (records
    in that order, two a build)."""
    rows = [["build", "synchronizer", "ms per step", "step / BSP's", "MB / worker / step, measured",
             "final test accuracy"]]
    for b, build in enumerate(builds):
        sequential, beside = runs(records[2 * b]), runs(records[2 * b + 1])
        for seeds, label, name in (
                (sequential, BSP, "BSP (ring all-reduce), the runs in sequence"),
                (sequential, HYBRID, "SFB hybrid, in sequence"),
                (beside, BSP, "BSP (ring all-reduce), the background runs"),
                (beside, HYBRID + BESIDE, "SFB hybrid, traffic in the background"),
                (beside, FACTORS + BESIDE, "SFB, all factors, traffic in the background")):
            ms = [m for _, s in seeds for m in ms_per_step(s[label])]
            mb = [x / 1e6 for _, s in seeds for x in bytes_per_step(s[label])]
            acc = [float(s[label][-1]["test_acc_avg"]) for _, s in seeds]
            rows.append([build, name, spread(ms, 0), spread(bed_ratios(seeds, label), 2),
                         spread(mb, 4), spread(acc, 4)])
    return rows


@table("sfb-bed-background", background_records())
def sfb_bed_background(records):
    return background_rows(records, [build for _, build in BUILDS])


# The same bed with the example's own kernel (FusedReconstruct, 2026-12-06),
# the default build only.
FUSED = "docs/experiments/sfb-fused-2026-12-06"
FUSED_RECORDS = [f"{FUSED}/bed-mlp-sequential", f"{FUSED}/bed-mlp-beside"]


@table("sfb-bed-fused", FUSED_RECORDS)
def sfb_bed_fused(records):
    return background_rows(records, ["default (-O3), the example's kernel"])


KERNELS_JSON = f"{FUSED}/bench/sfb_kernels.json"


@table("sfb-reconstruct-kernels", [KERNELS_JSON])
def sfb_reconstruct_kernels(records):
    """bench_sfb_kernels (scripts/bench/inproc): medians of 5 interleaved repetitions."""
    rows = gbench(records[0])
    shapes = ["256x784", "128x256"]
    kernels = list(dict.fromkeys(name.split("/")[1] for name in rows))
    ms = {(k, sh): seconds(rows[f"BM_Reconstruct/{k}/{sh}"]) * 1e3 for k in kernels for sh in shapes}
    gflops = {(k, sh): rows[f"BM_Reconstruct/{k}/{sh}"]["GFLOPs"] for k in kernels for sh in shapes}
    out = [["kernel (one thread, sum k = 256; median ms, GFLOP/s)"] +
           [f"{sh.replace('x', ' x ')}" for sh in shapes] + ["W1: time against Eigen's"]]
    for k in sorted(kernels, key=list(KERNELS).index):
        out.append([KERNELS[k]] + [f"{ms[(k, sh)]:.3f} ms, {gflops[(k, sh)]:.1f}" for sh in shapes] +
                   [f"{ms[(k, shapes[0])] / ms[('eigen', shapes[0])]:.2f}x"])
    return out


KERNELS = {"blocked": "`BlockedReconstruct`, the library's default",
           "eigen": "Eigen's GEMM (the example's until 2026-12-06)",
           "fused_avx512": "`FusedReconstruct`, AVX-512", "fused_avx2": "`FusedReconstruct`, AVX2 and FMA",
           "fused_portable": "`FusedReconstruct`, std::fma (no vector unit)"}


def _background_claims():
    recs = background_records()
    if not all(os.path.isdir(path(r)) for r in recs):
        return
    gap = max(abs(float(s[label][-1]["test_acc_avg"]) - float(s[BSP][-1]["test_acc_avg"]))
              for r in recs for _, s in runs(r) for label in s if label != BSP)
    claim(DOC, f"BSP's of the same run within {gap:.4f}, seed for seed", recs)
    rec = {(r["flags"], r["rows"]): float(r["min_ms"]) for r in read_csv(f"{SITTING}/reconstruct.csv")}
    base, native = rec[("-O3", "256")], rec[("-O3 -march=native", "256")]
    claim(DOC, f"the W1 rebuild {native:.2f} ms instead of {base:.2f} ms on one core",
          [f"{SITTING}/reconstruct.csv"])
    first = [f"{SITTING}/dense-only/bed-mlp-beside", f"{SITTING}/dense-only/bed-mlp-sequential"]
    if all(os.path.isdir(path(r)) for r in first):
        claim(DOC, f"gave no gain: {statistics.median(bed_ratios(runs(first[0]), HYBRID + BESIDE)):.2f}x "
              f"against {statistics.median(bed_ratios(runs(first[1]), HYBRID)):.2f}x in sequence",
              first)
    texts = ["With the default flags the hybrid's step takes {bes:.2f}x BSP's with its traffic "
             "in the background and {seq:.2f}x in sequence",
             "Built for this CPU, the hybrid's step takes {bes:.2f}x BSP's with its traffic in "
             "the background ({lo:.2f} to {hi:.2f} over the 12 windows) and {seq:.2f}x in sequence"]
    for b, text in enumerate(texts):
        seq, bes = runs(recs[2 * b]), runs(recs[2 * b + 1])
        ratios = bed_ratios(bes, HYBRID + BESIDE)
        claim(DOC, text.format(bes=statistics.median(ratios), lo=min(ratios), hi=max(ratios),
                               seq=statistics.median(bed_ratios(seq, HYBRID))),
              recs[2 * b:2 * b + 2])
    if all(os.path.isdir(path(r)) for r in FUSED_RECORDS):
        seq, bes = runs(FUSED_RECORDS[0]), runs(FUSED_RECORDS[1])
        ratios, in_sequence = bed_ratios(bes, HYBRID + BESIDE), bed_ratios(seq, HYBRID)
        claim(DOC, f"the hybrid's step takes {statistics.median(ratios):.2f}x BSP's with its traffic in the "
                   f"background ({min(ratios):.2f} to {max(ratios):.2f} over the 12 windows) and "
                   f"{statistics.median(in_sequence):.2f}x in sequence ({min(in_sequence):.2f} to "
                   f"{max(in_sequence):.2f})", FUSED_RECORDS)
        gap = max(abs(float(s[label][-1]["test_acc_avg"]) - float(s[BSP][-1]["test_acc_avg"]))
                  for r in FUSED_RECORDS for _, s in runs(r) for label in s if label != BSP)
        claim(DOC, f"every final accuracy within {gap:.4f} of BSP's in the same run", FUSED_RECORDS)
        kernels = gbench(KERNELS_JSON)
        w1 = {k: seconds(kernels[f"BM_Reconstruct/{k}/256x784"]) * 1e3 for k in ("eigen", "fused_avx512")}
        claim(DOC, f"rebuilds W1 in {w1['fused_avx512'] / w1['eigen']:.2f} of the time", [KERNELS_JSON])
        claim(DOC, f"8 rebuilds a step now cost about {8 * w1['fused_avx512'] / 2:.0f} ms on the 2 cores instead "
                   f"of {8 * w1['eigen'] / 2:.0f}", [KERNELS_JSON])


@table("sfb-softmax", [SOFTMAX])
def sfb_softmax(records):
    (_, s), = runs(records[0])
    (r, c), = SOFTMAX_LAYERS
    rows = [["softmax regression, seed 1", f"W ({r} x {c}) goes", "ms per step",
             "MB / worker / step, measured", "predicted", "final test accuracy"]]
    for label, name in ROWS[:2]:
        label += SOFTMAX_SUFFIX
        pred = predicted_max(label, SOFTMAX_LAYERS, 8, 32)
        how = "dense" if label.startswith(BSP) else \
            f"dense: sum k = {8 * 32} > {limit(r, c)} = floor((2 x {r} x {c} - 1) / ({r} + {c}))"
        rows.append([name, how, spread(ms_per_step(s[label]), 0),
                     spread([b / 1e6 for b in bytes_per_step(s[label])], 6), f"{pred / 1e6:.6f}",
                     f"{float(s[label][-1]['test_acc_avg']):.4f}"])
    return rows


@table("sfb-reconstruct", [RECONSTRUCT, NONE])
def sfb_reconstruct(records):
    recs = read_csv(records[0])
    (_, none), = runs(records[1])
    rows = [["layer (rows x cols), sum k = 256", "GFLOP", "ms, fastest of 200", "ms, median of 200",
             "goes as factors in the hybrid"]]
    for r in recs:
        rows_, cols, k = int(r["rows"]), int(r["cols"]), int(r["k"])
        rows.append([f"{rows_} x {cols}", f"{2 * rows_ * cols * k / 1e9:.3f}",
                     f"{float(r['min_ms']):.2f}", f"{float(r['median_ms']):.2f}",
                     "yes" if k <= limit(rows_, cols) else "no"])
    w1 = float(recs[0]["min_ms"])
    rows.append(["W1 for 8 ranks on 2 cores (8 x fastest / 2)", "", f"{8 * w1 / 2:.1f}", "", ""])
    rows.append(["bed, no synchronization: ms per step (compute of 8 ranks)", "",
                 spread(ms_per_step(none["none"]), 1), "", ""])
    return rows


@table("sfb-steps", [BED, NONE, RECONSTRUCT])
def sfb_steps(records):
    """The bed's step split: the bytes at the link's rate (100 Mbit/s), the
    compute (the bed without synchronization), the reconstruction's CPU (8
    ranks' GEMMs on 2 free cores, a lower bound) and what is left."""
    seeds = runs(records[0])
    (_, none), = runs(records[1])
    compute = statistics.median(ms_per_step(none["none"]))
    recon = read_csv(records[2])
    gemm = {(int(r["rows"]), int(r["cols"])): float(r["min_ms"]) for r in recon}
    header = ["ms per step (median over seeds and windows)"]
    measured, wire, comp, rec, left = (["measured"], ["the bytes a worker sends, at 100 Mbit/s"],
                                       ["compute: 8 workers on the 2 cores, no synchronization"],
                                       ["reconstruction: 8 ranks' GEMMs on 2 free cores"],
                                       ["left: measured - the three above"])
    for label, name in ROWS:
        header.append(name)
        step = statistics.median(m for _, s in seeds for m in ms_per_step(s[label]))
        mean = statistics.mean(predicted(label, MLP, 8, 32, p) for p in range(8))
        sent = 1000 * mean / (100e6 / 8)
        rebuilt = [(r, c) for r, c in MLP if label.startswith(FACTORS) or
                   (label.startswith(HYBRID) and 8 * 32 <= limit(r, c))]
        cpu = 8 * sum(gemm[rc] for rc in rebuilt) / 2
        measured.append(f"{step:.0f}")
        wire.append(f"{sent:.0f}")
        comp.append(f"{compute:.0f}")
        rec.append(f"{cpu:.0f}")
        left.append(f"{step - sent - compute - cpu:.0f}")
    return [header, measured, wire, comp, rec, left]


@table("sfb-inproc", [INPROC])
def sfb_inproc(records):
    """The bed's epoch as 8 threads sharing memory: the CPU's share of a step."""
    seeds = runs(records[0])
    rows = [["8 threads, no network", "ms per step", "step / BSP's",
             "synchronization: ms per step beyond no synchronization's"]]
    none = [m for _, s in seeds for m in ms_per_step(s["none"])]
    for label, name in ROWS + [("none", "no synchronization")]:
        ms = [m for _, s in seeds for m in ms_per_step(s[label])]
        extra = [m - n for m, n in zip(ms, none)]
        rows.append([name, spread(ms, 1), spread(bed_ratios(seeds, label), 2),
                     "" if label == "none" else spread(extra, 1)])
    return rows


@table("sfb-bytes", [BYTES])
def sfb_bytes_table(records):
    rows = [["(P, K)", "synchronizer", "predicted MB / worker / step, mean",
             "predicted, the most of any worker", "bytes in 2 steps, predicted (6 digits)",
             "measured (the CSV)", "equal"]]
    for p, k in [(8, 32), (16, 32), (64, 4), (8, 2)]:
        by_label = {}
        for row in read_csv(f"{records[0]}/P{p}_K{k}.csv"):
            by_label.setdefault(row["label"], []).append(row)
        for label, name in ROWS:
            measured = by_label[label][-1]["bytes_per_worker"]
            most = predicted_max(label, MLP, p, k)
            # The CSV prints 6 significant digits: the prediction for the two
            # steps, printed so, must be the same number.
            two = f"{2 * most:g}"
            rows.append([f"({p}, {k})", name, f"{predicted_mean(label, MLP, p, k) / 1e6:.6f}",
                         f"{most / 1e6:.6f}", two, measured,
                         "yes" if float(two) == float(measured) else "NO"])
    return rows


@table("sfb-sim", [SIM])
def sfb_sim(records):
    rows = [["(P, K), link", "synchronizer", "virtual ms per step", "step / BSP's",
             "virtual s to 0.85", "final test accuracy (2 epochs)"]]
    for p, k in [(8, 32), (64, 4)]:
        for gbit, name in (("1", "1 Gbit/s"), ("0.1", "100 Mbit/s")):
            by_label = {}
            for row in read_csv(f"{records[0]}/P{p}_K{k}_{gbit}gbit.csv"):
                by_label.setdefault(row["label"], []).append(row)

            def ms(label):
                rows_ = by_label[label]
                return statistics.median(
                    1000 * float(r["seconds"]) / s
                    for r, s in zip(rows_[1:], window_steps(rows_, p, k, epochs=2)))
            for label, sync in ROWS:
                t = time_to(by_label[label], 0.85)
                rows.append([f"({p}, {k}), {name}", sync, f"{ms(label):.1f}",
                             f"{ms(label) / ms(BSP):.3f}",
                             "never" if math.isinf(t) else f"{t:.2f}",
                             f"{float(by_label[label][-1]['test_acc_avg']):.4f}"])
    return rows


def sim_step(record, label, p, k):
    rows = [r for r in read_csv(record) if r["label"] == label]
    return statistics.median(1000 * float(r["seconds"]) / s
                             for r, s in zip(rows[1:], window_steps(rows, p, k, epochs=2)))


def _sim_claims():
    one, tenth = f"{SIM}/P8_K32_1gbit.csv", f"{SIM}/P8_K32_0.1gbit.csv"
    if not (os.path.exists(path(one)) and os.path.exists(path(tenth))):
        return

    def ratio(record):
        return sim_step(record, HYBRID, 8, 32) / sim_step(record, BSP, 8, 32)
    claim(DOC, f"at (8, 32) is {ratio(tenth):.2f}x BSP's at 100 Mbit/s and "
          f"{ratio(one):.2f}x at 1 Gbit/s",
          [SIM])


def _inproc_claims():
    if not os.path.isdir(path(INPROC)):
        return
    seeds = runs(INPROC)

    def extra(label):
        return statistics.median(m - n for _, s in seeds
                                 for m, n in zip(ms_per_step(s[label]), ms_per_step(s["none"])))
    claim(DOC, f"takes {extra(HYBRID):.0f} ms a step beyond the compute "
          f"(median; BSP's {extra(BSP):.0f} ms",
          [INPROC])


def _bed25_claims():
    if not os.path.isdir(path(BED25)) or not runs(BED25):
        return
    ratio = statistics.median(bed_ratios(runs(BED25), HYBRID))
    claim(DOC, f"At 25 Mbit/s the hybrid's step takes {ratio:.2f}x BSP's", [BED25])


def _claims():
    if not os.path.isdir(path(BED)):
        return
    seeds = runs(BED)
    ratio = statistics.median(bed_ratios(seeds, HYBRID))
    claim(DOC, f"the hybrid's step takes {ratio:.2f}x BSP's", [BED])
    bytes_ratio = predicted_max(HYBRID, MLP, 8, 32) / predicted_max(BSP, MLP, 8, 32)
    claim(DOC, f"so sends {bytes_ratio:.3f}x BSP's bytes", [BED])
    gap = max(abs(float(s[label][-1]["test_acc_avg"]) - float(s[BSP][-1]["test_acc_avg"]))
              for _, s in seeds for label in (HYBRID, FACTORS))
    claim(DOC, f"within {gap:.4f} of BSP's, seed for seed", [BED])
    w1 = float(read_csv(RECONSTRUCT)[0]["min_ms"])
    claim(DOC, f"at least {8 * w1 / 2:.0f} ms a step with the cores free", [RECONSTRUCT])
    claim(DOC, f"would take {w1:.1f} ms instead of {8 * w1 / 2:.0f}", [RECONSTRUCT])


_claims()
_background_claims()
_sim_claims()
_inproc_claims()
_bed25_claims()
