// The live windows of one workflow as a sans-IO role keeps them (docs/windows.md): an interface the
// host implements over the load engine (host::LoadWindows over load::WindowMerger). The roles cannot
// link the load engine, so they see windows as bytes. A job's leader manager keeps one per (job,
// workflow) and merges its parts' windows (manager/windows.hpp); a gate keeps one per (job, workflow)
// it is asked to watch and merges the datacenters' merged windows with the same code (gate/windows.hpp).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "hyperscale/base/status.hpp"

namespace hs::cluster {

using WindowBytes = std::vector<std::uint8_t>;

// One part's own load during a window (the load generator's saturation: docs/windows.md).
struct WindowPartLoad {
  std::uint32_t part = 0;
  std::uint64_t token = 0;
  std::uint64_t cpu_percent = 0;  // percent of one core (0..100 x the part's cores)
  std::uint64_t rss_bytes = 0;
  bool late = false;  // arrived after its window closed: in the totals, not in the window
};

// A merged window: `merged` is its encoding as one window of part 0, token 0 (load::encode_window).
struct ClosedWindow {
  std::uint64_t index = 0;
  WindowBytes merged;
  std::vector<WindowPartLoad> parts;
};

struct WindowTally {
  std::uint64_t merged = 0, duplicates = 0, late = 0, stale = 0, expired = 0, refused = 0, evicted = 0;
};

// The tally into a record that carries the same counters (a WatchWorkflow, from managers and gates).
template <class T>
void copy_tally(const WindowTally& t, T& out) {
  out.merged = t.merged;
  out.duplicates = t.duplicates;
  out.late = t.late;
  out.stale = t.stale;
  out.expired = t.expired;
  out.refused = t.refused;
  out.evicted = t.evicted;
}

class WorkflowWindows {
 public:
  virtual ~WorkflowWindows() = default;
  // One encoded window of one part. An error (it does not decode, names another workflow or an
  // unknown step, does not add up, is too far ahead) changes nothing but the refused tally; a
  // duplicate, late, stale or expired window is not an error (it is tallied).
  virtual Status add(std::span<const std::uint8_t> window) = 0;
  // As add, with the window's part, token and index replaced: how a gate merges a datacenter's
  // merged window (part 0, token 0) as the datacenter's share (docs/gates.md "Live windows").
  virtual Status add_as(std::span<const std::uint8_t> window, std::uint32_t part, std::uint64_t token,
                        std::uint64_t index) = 0;
  // The leader's current window index (from the origin and its clock); never moves back.
  virtual void advance(std::uint64_t now_index) = 0;
  virtual std::uint64_t now() const = 0;
  // No more windows will come (every part of the workflow has ended and its windows were taken
  // before its result): closes every window held, whatever the clock says.
  virtual void seal() = 0;
  // Closed windows with index >= from, oldest first, at most `max`.
  virtual std::vector<ClosedWindow> closed_since(std::uint64_t from, std::size_t max) const = 0;
  // Everything merged so far (closed, open and late windows) as one encoded window of index now().
  virtual WindowBytes totals() const = 0;
  // The first of the workflow's abort thresholds (load::Threshold::abort) that fails on the merged
  // totals once its `after` delay has passed, `elapsed_s` seconds into the workflow: a sentence that
  // names it ("step checkout.get: p99 < 100ms failed (observed 412.0ms)"). None: none fails.
  virtual std::optional<std::string> abort_breach(double elapsed_s) const = 0;
  virtual WindowTally tally() const = 0;
};

// Creates the windows of one workflow from the job's workflow file text. An error (the plan does not
// parse, no such workflow) means the workflow gets no live windows: the manager logs and counts it.
using WindowsFactory = std::function<Result<std::unique_ptr<WorkflowWindows>>(std::span<const std::uint8_t> plan,
                                                                              const std::string& workflow)>;

}  // namespace hs::cluster
