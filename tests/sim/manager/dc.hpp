// One simulated datacenter for the scenario tests: managers (SWIM + Raft + manager role),
// workers (SWIM + worker role + synthetic executor) and a client, on the deterministic simulator.
// Every event is followed by the invariant checks of scenarios.md §4 that can be judged at any
// instant; end_checks() judges the ones that need the whole run.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "hyperscale/cluster/raft.hpp"
#include "hyperscale/cluster/messages.hpp"
#include "hyperscale/cluster/mux.hpp"
#include "hyperscale/manager/manager.hpp"
#include "hyperscale/sim/simulator.hpp"
#include "hyperscale/swim/swim.hpp"
#include "support/sim_executor.hpp"
#include "hyperscale/worker/worker.hpp"

namespace hs::simdc {

using cluster::NodeId;
using namespace std::chrono_literals;

inline constexpr NodeId kClient = 100;  // the client's node id (a gate's, when managers list it in gates)

struct DcOptions {
  std::uint64_t seed = 1;
  int managers = 3;
  int workers = 2;
  std::uint32_t cores = 1;
  std::vector<std::uint32_t> worker_cores;  // cores of the first workers, in order (the others: cores)
  bool check_each_event = true;
  sim::NetworkOptions net;
  std::function<void(manager::ManagerConfig&)> tune_manager;
  std::function<void(worker::WorkerConfig&)> tune_worker;
  std::function<void(cluster::RaftConfig&)> tune_raft;
  std::function<void(NodeId observer, const swim::MemberEvent&)> on_swim;  // set by Dc
};

// A client: requests are queued from test scripts and sent on the client's next tick (10 ms).
class SimClient final : public node::Node {
 public:
  struct Reply {
    bool done = false;
    cluster::SubmitAck submit;
    cluster::StatusReply status;
    cluster::CancelReply cancel;
    cluster::NodeStatus node;
    cluster::JobFenceAck fence;
    cluster::WatchReply watch;
    Instant at{0};
  };
  std::uint64_t submit(NodeId to, cluster::JobSpec spec);
  std::uint64_t status(NodeId to, const std::string& job);
  std::uint64_t cancel(NodeId to, const std::string& job, std::uint64_t fence = 0);
  std::uint64_t cancel_workflow(NodeId to, const std::string& job, const std::string& wf);
  std::uint64_t node_query(NodeId to);
  std::uint64_t watch(NodeId to, const std::string& job, std::uint64_t from_index = 0, std::uint32_t max = 0);
  // As a gate would (docs/cluster.md "Gates"): a submit and a cancel carrying the gate's fence for
  // the job, and a JobFence.
  std::uint64_t gate_submit(NodeId to, cluster::JobSpec spec, std::uint64_t gate_fence);
  std::uint64_t gate_cancel(NodeId to, const std::string& job, std::uint64_t gate_fence);
  std::uint64_t job_fence(NodeId to, const std::string& job, std::uint64_t gate_fence);
  // DcHeartbeats received (when the managers list this client in ManagerConfig::gates): the last
  // one per manager and how many in all; each is answered with a DcHeartbeatAck, registered unless
  // refuse_heartbeats is set (its text is the refusal's error).
  std::map<NodeId, cluster::DcHeartbeat> heartbeats;
  std::map<NodeId, Instant> heartbeat_at;
  std::size_t heartbeats_received = 0;
  std::optional<std::string> refuse_heartbeats;
  const Reply* reply(std::uint64_t req) const;
  // Drop the next n submit acks that arrive (the ack was lost on the way back).
  int drop_submit_acks = 0;
  // Every submit ack received, in order (for the one-job-per-key invariant).
  std::vector<std::pair<std::string, cluster::SubmitAck>> acks;  // (idempotency key, ack)
  std::vector<Instant> ack_times;                                // parallel to acks
  std::map<std::uint64_t, std::string> req_key;
  std::map<std::uint64_t, std::string> req_cancel;  // cancel request -> job
  std::map<std::string, Instant> cancel_acks;       // job -> first successful cancel reply

  void on_start(node::Context& ctx) override;
  void on_message(node::Context& ctx, NodeId from, std::span<const std::uint8_t> msg) override;
  void on_timer(node::Context& ctx, node::TimerId id, std::uint64_t tag) override;

 private:
  std::uint64_t next_ = 1;
  std::deque<std::pair<NodeId, std::vector<std::uint8_t>>> out_;
  std::map<std::uint64_t, Reply> replies_;
};

struct ManagerNode final : public node::Node {
  ManagerNode(const DcOptions& o, NodeId self, const std::vector<NodeId>& managers, const std::vector<NodeId>& all);
  swim::Swim swim;
  manager::Manager mgr;  // owns the ledger and its RaftNode (mgr.raft(), on kRaft)
  cluster::Mux mux;
  bool alive(NodeId n) const;
  void on_start(node::Context& ctx) override { mux.on_start(ctx); }
  void on_message(node::Context& ctx, NodeId f, std::span<const std::uint8_t> m) override { mux.on_message(ctx, f, m); }
  void on_timer(node::Context& ctx, node::TimerId id, std::uint64_t tag) override { mux.on_timer(ctx, id, tag); }
  NodeId self;
};

struct WorkerNode final : public node::Node {
  WorkerNode(const DcOptions& o, NodeId self, const std::vector<NodeId>& managers, const std::vector<NodeId>& all);
  swim::Swim swim;
  worker::SimExecutor exec;
  worker::Worker wrk;
  cluster::Mux mux;
  void on_start(node::Context& ctx) override;
  void on_message(node::Context& ctx, NodeId f, std::span<const std::uint8_t> m) override { mux.on_message(ctx, f, m); }
  void on_timer(node::Context& ctx, node::TimerId id, std::uint64_t tag) override { mux.on_timer(ctx, id, tag); }
};

class Dc {
 public:
  explicit Dc(DcOptions o);
  sim::Simulator& sim() { return *sim_; }
  const std::vector<NodeId>& managers() const { return managers_; }
  const std::vector<NodeId>& workers() const { return workers_; }
  NodeId client_id() const { return client_; }
  SimClient& client();
  ManagerNode* mgr(NodeId id);
  WorkerNode* wrk(NodeId id);
  // The manager that currently claims leadership (nullopt if none or several).
  std::optional<NodeId> leader();
  // Runs until pred holds (checked every 50 ms) or `limit` passes. Fails the run on an invariant
  // violation (status() then holds it).
  bool run_until(const std::function<bool()>& pred, Duration limit);
  void run_for(Duration d);
  Status status() const { return failure_; }
  // Submits through the client to the current leader and waits for the ack (following redirects).
  std::optional<cluster::SubmitAck> submit_and_wait(cluster::JobSpec spec, Duration limit = 10s);
  std::optional<cluster::JobView> job_view(const std::string& job);  // from the job's leading manager
  std::optional<cluster::JobState> final_state(const std::string& job, Duration limit);
  // Workers crash themselves when a "crash" workload reaches half-way (W-crash); restart them after.
  Duration crash_restart_after = 500ms;
  // Checks run at the end of a scenario (scenarios.md §4: 1, 2, 3, 4, 9, 10).
  Status end_checks();
  // Jobs whose cancel was acknowledged with success.
  std::set<std::string> cancel_acked;
  std::size_t leader_changes = 0;
  // Every SWIM state change seen by any node: (observer, event).
  std::vector<std::pair<NodeId, swim::MemberEvent>> swim_events;
  // Adds and starts a worker with a new identity (membership churn).
  NodeId add_worker();
  // Acknowledgements (accepted submits, successful cancels) checked against what a quorum of
  // managers held durably when they were sent (WAL-03, after every event).
  std::size_t acks_checked = 0;

 private:
  Status check_now();
  Status check_ledger(NodeId m);
  Status check_stored();
  void observe_reply(NodeId from, NodeId to, const node::Bytes& msg);
  void add_worker_node(NodeId id);
  DcOptions o_;
  std::unique_ptr<sim::Simulator> sim_;
  std::vector<NodeId> managers_, workers_, all_;
  NodeId client_ = 0;
  Status failure_;
  std::map<std::uint64_t, NodeId> term_leader_;
  std::optional<NodeId> last_leader_;
  std::map<NodeId, std::uint64_t> applied_seen_;                             // manager -> last applied index seen
  std::map<std::pair<NodeId, std::string>, cluster::JobState> terminal_on_;  // (manager, job) seen terminal
  std::set<std::tuple<std::string, std::string, std::uint64_t>> committed_;  // (job, workflow, token) in a ledger
  struct Ack {
    NodeId by = 0;
    std::string job;
    bool cancel = false;  // a successful cancel (else an accepted submit)
  };
  std::vector<Ack> acks_sent_;  // sent during the current event, checked at its end
  std::string storage_name_;    // the managers' Raft storage log
};

cluster::JobSpec job(const std::string& id, std::vector<cluster::WorkflowSpec> wfs);
cluster::WorkflowSpec wf(const std::string& name, const std::string& plan, std::uint32_t vus = 1,
                         std::uint32_t cores = 1, std::vector<std::string> deps = {});

}  // namespace hs::simdc
