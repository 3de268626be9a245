// A cluster job's results as `hyperscale run` has them (src/cli/job_results.cpp): the RunStats of a
// job view whose workflows ran as parts, thresholds judged on the exact merge of the parts'
// statistics (not on any one part), the exit code agreeing with the job's state.
#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "cli/job_results.hpp"
#include "hyperscale/load/report.hpp"
#include "hyperscale/load/stats_codec.hpp"

using namespace hs;
using hs::cli::job_exit_code;
using hs::cli::job_plan;
using hs::cli::job_run_stats;

namespace {

constexpr std::uint64_t kMs = 1'000'000;

std::string plan_text(const std::string& thresholds) {
  return "version = 1\n"
         "[[workflow]]\n"
         "name = \"w\"\n"
         "vus = 2\n"
         "iterations = 1000\n"
         "duration = \"60s\"\n"
         "[workflow.thresholds]\n" +
         thresholds +
         "\n"
         "[[workflow.step]]\n"
         "name = \"a\"\n"
         "url = \"http://127.0.0.1:1/\"\n";
}

// One part's statistics: `fast` requests of 10 ms and `slow` of 500 ms, spread over `seconds` seconds
// (all measured: no warm-up), `failed` of the fast ones failed.
load::WorkflowStats part(std::uint64_t fast, std::uint64_t slow, std::size_t seconds, std::uint64_t failed = 0) {
  load::WorkflowStats ws;
  ws.name = "w";
  ws.outcome = load::WorkflowOutcome::completed;
  ws.steps.resize(1);
  ws.steps[0].name = "a";
  const std::uint64_t n = fast + slow;
  for (std::uint64_t i = 0; i < n; ++i) {
    const bool ok = i >= failed;
    ws.steps[0].record(ok, load::FailReason::unexpected_status, i < fast ? 10 * kMs : 500 * kMs, true,
                       static_cast<std::size_t>(i * seconds / n));
  }
  ws.started = ws.completed = n;
  ws.elapsed = ws.measured = std::chrono::seconds(seconds);
  return ws;
}

cluster::JobView job(const std::string& plan, const std::vector<load::WorkflowStats>& parts,
                     cluster::JobState state = cluster::JobState::completed,
                     cluster::WfState wf_state = cluster::WfState::completed) {
  cluster::JobView v;
  v.job_id = "job-1";
  v.state = state;
  cluster::WorkflowView w;
  w.name = "w";
  w.state = wf_state;
  w.plan.assign(plan.begin(), plan.end());
  for (const auto& p : parts) {
    cluster::PartView pv;
    pv.state = wf_state;
    pv.stats = load::encode_stats(p);
    w.parts.push_back(std::move(pv));
  }
  v.workflows.push_back(std::move(w));
  return v;
}

// Plans the job's view carries, stats judged: the exit code `results` and `submit --wait` give.
int judged(const cluster::JobView& v) {
  auto plan = job_plan(v);
  REQUIRE(plan.ok());
  auto s = job_run_stats(*plan, v);
  REQUIRE(s.ok());
  return job_exit_code(v, *s);
}

}  // namespace

TEST_CASE("job results: the plan comes from the job's view, parsed as the workers parse it", "[cli]") {
  auto v = job(plan_text("p95 = \"< 300ms\""), {part(10, 0, 1)});
  auto plan = job_plan(v);
  REQUIRE(plan.ok());
  REQUIRE(plan->workflows.size() == 1);
  CHECK(plan->workflows[0].name == "w");
  CHECK(plan->workflows[0].thresholds.size() == 1);
  // A view without the plan (a status reply without with_plan, an older manager): a clear error.
  v.workflows[0].plan.clear();
  auto none = job_plan(v);
  REQUIRE_FALSE(none.ok());
  CHECK(none.status().message().find("no plan for job job-1") != std::string::npos);
  // A plan that does not parse: named.
  const std::string bad = "version = 1\n[[workflow]]\n";
  v.workflows[0].plan.assign(bad.begin(), bad.end());
  CHECK_FALSE(job_plan(v).ok());
}

TEST_CASE("job results: RunStats of a job that ran as parts are the exact merge of the parts", "[cli]") {
  const auto v = job(plan_text("p95 = \"< 300ms\""), {part(90, 10, 2), part(300, 0, 3, 7)});
  auto plan = job_plan(v);
  REQUIRE(plan.ok());
  auto s = job_run_stats(*plan, v);
  REQUIRE(s.ok());
  REQUIRE(s->workflows.size() == 1);
  const load::WorkflowStats& ws = s->workflows[0];
  CHECK(ws.name == "w");
  CHECK(ws.outcome == load::WorkflowOutcome::completed);
  CHECK(ws.started == 400);
  REQUIRE(ws.steps.size() == 1);
  CHECK(ws.steps[0].name == "a");
  CHECK(ws.measured_counts().executed == 400);
  CHECK(ws.measured_counts().failed == 7);
  CHECK(ws.merged_latency().count() == 400);
  // The per-second series is the parts' summed second by second; it sums to the requests.
  std::uint64_t series = 0, series_failed = 0;
  for (const auto& sec : ws.steps[0].series) series += sec.executed, series_failed += sec.failed;
  CHECK(series == 400);
  CHECK(series_failed == 7);
  CHECK(ws.steps[0].series.size() == 3);
  CHECK(s->elapsed == std::chrono::seconds(3));
  CHECK(s->test_name == plan->test_name);
  CHECK_FALSE(s->aborted);
  REQUIRE(s->thresholds.size() == 1);
  // results.json carries them as `run` writes them.
  const std::string j = load::results_json(*plan, *s, job_exit_code(v, *s));
  CHECK(j.find("\"executed\": 400,") != std::string::npos);
}

TEST_CASE("job results: a threshold is judged on the merge, where one part alone fails it", "[cli]") {
  const std::string p = plan_text("p95 = \"< 300ms\"");
  // Part A alone: 10 of 100 requests are slow, its p95 is 500 ms: it fails on its own.
  CHECK(judged(job(p, {part(90, 10, 1)})) == cli::kExitThresholds);
  // Merged with part B's 900 fast requests, 10 of 1000 are slow: the p95 is 10 ms, the job passes.
  const auto v = job(p, {part(90, 10, 1), part(900, 0, 1)});
  CHECK(judged(v) == cli::kExitOk);
  auto plan = job_plan(v);
  auto s = job_run_stats(*plan, v);
  REQUIRE(s.ok());
  REQUIRE(s->thresholds.size() == 1);
  CHECK(s->thresholds[0].passed);
  CHECK(s->thresholds[0].observed < 300.0 * kMs);
}

TEST_CASE("job results: a threshold each part passes fails on the merge", "[cli]") {
  // Each part alone did 100 requests in 1 s (rps 100, passes `< 150`); together 200 in the same second.
  const std::string p = plan_text("rps = \"< 150\"");
  CHECK(judged(job(p, {part(100, 0, 1)})) == cli::kExitOk);
  const auto v = job(p, {part(100, 0, 1), part(100, 0, 1)});
  CHECK(judged(v) == cli::kExitThresholds);
  auto plan = job_plan(v);
  auto s = job_run_stats(*plan, v);
  REQUIRE(s.ok());
  REQUIRE(s->thresholds.size() == 1);
  CHECK_FALSE(s->thresholds[0].passed);
  CHECK(s->thresholds[0].observed == Approx(200.0));
}

TEST_CASE("job results: the exit code agrees with the job's state", "[cli]") {
  const std::string p = plan_text("p95 = \"< 300ms\"");
  // Cancelled or timed out: aborted (4), whatever the thresholds say; a workflow stopped mid-run is interrupted.
  for (auto st : {cluster::JobState::cancelled, cluster::JobState::timeout}) {
    const auto v = job(p, {part(100, 0, 1)}, st, cluster::WfState::cancelled);
    auto plan = job_plan(v);
    auto s = job_run_stats(*plan, v);
    REQUIRE(s.ok());
    CHECK(s->aborted);
    CHECK(s->workflows[0].outcome == load::WorkflowOutcome::interrupted);
    CHECK(job_exit_code(v, *s) == cli::kExitAborted);
    CHECK(load::exit_code_for(*s) == cli::kExitAborted);
  }
  // A failed workflow: failed with its error, exit 3 although its statistics pass the thresholds.
  {
    auto v = job(p, {part(100, 0, 1)}, cluster::JobState::failed, cluster::WfState::failed);
    v.workflows[0].error = "worker lost";
    auto plan = job_plan(v);
    auto s = job_run_stats(*plan, v);
    REQUIRE(s.ok());
    CHECK(s->workflows[0].outcome == load::WorkflowOutcome::failed);
    CHECK(s->workflows[0].note == "worker lost");
    CHECK(job_exit_code(v, *s) == cli::kExitThresholds);
  }
  // A workflow that never ran (no statistics) because a dependency did not complete: skipped, exit 3.
  {
    auto v = job(p, {}, cluster::JobState::partial, cluster::WfState::cancelled);
    v.workflows[0].error = "dependency 'setup' failed";
    auto plan = job_plan(v);
    auto s = job_run_stats(*plan, v);
    REQUIRE(s.ok());
    CHECK(s->workflows[0].outcome == load::WorkflowOutcome::skipped);
    CHECK(s->workflows[0].note == "dependency 'setup' did not complete");
    CHECK(job_exit_code(v, *s) == cli::kExitThresholds);
  }
  // A job state of failed without a failed workflow still never exits 0.
  {
    const auto v = job(p, {part(100, 0, 1)}, cluster::JobState::failed, cluster::WfState::completed);
    CHECK(judged(v) == cli::kExitThresholds);
  }
  // Statistics that do not decode: an error naming the workflow, not a result.
  {
    auto v = job(p, {part(100, 0, 1)});
    v.workflows[0].parts[0].stats = {1, 2, 3};
    auto plan = job_plan(v);
    auto s = job_run_stats(*plan, v);
    REQUIRE_FALSE(s.ok());
    CHECK(s.status().message().find("workflow 'w'") != std::string::npos);
  }
}
