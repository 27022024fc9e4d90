#!/usr/bin/env bash
# bench_tcp_interleaved (dssync's and Gloo's all-reduce in the same 8
# processes, 16 MiB) before and after the split of tcp.hpp, in one sitting:
# 3 rounds, each running the two builds one after the other in a fresh random
# order, 12 trials each.
#   tcp-interleaved.sh <bench_tcp_interleaved before> <... after> <out dir>
set -euo pipefail
before="$1" after="$2" out="$3"
root="$(cd "$(dirname "$0")/../../.." && pwd)"
mkdir -p "$out"
for round in 1 2 3; do
  for which in $(printf 'before\nafter\n' | shuf); do
    bin="$before"; [[ $which == after ]] && bin="$after"
    store="$(mktemp -d)"
    "$root/scripts/tools/dssync-run" -n 8 --timeout 900 "$bin" --sizes 16777216 --trials 12 \
      --store "$store" | sed -E 's/^\[ *[0-9]+\] //' > "$out/$which-$round.txt"
    rm -rf "$store"
  done
done
