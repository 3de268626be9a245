// The worker role, as a sans-IO state machine (a component on channel kRole of the node's Mux).
// A worker offers `cores` to the managers of its datacenter: it heartbeats its capacity and live
// executions to every configured manager, accepts dispatches whose fence token is higher than any it
// has seen for that part of a workflow, runs them through an Executor, streams progress and delivers each
// result (until it is acknowledged) to the manager that leads the highest Raft term it has heard,
// stops work on request (forcing the cores free after a grace if the execution ignores the stop),
// and stops work that no leader has confirmed for the orphan grace.
//
// Term fencing: the worker keeps the highest manager term it has heard (HeartbeatAck, Dispatch,
// StopExec) and the leader of that term. A dispatch or stop from a lower term comes from a deposed
// leader and is refused; a heartbeat reply's stop list is obeyed only from the leader of a term at
// least as high. docs/cluster.md "Workers" has the rules.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "hyperscale/cluster/messages.hpp"
#include "hyperscale/node/node.hpp"
#include "hyperscale/worker/executor.hpp"

namespace hs::worker {

using cluster::NodeId;

struct WorkerConfig {
  std::vector<NodeId> managers;  // every manager of the datacenter (heartbeats go to all)
  std::uint32_t cores = 1;
  Duration tick = std::chrono::milliseconds(100);
  Duration heartbeat = std::chrono::seconds(1);
  Duration progress = std::chrono::seconds(1);
  Duration result_retry = std::chrono::seconds(1);
  // A live execution that no leader confirmed (a HeartbeatAck from the leader of the highest term,
  // not naming it in its stop list) for this long is stopped. Shorter than the managers' re-dispatch
  // delay for a silent worker (12 s), so the old copy stops before a new one starts elsewhere.
  Duration orphan_grace = std::chrono::seconds(8);
  Duration stop_grace = std::chrono::seconds(5);       // a stop not honoured by then: cores forced free
  Duration result_keep = std::chrono::minutes(10);     // an unacknowledged result is dropped after this
  Duration hw_retention = std::chrono::seconds(3600);  // fence high-water marks kept this long
  std::size_t max_hw = 100'000;
  std::size_t max_log = 100'000;
  std::size_t max_results = 10'000;  // finished executions waiting for their result ack (oldest dropped)
  // Live windows (docs/windows.md): an execution's windows wait here until the leader acknowledges
  // them; while a batch is unacknowledged the next ones queue and go together (a slow leader gets
  // fewer, larger batches). Over max_windows_queued the oldest is dropped (counted, and the count
  // travels in every batch). A batch unacknowledged for window_retry is sent again.
  std::size_t max_windows_queued = 600;  // > max_windows_per_batch
  std::size_t max_windows_per_batch = 256;
  std::size_t max_window_batch_bytes = 2u << 20;
  Duration window_retry = std::chrono::seconds(1);
  // An execution's result waits for its windows' ack (so the leader has them all when it takes the
  // result), at most this long after the execution ended; then they are dropped (counted).
  Duration window_keep = std::chrono::seconds(10);
};

struct WorkerStats {
  std::uint64_t dispatches = 0, accepted = 0, duplicates = 0, fence_rejects = 0, deposed_rejects = 0,
                capacity_rejects = 0, started = 0, start_errors = 0, completed = 0, failed = 0, cancelled = 0,
                force_stops = 0, orphaned = 0, leader_changes = 0, ignored_stop_lists = 0, results_sent = 0,
                results_dropped = 0, decode_errors = 0, unknown_messages = 0, hw_evicted = 0, disk_errors = 0,
                sync_failures = 0, windows_queued = 0, window_batches = 0, windows_acked = 0, windows_dropped = 0;
};

// The execution log of scenarios.md §2.4 (bounded).
struct ExecEvent {
  enum Kind : std::uint8_t { received, started, completed, failed, cancelled, rejected } kind;
  std::string job_id, workflow;
  std::uint64_t token = 0;
  Instant at{0};
  std::uint32_t part = 0;
};

// What a worker keys an execution and its fence mark by: one part of one workflow of one job.
struct ExecKey {
  std::string job, workflow;
  std::uint32_t part = 0;
  auto operator<=>(const ExecKey&) const = default;
};

class Worker final : public node::Node {
 public:
  Worker(WorkerConfig cfg, Executor& exec);
  ~Worker() override;

  void on_start(node::Context& ctx) override;
  void on_message(node::Context& ctx, NodeId from, std::span<const std::uint8_t> msg) override;
  void on_timer(node::Context& ctx, node::TimerId id, std::uint64_t tag) override;

  // From the host's executor (during an event of this node; see cluster::Mux::run).
  void on_exec_progress(std::uint64_t exec, const ExecProgress& p);
  void on_exec_done(std::uint64_t exec, ExecResult r);
  // From SWIM: a member died. A result last sent to it is re-sent at once to the current leader (to
  // every manager if the dead member was the leader). Liveness of executions does not depend on it.
  void on_member_dead(NodeId node);
  void set_health(cluster::Health h) { health_ = h; }
  // Fault injection for tests (DSP-05): refuse the next n dispatches as if the worker were failing.
  int fail_next_dispatches = 0;
  // Fault injection for tests (issue 21, R6): refuse the next n dispatches for capacity, as if
  // another dispatch had just taken the free cores (a lost race).
  int refuse_capacity_next = 0;

  // ---- observation ----
  const WorkerStats& stats() const noexcept { return stats_; }
  std::uint32_t total_cores() const noexcept { return cfg_.cores; }
  std::uint32_t used_cores() const noexcept { return used_; }
  std::uint32_t free_cores() const noexcept { return cfg_.cores - used_; }
  std::uint64_t leader_term() const noexcept { return leader_term_; }
  NodeId leader() const noexcept { return leader_; }  // 0: not known at leader_term()
  std::vector<cluster::ExecReport> live() const;      // executions holding cores
  const std::deque<ExecEvent>& log() const noexcept { return log_; }
  std::map<std::string, std::size_t> table_sizes() const;
  std::size_t queued_windows() const;  // windows of every execution waiting for the leader's ack

 private:
  struct Exec {
    std::string job_id, workflow;
    std::uint32_t part = 0;
    std::uint64_t token = 0;
    std::uint32_t cores = 0;
    NodeId dispatched_by = 0;  // the dispatch's sender (observation and logs only)
    std::uint64_t id = 0;
    std::uint64_t completed = 0, failed = 0, started = 0;
    std::uint64_t ack_seq = 0;  // the sync barrier its dispatch ack waits for (0: acked)
    bool done = false;          // finished (or forced): cores are free, the result waits for its ack
    bool stopping = false;
    Instant stop_deadline{0};
    Instant confirmed_at{0};  // last confirmation by a leader (start counts as one)
    Instant done_at{0};
    cluster::ResultMsg result;
    NodeId result_to = 0;  // where the result was last sent (0: every manager)
    Instant resend_at{0};
    // Live windows: queued with their sequence numbers (ascending), the last sequence number of the
    // batch in flight (0: none) and when it is sent again.
    std::uint32_t window_ms = 0;
    std::uint64_t window_origin_ms = 0;
    std::deque<std::pair<std::uint64_t, std::vector<std::uint8_t>>> windows;
    std::uint64_t window_next_seq = 1;
    std::uint64_t window_inflight_through = 0;
    Instant window_resend_at{0};
    std::uint64_t windows_dropped = 0;
  };
  using Key = ExecKey;
  struct Mark {
    std::uint64_t token = 0;
    Instant at{0};
  };
  struct PendingAck {
    NodeId to = 0;
    cluster::DispatchAck ack;
  };
  enum Tag : std::uint64_t { kTick = 1, kAck = 2 };

  void tick();
  void heartbeat();
  void send_progress();
  void check_exec(Exec& e, Instant now);
  bool expire_result(const Exec& e, Instant now);
  void on_sync(std::uint64_t seq, bool failed);
  void unwind_unsynced(PendingAck& p);
  void handle_heartbeat_ack(NodeId from, const cluster::HeartbeatAck& a);
  void handle_stop(NodeId from, const cluster::StopExec& s);
  void handle_result_ack(const cluster::ResultAck& a);
  void handle_window_ack(const cluster::WindowAck& a);
  void send_windows(Exec& e);
  bool windows_before_result(Exec& e);
  void handle_dispatch(NodeId from, cluster::Dispatch& d);
  bool refuse_deposed(NodeId from, const cluster::Dispatch& d, cluster::DispatchAck& ack);
  bool refuse_duplicate(NodeId from, const cluster::Dispatch& d, cluster::DispatchAck& ack);
  bool refuse_fence(NodeId from, const cluster::Dispatch& d, cluster::DispatchAck& ack);
  bool refuse_resources(NodeId from, const cluster::Dispatch& d, cluster::DispatchAck& ack);
  void refuse(NodeId from, const cluster::Dispatch& d, cluster::DispatchAck& ack, cluster::Err code, std::string error);
  void supersede(const Key& k);
  void start_exec(NodeId from, cluster::Dispatch& d, cluster::DispatchAck& ack);
  // Term and leader bookkeeping: `term` heard from `from`, which names `leader` (0: unknown) as the
  // leader of that term. Raises leader_term_ and moves leader_ (re-sending pending results).
  void learn(std::uint64_t term, NodeId leader);
  void set_leader(NodeId leader);
  void stop(Exec& e, const char* why);
  void finish(Exec& e, ExecResult r);
  void bound_results(const Exec& keep);
  void send_result(Exec& e);
  void send_to_leader(cluster::MsgType t, auto& msg);
  void record(ExecEvent::Kind k, const ExecKey& key, std::uint64_t token);
  Status set_mark(const Key& k, std::uint64_t token);
  void compact_marks();  // rewrites the "fence" log with the live marks (Disk::replace_log)
  void load_marks();
  void send(NodeId to, cluster::MsgType t, auto& msg);
  void release_cores(std::uint32_t n);  // HS_ASSERT: never below zero

  WorkerConfig cfg_;
  Executor& exec_;
  node::Context* ctx_ = nullptr;
  std::uint64_t boot_ = 0;
  cluster::Health health_ = cluster::Health::healthy;
  std::uint64_t leader_term_ = 0;  // highest manager term heard
  NodeId leader_ = 0;              // the leader of leader_term_ (0: not known)
  std::map<Key, Exec> execs_;
  std::map<std::uint64_t, Key> by_id_;
  std::map<Key, Mark> marks_;  // fence high-water per (job, workflow, part)
  std::size_t mark_log_records_ = 0;
  std::map<std::uint64_t, std::vector<PendingAck>> acks_;  // dispatch acks, sent once the fence mark is durable
  std::uint64_t next_ack_ = 1;
  std::uint64_t next_exec_ = 1;
  std::uint32_t used_ = 0;
  Instant next_heartbeat_{0}, next_progress_{0};
  std::deque<ExecEvent> log_;
  WorkerStats stats_;
};

}  // namespace hs::worker
