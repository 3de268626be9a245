// A cluster job's results as `hyperscale run` has them for a local run (load::RunStats): the final
// statistics of each workflow (the exact merge of its parts'), its outcome from the job's view, and
// the plan's thresholds judged on the merged data. `hyperscale results` writes them with
// load::write_results; `hyperscale submit --wait` takes its exit code and summary from them.
// No sockets here (tests/unit/cli/test_job_results.cpp).
#pragma once

#include <optional>

#include "hyperscale/base/status.hpp"
#include "hyperscale/cluster/messages.hpp"
#include "hyperscale/load/plan.hpp"
#include "hyperscale/load/stats.hpp"

namespace hs::cli {

// A workflow's statistics: its own (a workflow of one part), or the exact merge of its parts'
// (nullopt: none reported yet; an error: a part's statistics do not decode).
Result<std::optional<load::WorkflowStats>> workflow_stats(const cluster::WorkflowView& w);

// The job's plan: the workflow file's text the job was submitted with (WorkflowView.plan, sent when
// StatusQuery.with_plan is set), parsed as the workers parse it (TOML, or JSON when it starts with '{').
Result<load::Plan> job_plan(const cluster::JobView& v);

// The job's RunStats, one WorkflowStats per workflow of the plan, in the plan's order (the job's
// workflows are matched by name): the merged statistics, with the outcome the job's view gives
// (completed; failed; skipped when it never ran or a dependency did not complete; interrupted when a
// cancelled or timed-out job stopped it mid-run). A cancelled or timed-out job is `aborted`. The run's
// elapsed time is the longest workflow's (the view has no job wall time). Thresholds are evaluated.
// Errors: statistics that do not decode (named by workflow).
Result<load::RunStats> job_run_stats(const load::Plan& plan, const cluster::JobView& v);

// The exit code `hyperscale run` gives for these statistics (load::exit_code_for: 0, 3, 4 or 5),
// made to agree with the job's state: a job that failed or ended partial is never 0 (3), and a
// cancelled or timed-out one is 4.
int job_exit_code(const cluster::JobView& v, const load::RunStats& s);

}  // namespace hs::cli
