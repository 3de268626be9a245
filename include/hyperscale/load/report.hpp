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
// The formatters of the summary and the live view (also the cluster's live view, src/cli/live_view.cpp):
// a latency in nanoseconds as "0.85ms", "412.0ms", "1.23s"; an observed value of a threshold's metric in
// its unit (latency as fmt_ms, rates in percent, rps, counts); " (reason)" naming the most frequent
// failure reason of `c`, "" when nothing failed.
std::string fmt_ms(std::uint64_t ns);
std::string cond_value(const Threshold& t, double observed);
std::string top_reason(const Counts& c);
// Writes results.json / results.csv (per plan formats) into dir (created). Returns the paths written.
Result<std::vector<std::string>> write_results(const Plan& p, const RunStats& s, int exit_code, const std::string& dir);

}  // namespace hs::load
