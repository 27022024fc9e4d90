#!/usr/bin/env bash
# platform.sh P: a SimGrid platform of P hosts with the alpha-beta network of
# bench_sim (each host's full-duplex link 1.25 GB/s, 5 us end to end, an
# unlimited backbone), on stdout.
P=$1
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
