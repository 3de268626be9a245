// SWIM + Lifeguard inside the deterministic simulator: whole clusters, seeded faults, invariants
// checked after every event. A failing seed is printed with the command that replays it.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>

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

}  // namespace

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
