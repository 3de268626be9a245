// `hyperscale run` on the cluster roles: a manager node and a worker node (cluster::Mux each) hosted in
// this process on shard 0 of a ShardSet, joined by an in-process transport (messages delivered with
// Reactor::defer: asynchronous like the network, never re-entrant). The worker runs workflows through a
// host::LoadExecutor over every shard; a local client submits the plan as one job and collects the
// per-workflow statistics from the manager's job view. Same code paths as a cluster, no sockets.
#pragma once

#include <functional>

#include "hyperscale/base/status.hpp"
#include "hyperscale/load/engine.hpp"
#include "hyperscale/load/plan.hpp"
#include "hyperscale/load/stats.hpp"

namespace hs::cli {

struct LocalRunOptions {
  int shards = 0;  // 0: one per core
  // Called on shard 0 about once a second (per-workflow counts; no per-step data).
  std::function<void(const load::LiveSnapshot&)> on_progress;
  bool handle_signals = true;  // SIGINT/SIGTERM cancel the job (partial results, aborted); a second exits
  std::string plan_text;       // the workflow file's text (sent to the worker as the job's plan)
};

// Runs the plan as one job on an in-process manager + worker and returns the merged statistics with
// thresholds evaluated. Errors (nothing ran): a host that does not resolve (unavailable), the job refused.
Result<load::RunStats> run_local(const load::Plan& plan, const LocalRunOptions& opts);

}  // namespace hs::cli
