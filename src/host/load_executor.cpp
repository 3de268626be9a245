#include "hyperscale/host/load_executor.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "hyperscale/base/log.hpp"
#include "hyperscale/base/time.hpp"
#include "hyperscale/load/stats_codec.hpp"
#include "hyperscale/runtime/reactor.hpp"

namespace hs::host {

using load::prepare_workflow;
using load::RunCallbacks;
using load::RunEnd;
using load::RunSpec;
using load::Workflow;
using load::WorkflowKind;
using load::WorkflowLive;
using load::WorkflowResult;

LoadExecutor::LoadExecutor(runtime::Reactor& control, std::vector<int> cores, ProgressFn on_progress, DoneFn on_done,
                           LoadExecutorOptions opts)
    : r_(control),
      on_progress_(std::move(on_progress)),
      on_done_(std::move(on_done)),
      opts_(std::move(opts)),
      free_(std::move(cores)),
      runner_(control) {
  std::sort(free_.begin(), free_.end());
  free_.erase(std::unique(free_.begin(), free_.end()), free_.end());
}

Status LoadExecutor::start(std::uint64_t exec, const worker::ExecSpec& spec) {
  auto refuse = [&](Errc code, std::string why, const char* reason) {
    log::warn("load", "exec_refused", "exec={} job={} workflow={} reason={}", exec, log::quoted(spec.job_id),
              log::quoted(spec.workflow), log::quoted(why));
    r_.metrics()
        .counter("hs_load_exec_refused_total", "Executions the load executor refused to start, by reason",
                 {{"reason", reason}})
        .inc();
    return make_error(code, std::move(why));
  };
  if (live_.count(exec) != 0)
    return refuse(Errc::already_exists, fmt::format("execution {} is already live", exec), "duplicate");
  if (spec.cores == 0) return refuse(Errc::invalid_argument, "cores = 0", "cores");
  if (spec.shard_total == 0 && spec.shard_first != 0)
    return refuse(Errc::invalid_argument,
                  fmt::format("shard_first = {} without shard_total (a part needs both)", spec.shard_first), "part");
  if (spec.shard_total > 0 && std::uint64_t{spec.shard_first} + spec.cores > spec.shard_total)
    return refuse(Errc::invalid_argument,
                  fmt::format("part of {} cores from global shard {} is beyond the workflow's {} shards", spec.cores,
                              spec.shard_first, spec.shard_total),
                  "part");
  if (spec.cores > free_.size())
    return refuse(Errc::backpressure,
                  fmt::format("not enough free cores: {} wanted, {} free", spec.cores, free_.size()), "cores");
  if (spec.plan.size() > opts_.max_plan_bytes)
    return refuse(Errc::invalid_argument,
                  fmt::format("plan text of {} bytes exceeds the bound {}", spec.plan.size(), opts_.max_plan_bytes),
                  "plan_size");
  const std::string text(spec.plan.begin(), spec.plan.end());
  // JSON plans start with '{' (TOML cannot): parse each with its own parser.
  const auto first = text.find_first_not_of(" \t\r\n");
  const bool json = first != std::string::npos && text[first] == '{';
  const std::string file = (spec.job_id.empty() ? std::string("workflow") : spec.job_id) + (json ? ".json" : ".toml");
  auto parsed = load::load_plan_text(text, file, json, opts_.env);
  if (!parsed.ok()) return refuse(Errc::invalid_argument, parsed.status().message(), "plan");
  auto plan = std::make_shared<load::Plan>(std::move(parsed).value());
  const auto it = std::find_if(plan->workflows.begin(), plan->workflows.end(),
                               [&](const Workflow& w) { return w.name == spec.workflow; });
  if (it == plan->workflows.end())
    return refuse(Errc::not_found, fmt::format("{}: no workflow named '{}'", file, spec.workflow), "workflow");
  if (opts_.vus_from_spec && spec.vus > 0 && it->kind == WorkflowKind::test &&
      it->executor == load::Executor::constant_vus)
    it->vus = spec.vus;
  auto prep = prepare_workflow(plan, spec.workflow);
  if (!prep.ok()) return refuse(prep.status().code(), prep.status().message(), "prepare");

  RunSpec rs;
  rs.workflow = std::move(prep).value();
  rs.shards.assign(free_.begin(), free_.begin() + spec.cores);
  if (spec.shard_total > 0) rs.part = load::RunPart{spec.shard_first, spec.shard_total};
  rs.skip_iterations = spec.skip_iterations;
  if (spec.start_at_unix_ms != 0) {
    // The one place a wall clock sets a schedule: a start time shared by several machines can only be
    // said in wall time. It becomes an instant of the control shard's monotonic clock here.
    const std::int64_t in_us = static_cast<std::int64_t>(spec.start_at_unix_ms) * 1000 - wall_time_us();
    rs.start_at = r_.clock().now() + std::chrono::microseconds(in_us);
  }
  for (const auto& [k, v] : spec.context) rs.context[k] = v;
  RunCallbacks cb;
  if (on_progress_) {
    cb.on_progress = [this, exec](const WorkflowLive& l) {
      worker::ExecProgress p;
      p.failed = l.iterations_failed;
      p.completed = l.completed - std::min(l.completed, l.iterations_failed);
      // Iterations begun: finished ones (ok or failed), the ones in flight and the interrupted ones. Each
      // shard reports its counters from one instant, so started >= completed + failed already; the max
      // keeps that promise to the worker even if a report were ever torn.
      p.started = std::max(l.started, p.completed + p.failed);
      on_progress_(exec, p);
    };
  }
  cb.on_done = [this, exec](WorkflowResult res) { on_done(exec, std::move(res)); };
  const std::vector<int> shards = rs.shards;
  auto id = runner_.start(std::move(rs), std::move(cb));
  if (!id.ok()) return refuse(id.status().code(), id.status().message(), "runner");
  free_.erase(free_.begin(), free_.begin() + spec.cores);
  live_[exec] = Live{*id, shards, spec.workflow};
  log::info("load", "exec_start",
            "exec={} job={} workflow={} cores={} shard_first={} shard_total={} skip_iterations={}", exec,
            log::quoted(spec.job_id), log::quoted(spec.workflow), spec.cores, spec.shard_first, spec.shard_total,
            spec.skip_iterations);
  return ok_status();
}

void LoadExecutor::cancel(std::uint64_t exec) {
  auto it = live_.find(exec);
  if (it == live_.end()) {
    log::debug("load", "exec_cancel_unknown", "exec={}", exec);
    return;
  }
  runner_.cancel(it->second.run, opts_.cancel_grace);
}

void LoadExecutor::on_done(std::uint64_t exec, WorkflowResult res) {
  auto it = live_.find(exec);
  if (it == live_.end()) {
    log::error("load", "exec_done_unknown", "exec={}", exec);
    return;
  }
  const std::string workflow = it->second.workflow;
  free_.insert(free_.end(), it->second.shards.begin(), it->second.shards.end());
  std::sort(free_.begin(), free_.end());
  live_.erase(it);
  worker::ExecResult out;
  switch (res.end) {
    case RunEnd::completed:
      out.outcome = worker::ExecOutcome::completed;
      break;
    case RunEnd::failed:
      out.outcome = worker::ExecOutcome::failed;
      break;
    case RunEnd::cancelled:
      out.outcome = worker::ExecOutcome::cancelled;
      break;
  }
  out.failed = res.stats.iterations_failed;
  out.completed = res.stats.completed - std::min(res.stats.completed, res.stats.iterations_failed);
  out.error = std::move(res.error);
  out.stats = load::encode_stats(res.stats);
  // Bare keys: the manager prefixes them with the workflow name ("workflow.key") for dependants.
  for (auto& [k, v] : res.published) out.published.emplace_back(k, std::move(v));
  log::info("load", "exec_done", "exec={} workflow={} outcome={} completed={} failed={}", exec, log::quoted(workflow),
            load::run_end_name(res.end), out.completed, out.failed);
  if (on_done_) on_done_(exec, std::move(out));
}

}  // namespace hs::host
