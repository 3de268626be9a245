#!/usr/bin/env bash
# One workflow split into parts over several workers (issue 11), real processes on loopback:
# 3 managers, 3 workers of 1 core each and `hyperscale target`.
#   (a) a constant-vus workflow (vus = 6, iterations = 3000, cores = 0 from the CLI) runs as 3 parts,
#       one per worker, all three live at the same time; every part completes; the parts' counts add
#       up to 3000, the merged statistics show 3000 requests ok and the target served exactly 3000;
#       `submit --wait` printed live lines with percentiles from the leader's merged windows;
#       `hyperscale results` writes results.json whose per-window request counts sum to 3000 (and
#       windows.csv); `hyperscale watch` on the ended job prints its summary and exits 0;
#   (b) the same workflow again; once every part has made progress, SIGKILL of the worker running
#       part 1: that part alone is placed again (attempts 2, another worker, once a core is free) and
#       the job completes with completed + failed + lost == 3000 over the parts.
# Every wait polls an observed state with a bound.
source "$(dirname "$0")/lib.sh" "$1" m1 m2 m3 w1 w2 w3
WORKERS=(w1 w2 w3)
ITER=3000

echo "== start 3 managers and 3 workers (1 core each)"
start_all
LEADER=$(wait_cluster 3 m1 m2 m3) || fail "no leader with 3 workers"
wait_admin "$LEADER" 'j["available_cores"] == 3' || fail "leader $LEADER does not see 3 free cores: $(admin_status "${ADMIN[$LEADER]}")"
echo "leader: $LEADER"

job_file() {  # file http-port
  # Each request waits 15 ms at the target (/delay/15): each part (2 VUs, 1000 iterations) runs for
  # about 8 s, so the three parts are seen live together, and in (b) part 1 still runs when it is
  # killed (its first progress shows about a second in, the kill follows within a few polls). A VU is
  # nearly always inside an iteration, so the killed attempt has iterations in flight (lost).
  cat > "$1" <<TOML
version = 1
[[workflow]]
name = "w"
vus = 6
iterations = $ITER
duration = "600s"
[[workflow.step]]
name = "a"
url = "http://127.0.0.1:$2/delay/15"
TOML
}
stop_target() {  # port: stops the target; SERVED = what it served (it prints its counts on SIGINT)
  kill -INT "$TPID"; wait "$TPID"; TPID=
  SERVED=$(sed -n 's/.*served http_requests=\([0-9]*\).*/\1/p' "target-$1.out")
}
# job: polls every worker's /status until all three run (live) an execution of the job at once;
# prints "worker:part worker:part worker:part".
wait_live_on_all() {
  for _ in $(seq 1 300); do
    local s1 s2 s3 got
    s1=$(admin_status "${ADMIN[w1]}") && s2=$(admin_status "${ADMIN[w2]}") && s3=$(admin_status "${ADMIN[w3]}") &&
      got=$(python3 - "$1" "$s1" "$s2" "$s3" <<'PY'
import json, sys
job = sys.argv[1]
out = []
for name, text in zip(("w1", "w2", "w3"), sys.argv[2:]):
    live = [e for e in json.loads(text)["live"] if e["job_id"] == job]
    if not live:
        sys.exit(1)
    out += [f"{name}:{e['part']}" for e in live]
print(" ".join(out))
PY
      ) && { echo "$got"; return 0; }
    sleep 0.05
  done
  return 1
}

echo "== (a) vus = 6 over 3 workers: 3 parts, exact counts"
start_target HTTP
job_file a.toml "$HTTP"
timeout 90 "$HS" --log-level warn submit --manager "$MLIST" --config m1.toml a.toml --wait --job-id parts-a > a.txt 2> a.err &
SUB=$!
LIVE=$(wait_live_on_all parts-a) || fail "(a) the three workers never ran the job at the same time"
echo "live at once: $LIVE"
wait "$SUB"; rc=$?
[[ $rc == 0 ]] || { cat a.txt a.err; fail "(a) submit exit $rc"; }
# Live lines: the step's line with its last window's percentiles (milliseconds), and the parts' load.
grep -E '^  a +total +[0-9]+ .* p50 +[0-9.]+ms p95 +[0-9.]+ms p99 +[0-9.]+ms' a.txt > a-live.txt ||
  { cat a.txt a.err; fail "(a) submit --wait printed no live line with percentiles"; }
echo "(a) live lines with percentiles: $(wc -l < a-live.txt); last: $(tail -1 a-live.txt)"
grep -q '^  parts:' a.txt || { cat a.txt; fail "(a) no parts line in the live view"; }
A=$(job_json parts-a)
echo "(a) $(jget "$A" '[(p["part"], p["state"], p["worker"], p["shard_first"], p["cores"], p["completed"], p["failed"], p["lost"], p["attempts"]) for p in j["workflows"][0]["parts"]]')"
[[ $(jget "$A" 'j["state"]') == completed ]] || fail "(a) state: $A"
W0='j["workflows"][0]'
[[ $(jget "$A" "len(${W0}[\"parts\"])") == 3 ]] || fail "(a) not 3 parts: $A"
[[ $(jget "$A" "${W0}[\"shard_total\"]") == 3 ]] || fail "(a) shard_total: $A"
[[ $(jget "$A" "all(p['state'] == 'completed' for p in ${W0}['parts'])") == True ]] || fail "(a) a part did not complete: $A"
[[ $(jget "$A" "len({p['worker'] for p in ${W0}['parts']} - {None})") == 3 ]] || fail "(a) parts not on 3 different workers: $A"
[[ $(jget "$A" "sorted((p['shard_first'], p['cores']) for p in ${W0}['parts']) == [(0, 1), (1, 1), (2, 1)]") == True ]] ||
  fail "(a) shard ranges: $A"
[[ $(jget "$A" "sum(p['completed'] for p in ${W0}['parts'])") == "$ITER" ]] || fail "(a) parts' completed do not add up to $ITER: $A"
[[ $(jget "$A" "${W0}[\"completed\"]") == "$ITER" ]] || fail "(a) workflow completed: $A"
[[ $(jget "$A" "${W0}['stats']['requests_ok']") == "$ITER" ]] || fail "(a) stats.requests_ok: $A"
# The parts seen live are parts 0, 1, 2, each on the worker the job's view names for it.
for wp in $LIVE; do
  w=${wp%%:*} p=${wp##*:}
  [[ $(jget "$A" "${W0}['parts'][$p]['worker']") == "$(addr_of "$w")" ]] || fail "(a) $w ran part $p live, the view says otherwise: $A"
done
[[ $(tr ' ' '\n' <<< "$LIVE" | cut -d: -f2 | sort | tr '\n' ' ') == "0 1 2 " ]] || fail "(a) live parts: $LIVE"
stop_target "$HTTP"
echo "(a) target served $SERVED"
[[ "$SERVED" == "$ITER" ]] || fail "(a) target served $SERVED, want $ITER"
for w in "${WORKERS[@]}"; do wait_idle "$w" || fail "(a) $w still busy: $(admin_status "${ADMIN[$w]}")"; done
"$HS" --log-level warn results --manager "$MLIST" --config m1.toml parts-a --out res-a > res-a.txt 2>&1 ||
  { cat res-a.txt; fail "(a) results exit $?"; }
R=$(cat res-a/results.json)
WSUM=$(jget "$R" "sum(w['steps'].get('a', {}).get('requests', 0) for w in j['windows']['w']['series'])")
echo "(a) results.json: $(jget "$R" "len(j['windows']['w']['series'])") windows, $WSUM requests; dropped $(jget "$R" "j['windows']['w']['counters']['dropped']")"
[[ "$WSUM" == "$ITER" ]] || fail "(a) the per-window request counts sum to $WSUM, want $ITER"
[[ $(head -1 res-a/windows.csv) == "workflow,index,start_ms,step,requests,errors,p50_ms,p95_ms,p99_ms" ]] ||
  fail "(a) windows.csv header: $(head -1 res-a/windows.csv)"
"$HS" --log-level warn watch --manager "$MLIST" --config m1.toml parts-a > watch-a.txt 2>&1 ||
  { cat watch-a.txt; fail "(a) watch of the ended job exit $?"; }
grep -q 'PASS' watch-a.txt || { cat watch-a.txt; fail "(a) watch printed no summary"; }

echo "== (b) SIGKILL the worker running part 1"
start_target HTTP2
job_file b.toml "$HTTP2"
timeout 30 "$HS" --log-level warn submit --manager "$MLIST" --config m1.toml b.toml --json --job-id parts-b > b-sub.json 2> b-sub.err ||
  { cat b-sub.json b-sub.err; fail "(b) submit"; }
B=$(wait_job parts-b "len(${W0}['parts']) == 3 and all(p['completed'] > 0 for p in ${W0}['parts']) and ${W0}['parts'][1]['state'] == 'running'" 300) ||
  fail "(b) the parts never all made progress: $(job_json parts-b)"
W1ADDR=$(jget "$B" "${W0}['parts'][1]['worker']")
W=$(name_of_addr "$W1ADDR") || fail "(b) part 1's worker $W1ADDR is not one of ours"
wait_admin "$W" "any(e['job_id'] == 'parts-b' and e['part'] == 1 for e in j['live'])" ||
  fail "(b) $W does not run part 1: $(admin_status "${ADMIN[$W]}")"
echo "killing $W (runs part 1; progress then: $(jget "$B" "[p['completed'] for p in ${W0}['parts']]"))"
kill -9 "${PIDS[$W]}"; unset "PIDS[$W]"
B=$(wait_job parts-b "j['state'] in ('completed', 'failed', 'cancelled', 'timeout', 'partial')" 900) ||
  fail "(b) no terminal state: $(job_json parts-b)"
echo "(b) $(jget "$B" '[(p["part"], p["state"], p["worker"], p["completed"], p["failed"], p["lost"], p["attempts"]) for p in j["workflows"][0]["parts"]]')"
echo "(b) workflow completed=$(jget "$B" "${W0}['completed']") failed=$(jget "$B" "${W0}['failed']") lost=$(jget "$B" "${W0}['lost']") requests_ok=$(jget "$B" "(${W0}['stats'] or {}).get('requests_ok')")"
stop_target "$HTTP2"
echo "(b) target served $SERVED (>= $ITER: what the dead worker ran after its last acknowledgement runs again)"
[[ $(jget "$B" 'j["state"]') == completed ]] || fail "(b) state: $B"
[[ $(jget "$B" "${W0}['parts'][1]['attempts']") == 2 ]] || fail "(b) part 1 attempts: $B"
[[ $(jget "$B" "${W0}['parts'][1]['worker']") != "$W1ADDR" ]] || fail "(b) part 1 on the same worker: $B"
[[ $(jget "$B" "all(p['state'] == 'completed' for p in ${W0}['parts'])") == True ]] || fail "(b) a part did not complete: $B"
[[ $(jget "$B" "sum(p['completed'] + p['failed'] + p['lost'] for p in ${W0}['parts'])") == "$ITER" ]] ||
  fail "(b) completed + failed + lost over the parts is not $ITER: $B"
[[ $(jget "$B" "${W0}['lost'] == sum(p['lost'] for p in ${W0}['parts'])") == True ]] || fail "(b) workflow lost is not the parts' sum: $B"

echo "== orderly stop: SIGTERM -> exit 0"
for n in "${!PIDS[@]}"; do kill -TERM "${PIDS[$n]}"; done
for n in "${!PIDS[@]}"; do wait "${PIDS[$n]}"; rc=$?; [[ $rc == 0 ]] || fail "$n exited $rc on SIGTERM"; done
PIDS=()
echo "all checks passed"
