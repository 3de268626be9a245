# Harness of the gate e2e script: sourced as `source lib.sh HYPERSCALE_EXE [HS_NETDELAY_EXE]`.
# Topology: 3 gates (g1 g2 g3), datacenters dc-a and dc-b of 3 managers (am1..am3, bm1..bm3) and
# 2 one-core workers (aw1 aw2, bw1 bw2) each, one `hyperscale target` per case.
# Network: as root with working `ip netns`, each datacenter's managers and workers run in their own
# network namespace (hs-gate-PID-a / -b, address 10.N.1.2 / 10.N.2.2) joined to the root
# namespace by a veth pair (root end 10.N.1.1 / 10.N.2.1, the namespace's default route). Each
# datacenter's link gets LINK_MS (20 ms) of delay in each direction, so a round trip between a
# datacenter and the root namespace (gate <-> manager, worker <-> target) takes at least 40 ms: the
# issue's "40 ms of delay" on the inter-datacenter link, as a round trip. Two ways, the first that works:
#   netem:       `tc qdisc ... netem delay 20ms` on both ends of each veth pair;
#   hs-netdelay: (kernels without sch_netem, e.g. CI's) in each datacenter's namespace, iptables
#                sends what leaves by its veth end (OUTPUT -o) and what arrives by it (INPUT -i) to
#                NFQUEUE queue 1 with --queue-bypass, and one hs-netdelay (tools/netdelay) per
#                namespace holds each packet 20 ms before accepting it (fail-open: if it dies, traffic
#                passes undelayed). nft's own `queue` statement needs nft_queue, which CI's kernel
#                lacks; iptables' NFQUEUE target (xt_NFQUEUE, through nft_compat) is there.
# Neither working as root is a failure. The round trip is then measured (TCP connects from each
# namespace to a closed port of the hub address: SYN out, RST back) and asserted >= 2 * LINK_MS.
# The gates, the target and the client
# stay in the root namespace on 10.N.0.1, held by a port-less bridge (hsghPID) that both
# namespaces reach through their veth (no forwarding needed: it is a local address of the root
# namespace). N is 200 + PID % 50, moved on while the host has an address in 10.N/16, so runs at the
# same time do not meet. Otherwise every process runs on 127.0.0.1 (loopback fallback, no link delay).
# Everything is removed on exit (trap): processes (hs-netdelay too, which prints its counters),
# namespaces (with their iptables rules), links, the temp dir.
# Nothing here sleeps for a fixed time to let something happen: every wait polls an observed state
# with a bound.
GATE_E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)  # this directory, wherever the caller is
set -u
HS=${1:?usage: SCRIPT HYPERSCALE_EXE}
HS=$(cd "$(dirname "$HS")" && pwd)/$(basename "$HS")  # absolute: the script cds into a temp dir
ND=${2:-}  # hs-netdelay, for the link delay when the kernel has no netem
[[ -n $ND ]] && ND=$(cd "$(dirname "$ND")" && pwd)/$(basename "$ND")
LINK_MS=20  # one-way delay of each datacenter's link (each direction): a 40 ms round trip
T=$(mktemp -d /tmp/hs-gate-e2e.XXXXXX)
cd "$T"
# The system interpreter, not a version-manager shim (see tests/e2e/manager/lib.sh).
if [[ -x /usr/bin/python3 ]]; then
  mkdir -p "$T/bin" && ln -s /usr/bin/python3 "$T/bin/python3" && PATH="$T/bin:$PATH"
fi
GATES=(g1 g2 g3)
A_MGRS=(am1 am2 am3) B_MGRS=(bm1 bm2 bm3)
A_WRKS=(aw1 aw2) B_WRKS=(bw1 bw2)
WORKERS=("${A_WRKS[@]}" "${B_WRKS[@]}")
names=("${GATES[@]}" "${A_MGRS[@]}" "${A_WRKS[@]}" "${B_MGRS[@]}" "${B_WRKS[@]}")
declare -A PIDS=() STOPPED=() ND_PIDS=()
TPID=
NSA=hs-gate-$$-a NSB=hs-gate-$$-b HUBDEV=hsgh$$ VA=hsga$$ VB=hsgb$$
NETNS=0 NETNS_MADE=0
cleanup() {
  # Clients still waiting (`timeout ... submit --wait &`): TERM, which timeout passes on to them.
  for p in $(jobs -p); do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}" $TPID; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  local d
  for d in a b; do  # the delayers got their TERM above: they accepted what they held, printed counters
    [[ -n ${ND_PIDS[$d]:-} ]] || continue
    echo "gate e2e: hs-netdelay in dc-$d: $(grep -h '^hs-netdelay: held=' "$T/netdelay-$d.out" 2>/dev/null ||
      echo "no counters: $(tail -1 "$T/netdelay-$d.log" 2>/dev/null)")"
  done
  if [[ $NETNS_MADE == 1 ]]; then
    ip netns del "$NSA" 2>/dev/null  # takes its veth end, and so the pair, with it
    ip netns del "$NSB" 2>/dev/null
    ip link del "$VA" 2>/dev/null
    ip link del "$VB" 2>/dev/null
    ip link del "$HUBDEV" 2>/dev/null
  fi
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP  # meson's timeout: still clean up
dump_logs() {
  for f in "$T"/*.log; do echo "----- $f"; tail -n 40 "$f"; done >&2
}
fail() { echo "FAIL: $*" >&2; dump_logs; exit 1; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(round($(now) - $1, 1))"; }
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); u=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", s.getsockname()[1])); print(s.getsockname()[1])'
}
jget() {  # json-text python-expression-on-j
  python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"
}

# ---------------------------------------------------------------- network
WHY=
make_links() {  # the hub bridge, both namespaces and their veth pairs (fails at the first error)
  ip link add "$HUBDEV" type bridge && ip addr add "$NET.0.1/32" dev "$HUBDEV" && ip link set "$HUBDEV" up || return 1
  local ns v i
  for i in 1 2; do
    ns=$NSA v=$VA; [[ $i == 2 ]] && ns=$NSB v=$VB
    ip netns add "$ns" && ip -n "$ns" link set lo up &&
      ip link add "$v" type veth peer name "${v}n" && ip link set "${v}n" netns "$ns" &&
      ip addr add "$NET.$i.1/24" dev "$v" && ip link set "$v" up &&
      ip -n "$ns" addr add "$NET.$i.2/24" dev "${v}n" && ip -n "$ns" link set "${v}n" up &&
      ip -n "$ns" route add default via "$NET.$i.1" || return 1
  done
}
setup_netns() {  # sets WHY on failure (and leaves nothing behind)
  local err="$T/netns.err"
  [[ -n ${GATE_E2E_LOOPBACK:-} ]] && { WHY="GATE_E2E_LOOPBACK is set"; return 1; }
  [[ $(id -u) == 0 ]] || { WHY="not root"; return 1; }
  command -v ip > /dev/null || { WHY="no ip command"; return 1; }
  local k
  for k in $(seq 0 49); do
    NET=10.$((200 + ($$ + k) % 50))
    ip -o -4 addr show | grep -q " inet $NET\." || break
  done
  NETNS_MADE=1
  make_links 2> "$err" || { WHY=$(head -c 300 "$err" | tr '\n' ' '); cleanup_netns; return 1; }
  # The namespaces reach the hub address (a real round trip through the veth, both ways).
  python3 -c 'import socket,sys; socket.socket().bind((sys.argv[1], 0))' "$NET.0.1" > /dev/null 2>&1 ||
    { WHY="cannot bind $NET.0.1"; cleanup_netns; return 1; }
  for ns in "$NSA" "$NSB"; do
    ip netns exec "$ns" python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], 1), timeout=3)' "$NET.0.1" \
      > "$err" 2>&1
    grep -q "Connection refused" "$err" || { WHY="$ns does not reach $NET.0.1: $(tail -1 "$err")"; cleanup_netns; return 1; }
  done
  return 0
}
cleanup_netns() {
  ip netns del "$NSA" 2>/dev/null; ip netns del "$NSB" 2>/dev/null
  ip link del "$VA" 2>/dev/null; ip link del "$VB" 2>/dev/null; ip link del "$HUBDEV" 2>/dev/null
  NETNS_MADE=0
}
netem_links() {  # netem delay LINK_MS on both ends of both veth pairs, or none at all (prints why)
  if tc qdisc add dev "$VA" root netem delay "${LINK_MS}ms" 2>&1 && tc qdisc add dev "$VB" root netem delay "${LINK_MS}ms" 2>&1 &&
    ip netns exec "$NSA" tc qdisc add dev "${VA}n" root netem delay "${LINK_MS}ms" 2>&1 &&
    ip netns exec "$NSB" tc qdisc add dev "${VB}n" root netem delay "${LINK_MS}ms" 2>&1; then
    return 0
  fi
  tc qdisc del dev "$VA" root 2> /dev/null; tc qdisc del dev "$VB" root 2> /dev/null
  ip netns exec "$NSA" tc qdisc del dev "${VA}n" root 2> /dev/null
  ip netns exec "$NSB" tc qdisc del dev "${VB}n" root 2> /dev/null
  return 1
}
netdelay_links() {  # hs-netdelay in each namespace on its veth end, both directions (prints why not)
  [[ -n $ND && -x $ND ]] || { echo "no hs-netdelay executable (the script's second argument)"; return 1; }
  command -v iptables > /dev/null || { echo "no iptables command (tools/setup installs it)"; return 1; }
  local d ns v
  for d in a b; do
    ns=$NSA v=${VA}n; [[ $d == b ]] && ns=$NSB v=${VB}n
    # --queue-bypass: packets pass undelayed while nothing is bound to queue 1 (before hs-netdelay
    # binds it, or if it dies); queue numbers are per namespace, so concurrent runs do not meet.
    ip netns exec "$ns" iptables -w -A OUTPUT -o "$v" -j NFQUEUE --queue-num 1 --queue-bypass 2>&1 &&
      ip netns exec "$ns" iptables -w -A INPUT -i "$v" -j NFQUEUE --queue-num 1 --queue-bypass 2>&1 || return 1
    ip netns exec "$ns" "$ND" --queue 1 --delay-ms "$LINK_MS" > "$T/netdelay-$d.out" 2> "$T/netdelay-$d.log" &
    ND_PIDS[$d]=$!
  done
  for d in a b; do
    for _ in $(seq 1 200); do
      grep -q 'bound queue' "$T/netdelay-$d.out" && break
      kill -0 "${ND_PIDS[$d]}" 2> /dev/null || break
      sleep 0.05
    done
    grep -q 'bound queue' "$T/netdelay-$d.out" || { echo "hs-netdelay in dc-$d: $(cat "$T/netdelay-$d.log")"; return 1; }
  done
}
link_rtt_ms() {  # namespace: the smallest of 5 TCP connect times to a closed port of the hub (ms)
  ip netns exec "$1" python3 "$GATE_E2E_DIR/../netdelay/connect_rtt.py" "$HUB"
}
if setup_netns; then
  NETNS=1 HUB=$NET.0.1 IPA=$NET.1.2 IPB=$NET.2.2
  if nerr=$(netem_links); then
    LINK_MODE="netem delay ${LINK_MS}ms on both ends of each veth pair"
  elif netdelay_links > "$T/netdelay.err" 2>&1; then  # not in $(...): its processes are this shell's
    LINK_MODE="hs-netdelay ${LINK_MS}ms each way (NFQUEUE from iptables in each datacenter's namespace; no netem: $(echo "$nerr" | head -1))"
  else
    fail "as root with network namespaces but no link delay: netem: $(echo "$nerr" | head -1); hs-netdelay: $(tail -1 "$T/netdelay.err") (set GATE_E2E_LOOPBACK=1 to run on loopback)"
  fi
  RTT_A=$(link_rtt_ms "$NSA") && RTT_B=$(link_rtt_ms "$NSB") || fail "cannot measure the links' round trip"
  echo "gate e2e: network namespaces $NSA $NSB; link delay: $LINK_MODE"
  echo "gate e2e: measured round trip (min of 5 TCP connects) dc-a ${RTT_A} ms, dc-b ${RTT_B} ms (want >= $((2 * LINK_MS)) ms)"
  for r in "$RTT_A" "$RTT_B"; do
    python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= 2 * $LINK_MS else 1)" "$r" ||
      fail "a datacenter link's round trip is $r ms, under $((2 * LINK_MS)) ms: the delay is not in effect"
  done
  echo "gate e2e: a datacenter's link is cut with \`ip link set ... down\` on its veth"
else
  HUB=127.0.0.1 IPA=127.0.0.1 IPB=127.0.0.1
  echo "gate e2e: no network namespaces ($WHY): loopback fallback, no link delay"
  echo "gate e2e: a datacenter's link is cut with SIGSTOP of its managers and workers"
fi

# ---------------------------------------------------------------- nodes
declare -A PORT=() ADMIN=() IP=() NS=()
for n in "${names[@]}"; do
  PORT[$n]=$(free_port) ADMIN[$n]=$(free_port)
  case $n in
    g*) IP[$n]=$HUB NS[$n]= ;;
    a*) IP[$n]=$IPA NS[$n]=$([[ $NETNS == 1 ]] && echo "$NSA") ;;
    b*) IP[$n]=$IPB NS[$n]=$([[ $NETNS == 1 ]] && echo "$NSB") ;;
  esac
done
addr_of() { echo "${IP[$1]}:${PORT[$1]}"; }
quoted_list() { local o; o=$(for n in "$@"; do printf '"%s", ' "$(addr_of "$n")"; done); echo "${o%, }"; }
spaced_list() { local o; o=$(for n in "$@"; do printf '%s ' "$(addr_of "$n")"; done); echo "${o% }"; }
GLIST=$(for n in "${GATES[@]}"; do printf '%s,' "$(addr_of "$n")"; done); GLIST=${GLIST%,}
echo "cluster-e2e-secret-0123456789abcdef" > secret
write_config() {  # name: writes name.toml (the compressed test profile, short gate timeouts)
  local mgrs=""
  case $1 in a*) mgrs=$(quoted_list "${A_MGRS[@]}") ;; b*) mgrs=$(quoted_list "${B_MGRS[@]}") ;; esac
  local dc=dc-a; [[ $1 == b* ]] && dc=dc-b
  cat > "$1.toml" <<TOML
[node]
listen = "$(addr_of "$1")"
data_dir = "$T/data-$1"
[admin]
listen = "${IP[$1]}:${ADMIN[$1]}"
[wire]
secret_file = "$T/secret"
[disk]
durability = "none"
[cluster]
managers = [$mgrs]
gates = [$(quoted_list "${GATES[@]}")]
datacenter = "$dc"
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
gate_heartbeat = "200ms"
[worker]
cores = 1
heartbeat = "200ms"
progress = "200ms"
orphan_grace = "4s"
stop_grace = "2s"
[gate]
datacenters = ["dc-a=$(spaced_list "${A_MGRS[@]}")", "dc-b=$(spaced_list "${B_MGRS[@]}")"]
dc_stale = "1s"
dc_grace = "3s"
poll = "200ms"
cancel_timeout = "5s"
TOML
}
for n in "${names[@]}"; do write_config "$n"; done

start() {  # name: starts that node's daemon in the background (stdout n.out, stderr n.log)
  local role=manager
  case $1 in g*) role=gate ;; ?w*) role=worker ;; esac
  # Started directly (not through a function, which would fork a subshell), and `ip netns exec`
  # execs the daemon: $! is the daemon itself, so SIGKILL / SIGSTOP reach it.
  if [[ -n ${NS[$1]} ]]; then
    ip netns exec "${NS[$1]}" "$HS" "$role" --config "$1.toml" > "$1.out" 2> "$1.log" &
  else
    "$HS" "$role" --config "$1.toml" > "$1.out" 2> "$1.log" &
  fi
  PIDS[$1]=$!
}
admin_status() { curl -s --max-time 2 "http://${IP[$1]}:${ADMIN[$1]}/status"; }
wait_port() {  # host port
  for _ in $(seq 1 400); do (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0; sleep 0.05; done
  return 1
}
start_all() {
  for n in "${names[@]}"; do start "$n"; done
  for n in "${names[@]}"; do wait_port "${IP[$n]}" "${ADMIN[$n]}" || fail "$n admin port"; done
}
start_target() {  # variable-name: starts `hyperscale target` on the hub address, stores its port
  local p; p=$(free_port)
  local host=(); [[ $NETNS == 1 ]] && host=(--host "$HUB")  # the default is 127.0.0.1
  "$HS" --log-level warn target "${host[@]}" --http "$p" > "target-$p.out" 2> "target-$p.log" &
  TPID=$!
  wait_port "$HUB" "$p" || fail "target did not start"
  printf -v "$1" '%s' "$p"
}
stop_target() {  # port: stops the target; SERVED = what it served (it prints its counts on SIGINT)
  kill -INT "$TPID"; wait "$TPID"; TPID=
  SERVED=$(sed -n 's/.*served http_requests=\([0-9]*\).*/\1/p' "target-$1.out")
}
wait_admin() {  # node python-condition-on-j [tries]: polls the node's /status until the condition holds
  local tries=${3:-200}
  for _ in $(seq 1 "$tries"); do
    local s; s=$(admin_status "$1") && [[ $(jget "$s" "bool($2)") == True ]] && return 0
    sleep 0.1
  done
  return 1
}
gate_leader() {  # prints the gate (among the given) that says it leads, if any
  for n in "$@"; do
    local s; s=$(admin_status "$n") || continue
    [[ $(jget "$s" 'j.get("is_leader")') == True ]] && { echo "$n"; return 0; }
  done
  return 1
}
mgr_leader() {  # managers...: prints the one that leads and sees its 2 workers healthy
  for n in "$@"; do
    local s; s=$(admin_status "$n") || continue
    [[ $(jget "$s" 'j.get("is_leader") and j["healthy_worker_count"] == 2') == True ]] && { echo "$n"; return 0; }
  done
  return 1
}
# Every live gate sees both datacenters ready (a leader heard) with 2 healthy workers and 2 free cores.
DC_READY='all(d["state"] == "ready" and d["healthy_worker_count"] == 2 and d["available_cores"] == 2 for d in j["datacenters"]) and len(j["datacenters"]) == 2'
client() {  # subcommand args...: a client command against the gates
  local sub=$1; shift
  "$HS" --log-level error "$sub" --gate "$GLIST" --config g1.toml "$@"
}
job_json() { client status "$1" --json 2> /dev/null; }
wait_job() {  # job python-condition-on-j [tries]: polls the job's view from the gates; prints it
  local tries=${3:-300}
  for _ in $(seq 1 "$tries"); do
    local s; s=$(job_json "$1") && [[ $(jget "$s" "bool($2)") == True ]] && { echo "$s"; return 0; }
    sleep 0.1
  done
  return 1
}
wait_live_on() {  # worker job: polls the worker's /status until it runs (live) an execution of the job
  wait_admin "$1" "any(e['job_id'] == '$2' for e in j['live'])" 300
}
wait_idle() {  # worker: polls its /status until nothing is live and no core is used
  wait_admin "$1" 'len(j["live"]) == 0 and j["used"] == 0' 300
}
cut_dc() {  # a|b: cuts that datacenter off (its link down, or SIGSTOP of its processes on loopback)
  if [[ $NETNS == 1 ]]; then
    local v=$VA; [[ $1 == b ]] && v=$VB
    ip link set "$v" down || fail "ip link set $v down"
  else
    for n in "${names[@]}"; do
      [[ $n == "$1"* && -n ${PIDS[$n]:-} ]] && { kill -STOP "${PIDS[$n]}"; STOPPED[$n]=1; }
    done
  fi
}
