// A cluster job's live windows on the client side (`hyperscale watch`, `submit --wait`, `results`):
// what the leader's watch replies carry (cluster::WatchReply, docs/windows.md), collected per
// workflow, turned into the live view's lines and into the per-window time series of results.json /
// results.csv. No sockets here (tests/unit/cli/test_job_windows.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "hyperscale/base/status.hpp"
#include "hyperscale/cluster/messages.hpp"
#include "hyperscale/load/plan.hpp"
#include "hyperscale/load/window.hpp"

namespace hs::cli {

// The windows of a job's workflows as the client has received them. Bounded: at most kMaxWindows
// closed windows per workflow (the oldest go first; a leader keeps 600 by default).
class JobWindows {
 public:
  static constexpr std::size_t kMaxWindows = 100'000;
  static constexpr std::size_t kMaxDatacenters = 64;  // per workflow, from a gate (its max_datacenters)
  struct Closed {
    std::uint64_t index = 0;
    load::Window merged;
    std::vector<cluster::PartLoad> parts;
  };
  struct Series {
    std::uint64_t origin_unix_ms = 0;
    std::uint32_t window_ms = 0;
    load::Window totals;
    std::map<std::uint64_t, Closed> closed;  // by index
    std::uint64_t duplicates = 0, late = 0, stale = 0, expired = 0, refused = 0, evicted = 0, dropped = 0;
    bool more = false;  // the last reply had more closed windows than it carried
    // From a gate: each datacenter's share as the gate last heard it (cluster::WatchDc).
    struct Dc {
      std::uint32_t share = 0;
      std::string name;
      cluster::JobState state = cluster::JobState::submitted;
      std::uint64_t now_index = 0;
      load::Window totals;
      std::uint64_t windows = 0;
    };
    std::vector<Dc> datacenters;
  };

  // Takes one watch reply. A window that does not decode is an error naming it (the others are kept).
  Status add(const cluster::WatchReply& r);
  // Where the next watch query starts: past the newest closed window every workflow has.
  std::uint64_t next_from() const;
  bool more() const;  // some workflow had more windows than the last reply carried
  const std::map<std::string, Series>& series() const { return series_; }
  // How the live lines name a worker (the client passes its address); unset: "w" and its node id.
  void set_worker_names(std::function<std::string(std::uint64_t)> f) { name_worker_ = std::move(f); }
  // True the first time `error` is reported (the caller prints it once, not every second).
  bool first_report(const std::string& error) {
    if (error == reported_) return false;
    reported_ = error;
    return true;
  }
  // The newest closed window of any workflow (0 before the first).
  std::uint64_t newest() const;

  // The live view: per workflow (in the plan's order), its last closed window, its totals, the
  // parts' load in that window and the plan's thresholds of the workflow and its steps judged on
  // the totals (cli::live_lines). From a gate the parts are the datacenters (named), and each
  // datacenter gets a line of its own totals:
  //   datacenter dc-a (running): window N, requests R, errors E, W windows merged
  std::vector<std::string> lines(const load::Plan& plan) const;
  // results.json's "windows": {"WORKFLOW": {"window_ms", "origin_unix_ms", "counters": {...},
  // "series": [{"index", "start_ms", "steps": {"STEP": {"requests", "errors", "p50_ms", "p95_ms",
  // "p99_ms"}}, "iterations": {...}, "parts": [{"part", "worker", "cores", "cpu_percent", "rss_bytes",
  // "saturated"}]}]}}
  std::string json() const;
  // windows.csv (next to results.csv): a header, then one row per closed window and step:
  // workflow,index,start_ms,step,requests,errors,p50_ms,p95_ms,p99_ms
  std::string csv() const;

 private:
  std::map<std::string, Series> series_;
  std::function<std::string(std::uint64_t)> name_worker_;
  std::string reported_;
};

// results.json's text with `windows_json` (JobWindows::json) added as its "windows" member. An error
// when either does not parse as a JSON object.
Result<std::string> add_windows_json(const std::string& results_json, const std::string& windows_json);

}  // namespace hs::cli
