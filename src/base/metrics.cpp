#include "hyperscale/base/metrics.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "hyperscale/base/enum_names.hpp"
#include "hyperscale/base/log.hpp"

namespace hs::metrics {

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)) {
  std::sort(bounds_.begin(), bounds_.end());
  bounds_.erase(std::unique(bounds_.begin(), bounds_.end()), bounds_.end());
  counts_.assign(bounds_.size() + 1, 0);
}

void Histogram::observe(double v) noexcept {
  auto it = std::lower_bound(bounds_.begin(), bounds_.end(), v);  // first bound >= v: le semantics
  counts_[static_cast<std::size_t>(it - bounds_.begin())]++;
  count_++;
  sum_ += v;
}

std::vector<double> default_latency_buckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

namespace {

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out.push_back(c);
  }
  return out;
}

constexpr EnumNames<Kind, 3> kKindNames{{"counter", "gauge", "histogram"}, "untyped"};
static_assert(kKindNames.covers(Kind::histogram));

std::string_view kind_name(Kind k) { return kKindNames(k); }

std::string format_value(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{}", static_cast<long long>(v));
  return fmt::format("{}", v);
}

std::string with_label(const std::string& key, std::string_view extra) {
  if (key.empty()) return std::string(extra);
  return key + "," + std::string(extra);
}

}  // namespace

std::string label_key(Labels labels) {
  std::sort(labels.begin(), labels.end());
  std::string out;
  for (const auto& [k, v] : labels) {
    if (!out.empty()) out.push_back(',');
    out += k;
    out += "=\"";
    out += escape_label_value(v);
    out.push_back('"');
  }
  return out;
}

struct Registry::Entry {
  Labels labels;
  Counter counter;
  Gauge gauge;
  std::unique_ptr<Histogram> histogram;
};

struct Registry::FamilyEntry {
  Kind kind;
  std::string help;
  std::map<std::string, std::unique_ptr<Entry>, std::less<>> series;
};

Registry::Registry(std::size_t max_series) : max_series_(max_series) {}
Registry::~Registry() = default;

bool Registry::valid_name(std::string_view name) noexcept {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    const bool digit = c >= '0' && c <= '9';
    if (!(alpha || (i > 0 && digit))) return false;
  }
  return true;
}

Registry::Entry* Registry::find_or_create(std::string_view name, std::string_view help, Kind kind, Labels&& labels,
                                          const std::vector<double>* bounds) {
  if (!valid_name(name)) {
    dropped_.inc();
    log::error("metrics", "invalid_metric_name", "name={}", log::quoted(name));
    return nullptr;
  }
  for (const auto& [k, v] : labels) {
    if (!valid_name(k) || k.find(':') != std::string::npos) {
      dropped_.inc();
      log::error("metrics", "invalid_label_name", "name={} label={}", name, log::quoted(k));
      return nullptr;
    }
  }
  auto fit = families_.find(name);
  if (fit == families_.end()) {
    auto fam = std::make_unique<FamilyEntry>();
    fam->kind = kind;
    fam->help = std::string(help);
    fit = families_.emplace(std::string(name), std::move(fam)).first;
  } else if (fit->second->kind != kind) {
    dropped_.inc();
    log::error("metrics", "metric_kind_conflict", "name={} registered_as={} requested={}", name,
               kind_name(fit->second->kind), kind_name(kind));
    return nullptr;
  }
  std::string key = label_key(labels);
  auto& series = fit->second->series;
  auto sit = series.find(key);
  if (sit != series.end()) return sit->second.get();
  if (series_count_ >= max_series_) {
    if (dropped_.value() == 0) {
      log::warn("metrics", "series_limit_reached", "limit={} name={}", max_series_, name);
    }
    dropped_.inc();
    return nullptr;
  }
  auto e = std::make_unique<Entry>();
  e->labels = std::move(labels);
  if (kind == Kind::histogram) e->histogram = std::make_unique<Histogram>(*bounds);
  Entry* raw = e.get();
  series.emplace(std::move(key), std::move(e));
  series_count_++;
  return raw;
}

Counter& Registry::counter(std::string_view name, std::string_view help, Labels labels) {
  Entry* e = find_or_create(name, help, Kind::counter, std::move(labels), nullptr);
  return e ? e->counter : overflow_counter_;
}

Gauge& Registry::gauge(std::string_view name, std::string_view help, Labels labels) {
  Entry* e = find_or_create(name, help, Kind::gauge, std::move(labels), nullptr);
  return e ? e->gauge : overflow_gauge_;
}

Histogram& Registry::histogram(std::string_view name, std::string_view help, std::vector<double> bounds,
                               Labels labels) {
  Entry* e = find_or_create(name, help, Kind::histogram, std::move(labels), &bounds);
  return e ? *e->histogram : overflow_histogram_;
}

std::uint64_t Registry::counter_value(std::string_view name, const Labels& labels) const {
  auto fit = families_.find(name);
  if (fit == families_.end() || fit->second->kind != Kind::counter) return 0;
  auto sit = fit->second->series.find(label_key(labels));
  return sit == fit->second->series.end() ? 0 : sit->second->counter.value();
}

double Registry::gauge_value(std::string_view name, const Labels& labels) const {
  auto fit = families_.find(name);
  if (fit == families_.end() || fit->second->kind != Kind::gauge) return 0;
  auto sit = fit->second->series.find(label_key(labels));
  return sit == fit->second->series.end() ? 0 : sit->second->gauge.value();
}

Snapshot Registry::snapshot() const {
  Snapshot snap;
  for (const auto& [name, fam] : families_) {
    Snapshot::Family& f = snap.families[name];
    f.kind = fam->kind;
    f.help = fam->help;
    for (const auto& [key, e] : fam->series) {
      Snapshot::Series s;
      s.labels = e->labels;
      switch (fam->kind) {
        case Kind::counter:
          s.value = static_cast<double>(e->counter.value());
          break;
        case Kind::gauge:
          s.value = e->gauge.value();
          break;
        case Kind::histogram:
          s.bounds = e->histogram->bounds();
          s.buckets = e->histogram->bucket_counts();
          s.count = e->histogram->count();
          s.sum = e->histogram->sum();
          break;
      }
      f.series.emplace(key, std::move(s));
    }
  }
  if (dropped_.value() > 0) {
    Snapshot::Family& f = snap.families["hs_metrics_series_dropped_total"];
    f.kind = Kind::counter;
    f.help = "Metric series refused because of the series limit or an invalid name";
    f.series[""].value = static_cast<double>(dropped_.value());
  }
  return snap;
}

std::vector<std::string> Snapshot::merge(const Snapshot& other) {
  std::vector<std::string> conflicts;
  for (const auto& [name, of] : other.families) {
    auto it = families.find(name);
    if (it == families.end()) {
      families.emplace(name, of);
      continue;
    }
    Family& f = it->second;
    if (f.kind != of.kind) {
      conflicts.push_back(name);
      continue;
    }
    for (const auto& [key, os] : of.series) {
      auto sit = f.series.find(key);
      if (sit == f.series.end()) {
        f.series.emplace(key, os);
        continue;
      }
      Series& s = sit->second;
      if (f.kind == Kind::histogram) {
        if (s.bounds != os.bounds) {
          conflicts.push_back(name);
          continue;
        }
        for (std::size_t i = 0; i < s.buckets.size(); ++i) s.buckets[i] += os.buckets[i];
        s.count += os.count;
        s.sum += os.sum;
      } else {
        s.value += os.value;
      }
    }
  }
  return conflicts;
}

std::string Snapshot::render_prometheus() const {
  std::string out;
  for (const auto& [name, f] : families) {
    if (f.series.empty()) continue;
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, f.help, name, kind_name(f.kind));
    for (const auto& [key, s] : f.series) {
      if (f.kind != Kind::histogram) {
        if (key.empty())
          out += fmt::format("{} {}\n", name, format_value(s.value));
        else
          out += fmt::format("{}{{{}}} {}\n", name, key, format_value(s.value));
        continue;
      }
      std::uint64_t cumulative = 0;
      for (std::size_t i = 0; i < s.buckets.size(); ++i) {
        cumulative += s.buckets[i];
        const std::string le = i < s.bounds.size() ? format_value(s.bounds[i]) : "+Inf";
        out += fmt::format("{}_bucket{{{}}} {}\n", name, with_label(key, "le=\"" + le + "\""), cumulative);
      }
      const std::string braces = key.empty() ? "" : "{" + key + "}";
      out += fmt::format("{}_sum{} {}\n", name, braces, format_value(s.sum));
      out += fmt::format("{}_count{} {}\n", name, braces, s.count);
    }
  }
  return out;
}

}  // namespace hs::metrics
