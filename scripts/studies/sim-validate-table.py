#!/usr/bin/env python3
"""Step 2 to 4 of scripts/studies/sim-validate: fits alpha and B to the
measured ping-pong, simulates every measured row on SimTransport
(dssync_simulate) with them, and prints the table (also OUT/table.md).

    sim-validate-table.py BUILD_DIR OUT_DIR RATE...

OUT_DIR holds measured-<RATE>.txt for each RATE, as the shaped runs wrote it.
"""
import statistics
import subprocess
import sys


def simulate(build, out, name, size, alpha, bw):
    cmd = [f"{build}/examples/dssync_simulate", "--ranks", "8", "--sync", name, "--steps", "10",
           "--alpha", repr(alpha), "--bandwidth", repr(bw * 8 / 1e9), "--model-bytes", str(size),
           "--real-bytes", "4096", "--csv", f"{out}/sim.csv"]
    text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [float(l.split()[-2]) for l in text.splitlines() if "per step" in l][0] * 1e3


def main(argv):
    build, out, rates = argv[1], argv[2], argv[3:]
    table = ["| rate | alpha (us) | B one-way / both ways (MB/s) | synchronizer | size | measured ms/step (jobs' range) "
             "| simulated, B both ways | error | simulated, B one-way | error |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    worst = {"both": 0.0, "one": 0.0}
    for rate in rates:
        measured, ping = {}, {}
        for line in open(f"{out}/measured-{rate}.txt"):
            f = line.split()
            if len(f) >= 3 and f[0] in ("pingpong", "exchange"):
                ping[(f[0], int(f[1]))] = float(f[2]) * 1e-6
            elif len(f) == 3 and f[0] in ("ring", "dssync", "gossip"):
                measured.setdefault((f[0], int(f[1])), []).append(float(f[2]))
        alpha = ping[("pingpong", 4)]
        # B two ways: from the 4 MiB message alone (one-way), and from the 4 MiB
        # exchange, both directions at once, as every synchronizer here uses a
        # host's link (the reverse direction's ACKs share each way's bandwidth).
        bw_one = 4194304 / (ping[("pingpong", 4194304)] - alpha)  # bytes/s
        bw_both = 4194304 / (ping[("exchange", 4194304)] - alpha)
        for (name, size), jobs in sorted(measured.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            ms = statistics.median(jobs)
            both = simulate(build, out, name, size, alpha, bw_both)
            one = simulate(build, out, name, size, alpha, bw_one)
            eb, eo = (both - ms) / ms, (one - ms) / ms
            worst["both"] = max(worst["both"], abs(eb))
            worst["one"] = max(worst["one"], abs(eo))
            table.append(f"| {rate} | {alpha*1e6:.0f} | {bw_one/1e6:.1f} / {bw_both/1e6:.1f} | {name} | {size >> 20} MiB "
                         f"| {ms:.1f} ({min(jobs):.1f}-{max(jobs):.1f}) | {both:.1f} | {eb*100:+.1f} % | {one:.1f} | {eo*100:+.1f} % |")
    table.append("")
    table.append(f"worst error: {worst['both']*100:.1f} % with B both ways, {worst['one']*100:.1f} % with B one-way")
    text = "\n".join(table)
    print(text)
    with open(f"{out}/table.md", "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main(sys.argv)
