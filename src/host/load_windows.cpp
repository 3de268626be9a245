#include "hyperscale/host/load_windows.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <limits>

#include "hyperscale/base/assert.hpp"
#include "hyperscale/base/time.hpp"
#include "hyperscale/host/load_executor.hpp"
#include "hyperscale/load/report.hpp"

namespace hs::host {

Result<load::Plan> parse_plan_bytes(std::span<const std::uint8_t> plan, const std::string& stem,
                                    const load::EnvLookup& env, std::size_t max_bytes) {
  if (plan.size() > max_bytes)
    return make_error(Errc::invalid_argument,
                      fmt::format("plan text of {} bytes exceeds the bound {}", plan.size(), max_bytes));
  const std::string text(plan.begin(), plan.end());
  // JSON plans start with '{' (TOML cannot): parse each with its own parser.
  const auto first = text.find_first_not_of(" \t\r\n");
  const bool json = first != std::string::npos && text[first] == '{';
  return load::load_plan_text(text, stem + (json ? ".json" : ".toml"), json, env);
}

Result<std::unique_ptr<LoadWindows>> LoadWindows::create(const load::Plan& plan, const std::string& workflow,
                                                         load::WindowMergerConfig cfg) {
  const auto it = std::find_if(plan.workflows.begin(), plan.workflows.end(),
                               [&](const load::Workflow& w) { return w.name == workflow; });
  if (it == plan.workflows.end())
    return make_error(Errc::not_found, fmt::format("{}: no workflow named '{}'", plan.file, workflow));
  if (it->steps.size() > load::kMaxWindowSteps)
    return make_error(Errc::invalid_argument,
                      fmt::format("{}: workflow '{}' has {} steps, more than a window carries ({})", plan.file,
                                  workflow, it->steps.size(), load::kMaxWindowSteps));
  // File order, as evaluate_thresholds judges them at the end: steps', the workflow's, then the run's.
  std::vector<load::Threshold> ths;
  for (const auto& s : it->steps) ths.insert(ths.end(), s.thresholds.begin(), s.thresholds.end());
  ths.insert(ths.end(), it->thresholds.begin(), it->thresholds.end());
  const auto tests = std::count_if(plan.workflows.begin(), plan.workflows.end(),
                                   [](const load::Workflow& w) { return w.kind == load::WorkflowKind::test; });
  if (tests == 1 && it->kind == load::WorkflowKind::test)
    ths.insert(ths.end(), plan.thresholds.begin(), plan.thresholds.end());
  return std::unique_ptr<LoadWindows>(new LoadWindows(*it, std::move(ths), cfg));
}

namespace {
std::vector<std::string> step_names(const load::Workflow& wf) {
  std::vector<std::string> names;
  names.reserve(wf.steps.size());
  for (const auto& s : wf.steps) names.push_back(s.name);
  return names;
}

std::uint64_t add_saturating(std::uint64_t a, std::uint64_t b) {
  return a > std::numeric_limits<std::uint64_t>::max() - b ? std::numeric_limits<std::uint64_t>::max() : a + b;
}
}  // namespace

LoadWindows::LoadWindows(const load::Workflow& wf, std::vector<load::Threshold> thresholds,
                         load::WindowMergerConfig cfg)
    : merger_(wf.name, step_names(wf), cfg), thresholds_(std::move(thresholds)), warmup_s_(to_seconds(wf.warmup)) {}

Status LoadWindows::add(std::span<const std::uint8_t> window) { return add_decoded(window, nullptr); }

Status LoadWindows::add_as(std::span<const std::uint8_t> window, std::uint32_t part, std::uint64_t token,
                           std::uint64_t index) {
  const Retag tag{part, token, index};
  return add_decoded(window, &tag);
}

Status LoadWindows::add_decoded(std::span<const std::uint8_t> window, const Retag* tag) {
  auto w = load::decode_window(window.data(), window.size());
  if (!w.ok()) {
    undecoded_++;
    return w.status();
  }
  if (tag != nullptr) {
    w->part = tag->part;
    w->token = tag->token;
    w->index = tag->index;
  }
  auto r = merger_.add(*w);
  if (!r.ok()) return r.status();  // the merger counted it as refused
  if (*r == load::WindowAdd::merged || *r == load::WindowAdd::late) newest_ = std::max(newest_, w->index);
  return ok_status();  // merged, duplicate, late, stale or expired: the merger's counters tally it
}

void LoadWindows::advance(std::uint64_t now_index) { merger_.advance(now_index); }

void LoadWindows::seal() { merger_.advance(std::max(merger_.now(), newest_) + merger_.config().lateness); }

std::vector<manager::ClosedWindow> LoadWindows::closed_since(std::uint64_t from, std::size_t max) const {
  std::vector<manager::ClosedWindow> out;
  const auto through = merger_.closed_through();
  if (!through || from > *through || max == 0) return out;
  // The ring holds indices above newest - max_windows, and newest >= now > closed_through: nothing
  // retained is older than closed_through + 1 - max_windows (the loop is at most max_windows long).
  const std::uint64_t ring = merger_.config().max_windows;
  const std::uint64_t oldest = *through + 1 >= ring ? *through + 1 - ring : 0;
  for (std::uint64_t i = std::max(from, oldest); i <= *through && out.size() < max; ++i) {
    auto m = merger_.window(i);
    if (!m) continue;  // no part sent this window, or it left the ring
    load::Window w;
    w.workflow = merger_.workflow();
    w.index = m->index;
    for (auto& s : m->steps)
      if (s.total.executed != 0) w.steps.push_back(std::move(s));  // measured <= total: nothing else to carry
    w.iterations = m->iterations;
    manager::ClosedWindow c;
    c.index = m->index;
    c.parts.reserve(m->parts.size());
    for (const auto& p : m->parts) {
      if (!p.late) {
        w.saturation.cpu_percent =
            std::min(add_saturating(w.saturation.cpu_percent, p.saturation.cpu_percent), load::kMaxWindowCpuPercent);
        w.saturation.rss_bytes = add_saturating(w.saturation.rss_bytes, p.saturation.rss_bytes);
      }
      c.parts.push_back(
          manager::WindowPartLoad{p.part, p.token, p.saturation.cpu_percent, p.saturation.rss_bytes, p.late});
    }
    c.merged = load::encode_window(w);
    out.push_back(std::move(c));
  }
  return out;
}

manager::WindowBytes LoadWindows::totals() const {
  load::Window w;
  w.workflow = merger_.workflow();
  w.index = merger_.now();
  w.steps = merger_.totals().steps;
  w.iterations = merger_.totals().iterations;
  return load::encode_window(w);
}

std::optional<std::string> LoadWindows::abort_breach(double elapsed_s) const {
  const double measured_s = std::max(0.0, elapsed_s - warmup_s_);
  for (const auto& t : thresholds_) {
    if (!t.abort || elapsed_s < to_seconds(t.after)) continue;
    load::Judged j;
    if (t.scope == "run") {
      // Kept only when this is the plan's one test workflow: the run's totals are this workflow's.
      const auto& tot = merger_.totals();
      j = load::judge_threshold(t, tot.measured_counts(), tot.merged_latency(), measured_s, tot.iterations.dropped,
                                tot.iterations.started + tot.iterations.dropped);
    } else {
      auto r = merger_.judge(t, measured_s);
      // create() keeps only this workflow's and its steps' thresholds, which the merger judges.
      HS_ASSERT(r.ok(), "workflow '{}' cannot judge its own threshold: {}", merger_.workflow(), r.status().to_string());
      j = *r;
    }
    if (!j.passed && !j.no_data)
      return fmt::format("{}: {} {} failed (observed {})", t.scope, t.key, t.condition,
                         load::cond_value(t, j.observed));
  }
  return std::nullopt;
}

manager::WindowTally LoadWindows::tally() const {
  const auto& c = merger_.counters();
  manager::WindowTally t;
  t.merged = c.merged;
  t.duplicates = c.duplicates;
  t.late = c.late;
  t.stale = c.stale;
  t.expired = c.expired;
  t.refused = c.refused + undecoded_;
  t.evicted = c.evicted;
  return t;
}

manager::WindowsFactory load_windows_factory(load::WindowMergerConfig cfg, load::EnvLookup env) {
  const std::size_t max_bytes = LoadExecutorOptions{}.max_plan_bytes;
  return [cfg, env = std::move(env), max_bytes](
             std::span<const std::uint8_t> plan,
             const std::string& workflow) -> Result<std::unique_ptr<manager::WorkflowWindows>> {
    auto parsed = parse_plan_bytes(plan, "workflow", env, max_bytes);
    if (!parsed.ok()) return parsed.status();
    auto w = LoadWindows::create(*parsed, workflow, cfg);
    if (!w.ok()) return w.status();
    return std::unique_ptr<manager::WorkflowWindows>(std::move(w).value());
  };
}

}  // namespace hs::host
