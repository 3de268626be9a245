#!/usr/bin/env bash
# The `hyperscale` CLI end to end: validation errors and exit 2, an unreachable target (exit 5, no
# hang), exact counts against `hyperscale target`, JSON files, `new` and `ping`.
set -uo pipefail
HS=$(realpath "$1")
SRC=$2
. "$(dirname "$0")/lib.sh"
T=$(mktemp -d /tmp/hs-load-cli.XXXXXX)
TPID=
cleanup() { [[ -n "$TPID" ]] && kill -INT "$TPID" 2>/dev/null; wait 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
cd "$T"

echo "== invalid file: exit 2, FILE:LINE:COL, no load started"
cat > bad.toml <<'TOML'
version = 1
[[workflow]]
name = "w"
vus = "lots"
[[workflow.step]]
name = "s"
url = "http://127.0.0.1:1/"
TOML
"$HS" run bad.toml --out out >stdout.txt 2>stderr.txt; rc=$?
[[ $rc == 2 ]] || fail "run bad.toml exited $rc, want 2"
grep -q "^bad.toml:4:7: 'vus' must be an integer" stderr.txt || { cat stderr.txt; fail "no position in error"; }
[[ ! -e out ]] || fail "results written for an invalid file"
"$HS" validate bad.toml 2>stderr.txt; [[ $? == 2 ]] || fail "validate bad.toml"
printf 'version = 1\n[[workflow]\n' > broken.toml
"$HS" validate broken.toml 2>stderr.txt; [[ $? == 2 ]] || fail "validate broken.toml"
grep -q "^broken.toml:2:" stderr.txt || { cat stderr.txt; fail "TOML syntax error without position"; }
"$HS" run missing.toml 2>stderr.txt; [[ $? == 2 ]] || fail "missing file should exit 2"

echo "== examples and the template validate"
"$HS" validate "$SRC/examples/quickstart.toml" >/dev/null || fail "quickstart does not validate"
"$HS" new fresh.toml >/dev/null || fail "new"
"$HS" validate fresh.toml >/dev/null || fail "template does not validate"
"$HS" new fresh.toml >/dev/null 2>&1 && fail "new overwrote without --overwrite"

echo "== the plan dump shows an abort threshold (docs/load.md: validate --plan)"
cat > abort.toml <<'TOML'
version = 1
[[workflow]]
name = "w"
vus = 2
cores = 2
[workflow.thresholds]
p99 = { limit = "< 100ms", abort = true, after = "30s" }
[[workflow.step]]
name = "s"
url = "http://127.0.0.1:1/"
TOML
"$HS" validate --plan abort.toml > plan.json || fail "validate --plan abort.toml"
grep -q '"p99":{"abort":true,"after_ns":30000000000,"limit":"< 100ms"}' plan.json || { cat plan.json; fail "abort threshold not in the plan dump"; }
grep -q '"cores":2' plan.json || { cat plan.json; fail "cores not in the plan dump"; }

echo "== unreachable target: connection errors per step, exit 5"
DEAD=$(free_port SOCK_STREAM)
cat > down.toml <<TOML
version = 1
[thresholds]
error_rate = "< 1%"
[[workflow]]
name = "w"
vus = 2
duration = "400ms"
[[workflow.step]]
name = "a"
url = "http://127.0.0.1:$DEAD/"
TOML
timeout 60 "$HS" --log-level warn run down.toml --out down-out --quiet >stdout.txt 2>&1; rc=$?
[[ $rc == 5 ]] || { cat stdout.txt; fail "unreachable run exited $rc, want 5"; }
[[ $(jq_get down-out/results.json 'j["workflows"][0]["steps"][0]["failed_by_reason"]["refused"] > 0') == True ]] || fail "no refused count"
[[ $(jq_get down-out/results.json 'j["workflows"][0]["steps"][0]["succeeded"]') == 0 ]] || fail "succeeded should be 0"

echo "== SIGINT aborts: in-flight work interrupted, dependants skipped, partial results, exit 4"
cat > long.toml <<TOML
version = 1
[[workflow]]
name = "long"
vus = 2
duration = "60s"
[[workflow.step]]
name = "a"
url = "http://127.0.0.1:$DEAD/"
[[workflow]]
name = "after"
depends_on = ["long"]
vus = 1
duration = "1s"
[[workflow.step]]
name = "b"
url = "http://127.0.0.1:$DEAD/"
TOML
"$HS" --log-level warn run long.toml --out long-out --quiet > long.txt 2>&1 &
LPID=$!
sleep 2   # past start-up (the run installs its SIGINT handler when its shards start)
kill -INT "$LPID"
wait "$LPID"; rc=$?
[[ $rc == 4 ]] || { cat long.txt; fail "SIGINT run exited $rc, want 4"; }
[[ $(jq_get long-out/results.json 'j["aborted"]') == True ]] || fail "results not marked aborted"
[[ $(jq_get long-out/results.json '[w["outcome"] for w in j["workflows"]]') == "['interrupted', 'skipped']" ]] || fail "outcomes"

echo "== exact counts against hyperscale target"
HTTP=$(free_port SOCK_STREAM)
"$HS" --log-level warn target --http "$HTTP" > target.log 2>&1 &
TPID=$!
wait_port "$HTTP" || fail "target did not start"
"$HS" ping "http://127.0.0.1:$HTTP/json" > ping.txt || fail "ping"
grep -q -- "-> 200" ping.txt || fail "ping status"
grep -q "abc123" ping.txt || fail "ping body"
cat > exact.toml <<TOML
version = 1
[[workflow]]
name = "w"
vus = 7
iterations = 3001
duration = "60s"
[[workflow.step]]
name = "a"
url = "http://127.0.0.1:$HTTP/"
[[workflow.step]]
name = "b"
method = "POST"
url = "http://127.0.0.1:$HTTP/echo"
body = "n=\${iteration}"
TOML
timeout 120 "$HS" --log-level warn run exact.toml --out exact-out --shards 2 > run.txt 2>&1; rc=$?
[[ $rc == 0 ]] || { cat run.txt; fail "exact run exited $rc"; }
for s in 0 1; do
  [[ $(jq_get exact-out/results.json "j['workflows'][0]['steps'][$s]['executed']") == 3001 ]] || fail "step $s executed"
  [[ $(jq_get exact-out/results.json "j['workflows'][0]['steps'][$s]['succeeded']") == 3001 ]] || fail "step $s succeeded"
done
[[ $(jq_get exact-out/results.json "j['workflows'][0]['executed']") == 6002 ]] || fail "workflow executed"
grep -q "^w,a,3001,3001,0," exact-out/results.csv || { cat exact-out/results.csv; fail "csv row"; }
# The same plan as JSON.
python3 - "$HTTP" > exact.json <<'PY'
import json, sys
p = sys.argv[1]
print(json.dumps({"version": 1, "workflow": [{"name": "w", "vus": 3, "iterations": 500, "duration": "60s",
  "step": [{"name": "a", "url": f"http://127.0.0.1:{p}/"}]}]}))
PY
timeout 120 "$HS" --log-level warn run exact.json --out json-out --quiet > run2.txt 2>&1 || { cat run2.txt; fail "json run"; }
[[ $(jq_get json-out/results.json "j['workflows'][0]['steps'][0]['executed']") == 500 ]] || fail "json executed"
kill -INT "$TPID"; wait "$TPID"; TPID=
served=$(sed -n 's/.*served http_requests=\([0-9]*\).*/\1/p' target.log)
[[ "$served" == $((6002 + 500 + 1)) ]] || { cat target.log; fail "target served $served, want $((6002 + 500 + 1))"; }

echo "== examples/quickstart.toml: setup value reaches dependants through the in-process manager"
HTTP=$(free_port SOCK_STREAM); TCP=$(free_port SOCK_STREAM); UDP=$(free_port SOCK_DGRAM)
"$HS" --log-level warn target --http "$HTTP" --tcp "$TCP" --udp "$UDP" > target2.log 2>&1 &
TPID=$!
wait_port "$HTTP" || fail "target did not start"
TARGET_URL="http://127.0.0.1:$HTTP" TARGET_TCP="127.0.0.1:$TCP" TARGET_UDP="127.0.0.1:$UDP" \
  timeout 120 "$HS" --log-level warn run "$SRC/examples/quickstart.toml" --out qs-out --quiet --shards 2 > qs.txt 2>&1
rc=$?
[[ $rc == 0 ]] || { cat qs.txt; fail "quickstart exited $rc"; }
[[ $(jq_get qs-out/results.json '[w["outcome"] for w in j["workflows"]]') == "['completed', 'completed', 'completed']" ]] ||
  fail "quickstart outcomes"
# browse/cart sends "Bearer ${ctx.login.token}": it only renders if the setup value arrived.
[[ $(jq_get qs-out/results.json "j['workflows'][1]['steps'][1]['failed'] == 0 and j['workflows'][1]['steps'][1]['executed'] > 0") == True ]] ||
  fail "cart step (uses the setup token)"
# steady: 200/s for 3 s = 600 scheduled iterations (started + dropped), exactly.
[[ $(jq_get qs-out/results.json "j['workflows'][2]['iterations']['started'] + j['workflows'][2]['iterations']['dropped']") == 600 ]] ||
  { cat qs-out/results.json | head -c 2000; fail "steady scheduled iterations"; }
kill -INT "$TPID"; wait "$TPID"; TPID=
echo "all checks passed"
