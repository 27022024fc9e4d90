#!/usr/bin/env bash
# The simulator's 1024-rank ring all-reduce (bench_sim), before and after the
# split of sim.hpp, in one sitting: 5 rounds, each running the two builds one
# after the other in a fresh random order, 3 repetitions each.
#   sim-ring.sh <bench_sim before> <bench_sim after> <out dir>
set -euo pipefail
before="$1" after="$2" out="$3"
mkdir -p "$out"
for round in 1 2 3 4 5; do
  for which in $(printf 'before\nafter\n' | shuf); do
    bin="$before"; [[ $which == after ]] && bin="$after"
    "$bin" --benchmark_filter='BM_SimRingAllReduce/ranks:1024/' --benchmark_repetitions=3 \
      --benchmark_format=json > "$out/$which-$round.json"
  done
done
