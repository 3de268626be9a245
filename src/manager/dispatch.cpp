// The manager role: scheduling, worker traffic and the background concerns (schedule, liveness,
// deadlines, retention). Every decision is proposed to the ledger first; commands reach workers
// only after their entry committed. See manager.hpp and docs/cluster.md.
#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "hyperscale/base/assert.hpp"
#include "hyperscale/base/log.hpp"
#include "hyperscale/manager/manager.hpp"

namespace hs::manager {

using namespace cluster;

namespace {

bool live(WfState s) { return s == WfState::dispatched || s == WfState::running; }

int priority_rank(Priority p) {
  switch (p) {
    case Priority::exclusive:
      return 0;
    case Priority::high:
      return 1;
    case Priority::normal:
      return 2;
    case Priority::low:
      return 3;
    case Priority::auto_:
      return 4;
  }
  return 4;
}

std::int64_t ms(Duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

}  // namespace

// ---------------------------------------------------------------- tokens, sends

std::uint64_t Manager::next_token(const std::string& id, const LedgerJob& j) {
  Live& l = live_of(id, j);
  const std::uint64_t term = raft_->term();
  const std::uint64_t hw = std::max(l.token_issued, j.token_hw);
  const std::uint64_t token = token_term(hw) >= term ? hw + 1 : make_token(term, 1);
  HS_ASSERT(token > hw, "manager: fence token must grow: job={} token={} high_water={}", id, token, hw);
  l.token_issued = token;
  return token;
}

// The dispatch of workflow i as recorded: the stored plan, VUs and cores, the current token and the
// values its dependencies published. A re-send is the same dispatch.
void Manager::send_dispatch(const std::string& id, std::size_t i) {
  const LedgerJob* j = ledger_.job(id);
  if (j == nullptr) return;
  const LedgerWorkflow& w = j->workflows[i];
  const WorkflowSpec& spec = j->spec.workflows[i];
  Dispatch d;
  d.job_id = id;
  d.workflow = spec.name;
  d.token = w.token;
  d.cores = w.cores;
  d.vus = spec.vus;
  d.plan = spec.plan;
  d.term = raft_->term();
  for (const auto& dep : spec.deps)
    if (auto k = wf_index(*j, dep))
      d.context.insert(d.context.end(), j->workflows[*k].published.begin(), j->workflows[*k].published.end());
  reply(w.worker, MsgType::dispatch, d);
}

void Manager::send_stop(const std::string& id, std::size_t i, const char* why) {
  const LedgerJob* j = ledger_.job(id);
  Run* r = run_of(id, i);
  if (j == nullptr || r == nullptr) return;
  const LedgerWorkflow& w = j->workflows[i];
  r->stopping = true;
  r->stop_deadline = ctx_->now() + cfg_.cancel_timeout;
  stats_.stops_sent++;
  StopExec s{id, j->spec.workflows[i].name, w.token, raft_->term()};
  log::info("manager", "stop", "job={} workflow={} worker={} token={} reason={}", log::quoted(id),
            log::quoted(s.workflow), w.worker, w.token, why);
  reply(w.worker, MsgType::stop_exec, s);
}

// Proposes an entry about one workflow's current attempt; the run is marked while the entry is in
// flight (one at a time per attempt) and unmarked, with any cores it reserved, when it completes.
void Manager::propose_for_run(LedgerEntry e, OnApplied applied) {
  const std::string id = e.job_id;
  const std::size_t i = e.workflow;
  Run* r = run_of(id, i);
  HS_ASSERT(r != nullptr && !r->proposing, "manager: entry for job {} workflow {} without a free run", id, i);
  r->proposing = true;
  auto clear = [this, id, i] {
    if (Run* run = run_of(id, i)) run->proposing = false, run->reserved = 0, run->reserved_cores = 0;
  };
  propose(
      std::move(e),
      [clear, applied = std::move(applied)](LedgerOutcome o) {
        clear();
        if (applied) applied(o);
      },
      [clear](const Status&) { clear(); });
}

// The current attempt of workflow i ended without a result. The ledger decides what follows (a
// retry, a failure, or cancelled when the job ended); one entry per attempt is in flight.
void Manager::lose(const std::string& id, std::size_t i, const std::string& why, bool exclude, bool uncounted,
                   std::string note) {
  const LedgerJob* j = ledger_.job(id);
  Run* r = run_of(id, i);
  if (j == nullptr || r == nullptr || r->proposing || !live(j->workflows[i].state)) return;
  LedgerEntry e = entry(LedgerOp::wf_lost, id);
  e.workflow = static_cast<std::uint32_t>(i);
  e.token = j->workflows[i].token;
  e.worker = j->workflows[i].worker;
  e.error = why;
  e.exclude = exclude;
  e.uncounted = uncounted;
  e.note = std::move(note);
  log::warn("manager", "attempt_lost", "job={} workflow={} worker={} token={} reason={} counted={}", log::quoted(id),
            log::quoted(j->spec.workflows[i].name), e.worker, e.token, log::quoted(why), !uncounted);
  propose_for_run(std::move(e), [this, id, i, uncounted](LedgerOutcome o) {
    const LedgerJob* job = ledger_.job(id);
    if (o != LedgerOutcome::applied || job == nullptr) return;
    const LedgerWorkflow& w = job->workflows[i];
    if (w.state == WfState::pending && !uncounted) stats_.redispatches++;
    if (w.state == WfState::failed) stats_.budget_exhausted++;
  });
}

// ---------------------------------------------------------------- schedule

// Cores in use per worker: what each reported, plus our dispatches it has not reported yet, plus
// dispatches still being recorded.
std::map<NodeId, std::uint32_t> Manager::cores_in_use() const {
  std::map<NodeId, std::uint32_t> used;
  for (const auto& [wid, info] : workers_) used[wid] = info.total > info.available ? info.total - info.available : 0;
  for (const auto& [id, l] : live_) {
    const LedgerJob* j = ledger_.job(id);
    if (j == nullptr) continue;
    for (std::size_t i = 0; i < j->workflows.size(); ++i) {
      const auto& w = j->workflows[i];
      const Run& r = l.runs[i];
      if (r.reserved != 0) used[r.reserved] += r.reserved_cores;
      if (!live(w.state)) continue;
      auto info = workers_.find(w.worker);
      if (info == workers_.end()) continue;
      const bool reported = std::any_of(info->second.execs.begin(), info->second.execs.end(), [&](const auto& e) {
        return e.job_id == id && e.workflow == j->spec.workflows[i].name;
      });
      if (!reported) used[w.worker] += w.cores;
    }
  }
  return used;
}

void Manager::schedule_pass() {
  auto used = cores_in_use();
  // Oldest job first: the ledger's accept index orders them.
  std::vector<std::pair<std::uint64_t, const std::string*>> order;
  for (const auto& [id, j] : ledger_.jobs())
    if (!terminal(j.state) && !j.cancel_requested) order.emplace_back(j.accepted_index, &id);
  std::sort(order.begin(), order.end());
  for (const auto& [index, id] : order) schedule_job(*id, *ledger_.job(*id), used);
}

void Manager::schedule_job(const std::string& id, const LedgerJob& j, std::map<NodeId, std::uint32_t>& used) {
  Live& l = live_of(id, j);
  const Instant now = ctx_->now();
  bool any_live = false, exclusive_live = false;
  for (std::size_t i = 0; i < j.workflows.size(); ++i) {
    if (!live(j.workflows[i].state) && l.runs[i].reserved == 0) continue;
    any_live = true;
    exclusive_live |= j.spec.workflows[i].priority == Priority::exclusive;
  }
  if (exclusive_live) return;
  std::vector<std::size_t> ready;
  for (std::size_t i = 0; i < j.workflows.size(); ++i) {
    const Run& r = l.runs[i];
    if (j.workflows[i].state != WfState::pending || j.workflows[i].stop_requested || r.proposing || now < r.retry_at)
      continue;
    const bool deps_done =
        std::all_of(j.spec.workflows[i].deps.begin(), j.spec.workflows[i].deps.end(), [&](const std::string& d) {
          auto k = wf_index(j, d);
          return k && j.workflows[*k].state == WfState::completed;
        });
    if (deps_done) ready.push_back(i);
  }
  std::stable_sort(ready.begin(), ready.end(), [&](std::size_t a, std::size_t b) {
    return priority_rank(j.spec.workflows[a].priority) < priority_rank(j.spec.workflows[b].priority);
  });
  std::size_t auto_left = std::count_if(ready.begin(), ready.end(), [&](std::size_t i) {
    return j.spec.workflows[i].cores == 0 && j.spec.workflows[i].priority != Priority::exclusive;
  });
  for (std::size_t i : ready) {
    const bool exclusive = j.spec.workflows[i].priority == Priority::exclusive;
    if (exclusive && any_live) break;  // it waits until the job's other workflows are done
    std::uint32_t cores = 0;
    const NodeId chosen = choose_worker(j, i, cores, auto_left, used);
    if (j.spec.workflows[i].cores == 0 && !exclusive && auto_left > 0) --auto_left;
    l.runs[i].waiting_cores = chosen == 0;
    if (chosen == 0) continue;
    used[chosen] += cores;
    any_live = true;
    propose_dispatch(id, i, chosen, cores);
    if (exclusive) break;
  }
}

// Candidates in order of health, then free cores. Workers this workflow already failed on are used
// only when no other eligible worker exists (a lost worker that came back is better than none).
NodeId Manager::choose_worker(const LedgerJob& j, std::size_t i, std::uint32_t& cores, std::size_t auto_left,
                              const std::map<NodeId, std::uint32_t>& used) const {
  const WorkflowSpec& spec = j.spec.workflows[i];
  const auto& excluded = j.workflows[i].excluded;
  std::vector<std::pair<NodeId, std::uint32_t>> cands;
  std::uint32_t total_free = 0;
  for (int pass = 0; pass < 2 && cands.empty(); ++pass) {
    total_free = 0;
    for (const auto& [wid, info] : workers_) {
      if (!eligible(wid, info)) continue;
      if (pass == 0 && std::find(excluded.begin(), excluded.end(), wid) != excluded.end()) continue;
      auto u = used.find(wid);
      const std::uint32_t in_use = u == used.end() ? 0 : u->second;
      const std::uint32_t f = info.total > in_use ? info.total - in_use : 0;
      total_free += f;
      cands.emplace_back(wid, f);
    }
  }
  std::stable_sort(cands.begin(), cands.end(), [&](const auto& a, const auto& b) {
    const auto ha = static_cast<int>(workers_.at(a.first).health), hb = static_cast<int>(workers_.at(b.first).health);
    return ha != hb ? ha < hb : a.second > b.second;
  });
  for (const auto& [wid, f] : cands) {
    std::uint32_t need = spec.cores;
    if (spec.priority == Priority::exclusive) {
      need = workers_.at(wid).total;
    } else if (need == 0) {
      const std::uint32_t share = auto_left > 0 ? total_free / static_cast<std::uint32_t>(auto_left) : f;
      need = std::max<std::uint32_t>(1, std::min<std::uint32_t>({share, f, std::max<std::uint32_t>(1, spec.vus)}));
    }
    if (need == 0 || f < need) continue;
    cores = need;
    return wid;
  }
  return 0;
}

void Manager::propose_dispatch(const std::string& id, std::size_t i, NodeId worker, std::uint32_t cores) {
  const LedgerJob* j = ledger_.job(id);
  Run& r = *run_of(id, i);
  WorkerInfo& info = workers_.at(worker);
  if (info.open) info.half_open_probe = true;
  r.reserved = worker;
  r.reserved_cores = cores;
  LedgerEntry e = entry(LedgerOp::dispatch, id);
  e.workflow = static_cast<std::uint32_t>(i);
  e.worker = worker;
  e.cores = cores;
  e.token = next_token(id, *j);
  const std::uint64_t token = e.token;
  propose_for_run(std::move(e), [this, id, i, worker, cores, token](LedgerOutcome o) {
    const LedgerJob* job = ledger_.job(id);
    if (o != LedgerOutcome::applied || job == nullptr || job->workflows[i].token != token) {
      log::info("manager", "dispatch_not_recorded", "job={} workflow={} outcome={}", log::quoted(id), i, name(o));
      return;
    }
    if (terminal(job->state)) {
      // The job ended (a cancel committed in the same batch): nothing may start now. The run's stop
      // is confirmed by the worker, which never saw this token.
      stats_.dispatches_withheld++;
      log::info("manager", "dispatch_withheld", "job={} workflow={} token={} job_state={}", log::quoted(id),
                log::quoted(job->spec.workflows[i].name), token, name(job->state));
      return;
    }
    stats_.dispatches++;
    if (attempts_.size() >= 10'000) attempts_.pop_front();
    attempts_.push_back(Attempt{id, job->spec.workflows[i].name, worker, token});
    log::info("manager", "dispatch", "job={} workflow={} worker={} cores={} token={} attempt={}", log::quoted(id),
              log::quoted(job->spec.workflows[i].name), worker, cores, token, job->workflows[i].attempts);
    send_dispatch(id, i);
  });
}

bool Manager::eligible(NodeId w, const WorkerInfo& info) const {
  if (alive_ && !alive_(w)) return false;
  if (ctx_->now() - info.last_heartbeat > cfg_.worker_stale) return false;
  if (info.health == Health::overloaded) return false;
  if (info.open && (ctx_->now() < info.open_until || info.half_open_probe)) return false;
  return true;
}

void Manager::circuit_error(NodeId worker) {
  auto it = workers_.find(worker);
  if (it == workers_.end()) return;
  WorkerInfo& info = it->second;
  const Instant now = ctx_->now();
  info.errors.push_back(now);
  while (!info.errors.empty() && now - info.errors.front() > cfg_.circuit_window) info.errors.pop_front();
  while (info.errors.size() > cfg_.circuit_errors * 4) info.errors.pop_front();
  if (info.half_open_probe || (!info.open && info.errors.size() >= cfg_.circuit_errors)) {
    if (!info.open) stats_.circuit_opened++;
    info.open = true;
    info.half_open_probe = false;
    info.open_until = now + cfg_.circuit_half_open;
    log::warn("manager", "circuit_open", "worker={} errors={} until_ms={}", worker, info.errors.size(),
              ms(info.open_until));
  }
}

// ---------------------------------------------------------------- liveness

void Manager::liveness_pass() {
  std::vector<std::pair<std::string, std::size_t>> todo;
  for (const auto& [id, j] : ledger_.jobs())
    for (std::size_t i = 0; i < j.workflows.size(); ++i)
      if (live(j.workflows[i].state)) todo.emplace_back(id, i);
  for (const auto& [id, i] : todo)
    if (const LedgerJob* j = ledger_.job(id)) check_run(id, *j, i);
}

// One live attempt: its stop deadline, an unacknowledged dispatch, a silent worker (per-execution
// liveness, whatever SWIM says), a stuck workflow.
void Manager::check_run(const std::string& id, const LedgerJob& j, std::size_t i) {
  Run* r = run_of(id, i);
  if (r == nullptr || r->proposing) return;
  const LedgerWorkflow& w = j.workflows[i];
  const std::string& name = j.spec.workflows[i].name;
  const Instant now = ctx_->now();
  if (r->stopping) {
    if (now < r->stop_deadline) return;
    stats_.stops_unconfirmed++;
    lose(id, i, "stop not confirmed", false, false,
         fmt::format("worker {} did not confirm the stop of '{}'", w.worker, name));
    return;
  }
  auto info = workers_.find(w.worker);
  const Instant heard = std::max(info == workers_.end() ? Instant{0} : info->second.last_heartbeat, leading_since_);
  if (now - heard >= cfg_.exec_timeout) {
    stats_.silent_workers++;
    lose(id, i, fmt::format("no heartbeat from worker {} for {} ms", w.worker, ms(now - heard)), true);
    return;
  }
  if (!r->acked && now >= r->ack_deadline) {
    stats_.dispatch_resends++;
    circuit_error(w.worker);
    r->ack_deadline = now + cfg_.dispatch_ack_timeout;
    send_dispatch(id, i);
    return;
  }
  if (r->acked && j.spec.stuck_ms > 0 && now - r->last_progress >= std::chrono::milliseconds(j.spec.stuck_ms)) {
    stats_.stuck++;
    log::warn("manager", "workflow_stuck", "job={} workflow={} worker={} no_progress_ms={}", log::quoted(id),
              log::quoted(name), w.worker, j.spec.stuck_ms);
    StopExec s{id, name, w.token, raft_->term()};
    reply(w.worker, MsgType::stop_exec, s);
    lose(id, i, fmt::format("stuck: no progress for {} ms", j.spec.stuck_ms), true);
  }
}

void Manager::on_member_dead(NodeId node) {
  if (ctx_ == nullptr) return;
  seen_now_ = ctx_->now();
  if (auto w = workers_.find(node); w != workers_.end()) {
    log::warn("manager", "worker_dead", "worker={} cores={}", node, w->second.total);
    workers_.erase(w);
  }
  if (!is_leader()) return;
  std::vector<std::pair<std::string, std::size_t>> lost;
  for (const auto& [id, j] : ledger_.jobs())
    for (std::size_t i = 0; i < j.workflows.size(); ++i)
      if (live(j.workflows[i].state) && j.workflows[i].worker == node) lost.emplace_back(id, i);
  for (const auto& [id, i] : lost) lose(id, i, "worker died", true);
}

// ---------------------------------------------------------------- deadlines, retention

void Manager::deadlines_pass() {
  const Instant now = ctx_->now();
  for (const auto& [id, j] : ledger_.jobs()) {
    if (terminal(j.state)) continue;
    Live& l = live_of(id, j);
    if (l.proposing) continue;
    if (j.spec.timeout_ms > 0 && elapsed_ms(id) >= j.spec.timeout_ms) {
      l.proposing = true;
      LedgerEntry e = entry(LedgerOp::job_done, id);
      e.state = static_cast<std::uint8_t>(JobState::timeout);
      e.error = fmt::format("job timed out after {} ms", j.spec.timeout_ms);
      e.progress = progress_of(id);
      log::info("manager", "job_timeout", "job={} timeout_ms={}", log::quoted(id), j.spec.timeout_ms);
      auto clear = [this, id] {
        if (auto it = live_.find(id); it != live_.end()) it->second.proposing = false;
      };
      propose(
          std::move(e),
          [this, clear](LedgerOutcome o) {
            clear();
            if (o == LedgerOutcome::applied) stats_.timeouts++;
          },
          [clear](const Status&) { clear(); });
      continue;
    }
    std::uint64_t total = 0;
    for (const Run& r : l.runs) total += r.completed + r.failed;
    if (now < l.next_checkpoint || total == l.checkpointed) continue;
    l.next_checkpoint = now + cfg_.checkpoint_every;
    l.checkpointed = total;
    LedgerEntry e = entry(LedgerOp::checkpoint, id);
    e.progress = progress_of(id);
    stats_.checkpoints++;
    propose(std::move(e), nullptr);
  }
}

void Manager::retention_pass() {
  const Instant now = ctx_->now();
  while (!rejection_expiry_.empty() && rejection_expiry_.front().first <= now) {
    auto it = rejections_.find(rejection_expiry_.front().second);
    if (it != rejections_.end() && it->second.expires <= now) rejections_.erase(it);
    rejection_expiry_.pop_front();
  }
  if (!is_leader()) return;
  std::vector<std::string> due;
  for (auto& [id, l] : live_) {
    const LedgerJob* j = ledger_.job(id);
    if (j == nullptr || l.terminal_at.count() < 0 || l.proposing) continue;
    const Duration keep = j->state == JobState::completed ? cfg_.retention_ok : cfg_.retention_failed;
    if (now - l.terminal_at >= keep) due.push_back(id);
  }
  for (const auto& id : due) {
    live_.at(id).proposing = true;
    propose(
        entry(LedgerOp::retire, id),
        [this](LedgerOutcome o) {
          if (o == LedgerOutcome::applied) stats_.cleaned++;
        },
        [this, id](const Status&) {
          if (auto it = live_.find(id); it != live_.end()) it->second.proposing = false;
        });
  }
}

// ---------------------------------------------------------------- worker traffic

void Manager::handle_heartbeat(NodeId from, Heartbeat& m) {
  auto it = workers_.find(from);
  if (it == workers_.end()) {
    if (workers_.size() >= cfg_.max_workers) {
      log::error("manager", "worker_refused", "worker={} (worker table full: {})", from, workers_.size());
      return;
    }
    log::info("manager", "worker_registered", "worker={} cores={}", from, m.total_cores);
    it = workers_.emplace(from, WorkerInfo{}).first;
  }
  WorkerInfo& info = it->second;
  const bool rebooted = info.last_heartbeat.count() != 0 && m.boot != 0 && info.boot != m.boot;
  info.total = m.total_cores;
  info.available = m.available_cores;
  info.health = m.health;
  info.last_heartbeat = ctx_->now();
  info.execs = m.execs;
  info.boot = m.boot;
  HeartbeatAck ack;
  ack.is_leader = is_leader();
  ack.term = raft_->term();
  ack.leader = raft_->leader_id();
  if (ack.is_leader) collect_stops(from, m, ack);
  if (ack.is_leader && rebooted) {
    // The worker restarted without being declared dead: whatever it ran and did not report is gone.
    std::set<std::pair<std::string, std::string>> reported;
    for (const auto& e : m.execs) reported.emplace(e.job_id, e.workflow);
    std::vector<std::pair<std::string, std::size_t>> lost;
    for (const auto& [id, j] : ledger_.jobs())
      for (std::size_t i = 0; i < j.workflows.size(); ++i)
        if (live(j.workflows[i].state) && j.workflows[i].worker == from &&
            reported.count({id, j.spec.workflows[i].name}) == 0)
          lost.emplace_back(id, i);
    for (const auto& [id, i] : lost) lose(id, i, "worker restarted", true);
  }
  reply(from, MsgType::heartbeat_ack, ack);
}

// The ready leader judges every execution a worker reports against the ledger: the current
// attempt is confirmed; an older token, an ended or unknown workflow, or one being stopped, stops.
void Manager::collect_stops(NodeId from, const Heartbeat& m, HeartbeatAck& ack) {
  for (const auto& e : m.execs) {
    const LedgerJob* j = ledger_.job(e.job_id);
    const auto i = j ? wf_index(*j, e.workflow) : std::nullopt;
    if (j == nullptr || !i) {
      ack.stop.push_back(StopItem{e.job_id, e.workflow, e.token});
      continue;
    }
    const LedgerWorkflow& w = j->workflows[*i];
    if (e.token > w.token) {
      stats_.fence_rejects++;  // never issued by this ledger: not ours to judge
      log::warn("manager", "unknown_token", "worker={} job={} workflow={} token={} ledger_token={}", from,
                log::quoted(e.job_id), log::quoted(e.workflow), e.token, w.token);
      continue;
    }
    Run* r = run_of(e.job_id, *i);
    const bool current = e.token == w.token && w.worker == from && live(w.state);
    if (!current || terminal(j->state) || w.stop_requested || (r != nullptr && r->stopping)) {
      ack.stop.push_back(StopItem{e.job_id, e.workflow, e.token});
      continue;
    }
    if (r != nullptr && !r->acked) {
      r->acked = true;
      r->last_progress = ctx_->now();
    }
  }
}

// The leader's run of the attempt a worker reports on: this manager leads, the workflow is live,
// and the report names its current token and worker. Otherwise nullptr (a stale or foreign report).
Manager::Run* Manager::current_run(NodeId from, const std::string& job, const std::string& workflow,
                                   std::uint64_t token, std::size_t& index) {
  const LedgerJob* j = ledger_.job(job);
  const auto i = j ? wf_index(*j, workflow) : std::nullopt;
  if (!is_leader() || !i) return nullptr;
  const LedgerWorkflow& w = j->workflows[*i];
  if (w.token != token || w.worker != from || !live(w.state)) return nullptr;
  index = *i;
  return run_of(job, *i);
}

void Manager::handle_dispatch_ack(NodeId from, const DispatchAck& m) {
  std::size_t idx = 0;
  Run* r = current_run(from, m.job_id, m.workflow, m.token, idx);
  if (r == nullptr) return;
  auto info = workers_.find(from);
  if (m.accepted) {
    r->acked = true;
    r->last_progress = ctx_->now();
    if (info != workers_.end() && info->second.half_open_probe) {
      info->second.open = false;
      info->second.half_open_probe = false;
      info->second.errors.clear();
      log::info("manager", "circuit_closed", "worker={}", from);
    }
    return;
  }
  stats_.dispatch_refused++;
  log::warn("manager", "dispatch_refused", "job={} workflow={} worker={} code={} error={}", log::quoted(m.job_id),
            log::quoted(m.workflow), from, name(m.code), log::quoted(m.error));
  if (m.code == Err::overloaded) {
    // Lost a race for cores: refresh the worker's capacity and try again at the next pass. Not an
    // error of the worker, so its circuit stays closed.
    stats_.capacity_refusals++;
    if (info != workers_.end()) {
      info->second.available = std::min(m.available_cores, info->second.total);
      info->second.half_open_probe = false;
    }
    r->retry_at = ctx_->now();
    lose(m.job_id, idx, m.error, false, true);
    return;
  }
  if (m.code == Err::fence) {  // the worker saw this token already and no longer has it
    lose(m.job_id, idx, "refused by the worker: " + m.error, false);
    return;
  }
  circuit_error(from);
  r->backoff = r->backoff.count() == 0 ? cfg_.requeue_backoff : std::min(r->backoff * 2, cfg_.requeue_backoff_max);
  r->retry_at = ctx_->now() + r->backoff;
  lose(m.job_id, idx, "refused by the worker: " + m.error, false, true);
}

void Manager::handle_progress(NodeId from, const Progress& m) {
  std::size_t idx = 0;
  Run* r = current_run(from, m.job_id, m.workflow, m.token, idx);
  if (r == nullptr) return;
  r->acked = true;
  if (m.completed != r->completed || m.failed != r->failed) r->last_progress = ctx_->now();
  r->completed = std::max(r->completed, m.completed);
  r->failed = std::max(r->failed, m.failed);
}

// A result is acknowledged to the worker only once the ledger holds what it changed (or it is
// stale and changes nothing): the worker re-sends it until then, to whoever leads.
void Manager::handle_result(NodeId from, ResultMsg& m) {
  if (!is_leader()) return;  // the leader answers; the worker keeps the result until then
  ResultAck ack{m.job_id, m.workflow, m.token};
  const LedgerJob* j = ledger_.job(m.job_id);
  const auto i = j ? wf_index(*j, m.workflow) : std::nullopt;
  if (!i || m.token != j->workflows[*i].token || !live(j->workflows[*i].state)) {
    if (i && m.token == j->workflows[*i].token)
      stats_.duplicate_results++;
    else
      stats_.stale_results++;
    reply(from, MsgType::result_ack, ack);  // nothing left to change: let the worker drop it
    return;
  }
  Run* r = run_of(m.job_id, *i);
  if (r == nullptr || r->proposing) return;  // an entry for this attempt is in flight; the worker re-sends
  const bool stopping = r->stopping || terminal(j->state) || j->workflows[*i].stop_requested;
  if (m.outcome == Outcome::lost || (m.outcome == Outcome::cancelled && !stopping)) {
    lose(m.job_id, *i, fmt::format("{} on the worker: {}", m.outcome == Outcome::lost ? "lost" : "cancelled", m.error),
         m.outcome == Outcome::lost);
    return;
  }
  stats_.results++;
  LedgerEntry e = entry(LedgerOp::wf_done, m.job_id);
  e.workflow = static_cast<std::uint32_t>(*i);
  e.token = m.token;
  e.state = static_cast<std::uint8_t>(m.outcome == Outcome::completed ? WfState::completed
                                      : m.outcome == Outcome::failed  ? WfState::failed
                                                                      : WfState::cancelled);
  e.completed = m.completed;
  e.failed = m.failed;
  e.error = m.error;
  e.stats = std::move(m.stats);
  for (auto& [k, v] : m.published) e.published.emplace_back(m.workflow + "." + k, std::move(v));
  log::info("manager", "workflow_result", "job={} workflow={} outcome={} completed={} failed={} token={}",
            log::quoted(m.job_id), log::quoted(m.workflow), static_cast<int>(m.outcome), m.completed, m.failed,
            m.token);
  propose_for_run(std::move(e), [this, from, ack](LedgerOutcome) {
    ResultAck a = ack;
    reply(from, MsgType::result_ack, a);
  });
}

// A worker that stopped the attempt sends its result (with the statistics gathered until then)
// next: the leader waits for it until the stop deadline. A worker that does not run the attempt
// ends it at once, cancelled with the totals the leader saw.
void Manager::handle_stop_ack(NodeId from, const StopAck& m) {
  std::size_t idx = 0;
  Run* r = current_run(from, m.job_id, m.workflow, m.token, idx);
  if (r == nullptr || !r->stopping || r->proposing || m.stopped) return;
  LedgerEntry e = entry(LedgerOp::wf_done, m.job_id);
  e.workflow = static_cast<std::uint32_t>(idx);
  e.token = m.token;
  e.state = static_cast<std::uint8_t>(WfState::cancelled);
  e.completed = r->completed;
  e.failed = r->failed;
  propose_for_run(std::move(e), nullptr);
}

}  // namespace hs::manager
