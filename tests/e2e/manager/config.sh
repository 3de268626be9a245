#!/usr/bin/env bash
# `hyperscale manager|worker` configuration end to end (docs/daemons.md "Configuration"):
#   - every relation between keys the protocols rely on is checked at load: exit 2, nothing
#     started, the error names both keys with their values and sources;
#   - a missing cluster secret is a config error (exit 2);
#   - the admin port: its default (loopback, node port + 1000) shown by --print-config, the start
#     line on stdout, the warning for a non-loopback address, a taken port (exit 5 naming admin.listen).
source "$(dirname "$0")/lib.sh" "$1" m1 w1

# A node port whose admin port (+ 1000) is free too.
free_pair() {
  python3 - <<'PY'
import socket
for _ in range(200):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
    if p + 1000 > 65535: continue
    try:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", p))
        a = socket.socket(); a.bind(("127.0.0.1", p + 1000))
    except OSError:
        continue
    print(p); break
PY
}
NP=$(free_pair)
[[ -n "$NP" ]] || fail "no free port pair"
WP=$(free_port)
plain() {  # file node-port: only what has no default; every protocol key keeps its default
  cat > "$1" <<TOML
[node]
listen = "127.0.0.1:$2"
data_dir = "$T/data-$2"
[wire]
secret_file = "$T/secret"
[cluster]
managers = ["127.0.0.1:$NP"]
TOML
}
plain plain.toml "$NP"
plain plainw.toml "$WP"

# expect_config_error NAME ROLE FILE PATTERN... [-- ENV=VALUE...]: exit 2, every pattern in stderr,
# nothing started (no data directory, no admin line).
expect_config_error() {
  local name=$1 role=$2 file=$3; shift 3
  local pats=() envs=()
  while [[ $# -gt 0 && $1 != -- ]]; do pats+=("$1"); shift; done
  [[ $# -gt 0 ]] && shift && envs=("$@")
  timeout 30 env "${envs[@]}" "$HS" "$role" --config "$file" > "$name.stdout" 2> "$name.err"; local rc=$?
  [[ $rc == 2 ]] || { cat "$name.err"; fail "$name: exit $rc, want 2"; }
  for p in "${pats[@]}"; do grep -qF -- "$p" "$name.err" || { cat "$name.err"; fail "$name: no '$p' in the error"; }; done
  [[ ! -s "$name.stdout" ]] || { cat "$name.stdout"; fail "$name: something started"; }
  [[ ! -e "$T/data-$NP" && ! -e "$T/data-$WP" ]] || fail "$name: a data directory was created"
}

echo "== relations between keys: exit 2, both keys with values and sources"
printf '[swim]\nprobe_timeout = "2s"\n' > probe.toml
cat plain.toml >> probe.toml
expect_config_error probe manager probe.toml \
  "swim.probe_timeout = 2s (probe.toml:2:17), swim.period = 1s (default): swim.probe_timeout must be below 5/9 of swim.period"
expect_config_error probe-nack manager plain.toml \
  'swim.probe_timeout = 600ms (env HS_SWIM_PROBE_TIMEOUT), swim.period = 1s (default)' -- HS_SWIM_PROBE_TIMEOUT=600ms
expect_config_error raft-heartbeat manager plain.toml \
  'raft.heartbeat = 2s (env HS_RAFT_HEARTBEAT), raft.election_timeout = 2s (default): raft.heartbeat must be shorter than raft.election_timeout' \
  -- HS_RAFT_HEARTBEAT=2s
printf '[raft]\nelection_timeout = "150ms"\n' > raft.toml
cat plain.toml >> raft.toml
expect_config_error raft-timeout manager raft.toml \
  'raft.heartbeat = 200ms (default), raft.election_timeout = 150ms (raft.toml:2:20): raft.heartbeat must be shorter than raft.election_timeout'
expect_config_error stale worker plainw.toml \
  'worker.heartbeat = 2s (env HS_WORKER_HEARTBEAT), manager.worker_stale = 3s (default): manager.worker_stale must be at least 2 x worker.heartbeat' \
  -- HS_WORKER_HEARTBEAT=2s
expect_config_error orphan worker plainw.toml \
  'worker.orphan_grace = 4s (env HS_WORKER_ORPHAN_GRACE), raft.election_timeout = 2s (default): worker.orphan_grace must be longer than 2 x raft.election_timeout' \
  -- HS_WORKER_ORPHAN_GRACE=4s
expect_config_error orphan-election manager plain.toml \
  'worker.orphan_grace = 8s (default), raft.election_timeout = 4s (env HS_RAFT_ELECTION_TIMEOUT): worker.orphan_grace must be longer than 2 x raft.election_timeout' \
  -- HS_RAFT_ELECTION_TIMEOUT=4s
expect_config_error exec worker plainw.toml \
  'worker.orphan_grace = 12s (env HS_WORKER_ORPHAN_GRACE), manager.exec_timeout = 12s (default): manager.exec_timeout must be longer than worker.orphan_grace' \
  -- HS_WORKER_ORPHAN_GRACE=12s
expect_config_error exec-manager manager plain.toml \
  'worker.orphan_grace = 8s (default), manager.exec_timeout = 5s (env HS_MANAGER_EXEC_TIMEOUT): manager.exec_timeout must be longer than worker.orphan_grace' \
  -- HS_MANAGER_EXEC_TIMEOUT=5s
# Every broken relation at once, and --print-config refuses too.
HS_RAFT_HEARTBEAT=2s HS_WORKER_HEARTBEAT=2s timeout 30 "$HS" manager --config plain.toml --print-config > pc-bad.txt 2>&1; rc=$?
[[ $rc == 2 && $(grep -c ' = .*(.*), .* = .*(.*): ' pc-bad.txt) == 2 ]] || { cat pc-bad.txt; fail "print-config with broken relations: exit $rc"; }
# The test profile of lib.sh (docs/daemons.md) satisfies every relation.
"$HS" manager --config m1.toml --print-config > /dev/null || fail "the test profile breaks a relation"
"$HS" worker --config w1.toml --print-config > /dev/null || fail "the test profile breaks a relation (worker)"

echo "== a missing cluster secret is a config error (exit 2)"
grep -v secret_file plain.toml > nosecret.toml
expect_config_error nosecret manager nosecret.toml 'wire.secret_file / wire.secret_env' 'HYPERSCALE_CLUSTER_SECRET' \
  -- -u HYPERSCALE_CLUSTER_SECRET
sed "s|$T/secret|$T/no-such-secret|" plain.toml > badsecret.toml
expect_config_error badsecret manager badsecret.toml 'wire.secret_file / wire.secret_env' "$T/no-such-secret"

echo "== admin port: default shown by --print-config, start line, taken port, non-loopback warning"
APORT=$((NP + 1000))
"$HS" manager --config plain.toml --print-config > pc.txt || fail "print-config"
grep -qE "^admin.listen = \"127.0.0.1:$APORT\" +# default \(auto: 127.0.0.1, node.listen port \+ 1000\)$" pc.txt ||
  { cat pc.txt; fail "print-config does not show the admin address"; }
"$HS" manager --config plain.toml > m.out 2> m.log &
PIDS[m]=$!
wait_file_line m.out '^admin: ' || fail "no admin line on stdout"
[[ $(head -n 1 m.out) == "admin: http://127.0.0.1:$APORT (GET /status /metrics /healthz)" ]] ||
  { cat m.out; fail "start line: $(head -n 1 m.out)"; }
[[ $(curl -s --max-time 5 "http://127.0.0.1:$APORT/healthz") == ok ]] || fail "/healthz on the default admin port"
grep -q "is not a loopback address" m.log && { cat m.log; fail "a loopback admin port warned"; }
# A second daemon asking for the same admin port: exit 5, naming admin.listen and how to change it.
plain second.toml "$(free_port)"
sed -i "s|^managers = .*|&\n[admin]\nlisten = \"127.0.0.1:$APORT\"|" second.toml
HS_CLUSTER_MANAGERS=$(grep '^listen' second.toml | head -n 1 | sed 's/.*"\(.*\)"/\1/') \
  timeout 30 "$HS" manager --config second.toml > second.out 2> second.err; rc=$?
[[ $rc == 5 ]] || { cat second.err; fail "taken admin port: exit $rc, want 5"; }
grep -qF "admin.listen 127.0.0.1:$APORT (second.toml:" second.err &&
  grep -qF 'set admin.listen (env HS_ADMIN_LISTEN) to a free address' second.err ||
  { cat second.err; fail "taken admin port: unclear error"; }
kill -TERM "${PIDS[m]}"; wait "${PIDS[m]}"; rc=$?; unset "PIDS[m]"
[[ $rc == 0 ]] || fail "SIGTERM exit $rc"
# Any non-loopback admin address warns (no authentication), on stderr at start.
OPEN=$(free_port)
HS_ADMIN_LISTEN="0.0.0.0:$OPEN" "$HS" manager --config plain.toml > open.out 2> open.log &
PIDS[open]=$!
wait_file_line open.out '^admin: ' || { cat open.log; fail "no admin line (0.0.0.0)"; }
grep -q "admin: http://0.0.0.0:$OPEN " open.out || { cat open.out; fail "start line (0.0.0.0)"; }
grep -qF "warning: admin.listen 0.0.0.0:$OPEN is not a loopback address: the admin port has no authentication" open.log ||
  { cat open.log; fail "no warning for a non-loopback admin address"; }
kill -TERM "${PIDS[open]}"; wait "${PIDS[open]}"; rc=$?; unset "PIDS[open]"
[[ $rc == 0 ]] || fail "SIGTERM exit $rc (0.0.0.0)"
echo "all checks passed"
