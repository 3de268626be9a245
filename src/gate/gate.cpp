// The gate role: lifecycle, leadership and the client protocol. The datacenter registry and the job
// views are in registry.cpp; the owner's work on each job's shares (submit, poll, stop, fence),
// deadlines and retention in shares.cpp. See gate.hpp and docs/gates.md.
#include "hyperscale/gate/gate.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <exception>
#include <set>

#include "hyperscale/base/assert.hpp"
#include "hyperscale/base/log.hpp"
#include "hyperscale/cluster/intake.hpp"

namespace hs::gate {

using namespace cluster;

namespace {

constexpr std::array<const char*, 6> kConcernNames{"none", "registry", "shares", "deadlines", "retention", "windows"};
const char* concern_name(std::uint64_t c) { return c < kConcernNames.size() ? kConcernNames[c] : "unknown"; }

template <class T>
bool parse(std::span<const std::uint8_t> body, T& m, GateStats& st, NodeId from, const char* what) {
  const char* why = nullptr;
  if (decode(body, m, &why)) return true;
  st.decode_errors++;
  log::warn("gate", "decode_error", "from={} type={} error={}", from, what, why);
  return false;
}

}  // namespace

Gate::Gate(GateConfig cfg, RaftConfig raft) : cfg_(std::move(cfg)), ledger_(GateLedger::Limits{cfg_.max_jobs}) {
  if (raft.voters.empty()) raft.voters = cfg_.gates;
  HS_ASSERT(!cfg_.datacenters.empty() && cfg_.datacenters.size() <= cfg_.max_datacenters,
            "gate: {} datacenters configured (1 to {} allowed)", cfg_.datacenters.size(), cfg_.max_datacenters);
  std::set<std::string> names;
  for (const auto& d : cfg_.datacenters) {
    HS_ASSERT(valid_id(d.name, 64) && names.insert(d.name).second && !d.managers.empty(),
              "gate: datacenter '{}' needs a unique name of [A-Za-z0-9._-] and at least one manager ({} given)", d.name,
              d.managers.size());
    dcs_.push_back(Dc{.cfg = d, .managers = {}, .unavailable_since = Instant{-1}, .ever_heard = false});
    for (NodeId m : d.managers) {
      HS_ASSERT(manager_dc_.count(m) == 0, "gate: manager {} is listed in two datacenters", m);
      manager_dc_[m] = dcs_.size() - 1;
    }
  }
  raft_ = std::make_unique<RaftNode>(std::move(raft), ledger_);
  raft_->set_on_change([this] { on_raft_change(); });
}

Gate::~Gate() = default;

bool Gate::is_leader() const noexcept { return leading_ && raft_->is_ready_leader(); }

bool Gate::hand_off() {
  if (!raft_->is_leader()) return true;
  const Status st = raft_->transfer_leadership(0);
  if (!st.ok())
    log::warn("gate", "hand_off_refused", "self={} error={}", self_, log::quoted(st.to_string()));
  else
    log::info("gate", "hand_off", "self={} term={} jobs={}", self_, raft_->term(), live_.size());
  return false;
}

// ---------------------------------------------------------------- lifecycle

void Gate::on_start(node::Context& ctx) {
  ctx_ = &ctx;
  self_ = ctx.self();
  seen_now_ = ctx.now();
  HS_ASSERT(std::find(cfg_.gates.begin(), cfg_.gates.end(), self_) != cfg_.gates.end(),
            "gate: self {} is not in its own gate list ({} gates)", self_, cfg_.gates.size());
  for (std::uint64_t c = kRegistry; c < kConcerns; ++c) ctx.set_timer(cfg_.tick, c);
  on_raft_change();
}

void Gate::on_timer(node::Context& ctx, node::TimerId, std::uint64_t tag) {
  ctx_ = &ctx;
  seen_now_ = ctx.now();
  if (tag < kRegistry || tag >= kConcerns) {
    log::error("gate", "unknown_timer", "tag={}", tag);
    return;
  }
  const Duration every = tag == kRetention ? std::max<Duration>(cfg_.tick, std::chrono::seconds(1)) : cfg_.tick;
  ctx.set_timer(every, tag);  // re-armed first: a failed pass does not stop the concern
  run_concern(static_cast<Concern>(tag));
}

// The error hook of every concern: a pass that throws is logged with its name and counted; the
// concern runs again at its next period.
void Gate::run_concern(Concern c) {
  try {
    if (c == kRegistry) return registry_pass();  // every gate keeps the registry
    if (!is_leader()) {
      if (c == kRetention) retention_pass();  // remembered rejections expire on every gate
      return;
    }
    switch (c) {
      case kShares:
        shares_pass();
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
    log::error("gate", "concern_failed", "concern={} error={}", concern_name(c), log::quoted(e.what()));
  }
}

void Gate::on_raft_change() {
  if (ctx_ == nullptr) return;
  seen_now_ = ctx_->now();
  const bool ready = raft_->is_ready_leader();
  if (ready == leading_) return;
  leading_ = ready;
  if (ready) {
    leading_since_ = ctx_->now();
    log::info("gate", "leading", "self={} term={} jobs={}", self_, raft_->term(), ledger_.size());
    adopt();
  } else {
    log::info("gate", "not_leading", "self={} term={} leader={}", self_, raft_->term(), raft_->leader_id());
    live_.clear();
    requests_.clear();
    watched_.clear();  // soft state: a new owner asks the datacenters again
    watch_reqs_.clear();
  }
}

// A new ready leader owns every job of the ledger: each job whose fence is from an earlier term is
// taken over with an `own` entry (a higher fence), and its accepted shares are told (JobFence).
void Gate::adopt() {
  live_.clear();
  requests_.clear();
  for (const auto& [id, j] : ledger_.jobs()) take_over(id, j, live_of(id, j));
}

// Proposes `own` for a job with a fence of an earlier term that still needs an owner (a share to
// run or stop, or its cancel_done to record); again at the next pass if the entry did not commit.
void Gate::take_over(const std::string& id, const GateJob& j, Live& l) {
  const std::uint64_t fence = make_token(raft_->term(), 1);
  bool open_shares = false;
  for (const auto& s : j.shares) open_shares = open_shares || !terminal(s.state);
  if (l.proposing || j.fence >= fence || (terminal(j.state) && !open_shares && j.cancel_complete)) return;
  stats_.takeovers++;
  l.proposing = true;
  GateEntry e = entry(GateOp::own, id);
  e.fence = fence;
  e.owner = self_;
  log::info("gate", "job_takeover", "job={} fence={} previous={} owner_was={}", log::quoted(id), fence, j.fence,
            j.owner);
  auto clear = [this, id](auto&&...) {
    if (auto it = live_.find(id); it != live_.end()) it->second.proposing = false;
  };
  propose(std::move(e), clear, clear);
}

Gate::Live& Gate::live_of(const std::string& id, const GateJob& j) {
  auto [it, fresh] = live_.try_emplace(id);
  Live& l = it->second;
  if (fresh) {
    const Instant now = ctx_->now();
    l.started = now;
    l.base_elapsed_ms = j.elapsed_ms;
    l.next_checkpoint = now + cfg_.checkpoint_every;
    l.shares.resize(j.shares.size());
    for (std::size_t s = 0; s < j.shares.size(); ++s) {
      ShareRun& r = l.shares[s];
      r.completed = j.shares[s].completed;
      r.failed = j.shares[s].failed;
      r.last_answer = now;  // every share gets a full grace from the takeover
    }
  }
  return l;
}

GateEntry Gate::entry(GateOp op, const std::string& job_id) const {
  GateEntry e;
  e.op = op;
  e.term = raft_->term();
  e.job_id = job_id;
  e.elapsed_ms = ledger_.job(job_id) != nullptr ? elapsed_ms(job_id) : 0;
  return e;
}

bool Gate::propose(GateEntry e, OnApplied applied, OnFailed failed) {
  stats_.proposals++;
  const GateOp op = e.op;
  const std::string job = e.job_id;
  std::weak_ptr<bool> owner = token_;
  Status st = raft_->propose(encode_entry(e), [this, owner, op, job, applied = std::move(applied), failed](
                                                  const Status& s, std::uint64_t, std::uint64_t result) {
    if (owner.expired()) return;
    if (ctx_ != nullptr) seen_now_ = ctx_->now();
    if (!s.ok()) {
      stats_.proposals_failed++;
      log::info("gate", "entry_not_committed", "op={} job={} error={}", static_cast<int>(op), log::quoted(job),
                log::quoted(s.to_string()));
      if (failed) failed(s);
      return;
    }
    if (applied) applied(static_cast<GateOutcome>(result));
  });
  if (!st.ok()) {
    stats_.proposals_failed++;
    log::warn("gate", "entry_refused", "op={} job={} error={}", static_cast<int>(op), log::quoted(job),
              log::quoted(st.to_string()));
    if (failed) failed(st);
    return false;
  }
  return true;
}

std::uint64_t Gate::elapsed_ms(const std::string& id) const {
  auto it = live_.find(id);
  if (it == live_.end()) {
    const GateJob* j = ledger_.job(id);
    return j == nullptr ? 0 : j->elapsed_ms;
  }
  const auto ran = std::chrono::duration_cast<std::chrono::milliseconds>(ctx_->now() - it->second.started).count();
  return it->second.base_elapsed_ms + static_cast<std::uint64_t>(std::max<std::int64_t>(0, ran));
}

// ---------------------------------------------------------------- messages

void Gate::on_message(node::Context& ctx, NodeId from, std::span<const std::uint8_t> msg) {
  ctx_ = &ctx;
  seen_now_ = ctx.now();
  if (msg.empty()) {
    stats_.decode_errors++;
    log::warn("gate", "decode_error", "from={} error=\"empty message\"", from);
    return;
  }
  dispatch_message(from, static_cast<MsgType>(msg[0]), msg.subspan(1));
}

void Gate::dispatch_message(NodeId from, MsgType type, std::span<const std::uint8_t> body) {
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
    HS_ON(dc_heartbeat, DcHeartbeat, handle_dc_heartbeat(from, m))
    HS_ON(submit_ack, SubmitAck, handle_submit_ack(from, m))
    HS_ON(status_reply, StatusReply, handle_status_reply(from, m))
    HS_ON(cancel_reply, CancelReply, handle_cancel_reply(from, m))
    HS_ON(job_fence_ack, JobFenceAck, handle_fence_ack(from, m))
    HS_ON(watch_query, WatchQuery, handle_watch(from, m))
    HS_ON(watch_reply, WatchReply, handle_watch_reply(from, m))
    case MsgType::node_query: {
      NodeQuery m;
      if (!parse(body, m, stats_, from, "node_query")) return;
      NodeStatus st = node_status();
      st.req = m.req;
      send(from, MsgType::node_status, st);
      return;
    }
    default:
      stats_.unknown_messages++;
      log::warn("gate", "unknown_message", "from={} type={}", from, static_cast<int>(type));
      return;
  }
#undef HS_ON
}

// ---------------------------------------------------------------- clients

SubmitAck Gate::reject(std::uint64_t req, Err code, std::string error) const {
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

std::optional<std::string> Gate::validate(const JobSpec& s) const {
  if (auto err = check_job(s, cfg_.max_workflows_per_job, cfg_.max_spec_bytes)) return err;
  const std::size_t shares =
      s.datacenters.empty() ? std::max<std::uint32_t>(1, s.datacenter_count) : s.datacenters.size();
  if (!s.datacenters.empty() && s.datacenter_count != 0 && s.datacenter_count != s.datacenters.size())
    return fmt::format("datacenter_count {} disagrees with the {} datacenters named", s.datacenter_count,
                       s.datacenters.size());
  if (shares > dcs_.size())
    return fmt::format("the job asks for {} datacenters; {} are configured", shares, dcs_.size());
  if (s.min_datacenters > shares)
    return fmt::format("min_datacenters {} is more than the job's {} datacenters", s.min_datacenters, shares);
  std::set<std::string> seen;
  for (const auto& d : s.datacenters) {
    if (dc(d) == nullptr) {
      std::vector<std::string> known;
      for (const auto& x : dcs_) known.push_back(x.cfg.name);
      return fmt::format("unknown datacenter '{}' (configured: {})", d, fmt::join(known, ", "));
    }
    if (!seen.insert(d).second) return fmt::format("datacenter '{}' is named twice", d);
  }
  JobSpec copy = s;
  Enc enc;
  enc(copy);
  const std::size_t limit = std::min(cfg_.max_spec_bytes, raft_->config().max_message_bytes);
  if (enc.w.out().size() + 1024 > limit)
    return fmt::format("the job is {} bytes encoded; the limit is {} (one replicated log entry)", enc.w.out().size(),
                       limit - 1024);
  return std::nullopt;
}

// The datacenters a job runs in: the named ones (each must be usable: an explicit choice is never
// silently moved), or the best `datacenter_count` by health bucket (healthy > busy > degraded;
// unhealthy never), then free cores, then name.
std::vector<std::string> Gate::route(const JobSpec& s, Err& code, std::string& error) const {
  std::vector<std::string> out;
  if (!s.datacenters.empty()) {
    for (const auto& d : s.datacenters) {
      const DcStatus st = dc_status(*dc(d));
      if (st.health == DcHealth::unhealthy) {
        code = Err::unavailable;
        error = fmt::format("datacenter '{}' is unavailable ({}, {}); name another or let the gate choose", d,
                            name(st.state), name(st.health));
        return {};
      }
      out.push_back(d);
    }
    return out;
  }
  const std::size_t n = std::max<std::uint32_t>(1, s.datacenter_count);
  std::vector<std::tuple<int, std::int64_t, std::string>> cands;
  for (const auto& d : dcs_) {
    const DcStatus st = dc_status(d);
    if (st.health == DcHealth::unhealthy) continue;
    cands.emplace_back(static_cast<int>(st.health), -static_cast<std::int64_t>(st.available_cores), d.cfg.name);
  }
  std::sort(cands.begin(), cands.end());
  if (cands.size() < n) {
    code = Err::unavailable;
    error = cands.empty() ? std::string("no usable datacenter: every datacenter is unavailable or unhealthy")
                          : fmt::format("only {} of the {} datacenters asked for are usable", cands.size(), n);
    return {};
  }
  for (std::size_t i = 0; i < n; ++i) out.push_back(std::get<2>(cands[i]));
  return out;
}

void Gate::remember_rejection(const std::string& key, std::uint64_t digest, const SubmitAck& a) {
  rejections_.remember(key, digest, a, ctx_->now());
  stats_.rejections_evicted = rejections_.evicted();
}

// A submission already answered by the ledger (COMMITTED), an accept in flight (PENDING: the
// duplicate waits for the first one's answer) or a remembered rejection (REJECTED, for its TTL).
bool Gate::answer_known(NodeId from, const Submit& m, std::uint64_t digest) {
  const JobSpec& spec = m.spec;
  const std::string& key = spec.idempotency_key;
  auto accepted = [&](const std::string& job_id) {
    stats_.duplicates++;
    SubmitAck a;
    a.req = m.req;
    a.accepted = true;
    a.job_id = job_id;
    a.leader = raft_->leader_id();
    send(from, MsgType::submit_ack, a);
    return true;
  };
  auto conflict = [&](std::string why) {
    stats_.conflicts++;
    SubmitAck a = reject(m.req, Err::conflict, std::move(why));
    send(from, MsgType::submit_ack, a);
    return true;
  };
  if (!key.empty()) {
    if (auto r = rejections_.find(key, digest)) {  // (a different payload is evaluated afresh)
      SubmitAck a = *r;
      a.req = m.req;
      stats_.rejected++;
      send(from, MsgType::submit_ack, a);
      return true;
    }
    if (auto id = ledger_.job_for_key(key)) {
      const GateJob* j = ledger_.job(*id);
      if (j != nullptr && j->digest == digest) return accepted(*id);
      return conflict(fmt::format("idempotency key '{}' was used for job {} with a different payload", key, *id));
    }
  }
  if (const GateJob* j = ledger_.job(spec.job_id)) {
    if (j->digest == digest && j->spec.idempotency_key == key) return accepted(spec.job_id);
    return conflict(fmt::format("job id '{}' already exists with another payload", spec.job_id));
  }
  if (auto w = accepts_.find(spec.job_id); w != accepts_.end()) {
    if (w->second.digest != digest || w->second.key != key)
      return conflict(fmt::format("job id '{}' is being recorded with another payload", spec.job_id));
    if (waiters_ >= cfg_.max_waiters) {
      SubmitAck a = reject(m.req, Err::overloaded, "too many clients waiting for their jobs to be recorded");
      send(from, MsgType::submit_ack, a);
      return true;
    }
    stats_.duplicates++;
    w->second.clients.emplace_back(from, m.req);
    ++waiters_;
    return true;
  }
  return false;
}

void Gate::handle_submit(NodeId from, Submit& m) {
  stats_.submits++;
  const std::uint64_t digest = digest_of(m.spec);
  if (answer_known(from, m, digest)) return;
  if (!is_leader()) {
    stats_.redirects++;
    SubmitAck a = reject(m.req, raft_->leader_id() == 0 ? Err::no_quorum : Err::not_leader,
                         raft_->leader_id() == 0 ? "the gates have no leader (no quorum); retry later"
                                                 : "this gate is not the gate leader");
    send(from, MsgType::submit_ack, a);
    return;
  }
  if (auto err = validate(m.spec)) {
    stats_.rejected++;
    SubmitAck a = reject(m.req, Err::invalid, *err);
    log::info("gate", "submit_rejected", "job={} error={}", log::quoted(m.spec.job_id), log::quoted(*err));
    remember_rejection(m.spec.idempotency_key, digest, a);
    send(from, MsgType::submit_ack, a);
    return;
  }
  const std::size_t active = accepts_.size() + ledger_.active();
  if (active >= cfg_.max_active_jobs || ledger_.size() + accepts_.size() >= cfg_.max_jobs ||
      waiters_ >= cfg_.max_waiters) {
    stats_.rejected++;
    SubmitAck a =
        reject(m.req, Err::overloaded,
               fmt::format("too many jobs ({} active, {} held, {} waiting)", active, ledger_.size(), waiters_));
    send(from, MsgType::submit_ack, a);
    return;
  }
  Err code = Err::none;
  std::string error;
  std::vector<std::string> dcs = route(m.spec, code, error);
  if (dcs.empty()) {
    stats_.rejected++;
    SubmitAck a = reject(m.req, code, error);
    log::info("gate", "submit_unroutable", "job={} error={}", log::quoted(m.spec.job_id), log::quoted(error));
    send(from, MsgType::submit_ack, a);  // not remembered: the datacenters may come back
    return;
  }
  const std::string id = m.spec.job_id;
  Waiters& w = accepts_[id];
  w.digest = digest;
  w.key = m.spec.idempotency_key;
  w.clients.emplace_back(from, m.req);
  ++waiters_;
  GateEntry e = entry(GateOp::accept, id);
  e.routed = m.spec.datacenters.empty();
  e.spec = std::move(m.spec);
  // Clamped as each manager clamps a share (AD-44), before the budget is split over the shares.
  e.spec.retry_budget = std::min(e.spec.retry_budget, cfg_.max_retry_budget);
  e.spec.workflow_retries = std::min(e.spec.workflow_retries, cfg_.max_workflow_retries);
  e.digest = digest;
  e.dcs = dcs;
  e.fence = make_token(raft_->term(), 1);
  e.owner = self_;
  log::info("gate", "job_received", "job={} workflows={} datacenters={} from={}", log::quoted(id),
            e.spec.workflows.size(), fmt::format("{}", fmt::join(dcs, ",")), from);
  auto answer = [this, id](bool ok, Err c, const std::string& why) {
    auto it = accepts_.find(id);
    if (it == accepts_.end()) return;
    for (const auto& [client, req] : it->second.clients) {
      SubmitAck a = ok ? SubmitAck{} : reject(req, c, why);
      a.req = req;
      if (ok) a.accepted = true, a.job_id = id, a.leader = raft_->leader_id();
      send(client, MsgType::submit_ack, a);
    }
    waiters_ -= it->second.clients.size();
    accepts_.erase(it);
  };
  propose(
      std::move(e),
      [this, answer, id](GateOutcome o) {
        if (o == GateOutcome::applied || o == GateOutcome::duplicate) {
          stats_.accepted++;
          if (const GateJob* j = ledger_.job(id); j != nullptr && is_leader()) {
            Live& l = live_of(id, *j);
            for (auto& r : l.shares) r.fenced = true;  // its submits carry the current fence
          }
          answer(true, Err::none, "");
        } else if (o == GateOutcome::full) {
          stats_.rejected++;
          answer(false, Err::overloaded, "the gate job ledger is full");
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

void Gate::handle_status(NodeId from, const StatusQuery& m) {
  StatusReply r;
  r.req = m.req;
  if (const GateJob* j = ledger_.job(m.job_id)) {
    r.found = true;
    r.job = view(m.job_id, *j);
    if (m.with_plan)
      for (std::size_t i = 0; i < r.job.workflows.size() && i < j->spec.workflows.size(); ++i)
        r.job.workflows[i].plan = j->spec.workflows[i].plan;
  } else if (!is_leader()) {
    // A follower's ledger can lag the leader's (a job acked a moment ago): not a final "no such job".
    r.leader = raft_->leader_id();
    r.code = r.leader != 0 ? Err::not_leader : Err::unavailable;
  }
  send(from, MsgType::status_reply, r);
}

void Gate::handle_cancel(NodeId from, const CancelJob& m) {
  stats_.cancels++;
  CancelReply r;
  r.req = m.req;
  const GateJob* j = ledger_.job(m.job_id);
  if (!is_leader()) {
    r.code = raft_->leader_id() == 0 ? Err::no_quorum : Err::not_leader;
    r.error = "this gate is not the gate leader";
    r.leader = raft_->leader_id();
  } else if (j == nullptr) {
    r.code = Err::not_found;
    r.error = fmt::format("no job '{}'", m.job_id);
  } else if (m.fence != 0 && m.fence != j->fence) {
    r.code = Err::fence;
    r.error = fmt::format("stale fence token {} (current {})", m.fence, j->fence);
  } else if (j->state == JobState::cancelled) {
    r.success = true;
    r.already_cancelled = true;
  } else if (terminal(j->state)) {
    r.already_completed = true;
    r.error = fmt::format("the job already ended: {}", name(j->state));
  } else if (waiters_ >= cfg_.max_waiters) {
    r.code = Err::overloaded;
    r.error = "too many clients waiting for their requests to be recorded";
  } else {
    std::uint32_t open = 0;  // workflows still to stop: the job's, in every share not ended
    for (const auto& s : j->shares)
      open += terminal(s.state) ? 0 : static_cast<std::uint32_t>(j->spec.workflows.size());
    GateEntry e = entry(GateOp::cancel, m.job_id);
    e.error = m.reason.empty() ? "cancelled by request" : m.reason;
    if (auto it = live_.find(m.job_id); it != live_.end())
      for (std::uint32_t s = 0; s < it->second.shares.size(); ++s)
        e.counts.push_back(ShareCount{s, it->second.shares[s].completed, it->second.shares[s].failed});
    ++waiters_;
    const std::uint64_t req = m.req;
    const std::string id = m.job_id;
    log::info("gate", "job_cancel", "job={} open_shares={}", log::quoted(id), open);
    auto answer = [this, from, req, open, id](bool ok, GateOutcome o, const std::string& why) {
      --waiters_;
      const GateJob* job = ledger_.job(id);
      CancelReply c;
      c.req = req;
      c.success = ok && job != nullptr && job->state == JobState::cancelled;
      c.already_cancelled = c.success && o != GateOutcome::applied;
      c.already_completed = ok && !c.success;
      c.cancelled_workflow_count = o == GateOutcome::applied ? open : 0;
      if (!ok) c.code = Err::unavailable, c.error = why;
      if (ok && !c.success) c.error = fmt::format("the job already ended: {}", job ? name(job->state) : "retired");
      send(from, MsgType::cancel_reply, c);
    };
    propose(
        std::move(e), [answer](GateOutcome o) { answer(true, o, ""); },
        [answer](const Status& st) {
          answer(false, GateOutcome::applied,
                 fmt::format("the cancel could not be recorded ({}); retry it", st.message()));
        });
    return;
  }
  send(from, MsgType::cancel_reply, r);
}

}  // namespace hs::gate
