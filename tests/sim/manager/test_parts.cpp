// One workflow over several workers (issue 11, docs/cluster.md "Parts") in the deterministic
// simulator: the split, the shared start, a lost part's remainder, a failed part, cancel and leader
// failover, with every invariant of scenarios.md §4 checked after each event (invariants 4 and 5 per
// part).
#include <catch2/catch.hpp>

#include <numeric>

#include "scenario_util.hpp"

using namespace hs;
using namespace hs::simdc;
using namespace hs::cluster;
using namespace std::chrono_literals;

namespace {

// The workers each part's executions ran on, from their executors: (spec, worker).
std::vector<std::pair<worker::ExecSpec, NodeId>> specs(Dc& dc, const std::string& job) {
  std::vector<std::pair<worker::ExecSpec, NodeId>> out;
  for (NodeId id : dc.workers())
    if (auto* n = dc.wrk(id))
      for (const auto& s : n->exec.started)
        if (s.job_id == job) out.emplace_back(s, id);
  return out;
}

std::uint64_t sum_completed(const WorkflowView& w) {
  return std::accumulate(w.parts.begin(), w.parts.end(), std::uint64_t{0},
                         [](std::uint64_t a, const PartView& p) { return a + p.completed; });
}

}  // namespace

TEST_CASE("PRT-01 a workflow is split over workers of different core counts: shares follow cores, sums are exact") {
  DcOptions o;
  o.workers = 3;
  o.worker_cores = {1, 2, 3};
  Dc dc(o);
  boot(dc);
  submit_ok(dc, job("p1", {wf("load", "ms=3000;iters=3000", 6, 0)}));
  const JobView v = finish(dc, "p1");
  CHECK(v.state == JobState::completed);
  const WorkflowView& w = wfv(v, "load");
  REQUIRE(w.parts.size() == 3);
  CHECK(w.shard_total == 6);
  // The largest worker first; the parts cover the six global shards in order, one worker each.
  std::set<NodeId> workers;
  std::uint32_t next = 0;
  for (const PartView& p : w.parts) {
    CHECK(p.shard_first == next);
    next += p.cores;
    workers.insert(p.worker);
    CHECK(p.state == WfState::completed);
    CHECK(p.attempts == 1);
    CHECK(p.lost == 0);
    // Each part's share of the 3000 iterations is proportional to its cores (6 shards of 500).
    CHECK(p.completed == 500 * p.cores);
    auto* n = dc.wrk(p.worker);
    REQUIRE(n != nullptr);
    CHECK(n->wrk.total_cores() == p.cores);  // all of every worker's cores
  }
  CHECK(next == 6);
  CHECK(workers.size() == 3);
  CHECK(w.completed == 3000);
  CHECK(sum_completed(w) == 3000);
  CHECK(w.lost == 0);
  // Every part's dispatch announced the same start, a little after the split.
  const auto sp = specs(dc, "p1");
  REQUIRE(sp.size() == 3);
  for (const auto& [s, id] : sp) {
    CHECK(s.start_at_unix_ms != 0);
    CHECK(s.start_at_unix_ms == sp[0].first.start_at_unix_ms);
    CHECK(s.shard_total == 6);
    CHECK(s.skip_iterations == 0);
  }
  CHECK_ENDS(dc);
}

TEST_CASE("PRT-02 a worker dies mid-part: only its part is placed again, with the remainder; totals are exact") {
  DcOptions o;
  o.workers = 4;  // three parts of one core, and a spare worker
  Dc dc(o);
  boot(dc);
  submit_ok(dc, job("p2", {wf("load", "ms=6000;iters=3000", 3, 3)}));
  std::optional<JobView> v;
  // Wait until every part has reported progress: the victim's part has acknowledged iterations.
  REQUIRE(dc.run_until(
      [&] {
        v = dc.job_view("p2");
        if (!v || v->workflows[0].parts.size() != 3) return false;
        return std::all_of(v->workflows[0].parts.begin(), v->workflows[0].parts.end(),
                           [](const PartView& p) { return p.completed >= 300; });
      },
      20s));
  REQUIRE_DC_OK(dc);
  const PartView before = v->workflows[0].parts[1];
  const NodeId victim = before.worker;
  const std::vector<PartView> others{v->workflows[0].parts[0], v->workflows[0].parts[2]};
  REQUIRE(dc.sim().crash(victim).ok());
  const JobView end = finish(dc, "p2");
  CHECK(end.state == JobState::completed);
  const WorkflowView& w = wfv(end, "load");
  REQUIRE(w.parts.size() == 3);
  // The other parts ran once, on their first worker, with their first token.
  CHECK(w.parts[0].attempts == 1);
  CHECK(w.parts[0].token == others[0].token);
  CHECK(w.parts[2].attempts == 1);
  CHECK(w.parts[2].token == others[1].token);
  // The victim's part ran again elsewhere, with a higher token, skipping what was accounted for.
  const PartView& p = w.parts[1];
  CHECK(p.attempts == 2);
  CHECK(p.token > before.token);
  CHECK(p.worker != victim);
  const auto sp = specs(dc, "p2");
  std::uint64_t skip = 0;
  std::size_t again = 0;
  for (const auto& [s, id] : sp)
    if (s.part == 1 && id != victim) skip = s.skip_iterations, ++again;
  CHECK(again == 1);
  CHECK(skip >= before.completed);
  // Exact accounting: every iteration of the budget was either completed once or reported lost.
  CHECK(p.completed + p.lost == 1000);
  CHECK(p.lost <= 1);  // at most one iteration per VU was in flight at the last acknowledgement
  CHECK(w.completed + w.lost == 3000);
  CHECK(sum_completed(w) == w.completed);
  CHECK(w.parts[0].completed == 1000);
  CHECK(w.parts[2].completed == 1000);
  CHECK_ENDS(dc);
}

TEST_CASE("PRT-03 a failed part fails its workflow and stops the other parts") {
  DcOptions o;
  o.workers = 3;
  Dc dc(o);
  boot(dc);
  submit_ok(dc, job("p3", {wf("load", "ms=2000;iters=600;fail=boom;failpart=0", 3, 3),
                           wf("after", "ms=100", 1, 1, {"load"})}));
  // Part 0 ends at 2 s with its error; the others run 20 s and must be stopped long before.
  const JobView v = finish(dc, "p3", 15s);
  CHECK(v.state == JobState::failed);
  const WorkflowView& w = wfv(v, "load");
  REQUIRE(w.parts.size() == 3);
  CHECK(w.state == WfState::failed);
  CHECK(w.parts[0].state == WfState::failed);
  CHECK(w.parts[0].error == "boom");
  CHECK(w.error.find("boom") != std::string::npos);
  CHECK(wfv(v, "after").state == WfState::failed);  // its dependency failed: it never ran
  CHECK_ENDS(dc);
}

TEST_CASE("PRT-04 cancelling a split job stops every part; a leader failover keeps every part's attempt") {
  DcOptions o;
  o.workers = 3;
  Dc dc(o);
  const NodeId l = boot(dc);
  submit_ok(dc, job("p4", {wf("load", "ms=20000;iters=30000", 3, 3)}));
  std::optional<JobView> v;
  REQUIRE(dc.run_until(
      [&] {
        v = dc.job_view("p4");
        return v && v->workflows[0].parts.size() == 3 &&
               std::all_of(v->workflows[0].parts.begin(), v->workflows[0].parts.end(),
                           [](const PartView& p) { return p.state == WfState::running && p.completed > 0; });
      },
      20s));
  std::vector<std::uint64_t> tokens;
  for (const auto& p : v->workflows[0].parts) tokens.push_back(p.token);
  // The leader dies: the next one follows the three running parts without placing any again.
  REQUIRE(dc.sim().crash(l).ok());
  REQUIRE(dc.run_until([&] { return dc.leader().has_value() && dc.leader() != l; }, 30s));
  REQUIRE(dc.run_until(
      [&] {
        v = dc.job_view("p4");
        return v && v->leader != l && v->leader != 0 &&
               std::all_of(v->workflows[0].parts.begin(), v->workflows[0].parts.end(),
                           [](const PartView& p) { return p.state == WfState::running; });
      },
      20s));
  for (std::size_t k = 0; k < 3; ++k) {
    CHECK(v->workflows[0].parts[k].token == tokens[k]);
    CHECK(v->workflows[0].parts[k].attempts == 1);
  }
  // A cancel stops all three.
  const std::uint64_t req = dc.client().cancel(*dc.leader(), "p4");
  REQUIRE(dc.run_until([&] { return dc.client().reply(req) != nullptr; }, 10s));
  CHECK(dc.client().reply(req)->cancel.success);
  // The job is cancelled at once; each part ends when its worker confirms the stop.
  std::optional<JobView> end;
  REQUIRE(dc.run_until(
      [&] {
        end = dc.job_view("p4");
        return end && std::all_of(end->workflows[0].parts.begin(), end->workflows[0].parts.end(),
                                  [](const PartView& p) { return terminal(p.state); });
      },
      20s));
  CHECK(end->state == JobState::cancelled);
  for (const auto& p : end->workflows[0].parts) CHECK(p.state == WfState::cancelled);
  REQUIRE(dc.run_until(
      [&] {
        for (NodeId id : dc.workers())
          if (auto* n = dc.wrk(id); n != nullptr && !n->wrk.live().empty()) return false;
        return true;
      },
      10s));
  CHECK_ENDS(dc);
}
