// Unit tests of the SWIM state machine rules, driven by hand through a fake Context.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>

#include "hyperscale/base/log.hpp"
#include "hyperscale/swim/codec.hpp"
#include "hyperscale/swim/swim.hpp"
#include "hyperscale/sim/mem_disk.hpp"

using namespace hs;
using namespace hs::swim;
using namespace std::chrono_literals;

namespace {

struct FakeCtx final : node::Context {
  NodeId id = 1;
  ManualClock clk;
  std::uint64_t wall_ms() const override { return 0; }
  Rng r{1};
  sim::MemDisk d;
  struct Sent {
    NodeId to;
    Message m;
    std::size_t bytes;
  };
  std::vector<Sent> sent;
  struct Timer {
    Instant due;
    node::TimerId id;
    std::uint64_t tag;
  };
  std::vector<Timer> timers;
  node::TimerId next = 1;
  bool ticks = true;  // false: the periodic probe timer never fires (isolates one rule)

  NodeId self() const override { return id; }
  const Clock& clock() const override { return clk; }
  Rng& rng() override { return r; }
  void send(NodeId to, Bytes msg) override {
    Message m;
    REQUIRE(decode(msg, m) == DecodeError::none);
    sent.push_back(Sent{to, m, msg.size()});
  }
  node::TimerId set_timer(Duration after, std::uint64_t tag) override {
    timers.push_back(Timer{clk.now() + after, next, tag});
    return next++;
  }
  void cancel_timer(node::TimerId t) override {
    std::erase_if(timers, [t](const Timer& x) { return x.id == t; });
  }
  node::Disk& disk() override { return d; }

  // Advances time by `d`, firing due timers in order.
  void advance(Swim& s, Duration d) {
    const Instant end = clk.now() + d;
    for (;;) {
      auto it = std::min_element(timers.begin(), timers.end(), [](const Timer& a, const Timer& b) {
        return a.due != b.due ? a.due < b.due : a.id < b.id;
      });
      if (it == timers.end() || it->due > end) break;
      Timer t = *it;
      timers.erase(it);
      if (!ticks && (t.tag >> 56) == 1) continue;
      clk.set(t.due);
      s.on_timer(*this, t.id, t.tag);
    }
    clk.set(end);
  }
  std::vector<Sent> take() { return std::exchange(sent, {}); }
};

Bytes enc(const Message& m) {
  Bytes b;
  REQUIRE(encode(m, b).ok());
  return b;
}

Message msg(MsgType t, NodeId sender, std::uint32_t inc, std::uint32_t seq, NodeId target, std::vector<Gossip> g = {}) {
  Message m;
  m.type = t;
  m.sender = sender;
  m.sender_incarnation = inc;
  m.seq = seq;
  m.target = target;
  m.gossip = std::move(g);
  return m;
}

void deliver(Swim& s, FakeCtx& c, const Message& m) {
  Bytes b = enc(m);
  s.on_message(c, m.sender, b);
}

struct Fixture {
  FakeCtx ctx;
  std::unique_ptr<Swim> s;
  std::vector<std::pair<NodeId, bool>> dead;
  std::vector<MemberEvent> changes;
  explicit Fixture(SwimConfig cfg = {}, std::vector<NodeId> members = {2, 3, 4, 5}) {
    log::set_level(log::Level::error);
    s = std::make_unique<Swim>(cfg);
    s->bootstrap_confirmed(members);
    s->on_dead = [this](NodeId n, std::uint32_t, bool left) { dead.emplace_back(n, left); };
    s->on_change = [this](const MemberEvent& e) { changes.push_back(e); };
    s->on_start(ctx);
    ctx.take();
  }
  ~Fixture() { log::set_level(log::Level::info); }
  Swim& w() { return *s; }
};

bool has_gossip(const std::vector<FakeCtx::Sent>& v, GossipKind k, NodeId node, std::uint32_t inc) {
  for (auto& s : v)
    for (auto& g : s.m.gossip)
      if (g.kind == k && g.node == node && g.incarnation == inc) return true;
  return false;
}

}  // namespace

// ---------------- codec ----------------

TEST_CASE("codec round-trips every message type") {
  for (auto t : {MsgType::ping, MsgType::ack, MsgType::ping_req, MsgType::nack, MsgType::sync}) {
    Message m = msg(t, 0x7f0000011f90ull, 7, 99, 12345, {{GossipKind::suspect, 4, 3, 9}, {GossipKind::left, 5, 1, 5}});
    m.state = {1, 2, 3};
    m.flags = 1;
    Bytes b = enc(m);
    CHECK(b.size() == encoded_size(m));
    Message out;
    REQUIRE(decode(b, out) == DecodeError::none);
    CHECK(out.type == t);
    CHECK(out.sender == m.sender);
    CHECK(out.sender_incarnation == 7);
    CHECK(out.seq == 99);
    CHECK(out.target == 12345);
    CHECK(out.flags == 1);
    CHECK(out.state == m.state);
    CHECK(out.gossip == m.gossip);
  }
}

TEST_CASE("codec rejects malformed datagrams with a reason for each") {
  Message m = msg(MsgType::ping, 2, 1, 1, 1, {{GossipKind::alive, 3, 0, 3}});
  const Bytes good = enc(m);
  Message out;
  auto with = [&](auto fn) {
    Bytes b = good;
    fn(b);
    return decode(b, out);
  };
  CHECK(with([](Bytes& b) { b.resize(10); }) == DecodeError::too_short);
  CHECK(with([](Bytes& b) { b[0] = 'X'; }) == DecodeError::bad_magic);
  CHECK(with([](Bytes& b) { b[1] = 9; }) == DecodeError::bad_version);
  CHECK(with([](Bytes& b) { b[2] = 0; }) == DecodeError::bad_type);
  CHECK(with([](Bytes& b) { b[2] = 6; }) == DecodeError::bad_type);
  CHECK(with([](Bytes& b) { b.resize(1500); }) == DecodeError::oversize);
  CHECK(with([](Bytes& b) {
          b[kHeaderBytes] = 0xff;
          b[kHeaderBytes + 1] = 0x01;
        }) == DecodeError::truncated_state);
  CHECK(with([](Bytes& b) {
          b[kHeaderBytes] = 0xff;
          b[kHeaderBytes + 1] = 0xff;
        }) == DecodeError::state_too_large);
  CHECK(with([](Bytes& b) { b[kHeaderBytes + 2] = 2; }) == DecodeError::truncated_gossip);
  CHECK(with([](Bytes& b) { b[kHeaderBytes + 2] = 200; }) == DecodeError::too_many_gossip);
  CHECK(with([](Bytes& b) { b[kHeaderBytes + 3] = 9; }) == DecodeError::bad_gossip_kind);
  CHECK(with([](Bytes& b) { b.push_back(0); }) == DecodeError::trailing_bytes);
  for (int i = 1; i < static_cast<int>(DecodeError::kCount); ++i)
    CHECK(decode_error_name(static_cast<DecodeError>(i)) != "unknown");
}

TEST_CASE("encode refuses messages over the datagram budget") {
  Message m = msg(MsgType::ping, 2, 1, 1, 1);
  m.state.resize(kMaxStateBytes);
  for (int i = 0; i < 50; ++i) m.gossip.push_back({GossipKind::alive, static_cast<NodeId>(i), 0, 0});
  Bytes b;
  CHECK_FALSE(encode(m, b).ok());
  CHECK(b.empty());
  m.state.resize(kMaxStateBytes + 1);
  m.gossip.clear();
  CHECK_FALSE(encode(m, b).ok());
}

// ---------------- state machine rules ----------------

TEST_CASE("bad datagrams are counted by reason and change nothing") {
  Fixture f;
  const auto before = f.w().members();
  Bytes junk{1, 2, 3};
  f.w().on_message(f.ctx, 2, junk);
  Bytes bad = enc(msg(MsgType::ping, 2, 0, 1, 1));
  bad[0] = 0;
  f.w().on_message(f.ctx, 2, bad);
  CHECK(f.w().stats().decode_errors[static_cast<int>(DecodeError::too_short)] == 1);
  CHECK(f.w().stats().decode_errors[static_cast<int>(DecodeError::bad_magic)] == 1);
  CHECK(f.w().stats().decode_errors_total() == 2);
  CHECK(f.ctx.sent.empty());
  CHECK(f.w().members().size() == before.size());
  // A ping meant for someone else, or a sender that lies about its address, is dropped too.
  deliver(f.w(), f.ctx, msg(MsgType::ping, 2, 0, 1, 99));
  CHECK(f.w().stats().wrong_target == 1);
  Bytes lie = enc(msg(MsgType::ping, 3, 0, 1, 1));
  f.w().on_message(f.ctx, 2, lie);
  CHECK(f.w().stats().sender_mismatch == 1);
  CHECK(f.ctx.sent.empty());
}

TEST_CASE("a ping is answered with an ack carrying the same seq") {
  Fixture f;
  deliver(f.w(), f.ctx, msg(MsgType::ping, 2, 0, 42, 1));
  auto out = f.ctx.take();
  REQUIRE(out.size() == 1);
  CHECK(out[0].to == 2);
  CHECK(out[0].m.type == MsgType::ack);
  CHECK(out[0].m.seq == 42);
}

TEST_CASE("suspected with an incarnation >= own: refute with a higher incarnation; lower is ignored") {
  Fixture f;
  const auto inc0 = f.w().incarnation();
  deliver(f.w(), f.ctx, msg(MsgType::ping, 2, 0, 1, 1, {{GossipKind::suspect, 1, inc0, 2}}));
  CHECK(f.w().incarnation() == inc0 + 1);
  CHECK(f.w().stats().refutations == 1);
  auto out = f.ctx.take();
  CHECK(has_gossip(out, GossipKind::alive, 1, inc0 + 1));  // the refutation rides on the ack
  CHECK(f.w().lhm_score() == 1);                           // Lifeguard: refuting costs health
  deliver(f.w(), f.ctx, msg(MsgType::ping, 2, 0, 2, 1, {{GossipKind::suspect, 1, inc0, 3}}));
  CHECK(f.w().incarnation() == inc0 + 1);  // stale suspicion: nothing to refute
  // Even being declared dead is refuted.
  deliver(f.w(), f.ctx, msg(MsgType::ping, 2, 0, 3, 1, {{GossipKind::dead, 1, inc0 + 1, 3}}));
  CHECK(f.w().incarnation() == inc0 + 2);
}

TEST_CASE("refutations are rate limited") {
  SwimConfig cfg;
  cfg.refute_tokens = 2;
  Fixture f(cfg);
  for (int i = 0; i < 4; ++i)
    deliver(f.w(), f.ctx, msg(MsgType::sync, 2, 0, 0, 0, {{GossipKind::suspect, 1, f.w().incarnation(), 2}}));
  CHECK(f.w().stats().refutations == 2);
  CHECK(f.w().stats().refutes_rate_limited == 2);
  f.ctx.advance(f.w(), cfg.refute_window);
  deliver(f.w(), f.ctx, msg(MsgType::sync, 2, 0, 0, 0, {{GossipKind::suspect, 1, f.w().incarnation(), 2}}));
  CHECK(f.w().stats().refutations == 3);
}

TEST_CASE("an old incarnation cannot resurrect a dead member; a newer one can") {
  Fixture f;
  f.ctx.ticks = false;
  deliver(f.w(), f.ctx, msg(MsgType::sync, 3, 0, 0, 0, {{GossipKind::alive, 2, 5, 2}}));
  deliver(f.w(), f.ctx, msg(MsgType::sync, 3, 0, 0, 0, {{GossipKind::dead, 2, 5, 3}}));
  f.ctx.advance(f.w(), 60s);  // our own suspicion expires unanswered
  REQUIRE(f.w().member(2)->state == State::dead);
  deliver(f.w(), f.ctx, msg(MsgType::sync, 3, 0, 0, 0, {{GossipKind::alive, 2, 5, 2}}));
  deliver(f.w(), f.ctx, msg(MsgType::sync, 3, 0, 0, 0, {{GossipKind::alive, 2, 4, 2}}));
  CHECK(f.w().member(2)->state == State::dead);
  // A direct message from the dead member at its old incarnation: it is told it is dead.
  f.ctx.take();
  deliver(f.w(), f.ctx, msg(MsgType::ack, 2, 5, 0, 2));
  CHECK(f.w().member(2)->state == State::dead);
  auto out = f.ctx.take();
  REQUIRE(out.size() == 1);
  CHECK(out[0].to == 2);
  CHECK(has_gossip(out, GossipKind::dead, 2, 5));
  // Its refutation (incarnation 6) brings it back.
  deliver(f.w(), f.ctx, msg(MsgType::sync, 3, 0, 0, 0, {{GossipKind::alive, 2, 6, 2}}));
  CHECK(f.w().member(2)->state == State::alive);
  CHECK(f.w().stats().resurrections == 1);
  REQUIRE(f.dead.size() == 1);
}

TEST_CASE("death is reported exactly once per transition") {
  Fixture f;
  f.ctx.ticks = false;
  deliver(f.w(), f.ctx, msg(MsgType::sync, 3, 0, 0, 0, {{GossipKind::dead, 4, 0, 3}}));
  deliver(f.w(), f.ctx, msg(MsgType::sync, 5, 0, 0, 0, {{GossipKind::dead, 4, 0, 5}}));
  f.ctx.advance(f.w(), 60s);
  deliver(f.w(), f.ctx, msg(MsgType::sync, 5, 0, 0, 0, {{GossipKind::left, 4, 0, 5}}));
  deliver(f.w(), f.ctx, msg(MsgType::sync, 5, 0, 0, 0, {{GossipKind::suspect, 4, 0, 5}}));
  CHECK(f.dead.size() == 1);
  deliver(f.w(), f.ctx, msg(MsgType::sync, 5, 0, 0, 0, {{GossipKind::alive, 4, 1, 4}}));
  deliver(f.w(), f.ctx, msg(MsgType::sync, 4, 1, 0, 0, {{GossipKind::left, 4, 1, 4}}));  // from 4 itself
  REQUIRE(f.dead.size() == 2);
  CHECK(f.dead[1] == std::make_pair(NodeId{4}, true));
}

TEST_CASE("incarnation jumps beyond the bound are rejected") {
  Fixture f;
  deliver(f.w(), f.ctx, msg(MsgType::sync, 3, 0, 0, 0, {{GossipKind::alive, 2, 5000, 2}}));
  CHECK(f.w().member(2)->incarnation == 0);
  CHECK(f.w().stats().incarnation_jumps_rejected == 1);
}

TEST_CASE("failed probe of a confirmed member: indirect probes, then suspicion, then death") {
  SwimConfig cfg;
  Fixture f(cfg);
  // Run until the first probe goes out.
  f.ctx.advance(f.w(), cfg.period);
  auto out = f.ctx.take();
  REQUIRE(!out.empty());
  const auto ping = out.back();
  REQUIRE(ping.m.type == MsgType::ping);
  const NodeId target = ping.to;
  f.ctx.advance(f.w(), cfg.probe_timeout);
  out = f.ctx.take();
  std::size_t reqs = 0;
  for (auto& s : out)
    if (s.m.type == MsgType::ping_req) {
      ++reqs;
      CHECK(s.m.target == target);
      CHECK(s.to != target);
    }
  CHECK(reqs == 3);
  // One proxy reports a nack: the other two are missing, so our own health drops by 2.
  deliver(f.w(), f.ctx, msg(MsgType::nack, out[0].to, 0, ping.m.seq, target));
  f.ctx.advance(f.w(), cfg.period - cfg.probe_timeout);
  REQUIRE(f.w().member(target)->state == State::suspect);
  CHECK(f.w().lhm_score() == 2);
  // Nobody refutes: dead after the (LHM-scaled) suspicion timeout, reported once.
  f.ctx.ticks = false;
  f.ctx.advance(f.w(), 50s);
  CHECK(f.w().member(target)->state == State::dead);
  REQUIRE(f.dead.size() == 1);
  CHECK(f.dead[0].first == target);
}

TEST_CASE("acks lower the local health score; proxies decline when unhealthy") {
  SwimConfig cfg;
  Fixture f(cfg);
  f.ctx.advance(f.w(), cfg.period);
  auto out = f.ctx.take();
  f.ctx.advance(f.w(), cfg.period);  // no ack, no proxies answer -> score up
  const int high = f.w().lhm_score();
  CHECK(high >= 1);
  out = f.ctx.take();
  FakeCtx::Sent ping{};
  for (auto& s : out)
    if (s.m.type == MsgType::ping) ping = s;
  REQUIRE(ping.to != 0);
  deliver(f.w(), f.ctx, msg(MsgType::ack, ping.to, 0, ping.m.seq, ping.to));
  CHECK(f.w().lhm_score() == high - 1);
}

TEST_CASE("proxies relay ping-req: forward the ack, or send a nack in time") {
  SwimConfig cfg;
  Fixture f(cfg);
  deliver(f.w(), f.ctx, msg(MsgType::ping_req, 2, 0, 77, 3));
  auto out = f.ctx.take();
  REQUIRE(out.size() == 1);
  CHECK(out[0].to == 3);
  CHECK(out[0].m.type == MsgType::ping);
  const auto relay_seq = out[0].m.seq;
  deliver(f.w(), f.ctx, msg(MsgType::ack, 3, 0, relay_seq, 3));
  out = f.ctx.take();
  REQUIRE(out.size() == 1);
  CHECK(out[0].to == 2);
  CHECK(out[0].m.type == MsgType::ack);
  CHECK(out[0].m.seq == 77);
  CHECK(out[0].m.target == 3);
  // No answer from the target: nack at 80 % of the probe timeout.
  deliver(f.w(), f.ctx, msg(MsgType::ping_req, 2, 0, 78, 4));
  f.ctx.take();
  f.ctx.advance(f.w(), cfg.probe_timeout);
  out = f.ctx.take();
  bool nacked = false;
  for (auto& s : out)
    if (s.m.type == MsgType::nack && s.m.seq == 78 && s.to == 2) nacked = true;
  CHECK(nacked);
  f.ctx.advance(f.w(), cfg.probe_timeout * 2);
  CHECK(f.w().relay_count() == 0);
}

TEST_CASE("unconfirmed peers are probed but never suspected, and dropped if never heard from") {
  SwimConfig cfg;
  cfg.seeds = {9};
  Fixture f(cfg, {});
  REQUIRE(f.w().member(9));
  CHECK_FALSE(f.w().member(9)->confirmed);
  // Gossip of a suspicion does not apply to an unconfirmed member either.
  deliver(f.w(), f.ctx, msg(MsgType::sync, 8, 0, 0, 0, {{GossipKind::suspect, 9, 0, 8}}));
  CHECK(f.w().member(9)->state == State::alive);
  f.ctx.advance(f.w(), 10s);
  CHECK(f.w().member(9)->state == State::alive);
  CHECK(f.w().stats().unconfirmed_probe_failures >= 1);
  for (const auto& e : f.changes) CHECK_FALSE((e.node == 9 && e.to == State::suspect));
  f.ctx.advance(f.w(), cfg.unconfirmed_timeout);
  CHECK_FALSE(f.w().member(9).has_value());
  CHECK(f.w().stats().unconfirmed_dropped == 1);
  // A direct message confirms a member.
  deliver(f.w(), f.ctx, msg(MsgType::sync, 8, 0, 0, 0));
  CHECK(f.w().member(8)->confirmed);
}

TEST_CASE("suspicion timeout: independent confirmations bring death earlier, never later") {
  SwimConfig cfg;
  cfg.period = 1s;
  std::vector<NodeId> many;
  for (NodeId i = 2; i <= 20; ++i) many.push_back(i);
  auto time_to_death = [&](int confirmations) {
    Fixture f(cfg, many);
    f.ctx.ticks = false;
    deliver(f.w(), f.ctx, msg(MsgType::sync, 3, 0, 0, 0, {{GossipKind::suspect, 2, 0, 3}}));
    // Our own check of 2 is answered through a proxy: no evidence of ours (only others' claims count).
    for (auto& x : f.ctx.take())
      if (x.to == 2 && x.m.type == MsgType::ping) deliver(f.w(), f.ctx, msg(MsgType::ack, 5, 0, x.m.seq, 2));
    for (int i = 0; i < confirmations; ++i) {
      const auto from = static_cast<NodeId>(10 + i);
      deliver(f.w(), f.ctx, msg(MsgType::sync, from, 0, 0, 0, {{GossipKind::suspect, 2, 0, from}}));
    }
    // Echoes of the same confirmation do not count twice; a member repeating itself counts once;
    // a claim relayed (or forged) in another member's name is no confirmation.
    deliver(f.w(), f.ctx, msg(MsgType::sync, 4, 0, 0, 0, {{GossipKind::suspect, 2, 0, 3}}));
    deliver(f.w(), f.ctx, msg(MsgType::sync, 3, 0, 0, 0, {{GossipKind::dead, 2, 0, 3}}));
    for (NodeId forged = 10; forged < 20; ++forged)
      deliver(f.w(), f.ctx, msg(MsgType::sync, 4, 0, 0, 0, {{GossipKind::dead, 2, 0, forged}}));
    Duration t{0};
    while (f.w().member(2)->state != State::dead && t < 200s) {
      f.ctx.advance(f.w(), 100ms);
      t += 100ms;
    }
    return t;
  };
  const Duration none = time_to_death(0), one = time_to_death(1), three = time_to_death(3), ten = time_to_death(10);
  const double n = 20;
  const double tmin = 4.0 * std::log10(n), tmax = 3 * tmin;
  // Only others' claims: at expiry one direct ping of our own, unanswered for a probe timeout.
  const double check = to_seconds(cfg.probe_timeout);
  CHECK(to_seconds(none) == Approx(tmax + check).margin(0.11));
  CHECK(one < none);
  CHECK(three < one);
  CHECK(to_seconds(three) == Approx(tmin + check).margin(0.11));
  CHECK(ten == three);  // never below Tmin
}

TEST_CASE("gossip: bounded buffer, λ·ln(n+1) retransmits, fits the datagram with role state") {
  SwimConfig cfg;
  cfg.max_gossip_buffer = 4;
  Fixture f(cfg);
  for (NodeId i = 100; i < 110; ++i)
    deliver(f.w(), f.ctx, msg(MsgType::sync, 2, 0, 0, 0, {{GossipKind::alive, i, 0, i}}));
  CHECK(f.w().gossip_buffer_size() <= 4);
  CHECK(f.w().stats().gossip_evicted >= 6);

  SwimConfig c2;
  Fixture g(c2);
  REQUIRE(g.w().set_local_state(Bytes(kMaxStateBytes, 7)).ok());
  CHECK(g.w().set_local_state(Bytes(kMaxStateBytes + 1, 7)).code() == Errc::invalid_argument);
  g.ctx.take();
  for (NodeId i = 100; i < 160; ++i)
    deliver(g.w(), g.ctx, msg(MsgType::sync, 2, 0, 0, 0, {{GossipKind::alive, i, 0, i}}));
  g.ctx.take();
  std::map<NodeId, int> times;
  for (int i = 0; i < 200; ++i) {
    deliver(g.w(), g.ctx, msg(MsgType::ping, 2, 0, static_cast<std::uint32_t>(i), 1));
    for (auto& s : g.ctx.take()) {
      CHECK(s.bytes <= kDatagramBudget);
      CHECK(s.m.state.size() == kMaxStateBytes);
      for (auto& gg : s.m.gossip) times[gg.node]++;
    }
  }
  const int n = static_cast<int>(g.w().alive_count()) + 1;
  const int limit = static_cast<int>(std::ceil(3.0 * std::log(n + 1.0)));
  for (auto& [node, k] : times) CHECK(k <= limit + 1);  // +1: membership grew while sending
  CHECK(g.w().gossip_buffer_size() == 0);
}

TEST_CASE("the member table is bounded") {
  SwimConfig cfg;
  cfg.max_members = 3;
  Fixture f(cfg, {2, 3});
  for (NodeId i = 10; i < 20; ++i) deliver(f.w(), f.ctx, msg(MsgType::sync, i, 0, 0, 0));
  CHECK(f.w().members().size() == 3);
  CHECK(f.w().stats().members_refused_full == 9);
}

TEST_CASE("incarnation is persisted and a restart comes back higher") {
  FakeCtx ctx;
  {
    Swim a(SwimConfig{});
    a.on_start(ctx);
    CHECK(a.incarnation() == 0);
    deliver(a, ctx, msg(MsgType::sync, 2, 0, 0, 0, {{GossipKind::suspect, 1, 0, 2}}));
    CHECK(a.incarnation() == 1);
  }
  Swim b(SwimConfig{});
  b.on_start(ctx);  // same disk
  CHECK(b.incarnation() == 2);
}

// ---------------- forged claims (issue 21, defect 8) ----------------

namespace {
std::size_t count_to(const Fixture& f, NodeId node, State to) {
  return static_cast<std::size_t>(std::count_if(f.changes.begin(), f.changes.end(),
                                                [&](const MemberEvent& e) { return e.node == node && e.to == to; }));
}
}  // namespace

TEST_CASE("a dead claim from another member only starts our suspicion; the suspect's ack clears it") {
  Fixture f;
  f.ctx.ticks = false;
  deliver(f.w(), f.ctx, msg(MsgType::sync, 3, 0, 0, 0, {{GossipKind::dead, 2, 0, 3}}));
  CHECK(f.w().member(2)->state == State::suspect);  // no stronger than a suspect claim
  CHECK(f.dead.empty());
  // We check it ourselves at once: a ping to the suspect.
  auto out = f.ctx.take();
  FakeCtx::Sent verify{};
  for (auto& x : out)
    if (x.to == 2 && x.m.type == MsgType::ping) verify = x;
  REQUIRE(verify.to == 2);
  CHECK(f.w().stats().verify_pings == 1);
  // The same member repeating the claim, and the claim in other members' names, change nothing.
  for (int i = 0; i < 20; ++i)
    deliver(f.w(), f.ctx, msg(MsgType::sync, 3, 0, 0, 0, {{GossipKind::dead, 2, 0, static_cast<NodeId>(3 + i % 3)}}));
  CHECK(f.dead.empty());
  // An ack from a proxy is no proof; an ack from the suspect itself is.
  deliver(f.w(), f.ctx, msg(MsgType::ack, 4, 0, verify.m.seq, 2));
  CHECK(f.w().member(2)->state == State::suspect);
  deliver(f.w(), f.ctx, msg(MsgType::ack, 2, 0, verify.m.seq, 2));
  CHECK(f.w().member(2)->state == State::alive);
  CHECK(f.w().stats().suspicions_disproved == 1);
  f.ctx.advance(f.w(), 60s);
  CHECK(f.dead.empty());
  CHECK(f.w().member(2)->state == State::alive);
}

TEST_CASE("a suspicion started by others' claims: our own check (ping, then proxies) confirms it if unanswered") {
  SwimConfig cfg;
  Fixture f(cfg);
  f.ctx.ticks = false;
  deliver(f.w(), f.ctx, msg(MsgType::sync, 3, 0, 0, 0, {{GossipKind::suspect, 2, 0, 3}}));
  auto out = f.ctx.take();
  REQUIRE(out.size() == 1);
  CHECK(out[0].to == 2);
  CHECK(out[0].m.type == MsgType::ping);
  const auto seq = out[0].m.seq;
  // No ack within the probe timeout: k proxies are asked, and a second direct ping goes out.
  f.ctx.advance(f.w(), cfg.probe_timeout);
  out = f.ctx.take();
  std::size_t reqs = 0, pings = 0;
  for (auto& x : out) {
    if (x.m.type == MsgType::ping_req && x.m.seq == seq && x.m.target == 2 && x.to != 2) ++reqs;
    if (x.m.type == MsgType::ping && x.m.seq == seq && x.to == 2) ++pings;
  }
  CHECK(reqs == 3);
  CHECK(pings == 1);
  // Still nothing: our own evidence, a confirmation by us that we gossip first-hand.
  f.ctx.advance(f.w(), cfg.probe_timeout);
  out = f.ctx.take();
  CHECK(f.w().member(2)->state == State::suspect);
  const Duration tmax = f.w().suspicion_max();
  f.ctx.advance(f.w(), tmax - 2 * cfg.probe_timeout - 1s);  // T(1) + one last ping < Tmax: dead before it
  CHECK(f.w().member(2)->state == State::dead);
  CHECK(f.w().stats().final_checks == 1);  // one last ping at the deadline
  REQUIRE(f.dead.size() == 1);
  CHECK(f.dead[0] == std::make_pair(NodeId{2}, false));
  CHECK(count_to(f, 2, State::dead) == 1);
}

TEST_CASE("a suspicion started by others' claims, our check answered only through a proxy: one final check at expiry") {
  SwimConfig cfg;
  Fixture f(cfg);
  f.ctx.ticks = false;
  deliver(f.w(), f.ctx, msg(MsgType::sync, 3, 0, 0, 0, {{GossipKind::suspect, 2, 0, 3}}));
  auto out = f.ctx.take();
  REQUIRE(out.size() == 1);
  deliver(f.w(), f.ctx, msg(MsgType::ack, 4, 0, out[0].m.seq, 2));  // relayed by proxy 4: no proof
  CHECK(f.w().member(2)->state == State::suspect);
  const Duration tmax = f.w().suspicion_max();
  f.ctx.advance(f.w(), tmax);
  CHECK(f.w().member(2)->state == State::suspect);
  CHECK(f.w().stats().final_checks == 1);
  out = f.ctx.take();
  REQUIRE(out.size() == 2);  // the final direct check, sent twice
  CHECK(out[0].to == 2);
  CHECK(out[0].m.type == MsgType::ping);
  f.ctx.advance(f.w(), cfg.probe_timeout);
  CHECK(f.w().member(2)->state == State::dead);
  REQUIRE(f.dead.size() == 1);
}

TEST_CASE("claims above the incarnation a member announced are refused; only the member raises it") {
  Fixture f;
  f.ctx.ticks = false;
  deliver(f.w(), f.ctx, msg(MsgType::sync, 3, 0, 0, 0, {{GossipKind::suspect, 2, 1, 3}}));
  deliver(f.w(), f.ctx, msg(MsgType::sync, 3, 0, 0, 0, {{GossipKind::dead, 2, 999, 3}}));
  deliver(f.w(), f.ctx, msg(MsgType::sync, 3, 0, 0, 0, {{GossipKind::left, 2, 2, 2}}));  // a relayed leave: ≤ +1
  CHECK(f.w().member(2)->state == State::alive);
  CHECK(f.w().member(2)->incarnation == 0);
  CHECK(f.w().stats().claims_rejected == 3);
  // The member itself announces a higher incarnation (any size): believed.
  deliver(f.w(), f.ctx, msg(MsgType::sync, 2, 4000, 0, 0));
  CHECK(f.w().member(2)->incarnation == 4000);
  // Claims about us far above what we announced are not refuted (no refute token, no jump).
  const auto inc0 = f.w().incarnation();
  deliver(f.w(), f.ctx, msg(MsgType::sync, 3, 0, 0, 0, {{GossipKind::dead, 1, inc0 + 5000, 3}}));
  CHECK(f.w().incarnation() == inc0);
  CHECK(f.w().stats().refutations == 0);
  CHECK(f.dead.empty());
}

TEST_CASE("a leave is believed at once from the member itself; relayed, it is a suspicion reported as left") {
  Fixture f;
  f.ctx.ticks = false;
  deliver(f.w(), f.ctx, msg(MsgType::sync, 2, 1, 0, 0, {{GossipKind::left, 2, 1, 2}}));
  CHECK(f.w().member(2)->state == State::left);
  REQUIRE(f.dead.size() == 1);
  CHECK(f.dead[0] == std::make_pair(NodeId{2}, true));
  deliver(f.w(), f.ctx, msg(MsgType::sync, 3, 0, 0, 0, {{GossipKind::left, 4, 1, 4}}));
  CHECK(f.w().member(4)->state == State::suspect);
  CHECK(f.dead.size() == 1);
  f.ctx.advance(f.w(), 60s);  // 4 is gone quiet: our own suspicion expires
  CHECK(f.w().member(4)->state == State::left);
  REQUIRE(f.dead.size() == 2);
  CHECK(f.dead[1] == std::make_pair(NodeId{4}, true));
}

TEST_CASE("a suspect's own refutation clears the suspicion") {
  Fixture f;
  f.ctx.ticks = false;
  deliver(f.w(), f.ctx, msg(MsgType::sync, 3, 0, 0, 0, {{GossipKind::suspect, 2, 0, 3}}));
  REQUIRE(f.w().member(2)->state == State::suspect);
  deliver(f.w(), f.ctx, msg(MsgType::sync, 4, 0, 0, 0, {{GossipKind::alive, 2, 1, 2}}));  // relayed refutation
  CHECK(f.w().member(2)->state == State::alive);
  CHECK(f.w().member(2)->incarnation == 1);
  f.ctx.advance(f.w(), 60s);
  CHECK(f.dead.empty());
}
