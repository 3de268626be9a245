#!/usr/bin/env bash
# A frozen Raft leader wakes up deposed (real processes on loopback, the test profile of lib.sh):
# 3 managers, 2 workers (w1 2 cores, w2 1 core: 3 cores), a job of two long workflows (1 core each).
#   (1) once both workflows run, the leader manager is frozen with SIGSTOP;
#   (2) another manager becomes the leader with a higher term, and leads for longer than
#       worker.orphan_grace while the job keeps running on the same workers under the same fence
#       tokens (the new leader confirms the executions: none is orphaned or re-dispatched). A second
#       job, submitted to the new leader meanwhile, runs on the free core: the frozen leader's
#       ledger does not know it, so that leader, once awake, would name it in the stop list of its
#       heartbeat replies for as long as it still believes it leads;
#   (3) the old leader gets SIGCONT: whatever it still sends as the leader of its old term (dispatches,
#       heartbeat replies with stop lists) is refused by the workers (deposed_rejects,
#       ignored_stop_lists: counted, may be 0 when it learns the new term first): it reports
#       is_leader false with the new term, both jobs complete, each workflow was started exactly
#       once, and no execution was stopped (hs_worker_events_total{event="cancelled"} and
#       {event="orphaned"} stay 0).
# Every wait polls an observed state with a bound; the whole test takes about 40 s.
source "$(dirname "$0")/lib.sh" "$@" m1 m2 m3 w1 w2
sed -i 's/^cores = 1$/cores = 2/' w1.toml
grep -q '^cores = 2$' w1.toml || fail "w1.toml: no cores line to change"

metric() {  # admin-port series: the value of that exact series on the node's /metrics (0 if absent)
  local v
  v=$(curl -s --max-time 2 "http://127.0.0.1:$1/metrics" | grep -F -- "$2 " | sed -n 's/.* \([0-9][0-9]*\)$/\1/p' | head -n 1)
  echo "${v:-0}"
}
wev() { metric "${ADMIN[$1]}" "hs_worker_events_total{event=\"$2\"}"; }  # worker event: its counter
job_from() {  # manager job: the job's view as that manager answers it (short timeouts: never the frozen one)
  "$HS" --log-level error status --manager "$(addr_of "$1")" --config m1.toml "$2" --json \
    --request-timeout 1 --deadline 3 2>/dev/null
}
now() { date +%s.%N; }
since() { python3 -c "import time; print(round(time.time() - $1, 2))"; }

start_target HTTP
start_all
wait_cluster 2 m1 m2 m3 > /dev/null || fail "no leader with 2 workers"
cat > job.toml <<TOML
version = 1
[[workflow]]
name = "a"
vus = 1
pause = "20ms"
duration = "25s"
[[workflow.step]]
name = "s"
url = "http://127.0.0.1:$HTTP/"
[[workflow]]
name = "b"
vus = 1
pause = "20ms"
duration = "25s"
[[workflow.step]]
name = "s"
url = "http://127.0.0.1:$HTTP/"
TOML
python3 - job.toml fresh.toml <<'PY'
import sys
text = open(sys.argv[1]).read()
first = text.split("[[workflow]]")[1]  # one workflow: "a" renamed "c"
open(sys.argv[2], "w").write("version = 1\n[[workflow]]" + first.replace('name = "a"', 'name = "c"'))
PY

echo "== (1) a job of two workflows runs; freeze the leader"
timeout 60 "$HS" --log-level warn submit --manager "$MLIST" --config m1.toml job.toml --job-id frozen-1 --json > s.json 2> s.err ||
  { cat s.json s.err; fail "submit"; }
RUN=$(wait_job frozen-1 'all(w["state"] == "running" and w["worker"] for w in j["workflows"])' 300) ||
  fail "the workflows do not both run: $(job_json frozen-1)"
# name worker token, one line per workflow: what must not change until the job completes
PLACES=$(jget "$RUN" '"\n".join(w["name"] + " " + w["worker"] + " " + str(w["token"]) for w in j["workflows"])')
echo "running: $(echo "$PLACES" | tr '\n' ';')"
WORKERS=()
while read -r wf addr tok; do
  w=$(name_of_addr "$addr") || fail "workflow $wf on an unknown node $addr"
  wait_live_on "$w" frozen-1 || fail "$w does not run frozen-1: $(admin_status "${ADMIN[$w]}")"
  WORKERS+=("$w")
done <<< "$PLACES"
OLD=$(leader_of m1 m2 m3) || fail "no manager leads"
TERM0=$(jget "$(admin_status "${ADMIN[$OLD]}")" 'j["term"]')
echo "freezing leader $OLD (term $TERM0)"
kill -STOP "${PIDS[$OLD]}"
t_stop=$(now)
REST=(); for n in m1 m2 m3; do [[ $n != "$OLD" ]] && REST+=("$n"); done

echo "== (2) a new leader with a higher term keeps the job where it runs"
NEW=
for _ in $(seq 1 300); do  # bound 15 s (2 x the largest election timeout + a vote round, with room)
  for n in "${REST[@]}"; do
    s=$(admin_status "${ADMIN[$n]}") || continue
    [[ $(jget "$s" "j.get('is_leader') == True and j['term'] > $TERM0") == True ]] && { NEW=$n; TERM1=$(jget "$s" 'j["term"]'); break 2; }
  done
  sleep 0.05
done
[[ -n "$NEW" ]] || fail "no manager leads with a term above $TERM0 after the freeze"
t_new=$(now)
echo "new leader $NEW (term $TERM1) $(since "$t_stop")s after the freeze"
timeout 30 "$HS" --log-level warn submit --manager "$(addr_of "$NEW")" --config m1.toml fresh.toml --job-id fresh-1 --json \
  --request-timeout 2 --deadline 20 > f.json 2> f.err || { cat f.json f.err; fail "submit fresh-1 to $NEW"; }
FRESH=
for _ in $(seq 1 200); do  # bound 20 s
  v=$(job_from "$NEW" fresh-1) && [[ $(jget "$v" 'j["workflows"][0]["state"] == "running" and bool(j["workflows"][0]["worker"])') == True ]] && {
    FRESH=$(jget "$v" 'j["workflows"][0]["worker"] + " " + str(j["workflows"][0]["token"])'); break; }
  sleep 0.1
done
[[ -n $FRESH ]] || fail "fresh-1 does not run: $(job_from "$NEW" fresh-1)"
WF=$(name_of_addr "${FRESH% *}") || fail "fresh-1 on an unknown node $FRESH"
wait_live_on "$WF" fresh-1 || fail "$WF does not run fresh-1: $(admin_status "${ADMIN[$WF]}")"
echo "fresh-1 (unknown to the frozen $OLD) runs on $WF"
# job workflow token worker, for every execution the workers must run until the old leader wakes
EXPECT=$({
  while read -r wf addr tok; do echo "frozen-1 $wf $tok $(name_of_addr "$addr")"; done <<< "$PLACES"
  echo "fresh-1 c ${FRESH#* } $WF"
} | sort)
# The new leader must carry the job on: for longer than worker.orphan_grace (4 s in the profile)
# after the freeze, every poll sees it leading the same term, the job running with the same worker
# and fence token per workflow, and each worker running it and following the new leader. An
# execution that no leader confirmed would have been stopped (orphaned) by then.
held=
for _ in $(seq 1 400); do  # bound 40 s; ends when the hold has lasted long enough
  s=$(admin_status "${ADMIN[$NEW]}") || fail "the new leader $NEW does not answer"
  [[ $(jget "$s" "j['is_leader'] == True and j['term'] == $TERM1") == True ]] || fail "$NEW lost the lead: $s"
  v=$(job_from "$NEW" frozen-1) || fail "$NEW does not answer for frozen-1"
  [[ $(jget "$v" 'j["state"]') == running ]] || fail "frozen-1 is not running while $OLD is frozen: $v"
  now_places=$(jget "$v" '"\n".join(w["name"] + " " + w["worker"] + " " + str(w["token"]) for w in j["workflows"])')
  [[ "$now_places" == "$PLACES" ]] || fail "frozen-1 moved while $OLD is frozen: $now_places (was $PLACES)"
  f=$(job_from "$NEW" fresh-1) || fail "$NEW does not answer for fresh-1"
  [[ $(jget "$f" 'j["state"] + " " + j["workflows"][0]["worker"] + " " + str(j["workflows"][0]["token"])') == "running $FRESH" ]] ||
    fail "fresh-1 moved or ended while $OLD is frozen: $f"
  confirmed=1 live=
  for w in w1 w2; do
    ws=$(admin_status "${ADMIN[$w]}") || fail "$w does not answer"
    live+=$(jget "$ws" "''.join(f\"{e['job_id']} {e['workflow']} {e['token']} $w\\n\" for e in j['live'])")$'\n'
    [[ $(jget "$ws" "all(e['leader'] == '$(addr_of "$NEW")' for e in j['live'])") == True ]] || confirmed=
  done
  live=$(echo "$live" | grep -v '^$' | sort)
  [[ "$live" == "$EXPECT" ]] || fail "the workers' live executions changed while $OLD is frozen: $live (want $EXPECT)"
  if [[ -n $confirmed ]] && python3 -c "import sys,time; sys.exit(0 if time.time() - $t_stop > 5.5 and time.time() - $t_new > 1 else 1)"; then
    held=1; break
  fi
  sleep 0.1
done
[[ -n $held ]] || fail "the workers never followed $NEW"
for w in w1 w2; do
  [[ $(wev "$w" orphaned) == 0 && $(wev "$w" cancelled) == 0 ]] || fail "$w stopped an execution while $OLD was frozen"
done
echo "held: $NEW leads, frozen-1 runs unchanged on ${WORKERS[*]}, fresh-1 on $WF, $(since "$t_stop")s after the freeze"

echo "== (3) the old leader wakes up deposed"
kill -CONT "${PIDS[$OLD]}"
t_cont=$(now)
wait_admin "$OLD" "j['is_leader'] == False and j['term'] >= $TERM1" ||
  fail "$OLD still claims the lead or an old term: $(admin_status "${ADMIN[$OLD]}")"
echo "$OLD: is_leader false, term >= $TERM1, $(since "$t_cont")s after SIGCONT"
DONE=$(wait_job frozen-1 'j["state"] in ("completed", "failed", "cancelled", "timeout", "partial")' 400) ||
  fail "frozen-1 did not finish: $(job_json frozen-1)"
[[ $(jget "$DONE" 'j["state"]') == completed ]] || fail "frozen-1: $DONE"
[[ $(jget "$DONE" 'all(w["attempts"] == 1 for w in j["workflows"])') == True ]] || fail "a workflow was re-dispatched: $DONE"
DONE2=$(wait_job fresh-1 'j["state"] in ("completed", "failed", "cancelled", "timeout", "partial")' 400) ||
  fail "fresh-1 did not finish: $(job_json fresh-1)"
[[ $(jget "$DONE2" 'j["state"] == "completed" and j["workflows"][0]["attempts"] == 1') == True ]] || fail "fresh-1: $DONE2"
started=0 cancelled=0 refused=0
for w in w1 w2; do
  st=$(wev "$w" started) ca=$(wev "$w" cancelled) or=$(wev "$w" orphaned) de=$(wev "$w" deposed_rejects) ig=$(wev "$w" ignored_stop_lists)
  echo "$w: started=$st cancelled=$ca orphaned=$or deposed_rejects=$de ignored_stop_lists=$ig"
  [[ $or == 0 ]] || fail "$w orphaned an execution"
  started=$((started + st)) cancelled=$((cancelled + ca)) refused=$((refused + de + ig))
done
[[ $started == 3 ]] || fail "the workers started $started executions, want 3 (each workflow exactly once)"
[[ $cancelled == 0 ]] || fail "the workers stopped $cancelled executions, want 0"
for jw in frozen-1/a frozen-1/b fresh-1/c; do
  n=$(cat w1.log w2.log | grep -c "event=started_workflow job=\"${jw%/*}\" workflow=\"${jw#*/}\"")
  [[ $n == 1 ]] || fail "workflow $jw started $n times (worker logs)"
done
s=$(admin_status "${ADMIN[$OLD]}")
[[ $(jget "$s" "j['is_leader'] == False and j['term'] >= $TERM1") == True ]] || fail "$OLD: $s"
echo "old leader $OLD: $s" | cut -c1-200
echo "refused from the deposed leader: $refused (deposed_rejects + ignored_stop_lists)"
echo "all checks passed"
