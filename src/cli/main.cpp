#include <cstdio>
#include <string>

#include "cli/commands.hpp"
#include "hyperscale/base/alloc.hpp"
#include "hyperscale/base/log.hpp"

int main(int argc, char** argv) {
  CLI::App app{"hyperscale: a distributed load-testing engine (shard-per-core, io_uring, SWIM)"};
  app.set_version_flag("--version", std::string("hyperscale ") + HS_VERSION);
  std::string level = "info";
  app.add_option("--log-level", level, "trace|debug|info|warn|error|off")->capture_default_str();
  app.require_subcommand(0, 1);

  hs::cli::Command cmd;
  hs::cli::register_demo(app, cmd);
  hs::cli::register_wal(app, cmd);
  hs::cli::register_load(app, cmd);
  hs::cli::register_swim_agent(app, cmd);
  hs::cli::register_daemons(app, cmd);
  hs::cli::register_client(app, cmd);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : hs::cli::kExitUsage;
  }
  hs::log::Level lv = cmd.default_log_level;
  if (app.get_option("--log-level")->count() > 0 && !hs::log::parse_level(level, lv)) {
    std::fprintf(stderr, "hyperscale: --log-level: unknown level '%s' (trace|debug|info|warn|error|off)\n",
                 level.c_str());
    return hs::cli::kExitUsage;
  }
  hs::log::set_level(lv);
  if (!cmd.run) {
    std::fputs(app.help().c_str(), stdout);
    return hs::cli::kExitOk;
  }
  try {
    return cmd.run();
  } catch (const std::exception& e) {
    hs::log::error("cli", "internal_error", "error={}", hs::log::quoted(e.what()));
    std::fprintf(stderr, "hyperscale: internal error: %s\n", e.what());
    return hs::cli::kExitInternal;
  }
}
