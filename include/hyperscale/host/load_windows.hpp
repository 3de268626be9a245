// The live windows of one workflow on the job's leader manager, on the load engine (docs/windows.md):
// manager::WorkflowWindows over a load::WindowMerger. The manager is a role library and cannot link
// the load engine; the host hands it load_windows_factory() and the manager sees windows as bytes.
//
// LoadWindows decodes each part's window (load::decode_window) and merges it; it serves the closed
// windows and the totals as encoded windows of part 0, token 0, and judges the workflow's abort
// thresholds (load::Threshold::abort) on the merged totals. Sans-IO like the merger: no clock, no
// logging (the manager logs and counts the errors it gets back).
//
// Thresholds a workflow's windows judge: its own ("workflow W"), its steps' ("step W.S"), and the plan's
// "run" thresholds only when the plan has exactly one test workflow and this is it (the run's totals are
// then this workflow's); with several test workflows a run threshold spans mergers that do not see
// each other, so no single workflow's windows judge it (it is judged at the end, on the results).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "hyperscale/base/status.hpp"
#include "hyperscale/load/plan.hpp"
#include "hyperscale/load/window.hpp"
#include "hyperscale/manager/windows.hpp"

namespace hs::host {

// The text of a workflow file as a job carries it (ExecSpec.plan), parsed as LoadExecutor::start
// parses it: JSON when the first non-blank character is '{', TOML otherwise, named STEM.json or
// STEM.toml in error messages (the parser's FILE:LINE:COL lines). Hosts are not resolved. Text longer
// than `max_bytes` is refused.
Result<load::Plan> parse_plan_bytes(std::span<const std::uint8_t> plan, const std::string& stem,
                                    const load::EnvLookup& env, std::size_t max_bytes);

class LoadWindows final : public manager::WorkflowWindows {
 public:
  // The windows of `workflow` of `plan`. Errors: no such workflow (not_found), more steps than a
  // window may carry (invalid_argument). `cfg` must satisfy WindowMerger's rules (asserted).
  static Result<std::unique_ptr<LoadWindows>> create(const load::Plan& plan, const std::string& workflow,
                                                     load::WindowMergerConfig cfg = {});

  // decode_window, then WindowMerger::add. An error (garbage bytes, a window the merger refuses)
  // changes nothing but the refused tally.
  Status add(std::span<const std::uint8_t> window) override;
  // decode_window, the part, token and index replaced, then WindowMerger::add (a gate merging a
  // datacenter's merged window as its share).
  Status add_as(std::span<const std::uint8_t> window, std::uint32_t part, std::uint64_t token,
                std::uint64_t index) override;
  void advance(std::uint64_t now_index) override;
  std::uint64_t now() const override { return merger_.now(); }
  // Advances the merger past the newest window it took by its lateness.
  void seal() override;
  // Retained windows with from <= index <= closed_through(), oldest first, at most `max`. `merged`
  // carries the workflow's name, part 0, token 0, the window's index, its steps (a step with nothing in
  // the window is left out), its merged iterations and as saturation the sums of its non-late parts'
  // cpu_percent (clamped to kMaxWindowCpuPercent) and rss_bytes; `parts` lists every part sample.
  std::vector<manager::ClosedWindow> closed_since(std::uint64_t from, std::size_t max) const override;
  // The merger's totals as one window of index now(), every step in the workflow's order, saturation 0.
  manager::WindowBytes totals() const override;
  // In file order (step thresholds, then the workflow's, then run), the first threshold with
  // abort = true, elapsed_s >= after, that fails with data on the totals: "SCOPE: KEY CONDITION failed
  // (observed VALUE)", the value in the threshold's unit as the summary prints it. Rates are over the
  // measured time, elapsed_s minus the workflow's warmup (as in the final results).
  std::optional<std::string> abort_breach(double elapsed_s) const override;
  manager::WindowTally tally() const override;

  const load::WindowMerger& merger() const { return merger_; }
  // Every threshold these windows judge (abort or not), in file order.
  const std::vector<load::Threshold>& thresholds() const { return thresholds_; }

 private:
  LoadWindows(const load::Workflow& wf, std::vector<load::Threshold> thresholds, load::WindowMergerConfig cfg);
  struct Retag {
    std::uint32_t part = 0;
    std::uint64_t token = 0;
    std::uint64_t index = 0;
  };
  Status add_decoded(std::span<const std::uint8_t> window, const Retag* tag);

  load::WindowMerger merger_;
  std::vector<load::Threshold> thresholds_;
  double warmup_s_ = 0;
  std::uint64_t undecoded_ = 0;
  std::uint64_t newest_ = 0;  // the highest index of a window the merger took  // windows refused before the merger saw
                              // them (they did not decode)
};

// The factory the manager gets: parses the plan bytes (parse_plan_bytes, stem "workflow", the bound of
// LoadExecutorOptions::max_plan_bytes) and creates the workflow's LoadWindows. Errors: the plan does
// not parse (its FILE:LINE:COL messages), no such workflow. `env` resolves ${env.NAME} in the text as a
// worker does (a name unset here and without a fallback fails the parse: that workflow gets no live
// windows, the manager logs why).
manager::WindowsFactory load_windows_factory(load::WindowMergerConfig cfg = {},
                                             load::EnvLookup env = load::process_env());

}  // namespace hs::host
