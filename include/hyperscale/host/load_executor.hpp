// LoadExecutor: the worker role's Executor (worker/executor.hpp) on the real load engine. It is the
// adapter between a worker and the load engine, so it lives on the host side: `load` never includes
// a role header (docs/architecture.md).
//
// It lives on the worker's control shard and owns a pool of free shards (cores). start() parses
// ExecSpec.plan (the workflow file's TOML text) with the normal parser, picks ExecSpec.workflow, takes
// `cores` shards from the pool and runs the workflow there through a load::Runner. Progress (about once
// a second) and the result are reported through the callbacks, on the control shard. The shards go back
// to the pool when the run ends (completed, failed or cancelled).
//
// Mapping: ExecProgress/ExecResult.completed = iterations that finished without a failed step,
// .failed = iterations with a failed step; ExecProgress.started = iterations begun (those two, the
// ones in flight and any interrupted; never less than completed + failed).
// ExecResult.stats = encode_stats(the merged WorkflowStats),
// .published = what a setup workflow provides, by bare key (the manager prefixes each with the
// workflow's name, "workflow.key", for a dependant's ExecSpec.context), .error = why it failed.
// ExecSpec.plan may be TOML or JSON (JSON starts with '{'). ExecSpec.vus is ignored unless
// LoadExecutorOptions::vus_from_spec is set; every other parameter comes from the file.
// Parts (ExecSpec.shard_total > 0): the `cores` shards run the workflow's global shards
// [shard_first, shard_first + cores) of shard_total (load::RunPart, docs/load.md "Parts"); every figure
// in the file (and ExecSpec.vus with vus_from_spec) is the whole workflow's, the part takes its share.
// ExecSpec.skip_iterations becomes RunSpec::skip_iterations (a re-dispatched part runs what is left of
// its `iterations` share).
// Live windows (ExecSpec.window_ms > 0, docs/windows.md "How a part makes windows"): a load::WindowCutter
// per exec cuts the Runner's progress into windows of window_ms from ExecSpec.window_origin_unix_ms (0:
// from the run's start), with the part's index and token; each progress carries the windows finished
// since the previous one, encoded (load::encode_window), and the last progress before done (the
// Runner's final one) the rest, so an exec's windows add up exactly to its ExecResult.stats. Their
// saturation: this process's CPU (getrusage user + system time over the wall time since the previous
// progress, percent of one core) and resident memory (/proc/self/statm); what cannot be read is 0,
// counted and logged once.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "hyperscale/load/plan.hpp"
#include "hyperscale/load/runner.hpp"
#include "hyperscale/load/window.hpp"
#include "hyperscale/worker/executor.hpp"

namespace hs::host {

struct LoadExecutorOptions {
  std::size_t max_plan_bytes = 4u << 20;                      // larger plan texts are refused
  Duration cancel_grace = load::Runner::kDefaultCancelGrace;  // in-flight iterations' time to finish on cancel
  load::EnvLookup env = load::process_env();                  // ${env.NAME} in the plan text
  // true: ExecSpec.vus (> 0) replaces the file's `vus` of a constant-VUs test workflow (the manager's
  // share when it splits one workflow over several workers). false: the file's values govern.
  bool vus_from_spec = false;
};

class LoadExecutor : public worker::Executor {
 public:
  static constexpr std::uint32_t kMinWindowMs = 10;  // a shorter ExecSpec.window_ms is refused

  using ProgressFn = std::function<void(std::uint64_t exec, worker::ExecProgress)>;
  using DoneFn = std::function<void(std::uint64_t exec, worker::ExecResult)>;

  // `control`: the shard this runs on (call every member there); `cores`: the shards it may use.
  LoadExecutor(runtime::Reactor& control, std::vector<int> cores, ProgressFn on_progress, DoneFn on_done,
               LoadExecutorOptions opts = {});
  // Live executions are cancelled at once; their callbacks are not called.
  ~LoadExecutor() override = default;

  // Errors (nothing started, nothing changed): a live exec id, bad plan text (the parser's
  // FILE:LINE:COL messages), an unknown workflow, cores = 0 or more than are free, a part beyond its
  // total (or shard_first without shard_total, a setup workflow's part not from global shard 0), a host
  // that does not resolve, a window_ms > 0 below kMinWindowMs.
  Status start(std::uint64_t exec, const worker::ExecSpec& spec) override;
  void cancel(std::uint64_t exec) override;

  std::size_t free_cores() const noexcept { return free_.size(); }
  std::size_t live() const noexcept { return live_.size(); }
  // Live execs cutting windows (each holds a cutter until it ends).
  std::size_t window_states() const noexcept;

 private:
  // One exec's window state.
  struct Windows {
    load::WindowCutter cutter;
    Instant origin{0};                                 // window 0's start on the control shard's clock
    Instant last_at{0};                                // the previous progress (the saturation's span)
    std::int64_t last_cpu_us = -1;                     // process CPU time then (-1: unknown)
    std::uint64_t refused_seen = 0, skipped_seen = 0;  // the cutter's counters already logged
  };
  struct Live {
    load::RunId run = 0;
    std::vector<int> shards;
    std::string workflow;
    std::unique_ptr<Windows> windows;  // window_ms > 0 only
  };
  void on_done(std::uint64_t exec, load::WorkflowResult res);
  void progress(std::uint64_t exec, const load::WorkflowLive& l);
  load::Saturation saturation(Windows& w, Instant now);

  runtime::Reactor& r_;
  ProgressFn on_progress_;
  DoneFn on_done_;
  LoadExecutorOptions opts_;
  std::vector<int> free_;                         // free shards, ascending
  std::map<std::uint64_t, Live> live_;            // bounded by the pool: each live exec holds >= 1 core
  bool cpu_warned_ = false, rss_warned_ = false;  // a saturation read failure is logged once
  load::Runner runner_;                           // last: destroyed first, so no callback sees a dying executor
};

}  // namespace hs::host
