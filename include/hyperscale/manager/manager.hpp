// The manager role of one datacenter, as a sans-IO state machine (a component on channel kRole of
// the node's Mux). It takes jobs from clients, records them durably and on a quorum of the
// configured managers before acknowledging, dispatches each workflow onto worker cores with a fence
// token, follows progress and results, re-dispatches work lost with a worker, takes over jobs whose
// leader died, enforces cancellation and timeouts, and forgets every finished job after its
// retention. See docs/cluster.md for the protocol and the rules it keeps.
//
// Leadership and membership come from outside through Hooks (the election component and SWIM), so
// the role can be tested alone. Time, randomness, messages, timers and the disk come from the
// Context. Every table is bounded (ManagerConfig), and table_sizes() reports each one.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "hyperscale/cluster/messages.hpp"
#include "hyperscale/node/node.hpp"

namespace hs::manager {

using cluster::NodeId;

struct ManagerConfig {
  std::vector<NodeId> managers;                             // configured managers of the DC, self included
  Duration tick = std::chrono::milliseconds(100);           // scheduling / timeout check interval
  Duration worker_stale = std::chrono::seconds(3);          // no heartbeat this long: not used for dispatch
  Duration dispatch_ack_timeout = std::chrono::seconds(1);  // re-send an unacknowledged dispatch after this
  Duration replicate_timeout = std::chrono::seconds(3);  // a submit or cancel not on a quorum by then: retryable error
  Duration replicate_retry = std::chrono::milliseconds(500);  // re-send a replica nobody acknowledged
  Duration transfer_retry = std::chrono::milliseconds(500);   // re-send an unacknowledged leader transfer
  Duration pull_every = std::chrono::seconds(5);              // a replica of a live job asks its leader this often
  Duration cancel_timeout = std::chrono::seconds(5);          // stop confirmations awaited this long
  Duration requeue_backoff = std::chrono::milliseconds(200);  // after a refused dispatch (doubles, capped)
  Duration requeue_backoff_max = std::chrono::seconds(5);
  Duration retention_ok = std::chrono::seconds(300);       // completed jobs kept this long
  Duration retention_failed = std::chrono::seconds(3600);  // failed, cancelled, timed-out jobs
  Duration idem_committed_ttl = std::chrono::seconds(300);
  Duration idem_rejected_ttl = std::chrono::seconds(60);
  std::size_t max_idempotency = 100'000;
  std::size_t max_jobs = 10'000;        // records held (active + retained + replicas); over it: overloaded
  std::size_t max_active_jobs = 1'000;  // non-terminal jobs this manager leads
  std::size_t max_workflows_per_job = 1'000;
  std::size_t max_workers = 10'000;
  std::size_t max_plan_bytes = 1 << 20;
  std::uint32_t max_retry_budget = 50;     // clamp of JobSpec::retry_budget
  std::uint32_t max_workflow_retries = 5;  // clamp of JobSpec::workflow_retries
  std::uint32_t circuit_errors = 3;        // dispatch errors within circuit_window open a worker's circuit
  Duration circuit_window = std::chrono::seconds(30);
  Duration circuit_half_open = std::chrono::seconds(10);
  std::uint32_t retry_after_ms = 1000;  // suggested to throttled clients
};

// Leadership and membership, provided by the node (election + SWIM) or by a test.
struct Hooks {
  std::function<bool()> is_leader;      // DC leader with a valid lease
  std::function<std::uint64_t()> term;  // current election term
  std::function<std::optional<NodeId>()> leader;
  std::function<bool()> has_quorum;
  std::function<bool(NodeId)> alive;  // SWIM: alive or suspect
};

// Counters (also exported as metrics by hosts).
struct ManagerStats {
  std::uint64_t submits = 0, accepted = 0, rejected = 0, duplicates = 0, conflicts = 0, redirects = 0, dispatches = 0,
                dispatch_resends = 0, dispatch_refused = 0, redispatches = 0, results = 0, stale_results = 0,
                duplicate_results = 0, takeovers = 0, transfers = 0, cancels = 0, timeouts = 0, stuck = 0, cleaned = 0,
                decode_errors = 0, unknown_messages = 0, stale_replicas = 0, fence_rejects = 0, budget_exhausted = 0,
                circuit_opened = 0, commits = 0, commit_timeouts = 0, idem_evicted = 0, pulls = 0, replicas_dropped = 0,
                disk_errors = 0;
};

// One dispatch attempt, for observers (the attempt log of scenarios.md §2.4).
struct Attempt {
  std::string job_id, workflow;
  NodeId worker = 0;
  std::uint64_t token = 0;
};

class Manager final : public node::Node {
 public:
  Manager(ManagerConfig cfg, Hooks hooks);
  ~Manager() override;

  void on_start(node::Context& ctx) override;
  void on_message(node::Context& ctx, NodeId from, std::span<const std::uint8_t> msg) override;
  void on_timer(node::Context& ctx, node::TimerId id, std::uint64_t tag) override;

  // From SWIM (wired by the node): a member was declared dead or left.
  void on_member_dead(NodeId node);
  // From the election: leadership changed (a new leader adopts orphaned jobs at once).
  void on_leadership(bool is_leader);

  // ---- observation ----
  NodeId self() const noexcept { return self_; }
  const ManagerStats& stats() const noexcept { return stats_; }
  cluster::NodeStatus node_status() const;
  std::optional<cluster::JobView> job(const std::string& id) const;
  // Sizes of every table, by name (jobs, idempotency, expiry queues, workers, waiters, ...).
  std::map<std::string, std::size_t> table_sizes() const;
  // Every dispatch this manager made (bounded ring of the last 10 000).
  const std::deque<Attempt>& attempts() const noexcept { return attempts_; }
  bool leads(const std::string& job_id) const;

 private:
  struct Waiter {  // a client waiting for a commit
    NodeId client = 0;
    std::uint64_t req = 0;
    bool cancel = false;  // a cancel reply (else a submit ack)
    std::uint32_t cancelled_count = 0;
    Instant deadline{0};
  };
  struct WfRun {  // leader-side, not persisted
    Instant last_progress{0};
    std::uint64_t last_completed = 0, last_failed = 0;
    Instant ack_deadline{0};
    Instant retry_at{0};
    Duration backoff{0};
    bool stopping = false;
    Instant stop_deadline{0};
    bool transfer_pending = false;
    Instant transfer_deadline{0};
  };
  struct Job {
    cluster::JobRecord rec;
    bool led = false;                       // this manager leads it (in this life)
    bool committed = false;                 // on a quorum (leader side)
    bool dirty = false;                     // record changed since it was last persisted
    std::uint64_t persisted_version = 0;    // durable locally
    std::map<NodeId, std::uint64_t> acked;  // peer -> highest version acknowledged
    Instant replicate_at{0};
    std::uint64_t commit_version = 0;  // version a quorum must hold before the waiters are answered
    std::vector<Waiter> waiters;
    std::vector<WfRun> runs;
    Instant started{0};
    std::uint64_t base_elapsed_ms = 0;
    Instant terminal_at{-1};
    bool cleanup_queued = false;
    Instant pull_at{0};
  };
  struct WorkerInfo {
    std::uint32_t total = 0, available = 0;
    cluster::Health health = cluster::Health::healthy;
    Instant last_heartbeat{0};
    std::vector<cluster::ExecReport> execs;
    std::deque<Instant> errors;
    Instant open_until{0};
    bool open = false;
    bool half_open_probe = false;
    std::uint64_t boot = 0;
  };
  struct IdemEntry {
    std::string job_id;
    std::uint64_t digest = 0;
    bool rejected = false;
    cluster::SubmitAck rejection;
    Instant expires{0};
  };
  struct SyncBatch {
    std::vector<std::pair<std::string, std::uint64_t>> versions;      // job -> version made durable
    std::vector<std::pair<NodeId, std::vector<std::uint8_t>>> after;  // messages sent once durable
  };

  enum Tag : std::uint64_t { kTick = 1, kSync = 2 };

  // handlers
  void handle_submit(NodeId from, cluster::Submit& m);
  void handle_status(NodeId from, const cluster::StatusQuery& m);
  void handle_cancel(NodeId from, const cluster::CancelJob& m);
  void handle_cancel_workflow(NodeId from, const cluster::CancelWorkflow& m);
  void handle_replicate(NodeId from, cluster::Replicate& m);
  void handle_replicate_ack(NodeId from, const cluster::ReplicateAck& m);
  void handle_heartbeat(NodeId from, cluster::Heartbeat& m);
  void handle_dispatch_ack(NodeId from, const cluster::DispatchAck& m);
  void handle_progress(NodeId from, const cluster::Progress& m);
  void handle_result(NodeId from, cluster::ResultMsg& m);
  void handle_stop_ack(NodeId from, const cluster::StopAck& m);
  void handle_transfer_ack(NodeId from, const cluster::TransferAck& m);

  // machinery
  void tick();
  void schedule_job(Job& j, std::map<NodeId, std::uint32_t>& used);
  void check_job(Job& j);
  void finish_job(Job& j, cluster::JobState s, const std::string& error);
  void stop_workflow(Job& j, std::size_t i, const std::string& why);
  void lose_attempt(Job& j, std::size_t i, const std::string& why, bool exclude);
  void take_over(Job& j);
  void mark(Job& j);
  static std::vector<std::uint8_t> encode_record(cluster::JobRecord& rec);
  void flush();
  void replicate(Job& j);
  void answer_waiters(Job& j, bool ok, cluster::Err code, const std::string& error);
  void reply(NodeId to, cluster::MsgType t, auto& msg);
  void send_after_sync(NodeId to, std::vector<std::uint8_t> bytes);
  std::uint64_t next_token(Job& j);
  cluster::Dispatch make_dispatch(const Job& j, std::size_t i) const;
  std::optional<std::string> validate(const cluster::JobSpec& s) const;
  cluster::SubmitAck reject(std::uint64_t req, cluster::Err code, std::string error);
  bool quorum_acked(const Job& j, std::uint64_t version) const;
  std::size_t quorum() const { return cfg_.managers.size() / 2 + 1; }
  void circuit_error(NodeId worker);
  bool eligible(NodeId w, const WorkerInfo& info) const;
  std::uint32_t free_cores(NodeId w, const WorkerInfo& info) const;
  void expire();
  void forget(const std::string& id);
  void compact_index();  // rewrites the "jobs" index log with the live jobs (Disk::replace_log)
  void load_from_disk();
  void persist_now(Job& j);
  cluster::JobView view(const Job& j) const;
  std::uint64_t elapsed_ms(const Job& j) const;
  Job* find(const std::string& id);

  ManagerConfig cfg_;
  Hooks hooks_;
  node::Context* ctx_ = nullptr;
  NodeId self_ = 0;
  std::map<std::string, Job> jobs_;
  std::map<std::string, IdemEntry> idem_;
  std::deque<std::pair<Instant, std::string>> idem_expiry_;  // (expires, key), in insertion order per TTL
  std::deque<std::pair<Instant, std::string>> cleanup_;      // (when, job id)
  std::map<NodeId, WorkerInfo> workers_;
  std::set<std::string> dirty_;
  std::size_t forgotten_since_compact_ = 0;
  std::map<std::uint64_t, SyncBatch> syncs_;  // sync tag -> batch waiting to be durable
  SyncBatch open_batch_;
  std::uint64_t next_sync_ = 1;
  node::TimerId tick_timer_ = 0;
  Instant seen_now_{0};  // time of the latest event (observers read it between events)
  std::deque<Attempt> attempts_;
  ManagerStats stats_;
};

}  // namespace hs::manager
