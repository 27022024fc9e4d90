#!/usr/bin/env bash
# shellcheck disable=SC2016 # the ranks' scripts, in single quotes, expand their own variables
# What scripts/tools/dssync-run promises, checked with real processes (bash ranks).
#
#   launcher.sh PATH/TO/dssync-run
#
# The environment of the ranks (distinct ranks, one world size, address, port
# and 32-hex-digit token per run, a fresh token per run, --rank-prefix); the
# "[R] " prefix on stdout and stderr, padded, on every line, with no two ranks'
# lines mixed while they print long lines at once; a failing rank (exit code,
# signal) ends the run with its code and the others within --grace + 1 s,
# SIGKILL for those that ignore SIGTERM; SIGINT and SIGTERM to dssync-run, a
# second SIGINT; --timeout; a rank that cannot start; dssync-run killed
# outright. After every run no process carrying this run's marker may remain.
# Every dssync-run runs under timeout(1), so the test cannot hang; it takes
# about 15 s.
set -euo pipefail
RUN=$1
WORK=$(mktemp -d)
MARK="dssync-launcher-test-$$-$RANDOM$RANDOM"

leftovers() { pgrep -f -- "$MARK" || true; }
cleanup() {
  local p
  for p in $(leftovers); do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  for f in "$WORK"/out "$WORK"/err; do
    [[ -s $f ]] && { echo "--- ${f##*/} (first 20 lines, cut at 200 characters):"; head -n 20 "$f" | cut -c1-200; }
  done >&2
  exit 1
}
T0=$(($(date +%s%N) / 1000000))
pass() { echo "ok ($(($(date +%s%N) / 1000000 - T0)) ms): $*"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# run ARGS...: dssync-run bounded by 20 s; output in $WORK/out and $WORK/err,
# exit code in $rc, duration in $took_ms.
run() {
  local t0
  t0=$(now_ms)
  rc=0
  timeout -k 5 60 "$RUN" "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
  end_ms=$(now_ms)
  took_ms=$((end_ms - t0))
}

# A failing rank writes the time it fails to $FAILED_AT (date +%s%N); this is
# how long the run went on after that, in ms.
export FAILED_AT="$WORK/failed_at"
after_failure_ms() {
  [[ -s $FAILED_AT ]] || fail "the failing rank did not record its time"
  echo $((end_ms - $(<"$FAILED_AT") / 1000000))
}

# The upper bounds on how long something takes are loose (seconds where the
# launcher needs milliseconds) so that a loaded machine passes; what they
# catch, a launcher that does not end a run, would show as tens of seconds.
# Nothing of the run is left (SIGKILLed processes may take a moment to go).
no_leftovers() {
  local i
  for ((i = 0; i < 250; i++)); do
    [[ -z $(leftovers) ]] && return 0
    sleep 0.02
  done
  fail "$1: processes of the run remain: $(leftovers | tr '\n' ' ')"
}

# bg ARGS...: dssync-run in the background (bounded by 60 s); sets $tpid (the
# subshell around timeout) and $dpid (dssync-run) once $2 lines say "ready".
bg() {
  local want=$1 i
  shift
  # Emptied here, not only by the subshell's redirection: the wait below
  # could otherwise count the previous run's "ready" lines before the
  # subshell truncates the file (seen once under load).
  : >"$WORK/out"
  : >"$WORK/err"
  # In a subshell that exits normally: no "Killed" notice from this shell when
  # timeout re-raises the signal that ended dssync-run.
  (
    timeout -k 5 60 "$RUN" "$@" >"$WORK/out" 2>"$WORK/err"
    exit $?
  ) 2>/dev/null &
  tpid=$!
  for ((i = 0; i < 2000; i++)); do
    (($(grep -c 'ready$' "$WORK/out" || true) >= want)) && break
    sleep 0.02
  done
  (($(grep -c 'ready$' "$WORK/out" || true) >= want)) || fail "the ranks did not start"
  dpid=$(pgrep -P "$(pgrep -P "$tpid")")
  [[ -n $dpid ]] || fail "dssync-run not found under timeout"
}

# --- the environment --------------------------------------------------------

ENV_SCRIPT='echo "env $DSSYNC_RANK $DSSYNC_WORLD_SIZE $DSSYNC_MASTER_ADDR $DSSYNC_MASTER_PORT $DSSYNC_JOB_TOKEN ${PREFIXED_RANK:-none}"'
# check_env N ADDR PORT|local PREFIXED(yes|no): judges the "env" lines of
# $WORK/out and prints the token. "local": a port picked on this host (not the
# fixed 29500).
check_env() {
  local n=$1 addr=$2 port=$3 prefixed=$4
  awk -v n="$n" -v addr="$addr" -v port="$port" -v prefixed="$prefixed" '
    { if (!match($0, /^\[ *[0-9]+\] /)) { print "no prefix: " $0; bad = 1; next }
      tag = substr($0, 2, RLENGTH - 3); sub(/^ +/, "", tag)
      split(substr($0, RLENGTH + 1), f, " ")
      if (f[1] != "env") next
      r = f[2]
      if (r != tag) { print "prefix [" tag "] on the line of rank " r; bad = 1 }
      if (r !~ /^[0-9]+$/ || r + 0 >= n || (r in seen)) { print "bad or repeated rank: " $0; bad = 1 }
      seen[r] = 1
      if (f[3] != n) { print "world size " f[3] " instead of " n; bad = 1 }
      if (f[4] != addr) { print "master address " f[4] " instead of " addr; bad = 1 }
      if (f[5] !~ /^[0-9]+$/ || f[5] < 1 || f[5] > 65535) { print "bad port " f[5]; bad = 1 }
      if ((port == "local" && f[5] == 29500) || (port != "local" && f[5] != port)) { print "port " f[5] ", expected " port; bad = 1 }
      if (f[6] !~ /^[0-9a-f]+$/ || length(f[6]) != 32) { print "bad token " f[6]; bad = 1 }
      if (lines && (f[5] != port0 || f[6] != token0)) { print "ranks disagree on port or token"; bad = 1 }
      if ((prefixed == "yes" && f[7] != r) || (prefixed == "no" && f[7] != "none")) { print "--rank-prefix not applied as it should: " $0; bad = 1 }
      port0 = f[5]; token0 = f[6]; lines++ }
    END { if (lines != n) { print lines + 0 " env lines instead of " n; bad = 1 }
          if (bad) exit 1
          print token0 }' "$WORK/out"
}

run -n 4 --master-port 12345 bash -c "$ENV_SCRIPT" "$MARK"
((rc == 0)) || fail "env run exited $rc"
token1=$(check_env 4 127.0.0.1 12345 no) || fail "env run: $token1"
pass "4 ranks: ranks 0..3, one world size, address, port (--master-port) and token"

# 11 ranks, so the prefix is padded: "[ 3] ".
run -n 11 bash -c "$ENV_SCRIPT"'
echo "out $DSSYNC_RANK"; echo "err $DSSYNC_RANK" >&2; printf "last $DSSYNC_RANK"' "$MARK"
((rc == 0)) || fail "output run exited $rc"
token2=$(check_env 11 127.0.0.1 local no) || fail "11 ranks: $token2"
[[ $token1 != "$token2" ]] || fail "two runs got the same token $token1"
for ((r = 0; r <= 10; r++)); do
  tag=$(printf '[%2d]' "$r")
  grep -qxF "$tag out $r" "$WORK/out" || fail "no '$tag out $r' on stdout"
  grep -qxF "$tag last $r" "$WORK/out" || fail "no '$tag last $r' (a last line without newline) on stdout"
  grep -qxF "$tag err $r" "$WORK/err" || fail "no '$tag err $r' on stderr"
done
(($(wc -l <"$WORK/out") == 33)) || fail "stdout has $(wc -l <"$WORK/out") lines, not 33"
(($(wc -l <"$WORK/err") == 11)) || fail "stderr has $(wc -l <"$WORK/err") lines, not 11"
grep -q "err" "$WORK/out" && fail "stderr leaked into stdout"
pass "11 ranks: a free local port, a new token, padded prefixes on stdout and stderr, each to its own stream, last lines without newline"

# 192.0.2.1 (TEST-NET-1) is not an address of this host: the fixed default port.
run -n 3 --master-addr 192.0.2.1 --rank-prefix 'env PREFIXED_RANK={rank}' bash -c "$ENV_SCRIPT" "$MARK"
((rc == 0)) || fail "remote address run exited $rc"
msg=$(check_env 3 192.0.2.1 29500 yes) || fail "remote address: $msg"
pass "--master-addr that is not local: port 29500; --rank-prefix with {rank}"

# A prefix that does not pass the environment on (as ssh does not): env -i
# clears it, so the ranks' variables must come as arguments behind the prefix:
# the launcher's own, and any DSSYNC_* set where it runs; nothing else.
DSSYNC_TIMEOUT_MS=4321 run -n 3 --rank-prefix 'env -i PREFIXED_RANK={rank}' \
  bash -c "$ENV_SCRIPT"'; echo "extra $DSSYNC_RANK ${DSSYNC_TIMEOUT_MS:-none} ${FAILED_AT:-cleared}"' "$MARK"
((rc == 0)) || fail "a prefix that clears the environment: exited $rc"
msg=$(check_env 3 127.0.0.1 local yes) || fail "a prefix that clears the environment: $msg"
for ((r = 0; r < 3; r++)); do
  grep -qxF "[$r] extra $r 4321 cleared" "$WORK/out" ||
    fail "a prefix that clears the environment: rank $r did not get DSSYNC_TIMEOUT_MS, or got more than DSSYNC_*"
done
pass "--rank-prefix 'env -i ...' (drops the environment, as ssh does): every rank still gets its DSSYNC_* variables"

# A stand-in for ssh: it drops the host argument, joins the rest with spaces
# and hands them to a shell with an empty environment, as ssh does on the
# remote host. A DSSYNC_* value with blanks and a dollar must arrive as it is.
cat >"$WORK/fake-ssh" <<'SSH'
#!/usr/bin/env bash
shift
exec env -i PATH="$PATH" bash -c "$*"
SSH
chmod +x "$WORK/fake-ssh"
printf '%s\n' "$ENV_SCRIPT" 'echo "quoted $DSSYNC_RANK [$DSSYNC_TEST_QUOTED]"' >"$WORK/rank.sh"
DSSYNC_TEST_QUOTED='a  b $HOME' run -n 2 --rank-prefix "$WORK/fake-ssh host{rank}" bash "$WORK/rank.sh" "$MARK"
((rc == 0)) || fail "a prefix like ssh: exited $rc"
msg=$(check_env 2 127.0.0.1 local no) || fail "a prefix like ssh: $msg"
for ((r = 0; r < 2; r++)); do
  grep -qxF "[$r] quoted $r [a  b \$HOME]" "$WORK/out" || fail "a prefix like ssh: rank $r got DSSYNC_TEST_QUOTED wrong"
done
pass "--rank-prefix like ssh (a shell on the joined words, no environment): the variables arrive, quoted"

# 4 ranks print 400 lines of 5000 characters each at once; awk writes them in
# blocks that cut lines, so the launcher must join them again.
LINES=400
LEN=5000
run -n 4 bash -c 'awk -v r="$DSSYNC_RANK" -v n='$LINES' -v len='$LEN' "BEGIN {
    c = substr(\"abcd\", r + 1, 1); s = c
    while (length(s) < len) s = s s
    s = substr(s, 1, len)
    for (i = 0; i < n; i++) printf \"r%d i%d %s\n\", r, i, s
    for (i = 0; i < n; i++) printf \"e%d i%d %s\n\", r, i, s > \"/dev/stderr\"
  }"' "$MARK"
((rc == 0)) || fail "long lines run exited $rc"
judge_long() {  # judge_long FILE KIND(r|e)
  awk -v n=$LINES -v len=$LEN -v kind="$2" '
    { if (NF != 4 || $1 !~ /^\[[0-3]\]$/) { bad++; next }
      r = substr($1, 2, 1); c = substr("abcd", r + 1, 1)
      if ($2 != kind r || $3 != "i" (next_i[r] + 0) || length($4) != len || $4 !~ ("^" c "+$")) bad++
      next_i[r]++
      if (NR > 1 && r != prev) switches++
      prev = r }
    END { for (r = 0; r < 4; r++) if (next_i[r] != n) bad++
          print (bad + 0) " " (switches + 0) }' "$1"
}
read -r bad switches < <(judge_long "$WORK/out" r)
((bad == 0)) || fail "$bad of $((4 * LINES)) long stdout lines are cut, mixed or out of order"
read -r bad2 switches2 < <(judge_long "$WORK/err" e)
((bad2 == 0)) || fail "$bad2 of $((4 * LINES)) long stderr lines are cut, mixed or out of order"
pass "4 ranks x $LINES lines x $LEN characters on stdout and stderr: whole, in order, prefixed ($switches and $switches2 changes of rank)"

# --- a failing rank -----------------------------------------------------------

# Rank 1 exits 3 after 0.3 s, the others sleep (in a child: a process group to
# end, not one process) and obey SIGTERM: the run ends right after the failure,
# not after --grace.
FAILER='if ((DSSYNC_RANK == 1)); then sleep 0.3; echo "going"; date +%s%N >"$FAILED_AT"; exit 3; fi
(exec -a "$0-sleep" sleep 100) & wait'
rm -f "$FAILED_AT"
run -n 4 --grace 10 bash -c "$FAILER" "$MARK"
((rc == 3)) || fail "a rank exiting 3: dssync-run exited $rc"
grep -qxF "dssync-run: rank 1 exited with code 3" "$WORK/err" || fail "no 'rank 1 exited with code 3' line"
(($(grep -c '^dssync-run: rank' "$WORK/err") == 1)) || fail "more than one rank reported as failed"
grep -qxF "[1] going" "$WORK/out" || fail "the failing rank's output is lost"
after=$(after_failure_ms)
((after < 4000)) || fail "a rank exiting 3 with obedient peers: the run went on $after ms after it (--grace 10 not needed)"
no_leftovers "rank exit 3, obedient peers"
pass "rank 1 exits 3: exit 3, $after ms after the failure, peers ended by SIGTERM, nothing left"

# The same, but rank 2 ignores SIGTERM (so does its sleeping child): SIGKILL
# after --grace 1, the run over within 1 + 1 s of the failure. Rank 1 fails
# once rank 2 ignores SIGTERM.
rm -f "$FAILED_AT" "$FAILED_AT.deaf"
run -n 4 --grace 1 bash -c 'if ((DSSYNC_RANK == 2)); then trap "" TERM; : >"$FAILED_AT.deaf"; fi
if ((DSSYNC_RANK == 1)); then for ((i = 0; i < 500; i++)); do [[ -e $FAILED_AT.deaf ]] && break; sleep 0.02; done; fi
'"$FAILER" "$MARK"
((rc == 3)) || fail "a rank exiting 3 beside a rank ignoring SIGTERM: dssync-run exited $rc"
grep -qxF "dssync-run: rank 1 exited with code 3" "$WORK/err" || fail "no 'rank 1 exited with code 3' line"
grep -q "^dssync-run: rank 2 still running .*SIGKILL" "$WORK/err" || fail "no word of the SIGKILL to rank 2"
after=$(after_failure_ms)
((after >= 900)) || fail "the rank ignoring SIGTERM was killed $after ms after the failure, before --grace 1"
((after < 6000)) || fail "the rank ignoring SIGTERM was still running $after ms after the failure (bound --grace 1 + 5 s)"
no_leftovers "rank exit 3, a peer ignoring SIGTERM"
pass "rank 1 exits 3, rank 2 ignores SIGTERM: exit 3, $after ms after the failure (SIGKILL after --grace 1), nothing left"

# A rank killed by a signal.
rm -f "$FAILED_AT"
run -n 3 bash -c 'if ((DSSYNC_RANK == 2)); then sleep 0.3; date +%s%N >"$FAILED_AT"; kill -KILL $$; fi
(exec -a "$0-sleep" sleep 100) & wait' "$MARK"
((rc == 137)) || fail "a rank killed by SIGKILL: dssync-run exited $rc, not 137"
grep -qxF "dssync-run: rank 2 was killed by SIGKILL" "$WORK/err" || fail "no 'rank 2 was killed by SIGKILL' line"
after=$(after_failure_ms)
((after < 4000)) || fail "a rank killed by SIGKILL: the run went on $after ms after it"
no_leftovers "rank killed"
pass "rank 2 killed by SIGKILL: exit 137, $after ms after the kill, nothing left"

# Rank 1 exits 3; rank 0, its victim, exits 1 10 ms after rank 1's end closes
# a pipe between them (as a peer's socket would), often within the same
# 20 ms poll of the launcher: the run reports the rank that ended first.
mkfifo "$WORK/peer"
run -n 2 bash -c 'if ((DSSYNC_RANK == 1)); then exec 3>"$0"; sleep 0.2; exit 3; fi
  exec 3<"$0"; cat <&3 >/dev/null; sleep 0.01; exit 1' "$WORK/peer" "$MARK"
((rc == 3)) || fail "a victim ending right after the failed rank: dssync-run exited $rc, not 3"
grep -q "rank 1 exited with code 3" "$WORK/err" || fail "the failed rank not named: $(<"$WORK/err")"
pass "a victim ending right after the failed rank: the failed rank's code, 3, and its name"

# A program that does not exist, and one that cannot be executed: 127 and
# 126, as a shell says them.
run -n 2 "/nonexistent/$MARK"
((rc == 127)) || fail "a program that does not exist: dssync-run exited $rc, not 127"
printf '#!/bin/sh\necho never\n' >"$WORK/not-executable"
chmod -x "$WORK/not-executable"
run -n 2 "$WORK/not-executable"
((rc == 126)) || fail "a program that cannot be executed: dssync-run exited $rc, not 126"
pass "a program that does not exist: exit 127; one that cannot be executed: 126"

# Bounds that are not finite numbers are refused before any rank starts.
for bad in "--timeout nan" "--grace nan" "--timeout inf"; do
  # shellcheck disable=SC2086 # the option and its value
  run -n 1 $bad bash -c 'echo started' "$MARK"
  ((rc == 2)) || fail "$bad: dssync-run exited $rc, not 2"
  ! grep -q started "$WORK/out" || fail "$bad: a rank started"
done
pass "--timeout and --grace refuse nan and inf"

# stdout and stderr one file: a rank's lines stay in the order it wrote them.
rc=0
timeout -k 5 60 "$RUN" -n 1 bash -c 'for i in 1 2 3 4 5 6; do echo "out $i"; echo "err $i" >&2; done' \
  >"$WORK/both" 2>&1 || rc=$?
((rc == 0)) || fail "merged streams: dssync-run exited $rc"
expected=$(for i in 1 2 3 4 5 6; do echo "[0] out $i"; echo "[0] err $i"; done)
[[ $(<"$WORK/both") == "$expected" ]] || fail "merged streams: lines out of order: $(<"$WORK/both")"
# stdout closed: the ranks still run to their end (no SIGPIPE).
rc=0
timeout -k 5 60 "$RUN" -n 2 seq 1 100000 >&- 2>"$WORK/err" || rc=$?
((rc == 0)) || fail "stdout closed: dssync-run exited $rc: $(<"$WORK/err")"
pass "stdout and stderr one file keep a rank's order; a closed stdout ends nothing"

# --- signals to dssync-run -----------------------------------------------------

# SIGINT: the ranks' shells die of it; their sleeping children (SIGINT ignored,
# as background jobs of a script) must still go.
bg 3 -n 3 --grace 10 bash -c 'echo ready; (exec -a "$0-sleep" sleep 100) & wait' "$MARK"
t0=$(now_ms)
kill -INT "$dpid"
rc=0
wait "$tpid" || rc=$?
took_ms=$(($(now_ms) - t0))
((rc == 130)) || fail "SIGINT: dssync-run exited $rc, not 130"
((took_ms < 5000)) || fail "SIGINT: the run ended $took_ms ms after it"
no_leftovers "SIGINT"
pass "SIGINT to dssync-run: exit 130 after $took_ms ms, nothing left"

# SIGTERM is passed on: the ranks see it.
bg 2 -n 2 --grace 10 bash -c 'trap "echo got-term; exit 0" TERM; echo ready; (exec -a "$0-sleep" sleep 100) & wait' "$MARK"
kill -TERM "$dpid"
rc=0
wait "$tpid" || rc=$?
((rc == 143)) || fail "SIGTERM: dssync-run exited $rc, not 143"
(($(grep -c 'got-term$' "$WORK/out") == 2)) || fail "SIGTERM did not reach both ranks"
no_leftovers "SIGTERM"
pass "SIGTERM to dssync-run reaches every rank: exit 143, nothing left"

# Ranks that ignore SIGINT and SIGTERM: a second SIGINT kills them at once.
bg 2 -n 2 --grace 15 bash -c 'trap "" INT TERM; echo ready; exec -a "$0-sleep" sleep 100' "$MARK"
kill -INT "$dpid"
sleep 0.4
kill -0 "$dpid" 2>/dev/null || fail "one SIGINT ended ranks that ignore it before --grace 15"
t0=$(now_ms)
kill -INT "$dpid"
rc=0
wait "$tpid" || rc=$?
took_ms=$(($(now_ms) - t0))
((rc == 130)) || fail "second SIGINT: dssync-run exited $rc, not 130"
((took_ms < 4000)) || fail "second SIGINT: the run ended $took_ms ms after it"
no_leftovers "second SIGINT"
pass "a second SIGINT kills ranks that ignore signals: ended $took_ms ms after it, nothing left"

# dssync-run itself SIGKILLed: its ranks die with it (Linux: PR_SET_PDEATHSIG),
# and so do their children (its guard kills their process groups).
bg 2 -n 2 bash -c '(exec -a "$0-sleep" sleep 100) & echo ready; exec -a "$0-sleep" sleep 100' "$MARK"
kill -KILL "$dpid"
wait "$tpid" || true
no_leftovers "dssync-run SIGKILLed"
pass "dssync-run SIGKILLed: its ranks and their children went with it"

# --- --timeout -----------------------------------------------------------------

run -n 3 --timeout 0.5 --grace 5 bash -c '(exec -a "$0-sleep" sleep 100) & wait' "$MARK"
((rc == 124)) || fail "--timeout 0.5: dssync-run exited $rc, not 124"
grep -q "^dssync-run: timeout" "$WORK/err" || fail "--timeout 0.5: no message"
((took_ms >= 500 && took_ms < 8000)) || fail "--timeout 0.5: the run took $took_ms ms (bound 0.5 s + 7.5 s for starting and ending on a loaded machine)"
no_leftovers "--timeout"
pass "--timeout 0.5: exit 124 after $took_ms ms, nothing left"

echo "all launcher checks passed"
