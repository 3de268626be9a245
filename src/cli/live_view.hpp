// The live view of a cluster job (`hyperscale watch`, `submit --wait`): pure functions from the windows
// the job's leader serves (docs/windows.md) to text lines, in the style of `hyperscale run`'s live view
// (load::live_text: the same formatters). No sockets, no terminal control: the caller prints the lines
// (and redraws them on a terminal).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "hyperscale/load/stats.hpp"
#include "hyperscale/load/window.hpp"

namespace hs::cli {

// One part's load generator during the last closed window: its index, the worker running it, the cores
// it runs on, CPU in percent of one core (0..100 x cores) and resident memory.
struct PartLoadView {
  std::uint32_t part = 0;
  std::uint64_t worker = 0;
  std::uint32_t cores = 0;  // 0: unknown, taken as 1
  std::uint64_t cpu_percent = 0;
  std::uint64_t rss_bytes = 0;
  std::string worker_name;  // how to name the worker (its address); empty: "w" and its id
};

// A saturated load generator measures itself more than the target: cpu_percent >= 90 x cores.
inline constexpr std::uint64_t kSaturatedPercentPerCore = 90;
bool saturated(const PartLoadView& p);

// The lines of one workflow:
//   WORKFLOW  window N  T.Ts  iters C failed F dropped D
//     STEP  total R err E X.XX%[ (top reason)] rps Q p50 A p95 B p99 C     (one per step of `totals`)
//     parts: 0 w2 83% · 1 w3 97% SATURATED                                 (when `parts` is not empty)
//     ✓ SCOPE KEY CONDITION (observed V)                                   (one per mark)
// Window N is totals.index (the leader's current window), T = N x window_seconds. Per step, the
// requests R, errors E and error rate are cumulative (totals, warmup included); rps (requests over
// window_seconds) and p50/p95/p99 are the last closed window's ("-" when it has no latency sample).
// Marks: ✓ passed, ✗ failed, · no data.
std::vector<std::string> live_lines(const std::string& workflow, const load::Window& last_closed,
                                    const load::Window& totals, std::span<const PartLoadView> parts,
                                    double window_seconds, std::span<const load::ThresholdResult> marks);

}  // namespace hs::cli
