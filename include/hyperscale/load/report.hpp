// Results of a run for people and programs: the exit code, results.json, results.csv, the final
// summary table and the live view lines.
#pragma once

#include <string>

#include "hyperscale/load/engine.hpp"
#include "hyperscale/load/plan.hpp"
#include "hyperscale/load/stats.hpp"

namespace hs::load {

// 0 pass; 3 a threshold failed or a workflow failed/was skipped; 4 aborted; 5 the targets were
// unreachable (every request failed to connect and none succeeded).
int exit_code_for(const RunStats& s);
std::string results_json(const Plan& p, const RunStats& s, int exit_code);
std::string results_csv(const Plan& p, const RunStats& s);
std::string summary_text(const Plan& p, const RunStats& s, int exit_code);
// One line per workflow (plain mode) or a block (tty mode, caller redraws).
std::string live_text(const LiveSnapshot& snap, bool tty);
// Writes results.json / results.csv (per plan formats) into dir (created). Returns the paths written.
Result<std::vector<std::string>> write_results(const Plan& p, const RunStats& s, int exit_code, const std::string& dir);

}  // namespace hs::load
