// Metrics registry: counters, gauges and histograms with labels, rendered as Prometheus text.
//
// A Registry is single-threaded: it belongs to one shard (each Reactor owns one). Handles returned by
// counter()/gauge()/histogram() stay valid for the registry's lifetime, so hot paths keep a reference
// and increment it without lookups. To export a process, each shard takes a snapshot() on its own
// thread and the snapshots are merged (sums) and rendered together.
//
// Bounded: at most `max_series` series per registry. Past that, new series are not created; the call
// returns a detached handle that still works but is not exported, and
// hs_metrics_series_dropped_total counts the refusals. Invalid names are refused the same way.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hs::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  void inc(std::uint64_t n = 1) noexcept { v_ += n; }
  std::uint64_t value() const noexcept { return v_; }

 private:
  std::uint64_t v_ = 0;
};

class Gauge {
 public:
  void set(double v) noexcept { v_ = v; }
  void add(double d) noexcept { v_ += d; }
  double value() const noexcept { return v_; }

 private:
  double v_ = 0;
};

class Histogram {
 public:
  // `bounds` are the bucket upper bounds, strictly increasing; +Inf is implicit.
  explicit Histogram(std::vector<double> bounds);
  void observe(double v) noexcept;
  const std::vector<double>& bounds() const noexcept { return bounds_; }
  // Non-cumulative count per bucket; size() == bounds().size() + 1 (last is +Inf).
  const std::vector<std::uint64_t>& bucket_counts() const noexcept { return counts_; }
  std::uint64_t count() const noexcept { return count_; }
  double sum() const noexcept { return sum_; }

 private:
  std::vector<double> bounds_;
  std::vector<std::uint64_t> counts_;
  std::uint64_t count_ = 0;
  double sum_ = 0;
};

// Default latency buckets in seconds (100 µs … 10 s).
std::vector<double> default_latency_buckets();

enum class Kind { counter, gauge, histogram };

// Plain values of a registry at one moment; mergeable across shards.
struct Snapshot {
  struct Series {
    Labels labels;
    double value = 0;                    // counter / gauge
    std::vector<double> bounds;          // histogram
    std::vector<std::uint64_t> buckets;  // histogram, non-cumulative
    std::uint64_t count = 0;             // histogram
    double sum = 0;                      // histogram
  };
  struct Family {
    Kind kind = Kind::counter;
    std::string help;
    std::map<std::string, Series> series;  // key: canonical label text
  };
  std::map<std::string, Family> families;

  // Adds `other` into this snapshot: counters, gauges and histogram buckets are summed.
  // A family whose kind (or histogram bounds) differs is skipped and reported in the return value.
  std::vector<std::string> merge(const Snapshot& other);
  std::string render_prometheus() const;
};

class Registry {
 public:
  explicit Registry(std::size_t max_series = 10'000);
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;
  ~Registry();

  Counter& counter(std::string_view name, std::string_view help, Labels labels = {});
  Gauge& gauge(std::string_view name, std::string_view help, Labels labels = {});
  Histogram& histogram(std::string_view name, std::string_view help, std::vector<double> bounds, Labels labels = {});

  // Looks up an existing counter value (tests, debug endpoints). Returns 0 if absent.
  std::uint64_t counter_value(std::string_view name, const Labels& labels = {}) const;
  double gauge_value(std::string_view name, const Labels& labels = {}) const;

  std::size_t series_count() const noexcept { return series_count_; }
  std::size_t max_series() const noexcept { return max_series_; }
  std::uint64_t dropped_series() const noexcept { return dropped_.value(); }

  Snapshot snapshot() const;
  std::string render_prometheus() const { return snapshot().render_prometheus(); }

  static bool valid_name(std::string_view name) noexcept;

 private:
  struct Entry;
  struct FamilyEntry;
  Entry* find_or_create(std::string_view name, std::string_view help, Kind kind, Labels&& labels,
                        const std::vector<double>* bounds);

  std::size_t max_series_;
  std::size_t series_count_ = 0;
  std::map<std::string, std::unique_ptr<FamilyEntry>, std::less<>> families_;
  Counter dropped_;
  // Detached handles for refused series; they work but are never exported.
  Counter overflow_counter_;
  Gauge overflow_gauge_;
  Histogram overflow_histogram_{default_latency_buckets()};
};

// Canonical label text used as a series key: k1="v1",k2="v2" (sorted by key, values escaped).
std::string label_key(Labels labels);

}  // namespace hs::metrics
