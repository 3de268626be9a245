// run_plan: the local driver over the Runner (runner.hpp). It owns a ShardSet, starts each workflow on
// every shard once its dependencies have completed (passing what setup workflows published as
// context), assembles the live view once a second, and turns SIGINT/SIGTERM into a clean abort.
#include <fmt/format.h>
#include <uv.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <map>
#include <memory>

#include "hyperscale/base/log.hpp"
#include "hyperscale/runtime/c_boundary.hpp"
#include "hyperscale/load/engine.hpp"
#include "hyperscale/load/runner.hpp"
#include "hyperscale/runtime/shard_set.hpp"

namespace hs::load {
namespace {

using runtime::Reactor;

struct Coordinator {
  const Plan* plan = nullptr;
  const RunOptions* opts = nullptr;
  std::vector<std::shared_ptr<const PreparedWorkflow>> prepared;  // [workflow]
  std::vector<int> shards;                                        // every shard of the set
  Reactor* r = nullptr;
  std::unique_ptr<Runner> runner;
  RunStats result;
  Instant run_start{0};
  std::vector<bool> started;
  std::vector<Instant> started_at;
  // [workflow][step]: requests (warmup included) at the previous live sample, and when it was taken:
  // the live rps (the window histograms hold measured requests only, so they cannot give it in warmup)
  std::vector<std::vector<std::uint64_t>> live_executed;
  Instant live_at{0};
  std::vector<RunId> run_ids;                                 // [workflow] while running
  std::vector<std::map<std::string, std::string>> published;  // [workflow] setup values
  uv_signal_t sigint{}, sigterm{};
  bool signals = false;
  bool aborted = false;
  bool done = false;
  int signal_count = 0;

  std::size_t index_of(const std::string& name) const {
    const auto it =
        std::find_if(plan->workflows.begin(), plan->workflows.end(), [&](const Workflow& x) { return x.name == name; });
    return static_cast<std::size_t>(it - plan->workflows.begin());
  }
  void start_ready();
  void start_workflow(std::size_t w);
  void on_done(std::size_t w, WorkflowResult res);
  void report_live();
  void abort(const std::string& why);
  void close_signals() {
    if (!signals) return;
    uv_close(reinterpret_cast<uv_handle_t*>(&sigint), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&sigterm), nullptr);
    signals = false;
  }
};

void Coordinator::start_workflow(std::size_t w) {
  const Workflow& wf = plan->workflows[w];
  RunSpec spec;
  spec.workflow = prepared[w];
  spec.shards = shards;
  // Context for this workflow: what its setup dependencies published.
  for (const auto& d : wf.depends_on)
    for (const auto& [k, v] : published[index_of(d)]) spec.context[d + "." + k] = v;
  started[w] = true;
  started_at[w] = r->clock().now();
  RunCallbacks cb;
  cb.on_done = [this, w](WorkflowResult res) { on_done(w, std::move(res)); };
  auto id = runner->start(std::move(spec), std::move(cb));
  if (!id.ok()) {
    // Not reachable with a valid shard list; fail the workflow rather than hang the run.
    log::error("load", "workflow_start_failed", "workflow={} error={}", log::quoted(wf.name),
               log::quoted(id.status().to_string()));
    auto& ws = result.workflows[w];
    ws.outcome = WorkflowOutcome::failed;
    ws.note = id.status().to_string();
    return;
  }
  run_ids[w] = *id;
}

void Coordinator::start_ready() {
  bool progress = true;
  while (progress) {
    progress = false;
    for (std::size_t w = 0; w < plan->workflows.size(); ++w) {
      auto& ws = result.workflows[w];
      if (started[w] || ws.outcome != WorkflowOutcome::pending) continue;
      bool ready = true;
      std::string failed_dep;
      for (const auto& d : plan->workflows[w].depends_on) {
        const auto& ds = result.workflows[index_of(d)];
        if (ds.outcome == WorkflowOutcome::pending)
          ready = false;
        else if (ds.outcome != WorkflowOutcome::completed)
          failed_dep = d;
      }
      if (!failed_dep.empty() || (aborted && ready)) {
        ws.outcome = WorkflowOutcome::skipped;
        ws.note = aborted ? "run aborted" : fmt::format("dependency '{}' did not complete", failed_dep);
        log::warn("load", "workflow_skipped", "workflow={} reason={}", log::quoted(ws.name), log::quoted(ws.note));
        progress = true;
        continue;
      }
      if (!ready) continue;
      start_workflow(w);
      progress = true;
    }
  }
  bool running = false;
  for (std::size_t w = 0; w < plan->workflows.size(); ++w)
    running = running || (started[w] && result.workflows[w].outcome == WorkflowOutcome::pending);
  bool pending = false;
  for (const auto& ws : result.workflows) pending = pending || ws.outcome == WorkflowOutcome::pending;
  if (!running && !pending && !done) {
    done = true;
    result.elapsed = r->clock().now() - run_start;
    report_live();
    close_signals();
    r->request_node_stop(aborted ? "aborted" : "done");
  }
}

void Coordinator::on_done(std::size_t w, WorkflowResult res) {
  auto& ws = result.workflows[w];
  ws = std::move(res.stats);
  published[w] = std::move(res.published);
  run_ids[w] = 0;
  if (aborted) {
    ws.outcome = WorkflowOutcome::interrupted;
    ws.note = "run aborted";
  }
  start_ready();
}

void Coordinator::abort(const std::string& why) {
  if (aborted) return;
  aborted = true;
  result.aborted = true;
  result.abort_reason = why;
  log::warn("load", "run_abort", "reason={}", log::quoted(why));
  for (std::size_t w = 0; w < run_ids.size(); ++w)
    if (run_ids[w] != 0) runner->cancel(run_ids[w], Duration{0});
  start_ready();
}

void Coordinator::report_live() {
  if (!opts->on_progress) return;
  LiveSnapshot snap;
  RunTotals run;
  const Instant now = r->clock().now();
  snap.elapsed = now - run_start;
  WorkflowLive wl;
  const double since = live_at.count() > 0 ? to_seconds(now - live_at) : to_seconds(now - run_start);
  live_at = now;
  live_executed.resize(plan->workflows.size());
  for (std::size_t w = 0; w < plan->workflows.size(); ++w) {
    const Workflow& wf = plan->workflows[w];
    LiveWorkflow lw;
    lw.name = wf.name;
    lw.outcome = result.workflows[w].outcome;
    lw.running = started[w] && lw.outcome == WorkflowOutcome::pending;
    lw.duration = wf.duration;
    lw.elapsed = started[w] ? (lw.running ? now - started_at[w] : result.workflows[w].elapsed) : Duration{0};
    lw.steps.resize(wf.steps.size());
    for (std::size_t i = 0; i < lw.steps.size(); ++i) lw.steps[i].name = wf.steps[i].name;
    std::vector<Histogram> win(lw.steps.size());
    if (!lw.running && started[w]) {
      const auto& ws = result.workflows[w];
      lw.started = ws.started;
      lw.completed = ws.completed;
      lw.dropped = ws.dropped;
      for (std::size_t i = 0; i < lw.steps.size() && i < ws.steps.size(); ++i) lw.steps[i].total = ws.steps[i].total;
    } else if (lw.running && run_ids[w] != 0 && runner->sample(run_ids[w], wl)) {
      lw.started = wl.started;
      lw.completed = wl.completed;
      lw.dropped = wl.dropped;
      lw.inflight = wl.inflight;
      for (std::size_t i = 0; i < lw.steps.size() && i < wl.steps.size(); ++i) lw.steps[i].total = wl.steps[i];
      for (std::size_t i = 0; i < win.size() && i < wl.window.size(); ++i) win[i] = std::move(wl.window[i]);
    }
    const double secs = to_seconds(lw.elapsed);
    const std::uint64_t sched = lw.started + lw.dropped;
    auto judge = [&snap](const Threshold& t, const Counts& c, const Histogram& h, double s, std::uint64_t dropped,
                         std::uint64_t scheduled) {
      const Judged j = judge_threshold(t, c, h, s, dropped, scheduled);
      snap.thresholds.push_back(LiveThreshold{&t, j.observed, j.passed, j.no_data});
    };
    Counts wc;
    Histogram wh;
    for (std::size_t i = 0; i < lw.steps.size(); ++i) {
      auto& prev = live_executed[w];
      if (prev.size() < lw.steps.size()) prev.resize(lw.steps.size(), 0);
      const std::uint64_t exec = lw.steps[i].total.executed;
      lw.steps[i].rps = since > 0 && exec >= prev[i] ? static_cast<double>(exec - prev[i]) / since : 0.0;
      prev[i] = exec;
      lw.steps[i].p50 = win[i].quantile(0.50);
      lw.steps[i].p95 = win[i].quantile(0.95);
      lw.steps[i].p99 = win[i].quantile(0.99);
      if (started[w]) {
        for (const auto& t : wf.steps[i].thresholds) judge(t, lw.steps[i].total, win[i], secs, lw.dropped, sched);
        wc.merge(lw.steps[i].total);
        wh.merge(win[i]);
      }
    }
    if (started[w]) {
      for (const auto& t : wf.thresholds) judge(t, wc, wh, secs, lw.dropped, sched);
      run.add(wf, wc, wh, secs, lw.dropped, sched);
    }
    snap.workflows.push_back(std::move(lw));
  }
  for (const auto& t : plan->thresholds) {
    const Judged j = run.judge(t);
    snap.thresholds.push_back(LiveThreshold{&t, j.observed, j.passed, j.no_data});
  }
  opts->on_progress(snap);
}

}  // namespace

Duration worst_case_run_time(const Plan& plan) {
  Duration total{0};
  for (const auto& w : plan.workflows) {
    Duration step_max{0};
    for (const auto& s : w.steps) step_max += s.timeout;
    total += w.duration + std::min(w.graceful_stop, step_max + std::chrono::seconds(1)) + std::chrono::seconds(2);
  }
  return total + std::chrono::seconds(10);
}

Result<RunStats> run_plan(const Plan& plan, const RunOptions& opts) {
  Coordinator co;
  co.plan = &plan;
  co.opts = &opts;
  // The caller's plan outlives the run: share it without owning it.
  const std::shared_ptr<const Plan> shared(&plan, [](const Plan*) {});
  // Every host is resolved before any load starts: a bad one fails the run here.
  for (const auto& w : plan.workflows) {
    auto p = prepare_workflow(shared, w.name);
    if (!p.ok()) return p.status();
    co.prepared.push_back(std::move(p).value());
  }
  co.result.test_name = plan.test_name;
  co.result.plan_hash = plan.hash;
  co.result.workflows.resize(plan.workflows.size());
  for (std::size_t w = 0; w < plan.workflows.size(); ++w) {
    co.result.workflows[w].name = plan.workflows[w].name;
    co.result.workflows[w].steps.resize(plan.workflows[w].steps.size());
    for (std::size_t i = 0; i < plan.workflows[w].steps.size(); ++i)
      co.result.workflows[w].steps[i].name = plan.workflows[w].steps[i].name;
  }
  co.started.assign(plan.workflows.size(), false);
  co.started_at.assign(plan.workflows.size(), Instant{0});
  co.run_ids.assign(plan.workflows.size(), 0);
  co.published.resize(plan.workflows.size());

  runtime::ShardSetOptions so;
  so.shards = opts.shards;
  so.handle_signals = false;  // the coordinator owns SIGINT/SIGTERM: it aborts the run cleanly
  so.shutdown_bound = std::chrono::seconds(5);
  runtime::ShardSet set(so);
  for (int i = 0; i < set.size(); ++i) co.shards.push_back(i);

  Status st = set.start([&](Reactor& r) {
    if (r.shard_id() != 0) return;
    co.r = &r;
    co.runner = std::make_unique<Runner>(r);
    co.run_start = r.clock().now();
    // The Runner belongs to shard 0's thread: it goes away there.
    r.on_shutdown("load-runner", [&co](std::function<void()> done) {
      co.runner.reset();
      done();
    });
    if (opts.handle_signals) {
      for (auto* sig : {&co.sigint, &co.sigterm}) {
        uv_signal_init(r.loop(), sig);
        sig->data = &co;
        uv_signal_start(
            sig,
            [](uv_signal_t* h, int signum) noexcept {
              auto* c = static_cast<Coordinator*>(h->data);
              if (++c->signal_count > 1) {
                log::error("load", "signal_forced_exit", "signal={}", strsignal(signum));
                std::_Exit(128 + signum);
              }
              // The abort could not even start (logged and counted): a second signal still exits at once.
              runtime::at_c_boundary(&c->r->metrics(), "uv_signal", strsignal(signum),
                                     [&] { c->abort(std::string("signal ") + strsignal(signum)); });
            },
            sig == &co.sigint ? SIGINT : SIGTERM);
      }
      co.signals = true;
      r.on_shutdown("load-signals", [&co](std::function<void()> done) {
        co.close_signals();
        done();
      });
    }
    auto rep = r.every("load-report", std::chrono::seconds(1), [&co]() {
      // Live deltas from every shard arrive during the second; show them just after.
      co.report_live();
      return ok_status();
    });
    if (!rep.ok())
      log::error("load", "task_failed", "task=load-report error={}", log::quoted(rep.status().to_string()));
    co.start_ready();
  });
  if (!st.ok()) return st.with_context("start shards");
  const auto reason = set.wait_for_stop_request(worst_case_run_time(plan));
  bool hung = !reason.has_value();
  if (hung) log::error("load", "run_overdue", "note=the run did not finish within its worst-case bound; stopping");
  auto report = set.stop();
  if (!report.clean) log::warn("load", "shutdown_unclean", "took_ms={:.1f}", to_millis(report.took));
  if (hung) return make_error(Errc::internal, "the run did not finish within its worst-case time bound (see the log)");
  RunStats out = std::move(co.result);
  evaluate_thresholds(plan, out);
  return out;
}

}  // namespace hs::load
