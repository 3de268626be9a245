#!/usr/bin/env bash
# End-to-end: 5 real `hyperscale swim-agent` processes on loopback.
#   1. they converge (every agent logs every other one);
#   2. SIGSTOP one for less than the suspicion timeout, then SIGCONT: nobody declares it dead;
#   3. SIGKILL one: every other agent logs it dead within the bound.
# Usage: swim_e2e.sh <path to hyperscale>
set -uo pipefail
HS=${1:?usage: swim_e2e.sh <hyperscale binary>}
PERIOD_MS=${SWIM_E2E_PERIOD_MS:-200}
N=5
DIR=$(mktemp -d /tmp/swim-e2e.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [[ ${KEEP_LOGS:-0} == 1 ]]; then echo "logs kept in $DIR"; else rm -rf "$DIR"; fi
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for i in $(seq 0 $((N - 1))); do echo "--- agent $i (${ports[$i]})"; tail -n 30 "$DIR/n$i.log"; done
  exit 1
}
now_ms() { date +%s%3N; }

# Suspicion bounds for n=5 with the defaults (alpha 4, beta 3): Tmin = 4·log10(5) periods ≈ 2.8 periods.
TMIN_MS=$((PERIOD_MS * 28 / 10))
STOP_MS=$((TMIN_MS * 8 / 10))               # under the shortest suspicion timeout, long enough to be suspected
DEAD_BOUND_MS=$((PERIOD_MS * 30))           # 2n periods of round robin + Tmax (8.4) + dissemination, rounded up

BASE=$((20000 + RANDOM % 30000))
ports=()
for i in $(seq 0 $((N - 1))); do ports+=($((BASE + i))); done
SEEDS="127.0.0.1:${ports[0]},127.0.0.1:${ports[1]}"
for i in $(seq 0 $((N - 1))); do
  "$HS" --log-level info swim-agent --bind "127.0.0.1:${ports[$i]}" --seeds "$SEEDS" --period-ms "$PERIOD_MS" \
    >"$DIR/n$i.log" 2>&1 &
  pids+=($!)
done

sees() {  # observer index, node index, event regex
  grep -q "event=$3 self=127.0.0.1:${ports[$1]} node=127.0.0.1:${ports[$2]} " "$DIR/n$1.log"
}
converged() {
  for i in $(seq 0 $((N - 1))); do
    for j in $(seq 0 $((N - 1))); do
      [[ $i == "$j" ]] && continue
      sees "$i" "$j" member_change || return 1
    done
  done
}

start=$(now_ms)
until converged; do
  for i in $(seq 0 $((N - 1))); do kill -0 "${pids[$i]}" 2>/dev/null || fail "agent $i exited early"; done
  (($(now_ms) - start > 15000)) && fail "no convergence in 15 s"
  sleep 0.1
done
echo "converged in $(($(now_ms) - start)) ms (period ${PERIOD_MS} ms)"
sleep $((PERIOD_MS * 10 / 1000)).$(((PERIOD_MS * 10) % 1000))  # ~10 periods: every member confirmed

# --- SIGSTOP for less than the suspicion timeout ---
STOPPED=2
kill -STOP "${pids[$STOPPED]}"
sleep "$((STOP_MS / 1000)).$(printf %03d $((STOP_MS % 1000)))"
kill -CONT "${pids[$STOPPED]}"
echo "agent $STOPPED stopped for ${STOP_MS} ms (Tmin ${TMIN_MS} ms)"
sleep "$((DEAD_BOUND_MS / 1000)).$(printf %03d $((DEAD_BOUND_MS % 1000)))"
for i in $(seq 0 $((N - 1))); do
  [[ $i == "$STOPPED" ]] && continue
  sees "$i" "$STOPPED" member_dead && fail "agent $i declared the briefly stopped agent $STOPPED dead"
done
susp=0
for i in $(seq 0 $((N - 1))); do
  grep -q "event=member_change self=127.0.0.1:${ports[$i]} node=127.0.0.1:${ports[$STOPPED]} from=alive to=suspect" \
    "$DIR/n$i.log" && susp=$((susp + 1))
done
echo "nobody declared agent $STOPPED dead ($susp agents had suspected it meanwhile)"

# --- SIGKILL: everyone else reports it dead within the bound ---
KILLED=4
kill -9 "${pids[$KILLED]}"
start=$(now_ms)
while :; do
  all=1
  for i in $(seq 0 $((N - 1))); do
    [[ $i == "$KILLED" ]] && continue
    sees "$i" "$KILLED" member_dead || all=0
  done
  ((all)) && break
  (($(now_ms) - start > DEAD_BOUND_MS)) && fail "agent $KILLED not reported dead by all within ${DEAD_BOUND_MS} ms"
  sleep 0.05
done
echo "all agents reported agent $KILLED dead within $(($(now_ms) - start)) ms (bound ${DEAD_BOUND_MS} ms)"
# Exactly once per transition.
for i in $(seq 0 $((N - 1))); do
  [[ $i == "$KILLED" ]] && continue
  c=$(grep -c "event=member_dead self=127.0.0.1:${ports[$i]} node=127.0.0.1:${ports[$KILLED]} " "$DIR/n$i.log")
  [[ $c == 1 ]] || fail "agent $i reported agent $KILLED dead $c times"
done
# The survivors shut down cleanly on SIGTERM.
for i in 0 1 2 3; do kill -TERM "${pids[$i]}"; done
for i in 0 1 2 3; do wait "${pids[$i]}" || fail "agent $i exited with $? on SIGTERM"; done
echo "PASS"
