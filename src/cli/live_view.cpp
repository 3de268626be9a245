#include "cli/live_view.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "hyperscale/load/report.hpp"

namespace hs::cli {

bool saturated(const PartLoadView& p) {
  const std::uint64_t cores = std::max<std::uint64_t>(p.cores, 1);
  return p.cpu_percent >= kSaturatedPercentPerCore * cores;
}

namespace {
std::string latency_or_dash(const load::Histogram& h, double q) {
  return h.count() == 0 ? std::string("-") : load::fmt_ms(h.quantile(q));
}
}  // namespace

std::vector<std::string> live_lines(const std::string& workflow, const load::Window& last_closed,
                                    const load::Window& totals, std::span<const PartLoadView> parts,
                                    double window_seconds, std::span<const load::ThresholdResult> marks) {
  std::vector<std::string> out;
  const auto& it = totals.iterations;
  out.push_back(fmt::format("{:<16} window {:>5} {:6.1f}s  iters {} failed {} dropped {}", workflow, totals.index,
                            static_cast<double>(totals.index) * window_seconds, it.completed, it.failed, it.dropped));
  const load::WindowStep empty;
  for (const auto& s : totals.steps) {
    const auto last = std::find_if(last_closed.steps.begin(), last_closed.steps.end(),
                                   [&](const load::WindowStep& l) { return l.name == s.name; });
    const load::WindowStep& w = last == last_closed.steps.end() ? empty : *last;
    const double rps = window_seconds > 0 ? static_cast<double>(w.total.executed) / window_seconds : 0.0;
    const double rate =
        s.total.executed ? 100.0 * static_cast<double>(s.total.failed) / static_cast<double>(s.total.executed) : 0.0;
    out.push_back(fmt::format("  {:<20} total {:>9} err {:>7} {:>6.2f}%{} rps {:>8.0f} p50 {:>8} p95 {:>8} p99 {:>8}",
                              s.name, s.total.executed, s.total.failed, rate, load::top_reason(s.total), rps,
                              latency_or_dash(w.latency, 0.50), latency_or_dash(w.latency, 0.95),
                              latency_or_dash(w.latency, 0.99)));
  }
  if (!parts.empty()) {
    std::string line = "  parts:";
    for (std::size_t i = 0; i < parts.size(); ++i) {
      const auto& p = parts[i];
      line += fmt::format("{} {} {} {}%{}", i == 0 ? "" : " ·", p.part,
                          p.worker_name.empty() ? fmt::format("w{}", p.worker) : p.worker_name, p.cpu_percent,
                          saturated(p) ? " SATURATED" : "");
    }
    out.push_back(std::move(line));
  }
  for (const auto& m : marks)
    out.push_back(fmt::format(
        "  {} {} {} {} ({})", m.no_data ? "·" : (m.passed ? "✓" : "✗"), m.threshold.scope, m.threshold.key,
        m.threshold.condition,
        m.no_data ? std::string("no data") : fmt::format("observed {}", load::cond_value(m.threshold, m.observed))));
  return out;
}

}  // namespace hs::cli
