#!/usr/bin/env bash
# platform.sh P [HOSTS_PER_RACK OVERSUBSCRIPTION]: a SimGrid platform of P
# hosts with the alpha-beta network of bench_sim and dssync_simulate's
# defaults, on stdout: each host's full-duplex link 1.25 GB/s, 5 us end to end.
# Without racks, an unlimited backbone (a cluster). With racks, hosts
# 0..HOSTS_PER_RACK-1 form rack 0 and so on, and a message that leaves its rack
# also crosses its rack's uplink and the other rack's downlink, each of
# HOSTS_PER_RACK x 1.25 GB/s / OVERSUBSCRIPTION: SimTransport's topology,
# written as explicit one-way links and routes.
P=$1
RACK=${2:-0}
OVER=${3:-1}
if ((RACK == 0)); then
  cat <<XML
<?xml version='1.0'?>
<!DOCTYPE platform SYSTEM "https://simgrid.org/simgrid.dtd">
<platform version="4.1">
  <zone id="world" routing="Full">
    <cluster id="c" prefix="h" suffix="" radical="0-$((P - 1))" speed="100Gf"
             bw="1.25GBps" lat="2.5us" sharing_policy="SPLITDUPLEX"
             bb_bw="1000TBps" bb_lat="0us" bb_sharing_policy="FATPIPE"/>
  </zone>
</platform>
XML
  exit 0
fi
/usr/bin/python3 - "$P" "$RACK" "$OVER" <<'PY'
import sys
p, rack, over = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
racks = (p + rack - 1) // rack
up = rack * 1.25e9 / over
out = ["<?xml version='1.0'?>",
       '<!DOCTYPE platform SYSTEM "https://simgrid.org/simgrid.dtd">',
       '<platform version="4.1">', '  <zone id="world" routing="Full">']
for h in range(p):
    out.append(f'    <host id="h{h}" speed="100Gf"/>')
for h in range(p):
    out.append(f'    <link id="h{h}_up" bandwidth="1.25GBps" latency="2.5us"/>')
    out.append(f'    <link id="h{h}_down" bandwidth="1.25GBps" latency="2.5us"/>')
for k in range(racks):
    out.append(f'    <link id="r{k}_up" bandwidth="{up:.6g}Bps" latency="0us"/>')
    out.append(f'    <link id="r{k}_down" bandwidth="{up:.6g}Bps" latency="0us"/>')
for a in range(p):
    for b in range(p):
        if a == b:
            continue
        links = [f"h{a}_up"]
        if a // rack != b // rack:
            links += [f"r{a // rack}_up", f"r{b // rack}_down"]
        links.append(f"h{b}_down")
        ctn = "".join(f'<link_ctn id="{l}"/>' for l in links)
        out.append(f'    <route src="h{a}" dst="h{b}" symmetrical="NO">{ctn}</route>')
out += ["  </zone>", "</platform>"]
print("\n".join(out))
PY
