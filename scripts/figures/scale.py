"""SIMULATION.md, study 9: the simulator from 64 to 65,536 ranks
(scripts/studies/sim-scale). Records: docs/simulation/scale/scale.csv (one
row per run, wall times and memory of this machine) and
docs/simulation/scale/rounds.csv (Moshpit's consensus protocol, every round
of three seeds)."""
import math

from figures.lib import claim, read_csv, table

DOC = "SIMULATION.md"
SCALE = "docs/simulation/scale/scale.csv"
ROUNDS = "docs/simulation/scale/rounds.csv"
ROUNDS_BELOW = 1e-9  # mean squared deviation that counts as agreement
NAMES = {"dssync": "DS-Sync g=2", "onepeer": "one-peer gossip", "hd": "halving-doubling", "ring": "ring"}


def runs(network):
    return [r for r in read_csv(SCALE) if r["network"] == network]


def per_message_us(r):
    return float(r["sim_wall_seconds"]) / float(r["messages"]) * 1e6


def consensus(r):
    c = float(r["consensus"])
    return "< 1e-12" if c < 1e-12 else f"{c:.2g}"


def scale_rows(network):
    rows = [["ranks", "synchronizer", "steps", "virtual s per step", "consensus after the last",
             "messages", "wall s", "us of wall per message", "peak memory MiB", "stack used KiB", "stacks"]]
    for r in sorted(runs(network), key=lambda r: (int(r["ranks"]), list(NAMES).index(r["synchronizer"]))):
        rows.append([r["ranks"], NAMES[r["synchronizer"]], r["steps"], r["virtual_seconds_per_step"],
                     consensus(r), r["messages"], r["sim_wall_seconds"], f"{per_message_us(r):.2f}",
                     f"{float(r['peak_rss_kb']) / 1024:.0f}", f"{float(r['stack_bytes_used']) / 1024:.1f}",
                     r["stacks"]])
    return rows


table("sim-scale-flat", [SCALE])(lambda records: scale_rows("flat"))
table("sim-scale-racks", [SCALE])(lambda records: scale_rows("racks"))


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
    flat = {(r["synchronizer"], int(r["ranks"])): r for r in runs("flat")}
    racks = {(r["synchronizer"], int(r["ranks"])): r for r in runs("racks")}
    big = flat[("dssync", 65536)]
    claim(DOC, f"65,536 ranks took {float(big['sim_wall_seconds']):.1f} s of wall time and "
               f"{float(big['peak_rss_kb']) / 1024 ** 2:.2f} GiB", [SCALE])
    mid = flat[("dssync", 16384)]
    claim(DOC, f"16,384 ranks {float(mid['sim_wall_seconds']):.1f} s and "
               f"{float(mid['peak_rss_kb']) / 1024:.0f} MiB", [SCALE])
    for sync, low, high in (("dssync", 1024, 65536), ("onepeer", 1024, 65536), ("ring", 64, 4096)):
        a, b = per_message_us(flat[(sync, low)]), per_message_us(flat[(sync, high)])
        claim(DOC, f"{NAMES[sync]}: {a:.2f} us at {low:,} ranks, {b:.2f} us at {high:,} ({b / a:.1f}x)", [SCALE])
    r = racks[("dssync", 1024)]
    claim(DOC, f"took {float(r['sim_wall_seconds']):.1f} s for {int(r['messages']):,} messages", [SCALE])


claims()
