// Scenario tests of scenarios.md (one datacenter, no gate) in the deterministic simulator. Each test
// is named by its scenario id and asserts what a client or a status endpoint observes; every event
// is followed by the instant invariants, and end_checks() judges the rest at the end.
#include <catch2/catch.hpp>

#include "dc.hpp"

using namespace hs;
using namespace hs::simdc;
using namespace hs::cluster;
using namespace std::chrono_literals;

namespace {
NodeId wait_leader(Dc& dc, Duration limit = 20s) {
  std::optional<NodeId> l;
  dc.run_until([&] { return (l = dc.leader()).has_value(); }, limit);
  REQUIRE(dc.status().ok());
  REQUIRE(l.has_value());
  return *l;
}
bool workers_registered(Dc& dc, NodeId m, std::size_t n) {
  auto* node = dc.mgr(m);
  return node != nullptr && node->mgr.node_status().healthy_worker_count == n;
}
}  // namespace

TEST_CASE("SUB-01 happy path: a job completes, status only moves forward, cores return") {
  Dc dc(DcOptions{});
  const NodeId l = wait_leader(dc);
  REQUIRE(dc.run_until([&] { return workers_registered(dc, l, 2); }, 10s));
  auto ack = dc.submit_and_wait(job("j1", {wf("noop", "ms=1000")}));
  REQUIRE(ack);
  CHECK(ack->accepted);
  CHECK(ack->job_id == "j1");
  std::vector<JobState> seen;
  REQUIRE(dc.run_until(
      [&] {
        auto v = dc.job_view("j1");
        if (v && (seen.empty() || seen.back() != v->state)) seen.push_back(v->state);
        return v && terminal(v->state);
      },
      10s));
  CHECK(seen.back() == JobState::completed);
  for (std::size_t i = 1; i < seen.size(); ++i) CHECK(static_cast<int>(seen[i - 1]) < static_cast<int>(seen[i]));
  auto v = dc.job_view("j1");
  CHECK(v->workflows.at(0).completed == 10);
  CHECK(v->failed == 0);
  dc.run_for(2s);
  for (NodeId m : dc.managers()) {
    auto st = dc.mgr(m)->mgr.node_status();
    CHECK(st.active_job_ids.empty());
    CHECK(st.available_cores == 2);
  }
  CHECK(dc.end_checks().ok());
}
