// The gate role, as a sans-IO state machine (a component on channel kRole of the node's Mux, next to
// its RaftNode on kRaft). Gates take jobs from clients, pick datacenters, run each job's share in
// every chosen datacenter through that datacenter's managers (as their client: Submit, StatusQuery,
// CancelJob, with the gate's fence), merge the shares into one result, and own global timeouts and
// cancels. See docs/gates.md.
//
// Job state lives in a GateLedger replicated by the gates' Raft. Every job has one owner gate and
// a fence (GateJob::owner, fence): the owner runs the job's shares, deadlines and retention. Any
// gate in quorum accepts a submission; the owner is the ring's choice (gate/ring.hpp) among the
// live gates at that moment and stays the owner (sticky: a gate joining takes no running job).
// Only the Raft leader appends: a gate that does not lead forwards its entries to the leader
// (GateProposal, bounded by max_forwarded), which refuses an entry with a stale fence. Clients get
// their answer only after the entry committed: at the leader once it applied it; a submission at a
// follower once the leader reports it committed (the follower learns the commit only with the
// leader's next append, up to a heartbeat later); until the follower applied it, a status or
// cancel for that job there is redirected to the leader, as for any job it does not hold yet.
//
// Gates run SWIM among themselves; the view is injected (on_member) so the gate stays sans-IO.
// When a job's owner has been suspect or dead for member_grace, the ring's choice among the live
// gates adopts the job: an `own` entry (fence + 1), JobFence to the datacenters, then it carries on
// from the ledger and the managers' answers (managers and workers stay the source of truth for
// execution). A gracefully stopping gate hands its jobs to their ring successors (hand_off). A gate
// cut off from the quorum (no leader known) acks nothing and dispatches nothing.
//
// Every gate keeps the datacenter registry from the managers' heartbeats (DcHeartbeat): each
// datacenter's state and health (cluster::DcState, DcHealth) and its leading manager.
//
// Leader-side soft state (requests in flight, the latest counts of each share) is rebuilt from the
// ledger when a gate becomes the ready leader and dropped when it stops being it. Every table is
// bounded (GateConfig), and table_sizes() reports each one. Background work runs on named timers,
// one per concern, each with an error hook that logs and counts a failed pass.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hyperscale/cluster/intake.hpp"
#include "hyperscale/cluster/messages.hpp"
#include "hyperscale/cluster/raft.hpp"
#include "hyperscale/gate/ledger.hpp"
#include "hyperscale/gate/windows.hpp"
#include "hyperscale/node/node.hpp"

namespace hs::gate {

struct DatacenterConfig {
  std::string name;
  std::vector<NodeId> managers;
};

struct GateConfig {
  std::vector<NodeId> gates;                       // configured gates, self included
  std::vector<DatacenterConfig> datacenters;       // every datacenter and its managers
  Duration tick = std::chrono::milliseconds(100);  // the pass interval of every concern
  Duration dc_stale = std::chrono::seconds(3);     // a manager not heard this long is silent
  // A running share whose datacenter stays unavailable (no leader heard, or no answer to the
  // share's status queries) this long fails ("datacenter unreachable"); no cross-datacenter retry
  // once a datacenter accepted (scenarios.md §5).
  Duration dc_grace = std::chrono::seconds(10);
  Duration poll = std::chrono::milliseconds(500);      // status query of each running share
  Duration request_timeout = std::chrono::seconds(1);  // an unanswered request is sent again
  Duration cancel_timeout = std::chrono::seconds(10);  // a share that does not confirm a stop
  // Running shares' counts into the ledger when they changed (what gates show: durable, so never
  // going back across a failover); the elapsed time alone every 10 x this.
  Duration checkpoint_every = std::chrono::seconds(1);
  Duration timeout_slack = std::chrono::seconds(2);        // managers get timeout + this: the gate decides
  Duration retention_ok = std::chrono::seconds(300);       // completed jobs kept this long
  Duration retention_failed = std::chrono::seconds(3600);  // failed, partial, cancelled, timed-out jobs
  Duration idem_rejected_ttl = std::chrono::seconds(60);   // a rejected submission is remembered this long
  std::size_t max_jobs = 10'000;                           // ledger records; over it: overloaded
  std::size_t max_active_jobs = 1'000;
  std::size_t max_waiters = 10'000;       // clients waiting for an entry to commit
  std::size_t max_rejections = 100'000;   // remembered rejections (oldest evicted)
  std::size_t max_datacenters = 64;       // per job and configured
  std::size_t max_spec_bytes = 1u << 20;  // a job's encoded spec (it must fit the Raft log)
  std::size_t max_workflows_per_job = 1'000;
  std::uint32_t max_retry_budget = 50;     // clamp of JobSpec::retry_budget (the whole job's, AD-44)
  std::uint32_t max_workflow_retries = 5;  // clamp of JobSpec::workflow_retries
  std::uint32_t not_found_limit = 3;       // "no such job" answers before a share is declared lost
  std::uint32_t retry_after_ms = 1000;     // suggested to throttled clients
  // Live windows (docs/gates.md "Live windows"): the owner merges the datacenters' windows of a job
  // while clients watch it. No factory: the gate answers watch queries with an error.
  cluster::WindowsFactory windows;
  std::size_t max_watched_jobs = 100;                // jobs followed at once; over it the least recently asked goes
  std::size_t max_window_workflows = 1'024;          // mergers over every watched job; over it a workflow gets none
  std::uint32_t max_watch_windows = 120;             // closed windows per workflow in one reply
  std::size_t max_watch_bytes = 1u << 20;            // about this many window bytes in one reply
  Duration watch_linger = std::chrono::seconds(10);  // a job nobody asked about this long is dropped
  // A gate suspect or dead (in the gates' SWIM view) this long loses its jobs to the ring's choice
  // among the live gates (gate.member_grace).
  Duration member_grace = std::chrono::seconds(10);
  std::size_t max_forwarded = 10'000;  // entries forwarded to the leader in flight (each way)
  // The shares pass walks every job the ledger holds; it runs in slices of at most this many jobs,
  // each its own loop turn, so a client's submit or a Raft message waits for one slice, not a walk
  // of every job (tools/bench/submit: the walk every tick was the p99).
  std::size_t shares_slice = 256;
};

struct GateStats {
  std::uint64_t submits = 0, accepted = 0, rejected = 0, duplicates = 0, conflicts = 0, redirects = 0, dc_submits = 0,
                dc_accepted = 0, dc_refused = 0, reroutes = 0, polls = 0, dc_results = 0, late_results = 0,
                dc_unreachable = 0, dc_lost = 0, cancels = 0, cancels_sent = 0, timeouts = 0, best_effort_ends = 0,
                takeovers = 0, fences_sent = 0, fence_refused = 0, checkpoints = 0, cleaned = 0, proposals = 0,
                proposals_failed = 0, heartbeats = 0, heartbeats_refused = 0, decode_errors = 0, unknown_messages = 0,
                stale_replies = 0, dc_backoffs = 0, rejections_evicted = 0, timer_errors = 0, correlated_failures = 0,
                partitions_healed = 0, watches = 0, watch_redirects = 0, watch_polls = 0, watch_replies = 0,
                watch_errors = 0, windows_merged = 0, windows_refused = 0, watches_evicted = 0, forwarded = 0,
                forward_refused = 0, forward_failed = 0, proposals_in = 0, proposals_in_refused = 0,
                stale_proposals = 0, adoptions = 0, hand_offs = 0, member_changes = 0, share_slices = 0;
};

class Gate final : public node::Node {
 public:
  Gate(GateConfig cfg, cluster::RaftConfig raft);
  ~Gate() override;
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;

  void on_start(node::Context& ctx) override;
  void on_message(node::Context& ctx, NodeId from, std::span<const std::uint8_t> msg) override;
  void on_timer(node::Context& ctx, node::TimerId id, std::uint64_t tag) override;

  cluster::RaftNode& raft() noexcept { return *raft_; }
  const cluster::RaftNode& raft() const noexcept { return *raft_; }
  const GateLedger& ledger() const noexcept { return ledger_; }

  // The gates' SWIM view of gate `gate`: alive, or not (suspect, dead, left, never confirmed).
  // Self always counts as alive. Either call on_member on each change, or set a view the gate
  // reads for every configured gate at each registry pass (a gate never heard from is then gone
  // from the start, so its jobs are adopted too).
  void on_member(NodeId gate, bool alive);
  void set_member_view(std::function<bool(NodeId)> alive) { member_view_ = std::move(alive); }

  // Graceful stop (GTE-05): the gate takes no new job, hands every job it owns to its ring
  // successor among the other live gates (an `own` entry), then hands leadership over if it leads.
  // True once nothing is left to hand off; call again until it returns true, then stop.
  bool hand_off();

  // ---- observation ----
  NodeId self() const noexcept { return self_; }
  bool is_leader() const noexcept;                     // the ready Raft leader: it appends the gate ledger
  bool in_quorum() const noexcept;                     // the ready leader, or a follower that knows a leader
  std::vector<NodeId> live_gates() const;              // configured gates alive in the SWIM view (not one handing off)
  NodeId ring_owner(const std::string& job_id) const;  // the ring's choice among live_gates()
  const GateStats& stats() const noexcept { return stats_; }
  cluster::NodeStatus node_status() const;
  std::vector<cluster::DcStatus> datacenters() const;
  std::optional<cluster::JobView> job(const std::string& id) const;
  std::map<std::string, std::size_t> table_sizes() const;

 private:
  struct ManagerSeen {
    Instant heard{-1};
    cluster::DcHeartbeat hb;
  };
  struct Dc {  // registry entry (every gate)
    DatacenterConfig cfg;
    std::map<NodeId, ManagerSeen> managers;  // configured managers only
    Instant unavailable_since{-1};           // -1: usable (or never heard: awaiting)
    bool ever_heard = false;
    bool was_ready = false;  // had a leader once (a later loss reads unavailable, not initializing)
    cluster::DcState last_state = cluster::DcState::awaiting;  // as last logged
    cluster::DcHealth last_health = cluster::DcHealth::unhealthy;
  };
  struct Request {  // a request to a datacenter in flight (leader soft state)
    std::uint64_t req = 0;
    Instant sent{-1};
    NodeId to = 0;
  };
  struct ShareRun {  // one share as the owner follows it
    Request submit, poll, cancel, fence;
    std::uint64_t completed = 0, failed = 0;  // the highest counts the datacenter reported
    cluster::JobState seen = cluster::JobState::submitted;
    Instant last_answer{-1};  // the datacenter answered a request about the share
    std::uint32_t not_found = 0;
    bool fenced = false;  // the datacenter acknowledged the current fence
    bool stop_confirmed = false;
    bool proposing = false;                        // an entry about the share is in flight
    NodeId leader = 0;                             // where to send (the datacenter's leader as last learnt)
    std::vector<cluster::WorkflowView> workflows;  // the datacenter's latest view (live status)
    Instant unusable_since{-1};                    // a share not yet accepted whose datacenter is unusable
    Duration submit_backoff{0};                    // after retryable refusals (overloaded): resend interval
  };
  struct Live {  // one job, owner side
    std::vector<ShareRun> shares;
    Instant started{0};
    std::uint64_t base_elapsed_ms = 0;
    Instant terminal_at{-1};
    Instant next_checkpoint{0};
    Instant cancel_started{-1};
    Instant min_reached{-1};
    bool proposing = false;   // a job-level entry is in flight
    std::uint64_t fence = 0;  // the job's fence this gate runs it with (a new one: fence the shares)
  };
  struct Forwarded {  // an entry forwarded to the leader, until it committed and applied here
    std::function<void(std::uint64_t)> applied;    // GateOutcome
    std::function<void(std::uint64_t)> committed;  // GateOutcome, on the leader's word (then cleared)
    std::function<void(const Status&)> failed;
    Instant sent{0};
    std::uint64_t index = 0;  // committed at (0: no answer yet)
    std::uint64_t outcome = 0;
  };
  struct Waiters {  // clients of one in-flight accept (a duplicate of a PENDING submission waits)
    std::uint64_t digest = 0;
    std::string key;
    std::vector<std::pair<NodeId, std::uint64_t>> clients;
  };
  struct Watched {  // a job whose live windows the owner merges while clients ask (windows.cpp)
    JobWindows windows;
    Instant last_asked{0};
    std::vector<NodeId> hints;     // per share: the datacenter's leader as its managers last named it
    std::vector<Request> queries;  // per share: the watch query in flight
    bool warned = false;           // a refusal was logged at warn (later ones at debug)
  };
  // kSharesMore: the one-shot timer of a shares pass's next slice (not a periodic concern).
  enum Concern : std::uint64_t {
    kRegistry = 1,
    kShares,
    kDeadlines,
    kRetention,
    kWindows,
    kConcerns,
    kSharesMore = kConcerns
  };

  void dispatch_message(NodeId from, cluster::MsgType type, std::span<const std::uint8_t> body);
  // clients
  void handle_submit(NodeId from, cluster::Submit& m);
  bool answer_known(NodeId from, const cluster::Submit& m, std::uint64_t digest);
  std::optional<std::string> validate(const cluster::JobSpec& s) const;
  std::vector<std::string> route(const cluster::JobSpec& s, cluster::Err& code, std::string& error) const;
  void handle_status(NodeId from, const cluster::StatusQuery& m);
  void handle_cancel(NodeId from, const cluster::CancelJob& m);
  // datacenters
  void handle_dc_heartbeat(NodeId from, const cluster::DcHeartbeat& m);
  void handle_submit_ack(NodeId from, const cluster::SubmitAck& m);
  void handle_status_reply(NodeId from, cluster::StatusReply& m);
  void handle_cancel_reply(NodeId from, const cluster::CancelReply& m);
  void handle_fence_ack(NodeId from, const cluster::JobFenceAck& m);
  // live windows (windows.cpp)
  void handle_watch(NodeId from, const cluster::WatchQuery& m);
  void handle_watch_reply(NodeId from, const cluster::WatchReply& m);
  void windows_pass();
  void drop_watch(std::map<std::string, Watched>::iterator it);
  std::size_t window_mergers() const;
  std::map<std::string, std::size_t> window_tables() const;
  // gates
  void handle_proposal(NodeId from, const cluster::GateProposal& m);
  void handle_proposal_ack(NodeId from, const cluster::GateProposalAck& m);
  void forwarded_pass();  // answers forwarded entries applied here; fails those unanswered
  void ownership_pass();  // adopts the jobs of gates gone for member_grace
  bool owner_gone(NodeId owner) const;
  void propose_own(const std::string& id, const GateJob& j, NodeId to, const char* why);

  // leadership and the ledger
  void on_raft_change();
  Live& live_of(const std::string& id, const GateJob& j);
  using OnApplied = std::function<void(GateOutcome)>;
  using OnFailed = std::function<void(const Status&)>;
  // `committed`, when given, runs at a follower as soon as the leader reports the entry committed
  // (with the leader's outcome), before this gate applied it; `applied` still runs then.
  bool propose(GateEntry e, OnApplied applied, OnFailed failed = nullptr, OnApplied committed = nullptr);
  GateEntry entry(GateOp op, const std::string& job_id) const;

  // concerns
  void run_concern(Concern c);
  void registry_pass();
  void shares_pass();
  static bool at_rest(const GateShare& sh, const ShareRun* run);
  bool settled(const GateJob& j, const Live& l) const;
  void share_step(const std::string& id, const GateJob& j, Live& l, std::uint32_t s);
  bool reroute(const std::string& id, const GateJob& j, std::uint32_t s, const std::string& why);
  ShareRun* reply_run(std::uint64_t req, std::uint8_t kind, NodeId from, std::string& id, std::uint32_t& share);
  void deadlines_pass();
  void end_job(const std::string& id, JobState state, std::string why);
  void retention_pass();

  // helpers
  const Dc* dc(const std::string& name) const;
  cluster::DcStatus dc_status(const Dc& d) const;
  NodeId dc_target(const std::string& name, NodeId hint) const;
  bool dc_usable(const std::string& name) const;
  std::uint64_t next_req(const std::string& id, std::uint32_t share, std::uint8_t kind);
  bool decode_req(std::uint64_t req, std::string& id, std::uint32_t& share, std::uint8_t& kind) const;
  cluster::JobSpec share_spec(const GateJob& j, std::uint32_t share) const;  // AD-44 split
  std::uint64_t elapsed_ms(const std::string& id) const;
  cluster::JobView view(const std::string& id, const GateJob& j) const;
  cluster::SubmitAck reject(std::uint64_t req, cluster::Err code, std::string error) const;
  void remember_rejection(const std::string& key, std::uint64_t digest, const cluster::SubmitAck& a);
  template <class M>
  void send(NodeId to, cluster::MsgType t, M& msg) {
    ctx_->send(to, cluster::encode(t, msg));
  }

  GateConfig cfg_;
  GateLedger ledger_;
  std::unique_ptr<cluster::RaftNode> raft_;
  std::shared_ptr<bool> token_ = std::make_shared<bool>(true);
  node::Context* ctx_ = nullptr;
  NodeId self_ = 0;
  bool leading_ = false;
  std::vector<Dc> dcs_;                           // configured, in config order
  std::map<NodeId, std::size_t> manager_dc_;      // manager -> index in dcs_
  std::map<std::string, Live> live_;              // one per ledger job this gate owns
  std::optional<std::string> shares_cursor_;      // a shares pass in slices: the last job it stepped
  bool shares_more_armed_ = false;                // the next slice's timer is set
  std::map<std::uint64_t, Forwarded> forwarded_;  // by request number; at most max_forwarded
  std::uint64_t next_forward_ = 1;
  std::size_t awaiting_apply_ = 0;               // forwarded_ entries committed, not yet applied here
  std::size_t proposals_in_flight_ = 0;          // others' entries this leader proposed; at most max_forwarded
  std::map<NodeId, Instant> gone_since_;         // configured gates not alive in the SWIM view, since when
  std::map<std::string, std::uint64_t> owning_;  // `own` entries in flight: job -> the fence they replace
  bool handing_off_ = false;
  std::function<bool(NodeId)> member_view_;
  std::map<std::string, Waiters> accepts_;  // submissions whose accept entry is in flight
  cluster::RejectionCache rejections_{cfg_.max_rejections, cfg_.idem_rejected_ttl};  // by idempotency key
  // Requests to datacenters are numbered; the number maps back to (job, share, kind) while in flight.
  std::map<std::uint64_t, std::tuple<std::string, std::uint32_t, std::uint8_t>> requests_;
  std::uint64_t next_req_ = 1;
  std::map<std::string, Watched> watched_;  // owner only; at most max_watched_jobs
  // Watch queries in flight -> (job, share); at most one per share of a watched job.
  std::map<std::uint64_t, std::pair<std::string, std::uint32_t>> watch_reqs_;
  std::uint64_t next_watch_req_ = 1;
  bool partition_suspected_ = false;  // several datacenters lost together, not all back yet
  std::size_t waiters_ = 0;
  Instant seen_now_{0};
  GateStats stats_;
};

}  // namespace hs::gate
