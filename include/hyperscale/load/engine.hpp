// The local load engine: runs a validated plan on every shard of a ShardSet (one shard = one core).
// Each shard owns its VUs, connections and statistics; shards report to a coordinator on shard 0 with
// messages (a per-second live delta and a final result per workflow). Nothing is shared on the hot path.
#pragma once

#include <cstdio>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "hyperscale/base/status.hpp"
#include "hyperscale/base/time.hpp"
#include "hyperscale/load/plan.hpp"
#include "hyperscale/load/stats.hpp"

namespace hs::load {

struct LiveStep {
  std::string name;
  Counts total;
  double rps = 0;                           // last second
  std::uint64_t p50 = 0, p95 = 0, p99 = 0;  // last second, ns
};
struct LiveWorkflow {
  std::string name;
  WorkflowOutcome outcome = WorkflowOutcome::pending;
  bool running = false;
  Duration elapsed{0}, duration{0};
  std::uint64_t started = 0, completed = 0, dropped = 0, inflight = 0;
  std::vector<LiveStep> steps;
};
// A threshold judged live: counts so far (warmup included), latency over the last second.
struct LiveThreshold {
  const Threshold* threshold = nullptr;
  double observed = 0;
  bool passed = true;
  bool no_data = false;
};
struct LiveSnapshot {
  Duration elapsed{0};
  std::vector<LiveWorkflow> workflows;
  std::vector<LiveThreshold> thresholds;
};

struct RunOptions {
  int shards = 0;  // 0: one per core
  // Called on shard 0 about once a second with the merged live view (nullptr: no live view).
  std::function<void(const LiveSnapshot&)> on_progress;
  bool handle_signals = true;  // SIGINT/SIGTERM abort the run (exit code 4); a second one exits at once
};

// Runs the plan to completion and returns the merged statistics with thresholds evaluated. Errors
// only for infrastructure problems found before load starts (e.g. a host that does not resolve).
Result<RunStats> run_plan(const Plan& plan, const RunOptions& opts);

// The longest a run of `plan` can take when every part behaves: each workflow's duration, plus its
// graceful stop (at most the sum of its step timeouts + 1 s) and 2 s of start/stop slack, plus 10 s for the
// whole run. Both the local engine and the local cluster stop waiting (and abort) after it.
Duration worst_case_run_time(const Plan& plan);

namespace testing {
// Called on the shard's thread with the step's name when an HTTP response has been read, before it is
// checked (nullptr, the default: not called). Tests make it throw to show that the engine's C callback
// boundaries hold: the exception fails that request, is logged and counted, and the run goes on.
extern void (*on_response)(std::string_view step);
}  // namespace testing

}  // namespace hs::load
