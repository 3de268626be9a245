// Scenario tests of the gate tier (scenarios.md §3, gates over several datacenters) in the
// deterministic simulator: each test is named by its scenario id and asserts what a client or a
// status endpoint observes. World (world.hpp) checks the instant invariants after every event and
// end_checks() the rest. Gate timings are scaled down (test_gate_config(): dc_stale 2 s, dc_grace
// 4 s, poll 300 ms, request_timeout 500 ms, cancel_timeout 4 s, checkpoint 1 s).
#include <catch2/catch.hpp>

#include <cstdlib>

#include <fmt/format.h>

#include "hyperscale/base/log.hpp"
#include "world.hpp"

using namespace hs;
using namespace hs::simgate;
using namespace hs::cluster;
using namespace std::chrono_literals;

namespace {

struct Quiet {
  Quiet() { hs::log::set_level(std::getenv("HS_TEST_LOG") ? hs::log::Level::info : hs::log::Level::error); }
};
Quiet quiet;

#define REQUIRE_OK(w)             \
  do {                            \
    INFO((w).status().message()); \
    REQUIRE((w).status().ok());   \
  } while (0)
#define CHECK_ENDS(w)                  \
  do {                                 \
    const auto st_ = (w).end_checks(); \
    INFO(st_.message());               \
    CHECK(st_.ok());                   \
  } while (0)

WorldOptions t3(std::uint64_t seed) {  // 3 gates, 2 datacenters of 3 managers and 2 workers × 2 cores
  WorldOptions o;
  o.seed = seed;
  o.gates = 3;
  o.dcs = 2;
  o.managers = 3;
  o.workers = 2;
  o.cores = 2;
  return o;
}

void boot(World& w) {
  REQUIRE(w.boot(40s));
  REQUIRE_OK(w);
}

JobSpec spread(JobSpec s, std::uint32_t dcs) {
  s.datacenter_count = dcs;
  return s;
}

[[maybe_unused]] JobSpec in(JobSpec s, std::vector<std::string> dcs) {
  s.datacenters = std::move(dcs);
  return s;
}

cluster::SubmitAck submit_ok(World& w, const JobSpec& s, NodeId to = 0) {
  auto r = w.submit(s, to);
  REQUIRE_OK(w);
  REQUIRE(r.ack.has_value());
  INFO(r.ack->error);
  REQUIRE(r.ack->accepted);
  CHECK(r.ack->job_id == s.job_id);
  return *r.ack;
}

JobView finish(World& w, const std::string& id, Duration limit = 60s) {
  auto v = w.finish(id, limit);
  REQUIRE_OK(w);
  REQUIRE(v.has_value());
  return *v;
}

[[maybe_unused]] const DcView& dcv(const JobView& v, const std::string& name) {
  for (const auto& d : v.datacenters)
    if (d.name == name) return d;
  FAIL("no datacenter " << name << " in the view of " << v.job_id);
  return v.datacenters.front();
}

[[maybe_unused]] bool has_dc(const JobView& v, const std::string& name) {
  return std::any_of(v.datacenters.begin(), v.datacenters.end(), [&](const DcView& d) { return d.name == name; });
}

// Every datacenter's leader holds no active job and has every core free.
void dcs_idle(World& w) {
  REQUIRE(w.run_until(
      [&] {
        for (std::size_t d = 0; d < w.dc_count(); ++d) {
          auto l = w.dc_leader(d);
          if (!l) return false;
          const auto st = w.mgr(*l)->mgr.node_status();
          if (!st.active_job_ids.empty() || st.available_cores != st.total_cores) return false;
        }
        return true;
      },
      15s));
}

}  // namespace

TEST_CASE("SUB-01 happy path, 1 and 2 datacenters") {
  World w(t3(11));
  boot(w);
  for (std::uint32_t n : {1u, 2u}) {
    INFO("datacenter_count " << n);
    const std::string id = fmt::format("happy{}", n);
    submit_ok(w, spread(job(id, {wf("noop", "ms=1000;ops=10")}), n));
    std::vector<JobState> seen;
    REQUIRE(w.run_until(
        [&] {
          auto v = w.view(id);
          if (v && (seen.empty() || seen.back() != v->state)) seen.push_back(v->state);
          return v && terminal(v->state);
        },
        10s));
    for (std::size_t i = 1; i < seen.size(); ++i) CHECK(static_cast<int>(seen[i - 1]) < static_cast<int>(seen[i]));
    const JobView v = finish(w, id);
    CHECK(v.state == JobState::completed);
    CHECK(v.failed == 0);
    REQUIRE(v.datacenters.size() == n);
    std::uint64_t sum = 0;
    for (const auto& d : v.datacenters) {
      CHECK(d.state == JobState::completed);
      CHECK(d.accepted);
      CHECK(d.completed == 10);
      sum += d.completed;
    }
    CHECK(v.completed == 10 * n);
    CHECK(sum == v.completed);
    REQUIRE(v.workflows.size() == 1);
    CHECK(v.workflows[0].state == WfState::completed);
    CHECK(v.workflows[0].completed == 10 * n);
    // The client's answer, from every gate.
    for (NodeId g : w.gates()) {
      auto r = w.status_of(id, g);
      REQUIRE(r.has_value());
      CHECK(r->found);
      CHECK(r->job.state == JobState::completed);
      CHECK(r->job.completed == 10 * n);
    }
    dcs_idle(w);
  }
  CHECK_ENDS(w);
}
