"""SIMULATION.md: the simulator's study, its training runs, its agreement with
SimGrid's SMPI and its validation against the shaped network.

Records: docs/simulation/study/*.csv and docs/simulation/consensus_time.csv
(scripts/studies/sim-study), docs/simulation/train_racks*.csv
(scripts/studies/sim-training), docs/simulation/smpi/*.csv
(scripts/studies/sim-vs-smpi), docs/experiments/validate-sim/*-table.md
(scripts/studies/sim-validate).
"""
import re
import statistics

from figures.lib import claim, path, per_epoch, read_csv, read_json, seconds, table

DOC = "SIMULATION.md"
STUDY = "docs/simulation/study"
TIME_PER_STEP = f"{STUDY}/time_per_step.csv"
CONSENSUS = "docs/simulation/consensus_time.csv"
CONSENSUS_RUNS = f"{STUDY}/consensus_runs.csv"
ROUNDS = f"{STUDY}/consensus_rounds.csv"
RACKS = f"{STUDY}/racks.csv"
STRAGGLER = f"{STUDY}/straggler.csv"

CONSENSUS_BELOW = 1e-6   # study 2: relative consensus distance that counts as agreement
ROUNDS_BELOW = 1e-9      # study 3: mean squared deviation that counts as agreement


def g(value, digits=2):
    """`digits` significant digits in the documents' exponent form: 9.3e-7, 0.076."""
    if value == 0:
        return "0"
    text = f"{value:.{digits}g}"
    return re.sub(r"e([+-])0*(\d)", lambda m: "e" + ("-" if m.group(1) == "-" else "") + m.group(2), text)


def sci(value, digits=2):
    """`digits` significant digits in exponent form: 6.74e-7, 9.06e-4; 0 as 0."""
    if value == 0:
        return "0"
    mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
    return f"{mantissa}e{int(exponent)}"


# --- study 1: time per step against n ------------------------------------

SYNCS_1 = ["ring", "hd", "dssync g=2", "dssync g=4", "dssync g=8", "gossip", "onepeer"]


def per_step_table(records, gbit):
    rows = [["n", "ring", "hd", "dssync g=2", "dssync g=4", "dssync g=8", "gossip ring", "one-peer exp"]]
    data = [r for r in read_csv(records[0]) if r["gbit"] == gbit]
    for n in sorted({int(r["ranks"]) for r in data}):
        by = {r["synchronizer"]: r["seconds_per_step"] for r in data if int(r["ranks"]) == n}
        rows.append([str(n)] + [by[s] for s in SYNCS_1])
    return rows


table("sim-study-1-10gbit", [TIME_PER_STEP])(lambda records: per_step_table(records, "10"))
table("sim-study-1-1gbit", [TIME_PER_STEP])(lambda records: per_step_table(records, "1"))


def time_per_step(gbit, n, sync):
    for r in read_csv(TIME_PER_STEP):
        if r["gbit"] == gbit and int(r["ranks"]) == n and r["synchronizer"] == sync:
            return float(r["seconds_per_step"])
    raise KeyError((gbit, n, sync))


# --- study 2: consensus against virtual time (1024 ranks) ----------------

NAMES_2 = {"ring": "ring all-reduce", "hd": "halving-doubling", "dssync g=2": "DS-Sync g=2, random",
           "dssync g=4": "DS-Sync g=4, random", "dssync g=8": "DS-Sync g=8, random",
           "dssync-butterfly g=32": "DS-Sync butterfly g=32", "gossip": "gossip ring",
           "onepeer": "one-peer exponential gossip"}


def consensus_runs():
    """{label: [rows of every step]} of the 1024-rank run."""
    runs = {}
    for r in read_csv(CONSENSUS):
        runs.setdefault(r["label"], []).append(r)
    return runs


def first_below(rows, column, threshold):
    """The first row after the start whose `column` is below threshold, or None."""
    return next((r for r in rows[1:] if float(r[column]) < threshold), None)


def consensus_cell(value):
    return "< 1e-12 (exact)" if value < 1e-12 else g(value)


@table("sim-study-2", [CONSENSUS, CONSENSUS_RUNS])
def study_2(records):
    runs = consensus_runs()
    steps = {r["synchronizer"]: r for r in read_csv(records[1])}
    rows = [["synchronizer", "virtual s per step", "MB sent per rank per step",
             "consensus after 20 steps", "step at which consensus < 1e-6", "virtual s"]]
    for label, name in NAMES_2.items():
        trace = runs[label]
        hit = first_below(trace, "consensus", CONSENSUS_BELOW)
        rows.append([name, steps[label]["seconds_per_step"], f"{float(trace[1]['bytes_per_rank']) / 1e6:.1f}",
                     consensus_cell(float(trace[20]["consensus"])),
                     hit["step"] if hit else f">{steps[label]['steps']}",
                     f"{float(hit['virtual_seconds']):.6f}" if hit else "-"])
    return rows


# --- study 3: consensus rounds ---------------------------------------------

SYNCS_3 = ["dssync g=32", "dssync-butterfly g=32", "gossip", "onepeer"]


@table("sim-study-3", [ROUNDS])
def study_3(records):
    traces = {}
    for r in read_csv(records[0]):
        traces.setdefault((int(r["ranks"]), r["synchronizer"], int(r["seed"])), []).append(r)
    rows = [["N", "dssync random g=32", "dssync butterfly g=32", "gossip ring", "one-peer exp"]]
    for n in sorted({k[0] for k in traces}):
        row = [str(n)]
        for s in SYNCS_3:
            cells = []
            for seed in sorted(k[2] for k in traces if k[0] == n and k[1] == s):
                trace = traces[(n, s, seed)]
                hit = first_below(trace, "msd", ROUNDS_BELOW)
                cells.append(hit["step"] if hit else f">{trace[-1]['step']}")
            row.append(" ".join(cells))
        rows.append(row)
    return rows


# --- study 4: racks ---------------------------------------------------------

@table("sim-study-4", [RACKS])
def study_4(records):
    rows = [["racks", "synchronizer", "virtual s per step", "consensus after 20 steps"]]
    for r in read_csv(records[0]):
        name = r["synchronizer"]
        if name.startswith("dssync-racks"):
            name += f" ({r['envoys']} envoys)"
        rows.append([r["racks"], name, r["seconds_per_step"], sci(float(r["consensus"]), 3)])
    return rows


def racks(n, sync):
    for r in read_csv(RACKS):
        if r["racks"] == str(n) and r["synchronizer"] == sync:
            return r
    raise KeyError((n, sync))


# --- study 5: a straggler -----------------------------------------------------

def straggler_rows():
    base, slow = {}, {}
    for r in read_csv(STRAGGLER):
        (base if float(r["stragglers"]) == 0 else slow)[r["synchronizer"]] = float(r["seconds_per_step"])
    return base, slow


@table("sim-study-5", [STRAGGLER])
def study_5(records):
    base, slow = straggler_rows()
    rows = [["synchronizer", "no straggler", "one straggler", "lost"]]
    for s in base:
        rows.append([s, f"{base[s]:.4f}", f"{slow[s]:.4f}", f"{(slow[s] / base[s] - 1) * 100:+.0f} %"])
    return rows


# --- study 6: training in virtual time ---------------------------------------

TRAINING = ["docs/simulation/train_racks.csv", "docs/simulation/train_racks_topology.csv",
            "docs/simulation/train_racks_envoys.csv"]
TRAIN_NAMES = {"bsp allreduce": "BSP (ring all-reduce of gradients)",
               "dssync g=2 random": "DS-Sync g=2, random",
               "dssync topology-aware": "DS-Sync, `TopologyAwareGroups`",
               "dssync racks e=2": "DS-Sync g=2, `RackGroups`, 2 envoys per rack"}
TARGET = 0.85


def training_runs(records=TRAINING):
    """{label: rows} over the records, in the order of TRAIN_NAMES."""
    runs = {}
    for record in records:
        for r in read_csv(record):
            runs.setdefault(r["label"], []).append(r)
    return {label: runs[label] for label in TRAIN_NAMES}


def mb_per_epoch(rows):
    return sum(float(r["bytes_per_worker"]) for r in rows) / float(rows[-1]["epoch"]) / 1e6


def reached(rows, target=TARGET):
    """The first evaluation at which the averaged model reached target."""
    return next(r for r in rows if float(r["test_acc_avg"]) >= target)


def at_epoch(rows, epoch):
    return next(r for r in rows if float(r["epoch"]) == epoch)


@table("sim-training", TRAINING)
def training(records):
    rows = [["synchronizer", "virtual s per epoch", "MB per worker per epoch", f"time to {TARGET}",
             "final accuracy"]]
    for label, trace in training_runs(records).items():
        hit = reached(trace)
        rows.append([TRAIN_NAMES[label], f"{per_epoch(trace):.2f}", f"{mb_per_epoch(trace):.1f}",
                     f"{float(hit['wall_seconds']):.2f} s (epoch {hit['epoch']})",
                     f"{float(trace[-1]['test_acc_avg']):.4f}"])
    return rows


# --- against the shaped network -------------------------------------------------

VALIDATE = "docs/experiments/validate-sim"
VALIDATE_RUNS = [f"{VALIDATE}/2026-12-03a-table.md", f"{VALIDATE}/2026-12-03b-table.md"]


def validate_rows(record):
    """The rows of a table.md that scripts/studies/sim-validate-table.py wrote, as dicts."""
    rows = []
    with open(path(record)) as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) != 10 or not re.match(r"^\d", cells[1]):
                continue
            one, both = (float(x) for x in cells[2].split("/"))
            rows.append({"rate": cells[0], "alpha_us": int(cells[1]), "b_one": one, "b_both": both,
                         "sync": cells[3], "size": cells[4], "measured": cells[5],
                         "ms": float(cells[5].split()[0]), "sim_both": cells[6],
                         "err_both": float(cells[7].split()[0]), "sim_one": cells[8],
                         "err_one": float(cells[9].split()[0])})
    return rows


@table("sim-validate", VALIDATE_RUNS)
def validation(records):
    first, second = (validate_rows(r) for r in records)
    again = {(r["rate"], r["sync"], r["size"]): r for r in second}
    rows = [["rate", "synchronizer", "size", "measured ms/step (jobs' range)", "simulated, B both ways",
             "error", "simulated, B one way", "error", "error, second run"]]
    for r in first:
        rows.append([r["rate"], r["sync"], r["size"], r["measured"], r["sim_both"], f"{r['err_both']:+.1f} %",
                     r["sim_one"], f"{r['err_one']:+.1f} %",
                     f"{again[(r['rate'], r['sync'], r['size'])]['err_both']:+.1f} %"])
    return rows


# --- figures in the prose ---------------------------------------------------------
def prose(name, records, text):
    """A figure of the prose, registered with its records; the name says what it is."""
    claim(DOC, text, records)


def study_claims():
    def f3(x):
        return f"{x:.3f}"

    # What the simulator shows, and study 1
    runs = consensus_runs()
    steps = {r["synchronizer"]: float(r["seconds_per_step"]) for r in read_csv(CONSENSUS_RUNS)}
    prose("RING_1024", [CONSENSUS_RUNS], f"ring's {f3(steps['ring'])} s is")
    pairs = runs["dssync g=2"]
    prose("HALVING", [CONSENSUS], ", ".join(g(float(pairs[i]["consensus"]), 3) for i in (1, 2, 3)))
    fast = [r for r in read_csv(TIME_PER_STEP) if r["gbit"] == "10"]
    ring = [float(r["seconds_per_step"]) for r in fast if r["synchronizer"] == "ring"]
    prose("STUDY1_RANGE", [TIME_PER_STEP], f"{f3(time_per_step('10', 1024, 'dssync g=2'))} s against "
          f"{f3(min(ring))}-{f3(max(ring))} s")
    prose("STUDY1_1024", [TIME_PER_STEP], f"{f3(time_per_step('10', 1024, 'ring'))} against halving-doubling's "
          f"{f3(time_per_step('10', 1024, 'hd'))}")

    # study 2
    def hit(label):
        h = first_below(runs[label], "consensus", CONSENSUS_BELOW)
        return int(h["step"]), float(h["virtual_seconds"])

    full = [hit(label)[1] for label in ("ring", "hd")]
    prose("STUDY2_FULL", [CONSENSUS], f"{min(full):.2f}-{max(full):.2f} s")
    n, t = hit("dssync-butterfly g=32")
    prose("STUDY2_BUTTERFLY", [CONSENSUS], f"exact after log_32 1024 = {n} steps, {t:.2f} s")
    n, t = hit("onepeer")
    prose("STUDY2_ONEPEER", [CONSENSUS], f"exact after {n} steps, {t:.2f} s")
    (n8, t8), (n4, t4), (n2, t2) = hit("dssync g=8"), hit("dssync g=4"), hit("dssync g=2")
    prose("STUDY2_GROUPS", [CONSENSUS], f"groups of 8 reach 1e-6 in {n8} steps ({t8:.2f} s), 4 in {n4} "
          f"({t4:.2f} s), pairs in {n2} ({t2:.2f} s)")
    last = runs["gossip"][-1]
    prose("STUDY2_GOSSIP", [CONSENSUS], f"Gossip on a ring is still at {sci(float(last['consensus']))} after "
          f"{last['step']} steps ({float(last['virtual_seconds']):.1f} s).")

    # study 3
    table3 = study_3([ROUNDS])
    rounds = sorted({int(x) for row in table3[1:] for x in row[1].split()})
    spread = f"{rounds[0]} or {rounds[1]}" if len(rounds) == 2 else f"{rounds[0]} to {rounds[-1]}"
    prose("STUDY3_RANDOM", [ROUNDS], f"DS-Sync with random groups of 32 brings "
          f"{' and '.join(row[0] for row in table3[1:])} scalars to a mean squared deviation below 1e-9 in "
          f"{spread} rounds")
    prose("STUDY3_ONEPEER", [ROUNDS], " and ".join(sorted({x for row in table3[1:] for x in row[4].split()}, key=int)))

    # study 4
    flat = time_per_step("10", 64, "dssync g=2")
    random8, topo8 = float(racks(8, "dssync g=2")["seconds_per_step"]), float(racks(8, "dssync-topo g=2")["seconds_per_step"])
    prose("STUDY4_RANDOM", [RACKS, TIME_PER_STEP], f"at 8 racks its step is {random8 / flat:.1f} times as long "
          f"({f3(random8)} s, against {f3(flat)} s on a flat network)")
    prose("STUDY4_TOPO", [RACKS], f"does not rescue it ({f3(topo8)} s)")
    env = {n: racks(n, "dssync-racks g=2") for n in (2, 8)}
    costs = sorted({f3(float(r["seconds_per_step"])) for r in env.values()})
    prose("STUDY4_RACKS", [RACKS], f"the step costs {' and '.join(costs)} s")
    prose("STUDY4_MIXING", [RACKS], f"after 20 steps the consensus distance is "
          f"{sci(float(env[2]['consensus']))} and {sci(float(env[8]['consensus']))} instead of "
          f"{sci(float(racks(2, 'dssync g=2')['consensus']))}")

    # study 5
    base, slow = straggler_rows()

    def lost(s):
        return slow[s] - base[s], (slow[s] / base[s] - 1) * 100

    ring, gossip, ds, one = lost("ring"), lost("gossip"), lost("dssync g=2"), lost("onepeer")
    same = f"{ring[0]:.3f} s per step (+{ring[1]:.0f} %)" if f"{ring[0]:.3f}{ring[1]:.0f}" == \
        f"{gossip[0]:.3f}{gossip[1]:.0f}" else f"{ring[0]:.3f} and {gossip[0]:.3f} s per step"
    prose("STUDY5", [STRAGGLER], f"The ring and gossip lose {same}, the straggler's extra compute; DS-Sync "
          f"and one-peer gossip lose {ds[0]:.3f} and {one[0]:.3f} s (+{ds[1]:.0f} %, +{one[1]:.0f} %)")


def training_claims():
    runs = training_runs()
    bsp, rnd, rk = runs["bsp allreduce"], runs["dssync g=2 random"], runs["dssync racks e=2"]
    prose("TRAIN_RANDOM_EPOCH", TRAINING, f"still takes {per_epoch(rnd) / per_epoch(bsp):.1f}x its time per epoch")
    prose("TRAIN_RACKS_EPOCH", TRAINING, f"{per_epoch(rk):.2f} s per epoch, {per_epoch(bsp) / per_epoch(rk):.1f}x "
          f"faster than BSP and {per_epoch(rnd) / per_epoch(rk):.1f}x faster than random pairs")
    c4 = {k: float(at_epoch(v, 4)["consensus"]) for k, v in (("rk", rk), ("rnd", rnd))}
    prose("TRAIN_CONSENSUS", TRAINING, f"its consensus distance is {c4['rk']:.2f} against random pairs' "
          f"{c4['rnd']:.2f} at epoch 4, and {sci(float(rk[-1]['consensus']))} against "
          f"{sci(float(rnd[-1]['consensus']))} at the end, where BSP's stays at rounding level, "
          f"{sci(float(bsp[-1]['consensus']), 1)}")
    t_bsp, t_rnd, t_rk = (float(reached(x)["wall_seconds"]) for x in (bsp, rnd, rk))
    prose("TRAIN_SOONER", TRAINING, f"reaches {TARGET} in {t_rk:.2f} s against BSP's {t_bsp:.2f} s: "
          f"{t_bsp / t_rk:.2f}x sooner, and {t_rnd / t_rk:.1f}x sooner than DS-Sync with random pairs")
    prose("TRAIN_SHORTER", TRAINING, f"here {(1 - t_rk / t_bsp) * 100:.0f} % shorter")
    prose("TRAIN_RANDOM_TIME", TRAINING, f"DS-Sync takes {t_rnd / t_bsp:.1f}x BSP's time")


def validate_claims():
    first, second = (validate_rows(r) for r in VALIDATE_RUNS)

    def fits(rows):
        by = {r["rate"]: r for r in rows}
        return by["100mbit"], by["1gbit"]

    a, b = fits(first)
    a2, b2 = fits(second)
    prose("VALIDATE_FITS", VALIDATE_RUNS,
          f"The first run fitted alpha = {a['alpha_us']} us, B = {a['b_both']:.1f} MB/s ({a['b_one']:.1f} one "
          f"way) at 100 Mbit/s and alpha = {b['alpha_us']} us, B = {b['b_both']:.1f} MB/s ({b['b_one']:.1f} one "
          f"way) at 1 Gbit/s; the second {a2['alpha_us']} us, {a2['b_both']:.1f} MB/s and {b2['alpha_us']} us, "
          f"{b2['b_both']:.1f} MB/s")

    def worst(rows, key):
        return max((r[key] for r in rows), key=abs)

    within = all(abs(r["err_both"]) < 15 for r in first + second)
    prose("VALIDATE_ALL", VALIDATE_RUNS, f"{'All' if within else 'Not all'} {len(first)} rows are within 15 % "
          f"in both runs")
    prose("VALIDATE_WORST", VALIDATE_RUNS, f"the worst is {worst(first, 'err_both'):+.1f} % in the first and "
          f"{worst(second, 'err_both'):+.1f} % in the second")
    w100 = max(abs(r["err_both"]) for r in first + second if r["rate"] == "100mbit")
    prose("VALIDATE_100", VALIDATE_RUNS, f"no row is off by more than {w100:.1f} %")
    prose("VALIDATE_ONEWAY", VALIDATE_RUNS, f"the worst row is {worst(first, 'err_one'):+.1f} % in the first "
          f"run and {worst(second, 'err_one'):+.1f} % in the second")
    faster = [r["err_both"] for r in first if r["err_both"] < 0]
    prose("VALIDATE_FASTER", VALIDATE_RUNS, f"{len(faster)} of the first run's {len(first)} rows, by "
          f"{-max(faster):.1f} to {-min(faster):.1f} %")
    gossip16 = [r["err_both"] for r in first + second if r["sync"] == "gossip" and r["size"] == "16 MiB"]
    prose("NOTDONE_GOSSIP", VALIDATE_RUNS, f"gossip at 16 MiB, {max(gossip16):+.1f} to {min(gossip16):+.1f} %")


study_claims()
training_claims()
validate_claims()


# --- against SimGrid's SMPI ------------------------------------------------------

SMPI_STEPS = "docs/simulation/smpi/steps.csv"
SMPI_RING = "docs/simulation/smpi/ring.csv"
SAME = 1.0   # per cent: rows closer than this are "the two agree"


def platform(r):
    return r["platform"] + (f", {r['oversubscription']}:1" if r["oversubscription"] != "1" else "")


def smpi_steps():
    rows = read_csv(SMPI_STEPS)
    for r in rows:
        r["diff"] = (float(r["sim_seconds_per_step"]) / float(r["smpi_seconds_per_step"]) - 1) * 100
    return rows


@table("sim-smpi-steps", [SMPI_STEPS])
def smpi_steps_table(records):
    rows = [["platform", "synchronizer", "SMPI s/step", "SimTransport s/step", "difference"]]
    for r in smpi_steps():
        rows.append([platform(r), r["synchronizer"], f"{float(r['smpi_seconds_per_step']):.6f}",
                     f"{float(r['sim_seconds_per_step']):.6f}", f"{r['diff']:+.2f} %"])
    return rows


MOVED = {"real": "moved", "timing": "not moved"}


def smpi_ring(record=SMPI_RING):
    """{(ranks, eager, data): the run's columns, with smpi_wall and sim_wall the medians over its runs,
    smpi_walls every run's and runs their number}; the simulated times are the same in every run."""
    out = {}
    for r in read_csv(record):
        out.setdefault((r["ranks"], r["eager"], r["data"]), []).append(r)
    for key, runs in out.items():
        walls = sorted(float(r["smpi_wall_seconds"]) for r in runs)
        out[key] = dict(runs[0], runs=len(runs), smpi_walls=walls, smpi_wall=statistics.median(walls),
                        sim_wall=statistics.median(float(r["sim_wall_seconds"]) for r in runs),
                        loads=sorted(float(r["load_average"]) for r in runs))
    return out


@table("sim-smpi-ring", [SMPI_RING])
def smpi_ring_table(records):
    def spread(xs):  # sorted: the median, and the range when there are several
        return f"{statistics.median(xs):.2f}" + (f" ({xs[0]:.2f}-{xs[-1]:.2f})" if len(xs) > 1 else "")

    rows = [["ranks", "SMPI's eager protocol", "the megabyte", "SMPI, simulated ms", "ours, simulated ms",
             "difference", "runs", "SMPI, wall s", "ours, wall s", "load average"]]
    for (ranks, eager, data), r in smpi_ring(records[0]).items():
        smpi, ours = float(r["smpi_seconds"]), float(r["sim_seconds"])
        rows.append([ranks, eager, MOVED[data], f"{smpi * 1e3:.6f}", f"{ours * 1e3:.6g}",
                     f"{(ours / smpi - 1) * 100:+.3f} %", str(r["runs"]), spread(r["smpi_walls"]),
                     f"{r['sim_wall']:.2f}", spread(r["loads"])])
    return rows


def smpi_claims():
    rows = smpi_steps()
    same = [r for r in rows if abs(r["diff"]) < SAME]
    other = [r for r in rows if abs(r["diff"]) >= SAME]
    prose("SMPI_AGREE", [SMPI_STEPS],
          f"Where every transfer of a step meets the same contention ({len(same)} of the {len(rows)} rows, "
          f"halving-doubling's uplink-bound exchanges included) the two agree to "
          f"{max(abs(r['diff']) for r in same):.2f} %. The other {len(other)} rows are DS-Sync with random pairs "
          f"behind oversubscribed uplinks, " + " and ".join(f"{r['diff']:+.2f} %" for r in other) +
          " in ours (" + " and ".join(r["platform"] for r in other) + "):")
    ring = smpi_ring()
    off = ring.get(("16", "off", "real"))
    if off:
        smpi, ours = float(off["smpi_seconds"]), float(off["sim_seconds"])
        prose("EAGER_OFF", [SMPI_RING], f"and ours are {abs(ours / smpi - 1) * 100:.3f} % apart")
    big = ring.get(("1024", "default", "real"))
    bench = bench_sim()
    ours = bench.get("ring 1024")
    if big and ours:
        smpi_w = big["smpi_wall"]
        prose("SPEED", [SMPI_RING, BENCH_SIM],
              f"At 1024 ranks SMPI took {smpi_w:.0f} s of wall time (median of {big['runs']} runs, "
              f"{big['smpi_walls'][0]:.0f} to {big['smpi_walls'][-1]:.0f} s) and `bench_sim` {ours['seconds']:.2f} s "
              f"(median; {ours['cpu_seconds']:.2f} s of CPU)" +
              f", {smpi_w / ours['seconds']:.0f} times as long")
        prose("SPEED_PROCESS", [SMPI_RING],
              f"`smpirun`'s time includes its start-up; the whole `dssync_simulate` process, which "
              f"includes its own (and allocates the gigabyte of buffers, and keeps the consensus "
              f"bookkeeping besides), took {big['sim_wall']:.2f} s (median of {big['runs']}), "
              f"{smpi_w / big['sim_wall']:.0f} times as fast")
        prose("APIECE", [BENCH_SIM], f"cost ours {ours['seconds'] / ours['messages'] * 1e6:.1f} us apiece")
        floor = bench.get("floor 1024")
        if floor:
            # What a hundredth of SMPI's time leaves the simulation once the data has moved.
            left = smpi_w / 100 - floor["seconds"]
            prose("FLOOR", [SMPI_RING, BENCH_SIM],
                  f"the same blocks combined and copied by plain loops in the same order, with no "
                  f"simulator, take {floor['seconds']:.2f} s ({floor['seconds'] / ours['seconds'] * 100:.0f} % "
                  f"of `bench_sim`'s time)")
            beyond = (ours["seconds"] - floor["seconds"]) / ours["messages"] * 1e9
            if left > 0:
                prose("FLOOR_LEFT", [SMPI_RING, BENCH_SIM],
                      f"a hundredth of SMPI's time, {smpi_w / 100:.2f} s, would leave the simulation "
                      f"{left:.2f} s for its {ours['messages'] / 1e6:.1f} million messages, "
                      f"{left / ours['messages'] * 1e9:.0f} ns each, where ours spends {beyond:.0f} ns "
                      f"beyond the floor")
            else:
                prose("FLOOR_LEFT", [SMPI_RING, BENCH_SIM],
                      f"a hundredth of SMPI's time, {smpi_w / 100:.2f} s, is less than the floor: on this "
                      f"host no simulator that moves the real bytes can be 100 times as fast as SMPI. "
                      f"Ours spends {beyond:.0f} ns a message beyond the floor")
    timing = ring.get(("1024", "default", "timing"))
    light = bench.get("ring 1024 4KiB")
    if timing and light and big:
        smpi_t, process = timing["smpi_wall"], timing["sim_wall"]
        fastest = min(timing["smpi_walls"][0], big["smpi_walls"][0])
        than = "slower" if smpi_t > big["smpi_wall"] else "faster"
        prose("TIMING", [SMPI_RING, BENCH_SIM],
              f"SMPI took {smpi_t:.1f} s (median of {timing['runs']} runs, {timing['smpi_walls'][0]:.1f} to "
              f"{timing['smpi_walls'][-1]:.1f} s), {than} than with the copies ({big['smpi_wall']:.1f} s), and "
              f"`bench_sim` {light['seconds']:.2f} s (median of 3, CV {light['cv'] * 100:.0f} %): "
              f"{smpi_t / light['seconds']:.0f} times as fast, and {fastest / light['seconds']:.0f} times against "
              f"SMPI's fastest run of either kind ({fastest:.1f} s). The whole `dssync_simulate` process, its "
              f"start-up and consensus bookkeeping included, took {process:.2f} s (median of {timing['runs']}), "
              f"{fastest / process:.0f} times as fast as that fastest run")
        floor = bench.get("floor 1024")
        if floor and ours:
            prose("NOT_YET_SMPI", [SMPI_RING, BENCH_SIM],
                  f"{big['smpi_wall'] / ours['seconds']:.0f} times in this sitting ({big['smpi_wall'] / big['sim_wall']:.0f} "
                  f"times, whole process against whole process), the data alone taking "
                  f"{floor['seconds']:.2f} of the {big['smpi_wall'] / 100:.2f} s that a hundredth of SMPI's time "
                  f"allows. Without the data in either simulator, the megabyte's timing alone, ours is "
                  f"{fastest / light['seconds']:.0f} times as fast.")
    load = read_json(BENCH_SIM)["context"].get("load_avg")
    if load:
        prose("BENCH_LOAD", [BENCH_SIM], f"The load average was {load[0]:.1f} when `bench_sim` started.")


BENCH_SIM = "docs/simulation/smpi/bench_sim.json"


def bench_sim():
    """{'ring 1024' | 'ring 256' | 'ring 1024 4KiB' | 'floor 1024' | 'floor 256' | 'dssync 1024 64KiB' |
    'dssync 1024 1024KiB':
    {seconds, cpu_seconds (medians), cv (of the wall time), virtual_s, messages}}; the floor
    (BM_RingDataFloor: the ring's data moved with no simulator) has no virtual_s or messages."""
    out = {}
    for b in read_json(BENCH_SIM)["benchmarks"]:
        if b.get("aggregate_name") not in ("median", "cv"):
            continue
        args = dict(part.split(":") for part in b["run_name"].split("/")[1:] if ":" in part)
        kind = "floor" if "Floor" in b["run_name"] else "ring" if "Ring" in b["run_name"] else "dssync"
        real = int(args["real_bytes"]) >> 10
        # the runs of a megabyte carried in its real bytes go by their ranks alone
        key = f"{kind} {args['ranks']}" + ("" if kind != "dssync" and real == 1024 else f" {real}KiB")
        r = out.setdefault(key, {})
        if b["aggregate_name"] == "cv":
            r["cv"] = b["real_time"]
            continue
        r.update(seconds=seconds(b), cpu_seconds=seconds(b, "cpu_time"),
                 virtual_s=b.get("virtual_s"), messages=b.get("messages"))
    return out


@table("sim-speed", [BENCH_SIM])
def speed(records):
    names = {"ring 256": "ring all-reduce, 1 MiB, 256 ranks",
             "ring 1024": "ring all-reduce, 1 MiB, 1024 ranks",
             "ring 1024 4KiB": "ring all-reduce, 1 MiB in 4 KiB real per rank (one float a block), 1024 ranks",
             "floor 1024": "the same ring's data alone, no simulator (the floor)",
             "dssync 1024 64KiB": "20 `DSSync` g=2 steps, 1024 ranks, 100 MB model in 64 KiB real per rank",
             "dssync 1024 1024KiB": "20 `DSSync` g=2 steps, 1024 ranks, 1 MiB real per rank"}
    rows = [["run", "wall s", "wall's CV", "CPU s", "simulated s", "messages"]]
    data = bench_sim()
    for key, name in names.items():
        if key not in data:  # a record from before the floor was measured
            continue
        r = data[key]
        rows.append([name, f"{r['seconds']:.2f}", f"{r['cv'] * 100:.0f} %", f"{r['cpu_seconds']:.2f}",
                     "" if r["virtual_s"] is None else f"{r['virtual_s']:.6g}",
                     "" if r["messages"] is None else f"{r['messages']:.0f}"])
    return rows


smpi_claims()
