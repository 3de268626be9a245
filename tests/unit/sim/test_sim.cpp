#include <catch2/catch.hpp>

#include <map>

#include "hyperscale/base/log.hpp"
#include "hyperscale/sim/simulator.hpp"

using namespace hs;
using namespace hs::node;
using namespace hs::sim;
using namespace std::chrono_literals;

namespace {

// Records what it receives; on start sends `burst` messages to `peer` and arms a timer.
struct Probe final : Node {
  NodeId peer = 0;
  int burst = 0;
  std::vector<std::pair<NodeId, Bytes>> got;
  std::vector<std::pair<Instant, std::uint64_t>> timers;
  Instant started{-1};
  std::uint64_t memory = 0;  // lost on crash
  void on_start(Context& ctx) override {
    started = ctx.now();
    auto v = ctx.disk().get("boots");
    Bytes b{static_cast<std::uint8_t>(v ? (*v)[0] + 1 : 1)};
    REQUIRE(ctx.disk().put("boots", b).ok());
    for (int i = 0; i < burst; ++i) ctx.send(peer, Bytes{static_cast<std::uint8_t>(i)});
    ctx.set_timer(1s, 7);
    TimerId cancelled = ctx.set_timer(500ms, 8);
    ctx.cancel_timer(cancelled);
  }
  void on_message(Context& ctx, NodeId from, std::span<const std::uint8_t> m) override {
    got.emplace_back(from, Bytes(m.begin(), m.end()));
    memory++;
    (void)ctx;
  }
  void on_timer(Context& ctx, TimerId, std::uint64_t tag) override { timers.emplace_back(ctx.now(), tag); }
};

std::unique_ptr<Simulator> pair_sim(std::uint64_t seed, int burst, NetworkOptions net = {}) {
  SimOptions o;
  o.seed = seed;
  o.net = net;
  auto s = std::make_unique<Simulator>(o);
  REQUIRE(s->add_node(1, [burst](NodeId) {
             auto p = std::make_unique<Probe>();
             p->peer = 2;
             p->burst = burst;
             return p;
           }).ok());
  REQUIRE(s->add_node(2, [](NodeId) { return std::make_unique<Probe>(); }).ok());
  s->start_all();
  return s;
}

Probe* probe(Simulator& s, NodeId id) { return static_cast<Probe*>(s.node(id)); }

}  // namespace

TEST_CASE("messages arrive after the configured latency; timers fire on time; cancelled timers never fire") {
  auto s = pair_sim(1, 10);
  REQUIRE(s->run_for(2s).ok());
  Probe* b = probe(*s, 2);
  CHECK(b->got.size() == 10);
  Probe* a = probe(*s, 1);
  REQUIRE(a->timers.size() == 1);
  CHECK(a->timers[0].first == Instant{1s});
  CHECK(a->timers[0].second == 7);
  CHECK(s->counters().delivered == 10);
}

TEST_CASE("the same seed replays the same trace; a different seed does not") {
  NetworkOptions net;
  net.loss = 0.2;
  net.duplicate = 0.2;
  net.reorder = 0.3;
  auto a = pair_sim(5, 200, net), b = pair_sim(5, 200, net), c = pair_sim(6, 200, net);
  REQUIRE(a->run_for(5s).ok());
  REQUIRE(b->run_for(5s).ok());
  REQUIRE(c->run_for(5s).ok());
  CHECK(a->trace_hash() == b->trace_hash());
  CHECK(probe(*a, 2)->got == probe(*b, 2)->got);
  CHECK(a->trace_hash() != c->trace_hash());
}

TEST_CASE("loss, duplication and reordering are applied and counted") {
  NetworkOptions net;
  net.loss = 0.3;
  net.duplicate = 0.2;
  net.reorder = 0.5;
  auto s = pair_sim(9, 2000, net);
  REQUIRE(s->run_for(5s).ok());
  const auto& c = s->counters();
  CHECK(c.dropped_loss > 450);
  CHECK(c.dropped_loss < 750);
  CHECK(c.duplicated > 200);
  CHECK(c.reordered > 400);
  auto& got = probe(*s, 2)->got;
  CHECK(got.size() == c.delivered);
  bool out_of_order = false;
  for (std::size_t i = 1; i < got.size(); ++i)
    if (got[i].second[0] < got[i - 1].second[0]) out_of_order = true;
  CHECK(out_of_order);
}

TEST_CASE("two-way and one-way partitions") {
  auto s = pair_sim(3, 5);
  s->block(1, 2);
  CHECK(s->blocked(1, 2));
  CHECK_FALSE(s->blocked(2, 1));
  REQUIRE(s->run_for(1s).ok());
  CHECK(probe(*s, 2)->got.empty());
  CHECK(s->counters().dropped_partition == 5);
  s->heal();
  s->partition({1}, {2});
  CHECK(s->blocked(2, 1));
  s->heal();
  CHECK_FALSE(s->blocked(1, 2));
}

namespace {
// Sends one message to each peer on start; records when each message arrives.
struct Stamp final : Node {
  std::vector<NodeId> peers;
  std::vector<std::pair<NodeId, Instant>> got;
  void on_start(Context& ctx) override {
    for (NodeId p : peers) ctx.send(p, Bytes{1});
  }
  void on_message(Context& ctx, NodeId from, std::span<const std::uint8_t>) override {
    got.emplace_back(from, ctx.now());
  }
  void on_timer(Context&, TimerId, std::uint64_t) override {}
};
}  // namespace

TEST_CASE("per-link delay: only the delayed links are slower, both ways for groups; zero removes it; replayable") {
  auto run = [](bool delay) {
    SimOptions o;
    o.seed = 3;
    o.net.min_latency = 1ms;
    o.net.mean_extra_latency = Duration{0};
    auto s = std::make_unique<Simulator>(o);
    for (NodeId id : {1, 2, 3})
      REQUIRE(s->add_node(id, [](NodeId self) {
                 auto n = std::make_unique<Stamp>();
                 for (NodeId p : {1, 2, 3})
                   if (p != self) n->peers.push_back(p);
                 return n;
               }).ok());
    if (delay) {
      REQUIRE(s->set_group_delay({1}, {3}, 150ms).ok());  // 1 <-> 3
      REQUIRE(s->set_link_delay(2, 3, 40ms).ok());        // 2 -> 3 only
      CHECK(s->link_delay(3, 1) == 150ms);
      CHECK(s->link_delay(3, 2) == Duration{0});
    }
    s->start_all();
    REQUIRE(s->run_for(1s).ok());
    std::map<std::pair<NodeId, NodeId>, Instant> at;  // (from, to) -> arrival
    for (NodeId id : {1, 2, 3})
      for (auto& [from, t] : static_cast<Stamp*>(s->node(id))->got) at[{from, id}] = t;
    return std::make_pair(at, s->trace_hash());
  };
  auto [plain, h0] = run(false);
  auto [slow, h1] = run(true);
  auto [again, h2] = run(true);
  CHECK(plain.at({1, 2}) == Instant{1ms});
  CHECK(slow.at({1, 2}) == Instant{1ms});
  CHECK(slow.at({2, 1}) == Instant{1ms});
  CHECK(slow.at({1, 3}) == Instant{151ms});
  CHECK(slow.at({3, 1}) == Instant{151ms});
  CHECK(slow.at({2, 3}) == Instant{41ms});
  CHECK(slow.at({3, 2}) == Instant{1ms});
  CHECK(slow == again);
  CHECK(h1 == h2);
  (void)h0;

  SimOptions o;
  o.max_link_delays = 2;
  Simulator s(o);
  CHECK(s.set_link_delay(1, 2, 5ms).ok());
  CHECK(s.set_link_delay(2, 1, 5ms).ok());
  CHECK_FALSE(s.set_link_delay(1, 3, 5ms).ok());    // bounded
  CHECK(s.set_link_delay(1, 2, 7ms).ok());          // an update is not a new link
  CHECK(s.set_link_delay(1, 2, Duration{0}).ok());  // removed: room again
  CHECK(s.set_link_delay(1, 3, 5ms).ok());
  CHECK(s.link_delay(1, 2) == Duration{0});
  s.clear_link_delays();
  CHECK(s.link_delay(1, 3) == Duration{0});
}

TEST_CASE("crash loses memory and timers, keeps the disk; restart runs on_start again") {
  auto s = pair_sim(4, 3);
  REQUIRE(s->run_for(100ms).ok());
  CHECK(probe(*s, 2)->memory == 3);
  REQUIRE(s->crash(1).ok());
  CHECK(s->node(1) == nullptr);
  CHECK_FALSE(s->crash(1).ok());  // bad input: clear error, nothing changes
  REQUIRE(s->run_for(2s).ok());   // node 1's 1 s timer must not fire into a dead node
  REQUIRE(s->restart(1).ok());
  REQUIRE(s->run_for(100ms).ok());
  Probe* a = probe(*s, 1);
  CHECK(a->timers.empty());
  auto boots = s->disk(1)->get("boots");
  REQUIRE(boots);
  CHECK((*boots)[0] == 2);
  CHECK(probe(*s, 2)->got.size() == 6);
  CHECK_FALSE(s->restart(1).ok());
  CHECK_FALSE(s->add_node(1, nullptr).ok());
}

TEST_CASE("messages to a crashed node are dropped") {
  auto s = pair_sim(4, 3);
  REQUIRE(s->crash(2).ok());
  REQUIRE(s->run_for(1s).ok());
  CHECK(s->counters().dropped_down == 3);
}

TEST_CASE("clock skew: a node's clock and timers follow its own rate and offset") {
  SimOptions o;
  Simulator s(o);
  REQUIRE(s.add_node(1, [](NodeId) { return std::make_unique<Probe>(); }).ok());
  REQUIRE(s.set_clock_skew(1, 100s, 1.25).ok());
  CHECK_FALSE(s.set_clock_skew(1, 0s, 5.0).ok());
  CHECK_FALSE(s.set_clock_skew(9, 0s, 1.0).ok());
  s.start_all();
  REQUIRE(s.run_for(2s).ok());
  Probe* p = probe(s, 1);
  CHECK(p->started == Instant{100s});
  REQUIRE(p->timers.size() == 1);
  // 1 s on a clock running 1.25× fast is 0.8 s of global time: the node reads 100 + 1.25 × 0.8.
  CHECK(p->timers[0].first == Instant{101s});
}

TEST_CASE("a slow node handles incoming messages late") {
  auto s = pair_sim(8, 50);
  REQUIRE(s->set_slow(2, 5.0, 100ms).ok());
  CHECK_FALSE(s->set_slow(2, 0.5, 100ms).ok());
  REQUIRE(s->run_for(20ms).ok());
  const std::size_t early = probe(*s, 2)->got.size();
  REQUIRE(s->run_for(1s).ok());
  CHECK(early < 10);
  CHECK(probe(*s, 2)->got.size() == 50);
}

TEST_CASE("the invariant hook runs after every event and stops the run at the first failure") {
  auto s = pair_sim(2, 10);
  int calls = 0;
  s->set_invariant([&](Simulator& sm) -> Status {
    ++calls;
    if (probe(sm, 2) && probe(sm, 2)->got.size() >= 4) return make_error(Errc::internal, "four is too many");
    return ok_status();
  });
  Status st = s->run_for(2s);
  CHECK_FALSE(st.ok());
  CHECK(st.message().find("seed 2") != std::string::npos);
  CHECK(st.message().find("four is too many") != std::string::npos);
  CHECK(probe(*s, 2)->got.size() == 4);
  CHECK(calls >= 4);
}

TEST_CASE("scripted events run at their virtual time") {
  auto s = pair_sim(2, 0);
  Instant seen{-1};
  s->at(Instant{1500ms}, [&](Simulator& sm) { seen = sm.now(); });
  REQUIRE(s->run_for(1s).ok());
  CHECK(seen == Instant{-1});
  REQUIRE(s->run_for(1s).ok());
  CHECK(seen == Instant{1500ms});
}

TEST_CASE("MemDisk: key/value and logs, bounded, refusals change nothing") {
  MemDisk d(MemDisk::Limits{64, 2, 1});
  REQUIRE(d.put("a", Bytes{1, 2}).ok());
  REQUIRE(d.put("b", Bytes{3}).ok());
  CHECK(d.put("c", Bytes{4}).code() == Errc::backpressure);
  CHECK_FALSE(d.get("c"));
  CHECK(d.put("a", Bytes(100, 0)).code() == Errc::backpressure);
  CHECK(*d.get("a") == Bytes{1, 2});
  REQUIRE(d.append("wal", Bytes{9}).ok());
  REQUIRE(d.append("wal", Bytes{8}).ok());
  CHECK(d.append("other", Bytes{1}).code() == Errc::backpressure);
  CHECK(d.read_log("wal") == std::vector<Bytes>{Bytes{9}, Bytes{8}});
  REQUIRE(d.truncate_log("wal").ok());
  CHECK(d.read_log("wal").empty());
  CHECK(d.erase("zz").code() == Errc::not_found);
  REQUIRE(d.erase("a").ok());
}

TEST_CASE("MemDisk: replace_log swaps a log's content at once; a refusal leaves the old log") {
  MemDisk d(MemDisk::Limits{16, 10, 2});
  REQUIRE(d.append("idx", Bytes{1}).ok());
  REQUIRE(d.append("idx", Bytes{2}).ok());
  REQUIRE(d.append("idx", Bytes{3}).ok());
  const std::vector<Bytes> fresh = {Bytes{7, 7}, Bytes{8}};
  REQUIRE(d.replace_log("idx", fresh).ok());
  CHECK(d.read_log("idx") == fresh);
  CHECK(d.bytes() == 3);
  // Over the byte bound (the new content replaces the old one in the count): refused, old log stands.
  CHECK(d.replace_log("idx", std::vector<Bytes>{Bytes(17, 1)}).code() == Errc::backpressure);
  CHECK(d.read_log("idx") == fresh);
  CHECK(d.bytes() == 3);
  // 16 bytes fit once the 3 old ones are gone.
  REQUIRE(d.replace_log("idx", std::vector<Bytes>{Bytes(16, 1)}).ok());
  CHECK(d.bytes() == 16);
  // A new log is created (within the log bound); a third one is refused.
  REQUIRE(d.replace_log("idx", std::vector<Bytes>{Bytes{5}}).ok());
  REQUIRE(d.replace_log("other", std::vector<Bytes>{Bytes{6}}).ok());
  CHECK(d.read_log("other") == std::vector<Bytes>{Bytes{6}});
  CHECK(d.replace_log("third", std::vector<Bytes>{Bytes{1}}).code() == Errc::backpressure);
  CHECK(d.read_log("third").empty());
  // No records: the log is gone (and replacing a missing log with nothing is fine).
  REQUIRE(d.replace_log("other", {}).ok());
  CHECK(d.read_log("other").empty());
  REQUIRE(d.replace_log("never", {}).ok());
  REQUIRE(d.replace_log("third", std::vector<Bytes>{Bytes{1}}).ok());  // room for a log again
  CHECK(d.bytes() == 2);
}

TEST_CASE("seeds_to_run honours HS_SIM_SEED for replay") {
  setenv("HS_SIM_SEED", "77", 1);
  CHECK(seeds_to_run(200) == std::vector<std::uint64_t>{77});
  unsetenv("HS_SIM_SEED");
  CHECK(seeds_to_run(3) == std::vector<std::uint64_t>{1, 2, 3});
  CHECK(replay_command(5, "/bin/t", "x y").find("HS_SIM_SEED=5 /bin/t 'x y'") != std::string::npos);
}

namespace {
// Keeps the lines logged while it is installed (the simulator runs on this one thread).
struct LineSink final : log::Sink {
  std::vector<std::string> lines;
  LineSink() { log::set_sink(this); }
  ~LineSink() override { log::set_sink(nullptr); }
  void write(log::Level, std::string_view line) noexcept override { lines.emplace_back(line); }
};
// Role code as the simulator runs it: logs from a timer it set for 1.5 s after start.
struct Logger final : Node {
  void on_start(Context& ctx) override { ctx.set_timer(1500ms, 1); }
  void on_message(Context&, NodeId, std::span<const std::uint8_t>) override {}
  void on_timer(Context&, TimerId, std::uint64_t) override { log::warn("role", "tick", "what=from_role_code"); }
};
}  // namespace

TEST_CASE("role code's log lines inside the simulator carry virtual time and the node id") {
  LineSink sink;
  Simulator s(SimOptions{});
  REQUIRE(s.add_node(7, [](NodeId) { return std::make_unique<Logger>(); }).ok());
  s.start_all();
  REQUIRE(s.run_for(2s).ok());
  std::vector<std::string> ticks;
  for (const auto& l : sink.lines)
    if (l.find("event=tick") != std::string::npos) ticks.push_back(l);
  REQUIRE(ticks.size() == 1);
  // Virtual t = 1.5 s from the simulation's start (the epoch), not the wall clock.
  CHECK(ticks[0].rfind("ts=1970-01-01T00:00:01.500000Z level=warn shard=main node=7 comp=role event=tick", 0) == 0);
  // Outside the simulator's events the wall clock is back.
  log::warn("test", "after");
  CHECK(sink.lines.back().rfind("ts=1970", 0) == std::string::npos);
  CHECK(sink.lines.back().find("node=") == std::string::npos);
}
