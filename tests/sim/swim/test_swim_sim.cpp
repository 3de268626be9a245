// SWIM + Lifeguard inside the deterministic simulator: whole clusters, seeded faults, invariants
// checked after every event. A failing seed is printed with the command that replays it.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>
#include <memory>

#include "hyperscale/base/log.hpp"
#include "support/sim_cluster.hpp"

using namespace hs;
using namespace hs::swim;
using namespace std::chrono_literals;

namespace {

struct QuietLogs {
  QuietLogs() { log::set_level(log::Level::error); }
  ~QuietLogs() { log::set_level(log::Level::info); }
};

ClusterOptions small(std::size_t n, std::uint64_t seed) {
  ClusterOptions o;
  o.n = n;
  o.sim.seed = seed;
  o.cfg.period = 1s;
  o.cfg.probe_timeout = 400ms;
  return o;
}

std::string replay(std::uint64_t seed) {
  return sim::replay_command(seed, "", Catch::getResultCapture().getCurrentTestName());
}

std::size_t deaths_of(const SimCluster& c, NodeId node, NodeId observer = 0) {
  return static_cast<std::size_t>(std::count_if(c.deaths().begin(), c.deaths().end(), [&](const Observation& o) {
    return o.node == node && (observer == 0 || o.observer == observer);
  }));
}

constexpr NodeId kVictim = 3, kRogue = 6;

// A member that answers probes (so it stays a confirmed member) and, every `every`, tells each
// honest node that `victim` is suspect, dead or gone: at the victim's real incarnation (the worst
// case: it reads it from the victim), one above and far above, in its own name and in the names of
// honest members. Built with the swim codec, like any member's datagrams.
class Rogue final : public sim::Node {
 public:
  Rogue(std::function<std::uint32_t()> victim_inc, NodeId victim, std::vector<NodeId> honest, Duration every)
      : victim_inc_(std::move(victim_inc)), victim_(victim), honest_(std::move(honest)), every_(every) {}

  void on_start(sim::Context& ctx) override { ctx.set_timer(every_, 1); }

  void on_message(sim::Context& ctx, NodeId, std::span<const std::uint8_t> bytes) override {
    Message in;
    if (decode(bytes, in) != DecodeError::none) return;
    if (in.type == MsgType::ping && in.target == ctx.self()) {
      Message ack;
      ack.type = MsgType::ack;
      ack.sender = ctx.self();
      ack.seq = in.seq;
      ack.target = ctx.self();
      ack.gossip = claims(ctx, 8);
      send(ctx, in.sender, ack);
    }
  }

  void on_timer(sim::Context& ctx, sim::TimerId, std::uint64_t) override {
    ++round_;
    for (NodeId h : honest_) {
      Message m;
      m.type = (round_ % 2) ? MsgType::sync : MsgType::ping;
      m.sender = ctx.self();
      m.seq = static_cast<std::uint32_t>(round_);
      m.target = m.type == MsgType::ping ? h : 0;
      m.gossip = claims(ctx, 40);
      send(ctx, h, m);
    }
    ctx.set_timer(every_, 1);
  }

  std::uint64_t sent = 0;

 private:
  std::vector<Gossip> claims(sim::Context& ctx, std::size_t count) {
    const std::uint32_t inc = victim_inc_();
    const std::uint32_t incs[] = {inc, inc, inc + 1, inc + 999, inc + 5000};
    const GossipKind kinds[] = {GossipKind::dead, GossipKind::suspect, GossipKind::left};
    std::vector<Gossip> out;
    for (std::size_t i = 0; i < count; ++i) {
      // In its own name most of the time, else as if an honest member (not the victim) said it.
      NodeId origin = ctx.self();
      if (ctx.rng().below(2) == 0) {
        origin = honest_[ctx.rng().below(honest_.size())];
        if (origin == victim_) origin = ctx.self();
      }
      out.push_back(Gossip{kinds[ctx.rng().below(3)], victim_, incs[ctx.rng().below(5)], origin});
    }
    return out;
  }
  void send(sim::Context& ctx, NodeId to, const Message& m) {
    Bytes b;
    REQUIRE(encode(m, b).ok());
    ++sent;
    ctx.send(to, std::move(b));
  }

  std::function<std::uint32_t()> victim_inc_;
  NodeId victim_;
  std::vector<NodeId> honest_;
  Duration every_;
  std::uint64_t round_ = 0;
};

}  // namespace

TEST_CASE("forged suspect/dead/left claims from a rogue member never kill a live member (50 seeds)") {
  QuietLogs q;
  std::size_t failures = 0;
  for (std::uint64_t seed : sim::seeds_to_run(50)) {
    ClusterOptions o = small(5, seed);
    o.bootstrap_full = true;
    o.sim.net.loss = 0.01 * static_cast<double>(seed % 3);  // 0..2 %
    o.sim.net.duplicate = 0.02;
    o.sim.net.reorder = 0.05;
    auto cluster = std::make_shared<SimCluster*>(nullptr);
    Rogue* rogue = nullptr;
    o.extra_nodes.emplace_back(kRogue, [cluster, &rogue](NodeId) -> std::unique_ptr<sim::Node> {
      auto victim_inc = [cluster]() -> std::uint32_t {
        Swim* v = *cluster ? (*cluster)->swim(kVictim) : nullptr;
        return v ? v->incarnation() : 0;
      };
      auto r = std::make_unique<Rogue>(victim_inc, kVictim, std::vector<NodeId>{1, 2, 3, 4, 5},
                                       std::chrono::milliseconds(200));
      rogue = r.get();
      return r;
    });
    SimCluster c(o);
    *cluster = &c;
    Status st = c.sim().run_for(90s);
    std::size_t dead_marks = 0;
    for (const Observation& ob : c.log())
      if (ob.node == kVictim && (ob.to == State::dead || ob.to == State::left)) ++dead_marks;
    const std::size_t victim_deaths = deaths_of(c, kVictim);
    const bool lied = rogue && rogue->sent > 1000;
    std::size_t suspected = 0;  // the lies did reach the honest members (as suspicions)
    for (const Observation& ob : c.log()) suspected += (ob.node == kVictim && ob.to == State::suspect) ? 1 : 0;
    bool ok = st.ok() && c.status().ok() && dead_marks == 0 && victim_deaths == 0 && lied && suspected > 0;
    // While the rogue talks the victim may be suspect here and there; once it stops (crashes),
    // every honest member sees every other, the victim included, alive.
    if (ok) ok = c.sim().crash(kRogue).ok() && c.run_until([&] { return c.converged(); }, 60s) && c.status().ok();
    if (!ok) {
      ++failures;
      std::printf(
          "FAILED seed=%llu status=%s: victim marked dead %zu times, %zu death callbacks (suspected %zu times)\n"
          "  replay: %s\n",
          static_cast<unsigned long long>(seed), (st.ok() ? c.status() : st).to_string().c_str(), dead_marks,
          victim_deaths, suspected, replay(seed).c_str());
    }
  }
  CHECK(failures == 0);
}

TEST_CASE("a crashed member is declared dead by all: confirmations shorten the wait, never below Tmin") {
  QuietLogs q;
  for (std::uint64_t seed : sim::seeds_to_run(10)) {
    INFO("replay: " << replay(seed));
    ClusterOptions o = small(5, seed);
    o.bootstrap_full = true;
    SimCluster c(o);
    REQUIRE(c.sim().run_for(10s).ok());
    const Duration tmin = c.swim(1)->suspicion_min(), tmax = c.swim(1)->suspicion_max();  // 4 s, 12 s
    REQUIRE(c.sim().crash(5).ok());
    const Instant crash = c.sim().now();
    // Every member probes 5 within two probe cycles (5 members, 1 s period); its suspicion then
    // lasts at most Tmax (the proxies' nacks keep the local health multiplier at 1 here).
    REQUIRE(c.run_until([&] { return c.all_see(5, State::dead); }, 2 * 5s + tmax));
    REQUIRE(c.status().ok());
    for (NodeId id : {1, 2, 3, 4}) {
      Instant suspected{-1}, dead{-1};
      for (const Observation& ob : c.log()) {
        if (ob.observer != id || ob.node != 5 || ob.t < crash) continue;
        if (ob.to == State::suspect && suspected < Instant{0}) suspected = ob.t;
        if (ob.to == State::dead && dead < Instant{0}) dead = ob.t;
      }
      INFO("observer " << id);
      REQUIRE(suspected >= crash);
      REQUIRE(dead > suspected);
      CHECK(dead - suspected >= tmin);  // never below the minimum, however many confirm
      // Four members probe the crashed one independently; their first-hand claims confirm each
      // other's suspicions, so nobody waits the unconfirmed Tmax.
      CHECK(dead - suspected < tmax);
      CHECK(deaths_of(c, 5, id) == 1);
    }
  }
}

TEST_CASE("same seed gives the same trace; another seed a different one") {
  QuietLogs q;
  auto run = [](std::uint64_t seed) {
    ClusterOptions o = small(6, seed);
    o.sim.net.loss = 0.05;
    o.sim.net.duplicate = 0.02;
    o.sim.net.reorder = 0.05;
    SimCluster c(o);
    c.sim().at(Instant{20s}, [](sim::Simulator& s) { (void)s.crash(3); });
    REQUIRE(c.sim().run_for(60s).ok());
    return std::make_pair(c.sim().trace_hash(), c.sim().events());
  };
  auto a = run(42), b = run(42), d = run(43);
  CHECK(a == b);
  CHECK(a.first != d.first);
}

TEST_CASE("nodes joining through seeds converge to a full, confirmed view") {
  QuietLogs q;
  for (std::uint64_t seed : sim::seeds_to_run(5)) {
    SimCluster c(small(8, seed));
    const bool ok = c.run_until([&] { return c.converged(); }, 60s);
    INFO("replay: " << replay(seed));
    REQUIRE(c.status().ok());
    CHECK(ok);
  }
}

TEST_CASE("a crashed member is suspected, then declared dead by everyone, exactly once each") {
  QuietLogs q;
  ClusterOptions o = small(8, 7);
  o.bootstrap_full = true;
  SimCluster c(o);
  REQUIRE(c.sim().run_for(10s).ok());
  REQUIRE(c.sim().crash(5).ok());
  const Instant crash = c.sim().now();
  REQUIRE(c.run_until([&] { return c.all_see(5, State::dead); }, 60s));
  REQUIRE(c.status().ok());
  Instant first_suspect{-1};
  for (const auto& ob : c.log())
    if (ob.node == 5 && ob.to == State::suspect && ob.t >= crash) {
      first_suspect = ob.t;
      break;
    }
  REQUIRE(first_suspect >= crash);
  CHECK(first_suspect - crash < 6s);
  REQUIRE(c.sim().run_for(20s).ok());
  for (NodeId id : c.ids())
    if (id != 5) CHECK(deaths_of(c, 5, id) == 1);
}

TEST_CASE("a suspected member that is alive refutes and is not declared dead") {
  QuietLogs q;
  ClusterOptions o = small(6, 11);
  o.bootstrap_full = true;
  SimCluster c(o);
  REQUIRE(c.sim().run_for(10s).ok());
  // Node 4 cannot be reached for a little over one period: its probers fail and suspect it.
  for (NodeId id : c.ids())
    if (id != 4) c.sim().block(id, 4);
  REQUIRE(c.run_until(
      [&] {
        for (const auto& ob : c.log())
          if (ob.node == 4 && ob.to == State::suspect) return true;
        return false;
      },
      30s));
  const std::uint32_t inc_before = c.swim(4)->incarnation();
  c.sim().heal();
  REQUIRE(c.sim().run_for(40s).ok());
  REQUIRE(c.status().ok());
  CHECK(deaths_of(c, 4) == 0);
  CHECK(c.swim(4)->incarnation() > inc_before);
  CHECK(c.swim(4)->stats().refutations >= 1);
  CHECK(c.all_see(4, State::alive));
}

TEST_CASE("a member partitioned away is declared dead by the majority and rejoins with a higher incarnation") {
  QuietLogs q;
  for (std::uint64_t seed : sim::seeds_to_run(3)) {
    INFO("replay: " << replay(seed));
    ClusterOptions o = small(7, seed);
    o.bootstrap_full = true;
    o.cfg.dead_retention = 300s;
    SimCluster c(o);
    REQUIRE(c.sim().run_for(10s).ok());
    const std::uint32_t inc_before = c.swim(7)->incarnation();
    c.sim().partition({7}, {1, 2, 3, 4, 5, 6});
    REQUIRE(c.run_until([&] { return c.all_see(7, State::dead); }, 120s));
    for (NodeId id = 1; id <= 6; ++id) CHECK(deaths_of(c, 7, id) == 1);
    c.sim().heal();
    REQUIRE(c.run_until([&] { return c.converged(); }, 120s));
    REQUIRE(c.status().ok());
    CHECK(c.swim(7)->incarnation() > inc_before);
    auto m = c.swim(1)->member(7);
    REQUIRE(m);
    CHECK(m->incarnation == c.swim(7)->incarnation());
  }
}

TEST_CASE("a one-way partition: the node that cannot send is declared dead; healing brings it back") {
  QuietLogs q;
  ClusterOptions o = small(6, 5);
  o.bootstrap_full = true;
  SimCluster c(o);
  REQUIRE(c.sim().run_for(10s).ok());
  for (NodeId id = 1; id <= 5; ++id) c.sim().block(6, id);  // 6 hears everyone but nobody hears 6
  REQUIRE(c.run_until([&] { return c.all_see(6, State::dead); }, 120s));
  c.sim().heal();
  REQUIRE(c.run_until([&] { return c.converged(); }, 120s));
  REQUIRE(c.status().ok());
}

TEST_CASE("graceful leave is reported as left, once, and the member stays gone") {
  QuietLogs q;
  ClusterOptions o = small(5, 3);
  o.bootstrap_full = true;
  SimCluster c(o);
  REQUIRE(c.sim().run_for(5s).ok());
  c.swim(2)->leave();
  REQUIRE(c.run_until([&] { return c.all_see(2, State::left); }, 30s));
  REQUIRE(c.sim().run_for(30s).ok());
  CHECK(c.all_see(2, State::left));
  for (NodeId id : {1, 3, 4, 5}) CHECK(deaths_of(c, 2, id) == 1);
  REQUIRE(c.status().ok());
}

TEST_CASE("a crashed node that restarts comes back with a higher incarnation from its disk") {
  QuietLogs q;
  ClusterOptions o = small(5, 9);
  o.bootstrap_full = true;
  SimCluster c(o);
  REQUIRE(c.sim().run_for(5s).ok());
  const std::uint32_t inc = c.swim(3)->incarnation();
  REQUIRE(c.sim().crash(3).ok());
  REQUIRE(c.run_until([&] { return c.all_see(3, State::dead); }, 60s));
  REQUIRE(c.sim().restart(3).ok());
  CHECK(c.swim(3)->incarnation() == 0);  // not started yet: on_start runs as an event
  REQUIRE(c.run_until([&] { return c.converged(); }, 60s));
  CHECK(c.swim(3)->incarnation() > inc);
  REQUIRE(c.status().ok());
}

TEST_CASE("dead members are forgotten after the retention time") {
  QuietLogs q;
  ClusterOptions o = small(5, 13);
  o.bootstrap_full = true;
  o.cfg.dead_retention = 20s;
  SimCluster c(o);
  REQUIRE(c.sim().run_for(5s).ok());
  REQUIRE(c.sim().crash(4).ok());
  REQUIRE(c.run_until([&] { return c.all_see(4, State::dead); }, 60s));
  REQUIRE(c.sim().run_for(25s).ok());
  for (NodeId id : {1, 2, 3, 5}) CHECK_FALSE(c.swim(id)->member(4).has_value());
}

TEST_CASE("role state embedded in probes reaches every member") {
  QuietLogs q;
  ClusterOptions o = small(5, 17);
  o.bootstrap_full = true;
  SimCluster c(o);
  REQUIRE(c.sim().run_for(1s).ok());
  REQUIRE(c.swim(2)->set_local_state(Bytes{1, 2, 3, 4}).ok());
  CHECK_FALSE(c.swim(2)->set_local_state(Bytes(2000, 0)).ok());
  REQUIRE(c.sim().run_for(20s).ok());
  for (NodeId id : {1, 3, 4, 5}) CHECK(c.swim(id)->state_of(2) == Bytes{1, 2, 3, 4});
}

TEST_CASE("Lifeguard: a slow member (messages handled late) causes no false deaths") {
  QuietLogs q;
  ClusterOptions o = small(10, 21);
  o.bootstrap_full = true;
  SimCluster c(o);
  REQUIRE(c.sim().set_slow(3, 5.0, 150ms).ok());
  REQUIRE(c.sim().run_for(120s).ok());
  REQUIRE(c.status().ok());
  CHECK(c.deaths().empty());
}

TEST_CASE("clock skew and drift do not cause false deaths") {
  QuietLogs q;
  ClusterOptions o = small(6, 23);
  o.bootstrap_full = true;
  SimCluster c(o);
  REQUIRE(c.sim().set_clock_skew(2, 3600s, 1.05).ok());
  REQUIRE(c.sim().set_clock_skew(4, -5s, 0.95).ok());
  REQUIRE(c.sim().run_for(120s).ok());
  REQUIRE(c.status().ok());
  CHECK(c.deaths().empty());
}

// The randomized sweep: many seeds, random faults, invariants after every event; safety and
// liveness checked at the end of each run.
TEST_CASE("randomized fault sweep (200 seeds)") {
  QuietLogs q;
  std::size_t failures = 0, detected = 0, runs = 0;
  for (std::uint64_t seed : sim::seeds_to_run(200)) {
    ++runs;
    ClusterOptions o = small(5, seed);
    o.bootstrap_full = (seed % 2) == 0;
    o.sim.net.loss = 0.02 * static_cast<double>(seed % 4);  // 0..6 %
    o.sim.net.duplicate = 0.02;
    o.sim.net.reorder = 0.05;
    SimCluster c(o);
    Rng r(seed * 7919);
    const NodeId victim = 1 + r.below(5);
    const int fault = static_cast<int>(r.below(3));
    auto& s = c.sim();
    const Instant t0 = Instant{10s};
    if (fault == 0) {
      s.at(t0, [victim](sim::Simulator& sm) { (void)sm.crash(victim); });
      s.at(t0 + 25s, [victim](sim::Simulator& sm) { (void)sm.restart(victim); });
    } else if (fault == 1) {
      std::vector<NodeId> rest;
      for (NodeId i = 1; i <= 5; ++i)
        if (i != victim) rest.push_back(i);
      s.at(t0, [victim, rest](sim::Simulator& sm) { sm.partition({victim}, rest); });
      s.at(t0 + 25s, [](sim::Simulator& sm) { sm.heal(); });
    } else {
      (void)s.set_clock_skew(victim, std::chrono::seconds(static_cast<int>(r.below(1000))), 1.02);
    }
    Status st = s.run_for(40s);
    bool ok = st.ok() && c.status().ok();
    // Crash or isolation for 25 s: the others must have buried the victim; skew alone kills nobody.
    const std::size_t victim_deaths = deaths_of(c, victim);
    if (fault == 2 && !c.deaths().empty()) ok = false;
    if (fault != 2 && victim_deaths < 4) ok = false;
    if (fault != 2) detected++;
    // Liveness: after the fault is over, every node ends up seeing everyone alive.
    if (ok) ok = c.run_until([&] { return c.converged(); }, 120s) && c.status().ok();
    if (!ok) {
      ++failures;
      std::printf("FAILED seed=%llu fault=%d victim=%llu status=%s\n  replay: %s\n",
                  static_cast<unsigned long long>(seed), fault, static_cast<unsigned long long>(victim),
                  (st.ok() ? c.status() : st).to_string().c_str(), replay(seed).c_str());
      for (const auto& line : s.trace_tail()) std::printf("    %s\n", line.c_str());
    }
  }
  CHECK(failures == 0);
  CHECK(runs >= 1);
  std::printf("sweep: %zu runs, %zu with a crash or partition detected, %zu failures\n", runs, detected, failures);
}
