"""SIMULATION.md, study 9: the simulator from 64 to 65,536 ranks
(scripts/studies/sim-scale). Records: docs/simulation/scale/scale.csv (one
row per run, wall times and memory of this machine),
docs/simulation/scale/rounds.csv (Moshpit's consensus protocol, every round
of three seeds), docs/simulation/scale/floor.json (bench_sim_scale: the
simulator beside the data's floor), and the sitting before the engine's two
shortcuts (docs/experiments/sim-scale-2026-12-06-before-shortcuts)."""
import math
from statistics import median

from figures.lib import claim, gbench, read_csv, seconds, table

DOC = "SIMULATION.md"
SCALE = "docs/simulation/scale/scale.csv"
ROUNDS = "docs/simulation/scale/rounds.csv"
FLOOR = "docs/simulation/scale/floor.json"  # bench_sim_scale: the simulator beside the data's floor
BEFORE = "docs/experiments/sim-scale-2026-12-06-before-shortcuts/scale.csv"  # before the engine's two shortcuts
BEFORE_FLOOR = "docs/experiments/sim-scale-2026-12-06-before-shortcuts/floor.json"  # its floor (20 steps only)
ROUNDS_BELOW = 1e-9  # mean squared deviation that counts as agreement
NAMES = {"dssync": "DS-Sync g=2", "onepeer": "one-peer gossip", "hd": "halving-doubling", "ring": "ring"}


def runs(network, record=SCALE):
    return [r for r in read_csv(record) if r["network"] == network]


def grouped(network, record=SCALE):
    """The runs of one network by (synchronizer, ranks): a list of rows each
    (the flat network runs three times)."""
    out = {}
    for r in runs(network, record):
        out.setdefault((r["synchronizer"], int(r["ranks"])), []).append(r)
    return out


def wall(rows):
    return median([float(r["sim_wall_seconds"]) for r in rows])


def per_message_us(rows):
    return wall(rows) / float(rows[0]["messages"]) * 1e6


def consensus(r):
    c = float(r["consensus"])
    return "< 1e-12" if c < 1e-12 else f"{c:.2g}"


def scale_rows(network):
    rows = [["ranks", "synchronizer", "steps", "virtual s per step", "consensus after the last",
             "messages", "runs", "wall s (median)", "wall s (range)", "us of wall per message",
             "peak memory MiB", "stack used KiB", "stacks"]]
    g = grouped(network)
    for (sync, n) in sorted(g, key=lambda k: (k[1], list(NAMES).index(k[0]))):
        rs = g[(sync, n)]
        r = rs[0]
        for x in rs:  # the virtual figures are the same in every run
            assert (x["virtual_seconds_per_step"], x["consensus"], x["messages"]) == \
                (r["virtual_seconds_per_step"], r["consensus"], r["messages"]), (sync, n)
        walls = [float(x["sim_wall_seconds"]) for x in rs]
        rows.append([r["ranks"], NAMES[sync], r["steps"], r["virtual_seconds_per_step"],
                     consensus(r), r["messages"], str(len(rs)), f"{wall(rs):.3f}",
                     f"{min(walls):.3f} - {max(walls):.3f}", f"{per_message_us(rs):.2f}",
                     f"{median([float(x['peak_rss_kb']) for x in rs]) / 1024:.0f}",
                     f"{float(r['stack_bytes_used']) / 1024:.1f}", r["stacks"]])
    return rows


table("sim-scale-flat", [SCALE])(lambda records: scale_rows("flat"))
table("sim-scale-racks", [SCALE])(lambda records: scale_rows("racks"))
table("sim-scale-racks-per-link", [SCALE])(lambda records: scale_rows("racks-per-link"))


def sharing_pairs():
    """(synchronizer, ranks, max-min run, per-link run) behind racks, where
    both ran."""
    mm, pl = grouped("racks"), grouped("racks-per-link")
    keys = sorted(set(mm) & set(pl), key=lambda k: (k[1], list(NAMES).index(k[0])))
    return [(sync, n, mm[(sync, n)][0], pl[(sync, n)][0]) for sync, n in keys]


@table("sim-scale-sharing", [SCALE])
def sharing_table(records):
    rows = [["ranks", "synchronizer", "virtual s per step, max-min", "virtual s per step, per-link",
             "per-link / max-min", "wall s, max-min", "wall s, per-link"]]
    for sync, n, mm, pl in sharing_pairs():
        a, b = float(mm["virtual_seconds_per_step"]), float(pl["virtual_seconds_per_step"])
        rows.append([str(n), NAMES[sync], mm["virtual_seconds_per_step"], pl["virtual_seconds_per_step"],
                     f"{b / a:.4f}", f"{float(mm['sim_wall_seconds']):.3f}", f"{float(pl['sim_wall_seconds']):.3f}"])
    return rows


STEPS, SAME_MESSAGES = 20, 1280  # every size's steps; 1,024 ranks' steps for 65,536's messages


def floor_runs(record=FLOOR):
    """{(ranks, steps): {"sim" | "clock" | "pairs": (seconds a run, messages),
    the median of the repetitions}} from bench_sim_scale. A record from
    before the steps were an argument ran 20."""
    out = {}
    for name, row in gbench(record).items():
        args = dict(part.split(":") for part in name.split("/")[1:])
        kind = "sim" if name.startswith("BM_SimDSSyncScale") else "pairs" if args["pairwise"] == "1" else "clock"
        out.setdefault((int(args["ranks"]), int(args.get("steps", STEPS))), {})[kind] = (seconds(row), row["messages"])
    return out


def floor_us(record=FLOOR):
    """floor_runs as microseconds per message."""
    return {key: {kind: run / messages * 1e6 for kind, (run, messages) in kinds.items()}
            for key, kinds in floor_runs(record).items()}


@table("sim-scale-floor", [FLOOR])
def floor_table(records):
    f = floor_us()
    rows = [["ranks", "steps", "simulated, us per message", "data alone, the clock's order",
             "data alone, pair by pair", "the engine beyond the clock's floor"]]

    def row(label, steps, r):
        return [label, steps, f"{r['sim']:.2f}", f"{r['clock']:.2f}", f"{r['pairs']:.2f}",
                f"{r['sim'] - r['clock']:.2f}"]

    def ratio(label, last, first):
        return [label, ""] + [f"{last[k] / first[k]:.1f}x" for k in ("sim", "clock", "pairs")] + \
            [f"{(last['sim'] - last['clock']) / (first['sim'] - first['clock']):.1f}x"]

    sizes = sorted(n for n, steps in f if steps == STEPS)
    for n in sizes:
        rows.append(row(f"{n:,}", str(STEPS), f[(n, STEPS)]))
    first, last = f[(sizes[0], STEPS)], f[(sizes[-1], STEPS)]
    rows.append(ratio(f"{sizes[-1]:,} / {sizes[0]:,}", last, first))
    same = f[(sizes[0], SAME_MESSAGES)]
    rows.append(row(f"{sizes[0]:,}", f"{SAME_MESSAGES:,}", same))
    rows.append(ratio(f"{sizes[-1]:,} x {STEPS} / {sizes[0]:,} x {SAME_MESSAGES:,}", last, same))
    return rows


def traces():
    out = {}
    for r in read_csv(ROUNDS):
        out.setdefault((int(r["ranks"]), r["synchronizer"], int(r["seed"])), []).append(r)
    return out


def mean_ratio(trace):
    """The geometric mean of the per-round factor of the mean squared
    deviation over the rounds before it falls below 1e-9 (rounding beyond)."""
    msd = [float(r["msd"]) for r in sorted(trace, key=lambda r: int(r["step"]))]
    factors = [b / a for a, b in zip(msd, msd[1:]) if a > 0 and b >= ROUNDS_BELOW]
    return math.exp(sum(map(math.log, factors)) / len(factors)) if factors else float("nan")


@table("sim-scale-rounds", [ROUNDS])
def rounds_table(records):
    t = traces()
    rows = [["N", "random g=32: rounds to 1e-9 (seeds 1-3)", "factor per round, measured",
             "closed form (k-1)/(n-1)", "butterfly g=32: rounds (seeds 1-3)"]]
    for n in sorted({k[0] for k in t}):
        def hits(sync):
            cells = []
            for seed in sorted(k[2] for k in t if k[0] == n and k[1] == sync):
                trace = sorted(t[(n, sync, seed)], key=lambda r: int(r["step"]))
                hit = next((r["step"] for r in trace if int(r["step"]) > 0 and float(r["msd"]) < ROUNDS_BELOW),
                           f">{trace[-1]['step']}")
                cells.append(hit)
            return " ".join(cells)
        random = [t[k] for k in t if k[0] == n and k[1] == "dssync g=32"]
        measured = math.exp(sum(math.log(mean_ratio(tr)) for tr in random) / len(random))
        k = n // 32
        rows.append([str(n), hits("dssync g=32"), f"{measured:.4f}", f"{(k - 1) / (n - 1):.4f}",
                     hits("dssync-butterfly g=32")])
    return rows


def claims():
    flat = grouped("flat")
    racks = grouped("racks")
    big = flat[("dssync", 65536)]
    claim(DOC, f"65,536 ranks took {wall(big):.1f} s of wall time and "
               f"{median([float(r['peak_rss_kb']) for r in big]) / 1024 ** 2:.2f} GiB", [SCALE])
    mid = flat[("dssync", 16384)]
    claim(DOC, f"16,384 ranks {wall(mid):.1f} s and "
               f"{median([float(r['peak_rss_kb']) for r in mid]) / 1024:.0f} MiB", [SCALE])
    for sync, sizes in (("dssync", (1024, 4096, 16384, 65536)), ("onepeer", (1024, 4096, 16384, 65536)),
                        ("ring", (64, 256, 1024, 4096))):
        us = [per_message_us(flat[(sync, n)]) for n in sizes]
        from_1024 = f"; {us[-1] / us[2]:.1f}x from 1,024" if sizes[0] != 1024 else ""
        claim(DOC, f"{NAMES[sync]}: " + ", ".join(f"{u:.2f}" for u in us) + " us at " +
              ", ".join(f"{n:,}" for n in sizes[:-1]) + f" and {sizes[-1]:,} ranks "
              f"({us[-1] / us[0]:.1f}x from the first to the last{from_1024})", [SCALE])
    for n in (1024, 4096):
        rs = racks[("dssync", n)]
        claim(DOC, f"{n:,} ranks took {wall(rs):.1f} s for {int(rs[0]['messages']):,} messages", [SCALE])
    growth = per_message_us(racks[("dssync", 4096)]) / per_message_us(racks[("dssync", 1024)])
    claim(DOC, f"four times the ranks cost {growth:.1f} times as much per message", [SCALE])
    # The sitting before, whose engine had neither shortcut.
    before = grouped("flat", BEFORE)
    ratios = [per_message_us(before[(s, 65536)]) / per_message_us(before[(s, 1024)]) for s in ("dssync", "onepeer")]
    now = [per_message_us(flat[(s, 65536)]) / per_message_us(flat[(s, 1024)]) for s in ("dssync", "onepeer")]
    claim(DOC, f"the sitting before measured {ratios[0]:.1f}x for DS-Sync and {ratios[1]:.1f}x for one-peer gossip",
          [BEFORE])
    ring = per_message_us(flat[("ring", 4096)]) / per_message_us(flat[("ring", 1024)])
    claim(DOC, f"one-peer gossip ({now[1]:.1f}x) and the ring ({ring:.1f}x, to 4,096) stay within 2x, "
               f"and so does DS-Sync's median ({now[0]:.1f}x)", [SCALE])
    # DS-Sync's ratio from each of its runs at 65,536 ranks to each at 1,024.
    pairs = [float(b["sim_wall_seconds"]) / float(b["messages"]) /
             (float(a["sim_wall_seconds"]) / float(a["messages"]))
             for a in flat[("dssync", 1024)] for b in flat[("dssync", 65536)]]
    small = [float(r["sim_wall_seconds"]) for r in flat[("dssync", 1024)]]
    claim(DOC, f"its three runs at 1,024 ranks took {min(small):.3f} to {max(small):.3f} s, so the nine "
               f"ratios of a run at 65,536 ranks to a run at 1,024 lie between {min(pairs):.1f}x and "
               f"{max(pairs):.1f}x", [SCALE])
    claim(DOC, f"DS-Sync's wall time per message grows {now[0]:.1f}x from 1,024 to 65,536 ranks", [SCALE])
    faster = min(per_message_us(flat[(s, 1024)]) / per_message_us(before[(s, 1024)]) for s in ("dssync", "onepeer"))
    claim(DOC, f"its runs at 1,024 ranks {faster:.1f} times as fast or faster", [BEFORE, SCALE])
    claim(DOC, f"at 65,536 ranks, {median([float(r['peak_rss_kb']) for r in big]) / 1024 ** 2:.2f} GiB, most of them miss",
          [SCALE])
    f = floor_us()
    lo, hi, same = f[(1024, STEPS)], f[(65536, STEPS)], f[(1024, SAME_MESSAGES)]
    claim(DOC, f"{hi['clock'] / lo['clock']:.1f}x in the clock's order and {hi['pairs'] / lo['pairs']:.1f}x pair by pair, "
               f"against the simulation's {hi['sim'] / lo['sim']:.1f}x from 1,024 to 65,536 ranks", [FLOOR])
    run = floor_runs()[(1024, STEPS)]
    claim(DOC, f"The floor at 1,024 ranks and 20 steps lasts {run['pairs'][0] * 1e3:.0f} to {run['clock'][0] * 1e3:.0f} ms",
          [FLOOR])
    old = floor_us(BEFORE_FLOOR)
    claim(DOC, f"the sitting before measured its growth at "
               f"{old[(65536, STEPS)]['clock'] / old[(1024, STEPS)]['clock']:.1f}x", [BEFORE_FLOOR])
    claim(DOC, f"{lo['sim'] - lo['clock']:.2f} us a message at 1,024 ranks, {hi['sim'] - hi['clock']:.2f} us at 65,536",
          [FLOOR])
    claim(DOC, f"1,024 ranks take {same['sim']:.2f} us a message over 1,280 steps against {lo['sim']:.2f} us over 20, "
               f"and 65,536 ranks' 20 steps cost {hi['sim'] / same['sim']:.1f} times the former", [FLOOR])
    per_link = grouped("racks-per-link")
    for n in (16384, 65536):
        rs = per_link[("dssync", n)]
        claim(DOC, f"{n:,} ranks behind racks took {wall(rs):.1f} s of wall time and "
                   f"{median([float(r['peak_rss_kb']) for r in rs]) / 1024:.0f} MiB", [SCALE])
    ratios = {}
    for sync, n, mm, pl in sharing_pairs():
        ratios.setdefault(sync, []).append(float(pl["virtual_seconds_per_step"]) /
                                           float(mm["virtual_seconds_per_step"]))
    same = [NAMES[s] for s in NAMES if s in ratios and all(r == 1.0 for r in ratios[s])]
    claim(DOC, "the " + ", ".join(same[:-1]) + f" and {same[-1]} take the same virtual time under both", [SCALE])
    d = ratios["dssync"]
    claim(DOC, f"DS-Sync's random pairs take {min(d):.3f} to {max(d):.3f} times max-min's step", [SCALE])
    claim(DOC, f"a DS-Sync step behind racks takes {float(per_link[('dssync', 65536)][0]['virtual_seconds_per_step']):.3f} s "
               f"at 65,536 ranks against {float(grouped('flat')[('dssync', 65536)][0]['virtual_seconds_per_step']):.3f} s "
               "on the flat network", [SCALE])


claims()
