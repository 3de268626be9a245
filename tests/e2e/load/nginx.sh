#!/usr/bin/env bash
# A run against a real nginx on a loopback port: results.json counts equal nginx's access log lines.
# Exits 77 (meson: skipped) only when nginx is not installed.
set -uo pipefail
HS=$(realpath "$1")
. "$(dirname "$0")/lib.sh"
PATH=$PATH:/usr/sbin
command -v nginx >/dev/null || { echo "nginx not installed: skipping"; exit 77; }
P=$(mktemp -d /tmp/hs-load-nginx.XXXXXX)
chmod 755 "$P"
mkdir -p "$P/logs" "$P/tmp" "$P/html"
echo "hello from nginx" > "$P/html/index.html"
PORT=$(free_port SOCK_STREAM)
SPORT=$(free_port SOCK_STREAM)
command -v openssl >/dev/null || fail "openssl (the CLI, installed by tools/setup) is needed for the TLS certificate"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$P/key.pem" -out "$P/cert.pem" -days 1 -subj /CN=localhost \
  >/dev/null 2>&1 || fail "openssl req"
cat > "$P/nginx.conf" <<CONF
worker_processes 1;
pid nginx.pid;
error_log logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log logs/access.log;
  client_body_temp_path tmp/client_body;
  proxy_temp_path tmp/proxy;
  fastcgi_temp_path tmp/fastcgi;
  uwsgi_temp_path tmp/uwsgi;
  scgi_temp_path tmp/scgi;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$PORT;
    root html;
    location / { index index.html; }
  }
  server {
    listen 127.0.0.1:$SPORT ssl;
    ssl_certificate $P/cert.pem;
    ssl_certificate_key $P/key.pem;
    root html;
    location / { index index.html; }
  }
}
CONF
stop() {
  if [[ -s "$P/nginx.pid" ]]; then
    pid=$(cat "$P/nginx.pid"); kill -QUIT "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -TERM "$pid" 2>/dev/null
  fi
  rm -rf "$P"
}
trap stop EXIT
nginx -p "$P/" -e logs/error.log -c "$P/nginx.conf" || fail "nginx did not start"
wait_port "$PORT" || fail "nginx not listening"
cat > "$P/plan.toml" <<TOML
version = 1
[[workflow]]
name = "nginx"
vus = 10
iterations = 2500
duration = "60s"
[[workflow.step]]
name = "index"
url = "http://127.0.0.1:$PORT/index.html"
expect = { status = [200], body_contains = "hello from nginx" }
[[workflow.step]]
name = "missing"
url = "http://127.0.0.1:$PORT/nope"
expect = { status = [404] }

[[workflow]]
name = "tls"
vus = 4
iterations = 300
duration = "60s"
[[workflow.step]]
name = "index"
url = "https://127.0.0.1:$SPORT/index.html"
tls_verify = false                        # self-signed test certificate
expect = { status = [200], body_contains = "hello from nginx" }

[[workflow]]
name = "tls-verify"
vus = 1
iterations = 3
duration = "60s"
[[workflow.step]]
name = "verified"
url = "https://127.0.0.1:$SPORT/"          # verification must reject the self-signed certificate
TOML
timeout 120 "$HS" --log-level warn run "$P/plan.toml" --out "$P/out" --quiet --shards 2 > "$P/run.txt" 2>&1; rc=$?
[[ $rc == 0 ]] || { cat "$P/run.txt"; fail "run exited $rc"; }
executed=$(jq_get "$P/out/results.json" "j['workflows'][0]['executed']")
tls_ok=$(jq_get "$P/out/results.json" "j['workflows'][1]['succeeded']")
tls_rejected=$(jq_get "$P/out/results.json" "j['workflows'][2]['failed_by_reason'].get('tls', 0)")
echo "https: succeeded=$tls_ok (want 300); verification failures=$tls_rejected (want 3)"
[[ "$tls_ok" == 300 ]] || fail "https requests: $tls_ok"
[[ "$tls_rejected" == 3 ]] || fail "certificate verification should fail with reason tls"
ok=$(jq_get "$P/out/results.json" "j['workflows'][0]['succeeded']")
# nginx writes the access log line after the response; give it a moment, then count.
sleep 0.3
lines=$(wc -l < "$P/logs/access.log")
echo "hyperscale executed=$executed succeeded=$ok; nginx access log lines=$lines"
[[ "$executed" == 5000 && "$ok" == 5000 ]] || fail "hyperscale counted $executed/$ok, want 5000"
[[ "$lines" == 5300 ]] || fail "nginx logged $lines requests, want 5300 (5000 http + 300 https)"
[[ $(grep -c '"GET /nope HTTP/1.1" 404' "$P/logs/access.log") == 2500 ]] || fail "404 count"
echo "all checks passed"
