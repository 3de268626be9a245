// The manager role: lifecycle, leadership, the client protocol and job views. Scheduling, worker
// traffic and the background concerns are in dispatch.cpp. See manager.hpp and docs/cluster.md.
#include "hyperscale/manager/manager.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <exception>

#include "hyperscale/base/assert.hpp"
#include "hyperscale/base/log.hpp"
#include "hyperscale/cluster/intake.hpp"

namespace hs::manager {

using namespace cluster;

namespace {

bool live(WfState s) { return s == WfState::dispatched || s == WfState::running; }

// Timer tags of the concerns (Manager::Concern: 1..6, then the one-shot 7).
constexpr std::array<const char*, 8> kConcernNames{"none",      "schedule", "liveness", "deadlines",
                                                   "retention", "windows",  "gates",    "schedule_soon"};
const char* concern_name(std::uint64_t c) { return c < kConcernNames.size() ? kConcernNames[c] : "unknown"; }

}  // namespace

Manager::Manager(ManagerConfig cfg, RaftConfig raft, std::function<bool(NodeId)> alive)
    : cfg_(std::move(cfg)), alive_(std::move(alive)), ledger_(JobLedger::Limits{cfg_.max_jobs}) {
  if (raft.voters.empty()) raft.voters = cfg_.managers;
  raft_ = std::make_unique<RaftNode>(std::move(raft), ledger_);
  raft_->set_on_change([this] { on_raft_change(); });
  // A manager heartbeats its gates under its datacenter's name: without one no gate could place it.
  HS_ASSERT(cfg_.gates.empty() || !cfg_.datacenter.empty(),
            "manager: {} gates configured but no datacenter name (ManagerConfig::datacenter)", cfg_.gates.size());
  HS_ASSERT(cfg_.gates.empty() || cfg_.gate_heartbeat.count() > 0, "manager: gate_heartbeat must be positive ({} ns)",
            cfg_.gate_heartbeat.count());
  for (NodeId g : cfg_.gates) gates_.try_emplace(g);
}

Manager::~Manager() = default;

bool Manager::is_leader() const noexcept { return leading_ && raft_->is_ready_leader(); }

bool Manager::leads(const std::string& job_id) const { return is_leader() && ledger_.job(job_id) != nullptr; }

std::optional<std::size_t> Manager::wf_index(const LedgerJob& j, const std::string& name) {
  for (std::size_t i = 0; i < j.spec.workflows.size(); ++i)
    if (j.spec.workflows[i].name == name) return i;
  return std::nullopt;
}

Manager::Run* Manager::run_of(const std::string& id, Slot s) {
  auto it = live_.find(id);
  if (it == live_.end() || s.wf >= it->second.runs.size() || s.part >= it->second.runs[s.wf].size()) return nullptr;
  return &it->second.runs[s.wf][s.part];
}

// ---------------------------------------------------------------- lifecycle

void Manager::on_start(node::Context& ctx) {
  ctx_ = &ctx;
  self_ = ctx.self();
  seen_now_ = ctx.now();
  HS_ASSERT(std::find(cfg_.managers.begin(), cfg_.managers.end(), self_) != cfg_.managers.end(),
            "manager: self {} is not in its own manager list ({} managers)", self_, cfg_.managers.size());
  for (std::uint64_t c = kSchedule; c < kConcerns; ++c) {
    if (c == kGates && cfg_.gates.empty()) continue;  // no gate tier
    ctx.set_timer(c == kGates ? cfg_.gate_heartbeat : cfg_.tick, c);
  }
  on_raft_change();  // the RaftNode may have started (and led) before this component
}

void Manager::on_timer(node::Context& ctx, node::TimerId, std::uint64_t tag) {
  ctx_ = &ctx;
  seen_now_ = ctx.now();
  if (tag == kScheduleSoon) {
    schedule_soon_armed_ = false;
    return run_concern(kSchedule);
  }
  if (tag < kSchedule || tag >= kConcerns) {
    log::error("manager", "unknown_timer", "tag={}", tag);
    return;
  }
  const Duration every = tag == kRetention ? std::max<Duration>(cfg_.tick, std::chrono::seconds(1))
                         : tag == kGates   ? cfg_.gate_heartbeat
                                           : cfg_.tick;
  ctx.set_timer(every, tag);  // re-armed first: a failed pass does not stop the concern
  run_concern(static_cast<Concern>(tag));
}

// The error hook of every concern: a pass that throws is logged with its name and counted; the
// concern runs again at its next period.
void Manager::run_concern(Concern c) {
  try {
    if (c == kGates) {  // every manager, leader or not
      gates_pass();
      return;
    }
    if (!is_leader()) {
      if (c == kRetention) retention_pass();  // remembered rejections expire on every manager
      return;
    }
    switch (c) {
      case kSchedule:
        schedule_pass();
        break;
      case kLiveness:
        liveness_pass();
        break;
      case kDeadlines:
        deadlines_pass();
        break;
      case kRetention:
        retention_pass();
        break;
      case kWindows:
        windows_pass();
        break;
      default:
        break;
    }
  } catch (const std::exception& e) {
    stats_.timer_errors++;
    log::error("manager", "concern_failed", "concern={} error={}", concern_name(c), log::quoted(e.what()));
  }
}

void Manager::on_raft_change() {
  if (ctx_ == nullptr) return;
  seen_now_ = ctx_->now();
  const bool ready = raft_->is_ready_leader();
  if (ready == leading_) return;
  leading_ = ready;
  if (ready) {
    leading_since_ = ctx_->now();
    log::info("manager", "leading", "self={} term={} jobs={}", self_, raft_->term(), ledger_.size());
    adopt();
  } else {
    log::info("manager", "not_leading", "self={} term={} leader={}", self_, raft_->term(), raft_->leader_id());
    // In-flight proposals answer their clients through their Done, except the cancels waiting in
    // a job's Live (gone with it): they are answered here (retryable: the entry may still commit,
    // and the retry then finds the job cancelled), and no longer count as waiters.
    for (auto& [id, l] : live_) {
      for (const auto& [client, req] : l.cancel_waiters) {
        CancelReply c;
        c.req = req;
        c.code = Err::not_leader;
        c.error = "this manager stopped leading before the cancel was recorded; retry it";
        c.leader = raft_->leader_id();
        reply(client, MsgType::cancel_reply, c);
      }
      waiters_ -= l.cancel_waiters.size();
    }
    live_.clear();
  }
}

// A new ready leader: every job of the ledger is led from here. Runs follow the ledger's tokens;
// whether each live attempt still runs is learned from the workers' heartbeats (or a re-sent
// dispatch with the same token, which a worker that has it answers as a duplicate).
void Manager::adopt() {
  live_.clear();
  const Instant now = ctx_->now();
  for (const auto& [id, j] : ledger_.jobs()) {
    Live& l = live_of(id, j);
    const auto parts = live_parts(j);
    for (const Slot& s : parts) l.runs[s.wf][s.part].ack_deadline = now + cfg_.worker_stale;
    const bool any_live = !parts.empty();
    if (any_live || !terminal(j.state)) stats_.takeovers++;
    reconcile(id);
  }
}

Manager::Live& Manager::live_of(const std::string& id, const LedgerJob& j) {
  auto [it, fresh] = live_.try_emplace(id);
  Live& l = it->second;
  if (fresh) {
    l.started = ctx_->now();
    l.base_elapsed_ms = j.elapsed_ms;
    l.runs.resize(j.workflows.size());
    l.token_issued = j.token_hw;
    for (std::size_t i = 0; i < j.workflows.size(); ++i) {
      const auto& parts = j.workflows[i].parts;
      l.runs[i].resize(std::max<std::size_t>(1, parts.size()));
      for (std::size_t k = 0; k < parts.size(); ++k) {  // the current attempts' acknowledged totals
        Run& r = l.runs[i][k];
        r.token = parts[k].token;
        r.last_progress = ctx_->now();
        r.completed = parts[k].completed - parts[k].base_completed;
        r.failed = parts[k].failed - parts[k].base_failed;
        r.started = parts[k].started;
      }
    }
  }
  return l;
}

// Brings the leader's view of a job in line with the ledger after an entry applied: a new token
// starts a new run; live workflows of an ended job, or whose stop was requested, are stopped.
void Manager::reconcile(const std::string& id) {
  if (!is_leader()) return;
  const LedgerJob* j = ledger_.job(id);
  if (j == nullptr) {
    live_.erase(id);
    return;
  }
  Live& l = live_of(id, *j);
  l.token_issued = std::max(l.token_issued, j->token_hw);
  for (std::size_t i = 0; i < j->workflows.size(); ++i) {
    const LedgerWorkflow& w = j->workflows[i];
    if (l.runs[i].size() < w.parts.size()) l.runs[i].resize(w.parts.size());
    for (std::uint32_t k = 0; k < w.parts.size(); ++k) {
      const LedgerPart& p = w.parts[k];
      Run& r = l.runs[i][k];
      if (p.token != r.token) {
        const Run old = r;
        r = Run{};
        r.token = p.token;
        r.retry_at = old.retry_at;
        r.backoff = old.backoff;
        r.ack_deadline = ctx_->now() + cfg_.dispatch_ack_timeout + cfg_.tick;
        r.last_progress = ctx_->now();
      }
      if (live(p.state) && (terminal(j->state) || w.stop_requested) && !r.stopping)
        send_stop(id, Slot{i, k}, terminal(j->state) ? name(j->state) : "workflow stopped");
    }
  }
  const bool all_done =
      std::all_of(j->workflows.begin(), j->workflows.end(), [](const LedgerWorkflow& w) { return terminal(w.state); });
  if (terminal(j->state) && all_done && l.terminal_at.count() < 0) l.terminal_at = ctx_->now();
  // A workflow that ended has all its windows (each part's came before its result): close them.
  for (std::size_t i = 0; i < l.windows.size() && i < j->workflows.size(); ++i)
    if (l.windows[i].merger && terminal(j->workflows[i].state)) l.windows[i].merger->seal();
}

LedgerEntry Manager::entry(LedgerOp op, const std::string& job_id) const {
  LedgerEntry e;
  e.op = op;
  e.term = raft_->term();
  e.job_id = job_id;
  e.elapsed_ms = ledger_.job(job_id) != nullptr ? elapsed_ms(job_id) : 0;
  return e;
}

bool Manager::propose(LedgerEntry e, OnApplied applied, OnFailed failed) {
  stats_.proposals++;
  const LedgerOp op = e.op;
  const std::string job = e.job_id;
  std::weak_ptr<bool> owner = token_;
  Status st = raft_->propose(encode_entry(e), [this, owner, op, job, applied = std::move(applied), failed](
                                                  const Status& s, std::uint64_t, std::uint64_t result) {
    if (owner.expired()) return;
    if (ctx_ != nullptr) seen_now_ = ctx_->now();
    if (!s.ok()) {
      stats_.proposals_failed++;
      log::info("manager", "entry_not_committed", "op={} job={} error={}", name(op), log::quoted(job),
                log::quoted(s.to_string()));
      if (failed) failed(s);
      return;
    }
    if (applied) applied(static_cast<LedgerOutcome>(result));
    reconcile(job);
  });
  if (!st.ok()) {
    stats_.proposals_failed++;
    log::warn("manager", "entry_refused", "op={} job={} error={}", name(op), log::quoted(job),
              log::quoted(st.to_string()));
    if (failed) failed(st);
    return false;
  }
  return true;
}

std::uint64_t Manager::elapsed_ms(const std::string& id) const {
  auto it = live_.find(id);
  if (it == live_.end()) {
    const LedgerJob* j = ledger_.job(id);
    return j == nullptr ? 0 : j->elapsed_ms;
  }
  const auto ran = std::chrono::duration_cast<std::chrono::milliseconds>(ctx_->now() - it->second.started).count();
  return it->second.base_elapsed_ms + static_cast<std::uint64_t>(std::max<std::int64_t>(0, ran));
}

// What the workers reported of every live part's current attempt.
std::vector<PartProgress> Manager::progress_of(const std::string& id) const {
  std::vector<PartProgress> out;
  auto it = live_.find(id);
  const LedgerJob* j = ledger_.job(id);
  if (it == live_.end() || j == nullptr) return out;
  for (const Slot& s : live_parts(*j)) {
    if (s.wf >= it->second.runs.size() || s.part >= it->second.runs[s.wf].size()) continue;
    const Run& r = it->second.runs[s.wf][s.part];
    if (r.token != j->workflows[s.wf].parts[s.part].token) continue;
    out.push_back(PartProgress{static_cast<std::uint32_t>(s.wf), s.part, r.completed, r.failed, r.started});
  }
  return out;
}

// ---------------------------------------------------------------- messages

template <class T>
static bool parse(std::span<const std::uint8_t> body, T& m, ManagerStats& st, NodeId from, const char* what) {
  const char* why = nullptr;
  if (decode(body, m, &why)) return true;
  st.decode_errors++;
  log::warn("manager", "decode_error", "from={} type={} error={}", from, what, why);
  return false;
}

void Manager::on_message(node::Context& ctx, NodeId from, std::span<const std::uint8_t> msg) {
  ctx_ = &ctx;
  seen_now_ = ctx.now();
  if (msg.empty()) {
    stats_.decode_errors++;
    log::warn("manager", "decode_error", "from={} error=\"empty message\"", from);
    return;
  }
  dispatch_message(from, static_cast<MsgType>(msg[0]), msg.subspan(1));
}

void Manager::dispatch_message(NodeId from, MsgType type, std::span<const std::uint8_t> body) {
#define HS_ON(TYPE, STRUCT, CALL)                  \
  case MsgType::TYPE: {                            \
    STRUCT m;                                      \
    if (parse(body, m, stats_, from, #TYPE)) CALL; \
    return;                                        \
  }
  switch (type) {
    HS_ON(submit, Submit, handle_submit(from, m))
    HS_ON(status_query, StatusQuery, handle_status(from, m))
    HS_ON(cancel_job, CancelJob, handle_cancel(from, m))
    HS_ON(cancel_workflow, CancelWorkflow, handle_cancel_workflow(from, m))
    HS_ON(heartbeat, Heartbeat, handle_heartbeat(from, m))
    HS_ON(dispatch_ack, DispatchAck, handle_dispatch_ack(from, m))
    HS_ON(progress, Progress, handle_progress(from, m))
    HS_ON(result, ResultMsg, handle_result(from, m))
    HS_ON(stop_ack, StopAck, handle_stop_ack(from, m))
    HS_ON(window_batch, WindowBatch, handle_window_batch(from, m))
    HS_ON(watch_query, WatchQuery, handle_watch(from, m))
    HS_ON(dc_heartbeat_ack, DcHeartbeatAck, handle_dc_heartbeat_ack(from, m))
    HS_ON(job_fence, JobFence, handle_job_fence(from, m))
    case MsgType::node_query: {
      NodeQuery m;
      if (!parse(body, m, stats_, from, "node_query")) return;
      NodeStatus st = node_status();
      st.req = m.req;
      reply(from, MsgType::node_status, st);
      return;
    }
    default:
      stats_.unknown_messages++;
      log::warn("manager", "unknown_message", "from={} type={}", from, static_cast<int>(type));
      return;
  }
#undef HS_ON
}

SubmitAck Manager::reject(std::uint64_t req, Err code, std::string error) const {
  SubmitAck a;
  a.req = req;
  a.accepted = false;
  a.code = code;
  a.error = std::move(error);
  if (code == Err::not_leader) a.leader = raft_->leader_id();
  if (code == Err::overloaded || code == Err::no_quorum || code == Err::unavailable)
    a.retry_after_ms = cfg_.retry_after_ms;
  return a;
}

std::optional<std::string> Manager::validate(const JobSpec& s) const {
  if (auto err = check_job(s, cfg_.max_workflows_per_job, cfg_.max_plan_bytes)) return err;
  std::uint32_t largest = 0;
  std::uint64_t total = 0;  // a workflow of several parts may take cores on every worker
  for (const auto& [id, info] : workers_)
    if (!alive_ || alive_(id)) largest = std::max(largest, info.total), total += info.total;
  for (const auto& w : s.workflows) {
    if (w.one_part && largest > 0 && w.cores > largest)
      return fmt::format("workflow '{}' runs on one worker and needs {} cores; the largest worker has {}", w.name,
                         w.cores, largest);
    if (total > 0 && w.cores > total)
      return fmt::format("workflow '{}' needs {} cores; the datacenter's workers have {} in all", w.name, w.cores,
                         total);
  }
  // The accept entry carries the whole job and must fit one Raft message (libraft 0.15 sends an
  // entry whole); leave room for the entry's other fields and the message header.
  JobSpec copy = s;
  Enc enc;
  enc(copy);
  const std::size_t limit = raft_->config().max_message_bytes;
  if (enc.w.out().size() + 1024 > limit)
    return fmt::format("the job is {} bytes encoded; the limit is {} (one replicated log entry)", enc.w.out().size(),
                       limit - 1024);
  return std::nullopt;
}

void Manager::remember_rejection(const std::string& key, std::uint64_t digest, const SubmitAck& a) {
  rejections_.remember(key, digest, a, ctx_->now());
  stats_.rejections_evicted = rejections_.evicted();
}

// A submission the ledger (or an in-flight accept) already answers: the same job again, a key
// reused, a remembered rejection. Returns true when it was answered.
bool Manager::answer_known(NodeId from, const Submit& m, std::uint64_t digest) {
  const JobSpec& spec = m.spec;
  const std::string& key = spec.idempotency_key;
  auto accepted = [&](const std::string& job_id) {
    stats_.duplicates++;
    SubmitAck a;
    a.req = m.req;
    a.accepted = true;
    a.job_id = job_id;
    a.leader = raft_->leader_id();
    reply(from, MsgType::submit_ack, a);
    return true;
  };
  auto conflict = [&](std::string why) {
    stats_.conflicts++;
    SubmitAck a = reject(m.req, Err::conflict, std::move(why));
    reply(from, MsgType::submit_ack, a);
    return true;
  };
  if (!key.empty()) {
    if (auto r = rejections_.find(key, digest)) {  // (a different payload is evaluated afresh)
      SubmitAck a = *r;
      a.req = m.req;
      stats_.rejected++;
      reply(from, MsgType::submit_ack, a);
      return true;
    }
    if (auto id = ledger_.job_for_key(key)) {
      const LedgerJob* j = ledger_.job(*id);
      if (j != nullptr && j->digest == digest) return accepted(*id);
      return conflict(fmt::format("idempotency key '{}' was used for job {} with a different payload", key, *id));
    }
  }
  if (const LedgerJob* j = ledger_.job(spec.job_id)) {
    if (j->tombstone)
      return conflict(fmt::format("job '{}' was cancelled by its gate (fence {}) before it was submitted here",
                                  spec.job_id, j->gate_fence));
    if (j->digest == digest && j->spec.idempotency_key == key) return accepted(spec.job_id);
    return conflict(fmt::format("job id '{}' already exists with another payload", spec.job_id));
  }
  if (auto w = accepts_.find(spec.job_id); w != accepts_.end()) {
    if (w->second.digest != digest || w->second.key != key)
      return conflict(fmt::format("job id '{}' is being recorded with another payload", spec.job_id));
    if (waiters_ >= cfg_.max_waiters) {
      SubmitAck a = reject(m.req, Err::overloaded, "too many clients waiting for their jobs to be recorded");
      reply(from, MsgType::submit_ack, a);
      return true;
    }
    stats_.duplicates++;
    w->second.clients.emplace_back(from, m.req);
    ++waiters_;
    return true;
  }
  return false;
}

void Manager::handle_submit(NodeId from, Submit& m) {
  stats_.submits++;
  const std::uint64_t digest = digest_of(m.spec);
  if (answer_known(from, m, digest)) return;
  if (!is_leader()) {
    stats_.redirects++;
    SubmitAck a = reject(m.req, Err::not_leader, "this manager is not the datacenter leader");
    reply(from, MsgType::submit_ack, a);
    return;
  }
  if (auto err = validate(m.spec)) {
    stats_.rejected++;
    SubmitAck a = reject(m.req, Err::invalid, *err);
    log::info("manager", "submit_rejected", "job={} error={}", log::quoted(m.spec.job_id), log::quoted(*err));
    remember_rejection(m.spec.idempotency_key, digest, a);
    reply(from, MsgType::submit_ack, a);
    return;
  }
  const std::size_t active = accepts_.size() + ledger_.active();
  if (active >= cfg_.max_active_jobs || ledger_.size() + accepts_.size() >= cfg_.max_jobs ||
      waiters_ >= cfg_.max_waiters) {
    stats_.rejected++;
    SubmitAck a =
        reject(m.req, Err::overloaded,
               fmt::format("too many jobs ({} active, {} held, {} waiting)", active, ledger_.size(), waiters_));
    reply(from, MsgType::submit_ack, a);
    return;
  }
  propose_accept(from, m, digest);
}

void Manager::propose_accept(NodeId from, Submit& m, std::uint64_t digest) {
  JobSpec& spec = m.spec;
  spec.retry_budget = std::min(spec.retry_budget, cfg_.max_retry_budget);
  spec.workflow_retries = std::min(spec.workflow_retries, cfg_.max_workflow_retries);
  const std::string id = spec.job_id;
  Waiters& w = accepts_[id];
  w.digest = digest;
  w.key = spec.idempotency_key;
  w.clients.emplace_back(from, m.req);
  ++waiters_;
  LedgerEntry e = entry(LedgerOp::accept, id);
  e.spec = std::move(spec);
  e.digest = digest;
  e.gate_fence = m.gate_fence;
  log::info("manager", "job_received", "job={} workflows={} from={} gate_fence={}", log::quoted(id),
            e.spec.workflows.size(), from, m.gate_fence);
  auto answer = [this, id](bool ok, Err code, const std::string& error) {
    auto it = accepts_.find(id);
    if (it == accepts_.end()) return;
    for (const auto& [client, req] : it->second.clients) {
      SubmitAck a = ok ? SubmitAck{} : reject(req, code, error);
      a.req = req;
      if (ok) a.accepted = true, a.job_id = id, a.leader = raft_->leader_id();
      reply(client, MsgType::submit_ack, a);
    }
    waiters_ -= it->second.clients.size();
    accepts_.erase(it);
  };
  propose(
      std::move(e),
      [this, answer, id](LedgerOutcome o) {
        if (o == LedgerOutcome::applied || o == LedgerOutcome::duplicate) {
          stats_.accepted++;
          answer(true, Err::none, "");
          schedule_soon();
        } else if (o == LedgerOutcome::full) {
          stats_.rejected++;
          answer(false, Err::overloaded, "the job ledger is full");
        } else {
          stats_.conflicts++;
          answer(false, Err::conflict, fmt::format("job '{}' conflicts with a recorded job ({})", id, name(o)));
        }
      },
      [answer](const Status& st) {
        answer(false, Err::unavailable,
               fmt::format("the job could not be recorded ({}); retry with the same key", st.message()));
      });
}

void Manager::handle_status(NodeId from, const StatusQuery& m) {
  StatusReply r;
  r.req = m.req;
  if (const LedgerJob* j = ledger_.job(m.job_id)) {
    r.found = true;
    r.job = view(m.job_id, *j);
    if (m.with_plan)
      for (std::size_t i = 0; i < r.job.workflows.size() && i < j->spec.workflows.size(); ++i)
        r.job.workflows[i].plan = j->spec.workflows[i].plan;
  }
  reply(from, MsgType::status_reply, r);
}

void Manager::handle_cancel(NodeId from, const CancelJob& m) {
  stats_.cancels++;
  CancelReply r;
  r.req = m.req;
  const LedgerJob* j = ledger_.job(m.job_id);
  if (!is_leader()) {
    r.code = Err::not_leader;
    r.error = "this manager is not the datacenter leader";
    r.leader = raft_->leader_id();
  } else if (j == nullptr && m.gate_fence != 0) {
    cancel_unknown(from, m);  // a gate's cancel may overtake its submit: leave a tombstone
    return;
  } else if (j == nullptr) {
    r.code = Err::not_found;
    r.error = fmt::format("no job '{}'", m.job_id);
  } else if (m.gate_fence != 0 && m.gate_fence < j->gate_fence) {
    stats_.fence_rejects++;
    r.code = Err::fence;
    r.error = fmt::format("stale gate fence {} (current {})", m.gate_fence, j->gate_fence);
    log::warn("manager", "gate_fence_refused", "job={} from={} op=cancel gate_fence={} current={}",
              log::quoted(m.job_id), from, m.gate_fence, j->gate_fence);
  } else if (m.fence != 0 && m.fence != j->token_hw) {
    stats_.fence_rejects++;
    r.code = Err::fence;
    r.error = fmt::format("stale fence token {} (current {})", m.fence, j->token_hw);
  } else if (j->state == JobState::cancelled) {
    r.success = true;
    r.already_cancelled = true;
  } else if (terminal(j->state)) {
    r.already_completed = true;
    r.error = fmt::format("the job already ended: {}", name(j->state));
  } else {
    Live& l = live_of(m.job_id, *j);
    if (waiters_ >= cfg_.max_waiters) {
      r.code = Err::overloaded;
      r.error = "too many clients waiting for their requests to be recorded";
      reply(from, MsgType::cancel_reply, r);
      return;
    }
    l.cancel_waiters.emplace_back(from, m.req);
    ++waiters_;
    if (l.cancel_waiters.size() > 1) return;  // the first cancel is in flight: answered together
    l.cancel_count = static_cast<std::uint32_t>(std::count_if(
        j->workflows.begin(), j->workflows.end(), [](const LedgerWorkflow& w) { return !terminal(w.state); }));
    LedgerEntry e = entry(LedgerOp::cancel, m.job_id);
    e.error = m.reason.empty() ? "cancelled by request" : m.reason;
    e.part_progress = progress_of(m.job_id);
    e.gate_fence = m.gate_fence;  // the ledger refuses it below the job's (a JobFence may commit first)
    const std::string id = m.job_id;
    const std::uint64_t gate_fence = m.gate_fence;
    auto answer = [this, id, gate_fence](bool ok, LedgerOutcome o, const std::string& error) {
      auto it = live_.find(id);
      if (it == live_.end()) return;
      const LedgerJob* job = ledger_.job(id);
      const bool stale = ok && o == LedgerOutcome::stale_token;
      if (stale) stats_.fence_rejects++;
      for (const auto& [client, req] : it->second.cancel_waiters) {
        CancelReply c;
        c.req = req;
        c.success = ok && (o == LedgerOutcome::applied || (job && job->state == JobState::cancelled));
        c.cancelled_workflow_count = o == LedgerOutcome::applied ? it->second.cancel_count : 0;
        c.already_cancelled = ok && o != LedgerOutcome::applied && c.success;
        c.already_completed = ok && !c.success && !stale;
        if (!ok) c.code = Err::unavailable, c.error = error;
        if (ok && !c.success) c.error = fmt::format("the job already ended: {}", job ? name(job->state) : "retired");
        if (stale && !c.success) {
          c.code = Err::fence;
          c.error = fmt::format("stale gate fence {} (current {})", gate_fence, job ? job->gate_fence : 0);
        }
        reply(client, MsgType::cancel_reply, c);
      }
      waiters_ -= it->second.cancel_waiters.size();
      it->second.cancel_waiters.clear();
    };
    log::info("manager", "job_cancel", "job={} workflows={}", log::quoted(id), l.cancel_count);
    propose(
        std::move(e), [answer](LedgerOutcome o) { answer(true, o, ""); },
        [answer](const Status& st) {
          answer(false, LedgerOutcome::applied,
                 fmt::format("the cancel could not be recorded ({}); retry it", st.message()));
        });
    return;
  }
  reply(from, MsgType::cancel_reply, r);
}

// A gate's cancel of a job this datacenter does not hold (the leader's ledger, nor an accept in
// flight): its submit may still be on the way. A tombstone entry records the job id cancelled with
// the gate's fence, so that submit is refused (conflict) when it arrives instead of run; the
// tombstone is retired after retention_failed like any cancelled job.
void Manager::cancel_unknown(NodeId from, const CancelJob& m) {
  CancelReply r;
  r.req = m.req;
  if (!valid_id(m.job_id, 64)) {
    r.code = Err::invalid;
    r.error = "job id must be 1-64 characters of [A-Za-z0-9._-]";
  } else if (accepts_.count(m.job_id) != 0) {
    r.code = Err::unavailable;  // answered once it is recorded: the retry cancels the job itself
    r.error = fmt::format("job '{}' is being recorded; retry the cancel", m.job_id);
  } else if (ledger_.size() + accepts_.size() >= cfg_.max_jobs || waiters_ >= cfg_.max_waiters) {
    r.code = Err::overloaded;
    r.error = fmt::format("too many jobs or waiting clients ({} held, {} waiting)", ledger_.size(), waiters_);
  } else {
    ++waiters_;
    LedgerEntry e = entry(LedgerOp::tombstone, m.job_id);
    e.gate_fence = m.gate_fence;
    e.error = m.reason.empty() ? "cancelled by its gate before it was submitted here" : m.reason;
    log::info("manager", "job_tombstone", "job={} from={} gate_fence={}", log::quoted(m.job_id), from, m.gate_fence);
    const std::string id = m.job_id;
    const std::uint64_t req = m.req;
    propose(
        std::move(e),
        [this, from, id, req](LedgerOutcome o) {
          --waiters_;
          CancelReply c;
          c.req = req;
          if (o == LedgerOutcome::applied) {
            stats_.tombstones++;
            c.success = true;
          } else if (o == LedgerOutcome::duplicate) {  // another cancel of the gate left it first
            c.success = true;
            c.already_cancelled = true;
          } else if (o == LedgerOutcome::full) {
            c.code = Err::overloaded;
            c.error = "the job ledger is full";
          } else {  // conflict: the job was accepted meanwhile; the retry cancels it
            c.code = Err::unavailable;
            c.error = fmt::format("job '{}' changed meanwhile ({}); retry the cancel", id, name(o));
          }
          reply(from, MsgType::cancel_reply, c);
        },
        [this, from, req](const Status& st) {
          --waiters_;
          CancelReply c;
          c.req = req;
          c.code = Err::unavailable;
          c.error = fmt::format("the cancel could not be recorded ({}); retry it", st.message());
          reply(from, MsgType::cancel_reply, c);
        });
    return;
  }
  reply(from, MsgType::cancel_reply, r);
}

void Manager::handle_cancel_workflow(NodeId from, const CancelWorkflow& m) {
  CancelReply r;
  r.req = m.req;
  const LedgerJob* j = ledger_.job(m.job_id);
  const auto i = j ? wf_index(*j, m.workflow) : std::nullopt;
  if (!is_leader()) {
    r.code = Err::not_leader;
    r.error = "this manager is not the datacenter leader";
    r.leader = raft_->leader_id();
  } else if (j == nullptr || !i) {
    r.code = Err::not_found;
    r.error = j == nullptr ? fmt::format("no job '{}'", m.job_id)
                           : fmt::format("job '{}' has no workflow '{}'", m.job_id, m.workflow);
  } else if (j->workflows[*i].state == WfState::cancelled || j->workflows[*i].stop_requested) {
    r.success = true;
    r.already_cancelled = true;
  } else if (terminal(j->workflows[*i].state)) {
    r.already_completed = true;
    r.error = fmt::format("the workflow already ended: {}", name(j->workflows[*i].state));
  } else {
    LedgerEntry e = entry(LedgerOp::cancel_wf, m.job_id);
    e.workflow = static_cast<std::uint32_t>(*i);
    e.error = "cancelled by request";
    const std::uint64_t req = m.req;
    propose(
        std::move(e),
        [this, from, req](LedgerOutcome o) {
          CancelReply c;
          c.req = req;
          c.success = o == LedgerOutcome::applied || o == LedgerOutcome::duplicate;
          c.cancelled_workflow_count = o == LedgerOutcome::applied ? 1 : 0;
          c.already_cancelled = o == LedgerOutcome::duplicate;
          c.already_completed = !c.success;
          if (!c.success) c.error = fmt::format("the workflow already ended ({})", name(o));
          reply(from, MsgType::cancel_reply, c);
        },
        [this, from, req](const Status& st) {
          CancelReply c;
          c.req = req;
          c.code = Err::unavailable;
          c.error = fmt::format("the cancel could not be recorded ({}); retry it", st.message());
          reply(from, MsgType::cancel_reply, c);
        });
    return;
  }
  reply(from, MsgType::cancel_reply, r);
}

// ---------------------------------------------------------------- views

JobView Manager::view(const std::string& id, const LedgerJob& j) const {
  JobView v;
  v.job_id = id;
  v.state = j.state;
  v.leader = raft_->leader_id();
  v.retries_used = j.retries_used;
  v.retry_budget = j.spec.retry_budget;
  v.workflow_retries = j.spec.workflow_retries;
  v.error = j.error;
  v.cancel_errors = j.cancel_errors;
  v.fence = j.gate_fence;  // a gate's job: the highest fence of its owner seen (0: not a gate's)
  auto l = live_.find(id);
  auto run = [&](std::size_t i, std::size_t k) -> const Run* {
    if (l == live_.end() || i >= l->second.runs.size() || k >= l->second.runs[i].size()) return nullptr;
    return &l->second.runs[i][k];
  };
  for (std::size_t i = 0; i < j.workflows.size(); ++i) {
    const auto& w = j.workflows[i];
    WorkflowView wv;
    wv.name = j.spec.workflows[i].name;
    wv.state = w.state;
    wv.shard_total = w.shard_total;
    wv.lost = w.lost;
    bool any_running = false;
    for (std::size_t k = 0; k < w.parts.size();
         ++k) {  // a part's totals: the ledger's, or what its worker reported since
      const LedgerPart& p = w.parts[k];
      const Run* r = run(i, k);
      PartView pv{p.state,     p.worker, p.token, p.attempts, p.shard_first, p.cores,
                  p.completed, p.failed, p.lost,  p.error,    p.stats};
      if (r != nullptr && live(p.state) && !terminal(j.state) && r->token == p.token) {
        if (r->acked) pv.state = WfState::running;
        pv.completed = std::max(pv.completed, p.base_completed + r->completed);
        pv.failed = std::max(pv.failed, p.base_failed + r->failed);
      }
      any_running |= pv.state == WfState::running;
      wv.completed += pv.completed;
      wv.failed += pv.failed;
      wv.parts.push_back(std::move(pv));
    }
    if (live(w.state) && any_running) wv.state = WfState::running;
    wv.attempts = w.attempts;
    wv.cores = w.cores;
    wv.worker = w.worker;
    wv.token = w.token;
    wv.error = w.error;
    if (w.parts.size() == 1) wv.stats = w.parts[0].stats;  // several parts: clients merge the parts
    wv.published = w.published;
    const Run* r0 = run(i, 0);
    wv.enqueued = !terminal(j.state) && r0 != nullptr &&
                  ((w.state == WfState::pending && r0->waiting_cores) ||
                   std::any_of(w.parts.begin(), w.parts.end(), [&](const LedgerPart& p) {
                     const Run* r = run(i, &p - w.parts.data());
                     return p.state == WfState::pending && r != nullptr && r->waiting_cores;
                   }));
    v.completed += wv.completed;
    v.failed += wv.failed;
    v.workflows.push_back(std::move(wv));
  }
  return v;
}

std::optional<JobView> Manager::job(const std::string& id) const {
  const LedgerJob* j = ledger_.job(id);
  if (j == nullptr) return std::nullopt;
  return view(id, *j);
}

NodeStatus Manager::node_status() const {
  NodeStatus st;
  st.node = self_;
  st.is_leader = is_leader();
  st.term = raft_->term();
  st.leader = raft_->leader_id();
  st.peers = cfg_.managers;
  for (const auto& [wid, info] : workers_) {
    if (alive_ && !alive_(wid)) continue;
    WorkerView wv;
    wv.node = wid;
    wv.healthy = seen_now_ - info.last_heartbeat <= cfg_.worker_stale && info.health != Health::overloaded;
    wv.health = static_cast<std::uint8_t>(info.health);
    wv.total_cores = info.total;
    wv.available_cores = info.available;
    wv.circuit_open = info.open;
    st.worker_count++;
    if (wv.healthy) st.healthy_worker_count++;
    st.total_cores += info.total;
    st.available_cores += info.available;
    st.workers.push_back(wv);
  }
  for (const auto& [id, j] : ledger_.jobs()) {
    bool active = !terminal(j.state);
    for (const auto& w : j.workflows)
      if (live(w.state)) {
        active = true;
        st.active_workflow_count++;
      }
    if (active) st.active_job_ids.push_back(id);
  }
  return st;
}

std::map<std::string, std::size_t> Manager::table_sizes() const {
  std::size_t runs = 0;
  for (const auto& [id, l] : live_)
    for (const auto& parts : l.runs) runs += parts.size();
  return {{"jobs", ledger_.size()},
          {"live_jobs", live_.size()},
          {"runs", runs},
          {"accepts_in_flight", accepts_.size()},
          {"waiters", waiters_},
          {"rejections", rejections_.size()},
          {"rejection_expiry", rejections_.queued()},
          {"workers", workers_.size()},
          {"attempt_log", attempts_.size()},
          {"gates", gates_.size()},
          {"window_mergers", window_mergers()}};
}

}  // namespace hs::manager
