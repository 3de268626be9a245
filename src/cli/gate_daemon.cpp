#include "cli/gate_daemon.hpp"

#include <fmt/format.h>

#include <set>
#include <sstream>

#include "cli/cluster_config.hpp"
#include "hyperscale/cluster/intake.hpp"
#include "hyperscale/host/address.hpp"
#include "hyperscale/host/daemon.hpp"
#include "hyperscale/host/load_windows.hpp"

namespace hs::cli {

namespace {

std::string addr(node::NodeId n) { return n ? json_str(host::node_addr_string(n)) : std::string("null"); }

}  // namespace

void add_gate_keys(host::ConfigSchema& s) {
  using host::ValueType;
  auto gates = config_key("cluster.gates", ValueType::string_list, "",
                          "every gate as \"ip:port\" (its node.listen), self included; managers heartbeat to them "
                          "(empty: no gate tier)");
  gates.check = [](const host::ConfigValue& v) -> std::optional<std::string> {
    auto ids = parse_managers(std::get<std::vector<std::string>>(v));
    if (!ids.ok()) return ids.status().message();
    return std::nullopt;
  };
  s.push_back(std::move(gates));
  auto dc = config_key("cluster.datacenter", ValueType::string, "dc-1",
                       "this manager's datacenter, as the gates name it in gate.datacenters");
  dc.check = [](const host::ConfigValue& v) -> std::optional<std::string> {
    if (!cluster::valid_id(std::get<std::string>(v), 64)) return "must be 1-64 characters of [A-Za-z0-9._-]";
    return std::nullopt;
  };
  s.push_back(std::move(dc));
  auto dcs =
      config_key("gate.datacenters", ValueType::string_list, "",
                 "every datacenter as \"NAME=HOST:PORT HOST:PORT ...\" (its managers' node.listen, space separated)");
  dcs.check = [](const host::ConfigValue& v) -> std::optional<std::string> {
    auto got = parse_datacenters(std::get<std::vector<std::string>>(v));
    if (!got.ok()) return got.status().message();
    return std::nullopt;
  };
  s.push_back(std::move(dcs));
  s.push_back(
      config_key("gate.dc_stale", ValueType::duration_ms, "3s",
                 "a manager whose heartbeat is older than this is not heard (its datacenter may become unavailable)"));
  s.push_back(
      config_key("gate.dc_grace", ValueType::duration_ms, "10s",
                 "a running share whose datacenter does not answer this long fails (no cross-datacenter retry)"));
  s.push_back(config_key("gate.member_grace", ValueType::duration_ms, "10s",
                         "a gate suspect or dead (gates' SWIM) this long loses its jobs to the ring's next gate"));
  s.push_back(config_key("gate.poll", ValueType::duration_ms, "500ms", "status query interval of each running share"));
  s.push_back(config_key("gate.cancel_timeout", ValueType::duration_ms, "10s",
                         "a share that does not confirm its stop this long is declared unreachable"));
  s.push_back(
      config_key("gate.retention_ok", ValueType::duration_ms, "300s", "completed gate jobs are kept this long"));
  s.push_back(config_key("gate.retention_failed", ValueType::duration_ms, "3600s",
                         "failed, partial, cancelled and timed-out gate jobs are kept this long"));
  s.push_back(config_key("gate.timeout_slack", ValueType::duration_ms, "2s",
                         "managers get a job's timeout plus this, so the gate decides the timeout first"));
  auto active = config_key("gate.max_active_jobs", ValueType::integer, "1000",
                           "jobs a gate runs at once; more submits are refused as overloaded (retry later)");
  active.min = 1, active.max = 1'000'000;
  s.push_back(std::move(active));
  auto held = config_key("gate.max_jobs", ValueType::integer, "10000",
                         "jobs the gate ledger holds (running and retained); more submits are refused as overloaded");
  held.min = 1, held.max = 1'000'000;
  s.push_back(std::move(held));
  s.push_back(config_key("manager.gate_heartbeat", ValueType::duration_ms, "500ms",
                         "a manager's heartbeat to every gate of cluster.gates"));
}

void add_gate_relations(std::vector<host::ConfigRelation>& r) {
  const auto d = [](const host::Config& c, const char* k) { return c.duration(k); };
  r.push_back({{"manager.gate_heartbeat", "gate.dc_stale"},
               "gate.dc_stale must be at least 2 x manager.gate_heartbeat",
               "a datacenter whose heartbeat is late once must not be taken for unavailable",
               [d](const host::Config& c) { return d(c, "manager.gate_heartbeat") * 2 <= d(c, "gate.dc_stale"); }});
  r.push_back({{"gate.dc_stale", "gate.dc_grace"},
               "gate.dc_grace must be longer than gate.dc_stale",
               "a share fails only after its datacenter has been seen unavailable",
               [d](const host::Config& c) { return d(c, "gate.dc_stale") < d(c, "gate.dc_grace"); }});
}

Result<std::vector<gate::DatacenterConfig>> parse_datacenters(const std::vector<std::string>& list) {
  std::vector<gate::DatacenterConfig> out;
  std::set<std::string> names;
  std::set<node::NodeId> seen;
  for (const auto& entry : list) {
    const auto eq = entry.find('=');
    if (eq == std::string::npos)
      return make_error(
          Errc::invalid_argument,
          fmt::format("'{}': expected NAME=HOST:PORT HOST:PORT ... (a datacenter and its managers)", entry));
    gate::DatacenterConfig dc;
    dc.name = entry.substr(0, eq);
    while (!dc.name.empty() && dc.name.back() == ' ') dc.name.pop_back();
    while (!dc.name.empty() && dc.name.front() == ' ') dc.name.erase(0, 1);
    if (!cluster::valid_id(dc.name, 64))
      return make_error(Errc::invalid_argument,
                        fmt::format("'{}': the datacenter name must be 1-64 characters of [A-Za-z0-9._-]", entry));
    if (!names.insert(dc.name).second)
      return make_error(Errc::invalid_argument, fmt::format("datacenter '{}' is listed twice", dc.name));
    std::istringstream in(entry.substr(eq + 1));
    std::string a;
    while (in >> a) {
      auto id = host::parse_node_addr(a);
      if (!id.ok()) return id.status().with_context(fmt::format("datacenter '{}': manager '{}'", dc.name, a));
      if (!seen.insert(*id).second)
        return make_error(Errc::invalid_argument, fmt::format("manager '{}' is listed twice", a));
      dc.managers.push_back(*id);
    }
    if (dc.managers.empty())
      return make_error(Errc::invalid_argument, fmt::format("datacenter '{}' lists no manager", dc.name));
    out.push_back(std::move(dc));
  }
  return out;
}

gate::GateConfig gate_config(const host::Config& c, std::vector<node::NodeId> gates,
                             std::vector<gate::DatacenterConfig> dcs) {
  gate::GateConfig g;
  g.gates = std::move(gates);
  g.datacenters = std::move(dcs);
  g.dc_stale = c.duration("gate.dc_stale");
  g.dc_grace = c.duration("gate.dc_grace");
  g.member_grace = c.duration("gate.member_grace");
  g.poll = c.duration("gate.poll");
  g.cancel_timeout = c.duration("gate.cancel_timeout");
  g.retention_ok = c.duration("gate.retention_ok");
  g.retention_failed = c.duration("gate.retention_failed");
  g.timeout_slack = c.duration("gate.timeout_slack");
  g.max_active_jobs = static_cast<std::size_t>(c.integer("gate.max_active_jobs"));
  g.max_jobs = static_cast<std::size_t>(c.integer("gate.max_jobs"));
  // Live windows: the managers' merge (host::LoadWindows). A window closes at the gate once every
  // running datacenter closed it (the gate advances to the slowest one), so its lateness is the
  // managers'; a datacenter ahead of the slowest by up to 300 windows is still merged.
  load::WindowMergerConfig wc;
  wc.lateness = 3;
  wc.max_ahead = 300;
  wc.max_windows = 600;
  g.windows = host::load_windows_factory(wc);
  return g;
}

std::string gate_status_json(const gate::Gate& g) {
  const auto s = g.node_status();
  std::string jobs, dcs;
  for (const auto& j : s.active_job_ids) {
    if (!jobs.empty()) jobs += ",";
    jobs += json_str(j);
  }
  for (const auto& d : s.datacenters) {
    if (!dcs.empty()) dcs += ',';
    dcs += fmt::format(
        "{{\"name\":{},\"state\":\"{}\",\"health\":\"{}\",\"leader\":{},\"term\":{},\"managers\":{},"
        "\"managers_heard\":{},\"worker_count\":{},\"healthy_worker_count\":{},\"total_cores\":{},"
        "\"available_cores\":{},\"active_jobs\":{},\"heard_ms_ago\":{}}}",
        json_str(d.name), cluster::name(d.state), cluster::name(d.health), addr(d.leader), d.term, d.managers,
        d.managers_heard, d.worker_count, d.healthy_worker_count, d.total_cores, d.available_cores, d.active_jobs,
        d.heard_ms_ago);
  }
  std::string live;
  for (node::NodeId n : g.live_gates()) live += fmt::format("{}{}", live.empty() ? "" : ",", addr(n));
  std::size_t owned = 0;
  for (const auto& [id, j] : g.ledger().jobs()) owned += j.owner == g.self() ? 1 : 0;
  return fmt::format(
      ",\"is_leader\":{},\"term\":{},\"leader\":{},\"in_quorum\":{},\"live_gates\":[{}],\"owned_jobs\":{},"
      "\"active_job_ids\":[{}],\"datacenters\":[{}]",
      s.is_leader, s.term, addr(s.leader), g.in_quorum(), live, owned, jobs, dcs);
}

std::string gate_metrics_text(const gate::Gate& g) {
  const auto& s = g.stats();
  const std::vector<std::pair<const char*, std::uint64_t>> events{{"submits", s.submits},
                                                                  {"accepted", s.accepted},
                                                                  {"rejected", s.rejected},
                                                                  {"duplicates", s.duplicates},
                                                                  {"conflicts", s.conflicts},
                                                                  {"redirects", s.redirects},
                                                                  {"dc_submits", s.dc_submits},
                                                                  {"dc_accepted", s.dc_accepted},
                                                                  {"dc_refused", s.dc_refused},
                                                                  {"reroutes", s.reroutes},
                                                                  {"polls", s.polls},
                                                                  {"dc_results", s.dc_results},
                                                                  {"late_results", s.late_results},
                                                                  {"dc_unreachable", s.dc_unreachable},
                                                                  {"dc_lost", s.dc_lost},
                                                                  {"cancels", s.cancels},
                                                                  {"cancels_sent", s.cancels_sent},
                                                                  {"timeouts", s.timeouts},
                                                                  {"best_effort_ends", s.best_effort_ends},
                                                                  {"takeovers", s.takeovers},
                                                                  {"fences_sent", s.fences_sent},
                                                                  {"fence_refused", s.fence_refused},
                                                                  {"checkpoints", s.checkpoints},
                                                                  {"cleaned", s.cleaned},
                                                                  {"proposals", s.proposals},
                                                                  {"proposals_failed", s.proposals_failed},
                                                                  {"heartbeats", s.heartbeats},
                                                                  {"heartbeats_refused", s.heartbeats_refused},
                                                                  {"decode_errors", s.decode_errors},
                                                                  {"unknown_messages", s.unknown_messages},
                                                                  {"stale_replies", s.stale_replies},
                                                                  {"dc_backoffs", s.dc_backoffs},
                                                                  {"rejections_evicted", s.rejections_evicted},
                                                                  {"timer_errors", s.timer_errors},
                                                                  {"correlated_failures", s.correlated_failures},
                                                                  {"partitions_healed", s.partitions_healed},
                                                                  {"watches", s.watches},
                                                                  {"watch_redirects", s.watch_redirects},
                                                                  {"watch_polls", s.watch_polls},
                                                                  {"watch_replies", s.watch_replies},
                                                                  {"watch_errors", s.watch_errors},
                                                                  {"windows_merged", s.windows_merged},
                                                                  {"windows_refused", s.windows_refused},
                                                                  {"watches_evicted", s.watches_evicted},
                                                                  {"forwarded", s.forwarded},
                                                                  {"forward_refused", s.forward_refused},
                                                                  {"forward_failed", s.forward_failed},
                                                                  {"proposals_in", s.proposals_in},
                                                                  {"proposals_in_refused", s.proposals_in_refused},
                                                                  {"stale_proposals", s.stale_proposals},
                                                                  {"adoptions", s.adoptions},
                                                                  {"hand_offs", s.hand_offs},
                                                                  {"member_changes", s.member_changes},
                                                                  {"share_slices", s.share_slices}};
  std::string o = "# HELP hs_gate_events_total gate role counters by event\n# TYPE hs_gate_events_total counter\n";
  for (const auto& [k, n] : events) o += fmt::format("hs_gate_events_total{{event=\"{}\"}} {}\n", k, n);
  o += "# HELP hs_gate_table_size entries in each gate table\n# TYPE hs_gate_table_size gauge\n";
  for (const auto& [k, n] : g.table_sizes()) o += fmt::format("hs_gate_table_size{{table=\"{}\"}} {}\n", k, n);
  o += "# HELP hs_gate_datacenter_state 1 for each datacenter's current state and health\n"
       "# TYPE hs_gate_datacenter_state gauge\n";
  for (const auto& d : g.datacenters())
    o += fmt::format("hs_gate_datacenter_state{{dc=\"{}\",state=\"{}\",health=\"{}\"}} 1\n", d.name,
                     cluster::name(d.state), cluster::name(d.health));
  o += fmt::format(
      "# HELP hs_gate_is_leader 1 while this gate is the ready Raft leader (it appends the gate ledger)\n"
      "# TYPE hs_gate_is_leader gauge\nhs_gate_is_leader {}\n",
      g.is_leader() ? 1 : 0);
  return o;
}

}  // namespace hs::cli
