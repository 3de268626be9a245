#include "hyperscale/cluster/election.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <stdexcept>
#include <string>

#include "hyperscale/base/log.hpp"
#include "hyperscale/cluster/codec.hpp"

namespace hs::cluster {

namespace {

constexpr std::string_view kComp = "election";
constexpr std::uint8_t kVersion = 1;
constexpr std::uint8_t kStateVersion = 1;

enum MsgType : std::uint8_t {
  kPreVoteReq = 1,   // {term proposed, round}
  kPreVoteResp = 2,  // {responder term, round, granted}
  kVoteReq = 3,      // {term}
  kVoteResp = 4,     // {term, granted}
  kHeartbeat = 5,    // {term, sent (leader clock, ns)}
  kAck = 6,          // {term, sent echoed, ok}
};

node::Bytes header(MsgType t) {
  node::Bytes b;
  b.reserve(24);
  b.push_back(kVersion);
  b.push_back(t);
  return b;
}

}  // namespace

Status check_config(const ElectionConfig& c) {
  const auto ms = [](Duration d) { return to_millis(d); };
  if (c.heartbeat <= Duration{0})
    return make_error(Errc::invalid_argument, fmt::format("heartbeat ({} ms) must be positive", ms(c.heartbeat)));
  if (c.lease <= c.heartbeat)
    return make_error(Errc::invalid_argument,
                      fmt::format("lease ({} ms) must be longer than heartbeat ({} ms)", ms(c.lease), ms(c.heartbeat)));
  if (c.election_timeout_min <= c.heartbeat)
    return make_error(Errc::invalid_argument,
                      fmt::format("election_timeout_min ({} ms) must be longer than heartbeat ({} ms)",
                                  ms(c.election_timeout_min), ms(c.heartbeat)));
  if (c.lease * 100 > c.election_timeout_min * kMaxLeasePercent)
    return make_error(Errc::invalid_argument,
                      fmt::format("lease ({} ms) must be at most {} % of election_timeout_min ({} ms)", ms(c.lease),
                                  kMaxLeasePercent, ms(c.election_timeout_min)));
  if (c.election_timeout_max < c.election_timeout_min)
    return make_error(Errc::invalid_argument,
                      fmt::format("election_timeout_max ({} ms) must not be below election_timeout_min ({} ms)",
                                  ms(c.election_timeout_max), ms(c.election_timeout_min)));
  return ok_status();
}

Election::Election(ElectionConfig cfg) : cfg_(std::move(cfg)) {
  std::sort(cfg_.members.begin(), cfg_.members.end());
  cfg_.members.erase(std::unique(cfg_.members.begin(), cfg_.members.end()), cfg_.members.end());
  if (Status st = check_config(cfg_); !st.ok()) throw std::invalid_argument("ElectionConfig: " + st.message());
  if (cfg_.stepdown_failed_checks < 1) cfg_.stepdown_failed_checks = 1;
  if (cfg_.flap_changes < 1) cfg_.flap_changes = 1;
  if (cfg_.max_pending_syncs < 1) cfg_.max_pending_syncs = 1;
}

bool Election::is_member(node::NodeId id) const {
  return std::binary_search(cfg_.members.begin(), cfg_.members.end(), id);
}

// ---------------------------------------------------------------- persistence

void Election::load_state(node::Context& ctx) {
  const std::optional<node::Bytes> raw = ctx.disk().get(std::string(kStateKey));
  if (!raw) return;  // fresh node: term 0, no vote
  Reader r(*raw);
  const std::uint8_t v = r.u8();
  const std::uint64_t t = r.var();
  const bool has_vote = r.b();
  const std::uint64_t vote = r.var();
  if (!r.done() || v != kStateVersion || t > kMaxTerm) {
    // We cannot know which term we voted in: voting or campaigning could vote twice. Fail closed.
    passive_ = true;
    ++stats_.state_corrupt;
    log::error(kComp, "state_corrupt", "node={} key={} bytes={} error={} action=passive", self_, kStateKey, raw->size(),
               log::quoted(r.ok() ? (v != kStateVersion ? "bad version" : "bad term or trailing bytes") : r.error()));
    return;
  }
  term_ = t;
  voted_for_ = has_vote ? std::optional<node::NodeId>(vote) : std::nullopt;
}

void Election::load_flaps(node::Context& ctx) {
  const std::optional<node::Bytes> raw = ctx.disk().get(std::string(kFlapKey));
  if (!raw) return;
  Reader r(*raw);
  const std::uint8_t v = r.u8();
  const std::size_t n = r.count(cfg_.flap_changes);
  std::deque<Instant> times;
  for (std::size_t i = 0; i < n; ++i) times.push_back(Instant{r.i64()});
  if (!r.done() || v != kStateVersion) {
    ++stats_.flap_state_dropped;
    log::warn(kComp, "flap_state_dropped", "node={} key={} bytes={} error={}", self_, kFlapKey, raw->size(),
              log::quoted(r.ok() ? "bad version or trailing bytes" : r.error()));
    return;
  }
  const Instant now = ctx.now();
  for (Instant t : times)
    if (t <= now && t + cfg_.flap_window >= now) changes_.push_back(t);  // a time ahead of us: clock reset, drop
}

void Election::persist_flaps(node::Context& ctx) {
  Writer w;
  w.u8(kStateVersion);
  w.var(changes_.size());
  for (Instant t : changes_) w.i64(t.count());
  const Status st = ctx.disk().put(std::string(kFlapKey), w.out());
  if (!st.ok()) {
    ++stats_.disk_errors;
    log::warn(kComp, "persist_flaps_failed", "node={} error={}", self_, log::quoted(st.message()));
  }
}

bool Election::persist(node::Context& ctx) {
  Writer w;
  w.u8(kStateVersion);
  w.var(term_);
  w.b(voted_for_.has_value());
  w.var(voted_for_.value_or(0));
  const Status st = ctx.disk().put(std::string(kStateKey), w.out());
  if (!st.ok()) {
    ++stats_.disk_errors;
    log::error(kComp, "persist_failed", "node={} term={} error={}", self_, term_, log::quoted(st.message()));
    return false;
  }
  return true;
}

void Election::queue_sync(node::Context& ctx, Tag kind, std::uint64_t term, node::NodeId to) {
  if (syncs_.size() >= cfg_.max_pending_syncs) {
    ++stats_.syncs_refused_full;
    log::warn(kComp, "sync_refused_full", "node={} pending={} term={} to={}", self_, syncs_.size(), term, to);
    return;
  }
  const node::TimerId id = ctx.sync(kind);
  if (id == 0) {  // the host refused (disk failure: the node is being stopped)
    ++stats_.disk_errors;
    log::error(kComp, "sync_failed", "node={} term={}", self_, term);
    return;
  }
  syncs_[id] = PendingSync{kind, term, to};
}

// ---------------------------------------------------------------- helpers

void Election::decode_error(node::NodeId from, const char* why) {
  ++stats_.decode_errors;
  log::warn(kComp, "decode_error", "node={} from={} error={}", self_, from, log::quoted(why));
}

void Election::broadcast(node::Context& ctx, const node::Bytes& msg) {
  for (node::NodeId m : cfg_.members)
    if (m != self_) ctx.send(m, msg);
}

void Election::arm_election_timer(node::Context& ctx, Duration after) {
  if (election_timer_ != 0) ctx.cancel_timer(election_timer_);
  election_timer_ = ctx.set_timer(after, kElectionTimer);
}

void Election::arm_election_timer(node::Context& ctx) {
  const Duration d{ctx.rng().range(cfg_.election_timeout_min.count(), cfg_.election_timeout_max.count())};
  arm_election_timer(ctx, d);
}

bool Election::hears_live_leader(Instant now) const {
  if (role_ == Role::leader && leading_) return true;
  return now < quiet_until_;
}

bool Election::damped(Instant now) {
  while (!changes_.empty() && changes_.front() + cfg_.flap_window < now) changes_.pop_front();
  return changes_.size() >= cfg_.flap_changes && now < changes_.back() + cfg_.flap_cooldown;
}

void Election::set_leader(node::Context& ctx, std::optional<node::NodeId> l) {
  leader_ = l;
  if (!l) return;
  if (known_ && known_->first == term_ && known_->second == *l) return;
  known_ = std::make_pair(term_, *l);
  ++stats_.leader_changes;
  changes_.push_back(ctx.now());
  while (changes_.size() > cfg_.flap_changes) changes_.pop_front();
  persist_flaps(ctx);
}

void Election::become_follower(node::Context& ctx) {
  if (heartbeat_timer_ != 0) ctx.cancel_timer(heartbeat_timer_);
  if (lease_timer_ != 0) ctx.cancel_timer(lease_timer_);
  heartbeat_timer_ = lease_timer_ = 0;
  role_ = Role::follower;
  prevoting_ = false;
  announced_ = false;
  prevotes_.clear();
  votes_.clear();
  acked_.clear();
  lease_until_ = Instant::min();
  failed_checks_ = 0;
  if (election_timer_ == 0) arm_election_timer(ctx);
}

void Election::adopt_term(node::Context& ctx, std::uint64_t t) {
  if (role_ == Role::leader) {
    ++stats_.deposed;
    log::info(kComp, "deposed", "node={} term={} new_term={}", self_, term_, t);
  }
  term_ = t;
  voted_for_.reset();
  become_follower(ctx);
  set_leader(ctx, std::nullopt);
  (void)persist(ctx);  // logged and counted; a lost term bump cannot cause a double vote
}

void Election::refresh(node::Context& ctx) {
  const Instant now = ctx.now();
  leading_ = role_ == Role::leader && now < lease_until_;
  if (leading_ && lease_timer_ == 0) {
    // Fires at the lease's end so is_leader() turns false in an event at that instant. A host may
    // fire a timer a hair early (the simulator rounds skewed clocks to the nanosecond): the floor
    // keeps that from becoming a busy loop, and bounds how late is_leader() turns false (1 ms).
    lease_timer_ = ctx.set_timer(std::max(lease_until_ - now, Duration{std::chrono::milliseconds(1)}), kLeaseTimer);
  }
  if (leading_ != rep_leading_ || term_ != rep_term_ || leader_ != rep_leader_) {
    rep_leading_ = leading_;
    rep_term_ = term_;
    rep_leader_ = leader_;
    if (on_change) on_change(leading_, term_, leader_);
  }
}

void Election::recompute_lease(Instant now) {
  const std::size_t need = quorum() - 1;  // acks from others; self always counts
  if (need == 0) {
    lease_until_ = now + cfg_.lease;
    return;
  }
  std::vector<Instant> times;
  times.reserve(acked_.size());
  for (const auto& [id, t] : acked_) times.push_back(t);
  if (times.size() < need) return;
  std::nth_element(times.begin(), times.begin() + static_cast<std::ptrdiff_t>(need - 1), times.end(),
                   std::greater<Instant>());
  lease_until_ = std::max(lease_until_, times[need - 1] + cfg_.lease);
}

void Election::for_each_counter(const std::function<void(std::string_view, std::uint64_t)>& fn) const {
  const ElectionStats& s = stats_;
  fn("prevotes_started", s.prevotes_started);
  fn("elections_started", s.elections_started);
  fn("terms_won", s.terms_won);
  fn("stepdowns", s.stepdowns);
  fn("deposed", s.deposed);
  fn("damped_elections", s.damped_elections);
  fn("leader_changes", s.leader_changes);
  fn("votes_granted", s.votes_granted);
  fn("votes_refused", s.votes_refused);
  fn("prevotes_granted", s.prevotes_granted);
  fn("prevotes_refused", s.prevotes_refused);
  fn("lease_refusals", s.lease_refusals);
  fn("failed_quorum_checks", s.failed_quorum_checks);
  fn("heartbeats_sent", s.heartbeats_sent);
  fn("heartbeats_received", s.heartbeats_received);
  fn("acks_received", s.acks_received);
  fn("decode_errors", s.decode_errors);
  fn("unknown_sender", s.unknown_sender);
  fn("stale", s.stale);
  fn("conflicting_leader", s.conflicting_leader);
  fn("disk_errors", s.disk_errors);
  fn("state_corrupt", s.state_corrupt);
  fn("syncs_refused_full", s.syncs_refused_full);
  fn("term_exhausted", s.term_exhausted);
  fn("flap_state_dropped", s.flap_state_dropped);
}

// ---------------------------------------------------------------- transitions

void Election::start_prevote(node::Context& ctx) {
  role_ = Role::follower;
  announced_ = false;
  votes_.clear();
  set_leader(ctx, std::nullopt);
  if (term_ >= kMaxTerm) {
    ++stats_.term_exhausted;
    log::error(kComp, "term_exhausted", "node={} term={}", self_, term_);
    arm_election_timer(ctx);
    return;
  }
  ++stats_.prevotes_started;
  prevoting_ = true;
  ++round_;
  prevotes_.clear();
  prevotes_.insert(self_);
  log::debug(kComp, "prevote_start", "node={} term={} round={}", self_, term_ + 1, round_);
  arm_election_timer(ctx);
  if (prevotes_.size() >= quorum()) {
    start_candidacy(ctx);
    return;
  }
  node::Bytes m = header(kPreVoteReq);
  Writer w;
  w.out() = std::move(m);
  w.var(term_ + 1);
  w.var(round_);
  broadcast(ctx, w.out());
}

void Election::start_candidacy(node::Context& ctx) {
  prevoting_ = false;
  prevotes_.clear();
  const std::uint64_t old_term = term_;
  const std::optional<node::NodeId> old_vote = voted_for_;
  term_ = term_ + 1;
  voted_for_ = self_;
  if (!persist(ctx)) {  // no durable vote, no candidacy
    term_ = old_term;
    voted_for_ = old_vote;
    return;
  }
  role_ = Role::candidate;
  ++stats_.elections_started;
  votes_.clear();
  votes_.insert(self_);
  announced_ = false;
  set_leader(ctx, std::nullopt);
  log::info(kComp, "candidacy", "node={} term={}", self_, term_);
  arm_election_timer(ctx);
  queue_sync(ctx, kSyncCandidacy, term_, self_);
}

void Election::become_leader(node::Context& ctx) {
  role_ = Role::leader;
  prevoting_ = false;
  votes_.clear();
  acked_.clear();
  lease_until_ = Instant::min();
  failed_checks_ = 0;
  ++stats_.terms_won;
  if (election_timer_ != 0) ctx.cancel_timer(election_timer_);
  election_timer_ = 0;
  set_leader(ctx, self_);
  log::info(kComp, "leader", "node={} term={} quorum={}", self_, term_, quorum());
  send_heartbeats(ctx);
  if (heartbeat_timer_ != 0) ctx.cancel_timer(heartbeat_timer_);
  heartbeat_timer_ = ctx.set_timer(cfg_.heartbeat, kHeartbeatTimer);
}

void Election::send_heartbeats(node::Context& ctx) {
  const Instant now = ctx.now();
  recompute_lease(now);
  Writer w;
  w.out() = header(kHeartbeat);
  w.var(term_);
  w.i64(now.count());
  ++stats_.heartbeats_sent;
  broadcast(ctx, w.out());
}

// ---------------------------------------------------------------- events

void Election::on_start(node::Context& ctx) {
  self_ = ctx.self();
  started_ = true;
  if (!is_member(self_)) {
    passive_ = true;
    log::error(kComp, "not_a_member", "node={} members={} action=passive", self_, cfg_.members.size());
  }
  load_state(ctx);
  load_flaps(ctx);
  // Boot quiet period: before the crash we may have acked a leader whose lease is still running;
  // refuse votes for as long as we would have after that ack.
  quiet_until_ = ctx.now() + cfg_.election_timeout_min;
  arm_election_timer(ctx);
  log::info(kComp, "start", "node={} term={} voted_for={} members={} quorum={}", self_, term_,
            voted_for_ ? std::to_string(*voted_for_) : std::string("none"), cfg_.members.size(), quorum());
  refresh(ctx);
}

void Election::on_timer(node::Context& ctx, node::TimerId id, std::uint64_t tag) {
  if (!started_) return;
  leading_ = role_ == Role::leader && ctx.now() < lease_until_;  // exact for this event's decisions
  if (auto it = syncs_.find(id); it != syncs_.end()) {
    const PendingSync p = it->second;
    syncs_.erase(it);
    if (p.kind == kSyncVote) {
      // Durable now: the vote may be sent if it is still ours.
      if (term_ == p.term && voted_for_ == p.to) {
        Writer w;
        w.out() = header(kVoteResp);
        w.var(term_);
        w.b(true);
        ctx.send(p.to, w.take());
      } else {
        ++stats_.stale;
      }
    } else if (p.kind == kSyncCandidacy) {
      if (role_ == Role::candidate && term_ == p.term && !announced_) {
        announced_ = true;
        if (votes_.size() >= quorum()) {
          become_leader(ctx);
        } else {
          Writer w;
          w.out() = header(kVoteReq);
          w.var(term_);
          broadcast(ctx, w.out());
        }
      } else {
        ++stats_.stale;
      }
    }
    refresh(ctx);
    return;
  }
  const Instant now = ctx.now();
  if (id == election_timer_ && tag == kElectionTimer) {
    election_timer_ = 0;
    if (role_ == Role::leader) {
      refresh(ctx);
      return;
    }
    if (passive_) {
      arm_election_timer(ctx);
    } else if (damped(now)) {
      ++stats_.damped_elections;
      const Duration wait = changes_.back() + cfg_.flap_cooldown - now;
      log::warn(kComp, "election_damped", "node={} term={} changes={} window_s={} wait_ms={}", self_, term_,
                changes_.size(), to_seconds(cfg_.flap_window), to_millis(wait));
      set_leader(ctx, std::nullopt);
      prevoting_ = false;
      role_ = Role::follower;
      const Duration jitter{ctx.rng().range(0, (cfg_.election_timeout_max - cfg_.election_timeout_min).count())};
      arm_election_timer(ctx, wait + jitter);
    } else {
      start_prevote(ctx);
    }
  } else if (id == heartbeat_timer_ && tag == kHeartbeatTimer) {
    heartbeat_timer_ = 0;
    if (role_ != Role::leader) {
      refresh(ctx);
      return;
    }
    recompute_lease(now);
    if (now >= lease_until_) {
      ++failed_checks_;
      ++stats_.failed_quorum_checks;
      log::warn(kComp, "quorum_check_failed", "node={} term={} failed={} of={} acked={} quorum={}", self_, term_,
                failed_checks_, cfg_.stepdown_failed_checks, acked_.size(), quorum());
      if (failed_checks_ >= cfg_.stepdown_failed_checks) {
        ++stats_.stepdowns;
        log::warn(kComp, "stepdown", "node={} term={} reason=no_quorum checks={}", self_, term_, failed_checks_);
        become_follower(ctx);
        set_leader(ctx, std::nullopt);
        refresh(ctx);
        return;
      }
    } else {
      failed_checks_ = 0;
    }
    send_heartbeats(ctx);
    heartbeat_timer_ = ctx.set_timer(cfg_.heartbeat, kHeartbeatTimer);
  } else if (id == lease_timer_ && tag == kLeaseTimer) {
    lease_timer_ = 0;
  } else {
    ++stats_.stale;  // a timer cancelled too late, or not ours
  }
  refresh(ctx);
}

void Election::on_message(node::Context& ctx, node::NodeId from, std::span<const std::uint8_t> msg) {
  if (!started_) return;
  if (from == self_ || !is_member(from)) {
    ++stats_.unknown_sender;
    log::warn(kComp, "unknown_sender", "node={} from={} bytes={}", self_, from, msg.size());
    return;
  }
  leading_ = role_ == Role::leader && ctx.now() < lease_until_;  // exact for this event's decisions
  Reader r(msg);
  const std::uint8_t ver = r.u8();
  const std::uint8_t type = r.u8();
  if (!r.ok()) return decode_error(from, r.error());
  if (ver != kVersion) return decode_error(from, "unknown version");
  switch (type) {
    case kPreVoteReq: {
      const std::uint64_t t = r.var(), round = r.var();
      if (!r.done()) return decode_error(from, r.ok() ? "trailing bytes" : r.error());
      if (t == 0 || t > kMaxTerm) return decode_error(from, "term out of range");
      on_prevote_req(ctx, from, t, round);
      break;
    }
    case kPreVoteResp: {
      const std::uint64_t t = r.var(), round = r.var();
      const bool granted = r.b();
      if (!r.done()) return decode_error(from, r.ok() ? "trailing bytes" : r.error());
      if (t > kMaxTerm) return decode_error(from, "term out of range");
      on_prevote_resp(ctx, from, t, round, granted);
      break;
    }
    case kVoteReq: {
      const std::uint64_t t = r.var();
      if (!r.done()) return decode_error(from, r.ok() ? "trailing bytes" : r.error());
      if (t == 0 || t > kMaxTerm) return decode_error(from, "term out of range");
      on_vote_req(ctx, from, t);
      break;
    }
    case kVoteResp: {
      const std::uint64_t t = r.var();
      const bool granted = r.b();
      if (!r.done()) return decode_error(from, r.ok() ? "trailing bytes" : r.error());
      if (t > kMaxTerm) return decode_error(from, "term out of range");
      on_vote_resp(ctx, from, t, granted);
      break;
    }
    case kHeartbeat: {
      const std::uint64_t t = r.var();
      const std::int64_t sent = r.i64();
      if (!r.done()) return decode_error(from, r.ok() ? "trailing bytes" : r.error());
      if (t == 0 || t > kMaxTerm) return decode_error(from, "term out of range");
      on_heartbeat(ctx, from, t, sent);
      break;
    }
    case kAck: {
      const std::uint64_t t = r.var();
      const std::int64_t sent = r.i64();
      const bool ok = r.b();
      if (!r.done()) return decode_error(from, r.ok() ? "trailing bytes" : r.error());
      if (t > kMaxTerm) return decode_error(from, "term out of range");
      on_ack(ctx, from, t, sent, ok);
      break;
    }
    default:
      return decode_error(from, "unknown message type");
  }
  refresh(ctx);
}

void Election::on_prevote_req(node::Context& ctx, node::NodeId from, std::uint64_t t, std::uint64_t round) {
  const Instant now = ctx.now();
  bool grant = false;
  const char* why = "";
  if (passive_) {
    why = "passive";
  } else if (t <= term_) {
    why = "stale_term";
  } else if (hears_live_leader(now)) {
    why = "live_leader";
    ++stats_.lease_refusals;
  } else if (damped(now)) {
    why = "flap_cooldown";
    ++stats_.damped_elections;
  } else {
    grant = true;
  }
  if (grant) {
    ++stats_.prevotes_granted;
  } else {
    ++stats_.prevotes_refused;
    log::debug(kComp, "prevote_refused", "node={} from={} term={} own_term={} reason={}", self_, from, t, term_, why);
  }
  Writer w;
  w.out() = header(kPreVoteResp);
  w.var(term_);
  w.var(round);
  w.b(grant);
  ctx.send(from, w.take());
}

void Election::on_prevote_resp(node::Context& ctx, node::NodeId from, std::uint64_t t, std::uint64_t round,
                               bool granted) {
  if (t > term_) {
    adopt_term(ctx, t);
    return;
  }
  if (!prevoting_ || round != round_) {
    ++stats_.stale;
    return;
  }
  if (!granted) return;
  prevotes_.insert(from);
  if (prevotes_.size() >= quorum()) start_candidacy(ctx);
}

void Election::on_vote_req(node::Context& ctx, node::NodeId from, std::uint64_t t) {
  const Instant now = ctx.now();
  auto refuse = [&](const char* why) {
    ++stats_.votes_refused;
    log::debug(kComp, "vote_refused", "node={} from={} term={} own_term={} reason={}", self_, from, t, term_, why);
    Writer w;
    w.out() = header(kVoteResp);
    w.var(term_);
    w.b(false);
    ctx.send(from, w.take());
  };
  if (passive_) return refuse("passive");
  if (t < term_) return refuse("stale_term");
  if (hears_live_leader(now)) {
    ++stats_.lease_refusals;
    return refuse("live_leader");  // and do not adopt the term: a stable leader is not disrupted
  }
  if (t > term_) adopt_term(ctx, t);
  if (voted_for_ && *voted_for_ != from) return refuse("already_voted");
  if (!voted_for_) {
    voted_for_ = from;
    if (!persist(ctx)) {
      voted_for_.reset();
      return refuse("disk_error");
    }
  }
  ++stats_.votes_granted;
  arm_election_timer(ctx);
  queue_sync(ctx, kSyncVote, term_, from);  // the reply goes out once the vote is durable
}

void Election::on_vote_resp(node::Context& ctx, node::NodeId from, std::uint64_t t, bool granted) {
  if (t > term_) {
    adopt_term(ctx, t);
    return;
  }
  if (role_ != Role::candidate || t != term_) {
    ++stats_.stale;
    return;
  }
  if (!granted) return;
  votes_.insert(from);
  if (announced_ && votes_.size() >= quorum()) become_leader(ctx);
}

void Election::on_heartbeat(node::Context& ctx, node::NodeId from, std::uint64_t t, std::int64_t sent) {
  ++stats_.heartbeats_received;
  auto reply = [&](bool ok) {
    Writer w;
    w.out() = header(kAck);
    w.var(term_);
    w.i64(sent);
    w.b(ok);
    ctx.send(from, w.take());
  };
  if (t < term_) {
    ++stats_.stale;
    return reply(false);  // tells the stale leader about the newer term
  }
  if (t > term_) adopt_term(ctx, t);
  if (role_ == Role::leader || (known_ && known_->first == term_ && known_->second != from)) {
    ++stats_.conflicting_leader;
    log::error(kComp, "conflicting_leader", "node={} term={} from={} known={}", self_, term_, from,
               role_ == Role::leader ? self_ : known_->second);
    return;
  }
  if (role_ == Role::candidate || prevoting_) {
    role_ = Role::follower;
    prevoting_ = false;
    announced_ = false;
    votes_.clear();
    prevotes_.clear();
  }
  set_leader(ctx, from);
  quiet_until_ = ctx.now() + cfg_.election_timeout_min;
  arm_election_timer(ctx);
  reply(true);
}

void Election::on_ack(node::Context& ctx, node::NodeId from, std::uint64_t t, std::int64_t sent, bool ok) {
  ++stats_.acks_received;
  if (t > term_) {
    adopt_term(ctx, t);
    return;
  }
  if (role_ != Role::leader || t != term_ || !ok) {
    ++stats_.stale;
    return;
  }
  const Instant now = ctx.now();
  const Instant s{sent};
  if (s > now) return decode_error(from, "ack echoes a send time in the future");
  // Bounded: only configured members get here. (Local times may be negative: no default slot.)
  auto [it, fresh] = acked_.emplace(from, s);
  if (!fresh) it->second = std::max(it->second, s);
  recompute_lease(now);
}

}  // namespace hs::cluster
