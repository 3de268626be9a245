#!/usr/bin/env bash
# The client commands as a new user types them (issue 20, defects 1, 5, 6 and the client's messages):
#   - `--manager` takes one value per use: the positional job file / job id after it is not swallowed;
#   - a manager that refuses connections is left at once; an unreachable cluster exits 5 quickly,
#     with one summary instead of a warning per retry;
#   - a repeat submit answered by a follower names the leader (it leads every job), not the follower;
#   - a wrong cluster secret is reported as rejected frames, not as a dead manager;
#   - an unknown job's "not found" mentions retention;
#   - `results JOB --out DIR` writes run's files from the job's merged statistics and exits as run
#     would (thresholds included, as `submit --wait` now does); an unknown job or a running one
#     writes nothing (exit 2, exit 6).
source "$(dirname "$0")/lib.sh" "$@" m1 m2 m3 w1

elapsed_since() { python3 -c "import time; print(round(time.time() - $1, 2))"; }
below() { python3 -c "import sys; sys.exit(0 if $1 < $2 else 1)"; }

start_target HTTP
start_all
LEADER=$(wait_cluster 1 m1 m2 m3) || fail "no leader with 1 worker"
echo "leader: $LEADER"
cat > job.toml <<TOML
version = 1
[[workflow]]
name = "w"
vus = 2
iterations = 50
duration = "60s"
[[workflow.step]]
name = "a"
url = "http://127.0.0.1:$HTTP/"
TOML
M1="127.0.0.1:${PORT[m1]}"; M2="127.0.0.1:${PORT[m2]}"; M3="127.0.0.1:${PORT[m3]}"

echo "== (1) --manager before the positional argument (the docs' order)"
timeout 60 "$HS" submit --config m1.toml --manager "$M1" job.toml --wait --job-id order-1 > o1.txt 2>&1; rc=$?
[[ $rc == 0 ]] || { cat o1.txt; fail "submit --config F --manager A FILE --wait: exit $rc"; }
grep -q "job order-1: completed" o1.txt || { cat o1.txt; fail "order-1 not completed"; }
"$HS" status --manager "$M1" order-1 --config m1.toml > o2.txt 2>&1 || { cat o2.txt; fail "status --manager A JOB --config F"; }
grep -q "job order-1: completed" o2.txt || { cat o2.txt; fail "status output"; }
# Repeated and comma-separated forms both work.
"$HS" status --manager "$M1" --manager "$M2" order-1 --config m1.toml > o3.txt 2>&1 || { cat o3.txt; fail "repeated --manager"; }
"$HS" status --manager "$M1,$M2" order-1 --config m1.toml > o4.txt 2>&1 || { cat o4.txt; fail "comma-separated --manager"; }
# A bad address is reported against --manager, not an environment variable the user never set.
"$HS" status --manager not-an-address order-1 --config m1.toml > o5.txt 2>&1; rc=$?
[[ $rc == 2 ]] && grep -q -- "--manager not-an-address" o5.txt && ! grep -q HS_CLUSTER_MANAGERS o5.txt ||
  { cat o5.txt; fail "bad --manager: exit $rc"; }

echo "== (7) results of a finished job: the files \`run\` writes, from the job's merged statistics"
"$HS" results --manager "$MLIST" order-1 --config m1.toml --out res1 > q1.txt 2>&1; rc=$?
[[ $rc == 0 ]] || { cat q1.txt; fail "results order-1: exit $rc"; }
[[ -f res1/results.json ]] || { cat q1.txt; fail "results order-1: no res1/results.json"; }
grep -q "results: .*res1/results.json" q1.txt || { cat q1.txt; fail "results order-1: files not named"; }
S=$(job_json order-1) || fail "status order-1"
python3 - "$S" res1/results.json <<'PY' || { cat q1.txt res1/results.json; fail "results.json of order-1 does not match the job"; }
import json, sys
job = json.loads(sys.argv[1]); res = json.load(open(sys.argv[2]))
js = job["workflows"][0]["stats"]; w = res["workflows"][0]
assert res["exit_code"] == 0 and not res["aborted"], res
assert w["name"] == "w" and w["outcome"] == "completed", w
assert js["requests"] == 50 and w["executed"] == js["requests"], (w["executed"], js)
assert w["succeeded"] == js["requests_ok"] and w["failed"] == js["requests_failed"], (w, js)
assert w["iterations"]["completed"] == js["completed"] == 50, (w["iterations"], js)
series = sum(p["executed"] for st in w["steps"] for p in st["series"])
assert series == w["executed"], ("series", series, w["executed"])
print("results.json: requests", w["executed"], "= the job's; series sums to", series)
PY
echo "== (7) thresholds judged on the job's statistics: submit --wait and results exit 3 as run does"
sed 's/^duration = "60s"$/duration = "60s"\n[workflow.thresholds]\nrps = "< 1"/' job.toml > slow.toml
grep -q 'rps = "< 1"' slow.toml || fail "slow.toml has no threshold"
timeout 60 "$HS" submit --config m1.toml --manager "$M1" slow.toml --wait --job-id thr-1 > t1.txt 2>&1; rc=$?
[[ $rc == 3 ]] || { cat t1.txt; fail "submit --wait of a job whose threshold fails: exit $rc, not 3"; }
grep -q "job thr-1: completed" t1.txt && grep -q "1 threshold(s) failed (exit 3)" t1.txt || { cat t1.txt; fail "submit --wait: no job view and run's summary"; }
"$HS" results --manager "$MLIST" thr-1 --config m1.toml --out res2 > t2.txt 2>&1; rc=$?
[[ $rc == 3 ]] || { cat t2.txt; fail "results thr-1: exit $rc, not 3"; }
[[ $(jget "$(cat res2/results.json)" 'j["exit_code"]') == 3 ]] || fail "results.json of thr-1: exit_code not 3"
[[ $(jget "$(cat res2/results.json)" '[t["passed"] for t in j["thresholds"]]') == "[False]" ]] || fail "thr-1: threshold not failed"
echo "== (7) results of an unknown job: not found, nothing written"
"$HS" results --manager "$MLIST" --config m1.toml no-such-job --out res3 > q3.txt 2>&1; rc=$?
[[ $rc == 2 ]] && grep -q "job no-such-job not found" q3.txt || { cat q3.txt; fail "results of an unknown job: exit $rc"; }
[[ ! -e res3 ]] || fail "results of an unknown job wrote res3"
echo "== (7) results of a running job: exit 6, nothing written; once cancelled: exit 4"
sed '/^iterations = 50$/d; s/^vus = 2$/vus = 1/' job.toml > long.toml
timeout 60 "$HS" submit --config m1.toml --manager "$M1" long.toml --job-id long-1 > l1.txt 2>&1 || { cat l1.txt; fail "submit long-1"; }
"$HS" results --manager "$MLIST" long-1 --config m1.toml --out res4 > q4.txt 2>&1; rc=$?
[[ $rc == 6 ]] && grep -q "job long-1 is still running" q4.txt || { cat q4.txt; fail "results of a running job: exit $rc"; }
[[ ! -e res4 ]] || fail "results of a running job wrote res4"
"$HS" cancel --manager "$MLIST" --config m1.toml long-1 > l2.txt 2>&1 || { cat l2.txt; fail "cancel long-1"; }
wait_job long-1 'j["state"] == "cancelled"' > /dev/null || fail "long-1 never cancelled"
"$HS" results --manager "$MLIST" long-1 --config m1.toml --out res4 > q5.txt 2>&1; rc=$?
[[ $rc == 4 ]] || { cat q5.txt; fail "results of a cancelled job: exit $rc, not 4"; }
[[ $(jget "$(cat res4/results.json)" 'j["aborted"]') == True ]] || fail "results.json of long-1: not aborted"

echo "== (5) a refused manager is left at once"
DEAD=$(free_port)
t0=$(date +%s.%N)
timeout 60 "$HS" submit --config m1.toml --manager "127.0.0.1:$DEAD" --manager "$M1,$M2,$M3" job.toml --job-id refused-1 > r1.txt 2>&1; rc=$?
el=$(elapsed_since "$t0")
[[ $rc == 0 ]] || { cat r1.txt; fail "submit with a dead first manager: exit $rc"; }
echo "submit with a refused first manager took ${el}s (request timeout 5s)"
below "$el" 4 || { cat r1.txt; fail "a refused manager cost ${el}s: the client waited for a reply that could not come"; }
echo "== (5) an unreachable cluster exits 5 quickly with one summary"
t0=$(date +%s.%N)
timeout 60 "$HS" status --manager "127.0.0.1:$DEAD" --config m1.toml --request-timeout 1 > r2.txt 2>&1; rc=$?
el=$(elapsed_since "$t0")
echo "unreachable manager: exit $rc after ${el}s"
[[ $rc == 5 ]] || { cat r2.txt; fail "unreachable: exit $rc"; }
below "$el" 6 || { cat r2.txt; fail "unreachable manager took ${el}s"; }
grep -q "unreachable: connection refused" r2.txt || { cat r2.txt; fail "no summary naming the refusal"; }
warns=$(grep -c "level=warn" r2.txt)
[[ $warns -le 1 ]] || { cat r2.txt; fail "$warns warning lines for one dead manager"; }
# The total deadline bounds a command that gets no reply at all (a stopped process).
SILENT=$(free_port)  # a listener that accepts connections and never answers
python3 -c 'import socket,sys,time; s=socket.socket(); s.bind(("127.0.0.1",int(sys.argv[1]))); s.listen(16); time.sleep(120)' "$SILENT" > /dev/null 2>&1 &
PIDS[silent]=$!
wait_port "$SILENT" || fail "silent listener"
t0=$(date +%s.%N)
timeout 60 "$HS" status --manager "127.0.0.1:$SILENT" --config m1.toml --request-timeout 0.5 --deadline 2 > r3.txt 2>&1; rc=$?
el=$(elapsed_since "$t0")
kill "${PIDS[silent]}"; unset "PIDS[silent]"
echo "silent peer: exit $rc after ${el}s (--deadline 2)"
[[ $rc == 5 ]] || { cat r3.txt; fail "silent peer: exit $rc"; }
below "$el" 6 || { cat r3.txt; fail "--deadline 2 took ${el}s"; }

echo "== (6) a repeat submit answered by a follower names the leader"
LEADER=$(wait_cluster 1 m1 m2 m3) || fail "no leader"
FOLLOWER=; for n in m1 m2 m3; do [[ $n != "$LEADER" ]] && { FOLLOWER=$n; break; }; done
timeout 60 "$HS" submit --config m1.toml --manager "127.0.0.1:${PORT[$LEADER]}" job.toml --job-id repeat-1 > p1.txt 2>&1 ||
  { cat p1.txt; fail "first submit"; }
# Wait until the follower holds its copy of the job (a replica answers only then).
ok=
for _ in $(seq 1 100); do
  s=$("$HS" status --manager "127.0.0.1:${PORT[$FOLLOWER]}" --config m1.toml repeat-1 --json --deadline 1 2>/dev/null) && { ok=1; break; }
  sleep 0.1
done
[[ -n $ok ]] || fail "the follower never held job repeat-1"
timeout 60 "$HS" submit --config m1.toml --manager "127.0.0.1:${PORT[$FOLLOWER]}" job.toml --job-id repeat-1 > p2.txt 2>&1 ||
  { cat p2.txt; fail "repeat submit"; }
grep -q "submitted job repeat-1 (leader 127.0.0.1:${PORT[$LEADER]})" p2.txt ||
  { cat p2.txt; fail "repeat submit should name the leader 127.0.0.1:${PORT[$LEADER]}, not the replica ${PORT[$FOLLOWER]}"; }

echo "== a wrong cluster secret is named as such"
echo "another-secret-0123456789abcdef" > wrong-secret
sed "s|secret_file = .*|secret_file = \"$T/wrong-secret\"|" m1.toml > wrong.toml
t0=$(date +%s.%N)
timeout 60 "$HS" status --manager "$MLIST" --config wrong.toml --request-timeout 2 > s1.txt 2>&1; rc=$?
el=$(elapsed_since "$t0")
echo "wrong secret: exit $rc after ${el}s"
[[ $rc == 5 ]] && grep -q "unauthenticated" s1.txt || { cat s1.txt; fail "wrong secret: exit $rc, no mention of rejected frames"; }

echo "== an unknown job: not found, with retention named"
"$HS" status --manager "$MLIST" --config m1.toml no-such-job > n1.txt 2>&1; rc=$?
[[ $rc == 2 ]] && grep -q "retention" n1.txt || { cat n1.txt; fail "unknown job: exit $rc"; }
echo "all checks passed"
