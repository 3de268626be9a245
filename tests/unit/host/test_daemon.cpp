// The daemon wiring example: Config -> HostSettings -> WalDisk + NetHost(Mux) + AdminServer on one
// reactor, the way a manager/worker command puts the pieces together. Plus fail-stop from the disk.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "helpers.hpp"
#include "hyperscale/cluster/mux.hpp"
#include "hyperscale/host/daemon.hpp"
#include "hyperscale/net/config.hpp"

using namespace hs;
using namespace hs::host;
using namespace std::chrono_literals;
namespace fb = hs::wire::fb;

namespace {

// A role component that stores each message durably and answers only after sync.
struct DurableEcho final : node::Node {
  std::map<std::uint64_t, std::pair<node::NodeId, std::string>> waiting;  // sync tag -> reply
  std::vector<std::string> got;
  std::uint64_t next_tag = 1;
  void on_start(node::Context&) override {}
  void on_message(node::Context& c, node::NodeId from, std::span<const std::uint8_t> msg) override {
    std::string s(msg.begin(), msg.end());
    got.push_back(s);
    if (s.rfind("ack:", 0) == 0) return;
    if (!c.disk().put("msg/" + s, msg).ok()) return;
    const std::uint64_t tag = next_tag++;
    waiting[tag] = {from, "ack:" + s};
    c.sync(tag);
  }
  void on_timer(node::Context& c, node::TimerId, std::uint64_t tag) override {
    auto it = waiting.find(tag);
    if (it == waiting.end()) return;
    c.send(it->second.first, node::Bytes(it->second.second.begin(), it->second.second.end()));
    waiting.erase(it);
  }
};

struct Daemon {
  DurableEcho echo;
  cluster::Mux mux;
  std::unique_ptr<WalDisk> disk;
  std::unique_ptr<NetHost> host;
  std::unique_ptr<AdminServer> admin;
  Status stopped;

  Status start(runtime::Reactor& r, const Config& cfg, fb::Role role,
               std::function<std::unique_ptr<wal::WalIo>(runtime::Reactor&)> io = {}) {
    HS_ASSIGN_OR_RETURN(HostSettings s, host_settings(cfg, role));
    s.disk.io_factory = std::move(io);
    HS_ASSIGN_OR_RETURN(disk, WalDisk::open(r, s.disk));
    mux.add(cluster::kRole, &echo);
    host = std::make_unique<NetHost>(r, mux, s.net, disk.get());
    host->set_stop_callback([this](const Status& why) { stopped = why; });  // a daemon exits non-zero here
    HS_TRY(host->start());
    if (s.admin_enabled) {
      admin = std::make_unique<AdminServer>(
          r, s.admin,
          [this] {
            auto st = host->stats();
            return fmt::format(R"({{"node":"{}","running":{},"received":{},"keys":{}}})",
                               node_addr_string(host->self()), host->running(), st.received, disk->stats().keys);
          },
          [this]() -> Status { return host->running() ? ok_status() : host->stop_reason(); });
      HS_TRY(admin->start());
    }
    return ok_status();
  }
};

std::string toml_for(const std::string& dir, std::uint16_t port, const std::string& secret_file) {
  return fmt::format(R"(
[node]
listen = "127.0.0.1:{}"
data_dir = "{}"
[wire]
secret_file = "{}"
[disk]
compact_min_bytes = 65536
)",
                     port, dir, secret_file);
}

}  // namespace

TEST_CASE("daemon wiring: Config -> WalDisk + NetHost + AdminServer; durable echo; /status and /metrics",
          "[host][daemon]") {
  test::TempDir dir;
  const std::string secret = dir.path + "/secret";
  {
    std::ofstream f(secret);
    f << "daemon-wiring-secret-0123456789\n";
  }
  auto schema = common_schema();
  auto c1 = Config::parse(schema, toml_for(dir.path + "/m1", test::free_port(), secret), "m1.toml",
                          {{"HS_ADMIN_LISTEN", "127.0.0.1:0"}});
  REQUIRE(c1.ok());
  auto c2 = Config::parse(schema, toml_for(dir.path + "/w1", test::free_port(), secret), "w1.toml",
                          {{"HS_DISK_DURABILITY", "none"}, {"HS_ADMIN_LISTEN", ""}});
  REQUIRE(c2.ok());
  CHECK(c1->dump().find("admin.listen = \"127.0.0.1:0\"") != std::string::npos);

  runtime::Reactor r;
  Daemon m, w;
  REQUIRE(m.start(r, *c1, fb::Role::Manager).ok());
  REQUIRE(w.start(r, *c2, fb::Role::Worker).ok());
  CHECK(w.admin == nullptr);
  REQUIRE(w.host->run_in(w.mux,
                         [&] {
                           w.mux.context(cluster::kRole).send(m.host->self(), node::Bytes{'h', 'i'});
                         })
              .ok());
  REQUIRE(test::run_until(r, [&] { return !w.echo.got.empty(); }));
  CHECK(w.echo.got[0] == "ack:hi");
  CHECK(m.disk->get("msg/hi").has_value());

  const std::uint16_t admin_port = m.admin->endpoint().port;
  auto status = test::http(r, admin_port, "GET /status HTTP/1.1\r\n\r\n");
  CHECK(status.status() == 200);
  CHECK(status.body() ==
        fmt::format(R"({{"node":"{}","running":true,"received":1,"keys":1}})", node_addr_string(m.host->self())));
  auto metrics = test::http(r, admin_port, "GET /metrics HTTP/1.1\r\n\r\n");
  CHECK(metrics.body().find("hs_host_messages_received_total 2") != std::string::npos);  // one each (shared registry)
  CHECK(metrics.body().find("hs_wal_appends_total") != std::string::npos);
  CHECK(test::http(r, admin_port, "GET /healthz HTTP/1.1\r\n\r\n").status() == 200);

  // Restart of the manager on the same data dir: the disk replays the message.
  m.host->close();
  m.admin.reset();
  REQUIRE(test::run_until(r, [&] { return !m.disk->busy(); }));
  m.host.reset();
  m.disk.reset();
  Daemon m2;
  REQUIRE(m2.start(r, *c1, fb::Role::Manager).ok());
  CHECK(m2.disk->get("msg/hi").has_value());
  // A second daemon on the same data dir is refused (the WAL's LOCK).
  Daemon dup;
  auto st = dup.start(r, *c1, fb::Role::Manager);
  CHECK(st.code() == Errc::unavailable);
  m2.host->close();
  w.host->close();
}

TEST_CASE("daemon wiring: a WAL I/O error stops the node (fail-stop) and /healthz reports it", "[host][daemon]") {
  test::TempDir dir;
  auto env = [&](const char* secret_env) {
    return Config::Env{{"HS_NODE_LISTEN", fmt::format("127.0.0.1:{}", test::free_port())},
                       {"HS_NODE_DATA_DIR", dir.path + "/m"},
                       {"HS_WIRE_SECRET_ENV", secret_env}};
  };
  // The secret comes from an environment variable named by the config: a missing one is a clear error.
  auto c = Config::parse(common_schema(), "", "", env("HOST_TEST_MISSING_SECRET"));
  REQUIRE(c.ok());
  auto settings = host_settings(*c, fb::Role::Manager);
  REQUIRE(!settings.ok());
  CHECK(settings.status().message().find("HOST_TEST_MISSING_SECRET is not set") != std::string::npos);
  ::setenv("HOST_TEST_SECRET", "fail-stop-test-secret-0123456789", 1);
  c = Config::parse(common_schema(), "", "", env("HOST_TEST_SECRET"));
  REQUIRE(c.ok());
  runtime::Reactor r;
  Daemon d;
  REQUIRE(d.start(r, *c, fb::Role::Manager, [](runtime::Reactor& rr) {
             return std::make_unique<test::FailIo>(rr, 0);
           }).ok());
  REQUIRE(d.host
              ->run_in(d.mux,
                       [&] {
                         auto& ctx = d.mux.context(cluster::kRole);
                         REQUIRE(ctx.disk().put("job/1", node::Bytes{'x'}).ok());
                         ctx.sync(99);
                       })
              .ok());
  REQUIRE(test::run_until(r, [&] { return !d.stopped.ok(); }));
  CHECK(!d.host->running());
  CHECK(d.stopped.message().find("disk failed") != std::string::npos);
  CHECK(d.echo.waiting.empty());
  CHECK(r.metrics().counter_value("hs_host_stops_total") == 1);
  CHECK(r.metrics().counter_value("hs_host_disk_errors_total", {{"reason", "wal_io"}}) == 1);
  auto h = test::http(r, d.admin->endpoint().port, "GET /healthz HTTP/1.1\r\n\r\n");
  CHECK(h.status() == 503);
  CHECK(h.body().find("disk failed") != std::string::npos);
  CHECK(d.host->run([](node::Context&) {}).code() == Errc::unavailable);
}

TEST_CASE("daemon wiring: the common schema is valid and documented", "[host][daemon]") {
  REQUIRE(validate_schema(common_schema()).ok());
  const std::string md = schema_markdown(common_schema());
  CHECK(md.find("`HS_NODE_LISTEN`") != std::string::npos);
  CHECK(md.find("(required)") != std::string::npos);
  auto missing = Config::parse(common_schema(), "", "", {});
  REQUIRE(!missing.ok());
  CHECK(missing.status().message().find("required key 'node.listen'") != std::string::npos);
  auto bad = Config::parse(common_schema(), "[node]\nlisten = \"0.0.0.0:1\"\ndata_dir = \"/tmp/x\"\n", "n.toml", {});
  REQUIRE(!bad.ok());
  CHECK(bad.status().message().find("n.toml:2:10: node.listen: address '0.0.0.0:1'") != std::string::npos);
}

TEST_CASE("daemon wiring: docs/host.md carries the current common schema table", "[host][daemon]") {
  const char* path = std::getenv("HOST_DOCS");
  REQUIRE(path != nullptr);
  std::ifstream f(path);
  REQUIRE(f.good());
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string md = schema_markdown(common_schema());
  if (const char* out = std::getenv("HOST_SCHEMA_OUT")) std::ofstream(out) << md;  // to regenerate the docs
  INFO("expected table (regenerate docs/host.md section 6 with it):\n" << md);
  CHECK(ss.str().find(md) != std::string::npos);
}

TEST_CASE("daemon config: every wire.* / net.* transport key is a daemon key, checked by the transport",
          "[host][daemon][config]") {
  ::setenv("HOST_TEST_NET_SECRET", "net-keys-test-secret-0123456789", 1);
  const Config::Env env{{"HS_NODE_LISTEN", "127.0.0.1:7301"},
                        {"HS_NODE_DATA_DIR", "/tmp/hs-net-keys"},
                        {"HS_WIRE_SECRET_ENV", "HOST_TEST_NET_SECRET"}};
  const auto schema = common_schema();
  for (std::string_view k : net::config_keys()) {
    INFO(k);
    CHECK(std::any_of(schema.begin(), schema.end(), [&](const ConfigEntry& e) { return e.key == k; }));
  }
  // File and environment values reach the transport options.
  auto c = Config::parse(schema, "[net]\nmax_inbound_conns = 100\npreauth_timeout_ms = 500\n", "m.toml", [&] {
    auto e = env;
    e["HS_NET_MAX_PREAUTH_CONNS"] = "100";
    e["HS_WIRE_MAX_UDP_DATAGRAM_BYTES"] = "1200";
    return e;
  }());
  REQUIRE(c.ok());
  auto s = host_settings(*c, fb::Role::Manager);
  INFO(s.status().to_string());
  REQUIRE(s.ok());
  CHECK(s->net.transport.max_inbound_conns == 100);
  CHECK(s->net.transport.preauth_timeout == 500ms);
  CHECK(s->net.transport.max_preauth_conns == 100);
  CHECK(s->net.transport.max_preauth_per_source == 64);  // default
  CHECK(s->net.limits.max_udp_datagram == 1200);
  CHECK(c->dump().find("max_inbound_conns = 100") != std::string::npos);  // --print-config
  // A bad value is an error naming the key and its place.
  auto bad = Config::parse(schema, "[net]\nmax_inbound_conns = 0\n", "m.toml", env);
  REQUIRE(!bad.ok());
  CHECK(bad.status().message().find("m.toml:2:") != std::string::npos);
  CHECK(bad.status().message().find("net.max_inbound_conns") != std::string::npos);
  auto bad_env = Config::parse(schema, "", "m.toml", [&] {
    auto e = env;
    e["HS_NET_PREAUTH_TIMEOUT_MS"] = "soon";
    return e;
  }());
  REQUIRE(!bad_env.ok());
  CHECK(bad_env.status().message().find("HS_NET_PREAUTH_TIMEOUT_MS") != std::string::npos);
  // Cross-field rules of net::validate, naming the keys.
  auto cross = Config::parse(schema, "[net]\nmax_preauth_conns = 10\nmax_preauth_per_source = 20\n", "m.toml", env);
  REQUIRE(cross.ok());
  auto cs = host_settings(*cross, fb::Role::Manager);
  REQUIRE(!cs.ok());
  CHECK(cs.status().message().find("net.max_preauth_per_source") != std::string::npos);
  // Listen host and ports come from node.listen: setting them is refused, not silently ignored.
  auto twice = Config::parse(schema, "[net]\ntcp_port = 7000\n", "m.toml", env);
  REQUIRE(!twice.ok());
  CHECK(twice.status().message().find("net.tcp_port") != std::string::npos);
  CHECK(twice.status().message().find("derived from node.listen") != std::string::npos);
}
