// The gate role: the datacenter registry every gate keeps from the managers' heartbeats (state,
// health, leader; docs/gates.md) and the views a gate answers with (a job across its datacenter
// shares, the node's status, its table sizes). See gate.hpp.
#include <fmt/format.h>

#include <algorithm>

#include "hyperscale/base/log.hpp"
#include "hyperscale/gate/gate.hpp"

namespace hs::gate {

using namespace cluster;

// ---------------------------------------------------------------- the datacenter registry

const Gate::Dc* Gate::dc(const std::string& n) const {
  for (const auto& d : dcs_)
    if (d.cfg.name == n) return &d;
  return nullptr;
}

void Gate::handle_dc_heartbeat(NodeId from, const DcHeartbeat& m) {
  stats_.heartbeats++;
  DcHeartbeatAck ack;
  ack.gate_leader = raft_->leader_id();
  ack.term = raft_->term();
  auto it = manager_dc_.find(from);
  if (it == manager_dc_.end()) {
    stats_.heartbeats_refused++;
    ack.error = fmt::format("manager {} is not configured in any datacenter of gate {}", from, self_);
  } else if (dcs_[it->second].cfg.name != m.datacenter) {
    stats_.heartbeats_refused++;
    ack.error = fmt::format("manager {} is configured in datacenter '{}' at gate {} but says '{}'", from,
                            dcs_[it->second].cfg.name, self_, m.datacenter);
  } else {
    Dc& d = dcs_[it->second];
    auto& seen = d.managers[from];
    seen.heard = ctx_->now();
    seen.hb = m;
    seen.hb.jobs.clear();  // only the counts are kept
    d.ever_heard = true;
    ack.registered = true;
  }
  if (!ack.registered) log::debug("gate", "heartbeat_refused", "from={} error={}", from, log::quoted(ack.error));
  send(from, MsgType::dc_heartbeat_ack, ack);
}

DcStatus Gate::dc_status(const Dc& d) const {
  DcStatus st;
  st.name = d.cfg.name;
  st.managers = static_cast<std::uint32_t>(d.cfg.managers.size());
  const Instant now = seen_now_;
  const ManagerSeen* lead = nullptr;
  Instant last{-1};
  for (const auto& [id, m] : d.managers) {
    if (m.heard.count() < 0 || now - m.heard > cfg_.dc_stale) continue;
    st.managers_heard++;
    if (m.hb.is_leader && (lead == nullptr || m.hb.term > lead->hb.term)) lead = &m, st.leader = id;
    last = std::max(last, m.heard);
  }
  if (!d.ever_heard) {
    st.state = DcState::awaiting;
  } else if (lead == nullptr) {
    st.state = d.was_ready ? DcState::unavailable : DcState::initializing;
    if (st.managers_heard == 0) st.state = DcState::unavailable;
  } else {
    st.state = st.managers_heard == st.managers ? DcState::ready : DcState::partial;
    st.term = lead->hb.term;
    st.worker_count = lead->hb.worker_count;
    st.healthy_worker_count = lead->hb.healthy_worker_count;
    st.total_cores = lead->hb.total_cores;
    st.available_cores = lead->hb.available_cores;
    st.active_jobs = lead->hb.active_jobs;
    st.heard_ms_ago =
        static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(now - lead->heard).count());
  }
  if (st.state != DcState::ready && st.state != DcState::partial)
    st.health = DcHealth::unhealthy;
  else if (st.healthy_worker_count == 0)
    st.health = DcHealth::unhealthy;
  else if (st.healthy_worker_count * 2 < st.worker_count)
    st.health = DcHealth::degraded;
  else if (st.available_cores == 0)
    st.health = DcHealth::busy;
  else
    st.health = DcHealth::healthy;
  return st;
}

std::vector<DcStatus> Gate::datacenters() const {
  std::vector<DcStatus> out;
  for (const auto& d : dcs_) out.push_back(dc_status(d));
  return out;
}

bool Gate::dc_usable(const std::string& n) const {
  const Dc* d = dc(n);
  return d != nullptr && dc_status(*d).health != DcHealth::unhealthy;
}

NodeId Gate::dc_target(const std::string& n, NodeId hint) const {
  const Dc* d = dc(n);
  if (d == nullptr) return 0;
  const DcStatus st = dc_status(*d);
  if (st.leader != 0) return st.leader;
  if (hint != 0 && manager_dc_.count(hint) != 0) return hint;
  // No leader known: any configured manager (it redirects); rotate so a dead one is not asked forever.
  const auto& ms = d->cfg.managers;
  const auto slot =
      static_cast<std::size_t>(seen_now_.count() / std::max<std::int64_t>(1, cfg_.request_timeout.count()));
  return ms[slot % ms.size()];
}

// Every gate: datacenter state transitions are logged. Several datacenters lost within dc_stale of
// each other are flagged once as a suspected network partition (MEM-06: `network_issue_suspected`,
// counted) rather than reported one by one; the episode ends (`partition_healed`, counted) when all
// of them are usable again.
void Gate::registry_pass() {
  const Instant now = ctx_->now();
  for (auto& d : dcs_) {
    const DcStatus st = dc_status(d);
    if (st.state == DcState::ready || st.state == DcState::partial) d.was_ready = true;
    const bool down = d.was_ready && st.health == DcHealth::unhealthy;  // not while it starts
    if (down && d.unavailable_since.count() < 0) {
      d.unavailable_since = now;
      log::warn("gate", "datacenter_unusable", "dc={} state={} health={}", d.cfg.name, name(st.state), name(st.health));
    } else if (!down && d.unavailable_since.count() >= 0) {
      d.unavailable_since = Instant{-1};
      log::info("gate", "datacenter_usable", "dc={} state={} health={}", d.cfg.name, name(st.state), name(st.health));
    }
    if (st.state != d.last_state || st.health != d.last_health) {
      log::info("gate", "datacenter_state", "dc={} state={} health={} leader={} workers={}/{} cores={}/{}", d.cfg.name,
                name(st.state), name(st.health), st.leader, st.healthy_worker_count, st.worker_count,
                st.available_cores, st.total_cores);
      d.last_state = st.state;
      d.last_health = st.health;
    }
  }
  std::vector<std::string> lost_together, down_now;
  for (const auto& d : dcs_) {
    if (d.unavailable_since.count() < 0) continue;
    down_now.push_back(d.cfg.name);
    if (now - d.unavailable_since <= cfg_.dc_stale) lost_together.push_back(d.cfg.name);
  }
  if (!partition_suspected_ && lost_together.size() >= 2) {
    partition_suspected_ = true;
    stats_.correlated_failures++;
    log::warn("gate", "network_issue_suspected",
              "datacenters={} (lost within {} ms of each other: a partition is more likely than {} failures)",
              fmt::format("{}", fmt::join(lost_together, ",")),
              std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.dc_stale).count(), lost_together.size());
  } else if (partition_suspected_ && down_now.empty()) {
    partition_suspected_ = false;
    stats_.partitions_healed++;
    log::info("gate", "partition_healed", "every datacenter is usable again");
  }
}

// ---------------------------------------------------------------- views

JobView Gate::view(const std::string& id, const GateJob& j) const {
  JobView v;
  v.job_id = id;
  v.state = j.state;
  v.leader = raft_->leader_id();
  v.retry_budget = j.spec.retry_budget;
  v.workflow_retries = j.spec.workflow_retries;
  v.error = j.error;
  v.cancel_errors = j.cancel_errors;
  v.fence = j.fence;
  v.owner = j.owner;
  v.cancel_complete = j.cancel_complete;
  const Live* l = nullptr;
  if (auto it = live_.find(id); it != live_.end()) l = &it->second;
  for (const auto& w : j.spec.workflows) {
    WorkflowView wv;
    wv.name = w.name;
    wv.state = WfState::pending;
    v.workflows.push_back(std::move(wv));
  }
  std::vector<std::vector<WfState>> states(v.workflows.size());
  for (std::size_t s = 0; s < j.shares.size(); ++s) {
    const GateShare& sh = j.shares[s];
    DcView d;
    d.name = sh.dc;
    d.state = sh.state;
    d.accepted = sh.accepted;
    d.completed = sh.completed;
    d.failed = sh.failed;
    d.error = sh.error;
    d.late = sh.late;
    d.tried = sh.tried;
    d.workflows = sh.workflows;
    if (const Dc* x = dc(sh.dc)) d.leader = dc_status(*x).leader;
    // Counts are the ledger's (checkpointed every checkpoint_every): what a gate shows is durable, so
    // it never goes back across a gate failover. The running share's workflows (states, parts) are
    // the datacenter's latest answer, as live detail.
    if (l != nullptr && s < l->shares.size() && !terminal(sh.state) && d.workflows.empty())
      d.workflows = l->shares[s].workflows;
    v.completed += d.completed;
    v.failed += d.failed;
    for (const auto& dw : d.workflows) {
      for (std::size_t i = 0; i < v.workflows.size(); ++i) {
        if (v.workflows[i].name != dw.name) continue;
        WorkflowView& wv = v.workflows[i];
        wv.completed += dw.completed;
        wv.failed += dw.failed;
        wv.attempts += dw.attempts;
        wv.cores += dw.cores;
        wv.lost += dw.lost;
        if (wv.error.empty() && !dw.error.empty()) wv.error = fmt::format("{}: {}", sh.dc, dw.error);
        for (const auto& kv : dw.published) wv.published.push_back(kv);
        if (dw.parts.empty() && !dw.stats.empty()) {  // a datacenter of an older version: its one part
          PartView p;
          p.state = dw.state;
          p.worker = dw.worker;
          p.token = dw.token;
          p.completed = dw.completed;
          p.failed = dw.failed;
          p.stats = dw.stats;
          wv.parts.push_back(std::move(p));
        }
        for (const auto& p : dw.parts) wv.parts.push_back(p);
        states[i].push_back(dw.state);
      }
    }
    v.datacenters.push_back(std::move(d));
  }
  // A workflow's state across datacenters: ended when it ended in every share that reported it
  // (failed if one failed, cancelled if one was cancelled), running while one runs.
  for (std::size_t i = 0; i < v.workflows.size(); ++i) {
    auto& st = states[i];
    WorkflowView& wv = v.workflows[i];
    if (st.empty()) continue;
    const bool all_ended =
        st.size() == j.shares.size() && std::all_of(st.begin(), st.end(), [](WfState x) { return terminal(x); });
    auto has = [&](WfState x) { return std::find(st.begin(), st.end(), x) != st.end(); };
    if (all_ended)
      wv.state = has(WfState::failed)      ? WfState::failed
                 : has(WfState::cancelled) ? WfState::cancelled
                                           : WfState::completed;
    else if (has(WfState::running))
      wv.state = WfState::running;
    else if (has(WfState::dispatched))
      wv.state = WfState::dispatched;
  }
  return v;
}

std::optional<JobView> Gate::job(const std::string& id) const {
  const GateJob* j = ledger_.job(id);
  if (j == nullptr) return std::nullopt;
  return view(id, *j);
}

NodeStatus Gate::node_status() const {
  NodeStatus st;
  st.node = self_;
  st.role = "gate";
  st.is_leader = is_leader();
  st.term = raft_->term();
  st.leader = raft_->leader_id();
  st.datacenters = datacenters();
  st.peers = cfg_.gates;
  for (const auto& d : st.datacenters) {
    st.worker_count += d.worker_count;
    st.healthy_worker_count += d.healthy_worker_count;
    st.total_cores += d.total_cores;
    st.available_cores += d.available_cores;
  }
  for (const auto& [id, j] : ledger_.jobs())
    if (!terminal(j.state)) st.active_job_ids.push_back(id);
  return st;
}

std::map<std::string, std::size_t> Gate::table_sizes() const {
  std::size_t managers = 0;
  for (const auto& d : dcs_) managers += d.managers.size();
  auto t = window_tables();  // live windows' tables (windows.cpp)
  t.insert({{"jobs", ledger_.size()},
            {"live_jobs", live_.size()},
            {"accepts_in_flight", accepts_.size()},
            {"waiters", waiters_},
            {"rejections", rejections_.size()},
            {"rejection_expiry", rejections_.queued()},
            {"requests", requests_.size()},
            {"managers_seen", managers},
            {"forwarded", forwarded_.size()},
            {"proposals_in_flight", proposals_in_flight_},
            {"owning", owning_.size()},
            {"gates_gone", gone_since_.size()}});
  return t;
}

}  // namespace hs::gate
