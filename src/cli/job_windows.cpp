#include "cli/job_windows.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "cli/live_view.hpp"
#include "hyperscale/load/stats.hpp"

namespace hs::cli {

namespace {

using Json = nlohmann::ordered_json;

double ms_of(const load::Histogram& h, double q) {
  return h.count() == 0 ? 0.0 : static_cast<double>(h.quantile(q)) / 1e6;
}

// The plan's thresholds of one workflow and its steps, judged on the merged totals so far (the live
// marks; the final judgement is on the final statistics).
std::vector<load::ThresholdResult> marks(const load::Plan& plan, const std::string& workflow,
                                         const load::Window& totals, double seconds) {
  std::vector<load::ThresholdResult> out;
  const auto wf = std::find_if(plan.workflows.begin(), plan.workflows.end(),
                               [&](const load::Workflow& w) { return w.name == workflow; });
  if (wf == plan.workflows.end()) return out;
  const std::uint64_t scheduled = totals.iterations.started + totals.iterations.dropped;
  auto judge = [&](const load::Threshold& t, const load::Counts& c, const load::Histogram& h) {
    const load::Judged j = load::judge_threshold(t, c, h, seconds, totals.iterations.dropped, scheduled);
    out.push_back(load::ThresholdResult{t, j.observed, j.passed, j.no_data});
  };
  for (const auto& st : wf->steps) {
    const auto s = std::find_if(totals.steps.begin(), totals.steps.end(),
                                [&](const load::WindowStep& x) { return x.name == st.name; });
    if (s == totals.steps.end()) continue;
    for (const auto& t : st.thresholds) judge(t, s->measured, s->latency);
  }
  if (!wf->thresholds.empty()) {
    load::Counts c;
    load::Histogram h;
    for (const auto& s : totals.steps) {
      c.merge(s.measured);
      h.merge(s.latency);
    }
    for (const auto& t : wf->thresholds) judge(t, c, h);
  }
  return out;
}

}  // namespace

Status JobWindows::add(const cluster::WatchReply& r) {
  Status first = ok_status();
  for (const auto& w : r.workflows) {
    Series& s = series_[w.name];
    s.origin_unix_ms = w.origin_unix_ms;
    s.window_ms = w.window_ms;
    s.duplicates = w.duplicates;
    s.late = w.late;
    s.stale = w.stale;
    s.expired = w.expired;
    s.refused = w.refused;
    s.evicted = w.evicted;
    s.dropped = w.dropped;
    s.more = w.more;
    s.datacenters.clear();
    for (const auto& d : w.datacenters) {
      Series::Dc dc{d.share, d.name, d.state, d.now_index, {}, d.windows};
      if (!d.totals.empty()) {
        auto t = load::decode_window(d.totals);
        if (!t.ok()) {
          if (first.ok())
            first = make_error(Errc::invalid_argument, fmt::format("workflow '{}': datacenter {}: totals: {}", w.name,
                                                                   d.name, t.status().message()));
          continue;
        }
        dc.totals = std::move(*t);
      }
      if (s.datacenters.size() < kMaxDatacenters) s.datacenters.push_back(std::move(dc));
    }
    if (auto t = load::decode_window(w.totals); t.ok()) {
      s.totals = std::move(*t);
    } else if (first.ok()) {
      first =
          make_error(Errc::invalid_argument, fmt::format("workflow '{}': totals: {}", w.name, t.status().message()));
    }
    for (const auto& c : w.windows) {
      auto d = load::decode_window(c.merged);
      if (!d.ok()) {
        if (first.ok())
          first = make_error(Errc::invalid_argument,
                             fmt::format("workflow '{}': window {}: {}", w.name, c.index, d.status().message()));
        continue;
      }
      s.closed[c.index] = Closed{c.index, std::move(*d), c.parts};
      while (s.closed.size() > kMaxWindows) s.closed.erase(s.closed.begin());
    }
  }
  return first;
}

std::uint64_t JobWindows::next_from() const {
  std::uint64_t from = UINT64_MAX;
  for (const auto& [name, s] : series_) from = std::min(from, s.closed.empty() ? 0 : s.closed.rbegin()->first + 1);
  return from == UINT64_MAX ? 0 : from;
}

bool JobWindows::more() const {
  return std::any_of(series_.begin(), series_.end(), [](const auto& kv) { return kv.second.more; });
}

std::uint64_t JobWindows::newest() const {
  std::uint64_t n = 0;
  for (const auto& [name, s] : series_)
    if (!s.closed.empty()) n = std::max(n, s.closed.rbegin()->first);
  return n;
}

std::vector<std::string> JobWindows::lines(const load::Plan& plan) const {
  std::vector<std::string> out;
  for (const auto& wf : plan.workflows) {
    auto it = series_.find(wf.name);
    if (it == series_.end()) continue;
    const Series& s = it->second;
    const double len = static_cast<double>(s.window_ms) / 1000.0;
    load::Window none;
    const Closed* last = s.closed.empty() ? nullptr : &s.closed.rbegin()->second;
    std::vector<PartLoadView> parts;
    auto dc_of = [&](std::uint32_t share) -> const Series::Dc* {
      for (const auto& d : s.datacenters)
        if (d.share == share) return &d;
      return nullptr;
    };
    if (last != nullptr)
      for (const auto& p : last->parts) {
        if (p.late) continue;
        std::string who = p.worker != 0 && name_worker_ ? name_worker_(p.worker) : std::string();
        if (const Series::Dc* d = p.worker == 0 ? dc_of(p.part) : nullptr)
          who = d->name;  // a gate's part: a datacenter
        parts.push_back(PartLoadView{p.part, p.worker, p.cores, p.cpu_percent, p.rss_bytes, std::move(who)});
      }
    const double seconds = static_cast<double>(s.totals.index + 1) * len;
    const auto m = marks(plan, wf.name, s.totals, seconds);
    auto l = live_lines(wf.name, last ? last->merged : none, s.totals, parts, len, m);
    out.insert(out.end(), l.begin(), l.end());
    for (const auto& d : s.datacenters) {
      std::uint64_t requests = 0, errors = 0;
      for (const auto& st : d.totals.steps) {
        requests += st.total.executed;
        errors += st.total.failed;
      }
      out.push_back(fmt::format("  datacenter {} ({}): window {}, requests {}, errors {}, {} windows merged", d.name,
                                cluster::name(d.state), d.now_index, requests, errors, d.windows));
    }
    if (s.dropped + s.refused + s.expired + s.late > 0)
      out.push_back(fmt::format("  windows: {} dropped by the parts, {} refused, {} too old, {} late", s.dropped,
                                s.refused, s.expired, s.late));
  }
  return out;
}

std::string JobWindows::json() const {
  Json all = Json::object();
  for (const auto& [name, s] : series_) {
    Json wf;
    wf["window_ms"] = s.window_ms;
    wf["origin_unix_ms"] = s.origin_unix_ms;
    wf["counters"] = {{"duplicates", s.duplicates}, {"late", s.late},       {"stale", s.stale},
                      {"expired", s.expired},       {"refused", s.refused}, {"evicted", s.evicted},
                      {"dropped", s.dropped}};
    Json series = Json::array();
    for (const auto& [index, c] : s.closed) {
      Json w;
      w["index"] = index;
      w["start_ms"] = index * s.window_ms;
      Json steps = Json::object();
      for (const auto& st : c.merged.steps)
        steps[st.name] = {{"requests", st.total.executed},
                          {"errors", st.total.failed},
                          {"p50_ms", ms_of(st.latency, 0.50)},
                          {"p95_ms", ms_of(st.latency, 0.95)},
                          {"p99_ms", ms_of(st.latency, 0.99)}};
      w["steps"] = std::move(steps);
      const auto& it = c.merged.iterations;
      w["iterations"] = {
          {"started", it.started}, {"completed", it.completed}, {"failed", it.failed}, {"dropped", it.dropped}};
      Json parts = Json::array();
      for (const auto& p : c.parts) {
        const PartLoadView v{p.part, p.worker, p.cores, p.cpu_percent, p.rss_bytes, {}};
        parts.push_back({{"part", p.part},
                         {"worker", p.worker},
                         {"cores", p.cores},
                         {"cpu_percent", p.cpu_percent},
                         {"rss_bytes", p.rss_bytes},
                         {"late", p.late},
                         {"saturated", saturated(v)}});
      }
      w["parts"] = std::move(parts);
      series.push_back(std::move(w));
    }
    wf["series"] = std::move(series);
    all[name] = std::move(wf);
  }
  return all.dump();
}

std::string JobWindows::csv() const {
  std::string out = "workflow,index,start_ms,step,requests,errors,p50_ms,p95_ms,p99_ms\n";
  for (const auto& [name, s] : series_)
    for (const auto& [index, c] : s.closed)
      for (const auto& st : c.merged.steps)
        out += fmt::format("{},{},{},{},{},{},{:.3f},{:.3f},{:.3f}\n", name, index, index * s.window_ms, st.name,
                           st.total.executed, st.total.failed, ms_of(st.latency, 0.50), ms_of(st.latency, 0.95),
                           ms_of(st.latency, 0.99));
  return out;
}

Result<std::string> add_windows_json(const std::string& results_json, const std::string& windows_json) {
  Json r = Json::parse(results_json, nullptr, false);
  Json w = Json::parse(windows_json, nullptr, false);
  if (r.is_discarded() || !r.is_object())
    return make_error(Errc::invalid_argument, "results.json is not a JSON object");
  if (w.is_discarded() || !w.is_object())
    return make_error(Errc::invalid_argument, "the windows are not a JSON object");
  r["windows"] = std::move(w);
  return r.dump(2) + "\n";
}

}  // namespace hs::cli
