#include "hyperscale/load/stats.hpp"

#include <algorithm>

#include "hyperscale/base/enum_names.hpp"

namespace hs::load {

constexpr EnumNames<FailReason, 9> kFailReasonNames{{"refused", "connect_timeout", "timeout", "reset", "bad_response",
                                                     "unexpected_status", "expectation", "send_error", "tls"},
                                                    "?"};
static_assert(kFailReasonNames.covers(FailReason::kCount, true));

const char* reason_name(FailReason r) { return kFailReasonNames(r); }

constexpr EnumNames<WorkflowOutcome, 5> kOutcomeNames{{"pending", "completed", "failed", "skipped", "interrupted"},
                                                      "?"};
static_assert(kOutcomeNames.covers(WorkflowOutcome::interrupted));

const char* outcome_name(WorkflowOutcome o) { return kOutcomeNames(o); }

void StepStats::merge(const StepStats& o) {
  total.merge(o.total);
  measured.merge(o.measured);
  skipped += o.skipped;
  latency.merge(o.latency);
  if (o.series.size() > series.size()) series.resize(o.series.size());
  for (std::size_t i = 0; i < o.series.size(); ++i) {
    series[i].executed += o.series[i].executed;
    series[i].failed += o.series[i].failed;
  }
}

void WorkflowStats::merge(const WorkflowStats& o) {
  started += o.started;
  completed += o.completed;
  dropped += o.dropped;
  interrupted += o.interrupted;
  iterations_failed += o.iterations_failed;
  elapsed = std::max(elapsed, o.elapsed);
  measured = std::max(measured, o.measured);
  if (steps.size() < o.steps.size()) steps.resize(o.steps.size());
  for (std::size_t i = 0; i < o.steps.size(); ++i) {
    if (steps[i].name.empty()) steps[i].name = o.steps[i].name;
    steps[i].merge(o.steps[i]);
  }
}

double observe(Metric m, const Counts& c, const Histogram& h, double seconds, std::uint64_t dropped,
               std::uint64_t scheduled, bool& no_data) {
  no_data = false;
  auto q = [&](double p) {
    if (h.count() == 0) no_data = true;
    return static_cast<double>(h.quantile(p));
  };
  switch (m) {
    case Metric::min:
      if (h.count() == 0) no_data = true;
      return static_cast<double>(h.min());
    case Metric::mean:
      if (h.count() == 0) no_data = true;
      return h.mean();
    case Metric::p50:
      return q(0.50);
    case Metric::p75:
      return q(0.75);
    case Metric::p90:
      return q(0.90);
    case Metric::p95:
      return q(0.95);
    case Metric::p99:
      return q(0.99);
    case Metric::p999:
      return q(0.999);
    case Metric::p9999:
      return q(0.9999);
    case Metric::max:
      if (h.count() == 0) no_data = true;
      return static_cast<double>(h.max());
    case Metric::error_rate:
      if (c.executed == 0) no_data = true;
      return c.executed ? static_cast<double>(c.failed) / static_cast<double>(c.executed) : 0.0;
    case Metric::errors:
      return static_cast<double>(c.failed);
    case Metric::rps:
      return seconds > 0 ? static_cast<double>(c.executed) / seconds : 0.0;
    case Metric::dropped_rate:
      if (scheduled == 0) no_data = true;
      return scheduled ? static_cast<double>(dropped) / static_cast<double>(scheduled) : 0.0;
  }
  return 0;
}

bool compare(CmpOp op, double v, double limit) {
  switch (op) {
    case CmpOp::lt:
      return v < limit;
    case CmpOp::le:
      return v <= limit;
    case CmpOp::gt:
      return v > limit;
    case CmpOp::ge:
      return v >= limit;
    case CmpOp::eq:
      return v == limit;
  }
  return false;
}

Judged judge_threshold(const Threshold& t, const Counts& c, const Histogram& h, double seconds, std::uint64_t dropped,
                       std::uint64_t scheduled) {
  Judged j;
  j.observed = observe(t.metric, c, h, seconds, dropped, scheduled, j.no_data);
  // No data never passes a latency or error-rate bound silently: it fails and says so.
  j.passed = !j.no_data && compare(t.op, j.observed, t.value);
  return j;
}

void RunTotals::add(const Workflow& wf, const Counts& c, const Histogram& h, double secs, std::uint64_t wf_dropped,
                    std::uint64_t wf_scheduled) {
  if (wf.kind != WorkflowKind::test) return;
  counts.merge(c);
  latency.merge(h);
  seconds = std::max(seconds, secs);
  dropped += wf_dropped;
  scheduled += wf_scheduled;
}

namespace {
void judge(const Threshold& t, const Counts& c, const Histogram& h, double seconds, std::uint64_t dropped,
           std::uint64_t scheduled, RunStats& out) {
  const Judged j = judge_threshold(t, c, h, seconds, dropped, scheduled);
  out.thresholds.push_back(ThresholdResult{t, j.observed, j.passed, j.no_data});
}
}  // namespace

void evaluate_thresholds(const Plan& plan, RunStats& stats) {
  stats.thresholds.clear();
  RunTotals run;
  for (std::size_t w = 0; w < plan.workflows.size() && w < stats.workflows.size(); ++w) {
    const Workflow& wf = plan.workflows[w];
    const WorkflowStats& ws = stats.workflows[w];
    const double secs = to_seconds(ws.measured);
    const std::uint64_t sched = ws.started + ws.dropped;
    for (std::size_t s = 0; s < wf.steps.size() && s < ws.steps.size(); ++s)
      for (const auto& t : wf.steps[s].thresholds)
        judge(t, ws.steps[s].measured, ws.steps[s].latency, secs, ws.dropped, sched, stats);
    const Counts c = ws.measured_counts();
    const Histogram h = ws.merged_latency();
    for (const auto& t : wf.thresholds) judge(t, c, h, secs, ws.dropped, sched, stats);
    run.add(wf, c, h, secs, ws.dropped, sched);
  }
  for (const auto& t : plan.thresholds) {
    const Judged j = run.judge(t);
    stats.thresholds.push_back(ThresholdResult{t, j.observed, j.passed, j.no_data});
  }
}

}  // namespace hs::load
