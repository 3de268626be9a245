// Test support (tests/support, library hs_test_support): a test double, not part of any production library.
// A cluster of Swim nodes inside the deterministic simulator, with everything the tests and the
// swim-sim benchmark observe: every death and suspicion as seen by every member, and a check that
// each node reports a death exactly once per transition.
#pragma once

#include <map>
#include <memory>
#include <vector>

#include "hyperscale/sim/simulator.hpp"
#include "hyperscale/swim/swim.hpp"

namespace hs::swim {

struct ClusterOptions {
  std::size_t n = 5;
  SwimConfig cfg;
  sim::SimOptions sim;
  // true: every node starts knowing every other as confirmed (a cluster that has been running for a
  // while); false: nodes join through seeds (node 1 and 2).
  bool bootstrap_full = false;
  bool check_invariants = true;  // run invariant checks after every event (O(n²): small clusters)
  // Other nodes in the same simulator (e.g. a rogue member written by a test). They are members
  // (bootstrap_full includes them) but not Swim nodes: swim() is nullptr for them, and ids(),
  // all_see(), converged() and the invariants cover the Swim nodes only.
  std::vector<std::pair<NodeId, sim::Simulator::Factory>> extra_nodes;
};

struct Observation {
  Instant t{0};
  NodeId observer = 0;
  NodeId node = 0;
  std::uint32_t incarnation = 0;
  State to = State::alive;
};

class SimCluster {
 public:
  explicit SimCluster(ClusterOptions opts);
  sim::Simulator& sim() noexcept { return *sim_; }
  Swim* swim(NodeId id);  // nullptr when down
  std::vector<NodeId> ids() const;
  const ClusterOptions& options() const noexcept { return opts_; }

  // Every state change seen by every node, in order.
  const std::vector<Observation>& log() const noexcept { return log_; }
  // Deaths (on_dead callbacks) in order.
  const std::vector<Observation>& deaths() const noexcept { return deaths_; }
  // Every up node other than `node` (and not in `except`) holds `node` in state `s` (forgotten counts as gone).
  bool all_see(NodeId node, State s, const std::vector<NodeId>& except = {});
  // Every up node sees every other up node alive and confirmed.
  bool converged();
  // Runs until pred() holds or `limit` passes (checks every `step`). Returns whether pred held.
  bool run_until(const std::function<bool()>& pred, Duration limit, Duration step = std::chrono::milliseconds(50));
  Status status() const { return failure_; }
  // Highest incarnation each node has ever announced (across restarts).
  std::uint32_t max_incarnation(NodeId id) const;

 private:
  Status check();
  bool is_extra(NodeId id) const;

  ClusterOptions opts_;
  std::unique_ptr<sim::Simulator> sim_;
  std::vector<Observation> log_;
  std::vector<Observation> deaths_;
  std::map<std::pair<NodeId, NodeId>, bool> dead_flag_;  // (observer, node) -> currently reported dead
  std::map<NodeId, std::uint32_t> max_inc_;
  Status failure_;
};

}  // namespace hs::swim
