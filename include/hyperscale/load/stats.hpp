// Statistics of a run: per step and per workflow counts, latency histograms (exact merge), a per-second
// time series, and threshold evaluation on the merged data.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "hyperscale/base/time.hpp"
#include "hyperscale/load/histogram.hpp"
#include "hyperscale/load/plan.hpp"

namespace hs::load {

enum class FailReason : int {
  refused = 0,        // connection refused
  connect_timeout,    // connect_timeout expired
  timeout,            // step timeout expired
  reset,              // connection reset / closed by the peer mid-response
  bad_response,       // unparsable response, reply too large
  unexpected_status,  // HTTP status not in expect.status
  expectation,        // body/header/contains/equals expectation failed
  send_error,         // write/send failed
  tls,                // TLS failure (reserved: TLS is not implemented yet)
  kCount
};
const char* reason_name(FailReason r);

struct Counts {
  std::uint64_t executed = 0, ok = 0, failed = 0;
  std::array<std::uint64_t, static_cast<int>(FailReason::kCount)> reasons{};
  void merge(const Counts& o) {
    executed += o.executed;
    ok += o.ok;
    failed += o.failed;
    for (std::size_t i = 0; i < reasons.size(); ++i) reasons[i] += o.reasons[i];
  }
};

struct SecondSample {
  std::uint64_t executed = 0, failed = 0;
};

struct StepStats {
  std::string name;
  Counts total;                      // whole run, warmup included (live view)
  Counts measured;                   // after warmup: what results and thresholds use
  std::uint64_t skipped = 0;         // not run because a step it runs after failed
  Histogram latency;                 // measured requests, nanoseconds
  std::vector<SecondSample> series;  // per second since the workflow started (bounded)
  static constexpr std::size_t kMaxSeries = 24 * 3600;

  void record(bool ok, FailReason why, std::uint64_t latency_ns, bool in_measure, std::size_t second) {
    total.executed++;
    if (ok)
      total.ok++;
    else
      total.failed++, total.reasons[static_cast<int>(why)]++;
    if (in_measure) {
      measured.executed++;
      if (ok)
        measured.ok++;
      else
        measured.failed++, measured.reasons[static_cast<int>(why)]++;
      latency.record(latency_ns);
    }
    if (second >= kMaxSeries) second = kMaxSeries - 1;
    if (second >= series.size()) series.resize(second + 1);
    series[second].executed++;
    if (!ok) series[second].failed++;
  }
  void merge(const StepStats& o);
};

// A workflow's steps merged: their measured counts and their latency (any step type with `measured`
// and `latency`: StepStats, and the window merger's WindowStep).
template <typename Step>
Counts sum_measured(const std::vector<Step>& steps) {
  Counts c;
  for (const auto& s : steps) c.merge(s.measured);
  return c;
}
template <typename Step>
Histogram sum_latency(const std::vector<Step>& steps) {
  Histogram h;
  for (const auto& s : steps) h.merge(s.latency);
  return h;
}

enum class WorkflowOutcome { pending, completed, failed, skipped, interrupted };
const char* outcome_name(WorkflowOutcome o);

struct WorkflowStats {
  std::string name;
  WorkflowOutcome outcome = WorkflowOutcome::pending;
  std::string note;  // why failed / skipped
  std::uint64_t started = 0, completed = 0, dropped = 0, interrupted = 0, iterations_failed = 0;
  Duration elapsed{0};
  Duration measured{0};  // elapsed minus warmup (the rps denominator)
  std::vector<StepStats> steps;
  void merge(const WorkflowStats& o);
  Counts measured_counts() const { return sum_measured(steps); }
  Histogram merged_latency() const { return sum_latency(steps); }
};

struct ThresholdResult {
  Threshold threshold;
  double observed = 0;
  bool passed = true;
  bool no_data = false;
};

struct RunStats {
  std::string test_name;
  std::string plan_hash;
  Duration elapsed{0};
  bool aborted = false;
  std::string abort_reason;
  std::vector<WorkflowStats> workflows;
  std::vector<ThresholdResult> thresholds;
};

// Value of `m` over counts + latency measured during `seconds` (dropped/scheduled for dropped_rate).
double observe(Metric m, const Counts& c, const Histogram& h, double seconds, std::uint64_t dropped,
               std::uint64_t scheduled, bool& no_data);
bool compare(CmpOp op, double observed, double limit);

// One threshold judged on some statistics (a step's, a workflow's or the run's). No data never passes.
struct Judged {
  double observed = 0;
  bool passed = false;
  bool no_data = false;
};
Judged judge_threshold(const Threshold& t, const Counts& c, const Histogram& h, double seconds, std::uint64_t dropped,
                       std::uint64_t scheduled);

// The statistics plan-level thresholds are judged on, for the final result and the live view alike: the test
// workflows' counts and latency merged (setup workflows do not count), the longest one's time, drops and
// scheduled iterations summed.
struct RunTotals {
  Counts counts;
  Histogram latency;
  double seconds = 0;
  std::uint64_t dropped = 0, scheduled = 0;

  void add(const Workflow& wf, const Counts& c, const Histogram& h, double secs, std::uint64_t wf_dropped,
           std::uint64_t wf_scheduled);
  Judged judge(const Threshold& t) const { return judge_threshold(t, counts, latency, seconds, dropped, scheduled); }
};
// Evaluates every threshold of the plan on the merged stats (fills stats.thresholds).
void evaluate_thresholds(const Plan& plan, RunStats& stats);

}  // namespace hs::load
