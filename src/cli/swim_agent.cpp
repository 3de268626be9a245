// `hyperscale swim-agent`: one SWIM member over plain UDP on loopback. Logs every membership change
// as a structured line (comp=swim event=member_change / member_dead), for operators and the e2e test.
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "hyperscale/base/log.hpp"
#include "hyperscale/runtime/shard_set.hpp"
#include "hyperscale/host/udp_host.hpp"

namespace hs::cli {
namespace {

struct AgentArgs {
  std::string bind;
  std::string seeds;
  int period_ms = 1000;
  int probe_timeout_ms = 0;  // 0: half the period
  double suspicion_alpha = 4.0;
  double suspicion_beta = 3.0;
  double duration_s = 0;  // 0: until SIGINT/SIGTERM
  std::string state;
};

int run_agent(const AgentArgs& a) {
  auto self = host::parse_node_addr(a.bind);
  if (!self.ok()) {
    std::fprintf(stderr, "hyperscale swim-agent: --bind: %s\n", self.status().message().c_str());
    return kExitUsage;
  }
  const std::uint32_t ip = static_cast<std::uint32_t>(*self >> 16);
  if ((ip >> 24) != 127) {
    std::fprintf(stderr, "hyperscale swim-agent: --bind: only 127.0.0.0/8 is allowed (got %s)\n", a.bind.c_str());
    return kExitUsage;
  }
  swim::SwimConfig cfg;
  cfg.period = std::chrono::milliseconds(a.period_ms);
  cfg.probe_timeout = std::chrono::milliseconds(a.probe_timeout_ms > 0 ? a.probe_timeout_ms : a.period_ms / 2);
  if (cfg.probe_timeout >= cfg.period) {
    std::fprintf(stderr, "hyperscale swim-agent: --probe-timeout-ms must be below --period-ms\n");
    return kExitUsage;
  }
  cfg.suspicion_alpha = a.suspicion_alpha;
  cfg.suspicion_beta = a.suspicion_beta;
  cfg.refute_window = cfg.period * 10;
  cfg.dead_retention = cfg.period * 60;
  cfg.unconfirmed_timeout = cfg.period * 60;
  std::stringstream ss(a.seeds);
  for (std::string item; std::getline(ss, item, ',');) {
    if (item.empty()) continue;
    auto id = host::parse_node_addr(item);
    if (!id.ok()) {
      std::fprintf(stderr, "hyperscale swim-agent: --seeds: %s\n", id.status().message().c_str());
      return kExitUsage;
    }
    if (*id != *self) cfg.seeds.push_back(*id);
  }
  if (a.state.size() > swim::kMaxStateBytes) {
    std::fprintf(stderr, "hyperscale swim-agent: --state: %zu bytes exceeds %zu\n", a.state.size(),
                 swim::kMaxStateBytes);
    return kExitUsage;
  }

  runtime::ShardSetOptions opts;
  opts.shards = 1;
  opts.handle_signals = true;
  opts.shutdown_bound = std::chrono::seconds(2);
  runtime::ShardSet set(opts);
  std::unique_ptr<host::UdpHost> host;
  Status start_error;
  const std::string me = host::node_addr_string(*self);
  Status st = set.start([&](runtime::Reactor& r) {
    host = std::make_unique<host::UdpHost>(r, *self, cfg, static_cast<std::uint64_t>(wall_time_us()) ^ *self);
    swim::Swim& sw = host->swim();
    if (Status ss = sw.set_local_state(swim::Bytes(a.state.begin(), a.state.end())); !ss.ok())
      log::warn("swim", "state_refused", "self={} error={}", me, log::quoted(ss.to_string()));
    sw.on_change = [me](const swim::MemberEvent& e) {
      log::info("swim", "member_change", "self={} node={} from={} to={} inc={} joined={}", me,
                host::node_addr_string(e.node), swim::state_name(e.from), swim::state_name(e.to), e.incarnation,
                e.joined);
    };
    sw.on_dead = [me](node::NodeId node, std::uint32_t inc, bool left) {
      log::info("swim", "member_dead", "self={} node={} inc={} left={}", me, host::node_addr_string(node), inc, left);
    };
    Status s = host->start();
    if (!s.ok()) {
      start_error = s;
      log::error("swim", "agent_start_failed", "self={} error={}", me, log::quoted(s.to_string()));
      r.request_node_stop("swim agent start failed");
      return;
    }
    r.on_shutdown("swim-udp", [&host](std::function<void()> done) { host->close(std::move(done)); });
    log::info("swim", "agent_started", "self={} seeds={} period_ms={} probe_timeout_ms={} suspicion_min_ms={:.0f}", me,
              cfg.seeds.size(), a.period_ms, to_millis(cfg.probe_timeout), to_millis(sw.suspicion_min()));
  });
  if (!st.ok()) {
    std::fprintf(stderr, "hyperscale swim-agent: %s\n", st.to_string().c_str());
    return kExitInternal;
  }
  std::optional<std::string> reason;
  if (a.duration_s > 0)
    reason =
        set.wait_for_stop_request(std::chrono::duration_cast<Duration>(std::chrono::duration<double>(a.duration_s)));
  else
    reason = set.wait_for_stop_request();
  set.stop();
  host.reset();
  if (!start_error.ok()) {
    std::fprintf(stderr, "hyperscale swim-agent: %s\n", start_error.to_string().c_str());
    return kExitInfrastructure;
  }
  log::info("swim", "agent_stopped", "self={} reason={}", me, log::quoted(reason.value_or("duration")));
  return kExitOk;
}

}  // namespace

void register_swim_agent(CLI::App& app, Command& cmd) {
  auto* sub =
      app.add_subcommand("swim-agent", "Run one SWIM membership agent over UDP (loopback) and log membership changes");
  auto a = std::make_shared<AgentArgs>();
  sub->add_option("--bind", a->bind, "IPv4:port to bind (127.0.0.0/8)")->required();
  sub->add_option("--seeds", a->seeds, "Comma-separated IPv4:port of members to join through");
  sub->add_option("--period-ms", a->period_ms, "Protocol period")->check(CLI::Range(10, 600000))->capture_default_str();
  sub->add_option("--probe-timeout-ms", a->probe_timeout_ms, "Direct probe timeout (default: half the period)")
      ->check(CLI::Range(0, 600000));
  sub->add_option("--suspicion-alpha", a->suspicion_alpha, "Tmin = alpha * max(1, log10 n) periods")
      ->check(CLI::Range(0.5, 100.0))
      ->capture_default_str();
  sub->add_option("--suspicion-beta", a->suspicion_beta, "Tmax = beta * Tmin")
      ->check(CLI::Range(1.0, 100.0))
      ->capture_default_str();
  sub->add_option("--duration", a->duration_s, "Seconds to run (0: until SIGINT/SIGTERM)")->check(CLI::Range(0.0, 1e7));
  sub->add_option("--state", a->state, "Role state bytes embedded in every probe");
  sub->callback([&cmd, a]() { cmd.run = [a]() { return run_agent(*a); }; });
}

}  // namespace hs::cli
