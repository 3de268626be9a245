// Election driven by hand through a fake Context: wire decoding, bad input, durable votes across a
// restart, fail-closed on a corrupt stored state.
#include <catch2/catch.hpp>

#include <map>

#include "hyperscale/base/log.hpp"
#include "hyperscale/cluster/codec.hpp"
#include "hyperscale/cluster/election.hpp"
#include "hyperscale/sim/mem_disk.hpp"

using namespace hs;
using namespace hs::cluster;
using namespace std::chrono_literals;

namespace {

struct QuietLogs {
  QuietLogs() { log::set_level(log::Level::off); }
  ~QuietLogs() { log::set_level(log::Level::info); }
};

// A Context whose effects are recorded; timers fire only when the test says so.
class FakeCtx final : public node::Context {
 public:
  FakeCtx(node::NodeId self, sim::MemDisk& disk) : self_(self), disk_(disk) {}
  node::NodeId self() const override { return self_; }
  const Clock& clock() const override { return clock_; }
  Rng& rng() override { return rng_; }
  void send(node::NodeId to, node::Bytes msg) override { sent.emplace_back(to, std::move(msg)); }
  node::TimerId set_timer(Duration after, std::uint64_t tag) override {
    const node::TimerId id = next_++;
    timers[id] = {clock_.now() + after, tag};
    return id;
  }
  void cancel_timer(node::TimerId id) override { timers.erase(id); }
  node::Disk& disk() override { return disk_; }
  node::TimerId sync(std::uint64_t tag) override {
    const node::TimerId id = set_timer(Duration{0}, tag);
    syncs.push_back(id);
    return id;
  }

  // Fires every timer due at or before now + d (in time order), advancing the clock.
  void advance(node::Node& n, Duration d) {
    const Instant end = clock_.now() + d;
    for (;;) {
      auto best = timers.end();
      for (auto it = timers.begin(); it != timers.end(); ++it)
        if (it->second.first <= end && (best == timers.end() || it->second.first < best->second.first)) best = it;
      if (best == timers.end()) break;
      const auto [id, t] = *best;
      timers.erase(best);
      if (t.first > clock_.now()) clock_.set(t.first);
      n.on_timer(*this, id, t.second);
    }
    clock_.set(end);
  }
  // Completes pending syncs only.
  void complete_syncs(node::Node& n) {
    auto ids = std::move(syncs);
    syncs.clear();
    for (node::TimerId id : ids) {
      auto it = timers.find(id);
      if (it == timers.end()) continue;
      const std::uint64_t tag = it->second.second;
      timers.erase(it);
      n.on_timer(*this, id, tag);
    }
  }

  std::vector<std::pair<node::NodeId, node::Bytes>> sent;
  std::map<node::TimerId, std::pair<Instant, std::uint64_t>> timers;
  std::vector<node::TimerId> syncs;
  ManualClock clock_{Instant{1000s}};

 private:
  node::NodeId self_;
  sim::MemDisk& disk_;
  Rng rng_{7};
  node::TimerId next_ = 1;
};

ElectionConfig cfg3() {
  ElectionConfig c;
  c.members = {1, 2, 3};
  return c;
}

node::Bytes msg(std::uint8_t type, std::initializer_list<std::uint64_t> vars, std::optional<bool> flag = {}) {
  Writer w;
  w.u8(1);
  w.u8(type);
  for (auto v : vars) w.var(v);
  if (flag) w.b(*flag);
  return w.take();
}
node::Bytes vote_req(std::uint64_t term) { return msg(3, {term}); }
node::Bytes heartbeat(std::uint64_t term, std::int64_t sent) {
  Writer w;
  w.u8(1);
  w.u8(5);
  w.var(term);
  w.i64(sent);
  return w.take();
}

// (term, granted) of a vote response.
std::pair<std::uint64_t, bool> read_vote_resp(const node::Bytes& b) {
  Reader r(b);
  REQUIRE(r.u8() == 1);
  REQUIRE(r.u8() == 4);
  const std::uint64_t t = r.var();
  const bool g = r.b();
  REQUIRE(r.done());
  return {t, g};
}

struct Snapshot {
  std::uint64_t term;
  std::optional<node::NodeId> vote, leader;
  bool leading;
  std::optional<node::Bytes> disk;
  bool operator==(const Snapshot&) const = default;
};
Snapshot snap(const Election& e, const sim::MemDisk& d) {
  return {e.term(), e.voted_for(), e.leader(), e.is_leader(), d.get(std::string(Election::kStateKey))};
}

}  // namespace

TEST_CASE("a vote is sent only after it is durable, and a restarted node does not vote twice in that term") {
  QuietLogs q;
  sim::MemDisk disk;
  FakeCtx ctx(2, disk);
  {
    Election e(cfg3());
    e.on_start(ctx);
    ctx.advance(e, 6s);  // past the boot quiet period (its own pre-vote goes out: ignore it)
    ctx.sent.clear();
    e.on_message(ctx, 1, vote_req(e.term() + 1));
    CHECK(e.voted_for() == node::NodeId{1});
    CHECK(e.stats().votes_granted == 1);
    CHECK(ctx.sent.empty());  // not before the sync completes
    REQUIRE(disk.get(std::string(Election::kStateKey)).has_value());
    ctx.complete_syncs(e);
    REQUIRE(ctx.sent.size() == 1);
    CHECK(ctx.sent[0].first == 1);
    CHECK(read_vote_resp(ctx.sent[0].second) == std::make_pair(e.term(), true));
  }
  const std::uint64_t voted_term = 1;
  // Restart: a fresh Election on the same disk.
  Election e(cfg3());
  ctx.timers.clear();
  ctx.syncs.clear();
  ctx.sent.clear();
  e.on_start(ctx);
  CHECK(e.term() == voted_term);
  CHECK(e.voted_for() == node::NodeId{1});
  // Inside the boot quiet period every vote is refused.
  e.on_message(ctx, 3, vote_req(voted_term));
  REQUIRE(ctx.sent.size() == 1);
  CHECK(read_vote_resp(ctx.sent[0].second) == std::make_pair(voted_term, false));
  ctx.sent.clear();
  ctx.clock_.advance(6s);  // quiet period over (no timers fired: the node did not start a round)
  e.on_message(ctx, 3, vote_req(voted_term));
  ctx.complete_syncs(e);
  REQUIRE(ctx.sent.size() == 1);
  CHECK(read_vote_resp(ctx.sent[0].second) == std::make_pair(voted_term, false));  // already voted for 1
  CHECK(e.voted_for() == node::NodeId{1});
  // The same candidate asking again (duplicate request) gets the same answer.
  ctx.sent.clear();
  e.on_message(ctx, 1, vote_req(voted_term));
  ctx.complete_syncs(e);
  REQUIRE(ctx.sent.size() == 1);
  CHECK(read_vote_resp(ctx.sent[0].second) == std::make_pair(voted_term, true));
  // A higher term is a fresh vote.
  ctx.sent.clear();
  e.on_message(ctx, 3, vote_req(voted_term + 1));
  ctx.complete_syncs(e);
  REQUIRE(ctx.sent.size() == 1);
  CHECK(read_vote_resp(ctx.sent[0].second) == std::make_pair(voted_term + 1, true));
  CHECK(e.voted_for() == node::NodeId{3});
}

TEST_CASE("a candidacy is announced only after the term and self-vote are durable") {
  QuietLogs q;
  sim::MemDisk disk;
  FakeCtx ctx(1, disk);
  Election e(cfg3());
  e.on_start(ctx);
  ctx.advance(e, 7s + 1ms);  // the election timer fires: pre-vote round
  REQUIRE(e.stats().prevotes_started == 1);
  REQUIRE(ctx.sent.size() == 2);
  // Grant the pre-vote from 2: quorum (2 of 3) -> candidacy in term 1, persisted, not yet announced.
  ctx.sent.clear();
  Writer w;
  w.u8(1);
  w.u8(2);
  w.var(0);
  w.var(1);  // round 1
  w.b(true);
  e.on_message(ctx, 2, w.take());
  CHECK(e.term() == 1);
  CHECK(e.voted_for() == node::NodeId{1});
  CHECK(e.stats().elections_started == 1);
  CHECK(ctx.sent.empty());
  ctx.complete_syncs(e);
  CHECK(ctx.sent.size() == 2);  // vote requests to 2 and 3
  // A vote from 3 wins the term; leadership (is_leader) needs a quorum ack of a heartbeat.
  ctx.sent.clear();
  e.on_message(ctx, 3, msg(4, {1}, true));
  CHECK(e.leader() == node::NodeId{1});
  CHECK_FALSE(e.is_leader());
  CHECK(e.stats().terms_won == 1);
  REQUIRE(ctx.sent.size() == 2);  // heartbeats
  Reader r(ctx.sent[0].second);
  r.u8();
  REQUIRE(r.u8() == 5);
  REQUIRE(r.var() == 1);
  const std::int64_t sent = r.i64();
  Writer a;
  a.u8(1);
  a.u8(6);
  a.var(1);
  a.i64(sent);
  a.b(true);
  e.on_message(ctx, 2, a.take());
  CHECK(e.is_leader());
  CHECK(e.has_quorum());
  // Without further acks the lease ends and is_leader() turns false at that instant; after 3 failed
  // checks the leader steps down.
  ctx.advance(e, 4s + 1ms);
  CHECK_FALSE(e.is_leader());
  CHECK(e.leader() == node::NodeId{1});
  ctx.advance(e, 3s);
  CHECK(e.stats().stepdowns == 1);
  CHECK(e.stats().failed_quorum_checks == 3);
  CHECK_FALSE(e.leader().has_value());
}

TEST_CASE("malformed input is counted as a decode error and changes nothing") {
  QuietLogs q;
  sim::MemDisk disk;
  FakeCtx ctx(2, disk);
  Election e(cfg3());
  e.on_start(ctx);
  e.on_message(ctx, 1, heartbeat(3, ctx.now().count()));  // follow 1 in term 3
  REQUIRE(e.leader() == node::NodeId{1});
  REQUIRE(e.term() == 3);
  ctx.sent.clear();
  const Snapshot before = snap(e, disk);
  const auto timers_before = ctx.timers;

  std::vector<node::Bytes> bad = {
      {},                              // empty
      {1},                             // no type
      {2, 5, 3, 0},                    // unknown version
      {1, 99, 1},                      // unknown type
      {1, 5, 4},                       // heartbeat truncated (no sent)
      {1, 3},                          // vote request without term
      {1, 3, 5, 0},                    // trailing byte
      {1, 4, 5, 7},                    // vote response: bad bool
      {1, 6, 5, 0, 2},                 // ack with bad bool
      {1, 3, 0},                       // term 0
      {1, 5, 0xff, 0xff, 0xff, 0xff},  // truncated varint
  };
  // A term beyond kMaxTerm (no overflow of term + 1).
  {
    Writer w;
    w.u8(1);
    w.u8(3);
    w.var(Election::kMaxTerm + 1);
    bad.push_back(w.take());
  }
  // An over-long varint.
  bad.push_back({1, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01});
  // Every strict prefix of valid messages.
  for (const node::Bytes& good : {vote_req(9), heartbeat(9, 12345), msg(4, {9}, true), msg(2, {9, 4}, true)})
    for (std::size_t n = 0; n < good.size(); ++n) bad.emplace_back(good.begin(), good.begin() + n);
  // Random bytes.
  Rng rng(99);
  for (int i = 0; i < 2000; ++i) {
    node::Bytes b(rng.below(24));
    for (auto& c : b) c = static_cast<std::uint8_t>(rng.next_u64());
    if (b.size() >= 2 && b[0] == 1 && b[1] >= 1 && b[1] <= 6) b[0] = 0;  // keep it invalid: bad version
    bad.push_back(b);
  }
  for (const auto& b : bad) e.on_message(ctx, 1, b);
  CHECK(e.stats().decode_errors == bad.size());
  CHECK(snap(e, disk) == before);
  CHECK(ctx.sent.empty());
  CHECK(ctx.timers == timers_before);

  // From a non-member or from self: counted, dropped.
  e.on_message(ctx, 42, vote_req(10));
  e.on_message(ctx, 2, vote_req(10));
  CHECK(e.stats().unknown_sender == 2);
  CHECK(snap(e, disk) == before);
  CHECK(ctx.sent.empty());
}

TEST_CASE("an ack echoing a send time in the future is dropped") {
  QuietLogs q;
  sim::MemDisk disk;
  FakeCtx ctx(1, disk);
  ElectionConfig c;
  c.members = {1, 2, 3};
  Election e(c);
  e.on_start(ctx);
  ctx.advance(e, 7s + 1ms);
  Writer w;
  w.u8(1);
  w.u8(2);
  w.var(0);
  w.var(1);
  w.b(true);
  e.on_message(ctx, 2, w.take());
  ctx.complete_syncs(e);
  e.on_message(ctx, 2, msg(4, {1}, true));
  REQUIRE(e.leader() == node::NodeId{1});
  Writer a;
  a.u8(1);
  a.u8(6);
  a.var(1);
  a.i64((ctx.now() + 1h).count());
  a.b(true);
  const auto errs = e.stats().decode_errors;
  e.on_message(ctx, 2, a.take());
  CHECK(e.stats().decode_errors == errs + 1);
  CHECK_FALSE(e.is_leader());
}

TEST_CASE("an unreadable stored state makes the node passive: it never votes or campaigns") {
  QuietLogs q;
  sim::MemDisk disk;
  const node::Bytes junk = {9, 9, 9};
  REQUIRE(disk.put(std::string(Election::kStateKey), junk).ok());
  FakeCtx ctx(2, disk);
  Election e(cfg3());
  e.on_start(ctx);
  CHECK(e.stats().state_corrupt == 1);
  ctx.advance(e, 30s);
  CHECK(e.stats().prevotes_started == 0);
  ctx.sent.clear();
  e.on_message(ctx, 1, vote_req(1));
  ctx.complete_syncs(e);
  REQUIRE(ctx.sent.size() == 1);
  CHECK(read_vote_resp(ctx.sent[0].second).second == false);
  CHECK(disk.get(std::string(Election::kStateKey)) == junk);  // left for the operator
}

TEST_CASE("a disk that refuses the write refuses the vote") {
  QuietLogs q;
  sim::MemDisk disk(sim::MemDisk::Limits{.max_bytes = 0, .max_keys = 0, .max_logs = 0});
  FakeCtx ctx(2, disk);
  Election e(cfg3());
  e.on_start(ctx);
  ctx.clock_.advance(6s);
  e.on_message(ctx, 1, vote_req(1));
  ctx.complete_syncs(e);
  CHECK_FALSE(e.voted_for().has_value());
  CHECK(e.stats().disk_errors >= 1);
  REQUIRE(ctx.sent.size() == 1);
  CHECK(read_vote_resp(ctx.sent[0].second).second == false);
}

TEST_CASE("a config that breaks a relation the protocol relies on is refused, naming the fields") {
  QuietLogs q;
  CHECK(check_config(cfg3()).ok());
  auto refused = [](ElectionConfig c, const std::string& words) {
    INFO(words);
    const Status st = check_config(c);
    REQUIRE_FALSE(st.ok());
    CHECK(st.message().find(words) != std::string::npos);
    CHECK_THROWS_AS(Election(c), std::invalid_argument);
  };
  ElectionConfig c = cfg3();
  c.lease = 10s;  // above 90 % of election_timeout_min (5 s)
  refused(c, "lease (10000 ms) must be at most 90 % of election_timeout_min (5000 ms)");
  c = cfg3();
  c.lease = 4501ms;
  refused(c, "lease (4501 ms)");
  c = cfg3();
  c.heartbeat = 4s;  // not below the lease (4 s)
  refused(c, "lease (4000 ms) must be longer than heartbeat (4000 ms)");
  c = cfg3();
  c.heartbeat = 0s;
  refused(c, "heartbeat (0 ms) must be positive");
  c = cfg3();
  c.election_timeout_min = 9s;
  c.election_timeout_max = 2s;
  refused(c, "election_timeout_max (2000 ms) must not be below election_timeout_min (9000 ms)");
  c = cfg3();
  c.lease = 4500ms;  // exactly 90 %: allowed
  Election e(c);
  CHECK(e.config().lease == 4500ms);
  CHECK(e.quorum() == 2);
  ElectionConfig one;
  one.members = {5, 5};
  CHECK(Election(one).quorum() == 1);
}

TEST_CASE("a single-member cluster elects itself") {
  QuietLogs q;
  sim::MemDisk disk;
  FakeCtx ctx(1, disk);
  ElectionConfig c;
  c.members = {1};
  Election e(c);
  int changes = 0;
  e.on_change = [&](bool, std::uint64_t, std::optional<node::NodeId>) { ++changes; };
  e.on_start(ctx);
  ctx.advance(e, 8s);
  CHECK(e.is_leader());
  CHECK(e.term() == 1);
  ctx.advance(e, 60s);
  CHECK(e.is_leader());
  CHECK(e.term() == 1);
  CHECK(changes == 2);  // (false, 1, none) at the candidacy, then (true, 1, 1)
}
