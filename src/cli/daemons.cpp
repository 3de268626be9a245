// `hyperscale manager`, `hyperscale worker` and `hyperscale gate`: the cluster daemons
// (docs/daemons.md, docs/gates.md).
//
// A daemon is one NetHost running a cluster::Mux of components, composed as in the simulated
// datacenter (tests/sim/manager/dc.cpp) and gate tier (tests/sim/gate):
//   manager: Swim (kSwim) + manager::Manager (kRole) with its RaftNode (kRaft), one shard;
//   worker:  Swim (kSwim) + worker::Worker (kRole) over a host::LoadExecutor, `worker.cores` shards
//            (the role and the executor's control on shard 0, workflows on any shard);
//   gate:    Swim among the gates (kSwim) + gate::Gate (kRole) with its RaftNode (kRaft), one shard.
//            On SIGTERM a gate hands its jobs to their ring successors, and leadership if it leads,
//            before it stops (GTE-05).
// The node's disk is a WalDisk in node.data_dir; the admin port serves /metrics, /status, /healthz.
// A disk failure stops the node (fail-stop): the daemon logs it and exits 5. SIGINT/SIGTERM stop it
// in order (exit 0).
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cli/cluster_config.hpp"
#include "cli/commands.hpp"
#include "cli/gate_daemon.hpp"
#include "hyperscale/base/log.hpp"
#include "hyperscale/cluster/raft.hpp"
#include "hyperscale/cluster/mux.hpp"
#include "hyperscale/host/daemon.hpp"
#include "hyperscale/host/load_executor.hpp"
#include "hyperscale/host/load_windows.hpp"
#include "hyperscale/manager/manager.hpp"
#include "hyperscale/runtime/shard_set.hpp"
#include "hyperscale/swim/swim.hpp"
#include "hyperscale/worker/worker.hpp"

namespace hs::cli {

host::ConfigEntry config_key(std::string key, host::ValueType t, std::string def, std::string doc) {
  host::ConfigEntry e;
  e.key = std::move(key);
  e.type = t;
  e.default_value = std::move(def);
  e.doc = std::move(doc);
  if (t == host::ValueType::duration_ms) e.min = 1, e.max = 86'400'000;
  return e;
}

host::ConfigSchema cluster_schema() {
  using host::ValueType;
  auto s = host::common_schema();
  auto managers =
      config_key("cluster.managers", ValueType::string_list, "",
                 "every manager of the datacenter as \"ip:port\" (its node.listen), self included (managers "
                 "and workers: required)");
  managers.check = [](const host::ConfigValue& v) -> std::optional<std::string> {
    const auto& l = std::get<std::vector<std::string>>(v);
    auto ids = parse_managers(l);
    if (!ids.ok()) return ids.status().message();
    return std::nullopt;
  };
  s.push_back(std::move(managers));
  s.push_back(config_key("swim.period", ValueType::duration_ms, "1s", "SWIM protocol period"));
  s.push_back(config_key("swim.probe_timeout", ValueType::duration_ms, "500ms",
                         "SWIM direct probe timeout (below 5/9 of swim.period)"));
  s.push_back(config_key("raft.heartbeat", ValueType::duration_ms, "200ms",
                         "Raft leader heartbeat (below raft.election_timeout)"));
  s.push_back(
      config_key("raft.election_timeout", ValueType::duration_ms, "2s",
                 "Raft election timeout, randomised in [t, 2t); a leader that hears no majority for t steps down"));
  s.push_back(
      config_key("manager.tick", ValueType::duration_ms, "100ms", "manager scheduling / timeout check interval"));
  s.push_back(config_key("manager.worker_stale", ValueType::duration_ms, "3s",
                         "a worker without a heartbeat this long gets no new work (at least 2 x worker.heartbeat)"));
  s.push_back(config_key("manager.dispatch_ack_timeout", ValueType::duration_ms, "1s",
                         "an unacknowledged dispatch is re-sent after this"));
  s.push_back(config_key("manager.exec_timeout", ValueType::duration_ms, "12s",
                         "a running workflow whose worker has not heartbeated to the leader this long is re-dispatched "
                         "(longer than worker.orphan_grace)"));
  s.push_back(config_key("manager.retention_ok", ValueType::duration_ms, "300s", "completed jobs are kept this long"));
  s.push_back(config_key("manager.retention_failed", ValueType::duration_ms, "3600s",
                         "failed, cancelled and timed-out jobs are kept this long"));
  auto window = config_key("manager.window", ValueType::duration_ms, "1s",
                           "length of the live windows every part sends the leader (docs/windows.md), 100ms..60s");
  window.min = 100, window.max = 60'000;
  s.push_back(std::move(window));
  auto cores = config_key("worker.cores", ValueType::integer, "0", "cores (shards) offered by a worker; 0 = every CPU");
  cores.min = 0, cores.max = 1024;
  s.push_back(std::move(cores));
  s.push_back(config_key("worker.heartbeat", ValueType::duration_ms, "1s", "worker heartbeat to every manager"));
  s.push_back(config_key("worker.progress", ValueType::duration_ms, "1s", "worker progress report interval"));
  s.push_back(config_key("worker.orphan_grace", ValueType::duration_ms, "8s",
                         "a workflow no leader confirmed for this long is stopped "
                         "(longer than 2 x raft.election_timeout)"));
  s.push_back(config_key("worker.stop_grace", ValueType::duration_ms, "5s",
                         "a stop not honoured by then frees the cores anyway"));
  add_gate_keys(s);
  return s;
}

std::vector<host::ConfigRelation> cluster_relations() {
  // Every relation between keys that SWIM, Raft, the manager and the worker rely on.
  // Relations across roles (worker.* against manager.* / raft.*) are checked by every process
  // on the values it sees: keep these keys the same in every file of a cluster.
  const auto d = [](const host::Config& c, const char* k) { return c.duration(k); };
  std::vector<host::ConfigRelation> r;
  r.push_back({{"swim.probe_timeout", "swim.period"},
               "swim.probe_timeout must be below 5/9 of swim.period",
               "a failed direct probe is followed by indirect probes whose proxies answer a nack after "
               "probe_timeout x 4/5; both waits must fit in one period, or every missed probe lowers the "
               "node's own health",
               [d](const host::Config& c) { return d(c, "swim.probe_timeout") * 9 < d(c, "swim.period") * 5; }});
  r.push_back({{"raft.heartbeat", "raft.election_timeout"},
               "raft.heartbeat must be shorter than raft.election_timeout",
               "followers that do not hear the leader within the timeout start an election",
               [d](const host::Config& c) { return d(c, "raft.heartbeat") < d(c, "raft.election_timeout"); }});
  r.push_back({{"worker.heartbeat", "manager.worker_stale"},
               "manager.worker_stale must be at least 2 x worker.heartbeat",
               "a worker whose heartbeat is late once must not lose its work to staleness",
               [d](const host::Config& c) { return d(c, "worker.heartbeat") * 2 <= d(c, "manager.worker_stale"); }});
  r.push_back({{"worker.orphan_grace", "raft.election_timeout"},
               "worker.orphan_grace must be longer than 2 x raft.election_timeout",
               "after the leader is lost a new one must be elected and confirm the work before the worker gives "
               "it up",
               [d](const host::Config& c) { return d(c, "worker.orphan_grace") > 2 * d(c, "raft.election_timeout"); }});
  r.push_back({{"worker.orphan_grace", "manager.exec_timeout"},
               "manager.exec_timeout must be longer than worker.orphan_grace",
               "a worker the leader cannot hear stops its unconfirmed work before the leader runs it elsewhere",
               [d](const host::Config& c) { return d(c, "worker.orphan_grace") < d(c, "manager.exec_timeout"); }});
  add_gate_relations(r);
  return r;
}

Result<std::vector<node::NodeId>> parse_managers(const std::vector<std::string>& list) {
  std::vector<node::NodeId> out;
  for (const auto& m : list) {
    auto id = host::parse_node_addr(m);
    if (!id.ok()) return id.status().with_context(fmt::format("manager '{}'", m));
    for (auto o : out)
      if (o == *id) return Status(Errc::invalid_argument, fmt::format("manager '{}' listed twice", m));
    out.push_back(*id);
  }
  return out;
}

std::string json_str(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        o += "\\\"";
        break;
      case '\\':
        o += "\\\\";
        break;
      case '\n':
        o += "\\n";
        break;
      case '\r':
        o += "\\r";
        break;
      case '\t':
        o += "\\t";
        break;
      default:
        if (c < 0x20)
          o += fmt::format("\\u{:04x}", c);
        else
          o += static_cast<char>(c);
    }
  }
  return o + "\"";
}

namespace {

using cluster::NodeId;

// The NetHost's node: builds the components at start (the SWIM datagram budget is known only once
// the host has bound its sockets) and forwards every event to the Mux.
struct Root final : node::Node {
  cluster::Mux mux;
  std::function<void()> setup;
  void on_start(node::Context& ctx) override {
    if (setup) setup();
    mux.on_start(ctx);
  }
  void on_message(node::Context& ctx, NodeId from, std::span<const std::uint8_t> msg) override {
    mux.on_message(ctx, from, msg);
  }
  void on_timer(node::Context& ctx, node::TimerId id, std::uint64_t tag) override { mux.on_timer(ctx, id, tag); }
};

swim::SwimConfig swim_config(const host::Config& c, NodeId self, const std::vector<NodeId>& managers,
                             std::size_t budget) {
  swim::SwimConfig s;
  s.period = c.duration("swim.period");
  s.probe_timeout = c.duration("swim.probe_timeout");
  for (NodeId m : managers)
    if (m != self) s.seeds.push_back(m);
  s.datagram_budget = budget > 1 ? budget - 1 : 0;
  s.refute_window = std::max<Duration>(s.refute_window, s.period * 10);
  return s;
}

std::string prom_counter(const char* name, const char* help,
                         const std::vector<std::pair<const char*, std::uint64_t>>& v, const char* label) {
  std::string o = fmt::format("# HELP {} {}\n# TYPE {} counter\n", name, help, name);
  for (auto& [k, n] : v) o += fmt::format("{}{{{}=\"{}\"}} {}\n", name, label, k, n);
  return o;
}

std::string prom_gauges(const char* name, const char* help, const std::map<std::string, std::size_t>& v) {
  std::string o = fmt::format("# HELP {} {}\n# TYPE {} gauge\n", name, help, name);
  for (auto& [k, n] : v) o += fmt::format("{}{{table=\"{}\"}} {}\n", name, k, n);
  return o;
}

// The Mux's traffic per channel (cluster/mux.hpp): messages and bytes (channel byte included, the
// transport's framing not) sent and received by this node's components.
std::string prom_mux(const cluster::Mux& mux) {
  std::string msgs =
      "# HELP hs_mux_messages_total messages sent / received by the node's components, by Mux channel\n"
      "# TYPE hs_mux_messages_total counter\n";
  std::string bytes =
      "# HELP hs_mux_bytes_total bytes (channel byte included, transport framing not) sent / received by the node's "
      "components, by Mux channel\n# TYPE hs_mux_bytes_total counter\n";
  for (cluster::Channel ch : mux.channels()) {
    const auto& t = mux.traffic(ch);
    const std::string c = cluster::channel_name(ch);
    msgs += fmt::format("hs_mux_messages_total{{channel=\"{}\",dir=\"sent\"}} {}\n", c, t.msgs_sent);
    msgs += fmt::format("hs_mux_messages_total{{channel=\"{}\",dir=\"received\"}} {}\n", c, t.msgs_received);
    bytes += fmt::format("hs_mux_bytes_total{{channel=\"{}\",dir=\"sent\"}} {}\n", c, t.bytes_sent);
    bytes += fmt::format("hs_mux_bytes_total{{channel=\"{}\",dir=\"received\"}} {}\n", c, t.bytes_received);
  }
  return msgs + bytes;
}

enum class Role { manager, worker, gate };
const char* role_name(Role r) { return r == Role::manager ? "manager" : r == Role::worker ? "worker" : "gate"; }

// Raft counters and gauges of a manager's or a gate's RaftNode.
std::string raft_metrics(const cluster::RaftNode& rn, bool leading) {
  const auto& e = rn.counters();
  std::string o = prom_counter("hs_raft_events_total", "Raft log counters by event",
                               {{"sent", e.sent},
                                {"received", e.received},
                                {"decode_errors", e.decode_errors},
                                {"unknown_sender", e.unknown_sender},
                                {"cut_batches", e.cut_batches},
                                {"oversize_dropped", e.oversize_dropped},
                                {"held_for_sync", e.held_for_sync},
                                {"held_dropped", e.held_dropped},
                                {"storage_errors", e.storage_errors},
                                {"proposals", e.proposals},
                                {"proposals_refused", e.proposals_refused},
                                {"applied", e.applied},
                                {"snapshots_taken", e.snapshots_taken},
                                {"snapshots_installed", e.snapshots_installed},
                                {"syncs", e.syncs},
                                {"commit_clamped", e.commit_clamped},
                                {"torn_records", e.torn_records},
                                {"fragments_sent", e.fragments_sent},
                                {"fragments_received", e.fragments_received},
                                {"reassembled", e.reassembled},
                                {"reassembly_refused", e.reassembly_refused}},
                               "event");
  o += fmt::format(
      "# HELP hs_raft_is_leader 1 while this node is the ready Raft leader\n"
      "# TYPE hs_raft_is_leader gauge\nhs_raft_is_leader {}\n"
      "# HELP hs_raft_term current Raft term\n# TYPE hs_raft_term gauge\nhs_raft_term {}\n"
      "# HELP hs_raft_commit_index highest committed log index\n# TYPE hs_raft_commit_index gauge\n"
      "hs_raft_commit_index {}\n"
      "# HELP hs_raft_snapshot_threshold entries between snapshots, adapted to the state's size\n"
      "# TYPE hs_raft_snapshot_threshold gauge\nhs_raft_snapshot_threshold {}\n",
      leading ? 1 : 0, rn.term(), rn.commit_index(),
      e.snapshot_threshold != 0 ? e.snapshot_threshold : rn.config().snapshot_threshold);
  return o;
}

struct Daemon {
  Role role = Role::manager;
  bool is_manager = true;
  host::Config cfg;
  host::HostSettings settings;
  std::vector<NodeId> managers;
  std::vector<NodeId> gates;
  std::vector<gate::DatacenterConfig> dcs;
  Root root;
  std::unique_ptr<swim::Swim> swim;
  std::unique_ptr<manager::Manager> mgr;
  std::unique_ptr<gate::Gate> gate;
  std::unique_ptr<host::LoadExecutor> exec;
  std::unique_ptr<worker::Worker> wrk;
  std::unique_ptr<host::WalDisk> disk;
  std::unique_ptr<host::NetHost> host;
  std::unique_ptr<host::AdminServer> admin;
  Status failure;      // fail-stop reason
  Status start_error;  // start failed
  int cores = 1;

  bool alive(NodeId n) const {
    if (n == host->self()) return true;
    auto m = swim->member(n);
    return m && (m->state == swim::State::alive || m->state == swim::State::suspect);
  }

  void build_manager() {
    const NodeId self = host->self();
    swim = std::make_unique<swim::Swim>(swim_config(cfg, self, managers, host->datagram_budget()));
    cluster::RaftConfig rc;
    rc.voters = managers;
    rc.heartbeat = cfg.duration("raft.heartbeat");
    rc.election = cfg.duration("raft.election_timeout");
    // One Raft message per transport frame (wire.max_tcp_frame_bytes), with room for the envelope.
    const std::size_t frame = settings.net.limits.max_tcp_frame;
    rc.max_message_bytes = frame > 64 * 1024 ? frame - 16 * 1024 : frame / 2;
    manager::ManagerConfig mc;
    mc.managers = managers;
    mc.tick = cfg.duration("manager.tick");
    mc.worker_stale = cfg.duration("manager.worker_stale");
    mc.dispatch_ack_timeout = cfg.duration("manager.dispatch_ack_timeout");
    mc.exec_timeout = cfg.duration("manager.exec_timeout");
    mc.retention_ok = cfg.duration("manager.retention_ok");
    mc.retention_failed = cfg.duration("manager.retention_failed");
    mc.window = cfg.duration("manager.window");
    mc.datacenter = cfg.str("cluster.datacenter");
    mc.gates = gates;
    mc.gate_heartbeat = cfg.duration("manager.gate_heartbeat");
    // A window closes 3 windows after it ends (a part sends it within about a second): the live view
    // lags by that much; later windows still count in the totals (as `late`).
    load::WindowMergerConfig wc;
    wc.lateness = 3;
    mc.windows = host::load_windows_factory(wc);
    mgr = std::make_unique<manager::Manager>(mc, rc, [this](NodeId n) { return alive(n); });
    root.mux.add(cluster::kSwim, swim.get());
    root.mux.add(cluster::kRole, mgr.get());
    root.mux.add(cluster::kRaft, &mgr->raft());
    swim->on_dead = [this](NodeId n, std::uint32_t, bool) { mgr->on_member_dead(n); };
  }

  void build_gate() {
    cluster::RaftConfig rc;
    rc.voters = gates;
    rc.heartbeat = cfg.duration("raft.heartbeat");
    rc.election = cfg.duration("raft.election_timeout");
    rc.storage_name = "gate-raft";
    const std::size_t frame = settings.net.limits.max_tcp_frame;
    rc.max_message_bytes = frame > 64 * 1024 ? frame - 16 * 1024 : frame / 2;
    gate = std::make_unique<gate::Gate>(gate_config(cfg, gates, dcs), rc);
    // SWIM among the gates: its view decides which gates own jobs (docs/gates.md "Ownership").
    swim = std::make_unique<swim::Swim>(swim_config(cfg, host->self(), gates, host->datagram_budget()));
    gate->set_member_view([this](NodeId n) {
      auto m = swim->member(n);
      return m && m->state == swim::State::alive && m->confirmed;
    });
    root.mux.add(cluster::kSwim, swim.get());
    root.mux.add(cluster::kRole, gate.get());
    root.mux.add(cluster::kRaft, &gate->raft());
  }

  void build_worker(runtime::Reactor& r) {
    const NodeId self = host->self();
    swim = std::make_unique<swim::Swim>(swim_config(cfg, self, managers, host->datagram_budget()));
    std::vector<int> shards;
    for (int i = 0; i < cores; ++i) shards.push_back(i);
    // The executor's callbacks come from reactor events: deliver them as events of the node (deferred,
    // so a callback made inside Executor::start/cancel never nests inside the role's own event).
    exec = std::make_unique<host::LoadExecutor>(
        r, shards,
        [this, &r](std::uint64_t id, worker::ExecProgress p) {
          (void)r.defer([this, id, p] {
            if (!host || !wrk) return;
            Status st = host->run_in(root.mux, [&] { wrk->on_exec_progress(id, p); });
            if (!st.ok())
              log::debug("worker", "progress_not_delivered", "exec={} error={}", id, log::quoted(st.to_string()));
          });
        },
        [this, &r](std::uint64_t id, worker::ExecResult res) {
          auto shared = std::make_shared<worker::ExecResult>(std::move(res));
          Status d = r.defer([this, id, shared] {
            if (!host || !wrk) return;
            Status st = host->run_in(root.mux, [&] { wrk->on_exec_done(id, std::move(*shared)); });
            if (!st.ok())
              log::warn("worker", "result_not_delivered", "exec={} error={}", id, log::quoted(st.to_string()));
          });
          if (!d.ok()) log::error("worker", "result_lost", "exec={} error={}", id, log::quoted(d.to_string()));
        });
    worker::WorkerConfig wc;
    wc.managers = managers;
    wc.cores = static_cast<std::uint32_t>(cores);
    wc.heartbeat = cfg.duration("worker.heartbeat");
    wc.progress = cfg.duration("worker.progress");
    wc.orphan_grace = cfg.duration("worker.orphan_grace");
    wc.stop_grace = cfg.duration("worker.stop_grace");
    wrk = std::make_unique<worker::Worker>(wc, *exec);
    root.mux.add(cluster::kSwim, swim.get());
    root.mux.add(cluster::kRole, wrk.get());
    swim->on_dead = [this](NodeId n, std::uint32_t, bool) { wrk->on_member_dead(n); };
  }

  std::string status_json() const {
    std::string o = "{";
    o += fmt::format("\"node\":{},\"role\":\"{}\",\"running\":{}", json_str(host::node_addr_string(host->self())),
                     role_name(role), host->running());
    if (gate) o += gate_status_json(*gate);
    if (mgr) {
      auto s = mgr->node_status();
      std::string jobs, workers;
      for (auto& j : s.active_job_ids) jobs += (jobs.empty() ? "" : ",") + json_str(j);
      for (auto& w : s.workers)
        workers += fmt::format(
            "{}{{\"node\":{},\"healthy\":{},\"health\":{},\"total_cores\":{},\"available_cores\":{},\"circuit_open\":{}"
            "}}",
            workers.empty() ? "" : ",", json_str(host::node_addr_string(w.node)), w.healthy, w.health, w.total_cores,
            w.available_cores, w.circuit_open);
      o += fmt::format(
          ",\"is_leader\":{},\"term\":{},\"leader\":{},\"worker_count\":{},\"healthy_worker_count\":{},"
          "\"total_cores\":{},\"available_cores\":{},\"active_job_ids\":[{}],\"active_workflow_count\":{},"
          "\"workers\":[{}]",
          s.is_leader, s.term, s.leader ? json_str(host::node_addr_string(s.leader)) : std::string("null"),
          s.worker_count, s.healthy_worker_count, s.total_cores, s.available_cores, jobs, s.active_workflow_count,
          workers);
    }
    if (wrk) {
      std::string live;
      for (auto& e : wrk->live())
        live += fmt::format(
            "{}{{\"job_id\":{},\"workflow\":{},\"part\":{},\"token\":{},\"cores\":{},\"leader\":{},"
            "\"completed\":{},\"failed\":{}}}",
            live.empty() ? "" : ",", json_str(e.job_id), json_str(e.workflow), e.part, e.token, e.cores,
            json_str(host::node_addr_string(e.leader)), e.completed, e.failed);
      o += fmt::format(",\"cores\":{},\"used\":{},\"live\":[{}]", wrk->total_cores(), wrk->used_cores(), live);
    }
    return o + "}";
  }

  std::string metrics_text(runtime::Reactor& r) const {
    std::string o = r.metrics().render_prometheus();
    o += prom_mux(root.mux);
    if (mgr) {
      const auto& s = mgr->stats();
      o += prom_counter("hs_manager_events_total", "manager role counters by event",
                        {{"submits", s.submits},
                         {"accepted", s.accepted},
                         {"rejected", s.rejected},
                         {"duplicates", s.duplicates},
                         {"conflicts", s.conflicts},
                         {"redirects", s.redirects},
                         {"dispatches", s.dispatches},
                         {"dispatches_withheld", s.dispatches_withheld},
                         {"dispatch_resends", s.dispatch_resends},
                         {"dispatch_refused", s.dispatch_refused},
                         {"capacity_refusals", s.capacity_refusals},
                         {"redispatches", s.redispatches},
                         {"results", s.results},
                         {"stale_results", s.stale_results},
                         {"duplicate_results", s.duplicate_results},
                         {"takeovers", s.takeovers},
                         {"cancels", s.cancels},
                         {"timeouts", s.timeouts},
                         {"stuck", s.stuck},
                         {"cleaned", s.cleaned},
                         {"decode_errors", s.decode_errors},
                         {"unknown_messages", s.unknown_messages},
                         {"fence_rejects", s.fence_rejects},
                         {"budget_exhausted", s.budget_exhausted},
                         {"circuit_opened", s.circuit_opened},
                         {"proposals", s.proposals},
                         {"proposals_failed", s.proposals_failed},
                         {"rejections_evicted", s.rejections_evicted},
                         {"silent_workers", s.silent_workers},
                         {"stops_sent", s.stops_sent},
                         {"stops_unconfirmed", s.stops_unconfirmed},
                         {"checkpoints", s.checkpoints},
                         {"timer_errors", s.timer_errors},
                         {"window_batches", s.window_batches},
                         {"windows", s.windows},
                         {"windows_refused", s.windows_refused},
                         {"windows_unused", s.windows_unused},
                         {"window_mergers_evicted", s.window_mergers_evicted},
                         {"window_mergers_refused", s.window_mergers_refused},
                         {"window_factory_errors", s.window_factory_errors},
                         {"threshold_aborts", s.threshold_aborts},
                         {"watches", s.watches},
                         {"gate_heartbeats", s.gate_heartbeats},
                         {"gate_refusals", s.gate_refusals},
                         {"gate_acks_foreign", s.gate_acks_foreign},
                         {"job_fences", s.job_fences},
                         {"tombstones", s.tombstones}},
                        "event");
      o += prom_gauges("hs_manager_table_size", "entries in each manager table", mgr->table_sizes());
      o += raft_metrics(mgr->raft(), mgr->is_leader());
    }
    if (gate) {
      o += gate_metrics_text(*gate);
      o += raft_metrics(gate->raft(), gate->is_leader());
    }
    if (wrk) {
      const auto& s = wrk->stats();
      o += prom_counter("hs_worker_events_total", "worker role counters by event",
                        {{"dispatches", s.dispatches},
                         {"accepted", s.accepted},
                         {"duplicates", s.duplicates},
                         {"fence_rejects", s.fence_rejects},
                         {"capacity_rejects", s.capacity_rejects},
                         {"started", s.started},
                         {"start_errors", s.start_errors},
                         {"completed", s.completed},
                         {"failed", s.failed},
                         {"cancelled", s.cancelled},
                         {"force_stops", s.force_stops},
                         {"orphaned", s.orphaned},
                         {"deposed_rejects", s.deposed_rejects},
                         {"leader_changes", s.leader_changes},
                         {"ignored_stop_lists", s.ignored_stop_lists},
                         {"sync_failures", s.sync_failures},
                         {"results_sent", s.results_sent},
                         {"results_dropped", s.results_dropped},
                         {"decode_errors", s.decode_errors},
                         {"unknown_messages", s.unknown_messages},
                         {"hw_evicted", s.hw_evicted},
                         {"disk_errors", s.disk_errors},
                         {"windows_queued", s.windows_queued},
                         {"window_batches", s.window_batches},
                         {"windows_acked", s.windows_acked},
                         {"windows_dropped", s.windows_dropped}},
                        "event");
      o += prom_gauges("hs_worker_table_size", "entries in each worker table", wrk->table_sizes());
      o += fmt::format(
          "# HELP hs_worker_cores cores offered / in use\n# TYPE hs_worker_cores gauge\n"
          "hs_worker_cores{{state=\"total\"}} {}\nhs_worker_cores{{state=\"used\"}} {}\n",
          wrk->total_cores(), wrk->used_cores());
    }
    return o;
  }

  // On shard 0: open the disk, start the host (which builds the components) and the admin port.
  Status start(runtime::Reactor& r) {
    HS_ASSIGN_OR_RETURN(disk, host::WalDisk::open(r, settings.disk));
    host = std::make_unique<host::NetHost>(r, root, settings.net, disk.get());
    root.setup = [this, &r] {
      if (role == Role::manager)
        build_manager();
      else if (role == Role::gate)
        build_gate();
      else
        build_worker(r);
    };
    host->set_stop_callback([this, &r](const Status& why) {
      failure = why;
      log::error(role_name(role), "fail_stop", "self={} error={}", host::node_addr_string(host->self()),
                 log::quoted(why.to_string()));
      r.request_node_stop("fail-stop: " + why.to_string());
    });
    // The admin port first: a taken port stops the start before the node joins the cluster.
    if (settings.admin_enabled) {
      admin = std::make_unique<host::AdminServer>(
          r, settings.admin, [this] { return status_json(); },
          [this]() -> Status { return host->running() ? ok_status() : host->stop_reason(); });
      admin->set_metrics_source([this, &r] { return metrics_text(r); });
      if (Status st = admin->start(); !st.ok())
        return st.with_context(fmt::format(
            "admin.listen {} ({}): cannot listen (another daemon on this host may use it); set admin.listen "
            "(env HS_ADMIN_LISTEN) to a free address, \"127.0.0.1:0\" for an ephemeral port, or \"\" to disable it",
            settings.admin.listen.to_string(), cfg.source("admin.listen")));
    }
    HS_TRY(host->start());
    if (admin)
      std::printf("admin: http://%s (GET /status /metrics /healthz)\n", admin->endpoint().to_string().c_str());
    else
      std::printf("admin: off (admin.listen is empty)\n");
    std::fflush(stdout);
    log::info(role_name(role), "started", "self={} admin={} managers={} gates={} cores={}",
              host::node_addr_string(host->self()),
              admin ? fmt::format("{}:{}", admin->endpoint().host, admin->endpoint().port) : std::string("off"),
              managers.size(), gates.size(), role == Role::worker ? cores : 0);
    return ok_status();
  }
};

// A gate hands its jobs to their ring successors and leadership to another gate before it stops
// (GTE-05): at most 3 s, then it stops anyway (its jobs are adopted after gate.member_grace).
void hand_off_gate(runtime::ShardSet& set, Daemon* dp) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (std::chrono::steady_clock::now() < until) {
    bool done = true;
    Status st = set.call(
        0,
        [dp, &done](runtime::Reactor&) {
          if (!dp->host || !dp->gate || !dp->host->running()) return;
          Status in = dp->host->run_in(dp->root.mux, [&] { done = dp->gate->hand_off(); });
          if (!in.ok()) log::warn("gate", "hand_off_failed", "error={}", log::quoted(in.to_string()));
        },
        std::chrono::seconds(1));
    if (!st.ok()) {
      log::warn("gate", "hand_off_failed", "error={}", log::quoted(st.to_string()));
      return;
    }
    if (done) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  log::warn("gate", "hand_off_unfinished", "jobs or leadership not handed off after 3s; stopping anyway");
}

int run_daemon(Role role, const std::string& path, bool print_config) {
  const std::string name = fmt::format("hyperscale {}", role_name(role));
  auto cfg = host::Config::load(cluster_schema(), path);
  if (!cfg.ok()) {
    std::fprintf(stderr, "%s: invalid configuration:\n%s\n", name.c_str(), cfg.status().message().c_str());
    return kExitUsage;
  }
  // Values settled from other keys, then the relations between keys: nothing starts otherwise.
  Status settled = host::resolve_admin_listen(*cfg);
  if (settled.ok()) settled = cfg->check(cluster_relations());
  if (!settled.ok()) {
    std::fprintf(stderr, "%s: invalid configuration:\n%s\n", name.c_str(), settled.message().c_str());
    return kExitUsage;
  }
  if (print_config) {
    std::fputs(cfg->dump().c_str(), stdout);
    return kExitOk;
  }
  auto d = std::make_unique<Daemon>();
  d->role = role;
  d->is_manager = role == Role::manager;
  d->cfg = *cfg;
  const auto wire_role = role == Role::manager ? wire::fb::Role::Manager
                         : role == Role::gate  ? wire::fb::Role::Gate
                                               : wire::fb::Role::Worker;
  auto settings = host::host_settings(*cfg, wire_role);
  if (!settings.ok()) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), settings.status().to_string().c_str());
    return kExitUsage;
  }
  d->settings = std::move(settings).value();
  if (auto w = host::admin_exposure_warning(d->settings))
    std::fprintf(stderr, "%s: warning: %s\n", name.c_str(), w->c_str());
  log::Level lv;
  if (log::parse_level(d->settings.log_level, lv) && cfg->source("log.level") != "default") log::set_level(lv);
  auto managers = parse_managers(cfg->list("cluster.managers"));
  auto gates = parse_managers(cfg->list("cluster.gates"));
  if (!managers.ok() || !gates.ok()) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(),
                 (!managers.ok() ? managers.status() : gates.status()).to_string().c_str());
    return kExitUsage;
  }
  d->managers = *managers;
  d->gates = *gates;
  auto self = host::node_id(d->settings.net.listen);
  auto in = [&](const std::vector<NodeId>& l) { return self.ok() && std::find(l.begin(), l.end(), *self) != l.end(); };
  if (role != Role::gate && d->managers.empty()) {
    std::fprintf(stderr, "%s: cluster.managers is required: every manager of the datacenter as \"ip:port\"\n",
                 name.c_str());
    return kExitUsage;
  }
  if (role == Role::manager && !in(d->managers)) {
    std::fprintf(stderr, "%s: node.listen %s must be one of cluster.managers\n", name.c_str(),
                 cfg->str("node.listen").c_str());
    return kExitUsage;
  }
  if (role == Role::worker && (in(d->managers) || in(d->gates))) {
    std::fprintf(stderr, "%s: node.listen %s is a %s address\n", name.c_str(), cfg->str("node.listen").c_str(),
                 in(d->managers) ? "manager" : "gate");
    return kExitUsage;
  }
  if (role == Role::gate) {
    if (!in(d->gates)) {
      std::fprintf(stderr, "%s: node.listen %s must be one of cluster.gates\n", name.c_str(),
                   cfg->str("node.listen").c_str());
      return kExitUsage;
    }
    auto dcs = parse_datacenters(cfg->list("gate.datacenters"));
    if (!dcs.ok() || dcs->empty()) {
      std::fprintf(stderr, "%s: gate.datacenters: %s\n", name.c_str(),
                   dcs.ok() ? "at least one datacenter is required (\"NAME=HOST:PORT HOST:PORT ...\")"
                            : dcs.status().message().c_str());
      return kExitUsage;
    }
    d->dcs = *dcs;
  }
  const auto cores = cfg->integer("worker.cores");
  d->cores = role != Role::worker ? 1 : (cores > 0 ? static_cast<int>(cores) : runtime::ShardSet::available_cores());

  runtime::ShardSetOptions so;
  so.shards = d->cores;
  so.handle_signals = true;
  so.pin = false;
  runtime::ShardSet set(so);
  Daemon* dp = d.get();
  Status st = set.start([dp](runtime::Reactor& r) {
    if (r.shard_id() != 0) return;
    // Registered first: a start that fails half-way (e.g. the node port taken after the admin port
    // opened) closes what it opened too.
    r.on_shutdown("daemon", [dp](std::function<void()> done) {
      if (dp->admin) dp->admin->close();
      dp->exec.reset();  // cancels live executions (their callbacks are not called)
      if (dp->host)
        dp->host->close(std::move(done));
      else
        done();
    });
    Status s = dp->start(r);
    if (!s.ok()) {
      dp->start_error = s;
      log::error(role_name(dp->role), "start_failed", "error={}", log::quoted(s.to_string()));
      r.request_node_stop("start failed");
    }
  });
  if (!st.ok()) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), st.to_string().c_str());
    return kExitInternal;
  }
  const std::string reason = set.wait_for_stop_request();
  if (role == Role::gate && d->start_error.ok() && d->failure.ok()) hand_off_gate(set, dp);
  set.stop();
  log::info(role_name(role), "stopped", "reason={}", log::quoted(reason));
  const Status failure = d->failure, start_error = d->start_error;
  d.reset();
  if (!start_error.ok()) {
    std::fprintf(stderr, "%s: could not start: %s\n", name.c_str(), start_error.to_string().c_str());
    return kExitInfrastructure;
  }
  if (!failure.ok()) {
    std::fprintf(stderr, "%s: stopped after a failure (fail-stop): %s\n", name.c_str(), failure.to_string().c_str());
    return kExitInfrastructure;
  }
  return kExitOk;
}

}  // namespace

void register_daemons(CLI::App& app, Command& cmd) {
  const std::pair<Role, const char*> roles[] = {
      {Role::manager, "Run a manager daemon (takes jobs, dispatches workflows to workers)"},
      {Role::worker, "Run a worker daemon (runs dispatched workflows on its cores)"},
      {Role::gate, "Run a gate daemon (takes jobs and runs them across datacenters; docs/gates.md)"}};
  for (const auto& [role, help] : roles) {
    auto* sub = app.add_subcommand(role_name(role), help);
    auto path = std::make_shared<std::string>();
    auto print = std::make_shared<bool>(false);
    sub->add_option("--config", *path, "TOML config file (keys: docs/daemons.md; HS_* environment overrides)");
    sub->add_flag("--print-config", *print, "Print every key's effective value and source, then exit");
    sub->callback([&cmd, role = role, path, print]() {
      cmd.run = [role, path, print]() { return run_daemon(role, *path, *print); };
    });
  }
}

}  // namespace hs::cli
