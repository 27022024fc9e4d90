#!/usr/bin/env bash
# Runs one misconfigured job of test_mpi_failure under mpirun and judges it:
#
#   tests/mpi_failure.sh <mpiexec> <test_mpi_failure> <np> <case> [timeout_ms [slack_s]]
#
# Passes when
# - mpirun exits by itself within the timeout + slack_s (10 s by default, for
#   starting and ending the job; more under sanitizers) (it runs under
#   `timeout -k`: a hang is killed and fails the test);
# - every rank printed its outcome line, and every rank that did not finish
#   its steps caught a dssync error whose text names its rank and a peer, at
#   most 3 s after the timeout;
# - the case went wrong somewhere (at least one rank caught an error), with the
#   error the case is about on the rank that misbehaved;
# - no process of this run (ranks, orted) is left behind.
# Extra mpirun arguments may come in DSSYNC_MPIRUN_ARGS.
set -uo pipefail

mpiexec=$1 binary=$2 np=$3 case=$4 timeout_ms=${5:-2000} slack_s=${6:-10}
limit_s=$(( (timeout_ms + 999) / 1000 + slack_s ))
late_s=$(awk -v t="$timeout_ms" 'BEGIN { print t / 1000 + 3 }')
marker="dssync-mpi-failure-$$-$RANDOM"
out=$(mktemp) && trap 'rm -f "$out"' EXIT

fail() {
  echo "FAIL ($case): $*"
  echo "---- output ----"
  cat "$out"
  exit 1
}

# The marker in every process's environment finds leftovers of this run only.
leftovers() {
  grep -lsz "^DSSYNC_MPI_FAILURE_RUN=$marker\$" /proc/[0-9]*/environ 2>/dev/null |
    sed 's,/proc/\([0-9]*\)/environ,\1,' | grep -vx "$$" || true
}

start=$(date +%s.%N)
# shellcheck disable=SC2086 # DSSYNC_MPIRUN_ARGS is a list of words
DSSYNC_MPI_FAILURE_RUN=$marker timeout -k 3 "$limit_s" \
  "$mpiexec" --oversubscribe --bind-to none -x DSSYNC_MPI_FAILURE_RUN ${DSSYNC_MPIRUN_ARGS:-} \
  -np "$np" "$binary" "$case" "$timeout_ms" >"$out" 2>&1
rc=$?
elapsed=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
echo "mpirun exited with $rc after $elapsed s (limit $limit_s s)"
cat "$out"

sleep 1
left=$(leftovers)
[ -z "$left" ] || { ps -o pid,stat,etime,cmd -p "$(echo $left | tr ' ' ',')"; kill -9 $left 2>/dev/null; fail "processes left behind: $left"; }
[ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || fail "mpirun hung and was killed after $limit_s s"
[ "$rc" -eq 0 ] || fail "mpirun exited with $rc"

caught=0
for ((r = 0; r < np; r++)); do
  line=$(grep "^mpi_failure: rank $r of $np: " "$out")
  [ "$(printf '%s\n' "$line" | grep -c .)" -eq 1 ] || fail "rank $r did not print exactly one outcome line"
  case "$line" in
    *", finished after "*) continue ;;
  esac
  caught=$((caught + 1))
  [[ "$line" =~ caught\ (peer_error|timeout_error|size_mismatch_error|configuration_error):\ dssync: ]] ||
    fail "rank $r did not finish and caught no dssync error"
  [[ "$line" == *"rank $r"[,\)]* && "$line" =~ peer\ [0-9]+ ]] ||
    fail "rank $r's error does not name its rank and a peer"
  secs=$(sed -n 's/.* after \([0-9.]*\) s$/\1/p' <<<"$line")
  awk -v s="$secs" -v l="$late_s" 'BEGIN { exit !(s <= l) }' ||
    fail "rank $r caught its error after $secs s, later than $late_s s"
done
[ "$caught" -gt 0 ] || fail "no rank caught an error: the case did not go wrong"

odd=$((np - 1))
odd_line=$(grep "^mpi_failure: rank $odd of $np: " "$out")
case "$case" in
  extra_step_*)
    # Only the rank with the extra step waits: the others finished theirs.
    [ "$caught" -eq 1 ] || fail "ranks other than $odd failed"
    [[ "$odd_line" == *"caught timeout_error"* ]] || fail "rank $odd did not time out" ;;
  longer_buffer_caught)
    grep -q "caught size_mismatch_error" "$out" || fail "no rank saw the size mismatch" ;;
esac
echo "PASS ($case): $caught of $np ranks caught a dssync error"
