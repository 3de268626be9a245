// A cluster job's results as load::RunStats (job_results.hpp).
#include "cli/job_results.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <utility>

#include "cli/commands.hpp"
#include "hyperscale/load/report.hpp"
#include "hyperscale/load/stats_codec.hpp"

namespace hs::cli {

Result<std::optional<load::WorkflowStats>> workflow_stats(const cluster::WorkflowView& w) {
  if (!w.stats.empty()) {
    auto s = load::decode_stats(w.stats);
    if (!s.ok()) return s.status();
    return std::optional<load::WorkflowStats>(std::move(s).value());
  }
  std::optional<load::WorkflowStats> merged;
  for (std::size_t k = 0; k < w.parts.size(); ++k) {
    if (w.parts[k].stats.empty()) continue;
    auto s = load::decode_stats(w.parts[k].stats);
    if (!s.ok()) return make_error(s.status().code(), fmt::format("part {}: {}", k, s.status().message()));
    if (merged)
      merged->merge(*s);
    else
      merged = std::move(s).value();
  }
  return merged;
}

Result<load::Plan> job_plan(const cluster::JobView& v) {
  const auto it = std::find_if(v.workflows.begin(), v.workflows.end(),
                               [](const cluster::WorkflowView& w) { return !w.plan.empty(); });
  if (it == v.workflows.end())
    return make_error(Errc::unavailable,
                      fmt::format("the manager sent no plan for job {} (a manager older than this client?)", v.job_id));
  const std::string text(it->plan.begin(), it->plan.end());
  const auto first = text.find_first_not_of(" \t\r\n");
  const bool json = first != std::string::npos && text[first] == '{';
  auto plan = load::load_plan_text(text, v.job_id + (json ? ".json" : ".toml"), json);
  if (!plan.ok())
    return make_error(plan.status().code(), fmt::format("job {}: its workflow file does not parse here: {}", v.job_id,
                                                        plan.status().message()));
  return plan;
}

namespace {

bool job_aborted(cluster::JobState s) { return s == cluster::JobState::cancelled || s == cluster::JobState::timeout; }

// A workflow of the job that has no statistics: why it has none, as `run` says it.
void outcome_without_stats(const cluster::WorkflowView& w, bool aborted, const char* abort_word,
                           load::WorkflowStats& ws) {
  if (w.state == cluster::WfState::completed) {
    ws.outcome = load::WorkflowOutcome::completed;
  } else if (w.error.rfind("dependency '", 0) == 0) {
    const auto q = w.error.find('\'', 12);
    ws.outcome = load::WorkflowOutcome::skipped;
    ws.note = fmt::format("dependency '{}' did not complete", w.error.substr(12, q == std::string::npos ? 0 : q - 12));
  } else if (aborted) {
    ws.outcome = load::WorkflowOutcome::skipped;
    ws.note = abort_word;
  } else if (!cluster::terminal(w.state)) {
    ws.outcome = load::WorkflowOutcome::skipped;
    ws.note = "did not run";
  } else {
    ws.outcome = load::WorkflowOutcome::failed;
    ws.note = w.error.empty() ? std::string(cluster::name(w.state)) : w.error;
  }
}

}  // namespace

Result<load::RunStats> job_run_stats(const load::Plan& plan, const cluster::JobView& v) {
  load::RunStats out;
  out.test_name = plan.test_name;
  out.plan_hash = plan.hash;
  out.aborted = job_aborted(v.state);
  const char* abort_word = v.state == cluster::JobState::timeout ? "job timed out" : "job cancelled";
  if (out.aborted) out.abort_reason = v.error.empty() ? std::string(abort_word) : v.error;
  out.workflows.resize(plan.workflows.size());
  for (std::size_t i = 0; i < plan.workflows.size(); ++i) {
    const load::Workflow& pw = plan.workflows[i];
    load::WorkflowStats& ws = out.workflows[i];
    const auto it = std::find_if(v.workflows.begin(), v.workflows.end(),
                                 [&](const cluster::WorkflowView& x) { return x.name == pw.name; });
    if (it == v.workflows.end()) {
      ws.outcome = load::WorkflowOutcome::failed;
      ws.note = "missing from the job";
    } else {
      auto got = workflow_stats(*it);
      if (!got.ok())
        return make_error(got.status().code(),
                          fmt::format("workflow '{}': statistics unreadable: {}", pw.name, got.status().message()));
      if (got->has_value()) {
        ws = std::move(**got);
        ws.note.clear();
        if (it->state == cluster::WfState::completed) {
          ws.outcome = load::WorkflowOutcome::completed;
        } else if (out.aborted || !cluster::terminal(it->state)) {
          ws.outcome = load::WorkflowOutcome::interrupted;
          ws.note = out.aborted ? abort_word : "did not finish";
        } else {
          ws.outcome = load::WorkflowOutcome::failed;
          ws.note = it->error.empty() ? std::string(cluster::name(it->state)) : it->error;
        }
      } else {
        outcome_without_stats(*it, out.aborted, abort_word, ws);
      }
    }
    ws.name = pw.name;
    if (ws.steps.size() < pw.steps.size()) ws.steps.resize(pw.steps.size());
    for (std::size_t s = 0; s < pw.steps.size(); ++s)
      if (ws.steps[s].name.empty()) ws.steps[s].name = pw.steps[s].name;
    out.elapsed = std::max(out.elapsed, ws.elapsed);
  }
  load::evaluate_thresholds(plan, out);
  return out;
}

int job_exit_code(const cluster::JobView& v, const load::RunStats& s) {
  if (job_aborted(v.state)) return kExitAborted;
  const int code = load::exit_code_for(s);
  if (code == kExitOk && v.state != cluster::JobState::completed) return kExitThresholds;
  return code;
}

}  // namespace hs::cli
