#include "hyperscale/manager/manager.hpp"

#include <algorithm>

#include "hyperscale/base/log.hpp"

namespace hs::manager {

using namespace cluster;

namespace {

constexpr std::uint64_t kTagShift = 56;
std::uint64_t make_tag(std::uint64_t kind, std::uint64_t v) {
  return (kind << kTagShift) | (v & ((1ull << kTagShift) - 1));
}

std::string job_key(const std::string& id) { return "job/" + id; }

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

bool valid_id(const std::string& s, std::size_t max) {
  if (s.empty() || s.size() > max) return false;
  for (char c : s) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

bool live(WfState s) { return s == WfState::dispatched || s == WfState::running; }

}  // namespace

Manager::Manager(ManagerConfig cfg, Hooks hooks) : cfg_(std::move(cfg)), hooks_(std::move(hooks)) {}
Manager::~Manager() = default;

Manager::Job* Manager::find(const std::string& id) {
  auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : &it->second;
}

bool Manager::leads(const std::string& job_id) const {
  auto it = jobs_.find(job_id);
  return it != jobs_.end() && it->second.led;
}

// ---------------------------------------------------------------- lifecycle

void Manager::on_start(node::Context& ctx) {
  ctx_ = &ctx;
  self_ = ctx.self();
  seen_now_ = ctx.now();
  if (std::find(cfg_.managers.begin(), cfg_.managers.end(), self_) == cfg_.managers.end()) {
    log::error("manager", "not_configured", "self={} managers={} (this manager is not in its own manager list)", self_,
               cfg_.managers.size());
  }
  load_from_disk();
  tick_timer_ = ctx.set_timer(cfg_.tick, make_tag(kTick, 0));
  flush();
}

void Manager::load_from_disk() {
  // Records were written under "job/<id>"; the Disk has no key listing, so an index log names them.
  for (const auto& entry : ctx_->disk().read_log("jobs")) {
    const std::string id(entry.begin(), entry.end());
    if (jobs_.count(id) != 0) continue;
    auto bytes = ctx_->disk().get(job_key(id));
    if (!bytes) continue;  // erased at cleanup
    JobRecord rec;
    const char* why = nullptr;
    if (!decode(*bytes, rec, &why)) {
      stats_.decode_errors++;
      log::error("manager", "record_corrupt", "job={} error={} (record skipped)", log::quoted(id), why);
      continue;
    }
    Job& j = jobs_[id];
    j.rec = std::move(rec);
    j.persisted_version = j.rec.version;
    j.runs.resize(j.rec.workflows.size());
    j.started = ctx_->now();
    j.base_elapsed_ms = j.rec.elapsed_ms;
    const bool all_done = std::all_of(j.rec.workflows.begin(), j.rec.workflows.end(),
                                      [](const WorkflowRecord& w) { return terminal(w.state); });
    if (!j.rec.spec.idempotency_key.empty() && idem_.size() < cfg_.max_idempotency) {
      IdemEntry e;
      e.job_id = id;
      e.digest = j.rec.digest;
      e.expires = ctx_->now() + cfg_.idem_committed_ttl;
      idem_[j.rec.spec.idempotency_key] = e;
      idem_expiry_.emplace_back(e.expires, j.rec.spec.idempotency_key);
    }
    if (terminal(j.rec.state) && all_done) {
      if (j.rec.leader == self_) {
        // Finished under this manager: keep pushing the final record until every peer has it.
        j.led = true;
        j.committed = true;
      }
      j.terminal_at = ctx_->now();
      j.cleanup_queued = true;
      cleanup_.emplace_back(
          ctx_->now() + (j.rec.state == JobState::completed ? cfg_.retention_ok : cfg_.retention_failed), id);
    } else if (j.rec.leader == self_) {
      // Led in a previous life: release it so the DC leader takes it over with a new term.
      j.rec.leader = 0;
      j.rec.version++;
      persist_now(j);
      for (NodeId peer : cfg_.managers)
        if (peer != self_) {
          Replicate m{j.rec};
          ctx_->send(peer, encode(MsgType::replicate, m));
        }
      log::info("manager", "released_job", "job={} (led before restart; the DC leader takes it over)", log::quoted(id));
    }
  }
  // Compact the index: only live records.
  compact_index();
  if (!jobs_.empty()) log::info("manager", "recovered", "jobs={}", jobs_.size());
}

void Manager::persist_now(Job& j) {
  Status st = ctx_->disk().put(job_key(j.rec.spec.job_id), encode_record(j.rec));
  if (!st.ok())
    log::error("manager", "persist_failed", "job={} error={}", log::quoted(j.rec.spec.job_id), st.message());
}

void Manager::on_timer(node::Context& ctx, node::TimerId, std::uint64_t tag) {
  ctx_ = &ctx;
  seen_now_ = ctx.now();
  const std::uint64_t kind = tag >> kTagShift;
  const std::uint64_t v = tag & ((1ull << kTagShift) - 1);
  if (kind == kTick) {
    tick_timer_ = ctx.set_timer(cfg_.tick, make_tag(kTick, 0));
    tick();
  } else if (kind == kSync) {
    auto it = syncs_.find(v);
    if (it == syncs_.end()) return;
    SyncBatch batch = std::move(it->second);
    syncs_.erase(it);
    for (auto& [id, version] : batch.versions) {
      Job* j = find(id);
      if (j == nullptr) continue;
      j->persisted_version = std::max(j->persisted_version, version);
      if (j->led) replicate(*j);
    }
    for (auto& [to, bytes] : batch.after) ctx.send(to, std::move(bytes));
    for (auto& [id, version] : batch.versions) {
      Job* j = find(id);
      if (j != nullptr && j->led && !j->waiters.empty() && quorum_acked(*j, j->commit_version))
        answer_waiters(*j, true, Err::none, "");
    }
  }
  flush();
}

void Manager::on_member_dead(NodeId node) {
  if (ctx_ == nullptr) return;
  auto w = workers_.find(node);
  if (w != workers_.end()) {
    log::warn("manager", "worker_dead", "worker={} cores={}", node, w->second.total);
    workers_.erase(w);
  }
  for (auto& [id, j] : jobs_) {
    if (!j.led) continue;
    for (std::size_t i = 0; i < j.rec.workflows.size(); ++i) {
      auto& wf = j.rec.workflows[i];
      if (live(wf.state) && wf.worker == node) {
        if (j.runs[i].stopping) {
          wf.state = WfState::cancelled;
          j.runs[i].stopping = false;
          mark(j);
        } else {
          lose_attempt(j, i, "worker died", true);
        }
      }
    }
    check_job(j);
  }
  flush();
}

void Manager::on_leadership(bool is_leader) {
  if (ctx_ == nullptr) return;
  if (is_leader) {
    tick();
    flush();
  }
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
    return;
  }
  const auto type = static_cast<MsgType>(msg[0]);
  const auto body = msg.subspan(1);
  switch (type) {
    case MsgType::submit: {
      Submit m;
      if (parse(body, m, stats_, from, "submit")) handle_submit(from, m);
      break;
    }
    case MsgType::status_query: {
      StatusQuery m;
      if (parse(body, m, stats_, from, "status_query")) handle_status(from, m);
      break;
    }
    case MsgType::cancel_job: {
      CancelJob m;
      if (parse(body, m, stats_, from, "cancel_job")) handle_cancel(from, m);
      break;
    }
    case MsgType::cancel_workflow: {
      CancelWorkflow m;
      if (parse(body, m, stats_, from, "cancel_workflow")) handle_cancel_workflow(from, m);
      break;
    }
    case MsgType::node_query: {
      NodeQuery m;
      if (parse(body, m, stats_, from, "node_query")) {
        NodeStatus st = node_status();
        st.req = m.req;
        reply(from, MsgType::node_status, st);
      }
      break;
    }
    case MsgType::replicate: {
      Replicate m;
      if (parse(body, m, stats_, from, "replicate")) handle_replicate(from, m);
      break;
    }
    case MsgType::replicate_ack: {
      ReplicateAck m;
      if (parse(body, m, stats_, from, "replicate_ack")) handle_replicate_ack(from, m);
      break;
    }
    case MsgType::heartbeat: {
      Heartbeat m;
      if (parse(body, m, stats_, from, "heartbeat")) handle_heartbeat(from, m);
      break;
    }
    case MsgType::dispatch_ack: {
      DispatchAck m;
      if (parse(body, m, stats_, from, "dispatch_ack")) handle_dispatch_ack(from, m);
      break;
    }
    case MsgType::progress: {
      Progress m;
      if (parse(body, m, stats_, from, "progress")) handle_progress(from, m);
      break;
    }
    case MsgType::result: {
      ResultMsg m;
      if (parse(body, m, stats_, from, "result")) handle_result(from, m);
      break;
    }
    case MsgType::stop_ack: {
      StopAck m;
      if (parse(body, m, stats_, from, "stop_ack")) handle_stop_ack(from, m);
      break;
    }
    case MsgType::pull: {
      Pull m;
      if (!parse(body, m, stats_, from, "pull")) break;
      Job* j = find(m.job_id);
      if (j != nullptr && j->led) {
        Replicate r{j->rec};
        r.record.version = j->persisted_version;
        if (r.record.version == j->rec.version) reply(from, MsgType::replicate, r);
      } else if (j == nullptr) {
        PullReply r{m.job_id, false};
        reply(from, MsgType::pull_reply, r);
      }
      break;
    }
    case MsgType::pull_reply: {
      PullReply m;
      if (!parse(body, m, stats_, from, "pull_reply")) break;
      Job* j = find(m.job_id);
      if (j != nullptr && !j->led && !m.found && j->rec.leader == from) {
        // The job's leader no longer holds it: it ended and was cleaned up while this replica
        // missed the final record. The leader is authoritative; drop the stale copy.
        stats_.replicas_dropped++;
        log::warn("manager", "stale_replica_dropped", "job={} leader={} state={}", log::quoted(m.job_id), from,
                  name(j->rec.state));
        forget(m.job_id);
      }
      break;
    }
    case MsgType::transfer_ack: {
      TransferAck m;
      if (parse(body, m, stats_, from, "transfer_ack")) handle_transfer_ack(from, m);
      break;
    }
    default:
      stats_.unknown_messages++;
      log::warn("manager", "unknown_message", "from={} type={}", from, int(msg[0]));
      break;
  }
  flush();
}

void Manager::reply(NodeId to, MsgType t, auto& msg) { ctx_->send(to, encode(t, msg)); }

SubmitAck Manager::reject(std::uint64_t req, Err code, std::string error) {
  SubmitAck a;
  a.req = req;
  a.accepted = false;
  a.code = code;
  a.error = std::move(error);
  if (code == Err::not_leader) a.leader = hooks_.leader ? hooks_.leader().value_or(0) : 0;
  if (code == Err::overloaded || code == Err::no_quorum || code == Err::unavailable)
    a.retry_after_ms = cfg_.retry_after_ms;
  return a;
}

std::optional<std::string> Manager::validate(const JobSpec& s) const {
  if (!valid_id(s.job_id, 64)) return "job id must be 1-64 characters of [A-Za-z0-9._-]";
  if (s.idempotency_key.size() > 256) return "idempotency key longer than 256 bytes";
  if (s.workflows.empty()) return "the job has no workflows";
  if (s.workflows.size() > cfg_.max_workflows_per_job)
    return "the job has " + std::to_string(s.workflows.size()) + " workflows; the limit is " +
           std::to_string(cfg_.max_workflows_per_job);
  if (s.timeout_ms > 7ull * 24 * 3600 * 1000) return "timeout longer than 7 days";
  std::map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < s.workflows.size(); ++i) {
    const auto& w = s.workflows[i];
    if (!valid_id(w.name, 128)) return "workflow name '" + w.name + "' must be 1-128 characters of [A-Za-z0-9._-]";
    if (!index.emplace(w.name, i).second) return "duplicate workflow name '" + w.name + "'";
    if (w.vus == 0) return "workflow '" + w.name + "': vus must be at least 1";
    if (w.plan.size() > cfg_.max_plan_bytes) return "workflow '" + w.name + "': plan larger than the limit";
  }
  std::uint32_t largest = 0;
  for (const auto& [id, info] : workers_)
    if (hooks_.alive && hooks_.alive(id)) largest = std::max(largest, info.total);
  for (const auto& w : s.workflows) {
    for (const auto& d : w.deps) {
      if (index.count(d) == 0) return "workflow '" + w.name + "' depends on unknown workflow '" + d + "'";
      if (d == w.name) return "workflow '" + w.name + "' depends on itself";
    }
    if (largest > 0 && w.cores > largest)
      return "workflow '" + w.name + "' needs " + std::to_string(w.cores) + " cores; the largest worker has " +
             std::to_string(largest);
  }
  // Cycle check: Kahn's algorithm.
  std::vector<int> indeg(s.workflows.size(), 0);
  for (std::size_t i = 0; i < s.workflows.size(); ++i) indeg[i] = static_cast<int>(s.workflows[i].deps.size());
  std::vector<std::size_t> ready;
  for (std::size_t i = 0; i < indeg.size(); ++i)
    if (indeg[i] == 0) ready.push_back(i);
  std::size_t seen = 0;
  while (!ready.empty()) {
    const std::size_t i = ready.back();
    ready.pop_back();
    ++seen;
    for (std::size_t k = 0; k < s.workflows.size(); ++k)
      for (const auto& d : s.workflows[k].deps)
        if (d == s.workflows[i].name && --indeg[k] == 0) ready.push_back(k);
  }
  if (seen != s.workflows.size()) return "the workflow dependencies form a cycle";
  return std::nullopt;
}

void Manager::handle_submit(NodeId from, Submit& m) {
  stats_.submits++;
  JobSpec& spec = m.spec;
  const std::uint64_t digest = digest_of(spec);
  const std::string key = spec.idempotency_key;
  auto answer_existing = [&](Job& j) {
    stats_.duplicates++;
    if (j.led && !j.committed) {
      j.waiters.push_back(Waiter{from, m.req, false, 0, ctx_->now() + cfg_.replicate_timeout});
      return;
    }
    SubmitAck a;
    a.req = m.req;
    a.accepted = true;
    a.job_id = j.rec.spec.job_id;
    a.leader = j.rec.leader;  // the job's leader, not this manager: a replica may be answering
    reply(from, MsgType::submit_ack, a);
  };
  if (!key.empty()) {
    auto it = idem_.find(key);
    if (it != idem_.end()) {
      IdemEntry& e = it->second;
      if (e.rejected) {
        if (e.digest == digest) {
          SubmitAck a = e.rejection;
          a.req = m.req;
          stats_.rejected++;
          reply(from, MsgType::submit_ack, a);
          return;
        }
        idem_.erase(it);  // a different payload under a rejected key is evaluated afresh
      } else if (e.digest != digest) {
        stats_.conflicts++;
        SubmitAck a =
            reject(m.req, Err::conflict,
                   "idempotency key '" + key + "' was used for job " + e.job_id + " with a different payload");
        reply(from, MsgType::submit_ack, a);
        return;
      } else if (Job* j = find(e.job_id)) {
        answer_existing(*j);
        return;
      } else {
        idem_.erase(it);  // the job was cleaned up: the key is free again
      }
    }
  }
  if (Job* j = find(spec.job_id)) {
    if (j->rec.digest == digest && j->rec.spec.idempotency_key == key) {
      answer_existing(*j);
    } else {
      stats_.conflicts++;
      SubmitAck a = reject(m.req, Err::conflict, "job id '" + spec.job_id + "' already exists with another payload");
      reply(from, MsgType::submit_ack, a);
    }
    return;
  }
  if (!hooks_.is_leader || !hooks_.is_leader()) {
    stats_.redirects++;
    SubmitAck a = reject(m.req, Err::not_leader, "this manager is not the datacenter leader");
    reply(from, MsgType::submit_ack, a);
    return;
  }
  if (auto err = validate(spec)) {
    stats_.rejected++;
    SubmitAck a = reject(m.req, Err::invalid, *err);
    log::info("manager", "submit_rejected", "job={} error={}", log::quoted(spec.job_id), log::quoted(*err));
    if (!key.empty() && idem_.size() < cfg_.max_idempotency) {
      IdemEntry e;
      e.digest = digest;
      e.rejected = true;
      e.rejection = a;
      e.expires = ctx_->now() + cfg_.idem_rejected_ttl;
      idem_[key] = e;
      idem_expiry_.emplace_back(e.expires, key);
    }
    reply(from, MsgType::submit_ack, a);
    return;
  }
  std::size_t active = 0;
  for (const auto& [id, j] : jobs_)
    if (j.led && !terminal(j.rec.state)) ++active;
  if (active >= cfg_.max_active_jobs || jobs_.size() >= cfg_.max_jobs) {
    stats_.rejected++;
    SubmitAck a =
        reject(m.req, Err::overloaded,
               "too many jobs (" + std::to_string(active) + " active, " + std::to_string(jobs_.size()) + " held)");
    reply(from, MsgType::submit_ack, a);
    return;
  }
  if (!hooks_.has_quorum || !hooks_.has_quorum()) {
    stats_.rejected++;
    SubmitAck a = reject(m.req, Err::no_quorum, "no quorum of managers: the job cannot be recorded safely");
    reply(from, MsgType::submit_ack, a);
    return;
  }
  if (!key.empty() && idem_.size() >= cfg_.max_idempotency) {
    // Evict the entry closest to expiry (the oldest) rather than refuse.
    while (!idem_expiry_.empty() && idem_.size() >= cfg_.max_idempotency) {
      auto [when, k] = idem_expiry_.front();
      idem_expiry_.pop_front();
      auto it = idem_.find(k);
      if (it != idem_.end() && it->second.expires == when) {
        idem_.erase(it);
        stats_.idem_evicted++;
      }
    }
  }
  const std::string id = spec.job_id;
  Job& j = jobs_[id];
  j.rec.spec = std::move(spec);
  j.rec.spec.retry_budget = std::min(j.rec.spec.retry_budget, cfg_.max_retry_budget);
  j.rec.spec.workflow_retries = std::min(j.rec.spec.workflow_retries, cfg_.max_workflow_retries);
  j.rec.digest = digest;
  j.rec.state = JobState::submitted;
  j.rec.leader = self_;
  j.rec.leader_term = hooks_.term ? hooks_.term() : 0;
  j.rec.token_hw = 0;
  for (auto& w : j.rec.spec.workflows) {
    WorkflowRecord r;
    r.spec = w;
    j.rec.workflows.push_back(std::move(r));
  }
  j.runs.resize(j.rec.workflows.size());
  j.led = true;
  j.started = ctx_->now();
  j.waiters.push_back(Waiter{from, m.req, false, 0, ctx_->now() + cfg_.replicate_timeout});
  j.commit_version = 1;
  (void)ctx_->disk().append("jobs", std::vector<std::uint8_t>(id.begin(), id.end()));
  if (!key.empty()) {
    IdemEntry e;
    e.job_id = id;
    e.digest = digest;
    e.expires = ctx_->now() + cfg_.idem_committed_ttl;
    idem_[key] = e;
    idem_expiry_.emplace_back(e.expires, key);
  }
  log::info("manager", "job_received", "job={} workflows={} from={}", log::quoted(id), j.rec.workflows.size(), from);
  mark(j);
}

cluster::JobView Manager::view(const Job& j) const {
  JobView v;
  v.job_id = j.rec.spec.job_id;
  v.state = j.rec.state;
  v.leader = j.rec.leader;
  v.retries_used = j.rec.retries_used;
  v.retry_budget = j.rec.spec.retry_budget;
  v.workflow_retries = j.rec.spec.workflow_retries;
  v.error = j.rec.error;
  v.cancel_errors = j.rec.cancel_errors;
  for (std::size_t i = 0; i < j.rec.workflows.size(); ++i) {
    const auto& w = j.rec.workflows[i];
    WorkflowView wv;
    wv.name = w.spec.name;
    wv.state = w.state;
    wv.completed = w.completed;
    wv.failed = w.failed;
    wv.attempts = w.attempts;
    wv.cores = w.cores;
    wv.worker = w.worker;
    wv.token = w.token;
    wv.error = w.error;
    wv.stats = w.stats;
    wv.published = w.published;
    wv.enqueued = w.state == WfState::pending && j.led && i < j.runs.size() && j.runs[i].retry_at.count() >= 0 &&
                  !terminal(j.rec.state);
    v.completed += w.completed;
    v.failed += w.failed;
    v.workflows.push_back(std::move(wv));
  }
  return v;
}

std::optional<cluster::JobView> Manager::job(const std::string& id) const {
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return std::nullopt;
  return view(it->second);
}

void Manager::handle_status(NodeId from, const StatusQuery& m) {
  StatusReply r;
  r.req = m.req;
  auto it = jobs_.find(m.job_id);
  if (it != jobs_.end()) {
    r.found = true;
    r.job = view(it->second);
  }
  reply(from, MsgType::status_reply, r);
}

void Manager::handle_cancel(NodeId from, const CancelJob& m) {
  stats_.cancels++;
  CancelReply r;
  r.req = m.req;
  Job* j = find(m.job_id);
  if (j == nullptr) {
    r.code = Err::not_found;
    r.error = "no job '" + m.job_id + "'";
    reply(from, MsgType::cancel_reply, r);
    return;
  }
  if (!j->led) {
    r.code = Err::not_leader;
    r.error = "this manager does not lead the job";
    r.leader = j->rec.leader;
    reply(from, MsgType::cancel_reply, r);
    return;
  }
  if (m.fence != 0 && m.fence != j->rec.token_hw) {
    stats_.fence_rejects++;
    r.code = Err::fence;
    r.error = "stale fence token " + std::to_string(m.fence) + " (current " + std::to_string(j->rec.token_hw) + ")";
    reply(from, MsgType::cancel_reply, r);
    return;
  }
  if (j->rec.state == JobState::cancelled) {
    r.success = true;
    r.already_cancelled = true;
    if (!j->waiters.empty()) {  // the first cancel is not yet on a quorum: answer both together
      j->waiters.push_back(Waiter{from, m.req, true, 0, ctx_->now() + cfg_.replicate_timeout});
      return;
    }
    reply(from, MsgType::cancel_reply, r);
    return;
  }
  if (terminal(j->rec.state)) {
    r.already_completed = true;
    r.error = std::string("the job already ended: ") + name(j->rec.state);
    reply(from, MsgType::cancel_reply, r);
    return;
  }
  std::uint32_t count = 0;
  for (const auto& w : j->rec.workflows)
    if (!terminal(w.state)) ++count;
  j->rec.cancel_requested = true;
  finish_job(*j, JobState::cancelled, m.reason.empty() ? "cancelled by request" : m.reason);
  j->waiters.push_back(Waiter{from, m.req, true, count, ctx_->now() + cfg_.replicate_timeout});
  j->commit_version = j->rec.version + 1;
  log::info("manager", "job_cancelled", "job={} workflows={}", log::quoted(m.job_id), count);
}

void Manager::handle_cancel_workflow(NodeId from, const CancelWorkflow& m) {
  CancelReply r;
  r.req = m.req;
  Job* j = find(m.job_id);
  if (j == nullptr || !j->led) {
    r.code = j == nullptr ? Err::not_found : Err::not_leader;
    r.error = j == nullptr ? "no job '" + m.job_id + "'" : "this manager does not lead the job";
    if (j != nullptr) r.leader = j->rec.leader;
    reply(from, MsgType::cancel_reply, r);
    return;
  }
  std::size_t i = 0;
  for (; i < j->rec.workflows.size(); ++i)
    if (j->rec.workflows[i].spec.name == m.workflow) break;
  if (i == j->rec.workflows.size()) {
    r.code = Err::not_found;
    r.error = "job '" + m.job_id + "' has no workflow '" + m.workflow + "'";
    reply(from, MsgType::cancel_reply, r);
    return;
  }
  auto& w = j->rec.workflows[i];
  if (w.state == WfState::cancelled) {
    r.success = true;
    r.already_cancelled = true;
  } else if (terminal(w.state)) {
    r.already_completed = true;
    r.error = std::string("the workflow already ended: ") + name(w.state);
  } else {
    r.success = true;
    r.cancelled_workflow_count = 1;
    if (live(w.state)) {
      stop_workflow(*j, i, "workflow cancelled by request");
    } else {
      w.state = WfState::cancelled;
      w.error = "cancelled by request";
    }
    mark(*j);
    j->waiters.push_back(Waiter{from, m.req, true, 1, ctx_->now() + cfg_.replicate_timeout});
    j->commit_version = j->rec.version + 1;
    check_job(*j);
    return;
  }
  reply(from, MsgType::cancel_reply, r);
}

void Manager::handle_replicate(NodeId from, Replicate& m) {
  JobRecord& rec = m.record;
  const std::string id = rec.spec.job_id;
  if (!valid_id(id, 64) || rec.workflows.size() > cfg_.max_workflows_per_job) {
    stats_.decode_errors++;
    log::warn("manager", "bad_replica", "from={} job={}", from, log::quoted(id));
    return;
  }
  Job* j = find(id);
  if (j != nullptr) {
    const auto mine = std::make_pair(j->rec.leader_term, j->rec.version);
    const auto theirs = std::make_pair(rec.leader_term, rec.version);
    if (theirs < mine) {
      stats_.stale_replicas++;
      Replicate newer{j->rec};
      reply(from, MsgType::replicate, newer);  // let a stale leader learn who leads now
      return;
    }
    if (theirs == mine) {
      ReplicateAck a{id, rec.version};
      if (j->persisted_version >= rec.version) reply(from, MsgType::replicate_ack, a);
      return;
    }
    if (j->led && rec.leader != self_) {
      log::warn("manager", "job_leadership_lost", "job={} new_leader={} term={}", log::quoted(id), rec.leader,
                rec.leader_term);
      j->led = false;
      answer_waiters(*j, false, Err::not_leader, "job leadership moved");
    }
  } else {
    if (jobs_.size() >= cfg_.max_jobs) {
      log::error("manager", "replica_refused", "job={} held={} (job table full)", log::quoted(id), jobs_.size());
      return;
    }
    j = &jobs_[id];
    j->started = ctx_->now();
    (void)ctx_->disk().append("jobs", std::vector<std::uint8_t>(id.begin(), id.end()));
  }
  j->rec = std::move(rec);
  j->runs.resize(j->rec.workflows.size());
  j->base_elapsed_ms = j->rec.elapsed_ms;
  j->started = ctx_->now();
  const std::string& key = j->rec.spec.idempotency_key;
  if (!key.empty() && idem_.count(key) == 0 && idem_.size() < cfg_.max_idempotency) {
    IdemEntry e;
    e.job_id = id;
    e.digest = j->rec.digest;
    e.expires = ctx_->now() + cfg_.idem_committed_ttl;
    idem_[key] = e;
    idem_expiry_.emplace_back(e.expires, key);
  }
  persist_now(*j);
  open_batch_.versions.emplace_back(id, j->rec.version);
  ReplicateAck a{id, j->rec.version};
  open_batch_.after.emplace_back(from, encode(MsgType::replicate_ack, a));
  check_job(*j);
}

void Manager::handle_replicate_ack(NodeId from, const ReplicateAck& m) {
  Job* j = find(m.job_id);
  if (j == nullptr || !j->led) return;
  auto& v = j->acked[from];
  v = std::max(v, m.version);
  if (!j->waiters.empty() && quorum_acked(*j, j->commit_version)) answer_waiters(*j, true, Err::none, "");
}

bool Manager::quorum_acked(const Job& j, std::uint64_t version) const {
  if (version == 0) return false;
  std::size_t n = j.persisted_version >= version ? 1 : 0;
  for (NodeId peer : cfg_.managers) {
    if (peer == self_) continue;
    auto it = j.acked.find(peer);
    if (it != j.acked.end() && it->second >= version) ++n;
  }
  return n >= quorum();
}

void Manager::answer_waiters(Job& j, bool ok, Err code, const std::string& error) {
  if (ok && !j.committed) {
    j.committed = true;
    stats_.commits++;
    stats_.accepted++;
    if (j.rec.state == JobState::submitted) {
      j.rec.state = JobState::running;
      mark(j);
    }
  }
  for (const Waiter& w : j.waiters) {
    if (w.cancel) {
      CancelReply r;
      r.req = w.req;
      r.success = ok;
      r.cancelled_workflow_count = w.cancelled_count;
      r.already_cancelled = ok && w.cancelled_count == 0;
      r.code = code;
      r.error = error;
      reply(w.client, MsgType::cancel_reply, r);
    } else {
      SubmitAck a = ok ? SubmitAck{} : reject(w.req, code, error);
      a.req = w.req;
      if (ok) {
        a.accepted = true;
        a.job_id = j.rec.spec.job_id;
        a.leader = j.rec.leader;
      }
      reply(w.client, MsgType::submit_ack, a);
    }
  }
  j.waiters.clear();
}

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
  ack.is_leader = hooks_.is_leader && hooks_.is_leader();
  std::set<std::pair<std::string, std::string>> reported;
  for (const auto& e : m.execs) {
    reported.emplace(e.job_id, e.workflow);
    Job* j = find(e.job_id);
    if (j == nullptr || !j->led) continue;
    std::size_t i = 0;
    for (; i < j->rec.workflows.size(); ++i)
      if (j->rec.workflows[i].spec.name == e.workflow) break;
    const bool stale = i == j->rec.workflows.size() || terminal(j->rec.workflows[i].state) ||
                       e.token < j->rec.workflows[i].token || j->rec.workflows[i].worker != from || j->runs[i].stopping;
    if (stale) ack.stop.push_back(StopItem{e.job_id, e.workflow, e.token});
  }
  if (rebooted) {
    // The worker restarted without being declared dead: whatever it ran is gone.
    for (auto& [id, j] : jobs_) {
      if (!j.led) continue;
      for (std::size_t i = 0; i < j.rec.workflows.size(); ++i) {
        auto& w = j.rec.workflows[i];
        if (live(w.state) && w.worker == from && reported.count({id, w.spec.name}) == 0)
          lose_attempt(j, i, "worker restarted", true);
      }
    }
  }
  reply(from, MsgType::heartbeat_ack, ack);
}

void Manager::handle_dispatch_ack(NodeId from, const DispatchAck& m) {
  Job* j = find(m.job_id);
  if (j == nullptr || !j->led) return;
  for (std::size_t i = 0; i < j->rec.workflows.size(); ++i) {
    auto& w = j->rec.workflows[i];
    if (w.spec.name != m.workflow) continue;
    if (w.token != m.token || w.worker != from || w.state != WfState::dispatched) return;
    auto winfo = workers_.find(from);
    if (m.accepted) {
      w.state = WfState::running;
      j->runs[i].last_progress = ctx_->now();
      if (winfo != workers_.end() && winfo->second.half_open_probe) {
        winfo->second.open = false;
        winfo->second.half_open_probe = false;
        winfo->second.errors.clear();
        log::info("manager", "circuit_closed", "worker={}", from);
      }
    } else {
      stats_.dispatch_refused++;
      log::warn("manager", "dispatch_refused", "job={} workflow={} worker={} code={} error={}", log::quoted(m.job_id),
                log::quoted(m.workflow), from, name(m.code), log::quoted(m.error));
      circuit_error(from);
      w.state = WfState::pending;
      w.worker = 0;
      w.cores = 0;
      if (w.attempts > 0) w.attempts--;  // it never ran
      auto& run = j->runs[i];
      run.backoff =
          run.backoff.count() == 0 ? cfg_.requeue_backoff : std::min(run.backoff * 2, cfg_.requeue_backoff_max);
      run.retry_at = ctx_->now() + run.backoff;
    }
    mark(*j);
    return;
  }
}

void Manager::handle_progress(NodeId from, const Progress& m) {
  Job* j = find(m.job_id);
  if (j == nullptr || !j->led) return;
  for (std::size_t i = 0; i < j->rec.workflows.size(); ++i) {
    auto& w = j->rec.workflows[i];
    if (w.spec.name != m.workflow) continue;
    if (w.token != m.token || w.worker != from || terminal(w.state)) return;
    if (w.state == WfState::dispatched) w.state = WfState::running;
    auto& run = j->runs[i];
    if (m.completed != run.last_completed || m.failed != run.last_failed) {
      run.last_completed = m.completed;
      run.last_failed = m.failed;
      run.last_progress = ctx_->now();
    }
    w.completed = std::max(w.completed, m.completed);
    w.failed = std::max(w.failed, m.failed);
    return;
  }
}

void Manager::handle_result(NodeId from, ResultMsg& m) {
  ResultAck ack{m.job_id, m.workflow, m.token};
  Job* j = find(m.job_id);
  if (j == nullptr) {
    reply(from, MsgType::result_ack, ack);  // nobody wants it any more: let the worker drop it
    return;
  }
  if (!j->led) return;  // the leader will answer; the worker keeps it until then
  reply(from, MsgType::result_ack, ack);
  for (std::size_t i = 0; i < j->rec.workflows.size(); ++i) {
    auto& w = j->rec.workflows[i];
    if (w.spec.name != m.workflow) continue;
    if (w.token != m.token) {
      stats_.stale_results++;
      return;
    }
    if (terminal(w.state)) {
      // A stopped workflow's partial statistics can arrive after its stop was acknowledged: keep them.
      if (w.state == WfState::cancelled && w.stats.empty() && !m.stats.empty()) {
        w.completed = m.completed;
        w.failed = m.failed;
        w.stats = std::move(m.stats);
        mark(*j);
      }
      stats_.duplicate_results++;
      return;
    }
    stats_.results++;
    auto& run = j->runs[i];
    switch (m.outcome) {
      case Outcome::completed:
        w.state = WfState::completed;
        break;
      case Outcome::failed:
        w.state = WfState::failed;
        w.error = m.error;
        break;
      case Outcome::cancelled:
        if (run.stopping || terminal(j->rec.state)) {
          w.state = WfState::cancelled;
          if (w.error.empty()) w.error = m.error;
        } else {
          lose_attempt(*j, i, "cancelled on the worker: " + m.error, false);
          check_job(*j);
          return;
        }
        break;
      case Outcome::lost:
        lose_attempt(*j, i, "lost on the worker: " + m.error, true);
        check_job(*j);
        return;
    }
    run.stopping = false;
    w.completed = m.completed;
    w.failed = m.failed;
    w.stats = std::move(m.stats);
    w.published.clear();
    for (auto& [k, v] : m.published) w.published.emplace_back(w.spec.name + "." + k, std::move(v));
    log::info("manager", "workflow_done", "job={} workflow={} state={} completed={} failed={} token={}",
              log::quoted(m.job_id), log::quoted(m.workflow), name(w.state), w.completed, w.failed, w.token);
    mark(*j);
    check_job(*j);
    return;
  }
}

void Manager::handle_stop_ack(NodeId from, const StopAck& m) {
  Job* j = find(m.job_id);
  if (j == nullptr || !j->led) return;
  for (std::size_t i = 0; i < j->rec.workflows.size(); ++i) {
    auto& w = j->rec.workflows[i];
    if (w.spec.name != m.workflow || w.token != m.token || w.worker != from) continue;
    if (j->runs[i].stopping && !terminal(w.state)) {
      w.state = WfState::cancelled;
      j->runs[i].stopping = false;
      mark(*j);
      check_job(*j);
    }
    return;
  }
}

void Manager::handle_transfer_ack(NodeId from, const TransferAck& m) {
  Job* j = find(m.job_id);
  if (j == nullptr || !j->led) return;
  for (std::size_t i = 0; i < j->rec.workflows.size(); ++i) {
    auto& w = j->rec.workflows[i];
    if (w.spec.name != m.workflow || w.worker != from) continue;
    auto& run = j->runs[i];
    if (!run.transfer_pending || m.token != w.token) return;
    run.transfer_pending = false;
    if (!m.accepted) {
      log::warn("manager", "transfer_refused", "job={} workflow={} worker={} token={} (a newer leader holds it)",
                log::quoted(m.job_id), log::quoted(m.workflow), from, m.token);
      return;
    }
    if (!m.running) {
      lose_attempt(*j, i, "not running on the worker at takeover", false);
    } else {
      run.last_progress = ctx_->now();
      if (w.state == WfState::dispatched) w.state = WfState::running;
    }
    mark(*j);
    check_job(*j);
    return;
  }
}

// ---------------------------------------------------------------- scheduling

// The dispatch of workflow i as recorded: the stored original plan, VUs and cores, the current
// token, and the values its dependencies published. A re-send is byte-for-byte the same.
Dispatch Manager::make_dispatch(const Job& j, std::size_t i) const {
  const auto& w = j.rec.workflows[i];
  Dispatch d;
  d.job_id = j.rec.spec.job_id;
  d.workflow = w.spec.name;
  d.token = w.token;
  d.cores = w.cores;
  d.vus = w.spec.vus;
  d.plan = w.spec.plan;
  for (const auto& dep : w.spec.deps)
    for (const auto& other : j.rec.workflows)
      if (other.spec.name == dep) d.context.insert(d.context.end(), other.published.begin(), other.published.end());
  return d;
}

std::uint64_t Manager::next_token(Job& j) {
  const std::uint64_t term = hooks_.term ? hooks_.term() : 0;
  const std::uint64_t base = std::max(j.rec.leader_term, term) << 32;
  j.rec.token_hw = std::max(j.rec.token_hw + 1, base);
  return j.rec.token_hw;
}

bool Manager::eligible(NodeId w, const WorkerInfo& info) const {
  if (hooks_.alive && !hooks_.alive(w)) return false;
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
              std::chrono::duration_cast<std::chrono::milliseconds>(info.open_until).count());
  }
}

void Manager::lose_attempt(Job& j, std::size_t i, const std::string& why, bool exclude) {
  auto& w = j.rec.workflows[i];
  auto& run = j.runs[i];
  const NodeId worker = w.worker;
  if (exclude && worker != 0 && std::find(w.excluded.begin(), w.excluded.end(), worker) == w.excluded.end() &&
      w.excluded.size() < 1000)
    w.excluded.push_back(worker);
  run = WfRun{};
  w.worker = 0;
  w.cores = 0;
  const std::uint32_t retries = w.attempts > 0 ? w.attempts - 1 : 0;
  if (terminal(j.rec.state)) {
    w.state = WfState::cancelled;
  } else if (retries < j.rec.spec.workflow_retries && j.rec.retries_used < j.rec.spec.retry_budget) {
    j.rec.retries_used++;
    w.state = WfState::pending;
    stats_.redispatches++;
    log::warn("manager", "workflow_retry", "job={} workflow={} worker={} reason={} attempt={} retries_used={}/{}",
              log::quoted(j.rec.spec.job_id), log::quoted(w.spec.name), worker, log::quoted(why), w.attempts,
              j.rec.retries_used, j.rec.spec.retry_budget);
  } else {
    w.state = WfState::failed;
    w.error = "retry budget exhausted: " + why;
    stats_.budget_exhausted++;
    log::warn("manager", "workflow_failed", "job={} workflow={} reason={}", log::quoted(j.rec.spec.job_id),
              log::quoted(w.spec.name), log::quoted(w.error));
  }
  mark(j);
}

void Manager::stop_workflow(Job& j, std::size_t i, const std::string& why) {
  auto& w = j.rec.workflows[i];
  auto& run = j.runs[i];
  if (w.error.empty()) w.error = why;
  run.stopping = true;
  run.stop_deadline = ctx_->now() + cfg_.cancel_timeout;
  StopExec s{j.rec.spec.job_id, w.spec.name, w.token};
  reply(w.worker, MsgType::stop_exec, s);
}

void Manager::finish_job(Job& j, JobState s, const std::string& error) {
  for (std::size_t i = 0; i < j.rec.workflows.size(); ++i) {
    auto& w = j.rec.workflows[i];
    if (terminal(w.state)) continue;
    if (live(w.state)) {
      if (!j.runs[i].stopping) stop_workflow(j, i, std::string("job ") + name(s));
    } else {
      w.state = WfState::cancelled;
      w.error = std::string("job ") + name(s);
    }
  }
  if (!terminal(j.rec.state)) {
    j.rec.state = s;
    j.rec.error = error;
    if (s == JobState::timeout) stats_.timeouts++;
    log::info("manager", "job_finished", "job={} state={} error={}", log::quoted(j.rec.spec.job_id), name(s),
              log::quoted(error));
  }
  mark(j);
  check_job(j);
}

void Manager::check_job(Job& j) {
  const auto& wfs = j.rec.workflows;
  const bool all_done = std::all_of(wfs.begin(), wfs.end(), [](const WorkflowRecord& w) { return terminal(w.state); });
  if (!all_done) return;
  if (!terminal(j.rec.state) && j.led && j.committed) {
    bool any_failed = false, any_cancelled = false;
    for (const auto& w : wfs) {
      any_failed |= w.state == WfState::failed;
      any_cancelled |= w.state == WfState::cancelled;
    }
    j.rec.state = any_failed ? JobState::failed : any_cancelled ? JobState::partial : JobState::completed;
    if (any_failed) {
      for (const auto& w : wfs)
        if (w.state == WfState::failed) {
          j.rec.error = "workflow '" + w.spec.name + "' failed: " + w.error;
          break;
        }
    }
    log::info("manager", "job_finished", "job={} state={}", log::quoted(j.rec.spec.job_id), name(j.rec.state));
    mark(j);
  }
  if (terminal(j.rec.state) && !j.cleanup_queued) {
    j.cleanup_queued = true;
    j.terminal_at = ctx_->now();
    const Duration keep = j.rec.state == JobState::completed ? cfg_.retention_ok : cfg_.retention_failed;
    cleanup_.emplace_back(ctx_->now() + keep, j.rec.spec.job_id);
  }
}

std::uint64_t Manager::elapsed_ms(const Job& j) const {
  return j.base_elapsed_ms +
         static_cast<std::uint64_t>(
             std::chrono::duration_cast<std::chrono::milliseconds>(ctx_->now() - j.started).count());
}

void Manager::take_over(Job& j) {
  stats_.takeovers++;
  const NodeId old = j.rec.leader;
  j.led = true;
  j.committed = true;
  j.rec.leader = self_;
  j.rec.leader_term = hooks_.term ? hooks_.term() : j.rec.leader_term + 1;
  j.base_elapsed_ms = j.rec.elapsed_ms;
  j.started = ctx_->now();
  j.acked.clear();
  j.runs.assign(j.rec.workflows.size(), WfRun{});
  log::warn("manager", "job_takeover", "job={} old_leader={} term={}", log::quoted(j.rec.spec.job_id), old,
            j.rec.leader_term);
  for (std::size_t i = 0; i < j.rec.workflows.size(); ++i) {
    auto& w = j.rec.workflows[i];
    if (!live(w.state)) continue;
    if (hooks_.alive && !hooks_.alive(w.worker)) {
      lose_attempt(j, i, "worker gone at takeover", true);
      continue;
    }
    w.token = next_token(j);
    j.runs[i].transfer_pending = true;
    j.runs[i].transfer_deadline = ctx_->now() + cfg_.transfer_retry;
    j.runs[i].last_progress = ctx_->now();
    Transfer t{j.rec.spec.job_id, w.spec.name, w.token, self_};
    stats_.transfers++;
    send_after_sync(w.worker, encode(MsgType::transfer, t));
  }
  if (terminal(j.rec.state)) {
    for (std::size_t i = 0; i < j.rec.workflows.size(); ++i)
      if (live(j.rec.workflows[i].state) && !j.runs[i].stopping)
        j.runs[i].stopping = true, j.runs[i].stop_deadline = ctx_->now() + cfg_.cancel_timeout;
  }
  mark(j);
  check_job(j);
}

std::uint32_t Manager::free_cores(NodeId w, const WorkerInfo& info) const {
  (void)w;
  return info.available;
}

void Manager::tick() {
  const Instant now = ctx_->now();
  const bool leader = hooks_.is_leader && hooks_.is_leader();
  // Takeovers: the DC leader adopts live jobs whose leader is gone (or released them).
  if (leader) {
    for (auto& [id, j] : jobs_) {
      if (j.led) continue;
      const bool unfinished =
          !terminal(j.rec.state) || std::any_of(j.rec.workflows.begin(), j.rec.workflows.end(),
                                                [](const WorkflowRecord& w) { return live(w.state); });
      if (!unfinished) continue;
      const bool orphan = j.rec.leader == 0 || j.rec.leader == self_ || (hooks_.alive && !hooks_.alive(j.rec.leader));
      if (orphan) take_over(j);
    }
  }
  // Replicas of unfinished jobs check with the job's leader now and then (anti-entropy).
  std::vector<std::pair<NodeId, std::string>> pulls;
  for (auto& [id, j] : jobs_) {
    if (j.led || terminal(j.rec.state) || j.rec.leader == 0 || j.rec.leader == self_) continue;
    if (now < j.pull_at) continue;
    j.pull_at = now + cfg_.pull_every;
    if (hooks_.alive && !hooks_.alive(j.rec.leader)) continue;
    pulls.emplace_back(j.rec.leader, id);
  }
  for (auto& [to, id] : pulls) {
    stats_.pulls++;
    Pull p{id};
    reply(to, MsgType::pull, p);
  }
  // Commit deadlines, replication retries, timeouts, stuck workflows, stop and transfer deadlines.
  for (auto& [id, j] : jobs_) {
    if (!j.led) continue;
    for (auto it = j.waiters.begin(); it != j.waiters.end();) {
      if (now >= it->deadline) {
        stats_.commit_timeouts++;
        if (it->cancel) {
          CancelReply r;
          r.req = it->req;
          r.code = Err::unavailable;
          r.error = "the cancel could not be recorded on a quorum of managers in time; it is still being applied";
          reply(it->client, MsgType::cancel_reply, r);
        } else {
          SubmitAck a =
              reject(it->req, Err::unavailable,
                     "the job could not be recorded on a quorum of managers in time; retry with the same key");
          reply(it->client, MsgType::submit_ack, a);
        }
        it = j.waiters.erase(it);
      } else {
        ++it;
      }
    }
    if (j.persisted_version > 0 && now >= j.replicate_at) {
      bool behind = false;
      for (NodeId peer : cfg_.managers) {
        if (peer == self_) continue;
        auto a = j.acked.find(peer);
        if (a == j.acked.end() || a->second < j.persisted_version) behind = true;
      }
      if (behind) replicate(j);
    }
    if (!j.committed) continue;
    if (!terminal(j.rec.state) && j.rec.spec.timeout_ms > 0 && elapsed_ms(j) >= j.rec.spec.timeout_ms) {
      finish_job(j, JobState::timeout, "job timed out after " + std::to_string(j.rec.spec.timeout_ms) + " ms");
    }
    for (std::size_t i = 0; i < j.rec.workflows.size(); ++i) {
      auto& w = j.rec.workflows[i];
      auto& run = j.runs[i];
      if (!live(w.state)) continue;
      if (run.stopping) {
        if (now >= run.stop_deadline) {
          const std::string err =
              "worker " + std::to_string(w.worker) + " did not confirm the stop of '" + w.spec.name + "'";
          if (j.rec.cancel_errors.size() < 100) j.rec.cancel_errors.push_back(err);
          log::warn("manager", "stop_unconfirmed", "job={} workflow={} worker={}", log::quoted(id),
                    log::quoted(w.spec.name), w.worker);
          w.state = WfState::cancelled;
          run.stopping = false;
          mark(j);
          check_job(j);
        }
        continue;
      }
      if (run.transfer_pending && now >= run.transfer_deadline) {
        Transfer t{id, w.spec.name, w.token, self_};
        reply(w.worker, MsgType::transfer, t);
        run.transfer_deadline = now + cfg_.transfer_retry;
      }
      if (w.state == WfState::dispatched && now >= run.ack_deadline && run.ack_deadline.count() > 0) {
        stats_.dispatch_resends++;
        circuit_error(w.worker);
        Dispatch d = make_dispatch(j, i);
        reply(w.worker, MsgType::dispatch, d);
        run.ack_deadline = now + cfg_.dispatch_ack_timeout;
      }
      if (w.state == WfState::running && j.rec.spec.stuck_ms > 0 &&
          now - run.last_progress >= std::chrono::milliseconds(j.rec.spec.stuck_ms)) {
        stats_.stuck++;
        log::warn("manager", "workflow_stuck", "job={} workflow={} worker={} no_progress_ms={}", log::quoted(id),
                  log::quoted(w.spec.name), w.worker, j.rec.spec.stuck_ms);
        StopExec s{id, w.spec.name, w.token};
        reply(w.worker, MsgType::stop_exec, s);
        lose_attempt(j, i, "stuck: no progress for " + std::to_string(j.rec.spec.stuck_ms) + " ms", true);
      }
    }
    check_job(j);
  }
  // Dispatch, oldest job first.
  std::map<NodeId, std::uint32_t> used;
  for (const auto& [wid, info] : workers_) used[wid] = info.total > info.available ? info.total - info.available : 0;
  // Reported usage lags our own dispatches: count ours that the worker has not reported yet.
  for (const auto& [id, j] : jobs_) {
    if (!j.led) continue;
    for (const auto& w : j.rec.workflows) {
      if (!live(w.state)) continue;
      auto info = workers_.find(w.worker);
      if (info == workers_.end()) continue;
      bool reported = false;
      for (const auto& e : info->second.execs)
        if (e.job_id == id && e.workflow == w.spec.name) reported = true;
      if (!reported) used[w.worker] += w.cores;
    }
  }
  for (auto& [id, j] : jobs_) {
    if (!j.led || !j.committed || terminal(j.rec.state)) continue;
    schedule_job(j, used);
  }
  expire();
}

void Manager::schedule_job(Job& j, std::map<NodeId, std::uint32_t>& used) {
  const Instant now = ctx_->now();
  auto& wfs = j.rec.workflows;
  // Dependants of failed or cancelled workflows never run.
  bool changed = true;
  while (changed) {
    changed = false;
    for (auto& w : wfs) {
      if (w.state != WfState::pending) continue;
      for (const auto& d : w.spec.deps) {
        for (const auto& o : wfs) {
          if (o.spec.name != d) continue;
          if (o.state == WfState::failed || o.state == WfState::cancelled) {
            w.state = o.state == WfState::failed ? WfState::failed : WfState::cancelled;
            w.error = "dependency '" + d + "' " + name(o.state);
            changed = true;
            mark(j);
          }
        }
        if (w.state != WfState::pending) break;
      }
    }
  }
  bool exclusive_live = false;
  bool any_live = false;
  for (const auto& w : wfs) {
    if (live(w.state)) {
      any_live = true;
      if (w.spec.priority == Priority::exclusive) exclusive_live = true;
    }
  }
  if (exclusive_live) return;
  std::vector<std::size_t> ready;
  for (std::size_t i = 0; i < wfs.size(); ++i) {
    const auto& w = wfs[i];
    if (w.state != WfState::pending || now < j.runs[i].retry_at) continue;
    bool deps_done = true;
    for (const auto& d : w.spec.deps)
      for (const auto& o : wfs)
        if (o.spec.name == d && o.state != WfState::completed) deps_done = false;
    if (deps_done) ready.push_back(i);
  }
  if (ready.empty()) {
    check_job(j);
    return;
  }
  std::stable_sort(ready.begin(), ready.end(), [&](std::size_t a, std::size_t b) {
    return priority_rank(wfs[a].spec.priority) < priority_rank(wfs[b].spec.priority);
  });
  std::size_t auto_left = 0;
  for (std::size_t i : ready)
    if (wfs[i].spec.cores == 0 && wfs[i].spec.priority != Priority::exclusive) ++auto_left;
  for (std::size_t i : ready) {
    auto& w = wfs[i];
    const bool exclusive = w.spec.priority == Priority::exclusive;
    if (exclusive && any_live) break;  // it waits until the job's other workflows are done
    // Candidates in order of health, then free cores.
    // Workers this workflow already failed on are used only when no other eligible worker exists
    // (a lost worker that came back is better than none).
    std::vector<std::pair<NodeId, std::uint32_t>> cands;
    std::uint32_t total_free = 0;
    for (int pass = 0; pass < 2 && cands.empty(); ++pass) {
      total_free = 0;
      for (const auto& [wid, info] : workers_) {
        if (!eligible(wid, info)) continue;
        if (pass == 0 && std::find(w.excluded.begin(), w.excluded.end(), wid) != w.excluded.end()) continue;
        const std::uint32_t u = used[wid];
        const std::uint32_t f = info.total > u ? info.total - u : 0;
        total_free += f;
        cands.emplace_back(wid, f);
      }
    }
    std::stable_sort(cands.begin(), cands.end(), [&](const auto& a, const auto& b) {
      const auto ha = static_cast<int>(workers_.at(a.first).health), hb = static_cast<int>(workers_.at(b.first).health);
      if (ha != hb) return ha < hb;
      return a.second > b.second;
    });
    std::uint32_t want = w.spec.cores;
    NodeId chosen = 0;
    for (const auto& [wid, f] : cands) {
      std::uint32_t need = want;
      if (exclusive) {
        need = workers_.at(wid).total;
        if (f < need) continue;
      } else if (need == 0) {
        const std::uint32_t share = auto_left > 0 ? total_free / static_cast<std::uint32_t>(auto_left) : f;
        need = std::max<std::uint32_t>(1, std::min<std::uint32_t>({share, f, std::max<std::uint32_t>(1, w.spec.vus)}));
      }
      if (need == 0 || f < need) continue;
      chosen = wid;
      want = need;
      break;
    }
    if (w.spec.cores == 0 && !exclusive && auto_left > 0) --auto_left;
    if (chosen == 0) {
      j.runs[i].retry_at = Instant{0};  // enqueued: waits for cores
      continue;
    }
    WorkerInfo& info = workers_.at(chosen);
    if (info.open) info.half_open_probe = true;
    used[chosen] += want;
    w.state = WfState::dispatched;
    w.worker = chosen;
    w.cores = want;
    w.token = next_token(j);
    w.attempts++;
    any_live = true;
    auto& run = j.runs[i];
    run.ack_deadline = now + cfg_.dispatch_ack_timeout + cfg_.tick;
    run.last_progress = now;
    stats_.dispatches++;
    if (attempts_.size() >= 10'000) attempts_.pop_front();
    attempts_.push_back(Attempt{j.rec.spec.job_id, w.spec.name, chosen, w.token});
    Dispatch d = make_dispatch(j, i);
    log::info("manager", "dispatch", "job={} workflow={} worker={} cores={} token={} attempt={}", log::quoted(d.job_id),
              log::quoted(d.workflow), chosen, want, w.token, w.attempts);
    mark(j);
    send_after_sync(chosen, encode(MsgType::dispatch, d));
    if (exclusive) break;
  }
}

void Manager::expire() {
  const Instant now = ctx_->now();
  while (!idem_expiry_.empty() && idem_expiry_.front().first <= now) {
    auto [when, key] = idem_expiry_.front();
    idem_expiry_.pop_front();
    auto it = idem_.find(key);
    if (it != idem_.end() && it->second.expires <= now) idem_.erase(it);
  }
  // Cleanup times differ by outcome, so scan the (bounded) queue for due entries.
  for (auto it = cleanup_.begin(); it != cleanup_.end();) {
    if (it->first <= now) {
      forget(it->second);
      it = cleanup_.erase(it);
    } else {
      ++it;
    }
  }
}

void Manager::forget(const std::string& id) {
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return;
  if (!it->second.waiters.empty()) answer_waiters(it->second, false, Err::unavailable, "job cleaned up");
  (void)ctx_->disk().erase(job_key(id));
  dirty_.erase(id);
  jobs_.erase(it);
  stats_.cleaned++;
  // The index log is compacted when it has grown well past the live set.
  if (++forgotten_since_compact_ > std::max<std::size_t>(1000, jobs_.size())) {
    forgotten_since_compact_ = 0;
    compact_index();
  }
}

void Manager::compact_index() {
  // One atomic replace: a crash leaves the old index or the new one, never an index missing live jobs.
  std::vector<node::Bytes> names;
  names.reserve(jobs_.size());
  for (const auto& [id, j] : jobs_) {
    (void)j;
    names.emplace_back(id.begin(), id.end());
  }
  if (Status st = ctx_->disk().replace_log("jobs", names); !st.ok()) {
    stats_.disk_errors++;
    log::error("manager", "index_compact_failed", "jobs={} error={} (the old index stands)", jobs_.size(),
               log::quoted(st.to_string()));
  }
}

void Manager::send_after_sync(NodeId to, std::vector<std::uint8_t> bytes) {
  open_batch_.after.emplace_back(to, std::move(bytes));
}

void Manager::replicate(Job& j) {
  j.replicate_at = ctx_->now() + cfg_.replicate_retry;
  Replicate m{j.rec};
  m.record.version = j.persisted_version;
  if (m.record.version != j.rec.version) return;  // a newer version is on its way to the disk
  auto bytes = encode(MsgType::replicate, m);
  for (NodeId peer : cfg_.managers) {
    if (peer == self_) continue;
    auto a = j.acked.find(peer);
    if (a != j.acked.end() && a->second >= j.persisted_version) continue;
    if (hooks_.alive && !hooks_.alive(peer)) continue;
    ctx_->send(peer, bytes);
  }
}

void Manager::mark(Job& j) {
  j.dirty = true;
  dirty_.insert(j.rec.spec.job_id);
}

void Manager::flush() {
  if (ctx_ == nullptr) return;
  for (const auto& id : dirty_) {
    Job* j = find(id);
    if (j == nullptr || !j->dirty) continue;
    j->dirty = false;
    if (!j->led) continue;
    j->rec.version++;
    j->rec.elapsed_ms = elapsed_ms(*j);
    persist_now(*j);
    open_batch_.versions.emplace_back(id, j->rec.version);
  }
  dirty_.clear();
  if (open_batch_.versions.empty() && open_batch_.after.empty()) return;
  const std::uint64_t seq = next_sync_++;
  const node::TimerId t = ctx_->sync(make_tag(kSync, seq));
  if (t == 0) {
    log::error("manager", "sync_failed", "batch={} (the disk failed; nothing in it is acknowledged)", seq);
    open_batch_ = SyncBatch{};
    return;
  }
  syncs_.emplace(seq, std::move(open_batch_));
  open_batch_ = SyncBatch{};
}

std::vector<std::uint8_t> Manager::encode_record(JobRecord& rec) {
  Enc e;
  e(rec);
  return e.w.take();
}

cluster::NodeStatus Manager::node_status() const {
  NodeStatus st;
  st.node = self_;
  st.is_leader = hooks_.is_leader && hooks_.is_leader();
  st.term = hooks_.term ? hooks_.term() : 0;
  st.leader = hooks_.leader ? hooks_.leader().value_or(0) : 0;
  for (const auto& [wid, info] : workers_) {
    const bool alive = !hooks_.alive || hooks_.alive(wid);
    if (!alive) continue;
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
  for (const auto& [id, j] : jobs_) {
    bool active = !terminal(j.rec.state);
    for (const auto& w : j.rec.workflows)
      if (live(w.state)) {
        active = true;
        st.active_workflow_count++;
      }
    if (active) st.active_job_ids.push_back(id);
  }
  return st;
}

std::map<std::string, std::size_t> Manager::table_sizes() const {
  std::size_t waiters = 0, acked = 0, runs = 0;
  for (const auto& [id, j] : jobs_) {
    waiters += j.waiters.size();
    acked += j.acked.size();
    runs += j.runs.size();
  }
  return {{"jobs", jobs_.size()},
          {"idempotency", idem_.size()},
          {"idempotency_expiry", idem_expiry_.size()},
          {"cleanup", cleanup_.size()},
          {"workers", workers_.size()},
          {"syncs", syncs_.size()},
          {"waiters", waiters},
          {"acked", acked},
          {"runs", runs},
          {"dirty", dirty_.size()},
          {"attempt_log", attempts_.size()}};
}

}  // namespace hs::manager
