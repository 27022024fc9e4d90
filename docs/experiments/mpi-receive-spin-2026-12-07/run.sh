#!/bin/bash
# bench_mpi and bench_mpi_wait_cpu built before (/tmp/*_old) and after
# (/tmp/*_new) a receive alone stopped counting its bytes' polling time before
# its message is matched. The two alternate over 4 rounds, with
# scripts/bench/mpi's settings; writes mpib_{old,new}_R.json and wait_cpu.txt here.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=4294967296
ARGS=(--oversubscribe --bind-to none --mca btl self,vader --mca btl_vader_single_copy_mechanism none -x MALLOC_MMAP_MAX_ -x MALLOC_TRIM_THRESHOLD_)
F='^(mpi_allreduce|ring|mpi_bcast|broadcast_tree|broadcast_pipeline)/n:8/bytes:(104857[0-9]|1677721[0-9])/'
: >"$HERE/wait_cpu.txt"
for round in 1 2 3 4; do
  for v in old new; do
    mpirun "${ARGS[@]}" -np 8 "/tmp/bench_mpi_$v" --benchmark_filter="$F" --benchmark_repetitions=5 \
      --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true \
      --benchmark_out="$HERE/mpib_${v}_$round.json" --benchmark_out_format=json >/dev/null 2>&1
    # Rank 0 waits in recv for 128 MiB while rank 1 computes for 2 s.
    echo "$v round $round, load average $(cut -d' ' -f1-3 /proc/loadavg): $(mpirun "${ARGS[@]}" -np 2 \
      "/tmp/bench_mpi_wait_cpu_$v" 2 134217728 2>/dev/null)" >>"$HERE/wait_cpu.txt"
  done
done
