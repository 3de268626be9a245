#!/usr/bin/env bash
# `hyperscale manager|worker|submit|status|cancel` end to end with real processes on loopback:
#   (a) a job with an exact iteration count completes; the target served exactly that many requests;
#   (b) SIGKILL of the worker running a workflow: the job still completes (re-dispatched);
#   (c) SIGKILL of the leader manager: a new leader within the bound, and the job completes;
#   (d) cancel mid-run: the job is cancelled and no worker keeps running it.
source "$(dirname "$0")/lib.sh" "$@"

echo "== config errors are clear (exit 2) and --print-config shows sources"
"$HS" manager --config /nonexistent.toml > bad.txt 2>&1; rc=$?
[[ $rc == 2 ]] || { cat bad.txt; fail "missing config exit $rc"; }
HS_WORKER_CORES=lots "$HS" worker --config w1.toml > bad2.txt 2>&1; rc=$?
[[ $rc == 2 ]] && grep -q "HS_WORKER_CORES" bad2.txt || { cat bad2.txt; fail "bad env exit $rc"; }
HS_SWIM_PERIOD=300ms "$HS" manager --config m1.toml --print-config > pc.txt || fail "print-config"
grep -q 'swim.period = 300.*env HS_SWIM_PERIOD' pc.txt || { cat pc.txt; fail "print-config source"; }

echo "== no manager answers: exit 5, no hang"
DEAD=$(free_port)
timeout 20 "$HS" --log-level error status --manager "127.0.0.1:$DEAD" --config m1.toml --request-timeout 1 > dead.txt 2>&1; rc=$?
[[ $rc == 5 ]] && grep -q "no manager answered" dead.txt || { cat dead.txt; fail "unreachable manager exit $rc"; }

echo "== start the target, 3 managers and 2 workers"
HTTP=$(free_port)
"$HS" --log-level warn target --http "$HTTP" > target.out 2> target.log &
TPID=$!
wait_port "$HTTP" || fail "target did not start"
start_all

LEADER=$(wait_cluster 2 m1 m2 m3) || fail "no leader with 2 workers"
echo "leader: $LEADER"
"$HS" status --manager "$MLIST" --config m1.toml --json > ns.json || fail "status (node)"
grep -q '"worker_count":2' ns.json || { cat ns.json; fail "node status"; }
curl -s "http://127.0.0.1:${ADMIN[$LEADER]}/metrics" > metrics.txt
grep -q '^hs_raft_is_leader 1$' metrics.txt && grep -q '^hs_raft_commit_index [1-9]' metrics.txt && grep -q 'hs_manager_table_size' metrics.txt || fail "metrics"

echo "== invalid workflow file: exit 2 with FILE:LINE:COL, nothing sent"
printf 'version = 1\n[[workflow]]\nname = "w"\nvus = "x"\n' > bad.toml
"$HS" submit --manager "$MLIST" --config m1.toml bad.toml > sub-bad.txt 2>&1; rc=$?
[[ $rc == 2 ]] && grep -q "bad.toml:[0-9]*:[0-9]*" sub-bad.txt || { cat sub-bad.txt; fail "invalid file exit $rc"; }

echo "== (a) exact counts"
cat > exact.toml <<TOML
version = 1
[[workflow]]
name = "w"
vus = 4
iterations = 1501
duration = "60s"
[[workflow.step]]
name = "a"
url = "http://127.0.0.1:$HTTP/"
TOML
timeout 60 "$HS" --log-level warn submit --manager "$MLIST" --config m1.toml exact.toml --wait --json --job-id exact-1 > a.json 2> a.err; rc=$?
[[ $rc == 0 ]] || { cat a.json a.err; fail "(a) submit exit $rc"; }
A=$(cat a.json)
[[ $(jget "$A" 'j["state"]') == completed ]] || fail "(a) state: $A"
[[ $(jget "$A" 'j["workflows"][0]["completed"]') == 1501 ]] || fail "(a) completed: $A"
[[ $(jget "$A" 'j["workflows"][0]["stats"]["requests_ok"]') == 1501 ]] || fail "(a) requests: $A"
[[ $(jget "$A" '0 < j["workflows"][0]["stats"]["measured_s"] <= j["workflows"][0]["stats"]["elapsed_s"]') == True ]] ||
  fail "(a) measured_s / elapsed_s: $A"
# Mux traffic on /metrics: the worker that ran it sent role messages (each at least 2 bytes: channel
# and type), the leader's Raft channel carried its log to the followers.
mux_metric() {  # node metric channel dir
  curl -s --max-time 2 "http://127.0.0.1:${ADMIN[$1]}/metrics" |
    awk -v k="$2{channel=\"$3\",dir=\"$4\"}" '$1 == k {print $2; f=1} END {if (!f) print "missing"}'
}
# (4 VUs over the 2 one-core workers: the workflow runs as parts, each names its worker.)
AW=$(name_of_addr "$(jget "$A" 'j["workflows"][0]["parts"][0]["worker"]')") || fail "(a) worker of $A"
msgs=$(mux_metric "$AW" hs_mux_messages_total role sent); bytes=$(mux_metric "$AW" hs_mux_bytes_total role sent)
[[ $msgs =~ ^[0-9]+$ && $bytes =~ ^[0-9]+$ && $msgs -gt 0 && $bytes -ge $((2 * msgs)) ]] ||
  fail "(a) $AW role traffic: messages=$msgs bytes=$bytes"
AL=$(leader_of m1 m2 m3) || fail "(a) no leader"
raft=$(mux_metric "$AL" hs_mux_messages_total raft sent)
[[ $raft =~ ^[0-9]+$ && $raft -gt 0 ]] || fail "(a) leader $AL raft messages sent: $raft"
kill -INT "$TPID"; wait "$TPID"; TPID=
served=$(sed -n 's/.*served http_requests=\([0-9]*\).*/\1/p' target.out)
[[ "$served" == 1501 ]] || { cat target.out; fail "(a) target served $served, want 1501"; }
# Re-submitting the same job id + key is idempotent (the same job, not a second run).
timeout 30 "$HS" --log-level warn submit --manager "$MLIST" --config m1.toml exact.toml --job-id exact-1 --json > a2.json 2>&1 || { cat a2.json; fail "(a) resubmit"; }
"$HS" status --manager "$MLIST" --config m1.toml exact-1 --json > a3.json || fail "(a) status"
[[ $(jget "$(cat a3.json)" 'j["state"]') == completed ]] || fail "(a) status after resubmit"

HTTP2=$(free_port)
"$HS" --log-level warn target --http "$HTTP2" > target2.out 2> target2.log &
TPID=$!
wait_port "$HTTP2" || fail "target 2 did not start"
# Jobs that outlast every kill by far: the waits below are on observed states (the job runs on the
# worker, led by the manager about to be killed), and the job is long enough that the kill lands
# mid-run even on a loaded machine. One VU with a pause keeps the load (and the CPU taken from the
# daemons) small.
job_file() {  # file duration
  cat > "$1" <<TOML
version = 1
[[workflow]]
name = "w"
vus = 1
pause = "20ms"
duration = "$2"
[[workflow.step]]
name = "a"
url = "http://127.0.0.1:$HTTP2/"
TOML
}
job_file long.toml 20s
job_file longer.toml 60s

echo "== (b) SIGKILL the worker running the workflow"
timeout 120 "$HS" --log-level warn submit --manager "$MLIST" --config m1.toml long.toml --wait --json --job-id kill-worker > b.json 2> b.err &
SUB=$!
W=$(running_worker kill-worker) || fail "(b) no running worker"
wait_live_on "$W" kill-worker || fail "(b) worker $W does not run it: $(admin_status "${ADMIN[$W]}")"
echo "killing worker $W (it runs the workflow)"
kill -9 "${PIDS[$W]}"; unset "PIDS[$W]"
wait "$SUB"; rc=$?
[[ $rc == 0 ]] || { cat b.json b.err; fail "(b) submit exit $rc"; }
B=$(cat b.json)
[[ $(jget "$B" 'j["state"]') == completed ]] || fail "(b) state: $B"
[[ $(jget "$B" 'j["workflows"][0]["attempts"]') -ge 2 ]] || fail "(b) not re-dispatched: $B"
[[ $(jget "$B" 'j["workflows"][0]["worker"]') != "$(addr_of "$W")" ]] || fail "(b) same worker: $B"
LEADER=$(wait_cluster 1 m1 m2 m3) || fail "(b) the leader does not see exactly one healthy worker"

echo "== (c) SIGKILL the leader manager"
# The ready Raft leader leads every job: the manager to kill is the one that says it leads (polled
# once the job runs on a worker), and the job's view names it.
timeout 120 "$HS" --log-level warn submit --manager "$MLIST" --config m1.toml long.toml --wait --json --job-id kill-leader > c.json 2> c.err &
SUB=$!
W=$(running_worker kill-leader) || fail "(c) not running"
wait_live_on "$W" kill-leader || fail "(c) worker $W does not run it"
LEADER=$(leader_of m1 m2 m3) || fail "(c) no manager leads"
TERM0=$(jget "$(admin_status "${ADMIN[$LEADER]}")" 'j["term"]')
echo "killing leader $LEADER (term $TERM0; the job runs on $W)"
kill -9 "${PIDS[$LEADER]}"; unset "PIDS[$LEADER]"
t0=$(date +%s.%N)
REST=(); for n in m1 m2 m3; do [[ $n != "$LEADER" ]] && REST+=("$n"); done
NEW=
for _ in $(seq 1 300); do NEW=$(leader_of "${REST[@]}") && break; sleep 0.05; done
[[ -n "$NEW" ]] || fail "(c) no new leader"
elapsed=$(python3 -c "import time; print(round(time.time() - $t0, 2))")
echo "new leader $NEW after ${elapsed}s (observed)"
# Bound: raft.election_timeout drawn from [1s, 2s) + a vote round + the new leader's first commit
# (it is ready only then), measured from the kill to the first poll that sees it; generous for
# ASan on a busy machine.
python3 -c "import sys; sys.exit(0 if $elapsed < 8 else 1)" || fail "(c) new leader took ${elapsed}s"
[[ $(jget "$(admin_status "${ADMIN[$NEW]}")" "j['term'] > $TERM0") == True ]] || fail "(c) the new leader's term is not above $TERM0"
wait "$SUB"; rc=$?
[[ $rc == 0 ]] || { cat c.json c.err; fail "(c) submit exit $rc"; }
C=$(cat c.json)
[[ $(jget "$C" 'j["state"]') == completed ]] || fail "(c) state: $C"
[[ $(jget "$C" 'j["leader"]') != "$(addr_of "$LEADER")" ]] || fail "(c) leader unchanged: $C"

echo "== (d) cancel mid-run"
timeout 60 "$HS" --log-level warn submit --manager "$MLIST" --config m1.toml longer.toml --wait --json --job-id cancel-me > d.json 2> d.err &
SUB=$!
W=$(running_worker cancel-me) || fail "(d) not running"
wait_live_on "$W" cancel-me || fail "(d) worker $W does not run it"
"$HS" --log-level warn cancel --manager "$MLIST" --config m1.toml cancel-me > cancel.txt 2>&1 || { cat cancel.txt; fail "(d) cancel"; }
wait "$SUB"; rc=$?
[[ $rc == 4 ]] || { cat d.json d.err; fail "(d) submit exit $rc (want 4: cancelled)"; }
[[ $(jget "$(cat d.json)" 'j["state"]') == cancelled ]] || fail "(d) state: $(cat d.json)"
wait_idle "$W" || fail "(d) worker $W still runs it: $(admin_status "${ADMIN[$W]}")"

echo "== orderly stop: SIGTERM -> exit 0"
for n in "${!PIDS[@]}"; do kill -TERM "${PIDS[$n]}"; done
for n in "${!PIDS[@]}"; do wait "${PIDS[$n]}"; rc=$?; [[ $rc == 0 ]] || fail "$n exited $rc on SIGTERM"; done
PIDS=()
echo "all checks passed"
