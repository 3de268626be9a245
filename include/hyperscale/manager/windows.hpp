// The live windows of a job's workflows, as the job's leader manager keeps them (docs/windows.md).
//
// Every part of a workflow sends the leader one window of statistics per window length (the worker
// batches them when the leader is slow). The manager is a role library and cannot link the load
// engine, so it sees windows as bytes and hands them to a WorkflowWindows the host creates for it
// (host::load_windows_factory: load::WindowMerger behind this interface; tests may plug a fake).
// The leader keeps one per (job, workflow) while it leads the job, advances it on its own clock from
// the workflow's window origin, serves the closed windows to `watch` and `results`, judges the
// workflow's abort thresholds on the merged totals, and frees it when the job is forgotten.
// The interface lives in cluster/windows.hpp (the gates merge datacenters' windows with it too).
#pragma once

#include "hyperscale/cluster/windows.hpp"

namespace hs::manager {

using cluster::ClosedWindow;
using cluster::WindowBytes;
using cluster::WindowPartLoad;
using cluster::WindowsFactory;
using cluster::WindowTally;
using cluster::WorkflowWindows;

}  // namespace hs::manager
