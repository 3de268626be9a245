#!/usr/bin/env bash
# Receiver binding (docs/wire.md §1), end to end with real processes on loopback: real frames are
# captured off `lo` with tcpdump while 3 managers and 2 workers run a job and clients cancel jobs
# (leader->worker dispatch, client->manager submit and cancel, manager<->manager, worker->manager,
# SWIM datagrams), then every captured frame is replayed to every node that was not its receiver
# (a fresh TCP connection per frame, or one datagram). Checks:
#   (1) every node counts each frame replayed to it in hs_wire_rejected_total{reason="wrong_receiver"}:
#       the counter grows by exactly the number sent to it, so none was accepted;
#   (2) no worker started a captured dispatch (job + fence token) again: the dispatches of victim-1
#       and replay-1 are replayed to the other worker, which is idle once replay-1 is cancelled;
#   (3) a client cancel for job victim-1, captured before that job existed and replayed to the other
#       managers while it runs, cancels nothing: victim-1 is still running.
# Needs tcpdump (tools/setup installs it) and the right to capture on lo (root or CAP_NET_RAW); it
# fails, not skips, without them. With the code before the receiver binding the checks fail: the
# nodes accept the replayed frames (no wrong_receiver), and the replayed cancel cancels victim-1 (or
# other replayed role traffic ends it); a replayed dispatch starts its job on the idle worker unless
# its sequence number has fallen out of that worker's replay window by then.
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh" "$@" m1 m2 m3 w1 w2

problems=()
problem() { echo "FAIL: $*" >&2; problems+=("$*"); }
wrong_receiver() {  # admin port: that node's hs_wire_rejected_total{reason="wrong_receiver"} (0 if absent)
  local v
  v=$(curl -s --max-time 2 "http://127.0.0.1:$1/metrics" | sed -n 's/^hs_wire_rejected_total{reason="wrong_receiver"} //p')
  echo "${v:-0}"
}
job_state() {  # job: its state as `hyperscale status` reports it
  local s
  s=$("$HS" --log-level error status --manager "$MLIST" --config m1.toml "$1" --json 2>/dev/null) || { echo "?"; return; }
  jget "$s" 'j["state"]'
}

command -v tcpdump > /dev/null || fail "tcpdump is not installed (tools/setup installs it); this test captures real frames off lo"

echo "== start the target, 3 managers and 2 workers"
start_target HTTP
start_all
LEADER=$(wait_cluster 2 m1 m2 m3) || fail "no leader with 2 workers"
echo "leader: $LEADER"
FOLLOWER=
for n in m1 m2 m3; do [[ $n != "$LEADER" ]] && { FOLLOWER=$n; break; }; done
cat > long.toml <<TOML
version = 1
[[workflow]]
name = "w"
vus = 1
duration = "60s"
[[workflow.step]]
name = "a"
url = "http://127.0.0.1:$HTTP/"
TOML
sed 's/duration = "60s"/duration = "600s"/' long.toml > victim.toml  # outlives the replay (cancelled at the end)

echo "== capture the cluster's ports on lo"
FILTER=$(for n in "${names[@]}"; do printf 'port %s or ' "${PORT[$n]}"; done)
FILTER=${FILTER% or }
# --immediate-mode: without it libpcap (TPACKET_V3) hands packets over only when a ring block
# retires (1 s timeout); the whole flow below can take less than that, and the SIGINT then drops
# the unretired block ("N packets received by filter", 0 captured).
tcpdump -i lo -n -U --immediate-mode -B 16384 -s 0 -w cap.pcap "$FILTER" 2> tcpdump.log &
CAP=$!
EXTRA_CLEANUP+=("kill -9 $CAP")
for _ in $(seq 1 200); do
  grep -q "listening on" tcpdump.log && break
  kill -0 "$CAP" 2> /dev/null || fail "tcpdump cannot capture on lo (run as root or with CAP_NET_RAW): $(cat tcpdump.log)"
  sleep 0.05
done
grep -q "listening on" tcpdump.log || fail "tcpdump did not start capturing: $(cat tcpdump.log)"

echo "== a cancel for a job that does not exist yet; that job runs; a second job runs and is cancelled"
# Sent to one manager only (a follower): it answers "no job" (exit 2), and the frame is on the capture.
timeout 30 "$HS" --log-level warn cancel --manager "127.0.0.1:${PORT[$FOLLOWER]}" --config m1.toml victim-1 > c1.txt 2>&1
rc=$?
[[ $rc == 2 ]] && grep -q "no job" c1.txt || { cat c1.txt; fail "cancel of a job that does not exist: exit $rc (want 2)"; }
timeout 30 "$HS" --log-level warn submit --manager "$MLIST" --config m1.toml victim.toml --job-id victim-1 --json > v.json 2> v.err ||
  { cat v.json v.err; fail "submit victim-1"; }
WV=$(running_worker victim-1) || fail "victim-1 is not running"
echo "victim-1 runs on $WV"
timeout 30 "$HS" --log-level warn submit --manager "$MLIST" --config m1.toml long.toml --job-id replay-1 --json > r1.json 2> r1.err ||
  { cat r1.json r1.err; fail "submit replay-1"; }
W=$(running_worker replay-1) || fail "replay-1 is not running"
echo "replay-1 runs on $W"
timeout 30 "$HS" --log-level warn cancel --manager "$MLIST" --config m1.toml replay-1 > c2.txt 2>&1 || { cat c2.txt; fail "cancel replay-1"; }
ok=
for _ in $(seq 1 100); do
  s=$(admin_status "${ADMIN[$W]}")
  [[ $(jget "$s" '"replay-1" in str(j["live"])') == False ]] && { ok=1; break; }
  sleep 0.1
done
[[ -n "$ok" ]] || fail "$W still runs replay-1 after the cancel: $(admin_status "${ADMIN[$W]}")"

kill -INT "$CAP"
wait "$CAP"
tail -n 3 tcpdump.log
# The dispatches the capture can hold: every (job, fence token) a worker started so far. After the
# replay no worker may start one of them again (a re-dispatch under load has a new token: legitimate).
started() { sed -n 's/.*event=started_workflow job="\([^"]*\)".* token=\([0-9]*\).*/\1 \2/p' "$1.log"; }
for n in "${names[@]}"; do [[ $n == w* ]] && started "$n" > "started-$n.before"; done
cat started-w*.before | sort -u > dispatches.before
[[ -s dispatches.before ]] || fail "no started_workflow lines before the replay"

echo "== replay every captured frame to every node that was not its receiver"
NODES=()
for n in "${names[@]}"; do NODES+=("$n:${PORT[$n]}:${ADMIN[$n]}"); done
t0=$(date +%s)
python3 "$HERE/replay_frames.py" cap.pcap "${NODES[@]}" --summary replay.json > /dev/null || fail "replay_frames.py failed"
echo "replayed in $(($(date +%s) - t0)) s"
# One python call turns the summary into shell variables: FRAMES, STREAMS, CAPTURED, ERRORS, and per
# node TCP_n, UDP_n, BEFORE_n; CAUGHT_k = frames captured for receiver/channel k.
eval "$(python3 - replay.json "$W/tcp" "$FOLLOWER/tcp" "$LEADER/tcp" "$W/udp" <<'PY'
import json, shlex, sys
j = json.load(open(sys.argv[1]))
print(f"FRAMES={j['frames']} STREAMS={j['tcp_streams']}")
print("CAPTURED=" + shlex.quote(json.dumps(j["captured"], sort_keys=True)))
print("ERRORS=" + shlex.quote("; ".join(j["errors"])))
for n, v in j["nodes"].items():
    print(f"TCP_{n}={v['tcp']} UDP_{n}={v['udp']} BEFORE_{n}={v['wrong_receiver_before']}")
for i, k in enumerate(sys.argv[2:]):
    print(f"CAUGHT_{i}={j['captured'].get(k, 0)}")
PY
)"
echo "captured: $FRAMES frames ($CAPTURED) in $STREAMS tcp streams"
[[ -z "$ERRORS" ]] || problem "replay send errors: $ERRORS"
# The capture must hold every kind of traffic the test is about (dispatch and cancel to a worker,
# client cancel to the follower, frames to the leader, SWIM datagrams).
[[ $CAUGHT_0 -gt 0 && $CAUGHT_1 -gt 0 && $CAUGHT_2 -gt 0 && $CAUGHT_3 -gt 0 ]] ||
  fail "missing traffic in the capture ($W/tcp $FOLLOWER/tcp $LEADER/tcp $W/udp): $CAPTURED"

echo "== (1) every replayed frame is counted as wrong_receiver by the node it was sent to"
deadline=$(($(date +%s) + 30))  # one bound for all nodes (the counters only lag the last datagrams)
for n in "${names[@]}"; do
  tcp=TCP_$n udp=UDP_$n before=BEFORE_$n
  sent=$((${!tcp} + ${!udp}))
  want=$((${!before} + sent))
  got=$(wrong_receiver "${ADMIN[$n]}")
  while [[ $got -lt $want && $(date +%s) -lt $deadline ]]; do
    sleep 0.1
    got=$(wrong_receiver "${ADMIN[$n]}")
  done
  echo "$n: sent $sent (${!tcp} tcp, ${!udp} udp), wrong_receiver now $got (want $want)"
  [[ $sent -gt 0 ]] || problem "$n: nothing was replayed to it"
  [[ $got == "$want" ]] || problem "$n: wrong_receiver is $got after $sent replayed frames (want $want): replayed frames were accepted"
done

echo "== (2) no worker started a captured dispatch again"
for n in "${names[@]}"; do
  [[ $n == w* ]] || continue
  started "$n" > "started-$n.after"
  while read -r job token; do
    b=$(grep -cx "$job $token" "started-$n.before") a=$(grep -cx "$job $token" "started-$n.after")
    [[ $a == "$b" ]] || problem "$n started $job (token $token, a captured dispatch) after the replay"
  done < dispatches.before
done
s=$(admin_status "${ADMIN[$W]}")
[[ $(jget "$s" 'len(j["live"])') == 0 ]] || problem "$W (replay-1 was cancelled there) runs something: $s"

echo "== (3) the replayed cancel cancelled nothing"
st=$(job_state victim-1)
[[ $st == running ]] || problem "victim-1 is $st after the replay (want running)"
for n in m1 m2 m3; do
  ! grep -q 'job_cancelled job="victim-1"' "$n.log" || problem "$n cancelled victim-1: $(grep 'job_cancelled job="victim-1"' "$n.log")"
done

[[ ${#problems[@]} == 0 ]] || fail "${#problems[@]} check(s) failed: ${problems[*]}"

echo "== clean up: cancel victim-1, orderly stop"
timeout 30 "$HS" --log-level warn cancel --manager "$MLIST" --config m1.toml victim-1 > c3.txt 2>&1 || { cat c3.txt; fail "cancel victim-1"; }
for n in "${!PIDS[@]}"; do kill -TERM "${PIDS[$n]}"; done
for n in "${!PIDS[@]}"; do wait "${PIDS[$n]}"; rc=$?; [[ $rc == 0 ]] || fail "$n exited $rc on SIGTERM"; done
PIDS=()
echo "all checks passed"
