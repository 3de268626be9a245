// Frame codec tests: pure functions over bytes, no sockets.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <string>

#include "hyperscale/wire/frame.hpp"

using namespace hs;
using namespace hs::wire;

namespace {

constexpr std::int64_t kNow = 1'800'000'000'000;  // ms since epoch

Keyring ring(std::string_view secret) {
  auto k = Key::derive(secret);
  REQUIRE(k.ok());
  return Keyring{k.value(), std::nullopt};
}

Identity ident(std::string node, fb::Role role, std::uint64_t inc = 7) {
  Identity i;
  i.node_id = std::move(node);
  i.role = role;
  i.incarnation = inc;
  return i;
}

std::vector<std::uint8_t> ping_body(std::uint64_t nonce, std::size_t data = 0) {
  flatbuffers::FlatBufferBuilder b;
  std::vector<std::uint8_t> d(data, 0xab);
  auto dv = b.CreateVector(d);
  b.Finish(fb::CreatePing(b, nonce, dv));
  auto s = finished(b);
  return {s.begin(), s.end()};
}

std::vector<std::uint8_t> role_body(std::uint64_t from, const std::vector<std::uint8_t>& data) {
  flatbuffers::FlatBufferBuilder b;
  auto dv = b.CreateVector(data);
  b.Finish(fb::CreateRoleMessage(b, from, dv));
  auto s = finished(b);
  return {s.begin(), s.end()};
}

struct Pair {
  metrics::Registry reg;
  FrameCodec tx{ident("gate-1", fb::Role::Gate), ring("0123456789abcdef-secret"), Limits{}, reg};
  FrameCodec rx{ident("mgr-1", fb::Role::Manager), ring("0123456789abcdef-secret"), Limits{}, reg};
};

}  // namespace

TEST_CASE("A sealed frame round-trips and carries envelope fields", "[wire]") {
  Pair p;
  std::vector<std::uint8_t> out;
  auto body = ping_body(42, 100);
  REQUIRE(p.tx.seal(fb::Body::Ping, body, 9, false, Channel::tcp, "mgr-1", out, kNow).ok());
  CHECK(out.size() > kHeaderSize + kTagSize + body.size());
  auto r = p.rx.decode(out, Channel::tcp, kNow);
  REQUIRE(r.ok());
  CHECK(r.msg.type == fb::Body::Ping);
  CHECK(r.msg.sender_id == "gate-1");
  CHECK(r.msg.sender_role == fb::Role::Gate);
  CHECK(r.msg.correlation == 9);
  CHECK(!r.msg.is_reply);
  CHECK(body_as<fb::Ping>(r.msg.body)->nonce() == 42);
  CHECK(body_as<fb::Ping>(r.msg.body)->data()->size() == 100);
  CHECK(p.reg.counter_value("hs_wire_frames_decoded_total") == 1);
}

TEST_CASE("Every bad input is rejected with its reason", "[wire]") {
  Pair p;
  std::vector<std::uint8_t> good;
  auto body = ping_body(1);
  REQUIRE(p.tx.seal(fb::Body::Ping, body, 0, false, Channel::tcp, "mgr-1", good, kNow).ok());

  SECTION("truncated") {
    for (std::size_t n : {std::size_t{0}, std::size_t{3}, kHeaderSize - 1, kHeaderSize, good.size() - 1}) {
      auto r = p.rx.decode(std::span(good).first(n), Channel::tcp, kNow);
      CHECK(r.reason == Reject::truncated);
    }
  }
  SECTION("bad magic") {
    good[0] ^= 0xff;
    CHECK(p.rx.decode(good, Channel::tcp, kNow).reason == Reject::bad_magic);
  }
  SECTION("major version mismatch") {
    good[4] = kMajor + 1;
    CHECK(p.rx.decode(good, Channel::tcp, kNow).reason == Reject::version_mismatch);
  }
  SECTION("length above the limit is refused from the header alone") {
    FrameHeader h;
    h.type = static_cast<std::uint16_t>(fb::Body::Ping);
    h.length = 0xfffffff0u;
    std::uint8_t hdr[kHeaderSize];
    write_header(h, hdr);
    FrameHeader out;
    CHECK(parse_header(std::span(hdr, kHeaderSize), 1 << 20, out) == Reject::oversize);
    CHECK(p.rx.decode(std::span(hdr, kHeaderSize), Channel::tcp, kNow).reason == Reject::oversize);
  }
  SECTION("unknown type") {
    good[6] = 0x7f;
    CHECK(p.rx.decode(good, Channel::tcp, kNow).reason == Reject::unknown_type);
  }
  SECTION("flipped bit in the ciphertext, the tag, or the header (AAD)") {
    for (std::size_t pos : {kHeaderSize + 3, good.size() - 1, std::size_t{13}}) {
      auto bad = good;
      bad[pos] ^= 0x01;
      CHECK(p.rx.decode(bad, Channel::tcp, kNow).reason == Reject::auth_failed);
    }
    // Changing the type in the header (authenticated) is also an auth failure.
    auto bad = good;
    bad[7] = static_cast<std::uint8_t>(fb::Body::Pong);
    CHECK(p.rx.decode(bad, Channel::tcp, kNow).reason == Reject::auth_failed);
  }
  SECTION("wrong key") {
    metrics::Registry reg;
    FrameCodec other(ident("mgr-2", fb::Role::Manager), ring("another-secret-of-16+"), Limits{}, reg);
    CHECK(other.decode(good, Channel::tcp, kNow).reason == Reject::auth_failed);
  }
  SECTION("replay") {
    CHECK(p.rx.decode(good, Channel::tcp, kNow).ok());
    CHECK(p.rx.decode(good, Channel::tcp, kNow).reason == Reject::replay);
  }
  SECTION("stale and future timestamps") {
    std::vector<std::uint8_t> old, fut;
    REQUIRE(p.tx.seal(fb::Body::Ping, body, 0, false, Channel::tcp, "mgr-1", old, kNow - 301'000).ok());
    REQUIRE(p.tx.seal(fb::Body::Ping, body, 0, false, Channel::tcp, "mgr-1", fut, kNow + 61'000).ok());
    CHECK(p.rx.decode(old, Channel::tcp, kNow).reason == Reject::stale);
    CHECK(p.rx.decode(fut, Channel::tcp, kNow).reason == Reject::future);
  }
  SECTION("wrong cluster id") {
    std::vector<std::uint8_t> f;
    Identity as = p.tx.self();
    as.cluster_id = "other-cluster";
    REQUIRE(p.tx.seal_raw(fb::Body::Ping, body, 0, false, Channel::tcp, "mgr-1", f, kNow, 100, as).ok());
    CHECK(p.rx.decode(f, Channel::tcp, kNow).reason == Reject::wrong_cluster);
  }
  SECTION("role not allowed for the message") {
    std::vector<std::uint8_t> f;
    // A worker receives no role traffic from a client.
    metrics::Registry reg2;
    FrameCodec cl(ident("cli-1", fb::Role::Client), ring("0123456789abcdef-secret"), Limits{}, reg2);
    FrameCodec wk(ident("wrk-1", fb::Role::Worker), ring("0123456789abcdef-secret"), Limits{}, reg2);
    REQUIRE(cl.seal(fb::Body::RoleMessage, role_body(1, {3, 1}), 0, false, Channel::tcp, "wrk-1", f, kNow).ok());
    CHECK(wk.decode(f, Channel::tcp, kNow).reason == Reject::role_not_allowed);
  }
  SECTION("payload that fails the verifier") {
    std::vector<std::uint8_t> junk = {0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4, 5, 6, 7, 8};
    std::vector<std::uint8_t> f;
    REQUIRE(p.tx.seal(fb::Body::Ping, junk, 0, false, Channel::tcp, "mgr-1", f, kNow).ok());
    CHECK(p.rx.decode(f, Channel::tcp, kNow).reason == Reject::verify_failed);
  }
  SECTION("a datagram with trailing bytes") {
    std::vector<std::uint8_t> f;
    REQUIRE(p.tx.seal(fb::Body::Ping, body, 0, false, Channel::udp, "mgr-1", f, kNow).ok());
    f.push_back(0);
    CHECK(p.rx.decode(f, Channel::udp, kNow).reason == Reject::trailing_bytes);
  }
}

TEST_CASE("Receiver binding: a frame sealed for one node is refused by every other, before the replay guard",
          "[wire]") {
  // A leader seals a dispatch for worker B; an attacker captures it and replays it to worker C.
  const char* secret = "0123456789abcdef-secret";
  metrics::Registry reg_l, reg_b, reg_c;
  FrameCodec leader(ident("127.0.0.1:7101", fb::Role::Manager), ring(secret), Limits{}, reg_l);
  FrameCodec b(ident("127.0.0.1:7201", fb::Role::Worker), ring(secret), Limits{}, reg_b);
  FrameCodec c(ident("127.0.0.1:7202", fb::Role::Worker), ring(secret), Limits{}, reg_c);
  const auto dispatch = role_body(0x7f00000101bdULL, {3, 14, 'r', 'e', 'p', 'l', 'a', 'y'});
  std::vector<std::uint8_t> f;
  REQUIRE(leader.seal(fb::Body::RoleMessage, dispatch, 0, false, Channel::tcp, "127.0.0.1:7201", f, kNow).ok());
  const std::uint64_t seq = leader.sequence() - 1;

  for (Channel ch : {Channel::tcp, Channel::udp}) {
    auto r = c.decode(f, ch, kNow);
    CHECK(r.reason == Reject::wrong_receiver);
    CHECK(r.detail.find("receiver_id=127.0.0.1:7201 self=127.0.0.1:7202") != std::string::npos);
    c.note_reject(r.reason, ch, "127.0.0.1:40000", r.detail, Instant{std::chrono::seconds(1)});
  }
  CHECK(c.rejected(Reject::wrong_receiver) == 2);
  CHECK(reg_c.counter_value("hs_wire_rejected_total", {{"reason", "wrong_receiver"}}) == 2);
  CHECK(reg_c.counter_value("hs_wire_rejected_total", {{"reason", "replay"}}) == 0);
  CHECK(reg_c.counter_value("hs_wire_frames_decoded_total") == 0);

  // C's replay guard recorded nothing: the same sender, incarnation and sequence sealed for C is accepted.
  std::vector<std::uint8_t> for_c;
  REQUIRE(leader
              .seal_raw(fb::Body::RoleMessage, dispatch, 0, false, Channel::tcp, "127.0.0.1:7202", for_c, kNow, seq,
                        leader.self())
              .ok());
  CHECK(c.decode(for_c, Channel::tcp, kNow).ok());
  // B, the intended receiver, still accepts the original once; a second copy is a replay.
  auto rb = b.decode(f, Channel::tcp, kNow);
  REQUIRE(rb.ok());
  CHECK(body_as<fb::RoleMessage>(rb.msg.body)->data()->size() == 8);
  CHECK(b.decode(f, Channel::tcp, kNow).reason == Reject::replay);

  SECTION("a frame without a receiver (a peer older than protocol 1.2) is refused") {
    Identity old = leader.self();
    old.minor = 1;
    std::vector<std::uint8_t> g;
    REQUIRE(leader.seal_raw(fb::Body::RoleMessage, dispatch, 0, false, Channel::tcp, "", g, kNow, seq + 1, old).ok());
    auto r = b.decode(g, Channel::tcp, kNow);
    CHECK(r.reason == Reject::wrong_receiver);
    CHECK(r.detail.find("no receiver_id") != std::string::npos);
    // seal() never makes such a frame.
    std::vector<std::uint8_t> h;
    CHECK(leader.seal(fb::Body::Ping, ping_body(1), 0, false, Channel::tcp, "", h, kNow).code() ==
          Errc::invalid_argument);
    CHECK(h.empty());
  }
  SECTION("a node also accepts the names it registers (its bound addresses), and no more than a few") {
    std::vector<std::uint8_t> g;
    REQUIRE(leader.seal(fb::Body::RoleMessage, dispatch, 0, false, Channel::udp, "10.0.0.7:7201", g, kNow).ok());
    CHECK(b.decode(g, Channel::udp, kNow).reason == Reject::wrong_receiver);
    REQUIRE(b.accept_receiver("10.0.0.7:7201").ok());
    CHECK(b.decode(g, Channel::udp, kNow).ok());
    CHECK(b.accept_receiver("").code() == Errc::invalid_argument);
    for (int i = 0; i < 3; ++i) REQUIRE(b.accept_receiver("10.0.0.8:" + std::to_string(i + 1)).ok());
    CHECK(b.accept_receiver("10.0.0.9:1").code() == Errc::invalid_argument);
    CHECK(b.accept_receiver("10.0.0.7:7201").ok());  // already accepted: no change
    CHECK(!b.is_receiver("10.0.0.9:1"));
  }
}

TEST_CASE("Frame limits are enforced when sealing and decoding", "[wire]") {
  Pair p;
  std::vector<std::uint8_t> out;
  CHECK(p.tx.seal(fb::Body::Ping, ping_body(1, 1500), 0, false, Channel::udp, "mgr-1", out, kNow).code() ==
        Errc::invalid_argument);
  CHECK(out.empty());
  REQUIRE(p.tx.seal(fb::Body::Ping, ping_body(1, 1500), 0, false, Channel::tcp, "mgr-1", out, kNow).ok());
  CHECK(p.rx.decode(out, Channel::udp, kNow).reason == Reject::oversize);
  CHECK(p.tx.seal(fb::Body::Ping, ping_body(1, 2 << 20), 0, false, Channel::tcp, "mgr-1", out, kNow).code() ==
        Errc::invalid_argument);
}

TEST_CASE("Replay window accepts reordering and rejects duplicates and too-old sequences", "[wire]") {
  Limits l;
  l.replay_window = 128;
  l.replay_max_senders = 2;
  ReplayGuard g(l);
  CHECK(g.check("a", 1, 10, kNow, kNow) == Reject::none);
  CHECK(g.check("a", 1, 12, kNow, kNow) == Reject::none);
  CHECK(g.check("a", 1, 11, kNow, kNow) == Reject::none);  // reordered
  CHECK(g.check("a", 1, 11, kNow, kNow) == Reject::replay);
  CHECK(g.check("a", 1, 500, kNow, kNow) == Reject::none);
  CHECK(g.check("a", 1, 12, kNow, kNow) == Reject::replay);  // below the window
  CHECK(g.check("a", 1, 400, kNow, kNow) == Reject::none);   // inside the window, unseen
  CHECK(g.check("a", 2, 12, kNow, kNow) == Reject::none);    // new incarnation
  CHECK(g.check("b", 1, 1, kNow, kNow) == Reject::none);     // evicts the least recent
  CHECK(g.senders() == 2);
}

TEST_CASE("Key rotation: the previous key opens frames until it is dropped", "[wire]") {
  metrics::Registry reg;
  auto oldk = Key::derive("old-secret-0123456789").value();
  auto newk = Key::derive("new-secret-0123456789").value();
  FrameCodec tx_old(ident("gate-1", fb::Role::Gate), Keyring{oldk, {}}, Limits{}, reg);
  FrameCodec rx(ident("mgr-1", fb::Role::Manager), Keyring{newk, oldk}, Limits{}, reg);
  std::vector<std::uint8_t> f1, f2;
  REQUIRE(tx_old.seal(fb::Body::Ping, ping_body(1), 0, false, Channel::tcp, "mgr-1", f1, kNow).ok());
  REQUIRE(tx_old.seal(fb::Body::Ping, ping_body(2), 0, false, Channel::tcp, "mgr-1", f2, kNow).ok());
  auto r = rx.decode(f1, Channel::tcp, kNow);
  REQUIRE(r.ok());
  CHECK(r.msg.used_previous_key);
  CHECK(reg.counter_value("hs_wire_previous_key_used_total") == 1);
  rx.drop_previous_key();
  auto r2 = rx.decode(f2, Channel::tcp, kNow);
  CHECK(r2.reason == Reject::auth_failed);
}

TEST_CASE("Rotation re-keys codecs already in use; nonces never repeat across the nonce pool's refills", "[wire]") {
  metrics::Registry reg;
  auto oldk = Key::derive("old-secret-0123456789").value();
  auto newk = Key::derive("new-secret-0123456789").value();
  FrameCodec tx(ident("gate-1", fb::Role::Gate), Keyring{oldk, {}}, Limits{}, reg);
  FrameCodec rx(ident("mgr-1", fb::Role::Manager), Keyring{oldk, {}}, Limits{}, reg);
  FrameCodec rx_new(ident("mgr-1", fb::Role::Manager), Keyring{newk, {}}, Limits{}, reg);
  // 1 000 frames span three refills of the pool (341 nonces each): every nonce differs.
  std::set<std::string> nonces;
  std::vector<std::uint8_t> f;
  for (std::uint64_t i = 0; i < 1000; ++i) {
    f.clear();
    REQUIRE(tx.seal(fb::Body::Ping, ping_body(i), 0, false, Channel::tcp, "mgr-1", f, kNow).ok());
    nonces.emplace(reinterpret_cast<const char*>(f.data()) + 12, 12);  // header bytes 12..23
    REQUIRE(rx.decode(f, Channel::tcp, kNow).ok());
  }
  CHECK(nonces.size() == 1000);
  // Both sides rotate after their contexts were keyed with the old key.
  tx.set_keys(Keyring{newk, oldk});
  rx.set_keys(Keyring{newk, oldk});
  f.clear();
  REQUIRE(tx.seal(fb::Body::Ping, ping_body(2000), 0, false, Channel::tcp, "mgr-1", f, kNow).ok());
  CHECK(rx_new.decode(f, Channel::tcp, kNow).ok());  // sealed with the new key
  auto r = rx.decode(f, Channel::tcp, kNow);
  REQUIRE(r.ok());
  CHECK_FALSE(r.msg.used_previous_key);
  // A frame of a node that has not rotated yet still opens with the previous key.
  FrameCodec late(ident("gate-2", fb::Role::Gate), Keyring{oldk, {}}, Limits{}, reg);
  f.clear();
  REQUIRE(late.seal(fb::Body::Ping, ping_body(3000), 0, false, Channel::tcp, "mgr-1", f, kNow).ok());
  auto r2 = rx.decode(f, Channel::tcp, kNow);
  REQUIRE(r2.ok());
  CHECK(r2.msg.used_previous_key);
  CHECK(rx_new.decode(f, Channel::tcp, kNow).reason == Reject::auth_failed);
}

TEST_CASE("Secrets load from a file or an environment variable; weak ones are refused", "[wire]") {
  const char* path = "/tmp/hs_wire_test_secret";
  {
    std::ofstream f(path);
    f << "file-secret-0123456789\n";
  }
  auto a = load_secret({path, ""});
  REQUIRE(a.ok());
  CHECK(a.value() == "file-secret-0123456789");
  setenv("HS_WIRE_TEST_SECRET", "short", 1);
  CHECK(load_secret({"", "HS_WIRE_TEST_SECRET"}).status().code() == Errc::invalid_argument);
  setenv("HS_WIRE_TEST_SECRET", "env-secret-0123456789", 1);
  auto ring2 = load_keyring({"", "HS_WIRE_TEST_SECRET"}, {path, ""});
  REQUIRE(ring2.ok());
  CHECK(ring2->previous.has_value());
  CHECK(ring2->current == Key::derive("env-secret-0123456789").value());
  CHECK(load_secret({"/nonexistent/secret", ""}).status().code() == Errc::not_found);
  CHECK(load_secret({}).status().code() == Errc::invalid_argument);
  std::remove(path);
}

TEST_CASE("Role matrix: the transport's messages go anywhere, role traffic only between its pairs", "[wire]") {
  using R = fb::Role;
  for (auto t : {fb::Body::Ping, fb::Body::Pong, fb::Body::ErrorReply}) {
    CHECK(role_allowed(t, R::Gate, R::Client));
    CHECK(role_allowed(t, R::Worker, R::Gate));
    CHECK(!role_allowed(t, R::Unknown, R::Gate));
    CHECK(!role_allowed(t, R::Gate, R::Unknown));
  }
  CHECK(role_allowed(fb::Body::RoleMessage, R::Client, R::Manager));
  CHECK(role_allowed(fb::Body::RoleMessage, R::Manager, R::Worker));
  CHECK(role_allowed(fb::Body::RoleMessage, R::Worker, R::Worker));
  CHECK(!role_allowed(fb::Body::RoleMessage, R::Client, R::Worker));
  CHECK(role_allowed(fb::Body::RoleMessage, R::Gate, R::Manager));
  CHECK(role_allowed(fb::Body::RoleMessage, R::Manager, R::Gate));
  CHECK(role_allowed(fb::Body::RoleMessage, R::Client, R::Gate));
  CHECK(role_allowed(fb::Body::RoleMessage, R::Gate, R::Gate));
  CHECK(!role_allowed(fb::Body::RoleMessage, R::Gate, R::Worker));
  CHECK(!role_allowed(fb::Body::RoleMessage, R::Worker, R::Gate));
  CHECK(!role_allowed(fb::Body::RoleMessage, R::Client, R::Client));
  CHECK(!role_allowed(static_cast<fb::Body>(1), R::Client, R::Gate));  // a retired number
}

TEST_CASE("Rejection log lines are rate limited per reason", "[wire]") {
  RejectLog log(3);
  for (int i = 0; i < 100; ++i) log.log(Reject::bad_magic, Channel::tcp, "p", "d", Instant{std::chrono::seconds(5)});
  CHECK(log.suppressed_total() == 97);
}

TEST_CASE("Every message type verifies when built empty and fails on junk", "[wire]") {
  int known = 0;
  for (int t = 1; t <= static_cast<int>(fb::Body::MAX); ++t) {
    if (!known_type(static_cast<std::uint16_t>(t))) continue;
    ++known;
    flatbuffers::FlatBufferBuilder b;
    auto start = b.StartTable();
    b.Finish(flatbuffers::Offset<void>(b.EndTable(start)));
    CHECK(verify_body(static_cast<fb::Body>(t), finished(b)));
    CHECK(type_name(static_cast<fb::Body>(t)) != "unknown");
  }
  CHECK(known == 4);
  {
    // A valid body at an address that is not 8-byte aligned still verifies (in an aligned copy:
    // the verifier only checks alignment relative to the buffer start); a corrupt one still fails.
    flatbuffers::FlatBufferBuilder b;
    b.Finish(fb::CreatePing(b, 1));
    std::vector<std::uint64_t> store(b.GetSize() / 8 + 2);
    auto* base = reinterpret_cast<std::uint8_t*>(store.data());
    std::memcpy(base, b.GetBufferPointer(), b.GetSize());
    CHECK(verify_body(fb::Body::Ping, {base, b.GetSize()}));
    std::memmove(base + 4, base, b.GetSize());
    CHECK(verify_body(fb::Body::Ping, {base + 4, b.GetSize()}));
    base[4] = 0xff;
    CHECK(!verify_body(fb::Body::Ping, {base + 4, b.GetSize()}));
  }
  std::vector<std::uint8_t> junk(64, 0xee);
  CHECK(!verify_body(fb::Body::RoleMessage, junk));
  CHECK(!verify_body(fb::Body::NONE, junk));
}

TEST_CASE("Versioning: a newer minor is accepted and negotiated down; unknown fields are ignored", "[wire]") {
  Pair p;
  // A peer speaking minor 5 of the same major, sending a Ping with a field this build does not know.
  Identity newer = p.tx.self();
  newer.minor = 5;
  flatbuffers::FlatBufferBuilder b;
  auto start = b.StartTable();
  b.AddElement<std::uint64_t>(4, 99, 0);         // nonce (known, slot 0)
  b.AddElement<std::uint64_t>(10, 0xabcdef, 0);  // slot 3: a field added by a later minor
  b.Finish(flatbuffers::Offset<void>(b.EndTable(start)));
  std::vector<std::uint8_t> f;
  REQUIRE(p.tx.seal_raw(fb::Body::Ping, finished(b), 0, false, Channel::tcp, "mgr-1", f, kNow, 1, newer).ok());
  auto r = p.rx.decode(f, Channel::tcp, kNow);
  REQUIRE(r.ok());
  CHECK(r.msg.peer_minor == 5);
  CHECK(body_as<fb::Ping>(r.msg.body)->nonce() == 99);
  CHECK(negotiate_minor(kMinor, r.msg.peer_minor) == kMinor);
  CHECK(negotiate_minor(3, 1) == 1);
}

TEST_CASE("Message numbers are stable; retired numbers are unknown types", "[wire]") {
  // The numbers of the kept types are the ones they had before the unused tables were deleted, so
  // peers of either build agree on them (messages.fbs: explicit union values).
  CHECK(static_cast<int>(fb::Body::Ping) == 42);
  CHECK(static_cast<int>(fb::Body::Pong) == 43);
  CHECK(static_cast<int>(fb::Body::ErrorReply) == 45);
  CHECK(static_cast<int>(fb::Body::RoleMessage) == 49);
  int known = 0;
  for (int t = 0; t <= 0xffff; ++t) known += known_type(static_cast<std::uint16_t>(t)) ? 1 : 0;
  CHECK(known == 4);
  // A header naming a retired type is refused before anything is decrypted.
  for (std::uint16_t retired : {1, 41, 44, 46, 48, 50}) {
    CAPTURE(retired);
    FrameHeader h;
    h.type = retired;
    h.length = kTagSize + 8;
    std::vector<std::uint8_t> f(kHeaderSize + h.length, 0);
    write_header(h, f.data());
    Pair p;
    CHECK(p.rx.decode(f, Channel::tcp, kNow).reason == Reject::unknown_type);
    h.type = static_cast<std::uint16_t>(fb::Body::Ping);  // the same frame with a known type gets further
    write_header(h, f.data());
    CHECK(p.rx.decode(f, Channel::tcp, kNow).reason == Reject::auth_failed);
  }
}
