"""docs/benchmarks.md: the tables whose records live under docs/experiments/."""
import re
import statistics

from figures.lib import claim, gbench, path, read_csv, seconds, table

DOC = "docs/benchmarks.md"
BUTTERFLY = "docs/experiments/mixing/butterfly.csv"


@table("butterfly", [BUTTERFLY])
def butterfly(records):
    rows = [["g", "n", "k = ceil(log_g n)", "`ButterflyShuffle`", "`RandomShuffle`"]]
    for r in read_csv(records[0]):
        exact = " (exact)" if int(r["g"]) ** int(r["k"]) == int(r["n"]) else ""
        rows.append([r["g"], r["n"], r["k"], r["butterfly_steps"] + exact,
                     f"{r['random_median']} ({r['random_min']} to {r['random_max']})"])
    return rows


# bench-tcp: scripts/bench/tcp's table (tcp-table.py), a section per way of running.
TCP = "docs/experiments/bench-tcp/2026-12-07-table.txt"
SIZES = [1048576, 4194304, 16777216]
SIZE_NAMES = ["1 MiB", "4 MiB", "16 MiB"]


def tcp_sections(record):
    """[{(label, bytes): time_us}, ...] for the separate programs, then the interleaved run."""
    sections, paired = [{}], {}
    with open(path(record)) as f:
        for line in f:
            if line.startswith("# bench_tcp_interleaved"):
                sections.append({})
            m = re.match(r"# (\d+) bytes, Gloo's better time over ours per trial, (\d+) trials: "
                         r"median ([\d.]+), quartiles ([\d.]+) and ([\d.]+)", line)
            if m:
                paired[int(m.group(1))] = (int(m.group(2)), float(m.group(3)), float(m.group(4)),
                                           float(m.group(5)))
            fields = line.split()
            if len(fields) == 10 and fields[1].isdigit():
                sections[-1][(fields[0], int(fields[1]))] = float(fields[4])
    return sections[0], sections[1], paired


def ms(us):
    v = us / 1000
    return f"{v:.2f} ms" if v < 10 else f"{v:.1f} ms" if v < 100 else f"{v:.0f} ms"


LABELS = [("dssync_halving_doubling", "dssync `HalvingDoublingReduce` over `TcpTransport`"),
          ("dssync_ring", "dssync `RingReduce` over `TcpTransport`"),
          ("gloo_halving_doubling", "Gloo halving-doubling"), ("gloo_ring", "Gloo ring"),
          ("mpi_tcp", "Open MPI `MPI_Allreduce`, tcp btl"),
          ("tcp_ring_traffic", "the ring's traffic alone, plain sockets (`bench_tcp_floor`)")]


def tcp_rows(times, labels, header):
    rows = [[header] + SIZE_NAMES]
    for key, name in labels:
        rows.append([name] + [ms(times[(key, b)]) if (key, b) in times else "-" for b in SIZES])
    return rows


@table("tcp-separate", [TCP])
def tcp_separate(records):
    separate, _, _ = tcp_sections(records[0])
    return tcp_rows(separate, LABELS, "all-reduce")


@table("tcp-interleaved", [TCP])
def tcp_interleaved(records):
    _, interleaved, paired = tcp_sections(records[0])
    names = [("dssync_halving_doubling", "dssync `HalvingDoublingReduce`"),
             ("dssync_ring", "dssync `RingReduce`")] + LABELS[2:4]
    rows = tcp_rows(interleaved, names, "all-reduce, in the same processes")
    trials = {p[0] for p in paired.values()}
    rows.append([f"Gloo's best over ours, per trial: median of {max(trials)} (quartiles)"] +
                [f"{paired[b][1]:.2f} ({paired[b][2]:.2f}-{paired[b][3]:.2f})" for b in SIZES])
    return rows


def _tcp_claims():
    separate, _, _ = tcp_sections(TCP)

    def best(prefix, b):
        return min(t for (k, size), t in separate.items() if k.startswith(prefix) and size == b)
    ratios = [best("gloo", b) / best("dssync", b) for b in SIZES]
    claim(DOC, f"Our best is {ratios[0]:.2f}x faster than Gloo's best at 1 MiB, {ratios[1]:.2f}x "
          f"at 4 MiB and {ratios[2]:.2f}x at 16 MiB", [TCP])
    mpi = [(separate[("mpi_tcp", b)], best("dssync", b)) for b in (SIZES[0], SIZES[2])]
    claim(DOC, f"Open MPI's tcp took {ms(mpi[0][0])} at 1 MiB against our {ms(mpi[0][1])} "
          f"({mpi[0][0] / mpi[0][1]:.2f} of our time) and {ms(mpi[1][0])} at 16 MiB against our "
          f"{ms(mpi[1][1])} ({mpi[1][0] / mpi[1][1]:.2f})", [TCP])


_tcp_claims()

TCP16 = "docs/experiments/bench-tcp/2026-12-03-16mib-table.txt"


def _tcp16_claims():
    full, _, _ = tcp_sections(TCP)
    alone, _, paired = tcp_sections(TCP16)
    b = SIZES[2]

    def best(times, prefix):
        return min(t for (k, size), t in times.items() if k.startswith(prefix) and size == b)
    ours, gloo, floor = best(alone, "dssync"), alone[("gloo_ring", b)], alone[("tcp_ring_traffic", b)]
    claim(DOC, f"gave ours {ours / 1000:.1f} ms, Gloo's ring {gloo / 1000:.1f} ms and the floor "
          f"{floor / 1000:.1f} ms as separate programs ({best(alone, 'gloo') / ours:.2f}x), and a "
          f"paired median of {paired[b][1]:.2f} (quartiles {paired[b][2]:.2f}-{paired[b][3]:.2f})",
          [TCP16])
    floors = sorted([best(alone, "dssync") / floor, best(full, "dssync") / full[("tcp_ring_traffic", b)]])
    glooring = sorted([gloo / floor, full[("gloo_ring", b)] / full[("tcp_ring_traffic", b)]])
    claim(DOC, f"ours ran at {floors[0]:.2f}x and {floors[1]:.2f}x of it in the two runs. Gloo's ring "
          f"ran at {glooring[0]:.2f}x and {glooring[1]:.2f}x", [TCP, TCP16])


_tcp16_claims()


# In-process: scripts/bench/inproc's Google Benchmark JSON (medians of
# interleaved repetitions).
COLLECTIVES = "docs/experiments/bench-inproc-2026-12-04/collectives.json"
SYNC = "docs/experiments/bench-inproc-2026-12-04/sync.json"


def three(v):
    """Three significant digits, trailing zeros kept (1.30, 22.0, 243)."""
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}" if v >= 1 else f"{v:.3f}"


def duration(s):
    return f"{three(s * 1e6)} us" if s < 1e-3 else f"{three(s * 1e3)} ms"


INPROC_SIZES = [(4096, "4 KiB"), (262144, "256 KiB"), (16777216, "16 MiB")]
INPROC_ROWS = [("ring/n:8", "`RingReduce`"), ("halving_doubling/n:8", "`HalvingDoublingReduce`"),
               ("recursive_doubling/n:8", "`RecursiveDoublingReduce`"), ("tree/n:8", "`TreeReduce`"),
               ("auto/n:8", "`AutoReduce`"), ("memcpy", "memcpy of the buffer, one thread"),
               ("memcpy_all_cores", "memcpy on both cores at once")]


@table("inproc-allreduce", [COLLECTIVES])
def inproc_allreduce(records):
    rows = gbench(records[0])
    out = [["8 ranks"] + [name for _, name in INPROC_SIZES]]
    for key, name in INPROC_ROWS:
        out.append([name] + [duration(seconds(rows[f"{key}/bytes:{b}/real_time"]))
                             for b, _ in INPROC_SIZES])
    return out


SYNC_ROWS = [("dssync_g2", "`DSSync` g = 2 (RandomShuffle, Ring)"),
             ("dssync_g2_checked", "`DSSync` g = 2, checked mode"),
             ("dssync_g2_auto", "`DSSync` g = 2 (Auto)"), ("dssync_g4", "`DSSync` g = 4"),
             ("allreduce_ring", "`AllReduceSync` (Ring)"), ("allreduce_auto", "`AllReduceSync` (Auto)"),
             ("gossip_ring", "`GossipSync` (ring)")]
SYNC_SIZES = [(65536, "64 KiB"), (1048576, "1 MiB"), (16777216, "16 MiB")]


def sync_row(rows, key, size):
    return rows.get(f"{key}/n:8/bytes:{size}/manual_time")


@table("inproc-sync", [SYNC])
def inproc_sync(records):
    rows = gbench(records[0])
    out = [["per step"] + [n for _, n in SYNC_SIZES] +
           ["MB sent per rank per step (16 MiB)", "bytes vs full ring"]]
    for key, name in SYNC_ROWS:
        cells = [duration(seconds(r)) if (r := sync_row(rows, key, b)) else "" for b, _ in SYNC_SIZES]
        big = sync_row(rows, key, 16777216)
        out.append([name] + cells + [f"{big['sent_MB_per_rank']:.1f}", f"{big['vs_allreduce_model']:.3f}"])
    return out


def _sync_claims():
    rows = gbench(SYNC)
    ratio = seconds(sync_row(rows, "allreduce_ring", 16777216)) / seconds(sync_row(rows, "dssync_g2", 16777216))
    claim(DOC, f"At 16 MiB `DSSync` g = 2 takes a step {ratio:.2f}x faster than `AllReduceSync` "
          "with the ring", [SYNC])


_sync_claims()


# Under MPI: n = 8, 16 MiB, in one run beside Open MPI's own calls.
MPI16 = "docs/experiments/mpi-posted-ab-2026-12-07/mpi_n8_16mib.json"
MPI16_LOAD = "docs/experiments/mpi-posted-ab-2026-12-07/mpi_n8_16mib.txt"
MPI16_BEFORE = "docs/experiments/broadcast-posted-2026-12-05/mpi_n8_16mib.json"
MPI_AB = "docs/experiments/mpi-posted-ab-2026-12-07"
MPI_ROWS = [("mpi_allreduce", "`MPI_Allreduce`", "mpi_allreduce"),
            ("ring", "`RingReduce` over `MPITransport`", "mpi_allreduce"),
            ("mpi_bcast", "`MPI_Bcast`", "mpi_bcast"),
            ("broadcast_tree", "`TreeBroadcast`", "mpi_bcast"),
            ("broadcast_scatter_allgather", "`ScatterAllgatherBroadcast`", "mpi_bcast"),
            ("broadcast_pipeline", "`PipelineBroadcast` (8 segments in flight)", "mpi_bcast"),
            ("broadcast_pipeline_blocking", "`PipelineBroadcast`, blocking (`in_flight = 0`)",
             "mpi_bcast"),
            ("broadcast_auto", "`AutoBroadcast` (the chain here)", "mpi_bcast"),
            ("broadcast_mpi_native", "`MPINativeBroadcast`", "mpi_bcast"),
            ("mpi_allgather", "`MPI_Allgather`", "mpi_allgather"),
            ("all_gather_ring", "`RingAllGather` (8 segments in flight)", "mpi_allgather"),
            ("all_gather_ring_blocking", "`RingAllGather`, blocking (`in_flight = 0`)",
             "mpi_allgather"),
            ("all_gather_bruck", "`BruckAllGather`", "mpi_allgather"),
            ("all_gather_auto", "`AutoAllGather`", "mpi_allgather"),
            ("all_gather_mpi_native", "`MPINativeAllGather`", "mpi_allgather")]


def _mpi_medians(record):  # the slowest rank's medians by row, in ms
    return {name.split("/")[0]: v["max_rank_ms"] for name, v in gbench(record).items()}


@table("mpi-n8-16mib", [MPI16])
def mpi_n8(records):
    rows_ = _mpi_medians(records[0])

    def t(key):  # the slowest rank's time (bench_mpi's counter), as the text says
        return rows_[key] / 1e3
    out = [["n = 8, 16 MiB", "median", "over Open MPI's own call"]]
    for key, name, peer in MPI_ROWS:
        out.append([name, duration(t(key)), f"{t(key) / t(peer):.2f}"])
    return out


def _in_flight_claim():
    now, before = _mpi_medians(MPI16), _mpi_medians(MPI16_BEFORE)

    def r(key, peer="mpi_bcast", rows=now):  # over the MPI call
        return f"{rows[key] / rows[peer]:.2f}x"
    with open(path(MPI16_LOAD)) as f:
        load = float(f.readline().split()[0])
    keys = [k for k, _, _ in MPI_ROWS] + ["memcpy"]
    slower = [now[k] / before[k] for k in keys]
    claim(DOC, f"(load average {load:.1f} at the start, the tail of the comparison below; the first "
               "line of `mpi_n8_16mib.txt`)", [MPI16_LOAD])
    claim(DOC, f"every time, the plain memcpy's included, is {min(slower):.1f} to "
               f"{max(slower):.1f} times that day's", [MPI16, MPI16_BEFORE])
    cvs = [v["max_rank_ms"] * 100 for name, v in gbench(MPI16, "cv").items()
           if name.split("/")[0] in keys]
    claim(DOC, f"the same code in the same run, read {r('broadcast_auto')} and "
               f"{r('broadcast_pipeline')} MPI_Bcast's time; the rows' coefficients of variation "
               f"over their 15 repetitions were {min(cvs):.0f} to {max(cvs):.0f} %", [MPI16])

    def flight(rows):
        return (f"the chain {r('broadcast_pipeline', rows=rows)} MPI_Bcast's time in flight "
                f"against {r('broadcast_pipeline_blocking', rows=rows)} blocking, the ring "
                f"all-gather {r('all_gather_ring', 'mpi_allgather', rows)} MPI_Allgather's against "
                f"{r('all_gather_ring_blocking', 'mpi_allgather', rows)}")
    claim(DOC, f"In this run: {flight(now)}. On 2026-12-05: {flight(before)}.", [MPI16, MPI16_BEFORE])
    ab = {}
    for build in ("328", "head"):
        runs = [_mpi_medians(f"{MPI_AB}/{build}_{i}.json") for i in range(1, 13)]
        ab[build] = [statistics.median(m[k] / m[f"{k}_blocking"] for m in runs)
                     for k in ("broadcast_pipeline", "all_gather_ring")]
    claim(DOC, f"the time in flight over the same run's blocking time: {ab['head'][0]:.2f} for "
               f"the chain and {ab['head'][1]:.2f} for the ring all-gather (medians over the "
               f"rounds), and {ab['328'][0]:.2f} and {ab['328'][1]:.2f} with the library before its "
               "posted receives were matched", [f"{MPI_AB}/head_1.json", f"{MPI_AB}/328_1.json"])
    claim(DOC, f"In flight, 2 segments took {r('broadcast_pipeline_2')} MPI_Bcast's time, "
               f"4 took {r('broadcast_pipeline_4')}, 8 took {r('broadcast_pipeline')} "
               f"(1 MiB segments {r('broadcast_pipeline_1m')}, 128 KiB "
               f"{r('broadcast_pipeline_128k')}; blocking with 2 MiB segments "
               f"{r('broadcast_pipeline_blocking_2m')})", [MPI16])


_in_flight_claim()


WAIT = "docs/experiments/mpi-wait-cpu-2026-12-04/runs.txt"


def _wait_claim():
    shares = []
    with open(path(WAIT)) as f:
        for line in f:
            m = re.search(r"CPU [\d.]+ s: ([\d.]+) % of the wall time", line)
            if m:
                shares.append(float(m.group(1)))
    claim(DOC, f"used {min(shares):.1f} to {max(shares):.1f} % of a core over 3 s in {len(shares)} runs",
          [WAIT])


_wait_claim()
