// Leader election for one role cluster (the managers of a datacenter, or the gates), sans-IO.
//
// Raft-style terms and votes, plus:
//  - pre-vote: a node bumps its term only after a quorum answered "I would vote for you"; a node
//    refuses pre-votes and votes while it hears from a live leader (within election_timeout_min of
//    its last heartbeat), so a partitioned node that rejoins does not disrupt a stable leader;
//  - durable votes: (term, voted_for) is written to ctx.disk() under "election/state" and made
//    durable with ctx.sync() before a vote is sent or a candidacy is announced;
//  - leases: a leader is is_leader() only while a quorum of the CONFIGURED members acked one of its
//    heartbeats sent less than `lease` ago (measured from the send, on the leader's clock);
//  - stepdown after `stepdown_failed_checks` consecutive failed quorum checks (one per heartbeat);
//  - flap damping: after `flap_changes` leader changes within `flap_window`, a new candidacy waits
//    until `flap_cooldown` has passed since the last change.
// Safety of leases across nodes needs lease < election_timeout_min (with margin for clock drift):
// see docs/election.md. check_config() states every relation the protocol relies on; the
// constructor requires them (std::invalid_argument otherwise: a daemon checks its config keys
// for the same relations at load, so a running node never meets a broken config).
//
// Everything is a function of events: time from ctx.now(), randomness from ctx.rng().
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <span>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "hyperscale/base/time.hpp"
#include "hyperscale/node/node.hpp"

namespace hs::cluster {

struct ElectionConfig {
  // The CONFIGURED members of this role cluster, including self. quorum = members.size()/2 + 1,
  // never a count of who is alive.
  std::vector<node::NodeId> members;
  Duration heartbeat = std::chrono::seconds(1);  // leader -> followers; also the quorum-check period
  // Randomized per round in [min, max] from ctx.rng(). A follower that heard from a leader less
  // than election_timeout_min ago refuses pre-votes and votes.
  Duration election_timeout_min = std::chrono::seconds(5);
  Duration election_timeout_max = std::chrono::seconds(7);
  // A leader holds leadership only while a quorum acked a heartbeat sent within the lease. Must be
  // below election_timeout_min; the gap is the clock-drift margin (4 s vs 5 s tolerates ±11 %).
  Duration lease = std::chrono::seconds(4);
  int stepdown_failed_checks = 3;  // leader steps down after this many consecutive failed checks
  // Damping (LDR-05): after flap_changes leader changes within flap_window, new candidacies wait
  // until flap_cooldown has passed since the last change.
  std::size_t flap_changes = 4;
  Duration flap_window = std::chrono::seconds(60);
  Duration flap_cooldown = std::chrono::seconds(15);
  // Bound of queued durable-vote replies (each waits for one ctx.sync()).
  std::size_t max_pending_syncs = 64;
};

// A lease may be at most this share of election_timeout_min: the rest is the clock-drift margin
// (90 % tolerates ±11 % rate drift, docs/election.md).
inline constexpr int kMaxLeasePercent = 90;

// The relations ElectionConfig must satisfy, each with the fields and values in the error:
//   heartbeat > 0; heartbeat < lease (a lease outlives the gap between two quorum-acked heartbeats);
//   heartbeat < election_timeout_min (followers hear the leader before they time out);
//   lease <= election_timeout_min × kMaxLeasePercent / 100 (lease safety);
//   election_timeout_min <= election_timeout_max.
Status check_config(const ElectionConfig& c);

struct ElectionStats {
  std::uint64_t prevotes_started = 0;   // pre-vote rounds this node began
  std::uint64_t elections_started = 0;  // real candidacies (term + 1)
  std::uint64_t terms_won = 0;
  std::uint64_t stepdowns = 0;         // leader gave up: failed quorum checks
  std::uint64_t deposed = 0;           // leader saw a higher term
  std::uint64_t damped_elections = 0;  // candidacies delayed by flap damping
  std::uint64_t leader_changes = 0;    // changes of the known (term, leader) pair
  std::uint64_t votes_granted = 0, votes_refused = 0;
  std::uint64_t prevotes_granted = 0, prevotes_refused = 0;
  std::uint64_t lease_refusals = 0;  // (pre-)votes refused because a live leader was heard recently
  std::uint64_t failed_quorum_checks = 0;
  std::uint64_t heartbeats_sent = 0, heartbeats_received = 0, acks_received = 0;
  std::uint64_t decode_errors = 0;       // malformed, truncated, unknown type, out-of-range field
  std::uint64_t unknown_sender = 0;      // not a configured member (or self)
  std::uint64_t stale = 0;               // messages of an older term/round: ignored
  std::uint64_t conflicting_leader = 0;  // two leaders claimed the same term (must stay 0)
  std::uint64_t disk_errors = 0;         // persisting the vote failed: the vote/candidacy is refused
  std::uint64_t state_corrupt = 0;       // stored state unreadable at start: node stays passive
  std::uint64_t syncs_refused_full = 0;  // pending durable replies over the bound
  std::uint64_t term_exhausted = 0;      // term reached kMaxTerm: no further candidacy
  std::uint64_t flap_state_dropped = 0;  // stored flap history unreadable (ignored: damping only)
};

class Election final : public node::Node {
 public:
  explicit Election(ElectionConfig cfg);

  void on_start(node::Context& ctx) override;
  void on_message(node::Context& ctx, node::NodeId from, std::span<const std::uint8_t> msg) override;
  void on_timer(node::Context& ctx, node::TimerId id, std::uint64_t tag) override;

  bool is_leader() const noexcept { return leading_; }  // leader with a valid lease (as of the last event)
  std::uint64_t term() const noexcept { return term_; }
  std::optional<node::NodeId> leader() const noexcept { return leader_; }
  bool has_quorum() const noexcept { return leading_; }  // leader: a quorum acked within the lease
  std::optional<node::NodeId> voted_for() const noexcept { return voted_for_; }
  std::size_t quorum() const noexcept { return cfg_.members.size() / 2 + 1; }
  const ElectionConfig& config() const noexcept { return cfg_; }
  const ElectionStats& stats() const noexcept { return stats_; }
  // Every counter with a stable name (for a metrics registry: hs_election_<name>_total).
  void for_each_counter(const std::function<void(std::string_view, std::uint64_t)>& fn) const;

  // Every change of (is_leader, term, leader).
  std::function<void(bool is_leader, std::uint64_t term, std::optional<node::NodeId> leader)> on_change;

  // Terms above this are refused as malformed (no overflow of term + 1).
  static constexpr std::uint64_t kMaxTerm = std::uint64_t{1} << 62;
  static constexpr std::string_view kStateKey = "election/state";
  // Times of recent leader changes, kept across restarts so that restarting the leader again and
  // again is damped too (LDR-05). Written without a sync: it is a heuristic, not a safety record.
  static constexpr std::string_view kFlapKey = "election/flaps";

 private:
  enum class Role : std::uint8_t { follower, candidate, leader };
  enum Tag : std::uint64_t {
    kElectionTimer = 1,
    kHeartbeatTimer = 2,
    kLeaseTimer = 3,
    kSyncVote = 4,
    kSyncCandidacy = 5
  };
  struct PendingSync {
    Tag kind;
    std::uint64_t term;
    node::NodeId to;
  };

  bool is_member(node::NodeId id) const;
  void load_state(node::Context& ctx);
  bool persist(node::Context& ctx);  // writes (term, voted_for); false (logged, counted) on error
  void load_flaps(node::Context& ctx);
  void persist_flaps(node::Context& ctx);
  void adopt_term(node::Context& ctx, std::uint64_t t);
  void arm_election_timer(node::Context& ctx, Duration after);
  void arm_election_timer(node::Context& ctx);
  void start_prevote(node::Context& ctx);
  void start_candidacy(node::Context& ctx);
  void become_leader(node::Context& ctx);
  void become_follower(node::Context& ctx);
  void send_heartbeats(node::Context& ctx);
  void recompute_lease(Instant now);
  void set_leader(node::Context& ctx, std::optional<node::NodeId> l);
  bool hears_live_leader(Instant now) const;
  bool damped(Instant now);
  void queue_sync(node::Context& ctx, Tag kind, std::uint64_t term, node::NodeId to);
  void broadcast(node::Context& ctx, const node::Bytes& msg);
  void refresh(node::Context& ctx);  // recomputes leading_, fires on_change
  void decode_error(node::NodeId from, const char* why);

  void on_prevote_req(node::Context& ctx, node::NodeId from, std::uint64_t term, std::uint64_t round);
  void on_prevote_resp(node::Context& ctx, node::NodeId from, std::uint64_t term, std::uint64_t round, bool granted);
  void on_vote_req(node::Context& ctx, node::NodeId from, std::uint64_t term);
  void on_vote_resp(node::Context& ctx, node::NodeId from, std::uint64_t term, bool granted);
  void on_heartbeat(node::Context& ctx, node::NodeId from, std::uint64_t term, std::int64_t sent);
  void on_ack(node::Context& ctx, node::NodeId from, std::uint64_t term, std::int64_t sent, bool ok);

  ElectionConfig cfg_;
  ElectionStats stats_;
  node::NodeId self_ = 0;
  bool started_ = false;
  bool passive_ = false;  // stored state unreadable: never vote or campaign

  // persisted
  std::uint64_t term_ = 0;
  std::optional<node::NodeId> voted_for_;

  Role role_ = Role::follower;
  std::optional<node::NodeId> leader_;
  bool leading_ = false;
  Instant quiet_until_{0};  // refuse (pre-)votes before this: a live leader was heard (or we just booted)

  // pre-vote / candidacy (members only: bounded by the configuration)
  bool prevoting_ = false;
  std::uint64_t round_ = 0;
  std::unordered_set<node::NodeId> prevotes_;
  std::unordered_set<node::NodeId> votes_;
  bool announced_ = false;  // candidacy durable and vote requests sent

  // leader
  std::unordered_map<node::NodeId, Instant> acked_;  // member -> latest acked heartbeat send time
  Instant lease_until_ = Instant::min();             // local times may be negative (clock offset)
  int failed_checks_ = 0;

  node::TimerId election_timer_ = 0, heartbeat_timer_ = 0, lease_timer_ = 0;
  std::unordered_map<node::TimerId, PendingSync> syncs_;
  std::deque<Instant> changes_;  // times of recent leader changes (at most flap_changes)
  std::optional<std::pair<std::uint64_t, node::NodeId>> known_;  // last (term, leader) seen

  // last reported to on_change
  bool rep_leading_ = false;
  std::uint64_t rep_term_ = 0;
  std::optional<node::NodeId> rep_leader_;
};

}  // namespace hs::cluster
