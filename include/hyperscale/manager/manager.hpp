// The manager role of one datacenter, as a sans-IO state machine (a component on channel kRole of
// the node's Mux, next to its RaftNode on kRaft). Job state lives in a JobLedger replicated by Raft
// (cluster/ledger.hpp): the manager proposes entries and acts only on applied ones. The Raft leader,
// once ready (its term's barrier applied), leads every job: it takes submissions and cancels and
// answers them after their entry commits, dispatches workflows onto worker cores with fence tokens
// that carry its term (only after the dispatch entry commits), follows progress and results,
// re-dispatches work lost with a worker (dead to SWIM, silent to this manager, restarted or stuck),
// enforces timeouts and forgets every finished job after its retention. Followers answer status
// from their applied ledger and redirect the rest. See docs/cluster.md.
//
// Leader-side soft state (what workers reported, backoffs, stop deadlines) is rebuilt from the
// ledger and the workers' heartbeats when a manager becomes the ready leader, and dropped when it
// stops being it. Every table is bounded (ManagerConfig), and table_sizes() reports each one.
// Background work runs on named timers, one per concern (schedule, liveness, deadlines, retention,
// windows, gates), each with an error hook that logs and counts a failed pass.
//
// Gates (docs/cluster.md "Gates"): with ManagerConfig::gates set, every manager heartbeats every gate
// (DcHeartbeat), and the leader serves the gates like clients: a gate's submit and cancel carry its
// fence for the job (kept in the ledger, LedgerJob::gate_fence; status shows it as JobView::fence),
// JobFence raises it after a gate takeover, and a gate's cancel or JobFence with a lower fence is
// refused (Err::fence). A gate's cancel of a job this datacenter never accepted leaves a tombstone,
// so the submit arriving later is refused.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hyperscale/cluster/ledger.hpp"
#include "hyperscale/cluster/intake.hpp"
#include "hyperscale/cluster/messages.hpp"
#include "hyperscale/cluster/raft.hpp"
#include "hyperscale/manager/windows.hpp"
#include "hyperscale/node/node.hpp"

namespace hs::manager {

using cluster::NodeId;

struct ManagerConfig {
  std::vector<NodeId> managers;                    // configured managers of the DC, self included
  Duration tick = std::chrono::milliseconds(100);  // scheduling and liveness pass interval
  // A job accepted or a part ended runs a schedule pass early, but not sooner than this after the
  // last one (a pass walks every active job).
  Duration schedule_gap = std::chrono::milliseconds(10);
  Duration worker_stale = std::chrono::seconds(3);          // no heartbeat this long: not used for dispatch
  Duration dispatch_ack_timeout = std::chrono::seconds(1);  // re-send an unacknowledged dispatch after this
  // Per-execution liveness, independent of SWIM: a live workflow whose worker has not heartbeated to
  // the leader for this long is lost and re-dispatched (workers stop unconfirmed work sooner:
  // WorkerConfig::orphan_grace).
  Duration exec_timeout = std::chrono::seconds(12);
  Duration cancel_timeout = std::chrono::seconds(5);          // stop confirmations awaited this long
  Duration requeue_backoff = std::chrono::milliseconds(200);  // after a refused dispatch (doubles, capped)
  Duration requeue_backoff_max = std::chrono::seconds(5);
  Duration checkpoint_every = std::chrono::seconds(5);  // elapsed time and live totals into the ledger
  // The parts of a workflow split over several workers start together this long after the split is
  // proposed (wall clock, announced in every part's dispatch: docs/cluster.md "Parts").
  Duration part_start_delay = std::chrono::milliseconds(500);
  Duration retention_ok = std::chrono::seconds(300);       // completed jobs kept this long
  Duration retention_failed = std::chrono::seconds(3600);  // failed, cancelled, timed-out jobs
  Duration idem_rejected_ttl = std::chrono::seconds(60);   // a rejected submission is remembered this long
  std::size_t max_rejections = 100'000;                    // remembered rejections (oldest evicted)
  std::size_t max_jobs = 10'000;                           // ledger records (active + retained); over it: overloaded
  std::size_t max_active_jobs = 1'000;                     // non-terminal jobs
  std::size_t max_workflows_per_job = 1'000;
  std::size_t max_workers = 10'000;
  std::size_t max_plan_bytes = 1 << 20;    // per workflow; a whole job must also fit one Raft message
  std::size_t max_waiters = 10'000;        // clients waiting for an entry to commit (over it: overloaded)
  std::uint32_t max_retry_budget = 50;     // clamp of JobSpec::retry_budget
  std::uint32_t max_workflow_retries = 5;  // clamp of JobSpec::workflow_retries
  std::uint32_t circuit_errors = 3;        // dispatch errors within circuit_window open a worker's circuit
  Duration circuit_window = std::chrono::seconds(30);
  Duration circuit_half_open = std::chrono::seconds(10);
  std::uint32_t retry_after_ms = 1000;  // suggested to throttled clients
  // Live windows (docs/windows.md): their length, announced in every dispatch (0: parts send none);
  // the host's merger factory (empty: batches are acknowledged and counted as unused, nothing is
  // merged); at most max_window_workflows workflows keep windows at once (over it the windows of the
  // longest-ended job go first; with none ended, a new workflow gets none, counted).
  Duration window = std::chrono::seconds(1);
  WindowsFactory windows;
  std::size_t max_window_workflows = 1024;
  std::uint32_t max_watch_windows = 120;   // closed windows per workflow in one watch reply
  std::size_t max_watch_bytes = 1u << 20;  // one watch reply's windows (more: `more` is set)
  // Gates (docs/gates.md): this datacenter's name and the gates every manager registers with and
  // heartbeats to (DcHeartbeat) every gate_heartbeat. Empty: no gate tier.
  std::string datacenter;
  std::vector<NodeId> gates;
  Duration gate_heartbeat = std::chrono::milliseconds(500);
  std::size_t max_heartbeat_jobs = 1'000;  // active job ids in one DcHeartbeat (more: jobs_more)
};

// Counters (also exported as metrics by hosts).
struct ManagerStats {
  std::uint64_t submits = 0, accepted = 0, rejected = 0, duplicates = 0, conflicts = 0, redirects = 0, dispatches = 0,
                dispatches_withheld = 0, dispatch_resends = 0, dispatch_refused = 0, capacity_refusals = 0,
                redispatches = 0, results = 0, stale_results = 0, duplicate_results = 0, takeovers = 0, cancels = 0,
                timeouts = 0, stuck = 0, cleaned = 0, decode_errors = 0, unknown_messages = 0, fence_rejects = 0,
                budget_exhausted = 0, circuit_opened = 0, proposals = 0, proposals_failed = 0, rejections_evicted = 0,
                silent_workers = 0, stops_sent = 0, stops_unconfirmed = 0, checkpoints = 0, timer_errors = 0,
                window_batches = 0, windows = 0, windows_refused = 0, windows_unused = 0, window_mergers_evicted = 0,
                window_mergers_refused = 0, window_factory_errors = 0, threshold_aborts = 0, watches = 0,
                gate_heartbeats = 0, gate_refusals = 0, gate_acks_foreign = 0, job_fences = 0, tombstones = 0;
};

// One dispatch attempt, for observers (the attempt log of scenarios.md §2.4).
struct Attempt {
  std::string job_id, workflow;
  NodeId worker = 0;
  std::uint64_t token = 0;
  std::uint32_t part = 0;
};

class Manager final : public node::Node {
 public:
  // `alive` is SWIM's view (alive or suspect); `raft` carries the ledger (register raft() in the
  // node's Mux on kRaft). cfg.max_jobs bounds the ledger.
  Manager(ManagerConfig cfg, cluster::RaftConfig raft, std::function<bool(NodeId)> alive);
  ~Manager() override;
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  void on_start(node::Context& ctx) override;
  void on_message(node::Context& ctx, NodeId from, std::span<const std::uint8_t> msg) override;
  void on_timer(node::Context& ctx, node::TimerId id, std::uint64_t tag) override;

  // From SWIM (wired by the node): a member was declared dead or left.
  void on_member_dead(NodeId node);

  cluster::RaftNode& raft() noexcept { return *raft_; }
  const cluster::RaftNode& raft() const noexcept { return *raft_; }
  const cluster::JobLedger& ledger() const noexcept { return ledger_; }

  // ---- observation ----
  NodeId self() const noexcept { return self_; }
  bool is_leader() const noexcept;  // the ready Raft leader: it leads every job
  const ManagerStats& stats() const noexcept { return stats_; }
  cluster::NodeStatus node_status() const;
  std::optional<cluster::JobView> job(const std::string& id) const;
  // Sizes of every table, by name (ledger jobs, live runs, rejections, workers, waiters, ...).
  std::map<std::string, std::size_t> table_sizes() const;
  // Every dispatch this manager made (bounded ring of the last 10 000).
  const std::deque<Attempt>& attempts() const noexcept { return attempts_; }
  bool leads(const std::string& job_id) const;
  // The live windows of a job as a watch reply would carry them (in-process observers: the local
  // cluster of `hyperscale run`). None unless this manager is the leader and knows the job.
  std::optional<cluster::WatchReply> watch(const std::string& job_id, std::uint64_t from_index,
                                           std::uint32_t max_windows) const;

 private:
  struct Slot {  // one part of one workflow of a job (part 0 also stands for a workflow not yet placed)
    std::size_t wf = 0;
    std::uint32_t part = 0;
  };
  struct Run {                // one part's current attempt, as the leader follows it
    std::uint64_t token = 0;  // the ledger token this run follows (a new token resets the run)
    bool acked = false;       // the worker confirmed it (dispatch ack or heartbeat)
    Instant ack_deadline{0};
    Instant last_progress{0};
    std::uint64_t completed = 0, failed = 0, started = 0;  // the attempt's, as the worker reported them
    Instant retry_at{0};
    Duration backoff{0};
    bool waiting_cores = false;  // ready, but no worker has the cores
    bool stopping = false;
    Instant stop_deadline{0};
    bool proposing = false;  // an entry about this part (or the workflow's split) is in flight
    std::vector<std::pair<NodeId, std::uint32_t>> reserved;  // placement in flight: cores held per worker
    std::uint64_t window_origin_ms = 0;  // a one-part attempt's window origin, fixed when first sent
  };
  struct WfWindows {  // one workflow's live windows (leader soft state)
    std::unique_ptr<WorkflowWindows> merger;
    std::uint64_t origin_ms = 0;
    std::uint32_t window_ms = 0;
    std::uint64_t origin_token = 0;  // the token of the attempt whose batch set the origin
    // Per part: (token, windows its worker dropped for that attempt); earlier attempts' sum.
    std::vector<std::pair<std::uint64_t, std::uint64_t>> dropped;
    std::uint64_t dropped_before = 0;
    bool factory_failed = false;  // logged once; the workflow has no windows
  };
  struct Live {                          // one job, leader side
    std::vector<std::vector<Run>> runs;  // per workflow, per part (one before the workflow is placed)
    std::vector<WfWindows> windows;      // per workflow, sized on the first batch
    Instant started{0};
    std::uint64_t base_elapsed_ms = 0;
    Instant terminal_at{-1};
    Instant next_checkpoint{0};
    std::uint64_t checkpointed = 0;  // sum of the totals at the last checkpoint
    bool proposing = false;          // a job-level entry (cancel, timeout, retire) is in flight
    std::uint64_t token_issued = 0;  // highest token this leader proposed for the job
    std::vector<std::pair<NodeId, std::uint64_t>> cancel_waiters;  // (client, req) of an in-flight cancel
    std::uint32_t cancel_count = 0;
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
  struct Waiters {  // clients of one in-flight accept
    std::uint64_t digest = 0;
    std::string key;
    std::vector<std::pair<NodeId, std::uint64_t>> clients;
  };
  struct GateLink {        // one configured gate, as its last heartbeat ack left it
    bool refused = false;  // the gate answered registered = false
    std::string error;     // its reason (logged when it changes)
  };
  // kScheduleSoon: the one-shot timer of schedule_soon() (not a periodic concern).
  enum Concern : std::uint64_t {
    kSchedule = 1,
    kLiveness,
    kDeadlines,
    kRetention,
    kWindows,
    kGates,
    kConcerns,
    kScheduleSoon = kConcerns
  };

  // messages
  void dispatch_message(NodeId from, cluster::MsgType type, std::span<const std::uint8_t> body);
  void handle_submit(NodeId from, cluster::Submit& m);
  bool answer_known(NodeId from, const cluster::Submit& m, std::uint64_t digest);
  void propose_accept(NodeId from, cluster::Submit& m, std::uint64_t digest);
  void handle_status(NodeId from, const cluster::StatusQuery& m);
  void handle_cancel(NodeId from, const cluster::CancelJob& m);
  void handle_cancel_workflow(NodeId from, const cluster::CancelWorkflow& m);
  void handle_heartbeat(NodeId from, cluster::Heartbeat& m);
  void collect_stops(NodeId from, const cluster::Heartbeat& m, cluster::HeartbeatAck& ack);
  void handle_dispatch_ack(NodeId from, const cluster::DispatchAck& m);
  void handle_progress(NodeId from, const cluster::Progress& m);
  void handle_result(NodeId from, cluster::ResultMsg& m);
  void handle_stop_ack(NodeId from, const cluster::StopAck& m);
  // the gate-facing side (gates.cpp)
  void gates_pass();
  void handle_dc_heartbeat_ack(NodeId from, const cluster::DcHeartbeatAck& m);
  void handle_job_fence(NodeId from, const cluster::JobFence& m);
  void cancel_unknown(NodeId from, const cluster::CancelJob& m);
  // live windows (windows.cpp)
  void handle_window_batch(NodeId from, cluster::WindowBatch& m);
  void handle_watch(NodeId from, const cluster::WatchQuery& m);
  WfWindows* windows_for(const std::string& id, Live& l, std::size_t wf, const cluster::WindowBatch& b);
  bool make_room_for_windows(const std::string& id);
  std::size_t window_mergers() const;
  void windows_pass();
  std::uint64_t window_index(const WfWindows& w) const;
  cluster::WatchReply watch_reply(const cluster::LedgerJob& j, const Live* l, std::uint64_t from_index,
                                  std::uint32_t max_windows) const;

  // leadership and the ledger
  void on_raft_change();
  void adopt();
  Live& live_of(const std::string& id, const cluster::LedgerJob& j);
  void reconcile(const std::string& id);
  using OnApplied = std::function<void(cluster::LedgerOutcome)>;
  using OnFailed = std::function<void(const Status&)>;
  bool propose(cluster::LedgerEntry e, OnApplied applied, OnFailed failed = nullptr);
  void propose_for_run(cluster::LedgerEntry e, OnApplied applied);
  cluster::LedgerEntry entry(cluster::LedgerOp op, const std::string& job_id) const;
  std::vector<cluster::PartProgress> progress_of(const std::string& id) const;
  void lose(const std::string& id, Slot s, const std::string& why, bool exclude, bool uncounted = false,
            std::string note = {});

  // concerns (one timer each)
  void run_concern(Concern c);
  void schedule_pass();
  // A schedule pass soon (in the next loop turn, or schedule_gap after the last pass; once however
  // often it is asked meanwhile): a job was accepted or a part ended, so waiting jobs need not wait
  // for the next tick (a one-core worker otherwise ran one short job per tick).
  void schedule_soon();
  void schedule_job(const std::string& id, const cluster::LedgerJob& j, std::map<NodeId, std::uint32_t>& used);
  std::map<NodeId, std::uint32_t> cores_in_use() const;
  using Placement = std::vector<std::pair<NodeId, std::uint32_t>>;  // (worker, cores), best worker first
  std::vector<std::pair<NodeId, std::uint32_t>> candidates(const std::vector<NodeId>& excluded,
                                                           const std::map<NodeId, std::uint32_t>& used) const;
  Placement place_workflow(const cluster::LedgerJob& j, std::size_t i, std::size_t auto_left,
                           const std::map<NodeId, std::uint32_t>& used) const;
  NodeId place_part(const cluster::LedgerJob& j, Slot s, std::uint32_t& cores,
                    const std::map<NodeId, std::uint32_t>& used) const;
  void propose_split(const std::string& id, std::size_t i, const Placement& where);
  void propose_dispatch(const std::string& id, Slot s, NodeId worker, std::uint32_t cores);
  void sent_dispatch(const std::string& id, Slot s);
  void liveness_pass();
  void check_run(const std::string& id, const cluster::LedgerJob& j, Slot s);
  void deadlines_pass();
  void propose_job_end(const std::string& id, cluster::JobState state, std::string why, std::uint64_t& applied);
  void retention_pass();

  // helpers
  void send_dispatch(const std::string& id, Slot s);
  void send_stop(const std::string& id, Slot s, const char* why);
  template <class M>
  void reply(NodeId to, cluster::MsgType t, M& msg) {
    ctx_->send(to, cluster::encode(t, msg));
  }
  std::optional<std::string> validate(const cluster::JobSpec& s) const;
  cluster::SubmitAck reject(std::uint64_t req, cluster::Err code, std::string error) const;
  void remember_rejection(const std::string& key, std::uint64_t digest, const cluster::SubmitAck& a);
  void circuit_error(NodeId worker);
  bool eligible(NodeId w, const WorkerInfo& info) const;
  std::uint64_t elapsed_ms(const std::string& id) const;
  std::uint64_t next_token(const std::string& id, const cluster::LedgerJob& j);
  cluster::JobView view(const std::string& id, const cluster::LedgerJob& j) const;
  Run* run_of(const std::string& id, Slot s);
  Run* current_run(NodeId from, const std::string& job, const std::string& workflow, std::uint32_t part,
                   std::uint64_t token, Slot& slot);
  static std::optional<std::size_t> wf_index(const cluster::LedgerJob& j, const std::string& name);
  static std::vector<Slot> live_parts(const cluster::LedgerJob& j);  // parts dispatched or running

  ManagerConfig cfg_;
  std::function<bool(NodeId)> alive_;
  cluster::JobLedger ledger_;
  std::unique_ptr<cluster::RaftNode> raft_;
  std::shared_ptr<bool> token_ = std::make_shared<bool>(true);  // proposals' callbacks check it is alive
  node::Context* ctx_ = nullptr;
  NodeId self_ = 0;
  bool leading_ = false;  // ready leader as of the last on_raft_change
  bool schedule_soon_armed_ = false;
  Instant last_schedule_{-1};  // the last schedule pass (schedule_gap)
  Instant leading_since_{0};
  std::map<std::string, Live> live_;        // leader only; one per ledger job
  std::map<std::string, Waiters> accepts_;  // submissions whose accept entry is in flight
  cluster::RejectionCache rejections_{cfg_.max_rejections, cfg_.idem_rejected_ttl};  // by idempotency key
  std::map<NodeId, WorkerInfo> workers_;
  std::size_t waiters_ = 0;  // clients waiting on in-flight entries (bounded by max_waiters)
  Instant seen_now_{0};      // time of the latest event (observers read it between events)
  std::deque<Attempt> attempts_;
  std::map<NodeId, GateLink> gates_;  // one per configured gate (cfg_.gates), never more
  ManagerStats stats_;
};

}  // namespace hs::manager
