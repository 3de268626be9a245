#include "hyperscale/host/load_executor.hpp"

#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <optional>

#include "hyperscale/base/log.hpp"
#include "hyperscale/base/time.hpp"
#include "hyperscale/load/stats_codec.hpp"
#include "hyperscale/load/window.hpp"
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

namespace {
// This process's CPU time (user + system), microseconds; -1 when it cannot be read.
std::int64_t process_cpu_us() {
  rusage ru{};
  if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
  auto us = [](const timeval& tv) { return static_cast<std::int64_t>(tv.tv_sec) * 1'000'000 + tv.tv_usec; };
  return us(ru.ru_utime) + us(ru.ru_stime);
}
// This process's resident memory (bytes); nullopt when it cannot be read.
std::optional<std::uint64_t> process_rss_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return std::nullopt;
  unsigned long long size = 0, resident = 0;
  const int n = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  const long page = sysconf(_SC_PAGESIZE);
  if (n != 2 || page <= 0) return std::nullopt;
  return static_cast<std::uint64_t>(resident) * static_cast<std::uint64_t>(page);
}
}  // namespace

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
  if (spec.window_ms > 0 && spec.window_ms < kMinWindowMs)
    return refuse(Errc::invalid_argument,
                  fmt::format("window_ms = {} is below the minimum {}", spec.window_ms, kMinWindowMs), "window");
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
  const Instant now = r_.clock().now();
  const std::int64_t wall_now_us = wall_time_us();
  // A wall-clock time (Unix ms) as an instant of the control shard's monotonic clock.
  auto instant_of = [&](std::uint64_t unix_ms) {
    return now + std::chrono::microseconds(static_cast<std::int64_t>(unix_ms) * 1000 - wall_now_us);
  };
  if (spec.start_at_unix_ms != 0) {
    // The one place a wall clock sets a schedule: a start time shared by several machines can only be
    // said in wall time. It becomes an instant of the control shard's monotonic clock here.
    rs.start_at = instant_of(spec.start_at_unix_ms);
  }
  std::unique_ptr<Windows> windows;
  if (spec.window_ms > 0) {
    // Window 0 starts at the shared origin (the same wall time for every part), else at the run's start.
    const Instant run_start = rs.start_at.value_or(now);
    const Instant origin = spec.window_origin_unix_ms != 0 ? instant_of(spec.window_origin_unix_ms) : run_start;
    // The part's first window: where its schedule starts, or now for a part started late (re-dispatched).
    const Duration offset = std::max(run_start, now) - origin;
    const load::Workflow& wf = load::workflow_of(*rs.workflow);
    std::vector<std::string> steps;
    steps.reserve(wf.steps.size());
    for (const auto& st : wf.steps) steps.push_back(st.name);
    windows =
        std::unique_ptr<Windows>(new Windows{load::WindowCutter(spec.workflow, std::move(steps), spec.part, spec.token,
                                                                std::chrono::milliseconds(spec.window_ms), offset),
                                             origin, now, process_cpu_us(), 0, 0});
  }
  for (const auto& [k, v] : spec.context) rs.context[k] = v;
  RunCallbacks cb;
  if (on_progress_) {
    cb.on_progress = [this, exec](const WorkflowLive& l) { progress(exec, l); };
  }
  cb.on_done = [this, exec](WorkflowResult res) { on_done(exec, std::move(res)); };
  const std::vector<int> shards = rs.shards;
  auto id = runner_.start(std::move(rs), std::move(cb));
  if (!id.ok()) return refuse(id.status().code(), id.status().message(), "runner");
  free_.erase(free_.begin(), free_.begin() + spec.cores);
  const std::uint64_t first_window = windows ? windows->cutter.current() : 0;
  live_[exec] = Live{*id, shards, spec.workflow, std::move(windows)};
  log::info("load", "exec_start",
            "exec={} job={} workflow={} cores={} shard_first={} shard_total={} skip_iterations={} part={} token={} "
            "window_ms={} first_window={}",
            exec, log::quoted(spec.job_id), log::quoted(spec.workflow), spec.cores, spec.shard_first, spec.shard_total,
            spec.skip_iterations, spec.part, spec.token, spec.window_ms, first_window);
  return ok_status();
}

std::size_t LoadExecutor::window_states() const noexcept {
  std::size_t n = 0;
  for (const auto& [id, l] : live_) n += l.windows ? 1 : 0;
  return n;
}

load::Saturation LoadExecutor::saturation(Windows& w, Instant now) {
  load::Saturation s;
  auto failed = [&](const char* what, bool& warned) {
    r_.metrics()
        .counter("hs_load_exec_saturation_errors_total",
                 "Reads of the load generator's own CPU or memory that failed (reported as 0), by what",
                 {{"what", what}})
        .inc();
    if (!warned) {
      warned = true;
      log::warn("load", "saturation_unreadable", "what={} errno={} note=reported as 0 (logged once)", what, errno);
    }
  };
  const std::int64_t cpu = process_cpu_us();
  if (cpu < 0) {
    failed("cpu", cpu_warned_);
  } else if (w.last_cpu_us >= 0 && now > w.last_at && cpu >= w.last_cpu_us) {
    const auto wall_us = std::chrono::duration_cast<std::chrono::microseconds>(now - w.last_at).count();
    if (wall_us > 0)
      s.cpu_percent = std::min<std::uint64_t>(
          static_cast<std::uint64_t>(cpu - w.last_cpu_us) * 100 / static_cast<std::uint64_t>(wall_us),
          load::kMaxWindowCpuPercent);
  }
  w.last_cpu_us = cpu;
  w.last_at = now;
  if (auto rss = process_rss_bytes())
    s.rss_bytes = *rss;
  else
    failed("rss", rss_warned_);
  return s;
}

void LoadExecutor::progress(std::uint64_t exec, const WorkflowLive& l) {
  worker::ExecProgress p;
  p.failed = l.iterations_failed;
  p.completed = l.completed - std::min(l.completed, l.iterations_failed);
  // Iterations begun: finished ones (ok or failed), the ones in flight and the interrupted ones. Each
  // shard reports its counters from one instant, so started >= completed + failed already; the max
  // keeps that promise to the worker even if a report were ever torn.
  p.started = std::max(l.started, p.completed + p.failed);
  auto it = live_.find(exec);
  if (it != live_.end() && it->second.windows) {
    Windows& w = *it->second.windows;
    const Instant now = r_.clock().now();
    const load::Saturation sat = saturation(w, now);
    // Time since the origin on the same monotonic clock the schedule runs on.
    std::vector<load::Window> ws =
        l.final ? w.cutter.finish(l, now - w.origin, sat) : w.cutter.feed(l, now - w.origin, sat);
    p.windows.reserve(ws.size());
    for (const auto& x : ws) p.windows.push_back(load::encode_window(x));
    if (w.cutter.refused_samples() != w.refused_seen) {
      // A bug of the engine's live view (it adds up by construction): say so, keep going.
      r_.metrics()
          .counter("hs_load_exec_window_samples_refused_total",
                   "Live samples the window cutter refused (they did not add up)")
          .inc(w.cutter.refused_samples() - w.refused_seen);
      w.refused_seen = w.cutter.refused_samples();
      log::error("load", "window_sample_refused", "exec={} workflow={} refused={} error={}", exec,
                 log::quoted(it->second.workflow), w.refused_seen, log::quoted(w.cutter.last_refusal()));
    }
    if (w.cutter.skipped_windows() != w.skipped_seen) {
      log::warn("load", "windows_skipped",
                "exec={} workflow={} skipped={} note=the clock jumped; empty windows left out", exec,
                log::quoted(it->second.workflow), w.cutter.skipped_windows() - w.skipped_seen);
      w.skipped_seen = w.cutter.skipped_windows();
    }
  }
  on_progress_(exec, std::move(p));
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
