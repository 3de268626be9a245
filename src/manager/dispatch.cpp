// The manager role: scheduling, worker traffic and the background concerns (schedule, liveness,
// deadlines, retention). Every decision is proposed to the ledger first; commands reach workers
// only after their entry committed. See manager.hpp and docs/cluster.md.
#include <fmt/format.h>

#include <algorithm>
#include <set>
#include <tuple>

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

// The dispatch of a part as recorded: the stored plan and VUs, the part's shards, cores, token and
// skip, the workflow's shared start and the values its dependencies published. A re-send is the
// same dispatch.
void Manager::send_dispatch(const std::string& id, Slot s) {
  const LedgerJob* j = ledger_.job(id);
  if (j == nullptr || s.part >= j->workflows[s.wf].parts.size()) return;
  const LedgerWorkflow& w = j->workflows[s.wf];
  const LedgerPart& p = w.parts[s.part];
  const WorkflowSpec& spec = j->spec.workflows[s.wf];
  Dispatch d;
  d.job_id = id;
  d.workflow = spec.name;
  d.part = s.part;
  d.token = p.token;
  d.cores = p.cores;
  d.vus = spec.vus;
  d.plan = spec.plan;
  d.term = raft_->term();
  d.shard_first = p.shard_first;
  d.shard_total = w.shard_total;
  d.start_at_unix_ms = w.start_at_ms;
  d.skip_iterations = p.skip;
  d.window_ms = static_cast<std::uint32_t>(std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.window).count());
  if (d.window_ms > 0) {
    // One origin for every part and attempt of a split workflow (its shared start); a one-part
    // workflow's attempt starts its windows when first sent (a re-placed one runs from its start).
    Run* r = run_of(id, s);
    if (w.start_at_ms != 0) {
      d.window_origin_unix_ms = w.start_at_ms;
    } else if (r != nullptr) {
      if (r->window_origin_ms == 0) r->window_origin_ms = ctx_->wall_ms();
      d.window_origin_unix_ms = r->window_origin_ms;
    } else {
      d.window_origin_unix_ms = ctx_->wall_ms();
    }
  }
  for (const auto& dep : spec.deps)
    if (auto k = wf_index(*j, dep))
      d.context.insert(d.context.end(), j->workflows[*k].published.begin(), j->workflows[*k].published.end());
  reply(p.worker, MsgType::dispatch, d);
}

void Manager::send_stop(const std::string& id, Slot s, const char* why) {
  const LedgerJob* j = ledger_.job(id);
  Run* r = run_of(id, s);
  if (j == nullptr || r == nullptr || s.part >= j->workflows[s.wf].parts.size()) return;
  const LedgerPart& p = j->workflows[s.wf].parts[s.part];
  r->stopping = true;
  r->stop_deadline = ctx_->now() + cfg_.cancel_timeout;
  stats_.stops_sent++;
  StopExec stop{id, j->spec.workflows[s.wf].name, p.token, raft_->term(), s.part};
  log::info("manager", "stop", "job={} workflow={} part={} worker={} token={} reason={}", log::quoted(id),
            log::quoted(stop.workflow), s.part, p.worker, p.token, why);
  reply(p.worker, MsgType::stop_exec, stop);
}

// Proposes an entry about one part's current attempt (or a workflow's split: part 0); the run is
// marked while the entry is in flight (one at a time per attempt) and unmarked, with any cores it
// reserved, when it completes.
void Manager::propose_for_run(LedgerEntry e, OnApplied applied) {
  const std::string id = e.job_id;
  const Slot s{e.workflow, e.part};
  Run* r = run_of(id, s);
  HS_ASSERT(r != nullptr && !r->proposing, "manager: entry for job {} workflow {} part {} without a free run", id, s.wf,
            s.part);
  r->proposing = true;
  auto clear = [this, id, s] {
    if (Run* run = run_of(id, s)) run->proposing = false, run->reserved.clear();
  };
  propose(
      std::move(e),
      [clear, applied = std::move(applied)](LedgerOutcome o) {
        clear();
        if (applied) applied(o);
      },
      [clear](const Status&) { clear(); });
}

// The current attempt of a part ended without a result. The ledger decides what follows (a retry of
// the part with what it had not done, a failure, or cancelled when the job ended); one entry per
// attempt is in flight. What the worker last reported of the attempt goes with it.
void Manager::lose(const std::string& id, Slot s, const std::string& why, bool exclude, bool uncounted,
                   std::string note) {
  const LedgerJob* j = ledger_.job(id);
  Run* r = run_of(id, s);
  if (j == nullptr || r == nullptr || r->proposing || s.part >= j->workflows[s.wf].parts.size()) return;
  const LedgerPart& p = j->workflows[s.wf].parts[s.part];
  if (!live(p.state)) return;
  LedgerEntry e = entry(LedgerOp::wf_lost, id);
  e.workflow = static_cast<std::uint32_t>(s.wf);
  e.part = s.part;
  e.token = p.token;
  e.worker = p.worker;
  e.completed = r->completed;
  e.failed = r->failed;
  e.started = r->started;
  e.error = why;
  e.exclude = exclude;
  e.uncounted = uncounted;
  e.note = std::move(note);
  log::warn("manager", "attempt_lost",
            "job={} workflow={} part={} worker={} token={} reason={} counted={} completed={} failed={} started={}",
            log::quoted(id), log::quoted(j->spec.workflows[s.wf].name), s.part, e.worker, e.token, log::quoted(why),
            !uncounted, e.completed, e.failed, e.started);
  propose_for_run(std::move(e), [this, id, s, uncounted](LedgerOutcome o) {
    const LedgerJob* job = ledger_.job(id);
    if (o != LedgerOutcome::applied || job == nullptr) return;
    const LedgerPart& part = job->workflows[s.wf].parts[s.part];
    if (part.state == WfState::pending && !uncounted) stats_.redispatches++;
    if (part.state == WfState::failed) stats_.budget_exhausted++;
  });
}

// ---------------------------------------------------------------- schedule

std::vector<Manager::Slot> Manager::live_parts(const LedgerJob& j) {
  std::vector<Slot> out;
  for (std::size_t i = 0; i < j.workflows.size(); ++i)
    for (std::size_t k = 0; k < j.workflows[i].parts.size(); ++k)
      if (live(j.workflows[i].parts[k].state)) out.push_back(Slot{i, static_cast<std::uint32_t>(k)});
  return out;
}

// Cores in use per worker: what each reported, plus our dispatches it has not reported yet, plus
// placements still being recorded.
std::map<NodeId, std::uint32_t> Manager::cores_in_use() const {
  std::map<NodeId, std::uint32_t> used;
  for (const auto& [wid, info] : workers_) used[wid] = info.total > info.available ? info.total - info.available : 0;
  for (const auto& [id, l] : live_) {
    const LedgerJob* j = ledger_.job(id);
    if (j == nullptr) continue;
    for (const auto& runs : l.runs)
      for (const Run& r : runs)
        for (const auto& [wid, n] : r.reserved) used[wid] += n;
    for (const Slot& s : live_parts(*j)) {
      const LedgerPart& p = j->workflows[s.wf].parts[s.part];
      auto info = workers_.find(p.worker);
      if (info == workers_.end()) continue;
      const std::string& name = j->spec.workflows[s.wf].name;
      const bool reported = std::any_of(info->second.execs.begin(), info->second.execs.end(), [&](const auto& e) {
        return e.job_id == id && e.workflow == name && e.part == s.part;
      });
      if (!reported) used[p.worker] += p.cores;
    }
  }
  return used;
}

void Manager::schedule_soon() {
  if (schedule_soon_armed_ || !is_leader()) return;
  schedule_soon_armed_ = true;
  const Duration since = last_schedule_.count() < 0 ? cfg_.schedule_gap : ctx_->now() - last_schedule_;
  ctx_->set_timer(since >= cfg_.schedule_gap ? Duration{0} : cfg_.schedule_gap - since, kScheduleSoon);
}

void Manager::schedule_pass() {
  last_schedule_ = ctx_->now();
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
    const bool reserved =
        std::any_of(l.runs[i].begin(), l.runs[i].end(), [](const Run& r) { return !r.reserved.empty(); });
    if (!live(j.workflows[i].state) && !reserved) continue;
    any_live = true;
    exclusive_live |= j.spec.workflows[i].priority == Priority::exclusive;
  }
  // Lost parts of live workflows first: they hold the rest of their workflow back.
  for (std::size_t i = 0; i < j.workflows.size(); ++i) {
    const LedgerWorkflow& w = j.workflows[i];
    if (terminal(w.state) || w.stop_requested) continue;
    for (std::uint32_t k = 0; k < w.parts.size(); ++k) {
      Run& r = l.runs[i][k];
      if (w.parts[k].state != WfState::pending || r.proposing || now < r.retry_at) continue;
      std::uint32_t cores = 0;
      const NodeId chosen = place_part(j, Slot{i, k}, cores, used);
      r.waiting_cores = chosen == 0;
      if (chosen == 0) continue;
      used[chosen] += cores;
      propose_dispatch(id, Slot{i, k}, chosen, cores);
    }
  }
  if (exclusive_live) return;
  std::vector<std::size_t> ready;
  for (std::size_t i = 0; i < j.workflows.size(); ++i) {
    const Run& r = l.runs[i][0];
    const LedgerWorkflow& w = j.workflows[i];
    if (w.state != WfState::pending || !w.parts.empty() || w.stop_requested || r.proposing || now < r.retry_at)
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
    const Placement where = place_workflow(j, i, auto_left, used);
    if (j.spec.workflows[i].cores == 0 && !exclusive && auto_left > 0) --auto_left;
    l.runs[i][0].waiting_cores = where.empty();
    if (where.empty()) continue;
    for (const auto& [wid, n] : where) used[wid] += n;
    any_live = true;
    propose_split(id, i, where);
    if (exclusive) break;
  }
}

// Eligible workers with their free cores, healthiest first, then most free. Workers in `excluded`
// are used only when no other eligible worker exists (a lost worker that came back is better than
// none).
std::vector<std::pair<NodeId, std::uint32_t>> Manager::candidates(const std::vector<NodeId>& excluded,
                                                                  const std::map<NodeId, std::uint32_t>& used) const {
  std::vector<std::pair<NodeId, std::uint32_t>> cands;
  for (int pass = 0; pass < 2 && cands.empty(); ++pass) {
    for (const auto& [wid, info] : workers_) {
      if (!eligible(wid, info)) continue;
      if (pass == 0 && std::find(excluded.begin(), excluded.end(), wid) != excluded.end()) continue;
      auto u = used.find(wid);
      const std::uint32_t in_use = u == used.end() ? 0 : u->second;
      const std::uint32_t f = info.total > in_use ? info.total - in_use : 0;
      if (f > 0) cands.emplace_back(wid, f);
    }
  }
  std::stable_sort(cands.begin(), cands.end(), [&](const auto& a, const auto& b) {
    const auto ha = static_cast<int>(workers_.at(a.first).health), hb = static_cast<int>(workers_.at(b.first).health);
    return ha != hb ? ha < hb : a.second > b.second;
  });
  return cands;
}

// Where a workflow's parts go: `cores` cores in all (its cores key; by default its share of what is
// free, among the job's workflows ready together; exclusive: every free core), at most one core per
// VU, taken from the best workers first, one part per worker. A one-part workflow (setup) takes its
// cores on one worker. Empty: not enough free cores now.
Manager::Placement Manager::place_workflow(const LedgerJob& j, std::size_t i, std::size_t auto_left,
                                           const std::map<NodeId, std::uint32_t>& used) const {
  const WorkflowSpec& spec = j.spec.workflows[i];
  const auto cands = candidates({}, used);
  std::uint64_t total_free = 0;
  for (const auto& c : cands) total_free += c.second;
  const std::uint64_t vus = std::max<std::uint32_t>(1, spec.vus);
  std::uint64_t need = spec.cores;
  if (spec.priority == Priority::exclusive) {
    need = std::min(total_free, vus);
  } else if (need == 0) {
    const std::uint64_t share = auto_left > 0 ? total_free / auto_left : total_free;
    need = std::min({share, total_free, vus});
  }
  need = std::min<std::uint64_t>(need, kMaxShardTotal);
  if (need == 0 && total_free > 0) need = 1;
  Placement where;
  if (need == 0 || cands.empty()) return where;
  if (spec.one_part) {
    for (const auto& [wid, f] : cands) {
      const std::uint64_t take = spec.cores > 0 ? need : std::min<std::uint64_t>(need, f);
      if (f >= take) return Placement{{wid, static_cast<std::uint32_t>(take)}};
    }
    return where;
  }
  std::uint64_t left = need;
  for (const auto& [wid, f] : cands) {
    if (left == 0 || where.size() >= kMaxParts) break;
    const auto take = static_cast<std::uint32_t>(std::min<std::uint64_t>(left, f));
    where.emplace_back(wid, take);
    left -= take;
  }
  if (left > 0) where.clear();  // its cores key asks for more than is free: wait
  return where;
}

// Where a lost part goes again: one worker with the part's cores free (a part of a split keeps its
// shards; a whole-workflow part may take what one worker has, up to its VUs).
NodeId Manager::place_part(const LedgerJob& j, Slot s, std::uint32_t& cores,
                           const std::map<NodeId, std::uint32_t>& used) const {
  const LedgerWorkflow& w = j.workflows[s.wf];
  const LedgerPart& p = w.parts[s.part];
  const WorkflowSpec& spec = j.spec.workflows[s.wf];
  for (const auto& [wid, f] : candidates(p.excluded, used)) {
    std::uint32_t need = p.cores;
    if (w.shard_total == 0 && spec.cores == 0)
      need = std::max<std::uint32_t>(1, std::min<std::uint32_t>(f, std::max<std::uint32_t>(1, spec.vus)));
    if (need == 0 || f < need) continue;
    cores = need;
    return wid;
  }
  return 0;
}

// One entry places every part of a workflow; once it is applied each part's dispatch goes out, with
// the start time they share.
void Manager::propose_split(const std::string& id, std::size_t i, const Placement& where) {
  const LedgerJob* j = ledger_.job(id);
  Run& r = *run_of(id, Slot{i, 0});
  LedgerEntry e = entry(LedgerOp::split, id);
  e.workflow = static_cast<std::uint32_t>(i);
  std::uint32_t next = 0;
  for (const auto& [wid, n] : where) {
    WorkerInfo& info = workers_.at(wid);
    if (info.open) info.half_open_probe = true;
    e.parts.push_back(PartAssign{wid, n, next, next_token(id, *j)});
    next += n;
  }
  e.shard_total = where.size() > 1 ? next : 0;
  if (where.size() > 1)
    e.start_at_ms =
        ctx_->wall_ms() + static_cast<std::uint64_t>(
                              std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.part_start_delay).count());
  r.reserved = where;
  const std::vector<PartAssign> parts = e.parts;
  propose_for_run(std::move(e), [this, id, i, parts](LedgerOutcome o) {
    const LedgerJob* job = ledger_.job(id);
    if (o != LedgerOutcome::applied || job == nullptr || job->workflows[i].parts.size() != parts.size() ||
        job->workflows[i].parts[0].token != parts[0].token) {
      log::info("manager", "split_not_recorded", "job={} workflow={} parts={} outcome={}", log::quoted(id), i,
                parts.size(), name(o));
      return;
    }
    for (std::uint32_t k = 0; k < parts.size(); ++k) sent_dispatch(id, Slot{i, k});
  });
}

// A lost part placed again: same shards, a new worker and token, what it had done skipped.
void Manager::propose_dispatch(const std::string& id, Slot s, NodeId worker, std::uint32_t cores) {
  const LedgerJob* j = ledger_.job(id);
  Run& r = *run_of(id, s);
  WorkerInfo& info = workers_.at(worker);
  if (info.open) info.half_open_probe = true;
  r.reserved = {{worker, cores}};
  LedgerEntry e = entry(LedgerOp::dispatch, id);
  e.workflow = static_cast<std::uint32_t>(s.wf);
  e.part = s.part;
  e.worker = worker;
  e.cores = cores;
  e.token = next_token(id, *j);
  const std::uint64_t token = e.token;
  propose_for_run(std::move(e), [this, id, s, token](LedgerOutcome o) {
    const LedgerJob* job = ledger_.job(id);
    if (o != LedgerOutcome::applied || job == nullptr || job->workflows[s.wf].parts[s.part].token != token) {
      log::info("manager", "dispatch_not_recorded", "job={} workflow={} part={} outcome={}", log::quoted(id), s.wf,
                s.part, name(o));
      return;
    }
    sent_dispatch(id, s);
  });
}

// A recorded placement goes out to its worker, unless the job ended meanwhile (a cancel committed in
// the same batch): nothing may start then. Its run's stop is confirmed by the worker, which never
// saw this token.
void Manager::sent_dispatch(const std::string& id, Slot s) {
  const LedgerJob* job = ledger_.job(id);
  const LedgerPart& p = job->workflows[s.wf].parts[s.part];
  const std::string& name = job->spec.workflows[s.wf].name;
  if (terminal(job->state)) {
    stats_.dispatches_withheld++;
    log::info("manager", "dispatch_withheld", "job={} workflow={} part={} token={} job_state={}", log::quoted(id),
              log::quoted(name), s.part, p.token, cluster::name(job->state));
    return;
  }
  stats_.dispatches++;
  if (attempts_.size() >= 10'000) attempts_.pop_front();
  attempts_.push_back(Attempt{id, name, p.worker, p.token, s.part});
  log::info("manager", "dispatch",
            "job={} workflow={} part={} worker={} cores={} shards={}+{}/{} skip={} token={} attempt={}",
            log::quoted(id), log::quoted(name), s.part, p.worker, p.cores, p.shard_first, p.cores,
            job->workflows[s.wf].shard_total, p.skip, p.token, p.attempts);
  send_dispatch(id, s);
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
  std::vector<std::pair<std::string, Slot>> todo;
  for (const auto& [id, j] : ledger_.jobs())
    for (const Slot& s : live_parts(j)) todo.emplace_back(id, s);
  for (const auto& [id, s] : todo)
    if (const LedgerJob* j = ledger_.job(id)) check_run(id, *j, s);
}

// One live attempt: its stop deadline, an unacknowledged dispatch, a silent worker (per-execution
// liveness, whatever SWIM says), a stuck part.
void Manager::check_run(const std::string& id, const LedgerJob& j, Slot s) {
  Run* r = run_of(id, s);
  if (r == nullptr || r->proposing || s.part >= j.workflows[s.wf].parts.size()) return;
  const LedgerPart& p = j.workflows[s.wf].parts[s.part];
  if (!live(p.state)) return;
  const std::string& name = j.spec.workflows[s.wf].name;
  const Instant now = ctx_->now();
  if (r->stopping) {
    if (now < r->stop_deadline) return;
    stats_.stops_unconfirmed++;
    lose(id, s, "stop not confirmed", false, false,
         fmt::format("worker {} did not confirm the stop of '{}' part {}", p.worker, name, s.part));
    return;
  }
  auto info = workers_.find(p.worker);
  const Instant heard = std::max(info == workers_.end() ? Instant{0} : info->second.last_heartbeat, leading_since_);
  if (now - heard >= cfg_.exec_timeout) {
    stats_.silent_workers++;
    lose(id, s, fmt::format("no heartbeat from worker {} for {} ms", p.worker, ms(now - heard)), true);
    return;
  }
  if (!r->acked && now >= r->ack_deadline) {
    stats_.dispatch_resends++;
    circuit_error(p.worker);
    r->ack_deadline = now + cfg_.dispatch_ack_timeout;
    send_dispatch(id, s);
    return;
  }
  if (r->acked && j.spec.stuck_ms > 0 && now - r->last_progress >= std::chrono::milliseconds(j.spec.stuck_ms)) {
    stats_.stuck++;
    log::warn("manager", "workflow_stuck", "job={} workflow={} part={} worker={} no_progress_ms={}", log::quoted(id),
              log::quoted(name), s.part, p.worker, j.spec.stuck_ms);
    StopExec stop{id, name, p.token, raft_->term(), s.part};
    reply(p.worker, MsgType::stop_exec, stop);
    lose(id, s, fmt::format("stuck: no progress for {} ms", j.spec.stuck_ms), true);
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
  std::vector<std::pair<std::string, Slot>> lost;
  for (const auto& [id, j] : ledger_.jobs())
    for (const Slot& s : live_parts(j))
      if (j.workflows[s.wf].parts[s.part].worker == node) lost.emplace_back(id, s);
  for (const auto& [id, s] : lost) lose(id, s, "worker died", true);
}

// ---------------------------------------------------------------- deadlines, retention

// Ends a live job in `state` with `why` (a job_done entry carrying the leader's totals); `applied` is
// counted once the entry applies. One job-level entry at a time (Live::proposing).
void Manager::propose_job_end(const std::string& id, JobState state, std::string why, std::uint64_t& applied) {
  auto it = live_.find(id);
  if (it == live_.end() || it->second.proposing) return;
  it->second.proposing = true;
  LedgerEntry e = entry(LedgerOp::job_done, id);
  e.state = static_cast<std::uint8_t>(state);
  e.error = std::move(why);
  e.part_progress = progress_of(id);
  auto clear = [this, id] {
    if (auto l = live_.find(id); l != live_.end()) l->second.proposing = false;
  };
  propose(
      std::move(e),
      [clear, &applied](LedgerOutcome o) {
        clear();
        if (o == LedgerOutcome::applied) applied++;
      },
      [clear](const Status&) { clear(); });
}

void Manager::deadlines_pass() {
  const Instant now = ctx_->now();
  for (const auto& [id, j] : ledger_.jobs()) {
    if (terminal(j.state)) continue;
    Live& l = live_of(id, j);
    if (l.proposing) continue;
    if (j.spec.timeout_ms > 0 && elapsed_ms(id) >= j.spec.timeout_ms) {
      log::info("manager", "job_timeout", "job={} timeout_ms={}", log::quoted(id), j.spec.timeout_ms);
      propose_job_end(id, JobState::timeout, fmt::format("job timed out after {} ms", j.spec.timeout_ms),
                      stats_.timeouts);
      continue;
    }
    std::uint64_t total = 0;
    for (const auto& runs : l.runs)
      for (const Run& r : runs) total += r.completed + r.failed;
    if (now < l.next_checkpoint || total == l.checkpointed) continue;
    l.next_checkpoint = now + cfg_.checkpoint_every;
    l.checkpointed = total;
    LedgerEntry e = entry(LedgerOp::checkpoint, id);
    e.part_progress = progress_of(id);
    stats_.checkpoints++;
    propose(std::move(e), nullptr);
  }
}

void Manager::retention_pass() {
  const Instant now = ctx_->now();
  rejections_.expire(now);
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
    std::set<std::tuple<std::string, std::string, std::uint32_t>> reported;
    for (const auto& e : m.execs) reported.emplace(e.job_id, e.workflow, e.part);
    std::vector<std::pair<std::string, Slot>> lost;
    for (const auto& [id, j] : ledger_.jobs())
      for (const Slot& s : live_parts(j))
        if (j.workflows[s.wf].parts[s.part].worker == from &&
            reported.count({id, j.spec.workflows[s.wf].name, s.part}) == 0)
          lost.emplace_back(id, s);
    for (const auto& [id, s] : lost) lose(id, s, "worker restarted", true);
  }
  reply(from, MsgType::heartbeat_ack, ack);
}

// The ready leader judges every execution a worker reports against the ledger: the current
// attempt of a part is confirmed; an older token, an ended or unknown part, or one being stopped,
// stops.
void Manager::collect_stops(NodeId from, const Heartbeat& m, HeartbeatAck& ack) {
  for (const auto& e : m.execs) {
    const LedgerJob* j = ledger_.job(e.job_id);
    const auto i = j ? wf_index(*j, e.workflow) : std::nullopt;
    if (j == nullptr || !i || e.part >= std::max<std::size_t>(1, j->workflows[*i].parts.size())) {
      ack.stop.push_back(StopItem{e.job_id, e.workflow, e.token, e.part});
      continue;
    }
    const LedgerWorkflow& w = j->workflows[*i];
    const std::uint64_t token = w.parts.empty() ? 0 : w.parts[e.part].token;
    if (e.token > token) {
      stats_.fence_rejects++;  // never issued by this ledger: not ours to judge
      log::warn("manager", "unknown_token", "worker={} job={} workflow={} part={} token={} ledger_token={}", from,
                log::quoted(e.job_id), log::quoted(e.workflow), e.part, e.token, token);
      continue;
    }
    const LedgerPart& p = w.parts[e.part];
    Run* r = run_of(e.job_id, Slot{*i, e.part});
    const bool current = e.token == p.token && p.worker == from && live(p.state);
    if (!current || terminal(j->state) || w.stop_requested || (r != nullptr && r->stopping)) {
      ack.stop.push_back(StopItem{e.job_id, e.workflow, e.token, e.part});
      continue;
    }
    if (r != nullptr && !r->acked) {
      r->acked = true;
      r->last_progress = ctx_->now();
    }
  }
}

// The leader's run of the attempt a worker reports on: this manager leads, the part is live, and
// the report names its current token and worker. Otherwise nullptr (a stale or foreign report).
Manager::Run* Manager::current_run(NodeId from, const std::string& job, const std::string& workflow, std::uint32_t part,
                                   std::uint64_t token, Slot& slot) {
  const LedgerJob* j = ledger_.job(job);
  const auto i = j ? wf_index(*j, workflow) : std::nullopt;
  if (!is_leader() || !i || part >= j->workflows[*i].parts.size()) return nullptr;
  const LedgerPart& p = j->workflows[*i].parts[part];
  if (p.token != token || p.worker != from || !live(p.state)) return nullptr;
  slot = Slot{*i, part};
  return run_of(job, slot);
}

void Manager::handle_dispatch_ack(NodeId from, const DispatchAck& m) {
  Slot s;
  Run* r = current_run(from, m.job_id, m.workflow, m.part, m.token, s);
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
  log::warn("manager", "dispatch_refused", "job={} workflow={} part={} worker={} code={} error={}",
            log::quoted(m.job_id), log::quoted(m.workflow), m.part, from, name(m.code), log::quoted(m.error));
  if (m.code == Err::overloaded) {
    // Lost a race for cores: refresh the worker's capacity and try again at the next pass. Not an
    // error of the worker, so its circuit stays closed.
    stats_.capacity_refusals++;
    if (info != workers_.end()) {
      info->second.available = std::min(m.available_cores, info->second.total);
      info->second.half_open_probe = false;
    }
    r->retry_at = ctx_->now();
    lose(m.job_id, s, m.error, false, true);
    return;
  }
  if (m.code == Err::fence) {  // the worker saw this token already and no longer has it
    lose(m.job_id, s, "refused by the worker: " + m.error, false);
    return;
  }
  circuit_error(from);
  r->backoff = r->backoff.count() == 0 ? cfg_.requeue_backoff : std::min(r->backoff * 2, cfg_.requeue_backoff_max);
  r->retry_at = ctx_->now() + r->backoff;
  lose(m.job_id, s, "refused by the worker: " + m.error, false, true);
}

void Manager::handle_progress(NodeId from, const Progress& m) {
  Slot s;
  Run* r = current_run(from, m.job_id, m.workflow, m.part, m.token, s);
  if (r == nullptr) return;
  r->acked = true;
  if (m.completed != r->completed || m.failed != r->failed) r->last_progress = ctx_->now();
  r->completed = std::max(r->completed, m.completed);
  r->failed = std::max(r->failed, m.failed);
  r->started = std::max({r->started, m.started, r->completed + r->failed});
}

// A result is acknowledged to the worker only once the ledger holds what it changed (or it is
// stale and changes nothing): the worker re-sends it until then, to whoever leads.
void Manager::handle_result(NodeId from, ResultMsg& m) {
  if (!is_leader()) return;  // the leader answers; the worker keeps the result until then
  ResultAck ack{m.job_id, m.workflow, m.token, m.part};
  const LedgerJob* j = ledger_.job(m.job_id);
  const auto i = j ? wf_index(*j, m.workflow) : std::nullopt;
  const LedgerPart* p = i && m.part < j->workflows[*i].parts.size() ? &j->workflows[*i].parts[m.part] : nullptr;
  if (p == nullptr || m.token != p->token || !live(p->state)) {
    if (p != nullptr && m.token == p->token)
      stats_.duplicate_results++;
    else
      stats_.stale_results++;
    reply(from, MsgType::result_ack, ack);  // nothing left to change: let the worker drop it
    return;
  }
  const Slot s{*i, m.part};
  Run* r = run_of(m.job_id, s);
  if (r == nullptr || r->proposing) return;  // an entry for this attempt is in flight; the worker re-sends
  const bool stopping = r->stopping || terminal(j->state) || j->workflows[*i].stop_requested;
  if (m.outcome == Outcome::lost || (m.outcome == Outcome::cancelled && !stopping)) {
    lose(m.job_id, s, fmt::format("{} on the worker: {}", m.outcome == Outcome::lost ? "lost" : "cancelled", m.error),
         m.outcome == Outcome::lost);
    return;
  }
  stats_.results++;
  LedgerEntry e = entry(LedgerOp::wf_done, m.job_id);
  e.workflow = static_cast<std::uint32_t>(*i);
  e.part = m.part;
  e.token = m.token;
  e.state = static_cast<std::uint8_t>(m.outcome == Outcome::completed ? WfState::completed
                                      : m.outcome == Outcome::failed  ? WfState::failed
                                                                      : WfState::cancelled);
  e.completed = m.completed;
  e.failed = m.failed;
  e.error = m.error;
  e.stats = std::move(m.stats);
  for (auto& [k, v] : m.published) e.published.emplace_back(m.workflow + "." + k, std::move(v));
  log::info("manager", "workflow_result", "job={} workflow={} part={} outcome={} completed={} failed={} token={}",
            log::quoted(m.job_id), log::quoted(m.workflow), m.part, static_cast<int>(m.outcome), m.completed, m.failed,
            m.token);
  propose_for_run(std::move(e), [this, from, ack](LedgerOutcome o) {
    ResultAck a = ack;
    reply(from, MsgType::result_ack, a);
    if (o == LedgerOutcome::applied) schedule_soon();  // its cores are free: the next job need not wait a tick
  });
}

// A worker that stopped the attempt sends its result (with the statistics gathered until then)
// next: the leader waits for it until the stop deadline. A worker that does not run the attempt
// ends it at once, cancelled with the totals the leader saw.
void Manager::handle_stop_ack(NodeId from, const StopAck& m) {
  Slot s;
  Run* r = current_run(from, m.job_id, m.workflow, m.part, m.token, s);
  if (r == nullptr || !r->stopping || r->proposing || m.stopped) return;
  LedgerEntry e = entry(LedgerOp::wf_done, m.job_id);
  e.workflow = static_cast<std::uint32_t>(s.wf);
  e.part = s.part;
  e.token = m.token;
  e.state = static_cast<std::uint8_t>(WfState::cancelled);
  e.completed = r->completed;
  e.failed = r->failed;
  propose_for_run(std::move(e), nullptr);
}

}  // namespace hs::manager
