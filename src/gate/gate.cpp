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
#include "hyperscale/gate/ring.hpp"

namespace hs::gate {

using namespace cluster;

namespace {

constexpr std::array<const char*, 7> kConcernNames{"none",      "registry", "shares",     "deadlines",
                                                   "retention", "windows",  "shares_more"};
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
  // A forwarded entry is answered as soon as this gate applied it, not at the next registry pass.
  raft_->set_on_applied([this] {
    if (awaiting_apply_ == 0 || ctx_ == nullptr) return;
    seen_now_ = ctx_->now();
    forwarded_pass();
  });
}

Gate::~Gate() = default;

bool Gate::is_leader() const noexcept { return leading_ && raft_->is_ready_leader(); }

bool Gate::in_quorum() const noexcept {
  if (raft_->is_leader()) return raft_->is_ready_leader();
  return raft_->leader_id() != 0;
}

std::vector<NodeId> Gate::live_gates() const {
  std::vector<NodeId> out;
  for (NodeId g : cfg_.gates) {
    if (g == self_ ? handing_off_ : gone_since_.count(g) != 0) continue;
    out.push_back(g);
  }
  return out;
}

NodeId Gate::ring_owner(const std::string& job_id) const { return Ring(live_gates()).owner(job_id); }

void Gate::on_member(NodeId gate, bool alive) {
  if (gate == self_ || std::find(cfg_.gates.begin(), cfg_.gates.end(), gate) == cfg_.gates.end()) return;
  const bool was_gone = gone_since_.count(gate) != 0;
  if (alive == !was_gone) return;
  stats_.member_changes++;
  if (alive) {
    gone_since_.erase(gate);
  } else {
    gone_since_.emplace(gate, seen_now_);  // bounded: configured gates only
  }
  log::info("gate", alive ? "gate_alive" : "gate_gone", "self={} gate={} live={}", self_, gate, live_gates().size());
}

bool Gate::owner_gone(NodeId owner) const {
  if (owner == self_) return handing_off_;
  if (std::find(cfg_.gates.begin(), cfg_.gates.end(), owner) == cfg_.gates.end()) return true;
  auto it = gone_since_.find(owner);
  return it != gone_since_.end() && seen_now_ - it->second >= cfg_.member_grace;
}

// Graceful stop: new jobs go elsewhere (live_gates() leaves this gate out), each owned job goes to
// its ring successor among the other live gates, then leadership.
bool Gate::hand_off() {
  if (!handing_off_) log::info("gate", "hand_off_start", "self={} owned={}", self_, live_.size());
  handing_off_ = true;
  if (!in_quorum()) return true;  // nothing can be recorded: the peers adopt after member_grace
  const Ring ring(live_gates());
  bool owns = false;
  for (const auto& [id, j] : ledger_.jobs()) {
    if (j.owner != self_) continue;
    const NodeId to = ring.owner(id);
    if (to == 0) return true;  // no other live gate to hand to
    owns = true;
    propose_own(id, j, to, "hand_off");
  }
  if (owns) return false;
  if (!raft_->is_leader()) return true;
  // The new leader is a gate SWIM sees alive: left to choose (transfer to 0), libraft may pick a
  // dead voter whenever no live one has matched the leader's last entry yet, and that transfer
  // only times out.
  const std::vector<NodeId> live = live_gates();
  if (live.empty()) return true;  // no other gate to lead: the quorum is gone with this one anyway
  const NodeId to = live.front();
  const Status st = raft_->transfer_leadership(to);
  if (st.code() == Errc::already_exists) return false;  // the transfer asked for earlier is under way
  if (!st.ok())
    log::warn("gate", "hand_off_refused", "self={} to={} error={}", self_, to, log::quoted(st.to_string()));
  else
    log::info("gate", "hand_off", "self={} to={} term={}", self_, to, raft_->term());
  return false;
}

// ---------------------------------------------------------------- lifecycle

void Gate::on_start(node::Context& ctx) {
  ctx_ = &ctx;
  self_ = ctx.self();
  seen_now_ = ctx.now();
  HS_ASSERT(std::find(cfg_.gates.begin(), cfg_.gates.end(), self_) != cfg_.gates.end(),
            "gate: self {} is not in its own gate list ({} gates)", self_, cfg_.gates.size());
  if (member_view_)  // until the view confirms them, the other gates are gone (since now)
    for (NodeId g : cfg_.gates)
      if (g != self_) gone_since_.emplace(g, seen_now_);
  for (std::uint64_t c = kRegistry; c < kConcerns; ++c) ctx.set_timer(cfg_.tick, c);
  on_raft_change();
}

void Gate::on_timer(node::Context& ctx, node::TimerId, std::uint64_t tag) {
  ctx_ = &ctx;
  seen_now_ = ctx.now();
  if (tag == kSharesMore) {  // one-shot: the shares pass sets it again while jobs remain
    shares_more_armed_ = false;
    return run_concern(kSharesMore);
  }
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
    if (c == kRegistry) {  // every gate keeps the registry, its members view and its forwarded entries
      if (member_view_)
        for (NodeId g : cfg_.gates) on_member(g, member_view_(g));
      registry_pass();
      return forwarded_pass();
    }
    if (!in_quorum()) {                       // cut off from the quorum: no dispatching, no deciding (GTE-03)
      if (c == kRetention) retention_pass();  // remembered rejections expire on every gate
      return;
    }
    switch (c) {
      case kShares:
        ownership_pass();
        if (!shares_more_armed_) shares_pass();  // else a pass is under way: its next slice goes on
        break;
      case kSharesMore:
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
  if (ready)
    log::info("gate", "leading", "self={} term={} jobs={}", self_, raft_->term(), ledger_.size());
  else
    log::info("gate", "not_leading", "self={} term={} leader={}", self_, raft_->term(), raft_->leader_id());
}

// `own` for a job: the entry carries the fence this gate saw, so of two gates adopting the same job
// at once only the first wins (the job's fence is then fence + 1). Once in flight per job.
void Gate::propose_own(const std::string& id, const GateJob& j, NodeId to, const char* why) {
  if (auto it = owning_.find(id); it != owning_.end() && it->second == j.fence) return;
  owning_[id] = j.fence;  // bounded: one per ledger job
  if (to == self_) stats_.takeovers++;
  GateEntry e = entry(GateOp::own, id);
  e.owner = to;
  log::info("gate", "job_owner_change", "job={} why={} fence={} owner_was={} owner={}", log::quoted(id), why, j.fence,
            j.owner, to);
  auto applied = [this, id, to](GateOutcome o) {
    owning_.erase(id);
    if (o == GateOutcome::applied) (to == self_ ? stats_.adoptions : stats_.hand_offs)++;
  };
  auto failed = [this, id](const Status&) { owning_.erase(id); };
  propose(std::move(e), applied, failed);
}

// Every gate in quorum: a job whose owner has been gone (suspect or dead in the SWIM view) for
// member_grace goes to the ring's choice among the live gates; when that is this gate, it adopts it.
void Gate::ownership_pass() {
  if (handing_off_) return;
  const Ring ring(live_gates());
  for (const auto& [id, j] : ledger_.jobs()) {
    if (j.owner == self_ || !owner_gone(j.owner) || ring.owner(id) != self_) continue;
    propose_own(id, j, self_, "owner_gone");
  }
}

Gate::Live& Gate::live_of(const std::string& id, const GateJob& j) {
  auto [it, fresh] = live_.try_emplace(id);
  Live& l = it->second;
  if (fresh) {
    const Instant now = ctx_->now();
    l.started = now;
    l.base_elapsed_ms = j.elapsed_ms;
    l.next_checkpoint = now + cfg_.checkpoint_every;
    l.fence = j.fence;
    l.shares.resize(j.shares.size());
    for (std::size_t s = 0; s < j.shares.size(); ++s) {
      ShareRun& r = l.shares[s];
      r.completed = j.shares[s].completed;
      r.failed = j.shares[s].failed;
      r.last_answer = now;  // every share gets a full grace from the takeover
    }
  } else if (l.fence != j.fence) {  // owned again at a new fence: the datacenters learn it
    l.fence = j.fence;
    for (auto& r : l.shares) r.fenced = false;
  }
  return l;
}

GateEntry Gate::entry(GateOp op, const std::string& job_id) const {
  GateEntry e;
  e.op = op;
  e.term = raft_->term();
  e.job_id = job_id;
  const GateJob* j = ledger_.job(job_id);
  e.elapsed_ms = j != nullptr ? elapsed_ms(job_id) : 0;
  e.fence = j != nullptr ? j->fence : 0;  // refused if the job changed owner meanwhile
  return e;
}

// The leader appends; any other gate forwards the entry to the leader it knows (GateProposal) and
// runs `applied` once the leader answered that it committed and this gate applied it.
bool Gate::propose(GateEntry e, OnApplied applied, OnFailed failed, OnApplied committed) {
  stats_.proposals++;
  const GateOp op = e.op;
  const std::string job = e.job_id;
  auto refuse = [&](Status st) {
    stats_.proposals_failed++;
    log::warn("gate", "entry_refused", "op={} job={} error={}", static_cast<int>(op), log::quoted(job),
              log::quoted(st.to_string()));
    if (failed) failed(st);
    return false;
  };
  if (!raft_->is_leader()) {
    const NodeId leader = raft_->leader_id();
    if (leader == 0 || leader == self_)
      return refuse(make_error(Errc::unavailable, "the gates have no leader (no quorum)"));
    if (forwarded_.size() >= cfg_.max_forwarded) {
      stats_.forward_refused++;
      return refuse(make_error(Errc::backpressure,
                               fmt::format("{} entries already forwarded to the gate leader", forwarded_.size())));
    }
    const std::uint64_t req = next_forward_++;
    forwarded_.emplace(req, Forwarded{.applied =
                                          [applied](std::uint64_t o) {
                                            if (applied) applied(static_cast<GateOutcome>(o));
                                          },
                                      .committed =
                                          [committed](std::uint64_t o) {
                                            if (committed) committed(static_cast<GateOutcome>(o));
                                          },
                                      .failed = failed,
                                      .sent = seen_now_,
                                      .index = 0,
                                      .outcome = 0});
    GateProposal m;
    m.req = req;
    m.entry = encode_entry(e);
    stats_.forwarded++;
    send(leader, MsgType::gate_proposal, m);
    return true;
  }
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
  if (!st.ok()) return refuse(st);
  return true;
}

// The leader: another gate's entry. One with a stale fence (the job has another owner now) is
// refused before it reaches the log; the ledger refuses it too if ownership changes meanwhile.
void Gate::handle_proposal(NodeId from, const GateProposal& m) {
  GateProposalAck a;
  a.req = m.req;
  auto answer = [&](Err code, std::string why) {
    stats_.proposals_in_refused++;
    a.code = code;
    a.error = std::move(why);
    a.leader = raft_->leader_id();
    send(from, MsgType::gate_proposal_ack, a);
  };
  if (std::find(cfg_.gates.begin(), cfg_.gates.end(), from) == cfg_.gates.end())
    return answer(Err::invalid, "not a configured gate");
  if (!raft_->is_leader())
    return answer(raft_->leader_id() == 0 ? Err::no_quorum : Err::not_leader, "this gate is not the gate leader");
  GateEntry e;
  const char* why = "";
  if (!decode_entry(m.entry, e, &why)) {
    stats_.decode_errors++;
    log::warn("gate", "decode_error", "from={} type=gate_proposal error={}", from, log::quoted(why));
    return answer(Err::invalid, fmt::format("the entry does not decode: {}", why));
  }
  if (const GateJob* j = ledger_.job(e.job_id);
      j != nullptr && e.op != GateOp::accept && e.fence != 0 && e.fence != j->fence) {
    stats_.stale_proposals++;
    log::warn("gate", "stale_proposal", "from={} op={} job={} fence={} current={} owner={}", from,
              static_cast<int>(e.op), log::quoted(e.job_id), e.fence, j->fence, j->owner);
    return answer(Err::fence, fmt::format("stale fence {} for job {} (current {}, owner {})", e.fence, e.job_id,
                                          j->fence, j->owner));
  }
  if (proposals_in_flight_ >= cfg_.max_forwarded)
    return answer(Err::overloaded, fmt::format("{} forwarded entries in flight", proposals_in_flight_));
  stats_.proposals_in++;
  ++proposals_in_flight_;
  std::weak_ptr<bool> alive = token_;
  const std::uint64_t req = m.req;
  Status st =
      raft_->propose(m.entry, [this, alive, from, req](const Status& s, std::uint64_t index, std::uint64_t result) {
        if (alive.expired()) return;
        --proposals_in_flight_;
        GateProposalAck r;
        r.req = req;
        r.leader = raft_->leader_id();
        if (s.ok()) {
          r.committed = true, r.index = index, r.outcome = result;
          if (static_cast<GateOutcome>(result) == GateOutcome::stale_fence) stats_.stale_proposals++;
        } else {
          r.code = Err::unavailable, r.error = s.to_string();
        }
        send(from, MsgType::gate_proposal_ack, r);
      });
  if (!st.ok()) {
    --proposals_in_flight_;
    answer(Err::unavailable, st.to_string());
  }
}

void Gate::handle_proposal_ack(NodeId from, const GateProposalAck& m) {
  auto it = forwarded_.find(m.req);
  if (it == forwarded_.end() || it->second.index != 0) {
    stats_.stale_replies++;
    return;
  }
  if (!m.committed) {
    Forwarded f = std::move(it->second);
    forwarded_.erase(it);
    stats_.forward_failed++;
    log::info("gate", "forward_refused", "from={} code={} error={}", from, name(m.code), log::quoted(m.error));
    if (f.failed) f.failed(make_error(Errc::unavailable, fmt::format("{}: {}", name(m.code), m.error)));
    return;
  }
  it->second.index = m.index;
  it->second.outcome = m.outcome;
  ++awaiting_apply_;
  if (auto committed = std::move(it->second.committed)) {
    it->second.committed = nullptr;
    committed(m.outcome);  // may send, not erase from forwarded_ (only forwarded_pass erases)
  }
  forwarded_pass();
}

// Committed entries run their `applied` once this gate's ledger has them (the caller reads it);
// entries unanswered for 5 x request_timeout (or not applied for 30 x) fail: the caller retries.
void Gate::forwarded_pass() {
  const std::uint64_t applied_index = ledger_.applied_index();
  for (auto it = forwarded_.begin(); it != forwarded_.end();) {
    Forwarded& f = it->second;
    const bool done = f.index != 0 && f.index <= applied_index;
    const Duration wait = f.index != 0 ? cfg_.request_timeout * 30 : cfg_.request_timeout * 5;
    if (!done && seen_now_ - f.sent < wait) {
      ++it;
      continue;
    }
    Forwarded mine = std::move(f);
    if (mine.index != 0) --awaiting_apply_;
    it = forwarded_.erase(it);
    if (done) {
      if (mine.applied) mine.applied(mine.outcome);
    } else {
      stats_.forward_failed++;
      log::info("gate", "forward_timeout", "index={}", mine.index);
      if (mine.failed) mine.failed(make_error(Errc::timeout, "the gate leader did not answer the forwarded entry"));
    }
  }
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
    HS_ON(gate_proposal, GateProposal, handle_proposal(from, m))
    HS_ON(gate_proposal_ack, GateProposalAck, handle_proposal_ack(from, m))
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
  if (!in_quorum()) {  // cut off from the quorum (GTE-03): nothing can be recorded here
    stats_.redirects++;
    SubmitAck a = reject(m.req, Err::no_quorum,
                         "this gate is cut off from the gates' quorum (no leader known); retry at another gate");
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
  e.owner = ring_owner(id);  // the ring's choice among the live gates (this one when alone)
  if (e.owner == 0) e.owner = self_;
  log::info("gate", "job_received", "job={} workflows={} datacenters={} from={} owner={}", log::quoted(id),
            e.spec.workflows.size(), fmt::format("{}", fmt::join(dcs, ",")), from, e.owner);
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
  // The clients' answer, once: at a follower on the leader's word that the entry committed (it is
  // on a quorum's disks then), else when applied here.
  auto settle = [this, answer, id](GateOutcome o) {
    if (accepts_.find(id) == accepts_.end()) return;  // answered already
    if (o == GateOutcome::applied || o == GateOutcome::duplicate) {
      stats_.accepted++;
      answer(true, Err::none, "");
    } else if (o == GateOutcome::full) {
      stats_.rejected++;
      answer(false, Err::overloaded, "the gate job ledger is full");
    } else {
      stats_.conflicts++;
      answer(false, Err::conflict, fmt::format("job '{}' conflicts with a recorded job ({})", id, name(o)));
    }
  };
  propose(
      std::move(e),
      [this, settle, id](GateOutcome o) {
        if (o == GateOutcome::applied || o == GateOutcome::duplicate) {
          if (const GateJob* j = ledger_.job(id); j != nullptr && j->owner == self_) {
            Live& l = live_of(id, *j);
            for (auto& r : l.shares) r.fenced = true;  // its submits carry the current fence
          }
        }
        settle(o);
      },
      [answer](const Status& st) {
        answer(false, Err::unavailable,
               fmt::format("the job could not be recorded ({}); retry with the same key", st.message()));
      },
      settle);
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
    // A follower's ledger can lag the leader's (a job acked a moment ago, here too: a follower acks a
    // submission once the leader reports it committed): not a final "no such job".
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
  if (!in_quorum()) {
    r.code = Err::no_quorum;
    r.error = "this gate is cut off from the gates' quorum (no leader known); retry at another gate";
  } else if (j == nullptr && !is_leader()) {  // this gate's ledger may lag: the leader's answer is final
    r.code = Err::not_leader;
    r.error = fmt::format("no job '{}' here yet; ask the gate leader", m.job_id);
    r.leader = raft_->leader_id();
  } else if (j == nullptr) {
    r.code = Err::not_found;
    r.error = fmt::format("no job '{}'", m.job_id);
  } else if (j->owner != self_ && !terminal(j->state) && !owner_gone(j->owner) && gone_since_.count(j->owner) == 0) {
    // The owner records the cancel with the counts it has seen (totals never go back): redirect.
    r.code = Err::not_leader;
    r.error = fmt::format("job '{}' is owned by gate {}; ask it", m.job_id, j->owner);
    r.leader = j->owner;
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
    e.fence = 0;  // a client's cancel: whoever owns the job
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
