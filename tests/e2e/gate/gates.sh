#!/usr/bin/env bash
# The gate tier end to end with real processes: 3 gates (`hyperscale gate`), datacenters dc-a and
# dc-b of 3 managers and 2 one-core workers each, `hyperscale target`; the client talks to the gates
# (`--gate`). As root with `ip netns`, each datacenter runs in its own network namespace behind a
# veth pair with 20 ms of delay each way, a measured round trip of at least 40 ms (netem, or
# hs-netdelay where the kernel has no netem; lib.sh); otherwise everything runs on loopback (it says so).
#   (a) `--datacenter-count 2` with a fixed iteration count: both shares complete, each with exactly
#       the workflow's iterations (each part exactly its half), the total is their sum, the target
#       served exactly that many requests; `watch --gate` prints the live view merged over both
#       datacenters (the step's total is the sum, one line per datacenter);
#   (b) SIGKILL of the job's owner gate (`status --gate JOB`'s owner) mid-run: after gate.member_grace
#       the ring's next gate adopts the job (log event=job_owner_change why=owner_gone, a higher
#       fence), and `submit --wait` (the same submission again, started before the kill with only the
#       owner in --gate: it learns the other gates from it, GTE-04) prints the completed result with
#       exact per-datacenter counts; the target served exactly the total;
#   (c) best effort: `--min-datacenters 1` over dc-a and dc-b; dc-b's link is cut mid-run (its veth
#       down, or SIGSTOP of its processes on loopback): the job ends partial, dc-a completed with its
#       exact counts, dc-b failed (unreachable) after gate.dc_grace;
#   (d) cancel mid-run: the job ends cancelled, every share's stop is confirmed (cancel_complete) and
#       every worker of both datacenters has nothing live and no core used;
#   then SIGTERM: the leading gate hands its leadership to another gate and exits 0, as does the rest.
# Every wait polls an observed state with a bound.
source "$(dirname "$0")/lib.sh" "$@"
T0=$(now)

echo "== start 3 gates, 2 datacenters of 3 managers + 2 workers"
start_all
for g in "${GATES[@]}"; do
  wait_admin "$g" "$DC_READY" 300 || fail "$g does not see both datacenters ready: $(admin_status "$g")"
done
GL=$(gate_leader "${GATES[@]}") || fail "no gate leads"
echo "gate leader: $GL; datacenter leaders: $(mgr_leader "${A_MGRS[@]}") $(mgr_leader "${B_MGRS[@]}") (after $(since "$T0")s)"

job_file() {  # file http-port iterations delay-ms [duration]
  cat > "$1" <<TOML
version = 1
[[workflow]]
name = "w"
vus = 4
iterations = $3
duration = "${5:-600s}"
[[workflow.step]]
name = "a"
url = "http://$HUB:$2/delay/$4"
TOML
}
# The job's view as a datacenter's share, by name.
DC='{d["name"]: d for d in j["datacenters"]}'
# A worker address -> its datacenter ("dc-a" / "dc-b"), from the node names.
declare -A DC_OF=()
for w in "${A_WRKS[@]}"; do DC_OF[$(addr_of "$w")]=dc-a; done
for w in "${B_WRKS[@]}"; do DC_OF[$(addr_of "$w")]=dc-b; done
check_share() {  # view case dc iterations: the share completed with exactly that many iterations
  local v=$1 c=$2 d=$3 n=$4
  [[ $(jget "$v" "($DC)['$d']['state']") == completed ]] || fail "($c) $d state: $v"
  [[ $(jget "$v" "($DC)['$d']['accepted']") == True ]] || fail "($c) $d not accepted: $v"
  [[ $(jget "$v" "($DC)['$d']['completed']") == "$n" ]] || fail "($c) $d completed is not $n: $v"
  [[ $(jget "$v" "($DC)['$d']['failed']") == 0 ]] || fail "($c) $d failed: $v"
  [[ $(jget "$v" "[(w['name'], w['state'], w['completed'], w['failed'], w['lost']) for w in ($DC)['$d']['workflows']]") == "[('w', 'completed', $n, 0, 0)]" ]] ||
    fail "($c) $d workflows: $v"
}
check_parts() {  # view case dcs iterations: 2 parts per datacenter, one per worker, each exactly half
  local v=$1 c=$2 dcs=$3 n=$4
  local got
  got=$(python3 - "$v" "$(declare -p DC_OF)" <<'PY'
import json, re, sys
j = json.loads(sys.argv[1])
dc_of = dict(re.findall(r'\[([^]]+)\]="?([^" ]+)"?', sys.argv[2]))
print(sorted((dc_of.get(p["worker"], p["worker"]), p["state"], p["completed"], p["failed"], p["lost"])
             for p in j["workflows"][0]["parts"]))
PY
  )
  local want="[" sep=""
  for d in $dcs; do want+="$sep('$d', 'completed', $((n / 2)), 0, 0), ('$d', 'completed', $((n / 2)), 0, 0)"; sep=", "; done
  want+="]"
  [[ "$got" == "$want" ]] || fail "($c) parts: got $got, want $want: $v"
  [[ $(jget "$v" "len({p['worker'] for p in j['workflows'][0]['parts']})") == $((2 * $(wc -w <<< "$dcs"))) ]] ||
    fail "($c) parts not on distinct workers: $v"
}
# job dc...: polls until every worker of the named datacenters runs (live) an execution of the job.
wait_live_in() {
  local job=$1; shift
  for d in "$@"; do
    local ws=("${A_WRKS[@]}"); [[ $d == dc-b ]] && ws=("${B_WRKS[@]}")
    for w in "${ws[@]}"; do wait_live_on "$w" "$job" || fail "$w does not run $job: $(admin_status "$w")"; done
  done
}

echo "== (a) 2 datacenters, exact counts"
N=300
start_target HTTP
job_file a.toml "$HTTP" "$N" 20
t=$(now)
timeout 120 "$HS" --log-level warn submit --gate "$GLIST" --config g1.toml a.toml --datacenter-count 2 --wait --json \
  --job-id gate-a > a.json 2> a.err; rc=$?
[[ $rc == 0 ]] || { cat a.json a.err; fail "(a) submit exit $rc"; }
A=$(cat a.json)
echo "(a) done in $(since "$t")s: $(jget "$A" "[(d['name'], d['state'], d['completed'], d['failed']) for d in j['datacenters']]")"
[[ $(jget "$A" 'j["state"]') == completed ]] || fail "(a) state: $A"
[[ $(jget "$A" 'sorted(d["name"] for d in j["datacenters"])') == "['dc-a', 'dc-b']" ]] || fail "(a) datacenters: $A"
check_share "$A" a dc-a "$N"
check_share "$A" a dc-b "$N"
[[ $(jget "$A" 'j["completed"]') == $((2 * N)) ]] || fail "(a) total completed: $A"
[[ $(jget "$A" 'j["completed"] == sum(d["completed"] for d in j["datacenters"])') == True ]] || fail "(a) total is not the sum: $A"
[[ $(jget "$A" 'j["failed"]') == 0 ]] || fail "(a) total failed: $A"
[[ $(jget "$A" 'j["workflows"][0]["completed"]') == $((2 * N)) ]] || fail "(a) workflow completed: $A"
[[ $(jget "$A" 'j["workflows"][0]["stats"]["requests_ok"]') == $((2 * N)) ]] || fail "(a) merged requests_ok: $A"
check_parts "$A" a "dc-a dc-b" "$N"
[[ ",$GLIST," == *",$(jget "$A" 'j["leader"]'),"* ]] || fail "(a) the job's owner is not a gate: $A"
# The live view through the gates: the owner merges both datacenters' windows (docs/gates.md).
timeout 60 "$HS" --log-level warn watch --gate "$GLIST" --config g1.toml gate-a > a.watch 2> a.watch.err; rc=$?
[[ $rc == 0 ]] || { cat a.watch a.watch.err; fail "(a) watch --gate exit $rc"; }
for d in dc-a dc-b; do
  grep -Eq "^  datacenter $d \(completed\): window [0-9]+, requests $N, errors 0," a.watch ||
    { cat a.watch a.watch.err; fail "(a) watch --gate: no live line of $d with its $N requests"; }
done
grep -Eq "^  a +total +$((2 * N)) +err +0 " a.watch || { cat a.watch; fail "(a) watch --gate: merged total is not $((2 * N))"; }
echo "(a) watch --gate, the live view:"; grep -B3 -A2 ' windows merged$' a.watch
stop_target "$HTTP"
echo "(a) target served $SERVED"
[[ "$SERVED" == $((2 * N)) ]] || fail "(a) target served $SERVED, want $((2 * N))"

echo "== (b) SIGKILL the owner gate mid-run"
# 4 VUs per datacenter (2 per worker), 400 iterations of 100 ms each (more over the delayed link):
# 10 s or more per datacenter, so the kill and the takeover land while both shares run.
N=400
start_target HTTP
job_file b.toml "$HTTP" "$N" 100
# Submitted to any gate, the ring picks the job's owner. Then the same submission again (the same
# job id and payload: answered with the same job, SUB-02) waits for it with only the owner in
# --gate, so the kill takes the one gate the client was given: it must find the others (GTE-04).
"$HS" --log-level warn submit --gate "$GLIST" --config g1.toml b.toml --datacenter-count 2 --json --job-id gate-b \
  > b0.json 2> b0.err || { cat b0.json b0.err; fail "(b) submit exit $?"; }
ONLY=
for g in "${GATES[@]}"; do [[ $(jget "$(job_json gate-b)" 'j["owner"]') == "$(addr_of "$g")" ]] && ONLY=$g; done
[[ -n "$ONLY" ]] || fail "(b) the job's owner is not a gate: $(job_json gate-b)"
timeout 180 "$HS" --log-level warn submit --gate "$(addr_of "$ONLY")" --config g1.toml b.toml --datacenter-count 2 \
  --wait --json --job-id gate-b > b.json 2> b.err &
SUB=$!
wait_live_in gate-b dc-a dc-b
B0=$(wait_job gate-b "j['state'] == 'running' and all(d['state'] == 'running' and d['accepted'] and 0 < d['completed'] < $N for d in j['datacenters']) and len(j['datacenters']) == 2") ||
  fail "(b) the shares never both ran with progress: $(job_json gate-b)"
OWNER=
for g in "${GATES[@]}"; do [[ $(jget "$B0" 'j["owner"]') == "$(addr_of "$g")" ]] && OWNER=$g; done
[[ "$OWNER" == "$ONLY" ]] || fail "(b) the job's owner moved from $ONLY before the kill: $B0"
F0=$(jget "$B0" 'j["fence"]')
echo "(b) killing the owner gate $OWNER (fence $F0; progress $(jget "$B0" "[(d['name'], d['completed']) for d in j['datacenters']]"))"
kill -9 "${PIDS[$OWNER]}"; unset "PIDS[$OWNER]"
t=$(now)
REST=(); for g in "${GATES[@]}"; do [[ $g != "$OWNER" ]] && REST+=("$g"); done
NEW=
for _ in $(seq 1 600); do
  for g in "${REST[@]}"; do grep -q 'event=job_owner_change.*gate-b.*why=owner_gone' "$g.log" && NEW=$g; done
  [[ -n "$NEW" ]] && break; sleep 0.05
done
[[ -n "$NEW" ]] || fail "(b) no gate adopted gate-b"
echo "(b) $NEW adopted gate-b after $(since "$t")s"
wait "$SUB"; rc=$?
[[ $rc == 0 ]] || { cat b.json b.err; fail "(b) submit --wait exit $rc"; }
B=$(cat b.json)
echo "(b) submit --wait returned after $(since "$t")s from the kill: $(jget "$B" "[(d['name'], d['state'], d['completed'], d['failed']) for d in j['datacenters']]"), fence $(jget "$B" 'j["fence"]')"
[[ $(jget "$B" 'j["state"]') == completed ]] || fail "(b) state: $B"
[[ $(jget "$B" "j['fence'] > $F0") == True ]] || fail "(b) the fence did not grow from $F0: $B"
[[ $(jget "$B" 'j["owner"]') == "$(addr_of "$NEW")" ]] || fail "(b) the job's owner is not $NEW: $B"
check_share "$B" b dc-a "$N"
check_share "$B" b dc-b "$N"
[[ $(jget "$B" 'j["completed"]') == $((2 * N)) ]] || fail "(b) total completed: $B"
check_parts "$B" b "dc-a dc-b" "$N"
stop_target "$HTTP"
echo "(b) target served $SERVED"
[[ "$SERVED" == $((2 * N)) ]] || fail "(b) target served $SERVED, want $((2 * N)) (each iteration ran once)"
GATES_LEFT=("${REST[@]}")

echo "== (d) cancel mid-run"
start_target HTTP
job_file d.toml "$HTTP" 1000000 100 120s
timeout 120 "$HS" --log-level warn submit --gate "$GLIST" --config g1.toml d.toml --datacenter-count 2 --wait --json \
  --job-id gate-d > d.json 2> d.err &
SUB=$!
wait_live_in gate-d dc-a dc-b
wait_job gate-d "all(d['state'] == 'running' and d['completed'] > 0 for d in j['datacenters']) and len(j['datacenters']) == 2" > /dev/null ||
  fail "(d) the shares never both ran with progress: $(job_json gate-d)"
t=$(now)
client cancel gate-d > cancel.txt 2>&1 || { cat cancel.txt; fail "(d) cancel exit $?"; }
wait "$SUB"; rc=$?
[[ $rc == 4 ]] || { cat d.json d.err; fail "(d) submit exit $rc (want 4: cancelled)"; }
D=$(cat d.json)
echo "(d) ended $(since "$t")s after the cancel: $(jget "$D" "[(d['name'], d['state'], d['completed'], d['failed']) for d in j['datacenters']]")"
[[ $(jget "$D" 'j["state"]') == cancelled ]] || fail "(d) state: $D"
# submit --wait ends once every share ended; the gate then records the cancel complete (its
# retention pass, about a second later).
D2=$(wait_job gate-d 'j["cancel_complete"]') || fail "(d) cancel never complete: $(job_json gate-d)"
[[ $(jget "$D2" 'j["cancel_errors"]') == "[]" ]] || fail "(d) cancel errors (a stop not confirmed): $D2"
[[ $(jget "$D2" '[(d["state"], d["completed"]) for d in j["datacenters"]]') == "$(jget "$D" '[(d["state"], d["completed"]) for d in j["datacenters"]]')" ]] ||
  fail "(d) the shares changed after the job ended: $D then $D2"
[[ $(jget "$D" 'all(d["state"] == "cancelled" for d in j["datacenters"]) and len(j["datacenters"]) == 2') == True ]] ||
  fail "(d) a share is not cancelled: $D"
for w in "${WORKERS[@]}"; do wait_idle "$w" || fail "(d) $w still runs it: $(admin_status "$w")"; done
echo "(d) every worker idle $(since "$t")s after the cancel"
stop_target "$HTTP"
echo "(d) target served $SERVED"
[[ $SERVED -ge $(jget "$D" 'j["completed"]') ]] || fail "(d) target served $SERVED, fewer than the completed iterations: $D"

echo "== (c) best effort: --min-datacenters 1, dc-b cut mid-run"
N=400
start_target HTTP
job_file c.toml "$HTTP" "$N" 100
timeout 180 "$HS" --log-level warn submit --gate "$GLIST" --config g1.toml c.toml --datacenters dc-a,dc-b \
  --min-datacenters 1 --wait --json --job-id gate-c > c.json 2> c.err &
SUB=$!
wait_live_in gate-c dc-a dc-b
C0=$(wait_job gate-c "all(d['state'] == 'running' and d['accepted'] and 0 < d['completed'] < $N for d in j['datacenters']) and len(j['datacenters']) == 2") ||
  fail "(c) the shares never both ran with progress: $(job_json gate-c)"
echo "(c) cutting dc-b (progress $(jget "$C0" "[(d['name'], d['completed']) for d in j['datacenters']]"))"
cut_dc b
t=$(now)
for _ in $(seq 1 300); do
  s=$(admin_status "${GATES_LEFT[0]}") && [[ $(jget "$s" "($DC)['dc-b']['state']") != ready ]] && break
  sleep 0.1
done
echo "(c) ${GATES_LEFT[0]} sees dc-b $(jget "$s" "($DC)['dc-b']['state']") after $(since "$t")s"
wait "$SUB"; rc=$?
[[ $rc == 3 ]] || { cat c.json c.err; fail "(c) submit exit $rc (want 3: partial)"; }
C=$(cat c.json)
echo "(c) ended $(since "$t")s after the cut: $(jget "$C" "[(d['name'], d['state'], d['completed'], d['failed'], d['error']) for d in j['datacenters']]")"
[[ $(jget "$C" 'j["state"]') == partial ]] || fail "(c) state: $C"
check_share "$C" c dc-a "$N"
[[ $(jget "$C" "($DC)['dc-b']['state']") == failed ]] || fail "(c) dc-b state: $C"
[[ $(jget "$C" "'unreachable' in ($DC)['dc-b']['error']") == True ]] || fail "(c) dc-b error: $C"
[[ $(jget "$C" "($DC)['dc-b']['completed'] < $N") == True ]] || fail "(c) dc-b completed all before the cut: $C"
BDONE=$(jget "$C" "($DC)['dc-b']['completed']")
stop_target "$HTTP"
echo "(c) target served $SERVED ($N from dc-a, at least the $BDONE dc-b reported)"
[[ $SERVED -ge $((N + BDONE)) ]] || fail "(c) target served $SERVED, want at least $((N + BDONE))"

echo "== orderly stop of what is not cut: SIGTERM -> exit 0; the leading gate hands its leadership off first"
GL=$(gate_leader "${GATES_LEFT[@]}") || fail "no gate leads before the stop"
OTHER=; for g in "${GATES_LEFT[@]}"; do [[ $g != "$GL" ]] && OTHER=$g; done
TERM1=$(jget "$(admin_status "$GL")" 'j["term"]')
kill -TERM "${PIDS[$GL]}"
wait "${PIDS[$GL]}"; rc=$?; unset "PIDS[$GL]"
[[ $rc == 0 ]] || fail "the leading gate $GL exited $rc on SIGTERM"
grep -q 'event=hand_off ' "$GL.log" || fail "the leading gate $GL did not hand off on SIGTERM"
# The hand-off completed before $GL stopped: $OTHER led in a higher term (it loses its quorum of
# 3 gates right after: the third gate was killed in (b)).
# (Raft's own log line: the gate's `leading` needs a committed entry, which the stopping gate may
# not have acknowledged.)
grep -E "comp=raft event=state .*is_leader=true" "$OTHER.log" | sed -E 's/.* term=([0-9]+) .*/\1/' | sort -n | tail -1 > other-term
[[ $(cat other-term) -gt $TERM1 ]] 2> /dev/null ||
  fail "$OTHER did not lead after the hand-off (term $TERM1): $(grep 'is_leader=true' "$OTHER.log")"
echo "(stop) $GL handed its leadership (term $TERM1) to $OTHER (term $(cat other-term)) and exited 0"
for n in "${!PIDS[@]}"; do [[ $n == b* ]] && continue; kill -TERM "${PIDS[$n]}"; done
for n in "${!PIDS[@]}"; do
  [[ $n == b* ]] && continue
  wait "${PIDS[$n]}"; rc=$?; [[ $rc == 0 ]] || fail "$n exited $rc on SIGTERM"
  unset "PIDS[$n]"
done
echo "all checks passed in $(since "$T0")s"
