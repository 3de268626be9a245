# Shared harness for the cluster e2e scripts: sourced as `source lib.sh HYPERSCALE_EXE [NAMES...]`.
# It makes a temp dir (removed on exit), free loopback ports for every node (PORT[n], ADMIN[n]), one
# config file per node (n.toml, the compressed test profile of docs/daemons.md), and helpers to start
# daemons and wait on observed cluster states. Nothing here sleeps for a fixed time to let something
# happen: every wait polls an observed state with a bound.
set -u
HS=${1:?usage: SCRIPT HYPERSCALE_EXE}
HS=$(cd "$(dirname "$HS")" && pwd)/$(basename "$HS")  # absolute: the script cds into a temp dir
shift
names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=(m1 m2 m3 w1 w2)
T=$(mktemp -d /tmp/hs-cluster-e2e.XXXXXX)
cd "$T"
# The system interpreter, not a version-manager shim on PATH: the scripts call python3 hundreds of
# times, and a shim costs seconds per call on a loaded machine (a wait loop then misses what it
# waits for). A link, not a shell function, so `python3 ... &` leaves $! = the interpreter itself
# (killable). Only the standard library is used.
if [[ -x /usr/bin/python3 ]]; then
  mkdir -p "$T/bin" && ln -s /usr/bin/python3 "$T/bin/python3" && PATH="$T/bin:$PATH"
fi
declare -A PIDS=()
TPID=
EXTRA_CLEANUP=()
cleanup() {
  for p in "${PIDS[@]}" $TPID; do kill -9 "$p" 2>/dev/null; done
  for c in "${EXTRA_CLEANUP[@]}"; do eval "$c" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
dump_logs() {
  for f in "$T"/*.log; do echo "----- $f"; tail -n 60 "$f"; done >&2
}
fail() { echo "FAIL: $*" >&2; dump_logs; exit 1; }
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); u=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", s.getsockname()[1])); print(s.getsockname()[1])'
}
jget() {  # json-text python-expression-on-j
  python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"
}
admin_status() { curl -s --max-time 2 "http://127.0.0.1:$1/status"; }
wait_port() {
  for _ in $(seq 1 400); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  return 1
}

echo "cluster-e2e-secret-0123456789abcdef" > secret
declare -A PORT=() ADMIN=()
for n in "${names[@]}"; do PORT[$n]=$(free_port); ADMIN[$n]=$(free_port); done
MGRS=()
for n in "${names[@]}"; do [[ $n == m* ]] && MGRS+=("$n"); done
MANAGERS=$(for n in "${MGRS[@]}"; do printf '"127.0.0.1:%s", ' "${PORT[$n]}"; done)
MANAGERS=${MANAGERS%, }
MLIST=$(for n in "${MGRS[@]}"; do printf '127.0.0.1:%s,' "${PORT[$n]}"; done)
MLIST=${MLIST%,}
write_config() {  # name: writes name.toml (the compressed test profile)
  cat > "$1.toml" <<TOML
[node]
listen = "127.0.0.1:${PORT[$1]}"
data_dir = "$T/data-$1"
[admin]
listen = "127.0.0.1:${ADMIN[$1]}"
[wire]
secret_file = "$T/secret"
[disk]
durability = "none"
[cluster]
managers = [$MANAGERS]
[swim]
period = "200ms"
probe_timeout = "100ms"
[raft]
heartbeat = "100ms"
election_timeout = "1000ms"
[manager]
tick = "50ms"
worker_stale = "1500ms"
dispatch_ack_timeout = "500ms"
exec_timeout = "6s"
[worker]
cores = 1
heartbeat = "200ms"
progress = "200ms"
orphan_grace = "4s"
stop_grace = "2s"
TOML
}
for n in "${names[@]}"; do write_config "$n"; done

start() {  # name: starts that node's daemon in the background (stdout n.out, stderr n.log)
  local role=manager; [[ $1 == w* ]] && role=worker
  "$HS" "$role" --config "$1.toml" > "$1.out" 2> "$1.log" &
  PIDS[$1]=$!
}
start_target() {  # variable-name: starts `hyperscale target` on a free HTTP port, stores the port
  local p; p=$(free_port)
  "$HS" --log-level warn target --http "$p" > "target-$p.out" 2> "target-$p.log" &
  TPID=$!
  wait_port "$p" || fail "target did not start"
  printf -v "$1" '%s' "$p"
}
start_all() {  # starts every node and waits for their admin ports
  for n in "${names[@]}"; do start "$n"; done
  for n in "${names[@]}"; do wait_port "${ADMIN[$n]}" || fail "$n admin port"; done
}
leader_of() {  # prints the name of the manager that says it leads, if any (among the given)
  for n in "$@"; do
    local s; s=$(admin_status "${ADMIN[$n]}") || continue
    [[ $(jget "$s" 'j.get("is_leader")') == True ]] && { echo "$n"; return 0; }
  done
  return 1
}
wait_cluster() {  # want managers...: a leader that sees `want` healthy workers
  local want=$1; shift
  for _ in $(seq 1 300); do
    local l; l=$(leader_of "$@") && {
      local s; s=$(admin_status "${ADMIN[$l]}")
      [[ $(jget "$s" 'j["healthy_worker_count"]') == "$want" ]] && { echo "$l"; return 0; }
    }
    sleep 0.1
  done
  return 1
}
name_of_addr() { for n in "${names[@]}"; do [[ "127.0.0.1:${PORT[$n]}" == "$1" ]] && { echo "$n"; return 0; }; done; return 1; }
job_json() {  # job: its view as JSON from any manager (fails if none answers)
  "$HS" --log-level error status --manager "$MLIST" --config m1.toml "$1" --json 2>/dev/null
}
running_worker() {  # job: name of the worker running its first workflow (polls the job's status)
  for _ in $(seq 1 200); do
    local s; s=$(job_json "$1") && {
      local w; w=$(jget "$s" 'j["workflows"][0]["worker"] or ""')
      local st; st=$(jget "$s" 'j["workflows"][0]["state"]')
      [[ -n "$w" && "$st" == running ]] && { name_of_addr "$w"; return 0; }
    }
    sleep 0.1
  done
  return 1
}
addr_of() { echo "127.0.0.1:${PORT[$1]}"; }  # name -> its node address
wait_job() {  # job python-condition-on-j [tries]: polls the job's view until the condition holds; prints it
  local tries=${3:-200}
  for _ in $(seq 1 "$tries"); do
    local s; s=$(job_json "$1") && [[ $(jget "$s" "bool($2)") == True ]] && { echo "$s"; return 0; }
    sleep 0.1
  done
  return 1
}
wait_admin() {  # node python-condition-on-j: polls the node's own /status until the condition holds
  for _ in $(seq 1 200); do
    local s; s=$(admin_status "${ADMIN[$1]}") && [[ $(jget "$s" "bool($2)") == True ]] && return 0
    sleep 0.1
  done
  return 1
}
wait_live_on() {  # worker job: polls the worker's own /status until it runs (live) an execution of the job
  wait_admin "$1" "any(e['job_id'] == '$2' for e in j['live'])"
}
wait_idle() {  # worker: polls its /status until nothing is live and no core is used
  wait_admin "$1" 'len(j["live"]) == 0 and j["used"] == 0'
}
wait_file_line() {  # file regex: polls until a line of the file matches
  for _ in $(seq 1 400); do grep -qE "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  return 1
}
