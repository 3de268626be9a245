// NetHost on loopback: two processes' worth of hosts on one reactor, each running a cluster::Mux
// with a ping/pong component on the role channel and a datagram component on the SWIM channel.
#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "hyperscale/cluster/mux.hpp"
#include "hyperscale/host/net_host.hpp"
#include "hyperscale/wire/messages.hpp"

using namespace hs;
using namespace hs::host;
using namespace std::chrono_literals;
namespace fb = hs::wire::fb;

static_assert(kDatagramChannel == cluster::kSwim, "the host sends the SWIM channel as UDP datagrams");

namespace {

// "prefix" + std::to_string(n) (GCC 12 -O3 reports a false -Wrestrict on the operator+ form).
std::string cat(std::string_view prefix, std::uint64_t n) {
  std::string s(prefix);
  s += std::to_string(n);
  return s;
}

const char* kSecret = "host-test-secret-0123456789";

wire::Keyring keys(const char* secret = kSecret) { return wire::Keyring{wire::Key::derive(secret).value(), {}}; }

// Role-channel component: answers "ping" with "pong", records what it got, fires timers.
struct PingPong final : node::Node {
  std::vector<std::pair<node::NodeId, std::string>> got;
  std::vector<std::uint64_t> fired;
  node::Context* ctx = nullptr;
  void on_start(node::Context& c) override { ctx = &c; }
  void on_message(node::Context& c, node::NodeId from, std::span<const std::uint8_t> msg) override {
    std::string s(msg.begin(), msg.end());
    got.emplace_back(from, s);
    if (s == "ping") c.send(from, node::Bytes{'p', 'o', 'n', 'g'});
  }
  void on_timer(node::Context&, node::TimerId, std::uint64_t tag) override { fired.push_back(tag); }
};

// SWIM-channel component: records datagrams.
struct Gossip final : node::Node {
  std::vector<std::pair<node::NodeId, std::string>> got;
  void on_start(node::Context&) override {}
  void on_message(node::Context&, node::NodeId from, std::span<const std::uint8_t> msg) override {
    got.emplace_back(from, std::string(msg.begin(), msg.end()));
  }
  void on_timer(node::Context&, node::TimerId, std::uint64_t) override {}
};

struct Proc {
  PingPong role;
  Gossip swim;
  cluster::Mux mux;
  std::unique_ptr<NetHost> host;
  node::NodeId id = 0;
  Proc(runtime::Reactor& r, fb::Role role_kind, const char* secret = kSecret, DurableDisk* disk = nullptr) {
    mux.add(cluster::kSwim, &swim);
    mux.add(cluster::kRole, &role);
    NetHostOptions o;
    o.listen = net::Endpoint{"127.0.0.1", test::free_port()};
    o.role = role_kind;
    o.keys = keys(secret);
    o.transport.sweep_period = 25ms;
    o.seed = 7;
    host = std::make_unique<NetHost>(r, mux, o, disk);
    REQUIRE(host->start().ok());
    id = node_id(o.listen).value();
  }
  cluster::Mux& m() { return mux; }
};

}  // namespace

TEST_CASE("host addressing: node ids are IPv4 << 16 | port, and parse back", "[host]") {
  auto id = parse_node_addr("127.0.0.1:7101");
  REQUIRE(id.ok());
  CHECK(*id == ((std::uint64_t{0x7f000001} << 16) | 7101));
  CHECK(node_addr_string(*id) == "127.0.0.1:7101");
  CHECK(endpoint(*id) == net::Endpoint{"127.0.0.1", 7101});
  CHECK(node_id(net::Endpoint{"10.1.2.3", 9}).value() == ((std::uint64_t{0x0a010203} << 16) | 9));
  CHECK(!parse_node_addr("127.0.0.1").ok());
  CHECK(!parse_node_addr("127.0.0.1:0").ok());
  CHECK(!parse_node_addr("127.0.0.1:70000").ok());
  CHECK(!parse_node_addr("localhost:7101").ok());
  CHECK(!parse_node_addr("0.0.0.0:7101").ok());
  CHECK(parse_listen_addr("0.0.0.0:0").ok());
  CHECK(!parse_listen_addr("x:1").ok());
}

TEST_CASE("RoleMessage role matrix: client<->manager, manager<->manager, manager<->worker, worker<->worker",
          "[host][wire]") {
  using R = fb::Role;
  auto ok = [](R a, R b) { return wire::role_allowed(fb::Body::RoleMessage, a, b); };
  CHECK(ok(R::Client, R::Manager));
  CHECK(ok(R::Manager, R::Client));
  CHECK(ok(R::Manager, R::Manager));
  CHECK(ok(R::Manager, R::Worker));
  CHECK(ok(R::Worker, R::Manager));
  CHECK(ok(R::Worker, R::Worker));
  CHECK(!ok(R::Client, R::Worker));
  CHECK(!ok(R::Worker, R::Client));
  CHECK(!ok(R::Client, R::Client));
  CHECK(ok(R::Gate, R::Manager));  // the gate tier (docs/gates.md)
  CHECK(ok(R::Client, R::Gate));
  CHECK(ok(R::Gate, R::Gate));
  CHECK(!ok(R::Gate, R::Worker));
  CHECK(!ok(R::Unknown, R::Manager));
  CHECK(wire::kMinor == 2);
}

TEST_CASE("NetHost: role messages over TCP and SWIM datagrams over UDP arrive with the sender's id", "[host]") {
  runtime::Reactor r;
  Proc a(r, fb::Role::Manager), b(r, fb::Role::Worker);
  REQUIRE(a.host->run_in(a.m(),
                         [&] {
                           a.mux.context(cluster::kRole).send(b.id, node::Bytes{'p', 'i', 'n', 'g'});
                         })
              .ok());
  REQUIRE(test::run_until(r, [&] { return !a.role.got.empty(); }));
  REQUIRE(b.role.got.size() == 1);
  CHECK(b.role.got[0] == std::make_pair(a.id, std::string("ping")));
  CHECK(a.role.got[0] == std::make_pair(b.id, std::string("pong")));
  CHECK(a.host->stats().sent_tcp == 1);
  CHECK(b.host->stats().sent_tcp == 1);

  REQUIRE(a.host->run_in(a.m(),
                         [&] {
                           a.mux.context(cluster::kSwim).send(b.id, node::Bytes{'p', 'r', 'o', 'b', 'e'});
                         })
              .ok());
  REQUIRE(test::run_until(r, [&] { return !b.swim.got.empty(); }));
  CHECK(b.swim.got[0] == std::make_pair(a.id, std::string("probe")));
  CHECK(a.host->stats().sent_udp == 1);
  CHECK(a.host->stats().sent_tcp == 1);
  CHECK(r.metrics().counter_value("hs_host_messages_sent_total", {{"channel", "udp"}}) == 1);
  CHECK(r.metrics().counter_value("hs_host_messages_received_total") == 3);  // ping, pong, probe

  // The datagram budget: a message of exactly that many bytes (channel byte included) goes;
  // one over the 1400-byte frame limit is refused by the transport, counted and logged (not silent).
  const std::size_t budget = a.host->datagram_budget();
  INFO("datagram budget " << budget);
  CHECK(budget > 1100);
  CHECK(budget < 1400);
  REQUIRE(a.host->run_in(a.m(), [&] { a.mux.context(cluster::kSwim).send(b.id, node::Bytes(budget - 1, 'y')); }).ok());
  REQUIRE(test::run_until(r, [&] { return b.swim.got.size() == 2; }));
  CHECK(b.swim.got[1].second.size() == budget - 1);
  CHECK(a.host->stats().send_errors == 0);
  REQUIRE(a.host->run_in(a.m(), [&] { a.mux.context(cluster::kSwim).send(b.id, node::Bytes(budget + 40, 'x')); }).ok());
  CHECK(a.host->stats().send_errors == 1);
  CHECK(r.metrics().counter_value("hs_host_send_errors_total", {{"reason", "too_large"}}) == 1);
  // The same size over the role channel (TCP) is fine.
  REQUIRE(a.host->run_in(a.m(), [&] { a.mux.context(cluster::kRole).send(b.id, node::Bytes(2000, 'x')); }).ok());
  REQUIRE(test::run_until(r, [&] { return b.role.got.size() == 2; }));
  CHECK(b.role.got[1].second.size() == 2000);
  a.host->close();
  b.host->close();
}

TEST_CASE("NetHost: a peer with the wrong secret is rejected and counted; nothing is delivered", "[host]") {
  runtime::Reactor r;
  Proc good(r, fb::Role::Manager);
  Proc bad(r, fb::Role::Manager, "another-secret-9876543210");
  const auto before = good.host->transport().codec().rejected(wire::Reject::auth_failed);
  REQUIRE(
      bad.host->run_in(bad.m(),
                       [&] {
                         bad.mux.context(cluster::kRole).send(good.id, node::Bytes{'p', 'i', 'n', 'g'});
                       })
          .ok());
  REQUIRE(bad.host->run_in(bad.m(), [&] { bad.mux.context(cluster::kSwim).send(good.id, node::Bytes{'x'}); }).ok());
  REQUIRE(test::run_until(
      r, [&] { return good.host->transport().codec().rejected(wire::Reject::auth_failed) >= before + 2; }));
  test::run_for(r, 50ms);
  CHECK(good.role.got.empty());
  CHECK(good.swim.got.empty());
  CHECK(r.metrics().counter_value("hs_wire_rejected_total", {{"reason", "auth_failed"}}) >= 2);
}

TEST_CASE("NetHost: timers fire once, cancelled timers never; run() after stop is refused", "[host]") {
  runtime::Reactor r;
  Proc a(r, fb::Role::Manager);
  node::TimerId t1 = 0, t2 = 0, t3 = 0;
  REQUIRE(a.host
              ->run_in(a.m(),
                       [&] {
                         auto& c = a.mux.context(cluster::kRole);
                         t1 = c.set_timer(20ms, 1);
                         t2 = c.set_timer(30ms, 2);
                         t3 = c.set_timer(0ms, 3);
                         c.cancel_timer(t2);
                       })
              .ok());
  CHECK(t1 != 0);
  CHECK(t2 != 0);
  CHECK(t3 != 0);
  REQUIRE(test::run_until(r, [&] { return a.role.fired.size() == 2; }));
  test::run_for(r, 60ms);
  CHECK(a.role.fired == std::vector<std::uint64_t>{3, 1});
  CHECK(a.host->stats().live_timers == 0);

  // A node that throws is stopped (fail-stop) and its stop callback runs once.
  int stops = 0;
  a.host->set_stop_callback([&](const Status&) { ++stops; });
  Status st = a.host->run([](node::Context&) { throw std::runtime_error("boom"); });
  CHECK(!st.ok());
  CHECK(stops == 1);
  CHECK(!a.host->running());
  CHECK(a.host->run([](node::Context&) {}).code() == Errc::unavailable);
  CHECK(r.metrics().counter_value("hs_host_node_errors_total") == 1);
  CHECK(r.metrics().counter_value("hs_host_stops_total") == 1);
}

TEST_CASE("NetHost: sync(tag) fires after a put is durable; a disk failure stops the node", "[host]") {
  test::TempDir dir;
  runtime::Reactor r;
  WalDiskOptions o;
  o.dir = dir.path;
  auto disk = WalDisk::open(r, o);
  REQUIRE(disk.ok());
  Proc a(r, fb::Role::Manager, kSecret, disk->get());
  const auto appends0 = r.metrics().counter_value("hs_wal_appends_total");
  node::TimerId sid = 0;
  REQUIRE(a.host
              ->run_in(a.m(),
                       [&] {
                         auto& c = a.mux.context(cluster::kRole);
                         REQUIRE(c.disk().put("job/1", node::Bytes{'x'}).ok());
                         sid = c.sync(42);
                       })
              .ok());
  CHECK(sid != 0);
  CHECK(a.role.fired.empty());
  REQUIRE(test::run_until(r, [&] { return a.role.fired.size() == 1; }));
  CHECK(a.role.fired[0] == 42);
  CHECK(r.metrics().counter_value("hs_wal_appends_total") - appends0 == 1);
  CHECK((*disk)->get("job/1").has_value());
  // A cancelled sync never fires.
  REQUIRE(a.host
              ->run_in(a.m(),
                       [&] {
                         auto& c = a.mux.context(cluster::kRole);
                         REQUIRE(c.disk().put("job/2", node::Bytes{'y'}).ok());
                         c.cancel_timer(c.sync(43));
                         c.sync(44);
                       })
              .ok());
  REQUIRE(test::run_until(r, [&] { return a.role.fired.size() == 2; }));
  test::run_for(r, 30ms);
  CHECK(a.role.fired == std::vector<std::uint64_t>{42, 44});
  a.host->close();
}

TEST_CASE("NetHost: a from_node that is not the sender's address, or empty data, is dropped and counted", "[host]") {
  runtime::Reactor r;
  Proc b(r, fb::Role::Manager);
  // A peer with the right secret whose RoleMessage claims another node id.
  wire::Identity id;
  id.node_id = cat("127.0.0.1:", test::free_port());
  id.role = fb::Role::Worker;
  net::TransportConfig tc;
  tc.enable_tcp_listen = false;
  tc.enable_udp = false;
  net::UvTransport raw(r, tc, id, keys());
  REQUIRE(raw.start().ok());
  auto send = [&](std::uint64_t from, std::vector<std::uint8_t> data) {
    flatbuffers::FlatBufferBuilder fbb;
    fbb.Finish(fb::CreateRoleMessage(fbb, from, fbb.CreateVector(data)));
    REQUIRE(raw.send(endpoint(b.id), fb::Body::RoleMessage, wire::finished(fbb)).ok());
  };
  send(b.id, {cluster::kRole, 'x'});                                      // claims to be b itself
  send(parse_node_addr(id.node_id).value(), {});                          // honest sender, empty data
  send(parse_node_addr(id.node_id).value(), {cluster::kRole, 'o', 'k'});  // honest
  REQUIRE(test::run_until(r, [&] { return b.role.got.size() == 1; }));
  CHECK(b.role.got[0].second == "ok");
  CHECK(r.metrics().counter_value("hs_host_dropped_total", {{"reason", "from_mismatch"}}) == 1);
  CHECK(r.metrics().counter_value("hs_host_dropped_total", {{"reason", "empty"}}) == 1);
  CHECK(b.host->stats().dropped == 2);
  raw.close();
}

TEST_CASE("NetHost: a frame captured on its way to one node and replayed to another is dropped there", "[host]") {
  runtime::Reactor r;
  Proc a(r, fb::Role::Manager), b(r, fb::Role::Worker), c(r, fb::Role::Worker);
  // What a sends b, sealed exactly as NetHost::send seals it (for b's address), once over TCP and
  // once as a SWIM datagram.
  auto sealed_for_b = [&](std::uint8_t channel, wire::Channel ch) {
    flatbuffers::FlatBufferBuilder fbb;
    fbb.Finish(fb::CreateRoleMessage(fbb, a.id, fbb.CreateVector(std::vector<std::uint8_t>{channel, 'g', 'o'})));
    std::vector<std::uint8_t> frame;
    REQUIRE(a.host->transport()
                .codec()
                .seal(fb::Body::RoleMessage, wire::finished(fbb), 0, false, ch, node_addr_string(b.id), frame,
                      wall_time_us() / 1000)
                .ok());
    return frame;
  };
  auto tcp_send = [](node::NodeId to, const std::vector<std::uint8_t>& frame) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(to & 0xffff));
    sa.sin_addr.s_addr = htonl(static_cast<std::uint32_t>(to >> 16));
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0);
    REQUIRE(::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(frame.size()));
    return fd;
  };
  auto udp_send = [](node::NodeId to, const std::vector<std::uint8_t>& frame) {
    int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(to & 0xffff));
    sa.sin_addr.s_addr = htonl(static_cast<std::uint32_t>(to >> 16));
    REQUIRE(::sendto(fd, frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) ==
            static_cast<ssize_t>(frame.size()));
    ::close(fd);
  };
  auto wrong = [&] { return c.host->transport().codec().rejected(wire::Reject::wrong_receiver); };
  const auto before = wrong();

  auto tcp_frame = sealed_for_b(cluster::kRole, wire::Channel::tcp);
  int fd = tcp_send(c.id, tcp_frame);  // replayed to c
  REQUIRE(test::run_until(r, [&] { return wrong() == before + 1; }));
  ::close(fd);
  fd = tcp_send(b.id, tcp_frame);  // the intended receiver
  REQUIRE(test::run_until(r, [&] { return b.role.got.size() == 1; }));
  ::close(fd);
  CHECK(b.role.got[0] == std::make_pair(a.id, std::string{'g', 'o'}));

  auto dgram = sealed_for_b(cluster::kSwim, wire::Channel::udp);
  udp_send(c.id, dgram);
  REQUIRE(test::run_until(r, [&] { return wrong() == before + 2; }));
  udp_send(b.id, dgram);
  REQUIRE(test::run_until(r, [&] { return b.swim.got.size() == 1; }));

  CHECK(c.role.got.empty());
  CHECK(c.swim.got.empty());
  CHECK(wrong() == before + 2);
  CHECK(r.metrics().counter_value("hs_wire_rejected_total", {{"reason", "wrong_receiver"}}) == before + 2);
}

TEST_CASE("NetHost: transport backpressure is counted and logged, and start errors are clear", "[host]") {
  runtime::Reactor r;
  PingPong role;
  cluster::Mux mux;
  mux.add(cluster::kRole, &role);
  NetHostOptions o;
  o.listen = net::Endpoint{"127.0.0.1", test::free_port()};
  o.role = fb::Role::Manager;
  o.keys = keys();
  o.transport.max_conn_write_queue = 64 << 10;  // small per-peer backlog
  NetHost h(r, mux, o);
  REQUIRE(h.start().ok());
  // A peer that is not listening: frames wait in its bounded backlog until it is full.
  const node::NodeId dead = node_id(net::Endpoint{"127.0.0.1", test::free_port()}).value();
  REQUIRE(h.run_in(mux, [&] {
             for (int i = 0; i < 100; ++i) mux.context(cluster::kRole).send(dead, node::Bytes(2000, 'z'));
           }).ok());
  CHECK(h.stats().send_errors > 0);
  CHECK(h.stats().sent_tcp > 0);
  CHECK(r.metrics().counter_value("hs_host_send_errors_total", {{"reason", "backpressure"}}) == h.stats().send_errors);

  // The same port again: the second host cannot bind, and says where.
  PingPong role2;
  NetHost h2(r, role2, o);
  Status st = h2.start();
  CHECK(!st.ok());
  CHECK(st.to_string().find(o.listen.to_string()) != std::string::npos);
  CHECK(!h2.running());
  // Bad options are refused before anything is bound.
  NetHostOptions bad = o;
  bad.listen = net::Endpoint{"0.0.0.0", 7000};
  NetHost h3(r, role2, bad);
  CHECK(h3.start().code() == Errc::invalid_argument);
  bad = o;
  bad.role = fb::Role::Unknown;
  NetHost h4(r, role2, bad);
  CHECK(h4.start().code() == Errc::invalid_argument);
  h.close();
}
