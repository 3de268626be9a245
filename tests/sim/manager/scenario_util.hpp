// Helpers shared by the scenario tests of one simulated datacenter (test_scenarios.cpp,
// test_replication.cpp): booting, submitting, and reading what workers ran.
#pragma once

#include <catch2/catch.hpp>

#include <cstdlib>

#include "dc.hpp"
#include "hyperscale/base/log.hpp"

namespace hs::simdc {

// The run hit no invariant violation (the violation's message is shown when it did).
#define REQUIRE_DC_OK(dc)          \
  do {                             \
    INFO((dc).status().message()); \
    REQUIRE((dc).status().ok());   \
  } while (0)
#define CHECK_ENDS(dc)                  \
  do {                                  \
    const auto st_ = (dc).end_checks(); \
    INFO(st_.message());                \
    CHECK(st_.ok());                    \
  } while (0)

inline NodeId wait_leader(Dc& dc, Duration limit = 20s) {
  std::optional<NodeId> l;
  dc.run_until([&] { return (l = dc.leader()).has_value(); }, limit);
  REQUIRE_DC_OK(dc);
  REQUIRE(l.has_value());
  return *l;
}
inline bool workers_registered(Dc& dc, NodeId m, std::size_t n) {
  auto* node = dc.mgr(m);
  return node != nullptr && node->mgr.node_status().healthy_worker_count == n;
}
// Logs at error level unless HS_TEST_LOG is set.
struct Quiet {
  Quiet() { hs::log::set_level(std::getenv("HS_TEST_LOG") ? hs::log::Level::info : hs::log::Level::error); }
};
inline Quiet quiet;

inline DcOptions t5(std::uint64_t seed = 1) {  // 3 managers, 4 workers × 2 cores
  DcOptions o;
  o.seed = seed;
  o.managers = 3;
  o.workers = 4;
  o.cores = 2;
  return o;
}

inline NodeId boot(Dc& dc) {
  const NodeId l = wait_leader(dc);
  REQUIRE(dc.run_until([&] { return workers_registered(dc, l, dc.workers().size()); }, 10s));
  return l;
}

inline cluster::JobSpec submit_ok(Dc& dc, cluster::JobSpec spec) {
  auto ack = dc.submit_and_wait(spec);
  REQUIRE(ack);
  INFO(ack->error);
  REQUIRE(ack->accepted);
  return spec;
}

// Worker running a workflow of a job (0 if none).
inline NodeId runner(Dc& dc, const std::string& job, const std::string& w) {
  for (NodeId id : dc.workers()) {
    auto* n = dc.wrk(id);
    if (n == nullptr) continue;
    for (const auto& e : n->wrk.live())
      if (e.job_id == job && e.workflow == w) return id;
  }
  return 0;
}

inline std::size_t starts(Dc& dc, const std::string& job, const std::string& w) {
  std::size_t n = 0;
  for (NodeId id : dc.workers())
    if (auto* node = dc.wrk(id))
      for (const auto& e : node->wrk.log())
        if (e.kind == worker::ExecEvent::started && e.job_id == job && e.workflow == w) ++n;
  return n;
}

inline cluster::WorkflowSpec one_part(cluster::WorkflowSpec w) {  // never split (a setup workflow)
  w.one_part = true;
  return w;
}

inline const cluster::WorkflowView& wfv(const cluster::JobView& v, const std::string& name) {
  for (const auto& w : v.workflows)
    if (w.name == name) return w;
  FAIL("no workflow " << name);
  return v.workflows.front();
}

// Runs until the job's view (from its leading manager) is terminal, with every invariant holding;
// returns that view.
inline cluster::JobView finish(Dc& dc, const std::string& job, Duration limit = 60s) {
  std::optional<cluster::JobView> v;
  REQUIRE(dc.run_until(
      [&] {
        v = dc.job_view(job);
        return v && terminal(v->state);
      },
      limit));
  REQUIRE_DC_OK(dc);
  return *v;
}

}  // namespace hs::simdc
