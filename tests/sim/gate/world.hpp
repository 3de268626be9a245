// A simulated world for the gate-tier scenario tests: G gates (gate role + its Raft on a Mux), D
// datacenters each with M managers (SWIM + Raft + manager role, heartbeating every gate) and W
// workers (SWIM + worker role + synthetic executor), and one client, on one deterministic simulator.
// The datacenter pieces are the single-datacenter harness's (tests/sim/manager/dc.hpp).
//
// After every event the instant invariants of scenarios.md §4 that concern the gate tier are
// checked (one ready gate leader per term; a gate job's terminal state never changes and every gate
// holding it agrees; an acknowledged cancel never ends completed; one job per idempotency key over
// every submit ack; totals shown to the client by gate leaders never go down, and final totals are
// at least anything a gate showed; HS_GATE_STRICT=1 holds followers' answers to it too: they answer
// from the owner's last checkpoint and may lag); end_checks() judges the rest (every
// acknowledged job terminal on every live gate; every worker idle). Ownership: at any fence a job
// has one owner over every gate's ledger, and a gate's fence of a job never goes down.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "../manager/dc.hpp"
#include "hyperscale/gate/gate.hpp"

namespace hs::simgate {

using cluster::NodeId;
using simdc::job;
using simdc::wf;
using namespace std::chrono_literals;

// Gate timings scaled down for the tests (virtual time; see test_gate_config()).
gate::GateConfig test_gate_config();

struct WorldOptions {
  std::uint64_t seed = 1;
  int gates = 3;
  int dcs = 2;
  int managers = 3;  // per datacenter
  int workers = 2;   // per datacenter
  std::uint32_t cores = 1;
  bool check_each_event = true;
  sim::NetworkOptions net;
  std::function<void(gate::GateConfig&)> tune_gate;  // after test_gate_config()
  std::function<void(manager::ManagerConfig&)> tune_manager;
  std::function<void(worker::WorkerConfig&)> tune_worker;
  // The workload a worker of datacenter `dc` runs for a spec ("" : the spec's own plan), e.g. one
  // datacenter hangs (W-hang) where the others finish.
  std::function<std::string(std::size_t dc, const worker::ExecSpec&)> plan_in_dc;
};

struct GateNode final : public node::Node {
  GateNode(gate::GateConfig cfg, cluster::RaftConfig raft);
  swim::Swim swim;  // among the gates only (kSwim); its view feeds the gate (set_member_view)
  gate::Gate gate;  // owns its RaftNode (gate.raft(), on kRaft)
  cluster::Mux mux;
  // Graceful stop (GTE-05): while requested, Gate::hand_off() is called inside this node's events
  // (at most every 200 ms) until it returns true; handed_off then reads true.
  bool hand_off_requested = false;
  bool handed_off = false;
  // Raw messages (channel byte first) this node sends at its next event: a test speaking as it.
  std::vector<std::pair<NodeId, node::Bytes>> outbox;
  void on_start(node::Context& ctx) override { mux.on_start(ctx); }
  void on_message(node::Context& ctx, NodeId f, std::span<const std::uint8_t> m) override {
    mux.on_message(ctx, f, m);
    after_event(ctx);
  }
  void on_timer(node::Context& ctx, node::TimerId id, std::uint64_t tag) override {
    mux.on_timer(ctx, id, tag);
    after_event(ctx);
  }

 private:
  void after_event(node::Context& ctx);
  Instant last_hand_off_{-1};
};

// A submission through the gates: the last ack and how many not_leader redirects were followed.
struct SubmitResult {
  std::optional<cluster::SubmitAck> ack;
  int redirects = 0;
  int attempts = 0;
};

class World {
 public:
  explicit World(WorldOptions o);
  sim::Simulator& sim() { return *sim_; }
  const std::vector<NodeId>& gates() const { return gates_; }
  std::size_t dc_count() const { return dcs_.size(); }
  const std::string& dc_name(std::size_t d) const { return dcs_.at(d).name; }
  std::size_t dc_index(const std::string& name) const;
  const std::vector<NodeId>& managers(std::size_t d) const { return dcs_.at(d).managers; }
  const std::vector<NodeId>& workers(std::size_t d) const { return dcs_.at(d).workers; }
  std::vector<NodeId> dc_nodes(std::size_t d) const;  // managers and workers
  NodeId client_id() const { return client_; }
  simdc::SimClient& client();
  GateNode* gate(NodeId id);  // nullptr when down
  simdc::ManagerNode* mgr(NodeId id);
  simdc::WorkerNode* wrk(NodeId id);
  bool up(NodeId id) const { return sim_->is_up(id); }

  // The ready gate leader (nullopt if none, or several claim it).
  std::optional<NodeId> gate_leader();
  std::optional<NodeId> dc_leader(std::size_t d);
  // Every live gate sees every datacenter ready and healthy, a gate leads, every DC has a leader.
  bool ready();
  // Runs until ready() (or fails the test run's status).
  bool boot(Duration limit = 40s);

  // Runs until pred holds (checked every 50 ms) or `limit` passes; false on an invariant violation
  // too (status() then holds it).
  bool run_until(const std::function<bool()>& pred, Duration limit);
  void run_for(Duration d);
  Status status() const { return failure_; }

  // Submits through the client to `first` (0: the gate leader, else the first live gate) and waits
  // for the answer; a not_leader answer is followed to the named leader (at most 3 hops per
  // attempt), a lost answer or a retryable refusal is retried with the same key (to the leader, or
  // the next gate) until `limit`.
  SubmitResult submit(cluster::JobSpec spec, NodeId first = 0, Duration limit = 15s);
  // The job's status through the client from gate `at` (0: the leader, else any live gate).
  std::optional<cluster::StatusReply> status_of(const std::string& job, NodeId at = 0, Duration limit = 3s);
  // Cancels through the client (to `at`, 0: the leader; follows one redirect); successful replies
  // mark the job cancel-acknowledged (invariant 9).
  std::optional<cluster::CancelReply> cancel(const std::string& job, std::uint64_t fence = 0, NodeId at = 0,
                                             Duration limit = 10s);
  // The job's view from the gate leader, else from any live gate (no message: for predicates).
  std::optional<cluster::JobView> view(const std::string& job);
  // Runs until the job and each of its shares are terminal on every live gate (they agree:
  // invariant); returns the leader's view.
  std::optional<cluster::JobView> finish(const std::string& job, Duration limit = 60s);
  // The datacenter's own view of the job (from its leading manager, else any manager holding it).
  std::optional<cluster::JobView> dc_view(std::size_t d, const std::string& job);
  // Workers of datacenter d running an execution of the job (live, holding cores).
  std::size_t running_in(std::size_t d, const std::string& job);
  // Starts of the job's workflow `w` in datacenter d over every worker's execution log.
  std::size_t starts(std::size_t d, const std::string& job, const std::string& w);

  // ---- faults ----
  void kill(NodeId id);
  void restart(NodeId id);
  void kill_dc_managers(std::size_t d);
  void restart_dc_managers(std::size_t d);
  // Cuts `side` off from every other gate (the datacenters stay reachable from both sides).
  void partition_gates(const std::vector<NodeId>& side);
  // Cuts datacenter d (its managers and workers) off from the gates and from the other datacenters.
  void isolate_dc(std::size_t d);
  // Latency between the gates and datacenter d (both ways).
  void delay_dc(std::size_t d, Duration extra);
  void heal() { sim_->heal(); }

  // End of a scenario: every acknowledged job terminal on every live gate (run up to `limit`; with
  // retired_ok a job gone from a gate after it was seen terminal counts: retention passed), and
  // every live worker idle; then the run's status.
  Status end_checks(Duration limit = 90s, bool retired_ok = false);

  std::size_t gate_leader_changes = 0;

 private:
  struct DcNodes {
    std::string name;
    std::vector<NodeId> managers, workers, all;
    std::unique_ptr<simdc::DcOptions> opts;  // the harness options its nodes are built from
  };
  Status check_now();
  void observe(NodeId from, NodeId to, const node::Bytes& msg);
  gate::GateConfig gate_cfg() const;

  WorldOptions o_;
  std::unique_ptr<sim::Simulator> sim_;
  std::vector<NodeId> gates_;
  std::vector<DcNodes> dcs_;
  NodeId client_ = 0;
  Status failure_;
  // invariant state
  std::map<std::uint64_t, NodeId> term_leader_;
  std::optional<NodeId> last_leader_;
  std::map<NodeId, std::uint64_t> applied_seen_;
  std::map<std::pair<std::string, std::uint64_t>, NodeId> fence_owner_;  // (job, fence) -> owner
  std::map<std::pair<NodeId, std::string>, std::uint64_t> fence_seen_;   // (gate, job) -> highest fence
  std::map<std::string, cluster::JobState> terminal_;  // job -> the terminal state first seen on a gate
  std::map<std::string, std::string> key_job_;         // idempotency key -> job id (submit acks)
  std::size_t acks_seen_ = 0;
  std::map<std::string, std::uint64_t> shown_;      // job -> highest total a gate leader showed
  std::map<std::string, std::uint64_t> shown_max_;  // job -> highest total any gate showed
  std::vector<std::string> violations_;             // found while observing messages
};

}  // namespace hs::simgate
