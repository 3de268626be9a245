#!/usr/bin/env bash
# hs-netdelay (tools/netdelay) end to end: `netdelay.sh HS_NETDELAY_EXE`.
# Always: --help exits 0; bad usage exits 2 with a message; without CAP_NET_ADMIN it exits 1 and
# says it needs CAP_NET_ADMIN. As root with `ip netns` and iptables (otherwise exit 77: skipped),
# two namespaces joined by a veth pair; in the first, iptables queues what leaves and what arrives
# by its veth end to NFQUEUE queue 1 with --queue-bypass:
#   - nothing bound to the queue: traffic passes (bypass);
#   - hs-netdelay --delay-ms 50 bound: a TCP connect (SYN out, RST back) takes >= 100 ms; a second
#     hs-netdelay on the same queue exits 1 saying the queue is taken; on SIGTERM it exits 0 with
#     held == accepted_late >= 10 (5 connects, 2 packets each) and no errors;
#   - --max-held 1: a burst of 20 UDP datagrams all arrive, at least one held and one accepted over
#     the limit (nothing dropped);
#   - SIGKILL of hs-netdelay: traffic passes again (fail-open, never black-holed).
# Every wait polls an observed state with a bound; no timing is asserted other than the lower
# bound the delay guarantees.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)  # this directory, wherever the caller is
ND=${1:?usage: netdelay.sh HS_NETDELAY_EXE}
ND=$(cd "$(dirname "$ND")" && pwd)/$(basename "$ND")
T=$(mktemp -d /tmp/hs-netdelay-test.XXXXXX)
N1=hs-nd-$$-1 N2=hs-nd-$$-2 V=hsnd$$
MADE=0
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2> /dev/null; done
  wait 2> /dev/null
  if [[ $MADE == 1 ]]; then
    ip netns del "$N1" 2> /dev/null  # takes the veth pair and the iptables rules with it
    ip netns del "$N2" 2> /dev/null
  fi
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP
fail() {
  echo "FAIL: $*" >&2
  for f in "$T"/*.out "$T"/*.err; do [[ -s $f && $f != */help.out ]] && { echo "----- $f"; tail -n 20 "$f"; } >&2; done
  exit 1
}

echo "== usage"
"$ND" --help > "$T/help.out" 2>&1 || fail "--help exit $?"
grep -q -- '--delay-ms' "$T/help.out" || fail "--help does not describe --delay-ms"
for bad in "" "--queue 1" "--delay-ms 5" "--queue x --delay-ms 5" "--queue 70000 --delay-ms 5" \
  "--queue 1 --delay-ms -1" "--queue 1 --delay-ms 5 --max-held 0" "--queue 1 --delay-ms" "--queue 1 --delay-ms 5 --bogus"; do
  # shellcheck disable=SC2086  # split on purpose
  "$ND" $bad > "$T/bad.out" 2> "$T/bad.err"; rc=$?
  [[ $rc == 2 ]] || fail "'$bad': exit $rc, want 2"
  [[ -s "$T/bad.err" ]] || fail "'$bad': no message"
done
echo "bad usage: exit 2 with a message (9 cases)"
NOCAP=()
if [[ $(id -u) != 0 ]]; then
  NOCAP=("$ND")
elif command -v setpriv > /dev/null; then
  NOCAP=(setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all "$ND")
fi
if [[ ${#NOCAP[@]} -gt 0 ]]; then
  timeout 10 "${NOCAP[@]}" --queue 1 --delay-ms 5 > "$T/nocap.out" 2> "$T/nocap.err"; rc=$?
  [[ $rc == 1 ]] || fail "without CAP_NET_ADMIN: exit $rc, want 1"
  grep -q 'needs CAP_NET_ADMIN' "$T/nocap.err" || fail "without CAP_NET_ADMIN: $(cat "$T/nocap.err")"
  echo "without CAP_NET_ADMIN: $(cat "$T/nocap.err")"
fi

skip() { echo "SKIP the link checks: $*"; exit 77; }
[[ $(id -u) == 0 ]] || skip "not root"
command -v ip > /dev/null || skip "no ip command"
command -v iptables > /dev/null || skip "no iptables command (tools/setup installs it)"
NET=
for k in $(seq 0 49); do
  NET=10.$((200 + ($$ + k) % 50)).$((($$ / 50) % 250))
  ip -o -4 addr show | grep -q " inet $NET\." || break
done
MADE=1
{ ip netns add "$N1" && ip netns add "$N2" && ip link add "$V" type veth peer name "${V}b" &&
  ip link set "$V" netns "$N1" && ip link set "${V}b" netns "$N2" &&
  ip -n "$N1" addr add "$NET.1/24" dev "$V" && ip -n "$N2" addr add "$NET.2/24" dev "${V}b" &&
  ip -n "$N1" link set "$V" up && ip -n "$N2" link set "${V}b" up; } 2> "$T/ns.err" ||
  skip "cannot make namespaces and a veth pair: $(head -1 "$T/ns.err")"
ip netns exec "$N1" iptables -w -A OUTPUT -o "$V" -j NFQUEUE --queue-num 1 --queue-bypass 2> "$T/ipt.err" &&
  ip netns exec "$N1" iptables -w -A INPUT -i "$V" -j NFQUEUE --queue-num 1 --queue-bypass 2>> "$T/ipt.err" ||
  fail "iptables NFQUEUE rules: $(cat "$T/ipt.err")"

rtt() {  # the smallest of 5 TCP connect times from N1 to a closed port of N2, in ms ("error ..." if one fails)
  ip netns exec "$N1" python3 "$HERE/connect_rtt.py" "$NET.2"
}
ge() { python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) else 1)' "$1" "$2" 2> /dev/null; }
start_nd() {  # name args...: starts hs-netdelay in N1, waits until it has bound its queue
  local name=$1; shift
  ip netns exec "$N1" "$ND" "$@" > "$T/$name.out" 2> "$T/$name.err" &
  ND_PID=$!
  PIDS+=("$ND_PID")
  for _ in $(seq 1 200); do
    grep -q 'bound queue' "$T/$name.out" && return 0
    kill -0 "$ND_PID" 2> /dev/null || break
    sleep 0.05
  done
  fail "$name: hs-netdelay did not bind its queue"
}
stop_nd() {  # name: SIGTERM, exit 0; L = its counters line
  kill -TERM "$ND_PID"; wait "$ND_PID"; local rc=$?
  [[ $rc == 0 ]] || fail "$1: exit $rc on SIGTERM"
  L=$(grep '^hs-netdelay: held=' "$T/$1.out") || fail "$1: no counters on SIGTERM"
}

echo "== queue 1, nothing bound: passes (bypass)"
R=$(rtt); [[ $R != error* ]] || fail "no hs-netdelay bound: $R"
echo "round trip without hs-netdelay: $R ms"

echo "== hs-netdelay --delay-ms 50"
start_nd delay --queue 1 --delay-ms 50
R=$(rtt); [[ $R != error* ]] || fail "through hs-netdelay: $R"
echo "round trip through hs-netdelay (50 ms each way): $R ms"
ge "$R" 100 || fail "round trip $R ms, under 2 x 50 ms"
timeout 10 ip netns exec "$N1" "$ND" --queue 1 --delay-ms 5 > "$T/second.out" 2> "$T/second.err"; rc=$?
[[ $rc == 1 ]] || fail "a second hs-netdelay on queue 1: exit $rc, want 1"
grep -q 'another process has this queue bound' "$T/second.err" || fail "second: $(cat "$T/second.err")"
stop_nd delay
echo "counters: $L"
[[ $L =~ held=([0-9]+)\ accepted_late=([0-9]+)\ accepted_over_limit=([0-9]+)\ errors=([0-9]+) ]] || fail "counters: $L"
H=${BASH_REMATCH[1]} LATE=${BASH_REMATCH[2]} OVER=${BASH_REMATCH[3]} ERR=${BASH_REMATCH[4]}
[[ $H -ge 10 && $H == "$LATE" && $OVER == 0 && $ERR == 0 ]] || fail "counters: $L (want held == accepted_late >= 10, 0, 0)"

echo "== --max-held 1: a burst of 20 UDP datagrams, none lost"
ip netns exec "$N2" python3 - "$NET.2" "$T/udp.ready" > "$T/udp.out" 2>&1 <<'PY' &
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 9999))
open(sys.argv[2], "w").close()
s.settimeout(10)
n = 0
try:
    while n < 20:
        s.recv(100)
        n += 1
except socket.timeout:
    pass
print(n)
PY
RX=$!
PIDS+=("$RX")
for _ in $(seq 1 200); do [[ -e "$T/udp.ready" ]] && break; sleep 0.05; done
[[ -e "$T/udp.ready" ]] || fail "the UDP receiver did not start"
start_nd burst --queue 1 --delay-ms 1000 --max-held 1
ip netns exec "$N1" python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(20):
    s.sendto(b"x", (sys.argv[1], 9999))' "$NET.2" || fail "UDP burst not sent"
wait "$RX"
GOT=$(cat "$T/udp.out")
echo "received $GOT of 20 datagrams"
[[ $GOT == 20 ]] || fail "the receiver got $GOT of 20 datagrams"
stop_nd burst
echo "counters: $L"
[[ $L =~ held=([0-9]+)\ accepted_late=([0-9]+)\ accepted_over_limit=([0-9]+)\ errors=([0-9]+) ]] || fail "counters: $L"
H=${BASH_REMATCH[1]} LATE=${BASH_REMATCH[2]} OVER=${BASH_REMATCH[3]} ERR=${BASH_REMATCH[4]}
[[ $H -ge 1 && $OVER -ge 1 && $((H + OVER)) -ge 20 && $H == "$LATE" && $ERR == 0 ]] ||
  fail "counters: $L (want held >= 1, over-limit >= 1, together >= 20, no errors)"

echo "== SIGKILL of hs-netdelay: traffic passes (fail-open)"
start_nd killed --queue 1 --delay-ms 50
kill -9 "$ND_PID"; wait "$ND_PID" 2> /dev/null
R=$(rtt); [[ $R != error* ]] || fail "after SIGKILL of hs-netdelay: $R (black-holed?)"
echo "round trip after SIGKILL of hs-netdelay: $R ms"
echo "all hs-netdelay checks passed"
