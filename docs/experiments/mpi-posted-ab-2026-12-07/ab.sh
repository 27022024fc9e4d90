#!/bin/bash
# The open question of ../mpi-posted-recheck-2026-12-07/, with more rounds:
# bench_mpi built at 328ec21 (posted receives as MPI_Irecv: /tmp/ab/bench_mpi_328), at
# 59b97ec (matched before taken, as published: /tmp/ab/bench_mpi_head) and at 59b97ec with
# a second match after each poll's MPI_Testall (/tmp/ab/bench_mpi_rematch), in turn over
# ROUNDS rounds (12) with scripts/bench/mpi's settings, the two collectives' rows, their
# blocking variants and Open MPI's calls only; writes {328,head,rematch}_R.json here, and
# the load average before each run to load.txt.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROUNDS="${ROUNDS:-12}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=4294967296
ARGS=(--oversubscribe --bind-to none --mca btl self,vader --mca btl_vader_single_copy_mechanism none -x MALLOC_MMAP_MAX_ -x MALLOC_TRIM_THRESHOLD_)
F='^(mpi_bcast|broadcast_pipeline|broadcast_pipeline_blocking|mpi_allgather|all_gather_ring|all_gather_ring_blocking)/n:8/bytes:1677721[0-9]/'
: > "$HERE/load.txt"
for round in $(seq 1 "$ROUNDS"); do
  for v in 328 head rematch; do
    echo "$v $round $(cut -d' ' -f1 /proc/loadavg)" >> "$HERE/load.txt"
    mpirun "${ARGS[@]}" -np 8 "/tmp/ab/bench_mpi_$v" --benchmark_filter="$F" --benchmark_repetitions=5 \
      --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true \
      --benchmark_out="$HERE/${v}_$round.json" --benchmark_out_format=json >/dev/null 2>&1
  done
done
