// The worker role, as a sans-IO state machine (a component on channel kRole of the node's Mux).
// A worker offers `cores` to the managers of its datacenter: it heartbeats its capacity and live
// executions to every configured manager, accepts dispatches whose fence token is higher than any it
// has seen for that workflow, runs them through an Executor, streams progress to the job's leader,
// delivers each result until it is acknowledged, stops work on request (forcing the cores free after
// a grace if the execution ignores the stop), and cancels work whose job leader died and was not
// replaced within the orphan grace.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <utility>

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
  Duration orphan_grace = std::chrono::seconds(15);    // job leader dead and no takeover: cancel after this
  Duration stop_grace = std::chrono::seconds(5);       // a stop not honoured by then: cores forced free
  Duration hw_retention = std::chrono::seconds(3600);  // fence high-water marks kept this long
  std::size_t max_hw = 100'000;
  std::size_t max_log = 100'000;
};

struct WorkerStats {
  std::uint64_t dispatches = 0, accepted = 0, duplicates = 0, fence_rejects = 0, capacity_rejects = 0, started = 0,
                start_errors = 0, completed = 0, failed = 0, cancelled = 0, force_stops = 0, orphaned = 0,
                transfers = 0, results_sent = 0, results_dropped = 0, decode_errors = 0, unknown_messages = 0,
                hw_evicted = 0, disk_errors = 0;
};

// The execution log of scenarios.md §2.4 (bounded).
struct ExecEvent {
  enum Kind : std::uint8_t { received, started, completed, failed, cancelled, rejected } kind;
  std::string job_id, workflow;
  std::uint64_t token = 0;
  Instant at{0};
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
  // From SWIM: a member died (if it led jobs here, their executions become orphans).
  void on_member_dead(NodeId node);
  void set_health(cluster::Health h) { health_ = h; }
  // Fault injection for tests (DSP-05): refuse the next n dispatches as if the worker were failing.
  int fail_next_dispatches = 0;

  // ---- observation ----
  const WorkerStats& stats() const noexcept { return stats_; }
  std::uint32_t total_cores() const noexcept { return cfg_.cores; }
  std::uint32_t used_cores() const noexcept { return used_; }
  std::vector<cluster::ExecReport> live() const;  // executions holding cores
  const std::deque<ExecEvent>& log() const noexcept { return log_; }
  std::map<std::string, std::size_t> table_sizes() const;

 private:
  struct Exec {
    std::string job_id, workflow;
    std::uint64_t token = 0;
    std::uint32_t cores = 0;
    NodeId leader = 0;
    std::uint64_t id = 0;
    std::uint64_t completed = 0, failed = 0;
    bool done = false;  // finished (or forced): cores are free, the result waits for its ack
    bool stopping = false;
    Instant stop_deadline{0};
    Instant orphan_deadline{-1};
    cluster::ResultMsg result;
    Instant resend_at{0};
  };
  using Key = std::pair<std::string, std::string>;
  struct Mark {
    std::uint64_t token = 0;
    Instant at{0};
  };
  enum Tag : std::uint64_t { kTick = 1, kAck = 2 };

  void tick();
  void handle_dispatch(NodeId from, cluster::Dispatch& d);
  void stop(Exec& e, const char* why);
  void finish(Exec& e, ExecResult r);
  void send_result(Exec& e);
  void record(ExecEvent::Kind k, const std::string& job, const std::string& wf, std::uint64_t token);
  void set_mark(const Key& k, std::uint64_t token);
  void compact_marks();  // rewrites the "fence" log with the live marks (Disk::replace_log)
  void load_marks();
  void send(NodeId to, cluster::MsgType t, auto& msg);

  WorkerConfig cfg_;
  Executor& exec_;
  node::Context* ctx_ = nullptr;
  std::uint64_t boot_ = 0;
  cluster::Health health_ = cluster::Health::healthy;
  std::map<Key, Exec> execs_;
  std::map<std::uint64_t, Key> by_id_;
  std::map<Key, Mark> marks_;  // fence high-water per (job, workflow)
  std::size_t mark_log_records_ = 0;
  std::map<std::uint64_t, std::vector<std::pair<NodeId, std::vector<std::uint8_t>>>> acks_;  // sent once durable
  std::uint64_t next_ack_ = 1;
  std::uint64_t next_exec_ = 1;
  std::uint32_t used_ = 0;
  Instant next_heartbeat_{0}, next_progress_{0};
  std::deque<ExecEvent> log_;
  WorkerStats stats_;
};

}  // namespace hs::worker
