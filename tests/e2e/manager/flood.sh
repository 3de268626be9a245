#!/usr/bin/env bash
# Connection flood (issue 20, defect 3): more idle TCP connections to a manager than its inbound
# limit (the default net.max_inbound_conns, 4096), none of them sending a byte, must not lock a real
# client out. Unauthenticated connections only ever hold the bounded pre-auth slots (the oldest is
# closed when a new connection needs one), so `hyperscale status` still gets its answer in < 1 s.
# Also: the daemon accepts net.* keys, and a bad one is an error naming the key.
source "$(dirname "$0")/lib.sh" "$@" m1

FLOOD=${HS_FLOOD_CONNS:-4500}
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[[ $(ulimit -n) -gt $((FLOOD + 200)) ]] || fail "fd limit $(ulimit -n) too low for $FLOOD connections"

echo "== net.* keys are daemon keys: a bad value exits 2 naming the key"
cp m1.toml bad-net.toml
printf '[net]\nmax_inbound_conns = 0\n' >> bad-net.toml
"$HS" manager --config bad-net.toml > bad-net.txt 2>&1; rc=$?
[[ $rc == 2 ]] && grep -q "net.max_inbound_conns" bad-net.txt || { cat bad-net.txt; fail "bad net key exit $rc"; }
HS_NET_PREAUTH_TIMEOUT_MS=1500 "$HS" manager --config m1.toml --print-config > pc.txt || fail "print-config"
grep -q 'max_inbound_conns = 4096' pc.txt && grep -q 'preauth_timeout_ms = 1500.*env HS_NET_PREAUTH_TIMEOUT_MS' pc.txt ||
  { cat pc.txt; fail "print-config net keys"; }

echo "== one manager, leading"
start_all
for _ in $(seq 1 600); do leader_of m1 > /dev/null && break; sleep 0.05; done
leader_of m1 > /dev/null || fail "m1 never led"

status_ms() {  # runs status once; prints "rc elapsed_ms"
  local t0 t1 rc
  t0=$(date +%s%N)
  "$HS" --log-level error status --manager "127.0.0.1:${PORT[m1]}" --config m1.toml --request-timeout 1 \
    > status.txt 2>&1
  rc=$?
  t1=$(date +%s%N)
  echo "$rc $(((t1 - t0) / 1000000))"
}
read -r rc ms < <(status_ms)
echo "status before the flood: exit $rc in ${ms} ms"
[[ $rc == 0 ]] || { cat status.txt; fail "status before the flood exit $rc"; }

echo "== $FLOOD idle connections (no bytes sent), held open"
cat > flood.py <<'PY'
import socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
socks, failed = [], 0
for _ in range(n):
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect((host, port))
        socks.append(s)
    except OSError:
        failed += 1
        s.close()
print(f"open {len(socks)} failed {failed}", flush=True)
time.sleep(600)  # hold them until killed
PY
python3 flood.py 127.0.0.1 "${PORT[m1]}" "$FLOOD" > flood.out 2> flood.err &
FPID=$!
EXTRA_CLEANUP+=("kill -9 $FPID")
for _ in $(seq 1 600); do grep -q '^open' flood.out && break; sleep 0.05; done
grep -q '^open' flood.out || { cat flood.err; fail "flood helper did not finish connecting"; }
read -r _ opened _ failed < flood.out
echo "flood: $opened connected, $failed failed"
[[ $opened -gt 4096 ]] || fail "only $opened flood connections opened (want more than the inbound limit 4096)"

echo "== a real client still gets its status in under 1 s"
read -r rc ms < <(status_ms)
echo "status during the flood: exit $rc in ${ms} ms"
[[ $rc == 0 ]] || { cat status.txt; fail "status during the flood exit $rc"; }
[[ $ms -lt 1000 ]] || fail "status during the flood took ${ms} ms"
kill -0 "$FPID" 2>/dev/null || fail "flood helper died"
curl -s "http://127.0.0.1:${ADMIN[m1]}/metrics" > metrics.txt
grep -E 'hs_net_conn_closed_total\{reason="preauth_evicted(_source)?"\} [1-9]' metrics.txt ||
  { grep hs_net_ metrics.txt; fail "no pre-auth evictions counted"; }
grep -E '^hs_net_preauth_conns ' metrics.txt
echo "PASS"
