#!/bin/bash
# bench_mpi built at 328ec21 (posted receives as MPI_Irecv: /tmp/ab/bench_mpi_328) and at
# ce3c5b1 (matched before taken: /tmp/ab/bench_mpi_head), alternating over 3 rounds with
# scripts/bench/mpi's settings; writes {328,head}_R.json here.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=4294967296
ARGS=(--oversubscribe --bind-to none --mca btl self,vader --mca btl_vader_single_copy_mechanism none -x MALLOC_MMAP_MAX_ -x MALLOC_TRIM_THRESHOLD_)
F='^(mpi_bcast|broadcast_pipeline|broadcast_pipeline_blocking|mpi_allgather|all_gather_ring|all_gather_ring_blocking)/n:8/bytes:1677721[0-9]/'
for round in 1 2 3; do
  for v in 328 head; do
    mpirun "${ARGS[@]}" -np 8 "/tmp/ab/bench_mpi_$v" --benchmark_filter="$F" --benchmark_repetitions=5 \
      --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true \
      --benchmark_out="$HERE/${v}_$round.json" --benchmark_out_format=json >/dev/null 2>&1
  done
done
