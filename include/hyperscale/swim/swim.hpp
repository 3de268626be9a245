// SWIM failure detector and membership with the Lifeguard extensions, as a sans-IO state machine
// (a node::Node). It runs unchanged in the deterministic simulator and over UDP (host::UdpHost).
//
// Per protocol period (scaled by the local health multiplier, LHM):
//   1. probe the next member of a shuffled round-robin list (reshuffled every cycle): ping, wait
//      probe_timeout × LHM for the ack;
//   2. no ack: ask k members to probe it (ping-req); proxies send a nack if the target does not
//      answer in time (Lifeguard: a missing nack means *our* network is the problem → LHM + 1);
//   3. still no ack: suspect it (confirmed members only) and gossip the suspicion.
// A suspicion expires after T(C) = max(Tmin, Tmax − (Tmax − Tmin)·ln(C+1)/ln(K+1)) where C counts
// independent confirmations (Lifeguard's dynamic suspicion timeout); Tmin and Tmax are scaled by
// LHM when the suspicion starts; confirmations only ever bring the deadline earlier.
// Only a node's OWN suspicion kills: a member becomes dead here when our suspicion of it expires.
// A "suspect" or "dead" claim gossiped by another member (and a leave relayed by a third party)
// only starts or confirms our suspicion — a dead claim is no stronger than a suspect claim — and
// is accepted only at the incarnation we know for the member: a third party cannot raise a
// member's incarnation (only the member does, by refuting). A confirmation counts only when the
// member that sends it made the claim itself (origin = transport sender) and counts once per
// member. When others' claims start our suspicion we check the suspect like a probe (ping, then
// ping-req + a second ping); no answer at all is our own evidence (a confirmation by us). An ack
// from the suspect itself to one of our pings proves it alive and clears our suspicion; at the
// deadline one last ping decides. A "left" is believed at once only from the member itself.
// A member suspected (or declared dead) at its own incarnation refutes by bumping its
// incarnation and gossiping alive. Alive needs a strictly higher incarnation to override
// suspect/dead, so an old incarnation can never resurrect a dead member.
// Gossip rides on every ping/ack/ping-req (bounded buffer, each update sent ⌈λ·ln(n+1)⌉ times,
// least-sent first, fitted to the 1400-byte datagram together with the sender's role state).
// All tables are bounded (members, gossip buffer, relays, suspicion confirmers, dead retention).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <tuple>
#include <string_view>
#include <vector>

#include "hyperscale/node/node.hpp"
#include "hyperscale/swim/codec.hpp"

namespace hs::swim {

struct Message;  // swim/codec.hpp

using node::Bytes;
using node::Context;
using node::NodeId;

struct SwimConfig {
  Duration period = std::chrono::seconds(1);
  Duration probe_timeout = std::chrono::milliseconds(500);  // direct ack wait (× LHM)
  std::size_t indirect_k = 3;
  // Tmin = alpha × max(1, log10(n)) × period; Tmax = beta × Tmin; K = expected confirmations.
  double suspicion_alpha = 4.0;
  double suspicion_beta = 3.0;
  std::size_t suspicion_k = 3;
  int lhm_max = 8;             // LHM score 0..lhm_max, multiplier = 1 + score
  int lhm_decline_proxy = 6;   // at this score or worse, ping-reqs are declined
  double gossip_lambda = 3.0;  // each update is sent ⌈λ·ln(n+1)⌉ times
  std::size_t max_gossip_buffer = 1000;
  std::size_t max_piggyback = 50;  // further bounded by what fits in the datagram (with the role state)
  std::size_t max_members = 10'000;
  std::size_t max_relays = 100;
  std::size_t max_confirmers = 1000;
  std::uint32_t refute_tokens = 5;  // refutations allowed per refute_window
  Duration refute_window = std::chrono::seconds(10);
  std::uint32_t max_incarnation_jump = 1000;
  Duration dead_retention = std::chrono::seconds(60);       // dead/left members forgotten after this
  Duration unconfirmed_timeout = std::chrono::seconds(60);  // never-heard-from members dropped after this
  std::uint32_t reconnect_every = 5;                        // every this many periods, ping one dead member or a seed
  std::uint32_t sync_every = 20;    // every this many periods, exchange a member sample (0: never)
  std::uint32_t leave_periods = 3;  // after leave(), keep gossiping this many periods, then go quiet
  std::vector<NodeId> seeds;        // start unconfirmed
  // Bytes one SWIM datagram may take (≤ kDatagramBudget). Smaller when the datagram is carried
  // inside a sealed frame (host::NetHost::datagram_budget() − 1 for the channel byte).
  std::size_t datagram_budget = kDatagramBudget;
};

enum class State : std::uint8_t { alive, suspect, dead, left };
std::string_view state_name(State s) noexcept;

struct MemberEvent {
  NodeId node = 0;
  State from = State::alive;
  State to = State::alive;
  std::uint32_t incarnation = 0;
  bool joined = false;  // first time this node is seen
};

struct MemberInfo {
  NodeId node = 0;
  State state = State::alive;
  std::uint32_t incarnation = 0;
  bool confirmed = false;
};

struct SwimStats {
  std::uint64_t sent = 0, received = 0, probes = 0, ping_reqs_sent = 0, relays = 0, relays_declined = 0,
                relays_refused_full = 0, acks = 0, nacks = 0, probe_failures = 0, suspicions = 0, refutations = 0,
                refutes_rate_limited = 0, deaths = 0, resurrections = 0, members_refused_full = 0,
                incarnation_jumps_rejected = 0, gossip_evicted = 0, forgotten = 0, unconfirmed_dropped = 0,
                wrong_target = 0, from_self = 0, sender_mismatch = 0, unconfirmed_probe_failures = 0, stale_acks = 0,
                encode_errors = 0, dead_notices = 0;
  // Forged or mistaken claims: suspect/dead/left claims above the incarnation the member announced
  // (refused); suspicions dropped because the suspect itself acked our ping; our own pings to a
  // member others claim is failing; suspicions that expired before we had checked the member.
  std::uint64_t claims_rejected = 0, suspicions_disproved = 0, verify_pings = 0, final_checks = 0;
  std::uint64_t decode_errors[static_cast<std::size_t>(DecodeError::kCount)] = {};
  std::uint64_t decode_errors_total() const noexcept;
};

class Swim final : public node::Node {
 public:
  explicit Swim(SwimConfig cfg);

  // ---- node::Node ----
  void on_start(Context& ctx) override;
  void on_message(Context& ctx, NodeId from, std::span<const std::uint8_t> msg) override;
  void on_timer(Context& ctx, node::TimerId id, std::uint64_t tag) override;

  // ---- callbacks (set before on_start) ----
  // Every state change of a member (join, suspect, alive again, dead, left).
  std::function<void(const MemberEvent&)> on_change;
  // Exactly once per transition of a member into dead or left (direct or learned via gossip).
  std::function<void(NodeId, std::uint32_t incarnation, bool left)> on_dead;
  // A member's embedded role state changed.
  std::function<void(NodeId, const Bytes&)> on_state;

  // ---- local control (no I/O here: effects go out on the next event) ----
  // Role state embedded in every probe and ack. Refused if it does not fit the datagram budget
  // with room for gossip (max kMaxStateBytes).
  Status set_local_state(Bytes state);
  // Announce a graceful leave: gossiped for leave_periods, then this node stops sending.
  void leave();
  // Adds members known from outside (bootstrap of a long-running cluster in benchmarks). They are
  // confirmed, as if heard from directly.
  void bootstrap_confirmed(const std::vector<NodeId>& members);

  // ---- introspection ----
  NodeId self() const noexcept { return self_; }
  std::uint32_t incarnation() const noexcept { return incarnation_; }
  int lhm_score() const noexcept { return lhm_; }
  std::optional<MemberInfo> member(NodeId id) const;
  std::vector<MemberInfo> members() const;
  std::size_t alive_count() const noexcept { return live_; }  // alive + suspect, excluding self
  std::optional<Bytes> state_of(NodeId id) const;
  const SwimStats& stats() const noexcept { return stats_; }
  std::size_t gossip_buffer_size() const noexcept { return gossip_.size(); }
  std::size_t relay_count() const noexcept { return relays_.size(); }
  const SwimConfig& config() const noexcept { return cfg_; }
  // Current suspicion timeout bounds for n members (for docs/tests).
  Duration suspicion_min() const;
  Duration suspicion_max() const;

 private:
  struct Suspicion {
    Instant start{0};
    Duration tmin{0}, tmax{0};
    Instant deadline{0};
    std::set<NodeId> confirmers;  // members that made the claim first-hand (self: our own probe failed)
    bool left = false;            // a leave relayed by a third party: report "left" on expiry
    bool final_check = false;     // expiry already extended once for our own direct check
  };
  struct Member {
    State state = State::alive;
    std::uint32_t incarnation = 0;
    bool confirmed = false;
    Instant since{0};         // time of the last state change
    Instant heard{0};         // last direct message
    Instant last_notice{-1};  // last "you are dead" notice sent to it
    // Our own check of a member others claim is failing: ping, then ping-req through proxies
    // plus a second ping; no answer at all counts as our own evidence (a confirmation by us).
    Instant verify_sent{-1};  // last verification ping
    Instant proof{-1};        // last ack from it to one of our own pings
    Instant verify_at{-1};    // when the current stage started
    std::uint32_t verify_seq = 0;
    std::uint8_t verify_stage = 0;  // 0 idle, 1 direct ping out, 2 proxies asked
    bool verify_relayed = false;    // a proxy relayed an ack: reachable, so no evidence of ours
    Bytes role_state;
    std::optional<Suspicion> suspicion;
  };
  struct GossipEntry {
    Gossip g;
    std::uint32_t transmits = 0;
    std::uint64_t seq = 0;  // enqueue order: among equally-sent entries the newest goes first
  };
  struct Probe {
    bool active = false;
    std::uint32_t seq = 0;
    NodeId target = 0;
    bool acked = false;
    bool indirect = false;
    std::uint32_t expected_nacks = 0;
    std::uint32_t nacks = 0;
  };
  struct Relay {
    NodeId origin = 0;
    std::uint32_t origin_seq = 0;
    NodeId target = 0;
    bool acked = false;
  };

  enum TimerKind : std::uint64_t {
    kTick = 1,
    kProbeTimeout,
    kSuspicionTimer,
    kRelayNack,
    kRelayExpire,
    kVerifyTimeout
  };
  static std::uint64_t tag(TimerKind k, std::uint64_t v) {
    return (static_cast<std::uint64_t>(k) << 56) | (v & ((1ull << 56) - 1));
  }

  std::size_t cluster_size() const noexcept { return alive_count() + 1; }
  std::size_t budget() const noexcept { return std::min(cfg_.datagram_budget, kDatagramBudget); }
  Duration scaled(Duration d) const;
  void lhm_delta(int d);
  void tick(Context& ctx);
  void finish_probe(Context& ctx);
  NodeId next_probe_target(Context& ctx);
  void rebuild_probe_list(Context& ctx);
  void send(Context& ctx, NodeId to, MsgType type, std::uint32_t seq, NodeId target, const Gossip* first = nullptr,
            std::uint8_t flags = 0);
  void send_sync(Context& ctx, NodeId to, bool want_reply, bool sample, const Gossip* notice);
  // Encodes and sends one datagram; an encode error is logged and counted (stats().encode_errors).
  void encode_and_send(Context& ctx, NodeId to, const Message& m);
  Duration suspicion_timeout(const Suspicion& s) const;
  void heard_from(Context& ctx, NodeId from, std::uint32_t inc);
  // on_message in parts: admission (decode, sender and target checks), then per message type.
  bool admit(NodeId from, std::span<const std::uint8_t> bytes, Message& msg);
  void on_ack(Context& ctx, const Message& msg);
  void on_ping_req(Context& ctx, const Message& msg);
  // `from`: the member whose datagram carried `g` (self_ for our own conclusions).
  void apply(Context& ctx, const Gossip& g, NodeId from);
  void apply_claim(Context& ctx, NodeId id, Member& m, const Gossip& g, NodeId from);
  // staged: run the direct → indirect check (on suspicion start); else one ping (final check).
  void send_verify(Context& ctx, NodeId id, Member& m, bool staged);
  void verify_step(Context& ctx, NodeId id);
  std::set<NodeId> pick_proxies(Context& ctx, NodeId target);
  void proof_of_life(Context& ctx, NodeId id, Member& m);
  void refute(Context& ctx, std::uint32_t seen);
  void set_state(Context& ctx, NodeId id, Member& m, State s, std::uint32_t inc);
  Member* add_member(Context& ctx, NodeId id, std::uint32_t inc, bool confirmed);
  void enqueue(const Gossip& g);
  // confirmer: the first-hand claimer, or 0 when the claim was relayed.
  void start_suspicion(Context& ctx, NodeId id, Member& m, NodeId confirmer, bool left);
  void reschedule_suspicion(Context& ctx, NodeId id, Member& m);
  void declare_dead(Context& ctx, NodeId id, Member& m);
  void housekeeping(Context& ctx);
  void persist_incarnation(Context& ctx);

  SwimConfig cfg_;
  NodeId self_ = 0;
  bool started_ = false;
  std::uint32_t incarnation_ = 0;
  int lhm_ = 0;
  bool leaving_ = false;
  std::uint32_t leave_ticks_ = 0;
  std::uint64_t ticks_ = 0;
  std::uint32_t next_seq_ = 1;
  Bytes local_state_;
  std::map<NodeId, Member> members_;
  std::size_t live_ = 0;  // members alive or suspect (kept in step with members_)
  std::vector<NodeId> probe_list_;
  std::size_t probe_index_ = 0;
  std::map<NodeId, GossipEntry> gossip_;
  // Send order of gossip_: (transmits, newest first, node). Kept in step with gossip_.
  using GossipKey = std::tuple<std::uint32_t, std::uint64_t, NodeId>;
  std::set<GossipKey> gossip_order_;
  static GossipKey key_of(NodeId id, const GossipEntry& e) { return {e.transmits, ~e.seq, id}; }
  std::uint64_t gossip_seq_ = 0;
  Probe probe_;
  std::map<std::uint32_t, Relay> relays_;
  std::deque<std::pair<Instant, NodeId>> dead_queue_;         // forget after dead_retention
  std::deque<std::pair<Instant, NodeId>> unconfirmed_queue_;  // drop after unconfirmed_timeout
  std::deque<Instant> refutes_;                               // refutation times in the window
  SwimStats stats_;
};

}  // namespace hs::swim
