#!/bin/bash
# bench_mpi built before (/tmp/bench_mpi_old) and after (/tmp/bench_mpi_new)
# posted receives were matched before they are taken; the two alternate over
# 4 rounds, with scripts/bench/mpi's settings. Writes mpib_{old,new}_R.json here.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=4294967296
ARGS=(--oversubscribe --bind-to none --mca btl self,vader --mca btl_vader_single_copy_mechanism none -x MALLOC_MMAP_MAX_ -x MALLOC_TRIM_THRESHOLD_)
F='^(mpi_bcast|broadcast_pipeline|mpi_allgather|all_gather_ring)/n:8/bytes:(104857[0-9]|1677721[0-9])/'
for round in 1 2 3 4; do
  for v in old new; do
    mpirun "${ARGS[@]}" -np 8 "/tmp/bench_mpi_$v" --benchmark_filter="$F" --benchmark_repetitions=5 \
      --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true \
      --benchmark_out="$HERE/mpib_${v}_$round.json" --benchmark_out_format=json >/dev/null 2>&1
  done
done
