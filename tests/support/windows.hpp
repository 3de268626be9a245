// Live windows over a synthetic workflow, for tests (header only: its users link the host library).
// The sim executors and the window tests report every request under one step, so a one-step plan
// is all a window merger needs to check them.
#pragma once

#include <memory>
#include <span>
#include <string>

#include "hyperscale/cluster/windows.hpp"
#include "hyperscale/host/load_windows.hpp"
#include "hyperscale/load/plan.hpp"

namespace hs::test {

// A plan of one workflow `workflow` with one step `step`.
inline load::Plan one_step_plan(const std::string& workflow, const std::string& step) {
  load::Plan p;
  load::Workflow w;
  w.name = workflow;
  load::Step s;
  s.name = step;
  w.steps.push_back(s);
  p.workflows.push_back(std::move(w));
  return p;
}

// A window factory that merges each workflow as one_step_plan(workflow, step) with `cfg`.
inline cluster::WindowsFactory one_step_windows(std::string step, load::WindowMergerConfig cfg = {}) {
  return
      [step = std::move(step), cfg](std::span<const std::uint8_t>,
                                    const std::string& workflow) -> Result<std::unique_ptr<cluster::WorkflowWindows>> {
        auto lw = host::LoadWindows::create(one_step_plan(workflow, step), workflow, cfg);
        if (!lw.ok()) return lw.status();
        return std::unique_ptr<cluster::WorkflowWindows>(std::move(*lw));
      };
}

}  // namespace hs::test
