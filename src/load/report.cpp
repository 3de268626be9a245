#include "hyperscale/load/report.hpp"

#include <fmt/format.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

namespace hs::load {
namespace {
using Json = nlohmann::json;

double ms(std::uint64_t ns) { return static_cast<double>(ns) / 1e6; }
double round3(double v) { return std::round(v * 1000.0) / 1000.0; }

Json latency_json(const Histogram& h, const std::vector<double>& extra) {
  Json j = {{"p50", round3(ms(h.quantile(0.50)))},
            {"p90", round3(ms(h.quantile(0.90)))},
            {"p95", round3(ms(h.quantile(0.95)))},
            {"p99", round3(ms(h.quantile(0.99)))},
            {"p999", round3(ms(h.quantile(0.999)))},
            {"p9999", round3(ms(h.quantile(0.9999)))},
            {"min", round3(ms(h.min()))},
            {"max", round3(ms(h.max()))},
            {"mean", round3(h.mean() / 1e6)}};
  for (double p : extra) j[fmt::format("p{}", p)] = round3(ms(h.quantile(p / 100.0)));
  return j;
}

Json reasons_json(const Counts& c) {
  Json j = Json::object();
  for (int i = 0; i < static_cast<int>(FailReason::kCount); ++i)
    if (c.reasons[static_cast<std::size_t>(i)])
      j[reason_name(static_cast<FailReason>(i))] = c.reasons[static_cast<std::size_t>(i)];
  return j;
}

}  // namespace

std::string fmt_ms(std::uint64_t ns) {
  const double v = ms(ns);
  if (v >= 1000) return fmt::format("{:.2f}s", v / 1000);
  if (v >= 10) return fmt::format("{:.1f}ms", v);
  return fmt::format("{:.2f}ms", v);
}

std::string cond_value(const Threshold& t, double v) {
  if (metric_is_latency(t.metric)) return fmt_ms(static_cast<std::uint64_t>(v));
  if (t.metric == Metric::error_rate || t.metric == Metric::dropped_rate) return fmt::format("{:.2f}%", v * 100);
  if (t.metric == Metric::rps) return fmt::format("{:.1f}", v);
  return fmt::format("{:.0f}", v);
}

std::string top_reason(const Counts& c) {
  if (!c.failed) return "";
  int best = 0;
  for (int i = 1; i < static_cast<int>(FailReason::kCount); ++i)
    if (c.reasons[static_cast<std::size_t>(i)] > c.reasons[static_cast<std::size_t>(best)]) best = i;
  return fmt::format(" ({})", reason_name(static_cast<FailReason>(best)));
}

int exit_code_for(const RunStats& s) {
  if (s.aborted) return 4;
  std::uint64_t ok = 0, executed = 0, conn_fail = 0;
  for (const auto& w : s.workflows)
    for (const auto& st : w.steps) {
      ok += st.total.ok;
      executed += st.total.executed;
      conn_fail += st.total.reasons[static_cast<int>(FailReason::refused)] +
                   st.total.reasons[static_cast<int>(FailReason::connect_timeout)];
    }
  if (executed > 0 && ok == 0 && conn_fail == executed) return 5;
  for (const auto& t : s.thresholds)
    if (!t.passed) return 3;
  for (const auto& w : s.workflows)
    if (w.outcome == WorkflowOutcome::failed || w.outcome == WorkflowOutcome::skipped) return 3;
  return 0;
}

std::string results_json(const Plan& p, const RunStats& s, int exit_code) {
  Json j;
  j["test"] = p.test_name;
  j["plan_hash"] = p.hash;
  j["file"] = p.file;
  j["elapsed_s"] = round3(to_seconds(s.elapsed));
  j["aborted"] = s.aborted;
  if (s.aborted) j["abort_reason"] = s.abort_reason;
  j["exit_code"] = exit_code;
  Json wfs = Json::array();
  for (std::size_t w = 0; w < s.workflows.size(); ++w) {
    const WorkflowStats& ws = s.workflows[w];
    const Workflow& wf = p.workflows[w];
    const double secs = to_seconds(ws.measured);
    const Counts c = ws.measured_counts();
    Json wj;
    wj["name"] = ws.name;
    wj["kind"] = wf.kind == WorkflowKind::setup ? "setup" : "test";
    wj["executor"] = wf.executor == Executor::constant_vus ? "constant-vus" : "constant-arrival-rate";
    wj["outcome"] = outcome_name(ws.outcome);
    if (!ws.note.empty()) wj["note"] = ws.note;
    wj["iterations"] = {{"started", ws.started},
                        {"completed", ws.completed},
                        {"dropped", ws.dropped},
                        {"interrupted", ws.interrupted},
                        {"failed", ws.iterations_failed}};
    wj["executed"] = c.executed;
    wj["succeeded"] = c.ok;
    wj["failed"] = c.failed;
    wj["dropped"] = ws.dropped;
    wj["failed_by_reason"] = reasons_json(c);
    wj["elapsed_s"] = round3(to_seconds(ws.elapsed));
    wj["measured_s"] = round3(secs);
    wj["rps"] = secs > 0 ? round3(static_cast<double>(c.executed) / secs) : 0.0;
    wj["latency_ms"] = latency_json(ws.merged_latency(), p.percentiles);
    Json steps = Json::array();
    for (const auto& st : ws.steps) {
      Json sj;
      sj["name"] = st.name;
      sj["executed"] = st.measured.executed;
      sj["succeeded"] = st.measured.ok;
      sj["failed"] = st.measured.failed;
      sj["dropped"] = 0;
      sj["skipped"] = st.skipped;
      sj["failed_by_reason"] = reasons_json(st.measured);
      sj["total_executed"] = st.total.executed;
      sj["rps"] = secs > 0 ? round3(static_cast<double>(st.measured.executed) / secs) : 0.0;
      sj["latency_ms"] = latency_json(st.latency, p.percentiles);
      Json series = Json::array();
      for (std::size_t i = 0; i < st.series.size(); ++i)
        series.push_back({{"t", i}, {"executed", st.series[i].executed}, {"failed", st.series[i].failed}});
      sj["series"] = series;
      steps.push_back(sj);
    }
    wj["steps"] = steps;
    wfs.push_back(wj);
  }
  j["workflows"] = wfs;
  Json ths = Json::array();
  for (const auto& t : s.thresholds)
    ths.push_back({{"scope", t.threshold.scope},
                   {"metric", t.threshold.key},
                   {"condition", t.threshold.condition},
                   {"observed", metric_is_latency(t.threshold.metric) ? round3(t.observed / 1e6) : t.observed},
                   {"unit", metric_is_latency(t.threshold.metric) ? "ms" : ""},
                   {"passed", t.passed},
                   {"no_data", t.no_data},
                   {"where", t.threshold.where}});
  j["thresholds"] = ths;
  return j.dump(2) + "\n";
}

std::string results_csv(const Plan& p, const RunStats& s) {
  std::string out =
      "workflow,step,executed,succeeded,failed,dropped,rps,p50_ms,p90_ms,p95_ms,p99_ms,p999_ms,max_ms,mean_ms\n";
  for (std::size_t w = 0; w < s.workflows.size(); ++w) {
    const WorkflowStats& ws = s.workflows[w];
    const double secs = to_seconds(ws.measured);
    auto row = [&](const std::string& step, const Counts& c, std::uint64_t dropped, const Histogram& h) {
      out += fmt::format("{},{},{},{},{},{},{:.3f},{:.3f},{:.3f},{:.3f},{:.3f},{:.3f},{:.3f},{:.3f}\n", ws.name, step,
                         c.executed, c.ok, c.failed, dropped, secs > 0 ? static_cast<double>(c.executed) / secs : 0.0,
                         ms(h.quantile(0.5)), ms(h.quantile(0.9)), ms(h.quantile(0.95)), ms(h.quantile(0.99)),
                         ms(h.quantile(0.999)), ms(h.max()), h.mean() / 1e6);
    };
    row("", ws.measured_counts(), ws.dropped, ws.merged_latency());
    for (const auto& st : ws.steps) row(st.name, st.measured, 0, st.latency);
  }
  (void)p;
  return out;
}

std::string summary_text(const Plan& p, const RunStats& s, int exit_code) {
  std::string out;
  std::size_t failed_th = 0;
  for (const auto& t : s.thresholds) failed_th += t.passed ? 0 : 1;
  const char* verdict = exit_code == 0 ? "PASS" : exit_code == 4 ? "ABORTED" : exit_code == 5 ? "UNREACHABLE" : "FAIL";
  out += fmt::format("\n{}: {} in {:.1f}s — {}{} (exit {})\n", p.test_name, p.file, to_seconds(s.elapsed), verdict,
                     failed_th ? fmt::format(", {} threshold(s) failed", failed_th) : "", exit_code);
  out += fmt::format("\n{:<20} {:<8} {:<11} {:>9} {:>9} {:>8} {:>9} {:>9} {:>7}\n", "workflow", "kind", "outcome",
                     "iters", "requests", "dropped", "rps", "ok%", "elapsed");
  for (std::size_t w = 0; w < s.workflows.size(); ++w) {
    const auto& ws = s.workflows[w];
    const Counts c = ws.measured_counts();
    const double secs = to_seconds(ws.measured);
    out += fmt::format("{:<20} {:<8} {:<11} {:>9} {:>9} {:>8} {:>9.1f} {:>8.2f}% {:>6.1f}s{}\n", ws.name,
                       p.workflows[w].kind == WorkflowKind::setup ? "setup" : "test", outcome_name(ws.outcome),
                       ws.completed, c.executed, ws.dropped, secs > 0 ? static_cast<double>(c.executed) / secs : 0.0,
                       c.executed ? 100.0 * static_cast<double>(c.ok) / static_cast<double>(c.executed) : 0.0,
                       to_seconds(ws.elapsed), ws.note.empty() ? "" : "  (" + ws.note + ")");
  }
  out += fmt::format("\n{:<28} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  {}\n", "step", "requests", "ok%", "p50",
                     "p90", "p95", "p99", "p99.9", "max", "errors");
  for (const auto& ws : s.workflows)
    for (const auto& st : ws.steps) {
      const auto& c = st.measured;
      std::string errs;
      for (int i = 0; i < static_cast<int>(FailReason::kCount); ++i)
        if (c.reasons[static_cast<std::size_t>(i)])
          errs += fmt::format("{}{}={}", errs.empty() ? "" : " ", reason_name(static_cast<FailReason>(i)),
                              c.reasons[static_cast<std::size_t>(i)]);
      if (st.skipped) errs += fmt::format("{}skipped={}", errs.empty() ? "" : " ", st.skipped);
      out += fmt::format(
          "{:<28} {:>9} {:>7.2f}% {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  {}\n", ws.name + "." + st.name, c.executed,
          c.executed ? 100.0 * static_cast<double>(c.ok) / static_cast<double>(c.executed) : 0.0,
          fmt_ms(st.latency.quantile(0.5)), fmt_ms(st.latency.quantile(0.9)), fmt_ms(st.latency.quantile(0.95)),
          fmt_ms(st.latency.quantile(0.99)), fmt_ms(st.latency.quantile(0.999)), fmt_ms(st.latency.max()), errs);
    }
  if (!s.thresholds.empty()) {
    out += "\nthresholds\n";
    for (const auto& t : s.thresholds)
      out += fmt::format("  {} {:<24} {:<10} {:<12} observed {}{}\n", t.passed ? "✓" : "✗", t.threshold.scope,
                         t.threshold.key, t.threshold.condition,
                         t.no_data ? "no data" : cond_value(t.threshold, t.observed),
                         t.passed ? "" : "   (" + t.threshold.where + ")");
  }
  return out;
}

std::string live_text(const LiveSnapshot& snap, bool tty) {
  std::string out;
  for (const auto& w : snap.workflows) {
    if (!w.running && !tty) continue;
    double pct = w.duration.count() > 0 ? std::min(1.0, to_seconds(w.elapsed) / to_seconds(w.duration)) : 0;
    if (!w.running && w.outcome != WorkflowOutcome::pending) pct = 1.0;  // finished (maybe early: iterations)
    if (tty) {
      const int width = 20;
      const int fill = static_cast<int>(pct * width);
      out +=
          fmt::format("{:<16} {:<11} [{}{}] {:5.1f}s  iters {} dropped {} in-flight {}\n", w.name,
                      w.running ? "running" : outcome_name(w.outcome), std::string(static_cast<std::size_t>(fill), '#'),
                      std::string(static_cast<std::size_t>(width - fill), '.'), to_seconds(w.elapsed), w.completed,
                      w.dropped, w.inflight);
      for (const auto& s : w.steps) {
        out += fmt::format("  {:<20} total {:>9} ok {:>9} err {:>7}{} rps {:>8.0f} p50 {:>8} p95 {:>8} p99 {:>8}\n",
                           s.name, s.total.executed, s.total.ok, s.total.failed, top_reason(s.total), s.rps,
                           fmt_ms(s.p50), fmt_ms(s.p95), fmt_ms(s.p99));
      }
    } else if (w.steps.empty()) {  // counts only (the cluster-hosted run reports iterations per workflow)
      out += fmt::format("[{:6.1f}s] {} {:.0f}% iterations={} dropped={}\n", to_seconds(snap.elapsed), w.name,
                         pct * 100, w.completed, w.dropped);
    } else {
      std::uint64_t total = 0, failed = 0;
      double rps = 0;
      std::uint64_t p99 = 0;
      for (const auto& s : w.steps) {
        total += s.total.executed;
        failed += s.total.failed;
        rps += s.rps;
        p99 = std::max(p99, s.p99);
      }
      out += fmt::format("[{:6.1f}s] {} {:.0f}% requests={} errors={} rps={:.0f} p99={} dropped={}\n",
                         to_seconds(snap.elapsed), w.name, pct * 100, total, failed, rps, fmt_ms(p99), w.dropped);
    }
  }
  if (!snap.thresholds.empty()) {
    if (tty) {
      out += "thresholds (live: counts so far, latency over the last second; judged for the result at the end)\n";
      for (const auto& t : snap.thresholds)
        out += fmt::format("  {} {:<24} {:<10} {:<12} now {}\n", t.no_data ? "·" : (t.passed ? "✓" : "✗"),
                           t.threshold->scope, t.threshold->key, t.threshold->condition,
                           t.no_data ? "no data" : cond_value(*t.threshold, t.observed));
    } else {
      std::string failing;
      std::size_t ok = 0;
      for (const auto& t : snap.thresholds) {
        if (t.passed)
          ++ok;
        else if (!t.no_data)
          failing +=
              fmt::format(" {}:{}={}", t.threshold->scope, t.threshold->key, cond_value(*t.threshold, t.observed));
      }
      out += fmt::format("[{:6.1f}s] thresholds {}/{} passing{}{}\n", to_seconds(snap.elapsed), ok,
                         snap.thresholds.size(), failing.empty() ? "" : "; failing:", failing);
    }
  }
  return out;
}

Result<std::vector<std::string>> write_results(const Plan& p, const RunStats& s, int exit_code,
                                               const std::string& dir) {
  std::string acc;
  for (std::size_t i = 0; i <= dir.size(); ++i) {
    if (i == dir.size() || dir[i] == '/') {
      acc = dir.substr(0, i);
      if (!acc.empty() && ::mkdir(acc.c_str(), 0755) != 0 && errno != EEXIST)
        return make_error(Errc::io_error, fmt::format("mkdir {}: {}", acc, std::strerror(errno)));
    }
  }
  std::vector<std::string> written;
  auto put = [&](const std::string& name, const std::string& text) -> Status {
    const std::string path = dir + "/" + name;
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << text;
    f.close();
    if (!f) return make_error(Errc::io_error, fmt::format("write {}: {}", path, std::strerror(errno)));
    written.push_back(path);
    return ok_status();
  };
  for (const auto& fmt_name : p.formats) {
    if (fmt_name == "json") HS_TRY(put("results.json", results_json(p, s, exit_code)));
    if (fmt_name == "csv") HS_TRY(put("results.csv", results_csv(p, s)));
  }
  return written;
}

}  // namespace hs::load
