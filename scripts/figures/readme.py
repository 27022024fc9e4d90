"""README.md: the results table, each row from its record (the pages give the detail)."""
import statistics

from figures import experiments
from figures.lib import per_epoch, read_csv, table, time_to

BED100 = "docs/experiments/bed-100mbit-2026-12-04"
BED25 = "docs/experiments/bed-25mbit-2026-12-04"
DEMO = "docs/experiments/demo-2026-12-04/demo_sim.csv"
RECORDS = [experiments.STUDY, BED100, BED25, DEMO]


def study_final(name, key="test_acc_avg"):
    runs = experiments.study_runs(experiments.STUDY)[name]
    return statistics.mean(float(r[-1][key]) for r in runs)


def bed_medians(record, target):
    seeds = experiments.bed_runs(record)
    ds = statistics.median(time_to(s[experiments.DSSYNC], target) for _, s in seeds)
    bsp = statistics.median(time_to(s[experiments.BSP], target) for _, s in seeds)
    epoch_ds = statistics.median(per_epoch(s[experiments.DSSYNC]) for _, s in seeds)
    epoch_bsp = statistics.median(per_epoch(s[experiments.BSP]) for _, s in seeds)
    return ds, bsp, epoch_ds, epoch_bsp, len(seeds)


def demo_time(label, target):
    return time_to([r for r in read_csv(DEMO) if r["label"] == label], target)


@table("readme-results", RECORDS)
def results(records):
    rows = [["result", "DS-Sync g=2", "BSP (all-reduce)", "record"]]
    study = f"[runs]({experiments.STUDY}/)"
    rows.append(["Fashion-MNIST, 8 workers, 10 epochs: test accuracy (mean of 3 seeds)",
                 f"{study_final('dssync_g2_random'):.4f}", f"{study_final('bsp'):.4f}", study])
    mb = {n: statistics.mean(statistics.mean(float(x["bytes_per_worker"]) for x in r[1:]) / 1e6
                             for r in experiments.study_runs(experiments.STUDY)[n])
          for n in ("dssync_g2_random", "bsp")}
    rows.append(["the same: MB sent per worker per epoch", f"{mb['dssync_g2_random']:.1f}",
                 f"{mb['bsp']:.1f}", study])
    for record, rate in ((BED100, "100 Mbit/s"), (BED25, "25 Mbit/s")):
        link = f"[seeds]({record}/)"
        _, _, eds, ebsp, n = bed_medians(record, 0.85)
        rows.append([f"8 hosts at {rate} over TCP: seconds per epoch (median of {n} seeds)",
                     f"{eds:.1f}", f"{ebsp:.1f}", link])
        at = [bed_medians(record, t)[:2] for t in (0.84, 0.85, 0.86)]
        rows.append(["the same: seconds to test accuracy 0.84 / 0.85 / 0.86",
                     " / ".join(f"{d:.1f}" for d, _ in at), " / ".join(f"{b:.1f}" for _, b in at), link])
    rows.append(["16 workers, simulated 1 Gbit/s links: virtual seconds to 0.85",
                 f"{demo_time('dssync g=2 random', 0.85):.2f}", f"{demo_time('bsp allreduce', 0.85):.2f}",
                 f"[demo]({DEMO})"])
    return rows
