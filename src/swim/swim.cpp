#include "hyperscale/swim/swim.hpp"

#include <algorithm>
#include <cmath>

#include "hyperscale/base/enum_names.hpp"
#include "hyperscale/base/log.hpp"

namespace hs::swim {

constexpr EnumNames<State, 4> kStateNames{{"alive", "suspect", "dead", "left"}};
static_assert(kStateNames.covers(State::left));

std::string_view state_name(State s) noexcept { return kStateNames(s); }

std::uint64_t SwimStats::decode_errors_total() const noexcept {
  std::uint64_t t = 0;
  for (auto v : decode_errors) t += v;
  return t;
}

namespace {
bool gone(State s) { return s == State::dead || s == State::left; }
constexpr const char* kIncKey = "swim/incarnation";
}  // namespace

Swim::Swim(SwimConfig cfg) : cfg_(std::move(cfg)) {
  if (cfg_.max_piggyback > kMaxGossipPerMessage) cfg_.max_piggyback = kMaxGossipPerMessage;
  if (cfg_.lhm_max < 0) cfg_.lhm_max = 0;
  cfg_.datagram_budget = std::clamp<std::size_t>(cfg_.datagram_budget, 256, kDatagramBudget);
}

Duration Swim::scaled(Duration d) const { return d * (1 + lhm_); }

void Swim::lhm_delta(int d) { lhm_ = std::clamp(lhm_ + d, 0, cfg_.lhm_max); }

Duration Swim::suspicion_min() const {
  const double n = static_cast<double>(cluster_size());
  const double f = cfg_.suspicion_alpha * std::max(1.0, std::log10(n));
  return std::chrono::duration_cast<Duration>(cfg_.period * f);
}
Duration Swim::suspicion_max() const {
  return std::chrono::duration_cast<Duration>(suspicion_min() * cfg_.suspicion_beta);
}

Duration Swim::suspicion_timeout(const Suspicion& s) const {
  const std::size_t n = cluster_size();
  const std::size_t k = n >= 2 ? std::min(cfg_.suspicion_k, n - 2) : 0;
  if (k < 1) return s.tmin;
  // The first first-hand claimer is not a confirmation; a suspicion started by a relayed claim has none.
  const double c = s.confirmers.empty() ? 0.0 : static_cast<double>(s.confirmers.size() - 1);
  const double frac = std::log(c + 1.0) / std::log(static_cast<double>(k) + 1.0);
  const double t = static_cast<double>(s.tmax.count()) - static_cast<double>((s.tmax - s.tmin).count()) * frac;
  return std::max(s.tmin, Duration{static_cast<std::int64_t>(t)});
}

void Swim::persist_incarnation(Context& ctx) {
  std::uint8_t b[4];
  for (int i = 0; i < 4; ++i) b[i] = static_cast<std::uint8_t>(incarnation_ >> (8 * i));
  Status st = ctx.disk().put(kIncKey, b);
  if (!st.ok()) log::warn("swim", "persist_incarnation_failed", "node={} error={}", self_, log::quoted(st.to_string()));
}

void Swim::bootstrap_confirmed(const std::vector<NodeId>& ids) {
  for (NodeId id : ids) {
    if (members_.size() >= cfg_.max_members) {
      stats_.members_refused_full++;
      log::warn("swim", "member_refused", "node={} reason=table_full max={}", id, cfg_.max_members);
      break;
    }
    auto [it, added] = members_.try_emplace(id);
    it->second.confirmed = true;
    if (added) ++live_;
  }
}

void Swim::on_start(Context& ctx) {
  self_ = ctx.self();
  started_ = true;
  if (auto it = members_.find(self_); it != members_.end()) {
    if (!gone(it->second.state)) --live_;
    members_.erase(it);
  }
  if (auto stored = ctx.disk().get(kIncKey); stored && stored->size() == 4) {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>((*stored)[static_cast<std::size_t>(i)]) << (8 * i);
    incarnation_ = v + 1;  // a restarted node always comes back newer than its previous life
  }
  persist_incarnation(ctx);
  for (NodeId s : cfg_.seeds)
    if (s != self_ && !members_.count(s)) add_member(ctx, s, 0, false);
  rebuild_probe_list(ctx);
  enqueue(Gossip{GossipKind::alive, self_, incarnation_, self_});
  for (NodeId s : cfg_.seeds)
    if (s != self_) send_sync(ctx, s, true, true, nullptr);
  // Random phase so that nodes started together do not probe in lockstep.
  const auto phase =
      Duration{static_cast<std::int64_t>(ctx.rng().below(static_cast<std::uint64_t>(cfg_.period.count())))};
  ctx.set_timer(phase, tag(kTick, 0));
}

Status Swim::set_local_state(Bytes state) {
  const std::size_t max = std::min<std::size_t>(kMaxStateBytes, budget() - kHeaderBytes - 3 - kGossipBytes);
  if (state.size() > max)
    return make_error(Errc::invalid_argument,
                      fmt::format("swim: role state of {} B exceeds the {} B that fit in a probe", state.size(), max));
  local_state_ = std::move(state);
  return ok_status();
}

void Swim::leave() {
  if (leaving_) return;
  leaving_ = true;
  incarnation_++;
  enqueue(Gossip{GossipKind::left, self_, incarnation_, self_});
}

std::optional<MemberInfo> Swim::member(NodeId id) const {
  auto it = members_.find(id);
  if (it == members_.end()) return std::nullopt;
  return MemberInfo{id, it->second.state, it->second.incarnation, it->second.confirmed};
}

std::vector<MemberInfo> Swim::members() const {
  std::vector<MemberInfo> out;
  out.reserve(members_.size());
  for (const auto& [id, m] : members_) out.push_back(MemberInfo{id, m.state, m.incarnation, m.confirmed});
  return out;
}

std::optional<Bytes> Swim::state_of(NodeId id) const {
  auto it = members_.find(id);
  if (it == members_.end()) return std::nullopt;
  return it->second.role_state;
}

// ---------------- membership table ----------------

Swim::Member* Swim::add_member(Context& ctx, NodeId id, std::uint32_t inc, bool confirmed) {
  if (members_.size() >= cfg_.max_members) {
    stats_.members_refused_full++;
    log::warn("swim", "member_refused", "node={} reason=table_full max={}", id, cfg_.max_members);
    return nullptr;
  }
  const Instant now = ctx.now();
  auto [mit, added] = members_.try_emplace(id);
  Member& m = mit->second;
  if (added || gone(m.state)) ++live_;
  m.state = State::alive;
  m.incarnation = inc;
  m.confirmed = confirmed;
  m.since = now;
  if (confirmed) m.heard = now;
  if (!confirmed) unconfirmed_queue_.emplace_back(now, id);
  // New members go to a random place in the current round so they are probed within one cycle.
  const std::size_t pos = probe_list_.empty() ? 0 : ctx.rng().below(probe_list_.size() + 1);
  probe_list_.insert(probe_list_.begin() + static_cast<std::ptrdiff_t>(pos), id);
  if (pos < probe_index_) ++probe_index_;
  log::debug("swim", "member_joined", "self={} node={} inc={} confirmed={}", self_, id, inc, confirmed);
  if (on_change) on_change(MemberEvent{id, State::alive, State::alive, inc, true});
  return &m;
}

void Swim::set_state(Context& ctx, NodeId id, Member& m, State s, std::uint32_t inc) {
  const State prev = m.state;
  m.state = s;
  m.incarnation = inc;
  m.since = ctx.now();
  if (s != State::suspect) m.suspicion.reset();
  if (prev == s) return;
  if (gone(s) && !gone(prev)) --live_;
  if (!gone(s) && gone(prev)) ++live_;
  if (gone(s)) {
    dead_queue_.emplace_back(m.since, id);
    if (!gone(prev)) {
      stats_.deaths++;
      if (on_dead) on_dead(id, inc, s == State::left);
    }
  }
  if (s == State::alive && gone(prev)) {
    stats_.resurrections++;
    const std::size_t pos = probe_list_.empty() ? 0 : ctx.rng().below(probe_list_.size() + 1);
    probe_list_.insert(probe_list_.begin() + static_cast<std::ptrdiff_t>(pos), id);
    if (pos < probe_index_) ++probe_index_;
  }
  log::debug("swim", "member_state", "self={} node={} from={} to={} inc={}", self_, id, state_name(prev), state_name(s),
             inc);
  if (on_change) on_change(MemberEvent{id, prev, s, inc, false});
}

void Swim::enqueue(const Gossip& g) {
  auto it = gossip_.find(g.node);
  if (it != gossip_.end()) {
    gossip_order_.erase(key_of(it->first, it->second));
    it->second = GossipEntry{g, 0, ++gossip_seq_};
    gossip_order_.insert(key_of(it->first, it->second));
    return;
  }
  if (gossip_.size() >= cfg_.max_gossip_buffer && !gossip_order_.empty()) {
    // Evict the most-sent entry (oldest among those): it has had the most chances to spread.
    auto victim = std::prev(gossip_order_.end());
    gossip_.erase(std::get<2>(*victim));
    gossip_order_.erase(victim);
    stats_.gossip_evicted++;
  }
  auto [pos, inserted] = gossip_.emplace(g.node, GossipEntry{g, 0, ++gossip_seq_});
  gossip_order_.insert(key_of(pos->first, pos->second));
}

void Swim::heard_from(Context& ctx, NodeId from, std::uint32_t inc) {
  auto it = members_.find(from);
  if (it == members_.end()) {
    if (add_member(ctx, from, inc, true)) enqueue(Gossip{GossipKind::alive, from, inc, self_});
    return;
  }
  Member& m = it->second;
  m.heard = ctx.now();
  m.confirmed = true;
  if (gone(m.state)) {
    if (inc > m.incarnation) {
      apply(ctx, Gossip{GossipKind::alive, from, inc, from}, from);
    } else if (m.last_notice < Instant{0} || ctx.now() - m.last_notice >= cfg_.period) {
      // It talks to us but we hold it dead at its incarnation: tell it, so it refutes and rejoins.
      m.last_notice = ctx.now();
      stats_.dead_notices++;
      Gossip notice{GossipKind::dead, from, m.incarnation, self_};
      send_sync(ctx, from, false, false, &notice);
    }
    return;
  }
  if (inc > m.incarnation) apply(ctx, Gossip{GossipKind::alive, from, inc, from}, from);
}

void Swim::refute(Context& ctx, std::uint32_t seen) {
  const Instant now = ctx.now();
  while (!refutes_.empty() && now - refutes_.front() >= cfg_.refute_window) refutes_.pop_front();
  if (refutes_.size() >= cfg_.refute_tokens) {
    stats_.refutes_rate_limited++;
    log::warn("swim", "refute_rate_limited", "self={} inc={} seen={} tokens={}", self_, incarnation_, seen,
              cfg_.refute_tokens);
    return;
  }
  refutes_.push_back(now);
  incarnation_ = std::max(incarnation_, seen) + 1;
  persist_incarnation(ctx);
  stats_.refutations++;
  lhm_delta(+1);  // Lifeguard: having to refute means others could not hear us in time
  enqueue(Gossip{GossipKind::alive, self_, incarnation_, self_});
  log::debug("swim", "refuted", "self={} inc={}", self_, incarnation_);
}

void Swim::start_suspicion(Context& ctx, NodeId id, Member& m, NodeId confirmer, bool left) {
  Suspicion s;
  s.start = ctx.now();
  const Duration tmin = suspicion_min();
  s.tmin = tmin * (1 + lhm_);
  s.tmax = std::chrono::duration_cast<Duration>(s.tmin * cfg_.suspicion_beta);
  if (confirmer != 0) s.confirmers.insert(confirmer);
  s.left = left;
  set_state(ctx, id, m, State::suspect, m.incarnation);
  s.deadline = s.start + suspicion_timeout(s);
  m.suspicion = std::move(s);
  stats_.suspicions++;
  ctx.set_timer(m.suspicion->deadline - ctx.now(), tag(kSuspicionTimer, id));
}

void Swim::reschedule_suspicion(Context& ctx, NodeId id, Member& m) {
  Suspicion& s = *m.suspicion;
  if (s.final_check) return;  // our own last check is under way: its answer decides
  const Instant d = s.start + suspicion_timeout(s);
  if (d < s.deadline) {
    s.deadline = d;
    ctx.set_timer(std::max(Duration{0}, d - ctx.now()), tag(kSuspicionTimer, id));
  }
}

void Swim::declare_dead(Context& ctx, NodeId id, Member& m) {
  const bool left = m.suspicion && m.suspicion->left;
  enqueue(Gossip{left ? GossipKind::left : GossipKind::dead, id, m.incarnation, self_});
  set_state(ctx, id, m, left ? State::left : State::dead, m.incarnation);
}

void Swim::send_verify(Context& ctx, NodeId id, Member& m, bool staged) {
  m.verify_seq = next_seq_++;
  if (next_seq_ == 0) next_seq_ = 1;
  m.verify_sent = ctx.now();
  m.verify_at = ctx.now();
  m.verify_stage = staged ? 1 : 0;
  m.verify_relayed = false;
  stats_.verify_pings++;
  send(ctx, id, MsgType::ping, m.verify_seq, id);
  if (!staged) send(ctx, id, MsgType::ping, m.verify_seq, id);  // the last check: twice, against a lost datagram
  if (staged) ctx.set_timer(scaled(cfg_.probe_timeout), tag(kVerifyTimeout, id));
}

std::set<NodeId> Swim::pick_proxies(Context& ctx, NodeId target) {
  // k other members (confirmed, alive), chosen at random.
  std::set<NodeId> proxies;
  for (std::size_t tries = 0; tries < cfg_.indirect_k * 4 && proxies.size() < cfg_.indirect_k && !probe_list_.empty();
       ++tries) {
    NodeId id = probe_list_[ctx.rng().below(probe_list_.size())];
    if (id == target || proxies.count(id)) continue;
    auto it = members_.find(id);
    if (it == members_.end() || it->second.state != State::alive || !it->second.confirmed) continue;
    proxies.insert(id);
  }
  return proxies;
}

void Swim::verify_step(Context& ctx, NodeId id) {
  auto it = members_.find(id);
  if (it == members_.end()) return;
  Member& m = it->second;
  if (m.verify_stage == 0 || m.verify_seq == 0) return;
  if (ctx.now() - m.verify_at < scaled(cfg_.probe_timeout)) return;  // a timer of an earlier check
  if (m.state != State::suspect || !m.suspicion || m.verify_relayed) {
    m.verify_stage = 0;  // cleared meanwhile, or reachable through a proxy: nothing of our own to add
    return;
  }
  if (m.verify_stage == 1) {
    for (NodeId p : pick_proxies(ctx, id)) {
      send(ctx, p, MsgType::ping_req, m.verify_seq, id);
      stats_.ping_reqs_sent++;
    }
    send(ctx, id, MsgType::ping, m.verify_seq, id);
    m.verify_stage = 2;
    m.verify_at = ctx.now();
    ctx.set_timer(scaled(cfg_.probe_timeout), tag(kVerifyTimeout, id));
    return;
  }
  // Neither the member nor any proxy answered: our own evidence, like a failed probe.
  m.verify_stage = 0;
  apply(ctx, Gossip{GossipKind::suspect, id, m.incarnation, self_}, self_);
}

void Swim::proof_of_life(Context& ctx, NodeId id, Member& m) {
  m.proof = ctx.now();
  m.verify_seq = 0;
  m.verify_stage = 0;
  if (m.state != State::suspect || !m.suspicion) return;
  stats_.suspicions_disproved++;
  log::debug("swim", "suspicion_disproved", "self={} node={} inc={} reason=acked_our_ping", self_, id, m.incarnation);
  set_state(ctx, id, m, State::alive, m.incarnation);
  // Stop spreading a suspicion we no longer hold.
  auto git = gossip_.find(id);
  if (git != gossip_.end() && git->second.g.kind == GossipKind::suspect) {
    gossip_order_.erase(key_of(git->first, git->second));
    gossip_.erase(git);
  }
}

void Swim::apply(Context& ctx, const Gossip& g, NodeId from) {
  if (g.node == self_) {
    if (g.kind == GossipKind::alive) {
      if (g.incarnation > incarnation_) refute(ctx, g.incarnation);  // an older life of ours claims more
    } else if (!leaving_ && g.incarnation >= incarnation_) {         // a leaving node does not argue
      if (g.incarnation - incarnation_ >= cfg_.max_incarnation_jump) {
        // Nobody who follows the rules holds us that far above what we announced, and a refutation
        // that high would be refused by the members that know our real incarnation.
        const auto n = ++stats_.claims_rejected;
        if (n == 1 || n % 1000 == 0)
          log::warn("swim", "claim_rejected",
                    "self={} from={} kind={} node=self inc={} own={} reason=incarnation_jump count={}", self_, from,
                    static_cast<int>(g.kind), g.incarnation, incarnation_, n);
        return;
      }
      refute(ctx, g.incarnation);
    }
    return;
  }
  auto it = members_.find(g.node);
  if (g.kind == GossipKind::alive) {
    if (it == members_.end()) {
      if (add_member(ctx, g.node, g.incarnation, false)) enqueue(g);
      return;
    }
    Member& m = it->second;
    if (g.incarnation <= m.incarnation) return;
    // The member itself may announce any incarnation; a relayed record is bounded.
    if (from != g.node && g.incarnation - m.incarnation > cfg_.max_incarnation_jump) {
      stats_.incarnation_jumps_rejected++;
      log::warn("swim", "incarnation_jump_rejected", "self={} node={} known={} claimed={}", self_, g.node,
                m.incarnation, g.incarnation);
      return;
    }
    m.suspicion.reset();
    if (m.state != State::alive) {
      set_state(ctx, g.node, m, State::alive, g.incarnation);
    } else {
      m.incarnation = g.incarnation;
    }
    enqueue(g);
    return;
  }
  if (it == members_.end()) return;  // nothing to suspect or bury
  Member& m = it->second;
  if (gone(m.state)) return;
  if (g.kind == GossipKind::left && from == g.node) {  // the member announces its own leave
    if (g.incarnation < m.incarnation) return;
    enqueue(g);
    set_state(ctx, g.node, m, State::left, g.incarnation);
    return;
  }
  apply_claim(ctx, g.node, m, g, from);
}

// A suspect or dead claim, or a leave relayed by a third party, about a member we hold alive or
// suspect. It starts or confirms our own suspicion; only the expiry of that suspicion kills.
void Swim::apply_claim(Context& ctx, NodeId id, Member& m, const Gossip& g, NodeId from) {
  if (g.incarnation < m.incarnation) return;  // stale: the member has refuted since
  // A relayed leave carries the incarnation the member bumped to when leaving.
  const std::uint32_t allowed = m.incarnation + (g.kind == GossipKind::left ? 1 : 0);
  if (g.incarnation > allowed) {
    // Only the member raises its own incarnation: a claim above what it announced is refused.
    const auto n = ++stats_.claims_rejected;
    if (n == 1 || n % 1000 == 0)
      log::warn("swim", "claim_rejected",
                "self={} from={} kind={} node={} inc={} known={} reason=above_announced_incarnation count={}", self_,
                from, static_cast<int>(g.kind), id, g.incarnation, m.incarnation, n);
    return;
  }
  if (!m.confirmed) return;  // unconfirmed peers are never suspected
  if (from != self_ && m.state == State::alive && m.proof >= Instant{0} && ctx.now() - m.proof < cfg_.period)
    return;  // it answered our own ping less than a period ago: that outweighs another member's word
  // Only a first-hand claim (made by the member that sent it to us, or our own) confirms; a member
  // repeating itself counts once.
  const NodeId confirmer = g.origin == from ? from : 0;
  const bool left = g.kind == GossipKind::left;
  // What we pass on is our suspicion, whatever the claim said (a leave stays a leave).
  const Gossip relay{left ? GossipKind::left : GossipKind::suspect, id, left ? g.incarnation : m.incarnation, g.origin};
  if (m.state == State::suspect && m.suspicion) {
    Suspicion& s = *m.suspicion;
    bool news = false;
    if (left && !s.left) {
      s.left = true;
      news = true;
    }
    if (confirmer != 0 && !s.confirmers.count(confirmer) && s.confirmers.size() < cfg_.max_confirmers) {
      s.confirmers.insert(confirmer);
      reschedule_suspicion(ctx, id, m);
      news = true;
    }
    if (news) enqueue(relay);  // re-gossip confirmations
    return;
  }
  start_suspicion(ctx, id, m, confirmer, left);
  enqueue(relay);
  // Others say it is failing: check it ourselves (at most once a period per member).
  if (from != self_ && (m.verify_sent < Instant{0} || ctx.now() - m.verify_sent >= cfg_.period))
    send_verify(ctx, id, m, true);
}

// ---------------- sending ----------------

void Swim::send(Context& ctx, NodeId to, MsgType type, std::uint32_t seq, NodeId target, const Gossip* first,
                std::uint8_t flags) {
  if (leaving_ && leave_ticks_ > cfg_.leave_periods) return;
  Message m;
  m.type = type;
  m.flags = flags;
  m.sender = self_;
  m.sender_incarnation = incarnation_;
  m.seq = seq;
  m.target = target;
  m.state = local_state_;
  const std::size_t room = budget() - kHeaderBytes - 3 - m.state.size();
  std::size_t maxg = std::min({cfg_.max_piggyback, room / kGossipBytes, kMaxGossipPerMessage});
  if (first && maxg > 0) {
    m.gossip.push_back(*first);
    --maxg;
  }
  // While leaving, every datagram says so: a leave is believed at once only from the member itself.
  const Gossip leave_record{GossipKind::left, self_, incarnation_, self_};
  if (leaving_ && maxg > 0 && !(first && *first == leave_record)) {
    m.gossip.push_back(leave_record);
    --maxg;
  }
  if (maxg > 0 && !gossip_.empty()) {
    const double n = static_cast<double>(cluster_size());
    const std::uint32_t limit =
        static_cast<std::uint32_t>(std::max(1.0, std::ceil(cfg_.gossip_lambda * std::log(n + 1.0))));
    // Our own record (a refutation or a leave) first, then least-sent, newest first.
    std::vector<NodeId> pick;
    pick.reserve(maxg);
    if (gossip_.count(self_)) pick.push_back(self_);
    for (auto k = gossip_order_.begin(); k != gossip_order_.end() && pick.size() < maxg; ++k)
      if (std::get<2>(*k) != self_) pick.push_back(std::get<2>(*k));
    for (NodeId id : pick) {
      auto it = gossip_.find(id);
      if (first && it->second.g == *first) continue;
      if (leaving_ && it->second.g == leave_record) continue;
      m.gossip.push_back(it->second.g);
      gossip_order_.erase(key_of(id, it->second));
      if (++it->second.transmits >= limit) {
        gossip_.erase(it);
      } else {
        gossip_order_.insert(key_of(id, it->second));
      }
    }
  }
  encode_and_send(ctx, to, m);
}

void Swim::encode_and_send(Context& ctx, NodeId to, const Message& m) {
  Bytes out;
  Status st = encode(m, out);
  if (!st.ok()) {
    stats_.encode_errors++;
    log::error("swim", "encode_failed", "self={} to={} error={}", self_, to, log::quoted(st.to_string()));
    return;
  }
  stats_.sent++;
  ctx.send(to, std::move(out));
}

void Swim::send_sync(Context& ctx, NodeId to, bool want_reply, bool sample, const Gossip* notice) {
  if (leaving_ && leave_ticks_ > cfg_.leave_periods) return;
  Message m;
  m.type = MsgType::sync;
  m.flags = want_reply ? 1 : 0;
  m.sender = self_;
  m.sender_incarnation = incarnation_;
  m.state = local_state_;
  const std::size_t room = budget() - kHeaderBytes - 3 - m.state.size();
  const std::size_t maxg = std::min(room / kGossipBytes, kMaxGossipPerMessage);
  if (notice) m.gossip.push_back(*notice);
  if (sample && m.gossip.size() < maxg) {
    m.gossip.push_back(Gossip{leaving_ ? GossipKind::left : GossipKind::alive, self_, incarnation_, self_});
    // A random sample of the members we believe alive or suspect.
    std::set<NodeId> chosen;
    for (std::size_t tries = 0; tries < maxg * 2 && m.gossip.size() < maxg && !probe_list_.empty(); ++tries) {
      NodeId id = probe_list_[ctx.rng().below(probe_list_.size())];
      if (id == to || chosen.count(id)) continue;
      auto it = members_.find(id);
      // Only plain alive members: a suspicion in a sample would count us as an independent
      // confirmer, which we are not.
      if (it == members_.end() || it->second.state != State::alive) continue;
      chosen.insert(id);
      m.gossip.push_back(Gossip{GossipKind::alive, id, it->second.incarnation, id});
    }
  }
  encode_and_send(ctx, to, m);
}

// ---------------- probing ----------------

void Swim::rebuild_probe_list(Context& ctx) {
  probe_list_.clear();
  for (const auto& [id, m] : members_)
    if (!gone(m.state)) probe_list_.push_back(id);
  ctx.rng().shuffle(probe_list_.begin(), probe_list_.end());
  probe_index_ = 0;
}

NodeId Swim::next_probe_target(Context& ctx) {
  for (int pass = 0; pass < 2; ++pass) {
    while (probe_index_ < probe_list_.size()) {
      const NodeId id = probe_list_[probe_index_++];
      auto it = members_.find(id);
      if (it != members_.end() && !gone(it->second.state)) return id;
    }
    rebuild_probe_list(ctx);  // end of a cycle: reshuffle
    if (probe_list_.empty()) break;
  }
  return 0;
}

void Swim::tick(Context& ctx) {
  ++ticks_;
  finish_probe(ctx);
  housekeeping(ctx);
  ctx.set_timer(scaled(cfg_.period), tag(kTick, 0));
  if (leaving_) {
    if (leave_ticks_ > cfg_.leave_periods) return;
    ++leave_ticks_;
  }
  if (cfg_.reconnect_every && ticks_ % cfg_.reconnect_every == 0) {
    if (alive_count() == 0) {
      for (NodeId s : cfg_.seeds)
        if (s != self_) send_sync(ctx, s, true, true, nullptr);
    } else if (!dead_queue_.empty()) {
      // Ping one member we hold dead: if it is back (e.g. a healed partition) it learns it was
      // declared dead and refutes with a higher incarnation.
      const auto& [t, id] = dead_queue_[ctx.rng().below(dead_queue_.size())];
      auto it = members_.find(id);
      if (it != members_.end() && it->second.state == State::dead) send(ctx, id, MsgType::ping, 0, id);
    }
  }
  if (cfg_.sync_every && ticks_ % cfg_.sync_every == 0 && !probe_list_.empty()) {
    NodeId id = probe_list_[ctx.rng().below(probe_list_.size())];
    auto it = members_.find(id);
    if (it != members_.end() && !gone(it->second.state)) send_sync(ctx, id, true, true, nullptr);
  }
  const NodeId target = next_probe_target(ctx);
  if (target == 0 && probe_list_.empty()) return;
  if (target == 0) return;
  probe_ = Probe{};
  probe_.active = true;
  probe_.seq = next_seq_++;
  if (next_seq_ == 0) next_seq_ = 1;
  probe_.target = target;
  stats_.probes++;
  const Member& m = members_.at(target);
  if (m.state == State::suspect) {
    // Lifeguard "buddy system": tell a suspect directly that it is suspected.
    Gossip buddy{GossipKind::suspect, target, m.incarnation, self_};
    send(ctx, target, MsgType::ping, probe_.seq, target, &buddy);
  } else {
    send(ctx, target, MsgType::ping, probe_.seq, target);
  }
  ctx.set_timer(scaled(cfg_.probe_timeout), tag(kProbeTimeout, probe_.seq));
}

void Swim::finish_probe(Context& ctx) {
  if (!probe_.active) return;
  probe_.active = false;
  if (probe_.acked) return;
  stats_.probe_failures++;
  // Lifeguard: missing nacks mean our own links are failing, not (only) the target.
  int delta = 0;
  if (probe_.indirect && probe_.expected_nacks > 0) {
    if (probe_.nacks < probe_.expected_nacks) delta += static_cast<int>(probe_.expected_nacks - probe_.nacks);
  } else {
    delta += 1;
  }
  lhm_delta(delta);
  auto it = members_.find(probe_.target);
  if (it == members_.end() || gone(it->second.state)) return;
  if (!it->second.confirmed) {
    stats_.unconfirmed_probe_failures++;
    return;
  }
  apply(ctx, Gossip{GossipKind::suspect, probe_.target, it->second.incarnation, self_}, self_);
}

void Swim::housekeeping(Context& ctx) {
  const Instant now = ctx.now();
  while (!dead_queue_.empty() &&
         (now - dead_queue_.front().first >= cfg_.dead_retention || dead_queue_.size() > 2 * cfg_.max_members)) {
    auto [t, id] = dead_queue_.front();
    dead_queue_.pop_front();
    auto it = members_.find(id);
    if (it != members_.end() && gone(it->second.state) && it->second.since <= t) {
      members_.erase(it);
      stats_.forgotten++;
      log::debug("swim", "member_forgotten", "self={} node={}", self_, id);
    }
  }
  while (!unconfirmed_queue_.empty() && (now - unconfirmed_queue_.front().first >= cfg_.unconfirmed_timeout ||
                                         unconfirmed_queue_.size() > 2 * cfg_.max_members)) {
    auto [t, id] = unconfirmed_queue_.front();
    unconfirmed_queue_.pop_front();
    auto it = members_.find(id);
    if (it != members_.end() && !it->second.confirmed && it->second.since <= t) {
      log::warn("swim", "unconfirmed_dropped", "self={} node={} reason=never_heard_from after_s={:.1f}", self_, id,
                to_seconds(now - t));
      if (!gone(it->second.state)) --live_;
      members_.erase(it);
      stats_.unconfirmed_dropped++;
    }
  }
}

// ---------------- events ----------------

void Swim::on_timer(Context& ctx, node::TimerId, std::uint64_t t) {
  if (!started_) return;
  const auto kind = static_cast<TimerKind>(t >> 56);
  const std::uint64_t v = t & ((1ull << 56) - 1);
  switch (kind) {
    case kTick:
      tick(ctx);
      break;
    case kProbeTimeout: {
      if (!probe_.active || probe_.seq != v || probe_.acked || probe_.indirect) break;
      probe_.indirect = true;
      // Ask k other members (confirmed, alive) to probe the target for us.
      const std::set<NodeId> proxies = pick_proxies(ctx, probe_.target);
      for (NodeId p : proxies) {
        send(ctx, p, MsgType::ping_req, probe_.seq, probe_.target);
        stats_.ping_reqs_sent++;
      }
      // A second direct attempt alongside the indirect ones (a lost datagram is the common case).
      send(ctx, probe_.target, MsgType::ping, probe_.seq, probe_.target);
      probe_.expected_nacks = static_cast<std::uint32_t>(proxies.size());
      break;
    }
    case kSuspicionTimer: {
      auto it = members_.find(v);
      if (it == members_.end() || it->second.state != State::suspect || !it->second.suspicion) break;
      Member& m = it->second;
      Suspicion& s = *m.suspicion;
      if (ctx.now() < s.deadline) break;
      if (!s.final_check) {
        // One last direct ping before we call it dead: a live member that lost a few datagrams (or
        // cannot refute because a liar used up its refutations) answers it.
        s.final_check = true;
        stats_.final_checks++;
        send_verify(ctx, v, m, false);
        s.deadline = ctx.now() + scaled(cfg_.probe_timeout);
        ctx.set_timer(s.deadline - ctx.now(), tag(kSuspicionTimer, v));
        break;
      }
      declare_dead(ctx, v, m);
      break;
    }
    case kVerifyTimeout:
      verify_step(ctx, v);
      break;
    case kRelayNack: {
      auto it = relays_.find(static_cast<std::uint32_t>(v));
      if (it == relays_.end() || it->second.acked) break;
      send(ctx, it->second.origin, MsgType::nack, it->second.origin_seq, it->second.target);
      break;
    }
    case kRelayExpire:
      relays_.erase(static_cast<std::uint32_t>(v));
      break;
    default:
      log::warn("swim", "unknown_timer", "self={} tag={}", self_, t);
      break;
  }
}

// Decodes a message and checks who sent it and for whom; counts and logs what it refuses.
bool Swim::admit(NodeId from, std::span<const std::uint8_t> bytes, Message& msg) {
  const DecodeError err = decode(bytes, msg);
  if (err != DecodeError::none) {
    const auto n = ++stats_.decode_errors[static_cast<std::size_t>(err)];
    if (n == 1 || n % 1000 == 0)
      log::warn("swim", "decode_error", "self={} from={} reason={} bytes={} count={}", self_, from,
                decode_error_name(err), bytes.size(), n);
    return false;
  }
  if (msg.sender == self_) {
    stats_.from_self++;
    return false;
  }
  if (msg.sender != from) {
    stats_.sender_mismatch++;
    log::warn("swim", "sender_mismatch", "self={} from={} claimed={}", self_, from, msg.sender);
    return false;
  }
  if (msg.type == MsgType::ping && msg.target != self_) {
    stats_.wrong_target++;
    log::warn("swim", "wrong_target", "self={} from={} target={}", self_, from, msg.target);
    return false;
  }
  return true;
}

void Swim::on_message(Context& ctx, NodeId from, std::span<const std::uint8_t> bytes) {
  if (!started_) return;
  Message msg;
  if (!admit(from, bytes, msg)) return;
  stats_.received++;
  heard_from(ctx, msg.sender, msg.sender_incarnation);
  for (const Gossip& g : msg.gossip) apply(ctx, g, msg.sender);
  if (!msg.state.empty()) {
    auto it = members_.find(msg.sender);
    if (it != members_.end() && it->second.role_state != msg.state) {
      it->second.role_state = msg.state;
      if (on_state) on_state(msg.sender, it->second.role_state);
    }
  }
  switch (msg.type) {
    case MsgType::ping:
      send(ctx, msg.sender, MsgType::ack, msg.seq, self_);
      break;
    case MsgType::ack:
      on_ack(ctx, msg);
      break;
    case MsgType::ping_req:
      on_ping_req(ctx, msg);
      break;
    case MsgType::nack:
      if (probe_.active && msg.seq == probe_.seq) {
        probe_.nacks++;
        stats_.nacks++;
      }
      break;
    case MsgType::sync:
      if (msg.flags & 1) send_sync(ctx, msg.sender, false, true, nullptr);
      break;
  }
}

void Swim::on_ack(Context& ctx, const Message& msg) {
  const bool own_probe = probe_.active && msg.seq == probe_.seq && msg.target == probe_.target;
  if (msg.sender == msg.target && msg.seq != 0) {
    // The member itself answered one of our own pings: it is alive now, whatever others claim.
    auto mit = members_.find(msg.sender);
    if (mit != members_.end() && (own_probe || mit->second.verify_seq == msg.seq)) {
      proof_of_life(ctx, msg.sender, mit->second);
      if (!own_probe) return;
    }
  } else if (!own_probe && msg.seq != 0) {
    // A proxy relayed an ack to our check: no proof (a proxy could lie), but no evidence of ours either.
    auto mit = members_.find(msg.target);
    if (mit != members_.end() && mit->second.verify_seq == msg.seq) {
      mit->second.verify_relayed = true;
      return;
    }
  }
  if (own_probe) {
    if (!probe_.acked) {
      probe_.acked = true;
      stats_.acks++;
      lhm_delta(-1);
    }
    return;
  }
  auto r = relays_.find(msg.seq);
  if (r != relays_.end() && msg.sender == r->second.target) {
    send(ctx, r->second.origin, MsgType::ack, r->second.origin_seq, r->second.target);
    relays_.erase(r);
    return;
  }
  stats_.stale_acks++;
}

void Swim::on_ping_req(Context& ctx, const Message& msg) {
  if (msg.target == self_) {  // asked to probe ourselves: answer directly
    send(ctx, msg.sender, MsgType::ack, msg.seq, self_);
    return;
  }
  if (lhm_ >= cfg_.lhm_decline_proxy) {
    stats_.relays_declined++;
    return;
  }
  if (relays_.size() >= cfg_.max_relays) {
    stats_.relays_refused_full++;
    log::warn("swim", "relay_refused", "self={} reason=table_full max={}", self_, cfg_.max_relays);
    return;
  }
  std::uint32_t seq = next_seq_++;
  if (next_seq_ == 0) next_seq_ = 1;
  relays_[seq] = Relay{msg.sender, msg.seq, msg.target, false};
  stats_.relays++;
  send(ctx, msg.target, MsgType::ping, seq, msg.target);
  ctx.set_timer(cfg_.probe_timeout * 4 / 5, tag(kRelayNack, seq));
  ctx.set_timer(cfg_.probe_timeout * 2, tag(kRelayExpire, seq));
}

}  // namespace hs::swim
