// Transport tests over real loopback sockets (one reactor, driven by the test thread), plus the
// in-process transport on a two-shard ShardSet.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <optional>
#include <thread>

#include "hyperscale/base/log.hpp"
#include "hyperscale/net/config.hpp"
#include "hyperscale/net/inproc_transport.hpp"
#include "hyperscale/net/uv_transport.hpp"
#include "hyperscale/runtime/log_capture.hpp"
#include "hyperscale/runtime/shard_set.hpp"

using namespace hs;
using namespace hs::net;
using namespace std::chrono_literals;
namespace fb = hs::wire::fb;

namespace {

const char* kSecret = "loopback-test-secret-0123";

wire::Keyring keys(const char* secret = kSecret) { return wire::Keyring{wire::Key::derive(secret).value(), {}}; }

wire::Identity ident(std::string node, fb::Role role) {
  wire::Identity i;
  i.node_id = std::move(node);
  i.role = role;
  return i;
}

TransportConfig fast_config() {
  TransportConfig c;
  c.frame_deadline = 300ms;
  c.sweep_period = 25ms;
  c.backoff_initial = 50ms;
  c.backoff_max = 400ms;
  c.connect_timeout = 1s;
  return c;
}

bool run_until(runtime::Reactor& r, const std::function<bool()>& pred, Duration timeout = 5s) {
  r.run_nowait();
  auto end = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) return false;
    uv_run(r.loop(), UV_RUN_ONCE);
  }
  return true;
}

std::vector<std::uint8_t> ping(std::uint64_t nonce) {
  flatbuffers::FlatBufferBuilder b;
  b.Finish(fb::CreatePing(b, nonce));
  auto s = wire::finished(b);
  return {s.begin(), s.end()};
}

// A raw blocking client socket for sending hand-made bytes.
// A loopback port with nothing listening (bound once, then closed).
Endpoint dead_endpoint() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0);
  socklen_t len = sizeof(sa);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  ::close(fd);
  return Endpoint{"127.0.0.1", ntohs(sa.sin_port)};
}

struct Raw {
  int fd = -1;
  // `from`: the local (source) IPv4 address to bind, e.g. another loopback address; empty: any.
  explicit Raw(const Endpoint& to, const char* from = nullptr) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (from != nullptr) {
      sockaddr_in local{};
      local.sin_family = AF_INET;
      inet_pton(AF_INET, from, &local.sin_addr);
      REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) == 0);
    }
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(to.port);
    inet_pton(AF_INET, to.host.c_str(), &sa.sin_addr);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0);
  }
  ~Raw() {
    if (fd >= 0) ::close(fd);
  }
  void write(std::span<const std::uint8_t> b) {
    REQUIRE(::send(fd, b.data(), b.size(), MSG_NOSIGNAL) == (ssize_t)b.size());
  }
  // True once the server closed its end (recv returns 0 or a reset).
  bool closed_by_peer() {
    std::uint8_t buf[4096];
    for (;;) {
      ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;
    }
  }
};

struct Fixture {
  runtime::Reactor r;
  UvTransport server{r, fast_config(), ident("mgr-1", fb::Role::Manager), keys()};
  UvTransport client{r,
                     [] {
                       auto c = fast_config();
                       c.enable_tcp_listen = false;
                       return c;
                     }(),
                     ident("gate-1", fb::Role::Gate), keys()};
  int answered = 0;
  Fixture() {
    REQUIRE(server.start().ok());
    REQUIRE(client.start().ok());
    server.on(fb::Body::Ping, [this](const Inbound& in, const Responder& resp) {
      auto* p = wire::body_as<fb::Ping>(in.body);
      flatbuffers::FlatBufferBuilder b;
      b.Finish(fb::CreatePong(b, p->nonce()));
      REQUIRE(resp.reply(fb::Body::Pong, wire::finished(b)).ok());
      ++answered;
    });
  }
  std::uint64_t rejected(wire::Reject why) { return server.codec().rejected(why); }
  // A well-behaved client on its own connection still gets answers.
  void good_client_answered(std::uint64_t nonce) {
    bool done = false;
    std::uint64_t got = 0;
    auto body = ping(nonce);
    REQUIRE(client
                .request(server.tcp_endpoint(), fb::Body::Ping, body, 2s,
                         [&](Result<wire::Decoded> r) {
                           REQUIRE(r.ok());
                           REQUIRE(r->type == fb::Body::Pong);
                           got = wire::body_as<fb::Pong>(r->body)->nonce();
                           done = true;
                         })
                .ok());
    REQUIRE(run_until(r, [&] { return done; }));
    CHECK(got == nonce);
  }
  // Seals a frame the way a (mis)configured peer would; for the server unless `receiver` is given.
  std::vector<std::uint8_t> frame(const wire::Identity& as, const char* secret, fb::Body type,
                                  std::span<const std::uint8_t> body, std::int64_t ts_ms = 0,
                                  std::string receiver = "mgr-1") {
    metrics::Registry reg;
    wire::FrameCodec c(as, keys(secret), wire::Limits{}, reg);
    std::vector<std::uint8_t> out;
    REQUIRE(c.seal_raw(type, body, 77, false, wire::Channel::tcp, receiver, out, ts_ms ? ts_ms : wall_time_us() / 1000,
                       1, as)
                .ok());
    return out;
  }
};

}  // namespace

TEST_CASE("Loopback request/response and one-way sends", "[net]") {
  Fixture f;
  f.good_client_answered(1);
  int oneway = 0;
  f.server.on(fb::Body::Pong, [&](const Inbound& in, const Responder& resp) {
    CHECK(!in.expects_reply);
    CHECK(!resp.can_reply());
    CHECK(in.sender_id == "gate-1");
    ++oneway;
  });
  flatbuffers::FlatBufferBuilder b;
  b.Finish(fb::CreatePong(b, 1));
  for (int i = 0; i < 10; ++i) REQUIRE(f.client.send(f.server.tcp_endpoint(), fb::Body::Pong, wire::finished(b)).ok());
  REQUIRE(run_until(f.r, [&] { return oneway == 10; }));
  // A request for a type with no handler gets an ErrorReply (not_found), not a timeout.
  bool got_error = false;
  flatbuffers::FlatBufferBuilder e;
  e.Finish(fb::CreateErrorReplyDirect(e, 0, "a request of a type the server does not handle"));
  REQUIRE(f.client
              .request(f.server.tcp_endpoint(), fb::Body::ErrorReply, wire::finished(e), 2s,
                       [&](Result<wire::Decoded> r) {
                         REQUIRE(r.ok());
                         REQUIRE(r->type == fb::Body::ErrorReply);
                         got_error = wire::body_as<fb::ErrorReply>(r->body)->code() ==
                                     static_cast<std::uint16_t>(Errc::not_found);
                       })
              .ok());
  REQUIRE(run_until(f.r, [&] { return got_error; }));
}

TEST_CASE("Bad inputs on TCP: dropped, counted, connection closed, others unaffected", "[net]") {
  Fixture f;
  f.good_client_answered(1);
  auto body = ping(5);
  auto good_id = ident("gate-9", fb::Role::Gate);
  using wire::Reject;

  auto expect_rejected = [&](Raw& raw, Reject why, std::uint64_t before) {
    REQUIRE(run_until(f.r, [&] { return f.rejected(why) > before; }));
    CHECK(f.rejected(why) == before + 1);
    REQUIRE(run_until(
        f.r, [&] { return raw.closed_by_peer(); }, 2s));
    f.good_client_answered(before + 100);
  };

  SECTION("truncated frame (peer ends mid-frame)") {
    auto fr = f.frame(good_id, kSecret, fb::Body::Ping, body);
    Raw raw(f.server.tcp_endpoint());
    auto before = f.rejected(Reject::truncated);
    raw.write(std::span(fr).first(fr.size() - 5));
    ::shutdown(raw.fd, SHUT_WR);
    expect_rejected(raw, Reject::truncated, before);
  }
  SECTION("wrong magic") {
    auto fr = f.frame(good_id, kSecret, fb::Body::Ping, body);
    fr[1] = 'X';
    Raw raw(f.server.tcp_endpoint());
    auto before = f.rejected(Reject::bad_magic);
    raw.write(fr);
    expect_rejected(raw, Reject::bad_magic, before);
  }
  SECTION("length above the limit: refused from the header, nothing allocated, nothing more read") {
    wire::FrameHeader h;
    h.type = static_cast<std::uint16_t>(fb::Body::Ping);
    h.length = 0xfffff000u;  // ~4 GiB
    std::uint8_t hdr[wire::kHeaderSize];
    wire::write_header(h, hdr);
    Raw raw(f.server.tcp_endpoint());
    auto before = f.rejected(Reject::oversize);
    raw.write(std::span(hdr, wire::kHeaderSize));  // the body is never sent
    expect_rejected(raw, Reject::oversize, before);
    // Only the good client's small frames were ever given a buffer.
    CHECK(f.server.stats().largest_frame_buffer < 1024);
  }
  SECTION("flipped bit in the ciphertext") {
    auto fr = f.frame(good_id, kSecret, fb::Body::Ping, body);
    fr[wire::kHeaderSize + 10] ^= 0x04;
    Raw raw(f.server.tcp_endpoint());
    auto before = f.rejected(Reject::auth_failed);
    raw.write(fr);
    expect_rejected(raw, Reject::auth_failed, before);
  }
  SECTION("wrong key") {
    auto fr = f.frame(good_id, "some-other-cluster-secret", fb::Body::Ping, body);
    Raw raw(f.server.tcp_endpoint());
    auto before = f.rejected(Reject::auth_failed);
    raw.write(fr);
    expect_rejected(raw, Reject::auth_failed, before);
  }
  SECTION("replayed frame on a second connection") {
    auto fr = f.frame(good_id, kSecret, fb::Body::Ping, body);
    Raw first(f.server.tcp_endpoint());
    int answered = f.answered;
    first.write(fr);
    REQUIRE(run_until(f.r, [&] { return f.answered == answered + 1; }));
    Raw second(f.server.tcp_endpoint());
    auto before = f.rejected(Reject::replay);
    second.write(fr);
    expect_rejected(second, Reject::replay, before);
    CHECK(f.answered == answered + 2);  // only the original and the good client's request
  }
  SECTION("a frame sealed for another node (captured and replayed here), or for no node") {
    auto fr = f.frame(good_id, kSecret, fb::Body::Ping, body, 0, "mgr-2");
    Raw raw(f.server.tcp_endpoint());
    auto before = f.rejected(Reject::wrong_receiver);
    int answered = f.answered;
    raw.write(fr);
    expect_rejected(raw, Reject::wrong_receiver, before);
    CHECK(f.answered == answered + 1);  // only the good client's request reached the handler
    auto none = f.frame(good_id, kSecret, fb::Body::Ping, body, 0, "");
    Raw raw2(f.server.tcp_endpoint());
    raw2.write(none);
    expect_rejected(raw2, Reject::wrong_receiver, before + 1);
    // Nothing was recorded by the replay guard: the same sender and sequence, sealed for the server's
    // address (what a peer dialling it uses), is accepted.
    auto mine = f.frame(good_id, kSecret, fb::Body::Ping, body, 0, f.server.tcp_endpoint().to_string());
    Raw raw3(f.server.tcp_endpoint());
    answered = f.answered;
    raw3.write(mine);
    REQUIRE(run_until(f.r, [&] { return f.answered == answered + 1; }));
  }
  SECTION("wrong cluster id") {
    auto id = good_id;
    id.cluster_id = "someone-else";
    auto fr = f.frame(id, kSecret, fb::Body::Ping, body);
    Raw raw(f.server.tcp_endpoint());
    auto before = f.rejected(Reject::wrong_cluster);
    raw.write(fr);
    expect_rejected(raw, Reject::wrong_cluster, before);
  }
  SECTION("role not allowed for the message (role traffic from a sender without a role)") {
    flatbuffers::FlatBufferBuilder b;
    b.Finish(fb::CreateRoleMessage(b, 1, b.CreateVector(std::vector<std::uint8_t>{3, 1})));
    auto fr = f.frame(ident("anon-9", fb::Role::Unknown), kSecret, fb::Body::RoleMessage, wire::finished(b));
    Raw raw(f.server.tcp_endpoint());
    auto before = f.rejected(Reject::role_not_allowed);
    raw.write(fr);
    expect_rejected(raw, Reject::role_not_allowed, before);
  }
  SECTION("payload that fails the verifier") {
    std::vector<std::uint8_t> junk = {0x10, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8};
    auto fr = f.frame(good_id, kSecret, fb::Body::Ping, junk);
    Raw raw(f.server.tcp_endpoint());
    auto before = f.rejected(Reject::verify_failed);
    raw.write(fr);
    expect_rejected(raw, Reject::verify_failed, before);
  }
  SECTION("half a frame, then the peer stalls: closed after the frame deadline") {
    auto fr = f.frame(good_id, kSecret, fb::Body::Ping, body);
    Raw raw(f.server.tcp_endpoint());
    auto before = f.rejected(Reject::stalled);
    raw.write(std::span(fr).first(fr.size() / 2));
    auto t0 = std::chrono::steady_clock::now();
    // The good client keeps being served while the stalled connection waits for its deadline.
    f.good_client_answered(500);
    expect_rejected(raw, Reject::stalled, before);
    CHECK(std::chrono::steady_clock::now() - t0 >= 290ms);
  }
  CHECK(f.server.stats().inbound_conns >= 1);  // the good client's connection survived
}

TEST_CASE("UDP datagrams: delivered, and garbage is dropped and counted without side effects", "[net]") {
  Fixture f;
  int got = 0;
  int replies = 0;
  f.server.on(fb::Body::Pong, [&](const Inbound& in, const Responder& resp) {
    CHECK(wire::body_as<fb::Pong>(in.body)->nonce() == 7);
    CHECK(resp.can_reply());
    ++got;
    // The reply datagram is sealed for the sender's id ("gate-1"), and the sender accepts it.
    flatbuffers::FlatBufferBuilder ack;
    ack.Finish(fb::CreatePong(ack, 8));
    CHECK(resp.reply(fb::Body::Pong, wire::finished(ack)).ok());
  });
  f.client.on(fb::Body::Pong, [&](const Inbound& in, const Responder&) {
    CHECK(wire::body_as<fb::Pong>(in.body)->nonce() == 8);
    CHECK(in.sender_id == "mgr-1");
    ++replies;
  });
  flatbuffers::FlatBufferBuilder b;
  b.Finish(fb::CreatePong(b, 7));
  REQUIRE(f.client.send_datagram(f.server.udp_endpoint(), fb::Body::Pong, wire::finished(b)).ok());
  REQUIRE(run_until(f.r, [&] { return got == 1 && replies == 1; }));
  // Too large for a datagram: refused at the sender.
  std::vector<std::uint8_t> big(2000, 1);
  flatbuffers::FlatBufferBuilder b2;
  b2.Finish(fb::CreatePongDirect(b2, 7, &big));
  CHECK(f.client.send_datagram(f.server.udp_endpoint(), fb::Body::Pong, wire::finished(b2)).code() ==
        Errc::invalid_argument);
  // Garbage datagram.
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(f.server.udp_endpoint().port);
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  std::uint8_t junk[100] = {'H', 'S', 'W', '2'};
  auto before = f.rejected(wire::Reject::bad_magic);
  REQUIRE(::sendto(fd, junk, sizeof(junk), 0, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == sizeof(junk));
  ::close(fd);
  REQUIRE(run_until(f.r, [&] { return f.rejected(wire::Reject::bad_magic) == before + 1; }));
  REQUIRE(f.client.send_datagram(f.server.udp_endpoint(), fb::Body::Pong, wire::finished(b)).ok());
  REQUIRE(run_until(f.r, [&] { return got == 2; }));
}

TEST_CASE("Pool: 1000 concurrent requests to one peer never exceed the per-peer limit", "[net][pool]") {
  Fixture f;
  std::size_t max_inbound = 0;
  f.server.on(fb::Body::Ping, [&](const Inbound& in, const Responder& resp) {
    max_inbound = std::max(max_inbound, f.server.stats().inbound_conns);
    flatbuffers::FlatBufferBuilder b;
    b.Finish(fb::CreatePong(b, wire::body_as<fb::Ping>(in.body)->nonce()));
    REQUIRE(resp.reply(fb::Body::Pong, wire::finished(b)).ok());
  });
  int ok = 0, failed = 0;
  for (int i = 0; i < 1000; ++i) {
    auto body = ping(static_cast<std::uint64_t>(i));
    REQUIRE(f.client
                .request(f.server.tcp_endpoint(), fb::Body::Ping, body, 10s,
                         [&, i](Result<wire::Decoded> r) {
                           if (r.ok() && wire::body_as<fb::Pong>(r->body)->nonce() == static_cast<std::uint64_t>(i))
                             ++ok;
                           else
                             ++failed;
                         })
                .ok());
    CHECK(f.client.peer_conns(f.server.tcp_endpoint()) <= 4);
  }
  REQUIRE(run_until(
      f.r, [&] { return ok + failed == 1000; }, 30s));
  CHECK(ok == 1000);
  CHECK(f.client.stats().outbound_conns_max <= 4);
  CHECK(f.client.stats().outbound_conns_max >= 2);  // the pool did spread the load
  CHECK(max_inbound <= 4);
  CHECK(f.client.stats().pending_requests == 0);
}

TEST_CASE("Pool: the total limit holds across peers and every request still completes", "[net][pool]") {
  runtime::Reactor r;
  std::vector<std::unique_ptr<UvTransport>> servers;
  for (int i = 0; i < 3; ++i) {
    servers.push_back(
        std::make_unique<UvTransport>(r, fast_config(), ident("mgr-" + std::to_string(i), fb::Role::Manager), keys()));
    REQUIRE(servers.back()->start().ok());
    auto* s = servers.back().get();
    s->on(fb::Body::Ping, [](const Inbound& in, const Responder& resp) {
      flatbuffers::FlatBufferBuilder b;
      b.Finish(fb::CreatePong(b, wire::body_as<fb::Ping>(in.body)->nonce()));
      REQUIRE(resp.reply(fb::Body::Pong, wire::finished(b)).ok());
    });
  }
  auto cfg = fast_config();
  cfg.enable_tcp_listen = false;
  cfg.max_conns_total = 5;
  UvTransport client(r, cfg, ident("gate-1", fb::Role::Gate), keys());
  REQUIRE(client.start().ok());
  int ok = 0, failed = 0;
  for (int round = 0; round < 300; ++round) {
    for (auto& s : servers) {
      REQUIRE(client
                  .request(s->tcp_endpoint(), fb::Body::Ping, ping(1), 10s,
                           [&](Result<wire::Decoded> res) { res.ok() ? ++ok : ++failed; })
                  .ok());
      CHECK(client.stats().outbound_conns <= 5);
    }
  }
  REQUIRE(run_until(
      r,
      [&] {
        CHECK(client.stats().outbound_conns <= 5);
        return ok + failed == 900;
      },
      30s));
  CHECK(ok == 900);
  CHECK(client.stats().outbound_conns_max <= 5);
}

TEST_CASE("Pool: a dead peer is retried with backoff; its requests time out instead of hanging", "[net][pool]") {
  runtime::Reactor r;
  // A port with nothing listening.
  const Endpoint dead = dead_endpoint();

  auto cfg = fast_config();
  cfg.enable_tcp_listen = false;
  UvTransport client(r, cfg, ident("gate-1", fb::Role::Gate), keys());
  REQUIRE(client.start().ok());
  int timeouts = 0, other = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 20; ++i)
    REQUIRE(client
                .request(dead, fb::Body::Ping, ping(1), 1500ms,
                         [&](Result<wire::Decoded> res) {
                           if (!res.ok() && res.status().code() == Errc::timeout)
                             ++timeouts;
                           else
                             ++other;
                         })
                .ok());
  REQUIRE(run_until(
      r, [&] { return timeouts + other == 20; }, 10s));
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK(timeouts == 20);
  CHECK(took >= 1400ms);
  CHECK(took < 5s);  // not a hang (generous: the machine is shared)
  auto st = client.stats();
  // Retried, but with backoff (50 ms doubling to 400 ms, jittered): a handful of attempts, not hundreds.
  CHECK(st.connect_attempts >= 3);
  CHECK(st.connect_attempts <= 15);
  CHECK(st.connect_failures + 1 >= st.connect_attempts);  // the latest attempt may still be in flight
  CHECK(st.connect_failures <= st.connect_attempts);
  CHECK(r.metrics().counter_value("hs_net_request_timeouts_total") == 20);
}

TEST_CASE("Pool: a full write queue is backpressure to the caller", "[net][pool]") {
  runtime::Reactor r;
  auto cfg = fast_config();
  cfg.enable_tcp_listen = false;
  cfg.max_conn_write_queue = 4096;
  UvTransport client(r, cfg, ident("gate-1", fb::Role::Gate), keys());
  REQUIRE(client.start().ok());
  Endpoint nowhere{"127.0.0.1", 9};  // discard port: refused on loopback
  int refused = 0;
  for (int i = 0; i < 100; ++i) {
    Status st = client.send(nowhere, fb::Body::Ping, ping(1));
    if (st.code() == Errc::backpressure) ++refused;
  }
  CHECK(refused > 50);
  CHECK(client.stats().queued_bytes <= 4096);
  CHECK(r.metrics().counter_value("hs_net_backpressure_total") == static_cast<std::uint64_t>(refused));
}

TEST_CASE("Key rotation over TCP: previous key accepted until removed, then rejected and counted", "[net]") {
  runtime::Reactor r;
  auto oldk = wire::Key::derive("old-cluster-secret-0001").value();
  auto newk = wire::Key::derive("new-cluster-secret-0002").value();
  UvTransport server(r, fast_config(), ident("mgr-1", fb::Role::Manager), wire::Keyring{newk, oldk});
  auto cc = fast_config();
  cc.enable_tcp_listen = false;
  // Rotation in two steps: every node first accepts the new key (current=old, previous=new), then
  // switches (current=new, previous=old), then drops the old one. old_client is a node in step one.
  UvTransport old_client(r, cc, ident("gate-old", fb::Role::Gate), wire::Keyring{oldk, newk});
  UvTransport new_client(r, cc, ident("gate-new", fb::Role::Gate), wire::Keyring{newk, {}});
  REQUIRE(server.start().ok());
  REQUIRE(old_client.start().ok());
  REQUIRE(new_client.start().ok());
  server.on(fb::Body::Ping, [](const Inbound&, const Responder& resp) {
    flatbuffers::FlatBufferBuilder b;
    b.Finish(fb::CreatePong(b, 1));
    REQUIRE(resp.reply(fb::Body::Pong, wire::finished(b)).ok());
  });
  auto call = [&](UvTransport& c) {
    std::optional<Status> out;
    REQUIRE(c.request(server.tcp_endpoint(), fb::Body::Ping, ping(1), 2s, [&](Result<wire::Decoded> res) {
               out = res.status();
             }).ok());
    REQUIRE(run_until(r, [&] { return out.has_value(); }));
    return *out;
  };
  CHECK(call(old_client).ok());
  CHECK(call(new_client).ok());
  // The server opened the old client's request with its previous key, the client the reply with its own.
  CHECK(r.metrics().counter_value("hs_wire_previous_key_used_total") == 2);
  server.codec().drop_previous_key();
  Status st = call(old_client);
  CHECK(st.code() == Errc::unavailable);  // the server closed the connection carrying it
  CHECK(server.codec().rejected(wire::Reject::auth_failed) == 1);
  CHECK(call(new_client).ok());
}

TEST_CASE("Idle connections are closed", "[net][pool]") {
  runtime::Reactor r;
  auto sc = fast_config();
  sc.idle_timeout = 200ms;
  UvTransport server(r, sc, ident("mgr-1", fb::Role::Manager), keys());
  UvTransport client(r, sc, ident("gate-1", fb::Role::Gate), keys());
  REQUIRE(server.start().ok());
  REQUIRE(client.start().ok());
  bool done = false;
  server.on(fb::Body::Ping, [](const Inbound&, const Responder& resp) {
    flatbuffers::FlatBufferBuilder b;
    b.Finish(fb::CreatePong(b, 1));
    REQUIRE(resp.reply(fb::Body::Pong, wire::finished(b)).ok());
  });
  REQUIRE(
      client.request(server.tcp_endpoint(), fb::Body::Ping, ping(1), 2s, [&](Result<wire::Decoded>) { done = true; })
          .ok());
  REQUIRE(run_until(r, [&] { return done; }));
  CHECK(client.stats().outbound_conns == 1);
  REQUIRE(run_until(
      r, [&] { return client.stats().outbound_conns == 0 && server.stats().inbound_conns == 0; }, 3s));
}

TEST_CASE("In-process transport between shards: request/reply, role check, timeout", "[net][inproc]") {
  runtime::ShardSetOptions o;
  o.shards = 2;
  o.pin = false;
  o.shutdown_bound = 2s;
  runtime::ShardSet set(o);
  InprocNetwork net(2);
  std::vector<std::unique_ptr<InprocTransport>> ts(2);
  std::atomic<int> pongs{0}, timeouts{0}, rejected{0};
  REQUIRE(set.start([&](runtime::Reactor& r) {
               const int i = r.shard_id();
               ts[static_cast<std::size_t>(i)] = std::make_unique<InprocTransport>(
                   r, net, ident(i == 0 ? "wrk-0" : "gate-1", i == 0 ? fb::Role::Worker : fb::Role::Gate));
               if (i == 0) {
                 ts[0]->on(fb::Body::Ping, [](const Inbound& in, const Responder& resp) {
                   flatbuffers::FlatBufferBuilder b;
                   b.Finish(fb::CreatePong(b, wire::body_as<fb::Ping>(in.body)->nonce()));
                   Status st = resp.reply(fb::Body::Pong, wire::finished(b));
                   if (!st.ok()) log::error("test", "reply_failed", "error={}", st.to_string());
                 });
               }
             })
              .ok());
  REQUIRE(set.post(1,
                   [&](runtime::Reactor& r) {
                     auto& t = *ts[1];
                     for (int i = 0; i < 100; ++i) {
                       Status st =
                           t.request(InprocNetwork::endpoint(0), fb::Body::Ping, ping(static_cast<std::uint64_t>(i)),
                                     2s, [&, i](Result<wire::Decoded> res) {
                                       if (res.ok() &&
                                           wire::body_as<fb::Pong>(res->body)->nonce() == static_cast<std::uint64_t>(i))
                                         ++pongs;
                                     });
                       if (!st.ok()) log::error("test", "request_failed", "error={}", st.to_string());
                     }
                     // A gate sends no role traffic to a worker: dropped and counted at the receiver, so this times
                     // out.
                     flatbuffers::FlatBufferBuilder b;
                     b.Finish(fb::CreateRoleMessage(b, 1, b.CreateVector(std::vector<std::uint8_t>{3, 1})));
                     Status st = t.request(InprocNetwork::endpoint(0), fb::Body::RoleMessage, wire::finished(b), 200ms,
                                           [&](Result<wire::Decoded> res) {
                                             if (!res.ok() && res.status().code() == Errc::timeout) ++timeouts;
                                           });
                     if (!st.ok()) log::error("test", "request_failed", "error={}", st.to_string());
                     (void)r;
                   })
              .ok());
  auto end = std::chrono::steady_clock::now() + 5s;
  while ((pongs < 100 || timeouts < 1) && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(5ms);
  REQUIRE(set.post(0,
                   [&](runtime::Reactor& r) {
                     rejected = static_cast<int>(
                         r.metrics().counter_value("hs_wire_rejected_total", {{"reason", "role_not_allowed"}}));
                   })
              .ok());
  std::this_thread::sleep_for(50ms);
  CHECK(pongs == 100);
  CHECK(timeouts == 1);
  CHECK(rejected == 1);
  for (int i = 0; i < 2; ++i)
    REQUIRE(set.post(i, [&ts, i](runtime::Reactor&) { ts[static_cast<std::size_t>(i)].reset(); }).ok());
  std::this_thread::sleep_for(50ms);
  set.stop();
}

TEST_CASE("Config keys: set, refuse bad values unchanged, validate cross-field rules", "[net][config]") {
  NetConfig c;
  CHECK(validate(c).ok());
  CHECK(set_config(c, "wire.max_tcp_frame_bytes", "2097152").ok());
  CHECK(c.limits.max_tcp_frame == 2u << 20);
  CHECK(set_config(c, "net.frame_deadline_ms", "250").ok());
  CHECK(c.transport.frame_deadline == 250ms);
  CHECK(set_config(c, "wire.secret_file", "/etc/hyperscale/secret").ok());
  CHECK(c.secret.file == "/etc/hyperscale/secret");
  CHECK(set_config(c, "net.tcp_port", "7000").ok());
  CHECK(c.transport.tcp_port == 7000);
  Status bad = set_config(c, "wire.max_udp_datagram_bytes", "70000");
  CHECK(bad.code() == Errc::invalid_argument);
  CHECK(bad.message().find("wire.max_udp_datagram_bytes") != std::string::npos);
  CHECK(c.limits.max_udp_datagram == 1400);
  CHECK(set_config(c, "net.max_conns_per_peer", "four").code() == Errc::invalid_argument);
  CHECK(set_config(c, "net.no_such_key", "1").code() == Errc::invalid_argument);
  CHECK(set_config(c, "net.max_conn_write_queue_bytes", "1048576").ok());
  Status v = validate(c);  // a 2 MiB frame cannot fit a 1 MiB write queue
  CHECK(v.code() == Errc::invalid_argument);
  CHECK(v.message().find("wire.max_tcp_frame_bytes") != std::string::npos);
  CHECK(config_keys().size() >= 25);
}

TEST_CASE("Config keys: pre-auth limits; every key reads back its text form", "[net][config][preauth]") {
  NetConfig c;
  CHECK(get_config(c, "net.max_preauth_conns").value() == "512");
  CHECK(get_config(c, "net.max_preauth_per_source").value() == "64");
  CHECK(get_config(c, "net.preauth_timeout_ms").value() == "2000");
  REQUIRE(set_config(c, "net.preauth_timeout_ms", "750").ok());
  CHECK(c.transport.preauth_timeout == 750ms);
  REQUIRE(set_config(c, "net.max_preauth_conns", "100").ok());
  REQUIRE(set_config(c, "net.max_preauth_per_source", "101").ok());
  Status v = validate(c);
  CHECK(v.code() == Errc::invalid_argument);
  CHECK(v.message().find("net.max_preauth_per_source") != std::string::npos);
  CHECK(set_config(c, "net.max_preauth_conns", "0").code() == Errc::invalid_argument);
  CHECK(c.transport.max_preauth_conns == 100);
  // get/set round trip over every key leaves the config unchanged; every key has a description.
  const NetConfig defaults;
  NetConfig copy;
  REQUIRE(config_key_info().size() == config_keys().size());
  for (const KeyInfo& k : config_key_info()) {
    INFO(k.key);
    CHECK(!k.doc.empty());
    auto text = get_config(defaults, k.key);
    REQUIRE(text.ok());
    if (text->empty() && !k.allow_empty) continue;
    REQUIRE(set_config(copy, k.key, *text).ok());
    CHECK(get_config(copy, k.key).value() == *text);
  }
  CHECK(get_config(c, "net.nope").status().code() == Errc::invalid_argument);
}

TEST_CASE("A flood of bad frames is counted in full but logged at a bounded rate", "[net]") {
  Fixture f;
  runtime::LogCapture cap;
  const auto before = f.rejected(wire::Reject::bad_magic);
  std::vector<std::unique_ptr<Raw>> raws;
  std::uint8_t junk[wire::kHeaderSize] = {'X', 'X', 'X', 'X'};
  for (int i = 0; i < 60; ++i) {
    raws.push_back(std::make_unique<Raw>(f.server.tcp_endpoint()));
    raws.back()->write(std::span(junk, sizeof(junk)));
  }
  REQUIRE(run_until(f.r, [&] { return f.rejected(wire::Reject::bad_magic) == before + 60; }));
  // 60 rejections within about a second: at most 5 lines per second plus one summary line.
  CHECK(cap.find({"event=frame_rejected", "reason=bad_magic"}).size() <= 10);
  f.good_client_answered(9);
}

TEST_CASE("peer_link tells a refused connection from a peer that closed on our frames", "[net]") {
  runtime::Reactor r;
  const Endpoint dead = dead_endpoint();
  // The server only accepts another secret: it closes the connection on every frame of ours.
  UvTransport server(r, fast_config(), ident("mgr-1", fb::Role::Manager), keys("a-different-cluster-secret"));
  auto cc = fast_config();
  cc.enable_tcp_listen = false;
  UvTransport client(r, cc, ident("gate-1", fb::Role::Gate), keys());
  REQUIRE(server.start().ok());
  REQUIRE(client.start().ok());

  CHECK_FALSE(client.peer_link(dead).known);
  REQUIRE(client.send(dead, fb::Body::Ping, ping(1)).ok());
  REQUIRE(run_until(r, [&] { return client.peer_link(dead).connect_failures_total >= 1; }));
  auto l = client.peer_link(dead);
  CHECK(l.known);
  CHECK(l.connect_failures >= 1);
  CHECK(l.last_connect_error.find("refused") != std::string::npos);
  CHECK(l.closed_after_send == 0);

  REQUIRE(client.send(server.tcp_endpoint(), fb::Body::Ping, ping(2)).ok());
  REQUIRE(run_until(r, [&] { return client.peer_link(server.tcp_endpoint()).closed_after_send == 1; }));
  auto s = client.peer_link(server.tcp_endpoint());
  CHECK(s.connect_failures == 0);
  CHECK(s.connect_failures_total == 0);
  CHECK(server.codec().rejected(wire::Reject::auth_failed) == 1);
}

namespace {

// A server that answers Ping, with the pre-auth limits of the test, and a client transport.
struct PreauthFixture {
  runtime::Reactor r;
  UvTransport server;
  UvTransport client;
  explicit PreauthFixture(TransportConfig sc)
      : server(r, sc, ident("mgr-1", fb::Role::Manager), keys()),
        client(
            r,
            [] {
              auto c = fast_config();
              c.enable_tcp_listen = false;
              return c;
            }(),
            ident("gate-1", fb::Role::Gate), keys()) {
    REQUIRE(server.start().ok());
    REQUIRE(client.start().ok());
    server.on(fb::Body::Ping, [](const Inbound& in, const Responder& resp) {
      flatbuffers::FlatBufferBuilder b;
      b.Finish(fb::CreatePong(b, wire::body_as<fb::Ping>(in.body)->nonce()));
      REQUIRE(resp.reply(fb::Body::Pong, wire::finished(b)).ok());
    });
  }
  std::uint64_t closed(const char* reason) {
    return r.metrics().counter_value("hs_net_conn_closed_total", {{"reason", reason}});
  }
  // Sends a Ping from `from` and waits (bounded) for its outcome.
  Result<wire::Decoded> ping_from(UvTransport& from, std::uint64_t nonce) {
    std::optional<Result<wire::Decoded>> got;
    auto body = ping(nonce);
    REQUIRE(from.request(server.tcp_endpoint(), fb::Body::Ping, body, 2s,
                         [&](Result<wire::Decoded> res) { got.emplace(std::move(res)); })
                .ok());
    REQUIRE(run_until(r, [&] { return got.has_value(); }));
    return std::move(*got);
  }
};

}  // namespace

TEST_CASE("Pre-auth: idle unauthenticated connections never lock a real peer out", "[net][preauth]") {
  auto sc = fast_config();
  sc.max_inbound_conns = 1;
  sc.max_preauth_conns = 8;  // the total bound acts here (the per-source one stays at its default)
  sc.preauth_timeout = 60s;  // only the bound acts here
  PreauthFixture f(sc);
  // More idle connections (nothing sent) than the inbound and pre-auth limits together.
  std::vector<std::unique_ptr<Raw>> idle;
  for (int i = 0; i < 20; ++i) idle.push_back(std::make_unique<Raw>(f.server.tcp_endpoint()));
  REQUIRE(run_until(f.r, [&] { return f.closed("preauth_evicted") == 12; }));
  CHECK(f.server.stats().preauth_conns == 8);
  // The oldest were closed (EOF on them), the newest 8 still hold their pre-auth slots.
  for (int i = 0; i < 12; ++i) CHECK(idle[i]->closed_by_peer());
  for (int i = 12; i < 20; ++i) CHECK(!idle[i]->closed_by_peer());
  // A real peer gets in: its connection evicts the oldest idle one, its first frame authenticates it.
  auto t0 = std::chrono::steady_clock::now();
  auto reply = f.ping_from(f.client, 7);
  REQUIRE(reply.ok());
  CHECK(wire::body_as<fb::Pong>(reply->body)->nonce() == 7);
  CHECK(std::chrono::steady_clock::now() - t0 < 1s);
  CHECK(f.closed("preauth_evicted") == 13);
  CHECK(idle[12]->closed_by_peer());
  CHECK(f.server.stats().preauth_conns == 7);  // the peer's connection left the pre-auth set
  REQUIRE(run_until(f.r, [&] { return f.server.stats().inbound_conns == 8; }));  // 7 idle + the peer
  CHECK(f.closed("preauth_evicted_source") == 0);
  // Authenticated connections keep net.max_inbound_conns: a second authenticated peer over the
  // limit (1) is closed at its first frame and counted; the first one keeps working.
  UvTransport other(
      f.r,
      [] {
        auto c = fast_config();
        c.enable_tcp_listen = false;
        return c;
      }(),
      ident("gate-2", fb::Role::Gate), keys());
  REQUIRE(other.start().ok());
  auto refused = f.ping_from(other, 8);
  CHECK(refused.status().code() == Errc::unavailable);
  CHECK(f.r.metrics().counter_value("hs_net_inbound_refused_total") == 1);
  auto again = f.ping_from(f.client, 9);
  REQUIRE(again.ok());
}

TEST_CASE("Pre-auth: a connection without a valid frame in time is closed; authenticated ones stay", "[net][preauth]") {
  auto sc = fast_config();
  sc.preauth_timeout = 200ms;
  sc.frame_deadline = 30s;  // the pre-auth timeout acts on its own, not through the frame deadline
  PreauthFixture f(sc);
  REQUIRE(f.ping_from(f.client, 1).ok());  // authenticated before the idle ones arrive
  Raw silent(f.server.tcp_endpoint());
  Raw slow(f.server.tcp_endpoint());
  std::uint8_t hdr[wire::kHeaderSize] = {};
  std::memcpy(hdr, "HSF1", 4);
  slow.write(std::span(hdr, 2));  // a frame begun and never finished
  REQUIRE(run_until(
      f.r, [&] { return silent.closed_by_peer() && slow.closed_by_peer(); }, 3s));
  CHECK(f.closed("preauth_timeout") == 2);
  CHECK(f.server.stats().preauth_conns == 0);
  // The authenticated connection, older than both, was not touched: same connection, still answers.
  REQUIRE(run_until(f.r, [&] { return f.server.stats().inbound_conns == 1; }));
  CHECK(f.client.stats().connect_attempts == 1);
  REQUIRE(f.ping_from(f.client, 2).ok());
  CHECK(f.client.stats().connect_attempts == 1);
}

TEST_CASE("Pre-auth: the per-source bound evicts that source's oldest connection", "[net][preauth]") {
  auto sc = fast_config();
  sc.max_preauth_conns = 16;
  sc.max_preauth_per_source = 3;
  sc.preauth_timeout = 60s;
  PreauthFixture f(sc);
  // Two connections from 127.0.0.3 first (the oldest overall), then five from 127.0.0.2.
  std::vector<std::unique_ptr<Raw>> other, flood;
  for (int i = 0; i < 2; ++i) other.push_back(std::make_unique<Raw>(f.server.tcp_endpoint(), "127.0.0.3"));
  for (int i = 0; i < 5; ++i) flood.push_back(std::make_unique<Raw>(f.server.tcp_endpoint(), "127.0.0.2"));
  REQUIRE(run_until(f.r, [&] { return f.closed("preauth_evicted_source") == 2; }));
  REQUIRE(run_until(f.r, [&] { return f.server.stats().inbound_conns == 5; }));
  CHECK(f.server.stats().preauth_conns == 5);
  CHECK(flood[0]->closed_by_peer());
  CHECK(flood[1]->closed_by_peer());
  for (int i = 2; i < 5; ++i) CHECK(!flood[i]->closed_by_peer());
  for (auto& o : other) CHECK(!o->closed_by_peer());  // older, but from another source
  CHECK(f.closed("preauth_evicted") == 0);
  // A real peer from the flooded source still gets in.
  REQUIRE(f.ping_from(f.client, 3).ok());
}
