// `hyperscale wal check DIR` and `hyperscale wal repair DIR [--dry-run]`: inspect and repair a WAL
// directory offline (the owning node must not be running). See docs/wal.md.
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.hpp"
#include "hyperscale/wal/recovery.hpp"

namespace hs::cli {
namespace {

int run_check(const std::string& dir) {
  auto rep = wal::recover_dir(dir, wal::RecoverMode::read_only);
  if (!rep.ok()) {
    std::fprintf(stderr, "hyperscale wal check: %s\n", rep.status().to_string().c_str());
    return kExitInfrastructure;
  }
  std::printf("%s: %zu segment(s), %llu record(s), next lsn %llu\n", dir.c_str(), rep->segments.size(),
              static_cast<unsigned long long>(rep->records), static_cast<unsigned long long>(rep->next_lsn));
  if (rep->torn_tail) {
    std::printf("torn tail: %s offset %llu (%llu bytes, %s); it is truncated at the next open\n",
                rep->torn_file.c_str(), static_cast<unsigned long long>(rep->torn_offset),
                static_cast<unsigned long long>(rep->torn_bytes), rep->torn_reason.c_str());
  }
  return kExitOk;
}

int run_repair(const std::string& dir, bool dry_run) {
  auto lock = wal::lock_dir(dir);
  if (!lock.ok()) {
    std::fprintf(stderr, "hyperscale wal repair: %s\n", lock.status().to_string().c_str());
    return kExitInfrastructure;
  }
  struct Unlock {
    int fd;
    ~Unlock() { ::close(fd); }
  } unlock{lock.value()};
  auto plan = wal::recover_dir(dir, wal::RecoverMode::repair_dry_run);
  if (!plan.ok()) {
    std::fprintf(stderr, "hyperscale wal repair: %s\n", plan.status().to_string().c_str());
    return kExitInfrastructure;
  }
  const auto& p = plan.value();
  if (p.corruption.empty()) {
    std::printf("%s: no corruption found (%zu segment(s), %llu record(s), next lsn %llu)%s\n", dir.c_str(),
                p.segments.size(), static_cast<unsigned long long>(p.records),
                static_cast<unsigned long long>(p.next_lsn),
                p.torn_tail ? "; a torn tail will be truncated at the next open" : "");
    return kExitOk;
  }
  std::printf("corruption: %s\n", p.corruption.c_str());
  std::printf("repair %s: keep %llu record(s) (lsn < %llu); lose at least %llu record(s) and %llu byte(s)",
              dry_run ? "would" : "will", static_cast<unsigned long long>(p.records),
              static_cast<unsigned long long>(p.next_lsn), static_cast<unsigned long long>(p.lost_records_at_least),
              static_cast<unsigned long long>(p.lost_bytes));
  if (!p.dropped_segments.empty()) std::printf(", deleting %zu later segment file(s):", p.dropped_segments.size());
  std::printf("\n");
  for (const auto& s : p.dropped_segments) std::printf("  %s\n", s.c_str());
  std::fflush(stdout);
  if (dry_run) return kExitOk;
  auto done = wal::recover_dir(dir, wal::RecoverMode::repair);
  if (!done.ok()) {
    std::fprintf(stderr, "hyperscale wal repair: %s\n", done.status().to_string().c_str());
    return kExitInfrastructure;
  }
  std::printf("repaired: %s now ends before lsn %llu\n", dir.c_str(), static_cast<unsigned long long>(done->next_lsn));
  return kExitOk;
}

}  // namespace

void register_wal(CLI::App& app, Command& cmd) {
  auto* sub = app.add_subcommand("wal", "Inspect or repair a write-ahead log directory (offline)");
  sub->require_subcommand(1);
  auto dir = std::make_shared<std::string>();
  auto dry = std::make_shared<bool>(false);
  auto* check = sub->add_subcommand("check", "Verify every segment; report records, torn tail or corruption");
  check->add_option("DIR", *dir, "WAL directory")->required();
  check->callback([&cmd, dir]() { cmd.run = [dir]() { return run_check(*dir); }; });
  auto* repair = sub->add_subcommand("repair", "Truncate the log at a corruption (prints what will be lost first)");
  repair->add_option("DIR", *dir, "WAL directory")->required();
  repair->add_flag("--dry-run", *dry, "Only print what would be lost");
  repair->callback([&cmd, dir, dry]() { cmd.run = [dir, dry]() { return run_repair(*dir, *dry); }; });
}

}  // namespace hs::cli
