// Subcommand registration for the `hyperscale` binary. Each subcommand lives in its own file and
// registers itself here; the chosen subcommand stores its action, which main() runs after parsing.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

#include "hyperscale/base/log.hpp"

namespace hs::cli {

// Exit codes shared by every subcommand (see docs/cli.md).
enum ExitCode : int {
  kExitOk = 0,
  kExitInternal = 1,
  kExitUsage = 2,
  kExitThresholds = 3,
  kExitAborted = 4,
  kExitInfrastructure = 5,
  kExitNotFinished = 6,  // `hyperscale results`: the job has not ended yet (nothing written)
};

struct Command {
  std::function<int()> run;
  // The log level when --log-level is not given (client commands: warn, so a run prints only what
  // needs attention and its own summary).
  log::Level default_log_level = log::Level::info;
};

void register_demo(CLI::App& app, Command& cmd);
void register_wal(CLI::App& app, Command& cmd);
// run, validate, new, ping, target (src/cli/load.cpp)
void register_load(CLI::App& app, Command& cmd);
void register_swim_agent(CLI::App& app, Command& cmd);
// manager, worker (src/cli/daemons.cpp); submit, status, results, cancel (src/cli/client.cpp)
void register_daemons(CLI::App& app, Command& cmd);
void register_client(CLI::App& app, Command& cmd);

}  // namespace hs::cli
