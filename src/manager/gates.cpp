// The manager role: the side it shows the gate tier (docs/cluster.md "Gates"). Every manager
// heartbeats every configured gate with what its datacenter has (DcHeartbeat); the leader keeps each
// gate job's fence in the ledger and raises it on a JobFence from the gate that took the job over.
// A gate's submit, status and cancel are the client protocol (manager.cpp) with the gate's fence.
#include <fmt/format.h>

#include <algorithm>

#include "hyperscale/base/log.hpp"
#include "hyperscale/manager/manager.hpp"

namespace hs::manager {

using namespace cluster;

namespace {
constexpr std::size_t kMaxGateError = 256;  // a refusal's text kept to compare the next one with
}

// The gates concern, on every manager: one DcHeartbeat to every gate. The leader's lists the active
// jobs it leads (at most max_heartbeat_jobs, in job id order; jobs_more when there are more).
void Manager::gates_pass() {
  DcHeartbeat hb;
  hb.datacenter = cfg_.datacenter;
  hb.is_leader = is_leader();
  hb.term = raft_->term();
  hb.leader = raft_->leader_id();
  const NodeStatus st = node_status();
  hb.worker_count = st.worker_count;
  hb.healthy_worker_count = st.healthy_worker_count;
  hb.total_cores = st.total_cores;
  hb.available_cores = st.available_cores;
  for (const auto& [id, j] : ledger_.jobs()) {
    if (terminal(j.state)) continue;
    ++hb.active_jobs;
    if (!hb.is_leader) continue;
    if (hb.jobs.size() < cfg_.max_heartbeat_jobs)
      hb.jobs.push_back(id);
    else
      hb.jobs_more = true;
  }
  for (NodeId g : cfg_.gates) {
    stats_.gate_heartbeats++;
    reply(g, MsgType::dc_heartbeat, hb);
  }
}

// A gate's answer to a heartbeat. A refusal (the gate does not know this manager in this
// datacenter: a configuration mismatch) is counted every time and logged when it starts or its
// reason changes; the end of one is logged too. Nothing else is remembered.
void Manager::handle_dc_heartbeat_ack(NodeId from, const DcHeartbeatAck& m) {
  auto it = gates_.find(from);
  if (it == gates_.end()) {
    stats_.gate_acks_foreign++;
    log::warn("manager", "gate_ack_foreign", "from={} datacenter={} (not a configured gate)", from,
              log::quoted(cfg_.datacenter));
    return;
  }
  GateLink& link = it->second;
  if (m.registered) {
    if (link.refused)
      log::info("manager", "gate_registered", "gate={} datacenter={} gate_leader={} gate_term={}", from,
                log::quoted(cfg_.datacenter), m.gate_leader, m.term);
    link.refused = false;
    link.error.clear();
    return;
  }
  stats_.gate_refusals++;
  const std::string error = m.error.substr(0, kMaxGateError);
  if (!link.refused || link.error != error)
    log::warn("manager", "gate_refused", "gate={} datacenter={} self={} error={}", from, log::quoted(cfg_.datacenter),
              self_, log::quoted(error));
  link.refused = true;
  link.error = error;
}

// A gate that took a job over raises the job's gate fence: the ledger keeps the highest, and a
// gate's command with a lower one is refused from then on. An equal fence is accepted as it is (a
// re-sent JobFence); a higher one is accepted once its entry commits.
void Manager::handle_job_fence(NodeId from, const JobFence& m) {
  stats_.job_fences++;
  JobFenceAck a;
  a.req = m.req;
  a.leader = raft_->leader_id();
  const LedgerJob* j = ledger_.job(m.job_id);
  if (!is_leader()) {
    a.code = Err::not_leader;
    a.error = "this manager is not the datacenter leader";
  } else if (m.gate_fence == 0) {
    a.code = Err::invalid;
    a.error = "a job fence must be above 0";
  } else if (j == nullptr) {
    a.code = Err::not_found;
    a.error = fmt::format("no job '{}'", m.job_id);
  } else if (m.gate_fence < j->gate_fence) {
    stats_.fence_rejects++;
    a.code = Err::fence;
    a.current = j->gate_fence;
    a.error = fmt::format("stale gate fence {} (current {})", m.gate_fence, j->gate_fence);
    log::warn("manager", "gate_fence_refused", "job={} from={} op=job_fence gate_fence={} current={}",
              log::quoted(m.job_id), from, m.gate_fence, j->gate_fence);
  } else if (m.gate_fence == j->gate_fence) {
    a.accepted = true;
    a.current = j->gate_fence;
  } else if (waiters_ >= cfg_.max_waiters) {
    a.code = Err::overloaded;
    a.error = "too many clients waiting for their requests to be recorded";
  } else {
    ++waiters_;
    LedgerEntry e = entry(LedgerOp::gate_fence, m.job_id);
    e.gate_fence = m.gate_fence;
    log::info("manager", "gate_fence", "job={} from={} gate_fence={} previous={}", log::quoted(m.job_id), from,
              m.gate_fence, j->gate_fence);
    const std::string id = m.job_id;
    const std::uint64_t req = m.req, fence = m.gate_fence;
    propose(
        std::move(e),
        [this, from, id, req, fence](LedgerOutcome o) {
          --waiters_;
          JobFenceAck c;
          c.req = req;
          c.leader = raft_->leader_id();
          const LedgerJob* job = ledger_.job(id);
          c.current = job != nullptr ? job->gate_fence : 0;
          if (o == LedgerOutcome::applied) {
            c.accepted = true;
          } else if (o == LedgerOutcome::stale_token && job != nullptr && job->gate_fence == fence) {
            c.accepted = true;  // the same fence committed first (a re-sent JobFence)
          } else if (o == LedgerOutcome::stale_token) {
            stats_.fence_rejects++;
            c.code = Err::fence;
            c.error = fmt::format("stale gate fence {} (current {})", fence, c.current);
          } else if (o == LedgerOutcome::unknown_job) {
            c.code = Err::not_found;
            c.error = fmt::format("no job '{}' (retired meanwhile)", id);
          } else {
            c.code = Err::unavailable;
            c.error = fmt::format("the fence was not recorded ({})", name(o));
          }
          reply(from, MsgType::job_fence_ack, c);
        },
        [this, from, req](const Status& st) {
          --waiters_;
          JobFenceAck c;
          c.req = req;
          c.leader = raft_->leader_id();
          c.code = Err::unavailable;
          c.error = fmt::format("the fence could not be recorded ({}); retry it", st.message());
          reply(from, MsgType::job_fence_ack, c);
        });
    return;
  }
  reply(from, MsgType::job_fence_ack, a);
}

}  // namespace hs::manager
