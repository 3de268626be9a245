// `hyperscale demo`: exercises the runtime on every core: shards exchange batched messages in a ring
// for a few seconds while a named background task reports progress; Ctrl-C stops it cleanly.
#include <cstdio>
#include <memory>
#include <vector>

#include "cli/commands.hpp"
#include "hyperscale/base/alloc.hpp"
#include "hyperscale/base/log.hpp"
#include "hyperscale/runtime/shard_set.hpp"

namespace hs::cli {
namespace {

struct DemoShard {
  std::uint64_t received = 0;
  std::uint64_t sent = 0;
  bool blocked = false;
};

int run_demo(int shards, double seconds) {
  runtime::ShardSetOptions opts;
  opts.shards = shards;
  opts.handle_signals = true;
  opts.shutdown_bound = std::chrono::seconds(2);
  runtime::ShardSet set(opts);
  const int n = set.size();
  std::vector<DemoShard> state(static_cast<std::size_t>(n));  // state[i] touched only by shard i

  std::printf("hyperscale demo: %d shard(s), %d core(s) available, allocator %s\n", n,
              runtime::ShardSet::available_cores(), alloc::describe().c_str());
  std::printf("each shard sends batched messages to the next one for %.1f s (Ctrl-C stops early)\n", seconds);
  std::fflush(stdout);

  auto pump = std::make_shared<std::function<void(runtime::Reactor&)>>();
  *pump = [&state, n, pump](runtime::Reactor& r) {
    DemoShard& me = state[static_cast<std::size_t>(r.shard_id())];
    const int to = (r.shard_id() + 1) % n;
    for (int i = 0; i < 4096; ++i) {
      runtime::Message m = [&state](runtime::Reactor& dst) {
        state[static_cast<std::size_t>(dst.shard_id())].received++;
      };
      Status st = r.try_send(to, m);
      if (!st.ok()) {
        // Ring full: wait until the consumer frees space, then continue.
        if (!me.blocked) {
          me.blocked = true;
          Status w = r.on_writable(to, [&r, &me, pump]() {
            me.blocked = false;
            (void)r.defer([&r, pump]() { (*pump)(r); });
          });
          if (!w.ok()) log::warn("demo", "on_writable_failed", "error={}", log::quoted(w.to_string()));
        }
        return;
      }
      me.sent++;
    }
    Status st = r.defer([&r, pump]() { (*pump)(r); });
    if (!st.ok()) log::warn("demo", "defer_failed", "error={}", log::quoted(st.to_string()));
  };

  Status st = set.start([&](runtime::Reactor& r) {
    if (n > 1) (*pump)(r);
    auto t = r.every("demo-report", std::chrono::seconds(1), [&state, &r]() {
      const DemoShard& me = state[static_cast<std::size_t>(r.shard_id())];
      log::info("demo", "progress", "sent={} received={}", me.sent, me.received);
      return ok_status();
    });
    if (!t.ok()) log::error("demo", "task_failed", "error={}", log::quoted(t.status().to_string()));
  });
  if (!st.ok()) {
    std::fprintf(stderr, "hyperscale demo: %s\n", st.to_string().c_str());
    return kExitInternal;
  }
  auto reason = set.wait_for_stop_request(std::chrono::duration_cast<Duration>(std::chrono::duration<double>(seconds)));
  const bool aborted = reason.has_value();
  auto report = set.stop();
  std::uint64_t total = 0;
  for (int i = 0; i < n; ++i) {
    std::printf("shard %d: sent %llu, received %llu\n", i,
                static_cast<unsigned long long>(state[static_cast<std::size_t>(i)].sent),
                static_cast<unsigned long long>(state[static_cast<std::size_t>(i)].received));
    total += state[static_cast<std::size_t>(i)].received;
  }
  std::printf("total %llu messages in %.1f s (%.1f M/s); shutdown %s in %.1f ms\n",
              static_cast<unsigned long long>(total), seconds, static_cast<double>(total) / seconds / 1e6,
              report.clean ? "clean" : "forced", to_millis(report.took));
  if (n == 1) std::printf("(one shard only: no cross-shard messages; use a machine with 2+ cores or --shards 2)\n");
  return aborted ? kExitAborted : kExitOk;
}

}  // namespace

void register_demo(CLI::App& app, Command& cmd) {
  auto* sub = app.add_subcommand("demo", "Run the runtime demo: batched messages between shards on every core");
  auto shards = std::make_shared<int>(0);
  auto seconds = std::make_shared<double>(3.0);
  sub->add_option("--shards", *shards, "Number of shards (0: one per core)")->check(CLI::Range(0, 1024));
  sub->add_option("--duration", *seconds, "Seconds to run")->check(CLI::Range(0.1, 3600.0))->capture_default_str();
  sub->callback([&cmd, shards, seconds]() { cmd.run = [shards, seconds]() { return run_demo(*shards, *seconds); }; });
}

}  // namespace hs::cli
