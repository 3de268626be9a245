// Live windowed statistics of one workflow split into parts (one part per worker): what a part reports
// for one window, its exact binary encoding, and the merger a job's leader manager keeps per workflow.
// Sans-IO: no clocks, no sockets, no logging; the owner says what the current window is (advance) and
// logs the errors it gets back. docs/windows.md describes the format and the merge rules.
//
// A window is `window_length` (default 1 s) of a part's run, numbered from the workflow's shared start:
// window k holds what completed in [start + k * length, start + (k + 1) * length). Windows of every part
// with the same index merge into one; histograms merge bucket for bucket, so merged percentiles equal
// the percentiles of one histogram fed every sample.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "hyperscale/base/status.hpp"
#include "hyperscale/load/histogram.hpp"
#include "hyperscale/base/time.hpp"
#include "hyperscale/load/plan.hpp"
#include "hyperscale/load/runner.hpp"
#include "hyperscale/load/stats.hpp"

namespace hs::load {

inline constexpr std::uint8_t kWindowCodecVersion = 1;
inline constexpr std::size_t kMaxWindowSteps = 4096;
inline constexpr std::uint64_t kMaxWindowCpuPercent = 100u * 4096;  // every core of a 4096-core host busy
inline constexpr std::size_t kMaxWindowBytes = 16u << 20;           // one encoded window
inline constexpr std::size_t kMaxWindowBatch = 1024;                // windows in one batch
inline constexpr std::size_t kMaxWindowBatchBytes = 64u << 20;      // one encoded batch

// One step of one window: the requests of this step that completed in the window.
struct WindowStep {
  std::string name;
  Counts total;       // every request (warmup included): the live rps and error view
  Counts measured;    // after warmup: what `latency` holds and thresholds judge
  Histogram latency;  // measured requests, nanoseconds (count() == measured.executed)
};

// Iterations of the part during the window (started and finished need not be the same iterations).
struct WindowIterations {
  std::uint64_t started = 0, completed = 0, failed = 0, dropped = 0;
  void merge(const WindowIterations& o) {
    started += o.started;
    completed += o.completed;
    failed += o.failed;
    dropped += o.dropped;
  }
  bool operator==(const WindowIterations&) const = default;
};

// The load generator's own load during the window (a saturated generator measures itself, not the
// target): CPU in percent of one core (0..100 x cores) and resident memory.
struct Saturation {
  std::uint64_t cpu_percent = 0;
  std::uint64_t rss_bytes = 0;
  bool operator==(const Saturation&) const = default;
};

// What one part reports for one window.
struct Window {
  std::string workflow;
  std::uint32_t part = 0;         // part index within the workflow
  std::uint64_t token = 0;        // the part's fence token (a re-dispatched part has a higher one)
  std::uint64_t index = 0;        // windows since the workflow's shared start
  std::vector<WindowStep> steps;  // by name; a step with nothing in the window may be left out
  WindowIterations iterations;
  Saturation saturation;
};

// Checks what decode_window checks on an in-memory window: bounds (steps, cpu), counts that add up
// (ok + failed = executed, reasons sum to failed, measured <= total, latency samples = measured
// requests). decode_window and WindowMerger::add both use it.
Status check_window(const Window& w);

// Layout (version 1): "HSWN", u8 version, then LEB128 varints and length-prefixed strings: workflow,
// part, token, index, steps[] { name, total counts, measured counts, latency histogram (sum, min, max,
// sparse (index delta, count) buckets) }, iterations (started, completed, failed, dropped),
// saturation (cpu_percent, rss_bytes). Garbage gives a clear error (invalid_argument), never UB.
// encode_window asserts check_window (encoding a window that does not add up is a bug of the caller).
std::vector<std::uint8_t> encode_window(const Window& w);
Result<Window> decode_window(const std::uint8_t* data, std::size_t size);
inline Result<Window> decode_window(const std::vector<std::uint8_t>& b) { return decode_window(b.data(), b.size()); }

// A batch (what a part sends when the leader is slow): "HSWB", u8 version, count (<= kMaxWindowBatch),
// then each window as a length-prefixed window encoding. One bad window refuses the whole batch.
std::vector<std::uint8_t> encode_windows(std::span<const Window> ws);
Result<std::vector<Window>> decode_windows(const std::uint8_t* data, std::size_t size);
inline Result<std::vector<Window>> decode_windows(const std::vector<std::uint8_t>& b) {
  return decode_windows(b.data(), b.size());
}

// Cuts one part's live view (the WorkflowLive of its Runner's on_progress) into windows. Sans-IO: the
// owner gives the time since the window origin with every sample, and the saturation it measured.
//
// Window k is [origin + k * length, origin + (k + 1) * length). Each feed attributes everything since
// the previous feed (the growth of the cumulative step totals/measured counts and iteration counters,
// and the window histograms) to the window containing `since_origin`; a sample whose window is before
// the current one (the clock went back) goes into the current one: a window is never reopened. The
// first window is the one containing `offset` (the part's schedule start relative to the origin; none
// before it is emitted). Every window from the first to the last is emitted once, in index order, also
// an empty one (no steps: a live view sees 0 rps) - except that when the index jumps by more than
// kMaxGapWindows, only the last empty window of the gap is emitted (the others are counted as
// skipped_windows). A step with nothing in a window is left out of it. A window's saturation is the
// one given with the last sample attributed to it; the empty windows of a gap carry the saturation
// given with the sample that ended the gap. A cpu_percent above kMaxWindowCpuPercent is clamped.
//
// Exact: the emitted windows add up to the last cumulative view fed (finish's), step by step and
// bucket for bucket. A sample that does not add up (a cumulative counter going back, a window
// histogram whose count is not the growth of measured.executed, measured growing more than total) is
// not attributed: it is counted (refused_samples, last_refusal) and becomes the new base.
class WindowCutter {
 public:
  static constexpr std::uint64_t kMaxGapWindows = 3600;

  // `steps`: the workflow's step names, in the order of WorkflowLive's vectors. `length` > 0.
  WindowCutter(std::string workflow, std::vector<std::string> steps, std::uint32_t part, std::uint64_t token,
               Duration length, Duration offset);

  // The windows finished by this sample (index below the current one), in index order; each passes
  // check_window. After finish(): nothing.
  std::vector<Window> feed(const WorkflowLive& live, Duration since_origin, Saturation s);
  // The last sample (the run's final view): feeds it, then returns the rest, the current window
  // included. The cutter is finished afterwards.
  std::vector<Window> finish(const WorkflowLive& final_live, Duration since_origin, Saturation s);

  std::uint64_t current() const { return cur_; }  // the window samples go into now
  std::uint64_t index_of(Duration since_origin) const;
  bool finished() const { return finished_; }
  std::uint64_t skipped_windows() const { return skipped_; }
  std::uint64_t refused_samples() const { return refused_; }
  const std::string& last_refusal() const { return last_refusal_; }

 private:
  struct Acc {
    std::vector<Counts> total, measured;
    std::vector<Histogram> latency;
    WindowIterations iterations;
    Saturation saturation;
  };
  Window take(std::uint64_t index);  // the current accumulator as window `index`; resets it
  void advance_to(std::uint64_t index, Saturation s, std::vector<Window>& out);
  bool attribute(const WorkflowLive& l);  // adds the growth since the previous sample to acc_

  std::string workflow_;
  std::vector<std::string> steps_;
  std::uint32_t part_ = 0;
  std::uint64_t token_ = 0;
  Duration length_{0};
  std::uint64_t cur_ = 0;
  bool finished_ = false;
  Acc acc_;
  // The cumulative figures of the previous sample (the base of the next growth).
  std::vector<Counts> prev_total_, prev_measured_;
  WindowIterations prev_iter_;
  std::uint64_t skipped_ = 0, refused_ = 0;
  std::string last_refusal_;
};

// What WindowMerger::add did with a window.
enum class WindowAdd {
  merged,       // merged into its window and the totals
  duplicate,    // (part, token, index) already seen: nothing changed
  late,         // its window was closed: added to the totals only (counted as late)
  stale_token,  // the part has sent a window with a higher token: refused (a superseded attempt)
  expired,      // older than every window the ring keeps: cannot be deduplicated, refused (counted)
};
const char* window_add_name(WindowAdd a);

struct WindowMergerConfig {
  std::uint64_t lateness = 5;           // window i is closed once the owner's now >= i + lateness (>= 1)
  std::uint64_t max_ahead = 10;         // a window more than this past now is refused (clock skew bound)
  std::size_t max_windows = 600;        // merged windows kept (a ring); > lateness + max_ahead
  std::uint32_t max_parts = 4096;       // part indices are < max_parts
  std::size_t max_tokens_per_part = 4;  // distinct tokens of one part within one window
};

struct WindowCounters {
  std::uint64_t merged = 0, duplicates = 0, late = 0, stale = 0, expired = 0, refused = 0;
  std::uint64_t late_executed = 0;  // requests (total counts) carried by late windows
  std::uint64_t evicted = 0;        // merged windows dropped from the ring (oldest first)
};

// One accepted (part, token) of a window. A late one is in the totals, not in the window's figures.
struct PartSample {
  std::uint32_t part = 0;
  std::uint64_t token = 0;
  bool late = false;
  WindowIterations iterations;
  Saturation saturation;
};

struct MergedWindow {
  std::uint64_t index = 0;
  bool closed = false;
  std::vector<WindowStep> steps;  // every step of the workflow, in the merger's order
  WindowIterations iterations;    // of the merged (not late) parts
  std::vector<PartSample> parts;  // ascending (part, token)
};

struct MergedTotals {
  std::vector<WindowStep> steps;  // every step, in the merger's order; merged + late windows
  WindowIterations iterations;
  Counts measured_counts() const { return sum_measured(steps); }
  Histogram merged_latency() const { return sum_latency(steps); }
};

// Merges the windows of every part of one workflow of one job. Bounded: a ring of max_windows merged
// windows, per window at most max_parts x max_tokens_per_part part samples, one highest token per part
// index (< max_parts); nothing else grows.
class WindowMerger {
 public:
  // `steps` are the workflow's step names (unique, <= kMaxWindowSteps).
  WindowMerger(std::string workflow, std::vector<std::string> steps, WindowMergerConfig cfg = {});

  // Bad input (another workflow, an unknown or repeated step, a part index out of range, counts that do
  // not add up or would overflow the totals, an index more than max_ahead past now, more than
  // max_tokens_per_part tokens of one part in one window) is an error and changes nothing but the
  // `refused` counter.
  Result<WindowAdd> add(const Window& w);
  // The owner's current window index (from the shared start and its clock). Never moves back: a lower
  // value is ignored. Closes windows <= now - lateness and evicts windows <= now - max_windows.
  void advance(std::uint64_t now_index);

  std::uint64_t now() const { return now_; }
  // Highest closed window index, none while now < lateness.
  std::optional<std::uint64_t> closed_through() const;
  // A window the ring holds (one that has received an accepted window); none otherwise.
  std::optional<MergedWindow> window(std::uint64_t index) const;
  std::size_t retained() const;
  const MergedTotals& totals() const { return totals_; }
  const WindowCounters& counters() const { return counters_; }
  const std::string& workflow() const { return workflow_; }
  const WindowMergerConfig& config() const { return cfg_; }

  // Judges a threshold of this workflow ("workflow W" or "step W.S") on the totals, measured over
  // `seconds`; dropped_rate uses the iterations (scheduled = started + dropped). A "run" threshold, or
  // one about another workflow or an unknown step, is an error: run thresholds span workflows (add each
  // merger's measured_counts()/merged_latency() to a RunTotals).
  Result<Judged> judge(const Threshold& t, double seconds) const;

 private:
  struct SparseHist {
    std::vector<std::pair<std::uint32_t, std::uint64_t>> buckets;  // ascending index, non-zero counts
    std::uint64_t sum = 0, min = 0, max = 0;
    void merge(const Histogram& h);
    Histogram dense() const;
  };
  struct SlotStep {
    Counts total, measured;
    SparseHist latency;
  };
  struct Slot {
    bool used = false;
    std::uint64_t index = 0;
    std::vector<SlotStep> steps;
    WindowIterations iterations;
    std::vector<PartSample> parts;  // ascending (part, token): the dedup keys of this window
  };

  // Written without sums that could wrap (indices are any u64).
  bool in_ring(std::uint64_t index) const { return index > newest_ || newest_ - index < cfg_.max_windows; }
  bool closed(std::uint64_t index) const { return now_ >= cfg_.lateness && index <= now_ - cfg_.lateness; }
  void retain_through(std::uint64_t newest);
  Status refuse(Status s);

  std::string workflow_;
  WindowMergerConfig cfg_;
  std::unordered_map<std::string, std::size_t> step_index_;  // fixed at construction
  std::vector<Slot> ring_;                                   // max_windows slots, window i in i % max_windows
  std::vector<std::uint64_t> highest_token_;                 // per part index seen (< max_parts), 0 = none
  std::uint64_t now_ = 0;
  std::uint64_t newest_ = 0;  // max(now, highest accepted index): the ring holds (newest - max_windows, newest]
  MergedTotals totals_;
  WindowCounters counters_;
};

}  // namespace hs::load
