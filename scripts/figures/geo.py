"""Across data centers and skewed data: SIMULATION.md's geo study
(scripts/studies/geo) and EXPERIMENTS.md's skewed-data table
(scripts/studies/skew). Each is the table its study's own script prints from
the records, read back here, so that the numbers are computed in one place."""
import glob
import os
from statistics import fmean

from figures.beside import printed_tables
from figures.lib import claim, path, read_csv, table

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


def _skew_runs(row, partition, norm):
    """Every seed's rows of one cell of the skewed-data study."""
    files = sorted(glob.glob(path(f"{SKEW}/{row}_{partition}_{norm}_seed*.csv")))
    return [read_csv(os.path.relpath(f, path(""))) for f in files]


def _skew_claims():
    if not os.path.isdir(path(SKEW)):
        return
    doc = "EXPERIMENTS.md"
    rows = ["bsp", "dssync", "localsgd", "gaia1", "skewscout"]

    def final(row, partition, norm):
        return fmean(float(r[-1]["test_acc_avg"]) for r in _skew_runs(row, partition, norm))

    def cost(row, norm):
        return 100 * (final(row, "iid", norm) - final(row, "skew1", norm))

    for norm, text in (("batch", "points lost"), ("group32", "points"), ("none", "")):
        costs = [cost(r, norm) for r in rows]
        claim(doc, f"{min(costs):.1f} to {max(costs):.1f}" + (f" {text}" if text else ""), [SKEW])
    claim(doc, f"Gaia at 1 % costs {cost('gaia1', 'none'):.1f} points", [SKEW])
    claim(doc, f"BSP's {cost('bsp', 'none'):.1f} points under skew", [SKEW])
    claim(doc, "skew:1 costs BSP {:.1f} points, DS-Sync g=2 with random pairs {:.1f} and local SGD H=8 {:.1f}"
          .format(cost("bsp", "none"), cost("dssync", "none"), cost("localsgd", "none")), [SKEW])

    # DS-Sync's consensus distance after epoch 1 (the second record), the mean over seeds.
    def consensus1(partition):
        return fmean(float(r[1]["consensus"]) for r in _skew_runs("dssync", partition, "none"))
    iid, skew = consensus1("iid"), consensus1("skew1")
    claim(doc, f"consensus distance after epoch 1 is {skew:.2f} under skew:1 against {iid:.3f} on iid data",
          [SKEW])
    claim(doc, f"{skew / iid:.0f} times more", [SKEW])

    def last(row, partition, column):
        return fmean(float(r[-1][column]) for r in _skew_runs(row, partition, "none"))
    claim(doc, f"{100 * last('gaia1', 'skew1', 'significant'):.0f} % of the entries were significant under "
               f"skew:1 against {100 * last('gaia1', 'iid', 'significant'):.0f} % on iid data", [SKEW])
    claim(doc, f"loosening the threshold to {last('skewscout', 'iid', 'knob'):.2g} on iid data "
               f"({100 * last('skewscout', 'iid', 'significant'):.0f} % significant at the end) and tightening it "
               f"to {last('skewscout', 'skew1', 'knob'):.2g} under skew "
               f"({100 * last('skewscout', 'skew1', 'significant'):.0f} %)", [SKEW])
    gap = max(abs(final("skewscout", p, "none") - final("gaia1", p, "none")) for p in ("iid", "skew1"))
    claim(doc, f"ends within {100 * gap:.2f} points of Gaia in both", [SKEW])



def _geo_budget_claims():
    """What the 8 uplinks can carry in a step at 80 % of LAN speed, against
    what Gaia at 1 % sends (lr 0.05, iid, no normalization)."""
    def rows(net, row):
        return [read_csv(os.path.relpath(f, path(""))) for f in
                sorted(glob.glob(path(f"{GEO_LR005}/{net}_{row}_iid_none_seed*.csv")))]

    def per_step(records, column):
        trained = [r for r in records if float(r["epoch"]) > 0]
        return sum(float(r[column]) for r in trained) / sum(float(r["steps"]) for r in trained)

    lan, = rows("lan", "gaia1")
    step = per_step(lan, "seconds") / 0.8
    budget = 8 * 100e6 / 8 * step
    bsp = fmean(per_step(r, "wan_bytes") for r in rows("wan", "bsp-hier"))
    gaia = fmean(per_step(r, "wan_bytes") for r in rows("wan", "gaia1"))
    claim("SIMULATION.md", f"at 80 % of LAN speed a step may take {1000 * step:.1f} ms, in which the 8 "
          f"uplinks carry {budget / 1e6:.2f} MB together, {100 * budget / bsp:.0f} % of hierarchical BSP's "
          f"bytes a step; Gaia at 1 % sends {gaia / budget:.1f} times that", [GEO_LR005])


class _Lr005:
    """The lr 0.05 table and its bars, as geo-table.py computes them."""

    def __init__(self):
        self.tables = printed_tables("scripts/studies/geo-table.py", os.path.dirname(GEO_LR005))
        self.rows = {(r[0], r[1]): r for r in self.tables[0]}

    def acc(self, partition, label):
        return float(self.rows[(partition, label)][6].split()[0])

    def mb(self, partition, label):
        return float(self.rows[(partition, label)][8])

    def measured(self, label, bar):  # a bar's figure for `label`, without its " %"
        return next(r[2] for r in self.tables[2] if r[1] == label and r[0].startswith(bar)).removesuffix(" %")

    def recovered(self, label, of):  # the share of `of`'s loss under skew:1 that `label` recovers
        return self.measured(label, f"skew:1: recovers two thirds of {of}'s loss")

    def share(self, label):  # `label`'s wide-area bytes as a share of hierarchical BSP's
        return self.measured(label, "skew:1: under half of BSP's WAN bytes")


def _geo_scout_claims(lr):
    """SkewScout turning local SGD's period and Gaia's threshold at lr 0.05,
    by the baseline a travelled model is compared with."""
    acc, mb, recovered, share = lr.acc, lr.mb, lr.recovered, lr.share
    bsp, lsgd, gaia20 = "BSP, hierarchical", "local SGD H=8, hierarchical", "Gaia 20 %"
    paper = "SkewScout (local SGD from H=8, target 5 %)"
    host = "SkewScout (local SGD from H=8, target 5 %, beside the host's model)"
    g_paper = "SkewScout (Gaia 20 %, target 5 %)"
    g_host = "SkewScout (Gaia 20 %, target 5 %, beside the host's model)"
    doc = "SIMULATION.md"
    claim(doc, f"under skew:1 it ends at {acc('skew:1', paper):.4f} and recovers "
               f"{recovered(paper, lsgd)} % of local SGD's loss, with {share(paper)} % of "
               f"hierarchical BSP's wide-area bytes", [GEO_LR005])
    claim(doc, f"{acc('skew:1', host):.4f}, {recovered(host, lsgd)} % of local SGD's loss and "
               f"{recovered(host, gaia20)} % of Gaia 20 %'s recovered, with {share(host)} % of the "
               f"bytes", [GEO_LR005])
    claim(doc, f"({acc('skew:1', g_host):.4f} against {acc('skew:1', g_paper):.4f}) with {share(g_host)} % "
               f"of BSP's bytes instead of {share(g_paper)} %", [GEO_LR005])
    claim(doc, f"({mb('iid', host):.3f} MB a step, {acc('iid', host):.4f}, "
               f"{100 * (acc('iid', bsp) - acc('iid', host)):.2f} points under BSP), and Gaia's threshold "
               f"reaches 100 % ({mb('iid', g_host):.3f} MB, {acc('iid', g_host):.4f}, "
               f"{100 * (acc('iid', bsp) - acc('iid', g_host)):.2f} points under)", [GEO_LR005])


def _geo_moment_claims(lr):
    """SkewScout around local SGD estimating before the synchronization, its
    period held at 2 or 3 steps and more, and local SGD at fixed periods of 2
    to 4 steps (lr 0.05): the estimates the records carry, and the lr 0.05
    table and bars."""
    acc, mb, rows = lr.acc, lr.mb, lr.rows

    def pair(label):  # "<recovered> % of Gaia 20 %'s loss, <share> %"
        return f"{lr.recovered(label, 'Gaia 20 %')} %", f"{lr.share(label)} %"

    def estimates(row, partition, epoch):
        out = []
        for f in sorted(glob.glob(path(f"{GEO_LR005}/wan_{row}_{partition}_none_seed*.csv"))):
            out += [float(r["estimate"]) for r in read_csv(os.path.relpath(f, path("")))
                    if float(r["epoch"]) == epoch]
        return out

    doc = "SIMULATION.md"
    sync_rows = ("skewscout-lsgd-sync", "skewscout-lsgd-host-sync")
    early = [e for row in sync_rows for epoch in (2, 3, 4, 5) for e in estimates(row, "skew1", epoch)]
    assert early and all(e == 1.0 for e in early), early
    claim(doc, f"the estimate was {min(early):.3f} at every estimate of epochs 2 to 5 in every seed",
          [GEO_LR005])
    later = {epoch: [e for row in sync_rows for e in estimates(row, "skew1", epoch)] for epoch in (6, 7)}
    claim(doc, f"to {min(later[6]):.2f} to {max(later[6]):.2f} at epoch 6 and {min(later[7]):.2f} to "
               f"{max(later[7]):.2f} at epoch 7", [GEO_LR005])
    sync = "SkewScout (local SGD from H=8, target 5 %, before the synchronization)"
    host_sync = "SkewScout (local SGD from H=8, target 5 %, beside the host's model, before the synchronization)"
    after = "SkewScout (local SGD from H=8, target 5 %)"
    assert rows[("skew:1", sync)][6:] == rows[("skew:1", host_sync)][6:] == rows[("skew:1", after)][6:]
    claim(doc, f"the same run as the paper's estimate after the step ({acc('skew:1', sync):.4f}, "
               f"{lr.share(sync)} % of BSP's bytes)", [GEO_LR005])
    for floor in (2, 3):
        label = host_sync.removesuffix(")") + f", H >= {floor})"
        rec, share = pair(label)
        claim(doc, f"at {floor} or more ends at {acc('skew:1', label):.4f}: {rec} of Gaia 20 %'s loss with "
                   f"{share} of the bytes", [GEO_LR005])
    fixed = [(h, pair(f"local SGD H={h}, hierarchical")) for h in (2, 3, 4)]
    claim(doc, "; ".join(f"{h} steps {rec} with {share}" for h, (rec, share) in fixed), [GEO_LR005])
    iid = [e for epoch in range(2, 9) for e in estimates("skewscout-lsgd-host-sync", "iid", epoch)]
    claim(doc, f"never above {max(iid):.2f}, the period moves both ways, and the run ends at "
               f"{acc('iid', host_sync):.4f} with {mb('iid', host_sync):.3f} MB a step", [GEO_LR005])


_skew_claims()
_geo_budget_claims()
_lr005 = _Lr005()
_geo_scout_claims(_lr005)
_geo_moment_claims(_lr005)
