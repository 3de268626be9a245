// Runs one workflow of a plan on chosen shards of an already running ShardSet.
//
// A Runner lives on one shard (the control shard) of a running runtime::ShardSet. start() sends the
// workflow to each of its shards (one shard = one core); every shard runs its share (VUs, iterations,
// arrival slots split as in share_for) and reports to the control shard with messages: a live delta
// twice a second, and its exact statistics when it is done. Every callback runs on the control shard.
// Several runs can be live at once (on disjoint shards, or shared ones: each shard keeps per-run state).
// All per-run state, on the control shard and on every shard, is freed when the run ends.
// A run may be one part of a workflow spread over several workers (RunSpec::part, RunPart below).
//
//   auto prep = prepare_workflow(plan, "browse");        // resolves hosts, pre-serialises requests
//   Runner runner(reactor);                               // on the control shard's thread
//   auto id = runner.start({*prep, {1, 2}, ctx}, {.on_progress = ..., .on_done = ...});
//   runner.cancel(*id);                                   // graceful: stop starting, drain, then abandon
//
// `run_plan` (engine.hpp) is a driver over this API: it resolves dependencies between workflows and
// passes what setup workflows published to their dependants as context.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hyperscale/base/status.hpp"
#include "hyperscale/base/time.hpp"
#include "hyperscale/load/plan.hpp"
#include "hyperscale/load/stats.hpp"

namespace hs::runtime {
class Reactor;
}

namespace hs::load {

// One workflow of a plan, ready to run: hosts resolved (blocking getaddrinfo: call it where that is
// acceptable), static requests serialised, TLS contexts created. Immutable; shared by every shard.
struct PreparedWorkflow;
Result<std::shared_ptr<const PreparedWorkflow>> prepare_workflow(std::shared_ptr<const Plan> plan,
                                                                 const std::string& workflow);
const Workflow& workflow_of(const PreparedWorkflow& p);

// The live view of a run, merged over its shards (what they reported in the last half second).
// Exact over a run: the `window`s of every on_progress call (or sample()) add up, per step and bucket
// for bucket, to the final WorkflowStats' `latency`, and the final call's cumulative figures equal the
// final statistics (steps[i] == stats.steps[i].total, measured[i] == stats.steps[i].measured, started,
// completed, iterations_failed, dropped). Windows given out by sample() are not given to on_progress.
struct WorkflowLive {
  Duration elapsed{0};
  // Cumulative iteration counters (started counts the interrupted ones too; inflight is a gauge).
  std::uint64_t started = 0, completed = 0, iterations_failed = 0, dropped = 0, inflight = 0;
  std::vector<Counts> steps;     // per step, whole run so far (warmup included)
  std::vector<Counts> measured;  // per step, whole run so far, after warmup (StepStats::measured)
  // Per step: latencies of the MEASURED requests (after warmup) reported since the previous sample, so
  // window[i].count() is the growth of measured[i].executed over that span (none during warmup).
  std::vector<Histogram> window;
  // True on the last on_progress call of a run, made with everything every shard reported, just before
  // on_done (never on a sample()).
  bool final = false;
};

enum class RunEnd : std::uint8_t { completed, failed, cancelled };
const char* run_end_name(RunEnd e);

struct WorkflowResult {
  RunEnd end = RunEnd::completed;
  std::string error;    // why it failed (end == failed): e.g. "setup did not complete"
  WorkflowStats stats;  // exact merge of every shard; stats.outcome: completed / failed / interrupted
  std::map<std::string, std::string> published;  // setup workflows: provide key -> value (no prefix)
  Duration start_late{0};  // how long after RunSpec::start_at the run was started (0: on time or none)
};

// A run as one part of a workflow spread over several workers (docs/load.md, "Parts"): the workflow
// runs on `total` global shards in all, and this run's i-th listed shard is global shard `first + i`
// (its share is share_for(wf, first + i, total), arrivals included). Needs total > 0,
// first + shards.size() <= total, total <= kMaxGlobalShards; a setup workflow only with first = 0.
struct RunPart {
  std::uint32_t first = 0;
  std::uint32_t total = 0;
};

struct RunSpec {
  std::shared_ptr<const PreparedWorkflow> workflow;
  std::vector<int> shards;                     // distinct shard ids of the ShardSet, at least one
  std::map<std::string, std::string> context;  // "workflow.key" -> value, for ${ctx.workflow.key}
  // nullopt: the whole workflow on these shards (the same as {first 0, total shards.size()}).
  std::optional<RunPart> part = std::nullopt;
  // The instant (the control shard's clock) at which every shard starts the workflow's schedule, so
  // that the parts of one workflow on several workers start together. nullopt: now. More than
  // kMaxStartAhead ahead is an error. An instant already past still anchors the schedule: the
  // arrivals due since are issued at once (or dropped, counted, when no VU slot is free) and their
  // latency, measured from the intended time, includes the lateness; constant-VUs runs end at the
  // shared end. WorkflowResult::start_late says how late the run started.
  std::optional<Instant> start_at = std::nullopt;
  // A part run again after the worker running it was lost: iterations of its `iterations` budget (the
  // sum of its shards' shares) an earlier attempt already accounted for. They are spread evenly over its
  // shards, none giving more than its share (load::part_shares), so the run starts
  // max(0, budget - skip_iterations) iterations in all; a skip of the whole budget or more runs none and
  // completes at once. Arrival rate: a shard's remaining arrivals keep their place in the schedule.
  // Ignored for a workflow without an `iterations` budget (duration only: start_at already places the
  // run in its schedule) and for a setup workflow (it runs once, whole).
  std::uint64_t skip_iterations = 0;
};

struct RunCallbacks {
  // About once a second while the run is live (window: measured latencies since the previous call),
  // and once more with WorkflowLive::final set just before on_done (not after the Runner is destroyed).
  std::function<void(const WorkflowLive&)> on_progress;
  // Exactly once, when every shard has reported (unless the Runner is destroyed first).
  std::function<void(WorkflowResult)> on_done;
};

using RunId = std::uint64_t;

class Runner {
 public:
  static constexpr std::size_t kMaxRuns = 1024;     // live runs per Runner; start() refuses more
  static constexpr std::size_t kMaxContext = 4096;  // context entries per run
  static constexpr Duration kDefaultCancelGrace = std::chrono::seconds(2);
  static constexpr Duration kMaxStartAhead = std::chrono::seconds(60);  // RunSpec::start_at bound

  // `control` must be a shard of a running ShardSet; call every member on its thread.
  explicit Runner(runtime::Reactor& control);
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;
  // Cancels the live runs at once (grace 0); their callbacks are not called any more.
  ~Runner();

  // Starts the run. Errors (nothing started): bad shard list, bad part, a start_at too far ahead, too
  // many runs, oversized context.
  Result<RunId> start(RunSpec spec, RunCallbacks cb);
  // Stops starting iterations; iterations in flight get `grace` to finish, then are abandoned
  // (counted as interrupted). on_done follows with RunEnd::cancelled. False if `id` is not live.
  bool cancel(RunId id, Duration grace = kDefaultCancelGrace);
  // Pull form of on_progress: fills `out` and restarts the latency window. False if `id` is not live.
  bool sample(RunId id, WorkflowLive& out);
  std::size_t live() const noexcept { return ids_.size(); }

 private:
  friend struct RunnerAccess;
  runtime::Reactor& r_;
  std::vector<RunId> ids_;  // live runs started here (bounded by kMaxRuns)
};

// Diagnostics: runs with state on the calling shard (shard side + control side). 0 once every run
// that touched this shard has ended.
std::size_t shard_run_states();

}  // namespace hs::load
