#!/bin/bash
# The whole 16 MiB table of docs/benchmarks.md ("Under MPI"), the command of
# ../broadcast-posted-2026-12-05/README.md, with bench_mpi built at 59b97ec
# (build/benchmarks/bench_mpi); the load average first in the .txt.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH="${1:-build/benchmarks/bench_mpi}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=4294967296
cut -d' ' -f1-3 /proc/loadavg > "$HERE/mpi_n8_16mib.txt"
mpirun --oversubscribe --bind-to none --mca btl self,vader \
  --mca btl_vader_single_copy_mechanism none -x MALLOC_MMAP_MAX_ -x MALLOC_TRIM_THRESHOLD_ \
  -np 8 "$BENCH" \
  '--benchmark_filter=^(memcpy|mpi_allreduce|ring|mpi_bcast|broadcast_[a-z0-9_]+|mpi_allgather|all_gather_[a-z_]+)/n:8/bytes:1677721[0-9]/' \
  --benchmark_enable_random_interleaving=true --benchmark_repetitions=15 \
  --benchmark_report_aggregates_only=true \
  --benchmark_out="$HERE/mpi_n8_16mib.json" --benchmark_out_format=json --benchmark_color=false \
  >> "$HERE/mpi_n8_16mib.txt" 2>&1
