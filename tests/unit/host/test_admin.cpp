// AdminServer over a real socket.
#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "hyperscale/host/admin.hpp"

using namespace hs;
using namespace hs::host;
using namespace std::chrono_literals;

namespace {
std::uint64_t rejected(runtime::Reactor& r, const char* why) {
  return r.metrics().counter_value("hs_admin_rejected_total", {{"reason", why}});
}
}  // namespace

TEST_CASE("AdminServer: /metrics, /status, /healthz, 404, 405, 400, 431", "[host][admin]") {
  runtime::Reactor r;
  r.metrics().counter("hs_test_things_total", "things").inc(5);
  bool healthy = true;
  AdminServer admin(
      r, AdminOptions{}, [] { return std::string(R"({"role":"manager","ok":true})"); },
      [&]() -> Status { return healthy ? ok_status() : make_error(Errc::unavailable, "disk failed"); });
  REQUIRE(admin.start().ok());
  const std::uint16_t port = admin.endpoint().port;
  REQUIRE(port != 0);

  auto m = test::http(r, port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(m.status() == 200);
  CHECK(m.body().find("hs_test_things_total 5") != std::string::npos);
  CHECK(m.reply.find("Content-Type: text/plain; version=0.0.4") != std::string::npos);

  auto s = test::http(r, port, "GET /status HTTP/1.1\r\n\r\n");
  CHECK(s.status() == 200);
  CHECK(s.body() == R"({"role":"manager","ok":true})");
  CHECK(s.reply.find("application/json") != std::string::npos);

  auto h = test::http(r, port, "GET /healthz?verbose=1 HTTP/1.0\r\n\r\n");
  CHECK(h.status() == 200);
  CHECK(h.body() == "ok\n");
  healthy = false;
  auto h2 = test::http(r, port, "GET /healthz HTTP/1.1\r\n\r\n");
  CHECK(h2.status() == 503);
  CHECK(h2.body().find("disk failed") != std::string::npos);

  auto hd = test::http(r, port, "HEAD /status HTTP/1.1\r\n\r\n");
  CHECK(hd.status() == 200);
  CHECK(hd.body().empty());

  CHECK(test::http(r, port, "GET /nope HTTP/1.1\r\n\r\n").status() == 404);
  CHECK(test::http(r, port, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").status() == 405);
  CHECK(test::http(r, port, "GARBAGE\r\n\r\n").status() == 400);
  CHECK(test::http(r, port, "GET /metrics HTTP/9.9\r\n\r\n").status() == 400);
  CHECK(test::http(r, port, "GET  /metrics HTTP/1.1\r\n\r\n").status() == 400);
  CHECK(rejected(r, "malformed") == 3);
  CHECK(rejected(r, "method") == 1);

  // A request head past the limit: 431 without waiting for its end.
  auto big = test::http(r, port, "GET /metrics HTTP/1.1\r\nX: " + std::string(9000, 'a'));
  CHECK(big.status() == 431);
  CHECK(rejected(r, "too_large") == 1);
  CHECK(r.metrics().counter_value("hs_admin_requests_total", {{"path", "metrics"}}) == 1);
  CHECK(r.metrics().counter_value("hs_admin_requests_total", {{"path", "other"}}) == 1);
  REQUIRE(test::run_until(r, [&] { return admin.connections() == 0; }));
  bool closed = false;
  admin.close([&] { closed = true; });
  REQUIRE(test::run_until(r, [&] { return closed; }));
}

TEST_CASE("AdminServer: idle connections time out; connections are bounded", "[host][admin]") {
  runtime::Reactor r;
  AdminOptions o;
  o.max_connections = 2;
  o.idle_timeout = 150ms;
  o.sweep_period = 20ms;
  AdminServer admin(r, o, [] { return std::string("{}"); });
  REQUIRE(admin.start().ok());
  const std::uint16_t port = admin.endpoint().port;

  test::HttpClient c1(port), c2(port);
  REQUIRE(c1.send("GET /sta"));  // incomplete
  REQUIRE(test::run_until(r, [&] { return admin.connections() == 2; }));
  test::HttpClient c3(port);  // over the bound: accepted and closed at once
  REQUIRE(test::run_until(r, [&] { return c3.poll(); }));
  CHECK(c3.reply.empty());
  CHECK(rejected(r, "max_connections") == 1);
  // The idle ones are closed after the timeout.
  REQUIRE(test::run_until(
      r, [&] { return c1.poll() && c2.poll(); }, 3000ms));
  CHECK(rejected(r, "idle_timeout") == 2);
  CHECK(admin.connections() == 0);
  // And the server still answers.
  CHECK(test::http(r, port, "GET /healthz HTTP/1.1\r\n\r\n").status() == 200);
}
