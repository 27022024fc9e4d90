#!/usr/bin/env bash
# The dead-peer contract of TcpTransport, with real processes on loopback.
#
#   tcp_kill.sh TCP_RANKS [RUNS] [RANKS] [SIGNAL]
#
# Each run starts RANKS (default 4) processes of `tcp_ranks steps` (DSSync
# steps over 1 MiB, for ever), waits until every rank has stepped, waits a
# random 0.1-1.5 s more, and sends SIGNAL (KILL, default, or STOP) to a random
# rank, rank 0 included. Every survivor must then end with a dssync peer_error
# (exit code 3) naming the victim, within the peer timeout (2 s) plus one
# second (a stopped rank is noticed by its silence, so STOP gets the
# heartbeat's interval on top), and no process of the run may remain.
# RUNS runs with victims and kill points from a fixed seed (the run's number),
# so a failure can be replayed.
set -euo pipefail
BIN=$1
RUNS=${2:-10}
N=${3:-4}
SIG=${4:-KILL}
PEER_TIMEOUT_MS=2000
if [[ $SIG == STOP ]]; then BOUND_MS=$((PEER_TIMEOUT_MS + 400 + 1000)); else BOUND_MS=$((PEER_TIMEOUT_MS + 1000)); fi
WORK=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

worst=0
for ((run = 1; run <= RUNS; run++)); do
  RANDOM=$run
  victim=$((RANDOM % N))
  delay_ms=$((100 + RANDOM % 1400))
  port=$(free_port)
  token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  pids=()
  for ((r = 0; r < N; r++)); do
    DSSYNC_RANK=$r DSSYNC_WORLD_SIZE=$N DSSYNC_MASTER_ADDR=127.0.0.1 DSSYNC_MASTER_PORT=$port \
      DSSYNC_JOB_TOKEN=$token DSSYNC_PEER_TIMEOUT_MS=$PEER_TIMEOUT_MS DSSYNC_TIMEOUT_MS=30000 \
      "$BIN" steps >"$WORK/out.$r" 2>"$WORK/err.$r" &
    pids+=($!)
  done
  # Every rank has stepped (bounded: 30 s).
  for ((i = 0; i < 1500; i++)); do
    ready=1
    for ((r = 0; r < N; r++)); do grep -q "step 0" "$WORK/out.$r" 2>/dev/null || ready=0; done
    ((ready)) && break
    sleep 0.02
  done
  if ((!ready)); then echo "run $run: the ranks did not start"; cat "$WORK"/out.*; exit 1; fi
  sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
  kill -"$SIG" "${pids[$victim]}"
  killed=$(now_ms)
  # Survivors end by themselves.
  declare -A ended=()
  while :; do
    alive=0
    for ((r = 0; r < N; r++)); do
      ((r == victim)) && continue
      [[ -n ${ended[$r]:-} ]] && continue
      if kill -0 "${pids[$r]}" 2>/dev/null && ! grep -q "^[0-9]*: dssync" "$WORK/out.$r"; then alive=1; else ended[$r]=$(now_ms); fi
    done
    ((alive)) || break
    if (($(now_ms) - killed > BOUND_MS + 5000)); then break; fi
    sleep 0.01
  done
  slowest=0
  for ((r = 0; r < N; r++)); do
    ((r == victim)) && continue
    took=$(( ${ended[$r]:-999999999999} - killed ))
    ((took > slowest)) && slowest=$took
    rc=0
    wait "${pids[$r]}" 2>/dev/null || rc=$?
    if ((took > BOUND_MS)) || ((rc != 3)) || ! grep -q "rank $victim" "$WORK/out.$r"; then
      echo "run $run: rank $r ended with code $rc after ${took} ms (bound ${BOUND_MS} ms), SIG$SIG to rank $victim; the last lines of every rank:"
      for ((q = 0; q < N; q++)); do tail -n 2 "$WORK/out.$q" | sed "s/^/  [$q] /"; done
      echo "  rank $r's stderr:"; head -n 40 "$WORK/err.$r" | sed 's/^/    /'
      exit 1
    fi
  done
  kill -KILL "${pids[$victim]}" 2>/dev/null || true
  { wait "${pids[$victim]}"; } 2>/dev/null || true
  for p in "${pids[@]}"; do
    if kill -0 "$p" 2>/dev/null; then echo "run $run: process $p is still there"; exit 1; fi
  done
  ((slowest > worst)) && worst=$slowest
  echo "run $run: SIG$SIG to rank $victim after ${delay_ms} ms; every survivor named it, the last after ${slowest} ms"
  unset ended
done
echo "tcp_kill: $RUNS runs, SIG$SIG, $N ranks: every survivor ended with peer_error naming the victim; slowest ${worst} ms (bound ${BOUND_MS} ms)"
