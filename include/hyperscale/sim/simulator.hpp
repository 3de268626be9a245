// Deterministic cluster simulator: many sans-IO nodes in one thread, on a virtual clock, over a
// seeded faulty network. A run is a pure function of its seed and of the calls made on the
// Simulator: the same seed gives the same event trace (trace_hash()).
//
// Faults: message latency (min + exponential tail), loss, duplication, reordering (extra random
// delay), partitions (two-way between groups, or one-way per directed link), crash and restart of a
// node (its Disk survives, its memory and pending timers do not; messages reaching it while it is
// down are dropped), clock skew (offset + drift per node), and slow nodes (incoming messages are
// handled late). An invariant hook runs after every event; the first
// failure stops the run and is reported with its seed and the command that replays it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <queue>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "hyperscale/base/random.hpp"
#include "hyperscale/base/status.hpp"
#include "hyperscale/base/time.hpp"
#include "hyperscale/node/node.hpp"
#include "hyperscale/sim/mem_disk.hpp"

namespace hs::sim {

struct NetworkOptions {
  Duration min_latency = std::chrono::microseconds(500);
  Duration mean_extra_latency = std::chrono::milliseconds(2);  // exponential tail on top of min
  double loss = 0.0;                                           // probability a datagram is dropped
  double duplicate = 0.0;                                      // probability a datagram is delivered twice
  double reorder = 0.0;  // probability a datagram gets an extra delay of up to reorder_delay
  Duration reorder_delay = std::chrono::milliseconds(50);
  std::size_t max_message_bytes = 64 * 1024;  // larger sends are dropped and counted
};

struct SimOptions {
  std::uint64_t seed = 1;
  NetworkOptions net;
  std::size_t max_pending_events = 4'000'000;  // bound of the event queue; past it events are refused
  std::size_t max_nodes = 100'000;
  std::size_t trace_tail = 64;  // last events kept as text for failure reports
};

// Virtual clock seen by one node: global time × rate + offset.
class NodeClock final : public Clock {
 public:
  Instant now() const noexcept override;
  Instant global = Instant{0};  // set by the simulator
  double rate = 1.0;
  Duration offset{0};
};

class Simulator {
 public:
  using Factory = std::function<std::unique_ptr<node::Node>(node::NodeId)>;
  using Invariant = std::function<Status(Simulator&)>;

  explicit Simulator(SimOptions opts);
  ~Simulator();
  Simulator(const Simulator&) = delete;
  Simulator& operator=(const Simulator&) = delete;

  // Adds a node (not started). The factory is called now and again on every restart.
  Status add_node(node::NodeId id, Factory factory);
  // Starts a node (on_start runs at the current virtual time, as an event).
  Status start(node::NodeId id);
  void start_all();
  // Crash: the Node object is destroyed now; its pending timers are dropped, and so are messages
  // that reach it while it is down; its Disk survives.
  Status crash(node::NodeId id);
  // Restart a crashed node: a fresh Node from the factory, same Disk, on_start runs.
  Status restart(node::NodeId id);
  bool is_up(node::NodeId id) const;
  node::Node* node(node::NodeId id);  // nullptr if unknown or down
  node::Disk* disk(node::NodeId id);
  std::vector<node::NodeId> node_ids() const;

  // ---- network faults ----
  NetworkOptions& net() noexcept { return opts_.net; }
  // Blocks every link from any node in `a` to any node in `b` and back.
  void partition(const std::vector<node::NodeId>& a, const std::vector<node::NodeId>& b);
  // Blocks only from -> to.
  void block(node::NodeId from, node::NodeId to);
  void unblock(node::NodeId from, node::NodeId to);
  void heal();  // removes every block
  bool blocked(node::NodeId from, node::NodeId to) const;
  // Drops every message for which `drop(from, to, bytes)` returns true (scenarios' drop_msg fault,
  // e.g. one message type on one link). Counted in counters().dropped_filter. nullptr removes it.
  using Filter = std::function<bool(node::NodeId from, node::NodeId to, const node::Bytes& msg)>;
  void set_filter(Filter f) { filter_ = std::move(f); }

  // ---- node faults ----
  // This node's clock reads global × rate + offset (rate 1.0 and offset 0 by default).
  Status set_clock_skew(node::NodeId id, Duration offset, double rate);
  // Every message the node receives is handled late, by a random extra delay up to
  // (factor − 1) × unit, while its timers still fire on time: an overloaded event loop whose
  // datagrams wait in the socket buffer (libuv runs due timers before polling for I/O).
  // factor 1.0 switches it off.
  Status set_slow(node::NodeId id, double factor, Duration unit);
  // Disk faults: every Context::sync of the node completes `fsync_delay` later; with `fail_sync`
  // the next sync fails instead and the node crashes (fail-stop, like a real WAL I/O error).
  Status set_disk_fault(node::NodeId id, Duration fsync_delay, bool fail_sync);

  // ---- running ----
  Instant now() const noexcept { return now_; }
  // Runs events up to and including time `t` (virtual). Stops early and returns the error if the
  // invariant fails or a bound is hit.
  Status run_until(Instant t);
  Status run_for(Duration d) { return run_until(now_ + d); }
  // Runs `fn` at virtual time `t` as an event (scripted faults).
  void at(Instant t, std::function<void(Simulator&)> fn);
  void set_invariant(Invariant inv) { invariant_ = std::move(inv); }

  // ---- observation ----
  std::uint64_t trace_hash() const noexcept { return hash_; }
  std::uint64_t events() const noexcept { return events_; }
  std::uint64_t seed() const noexcept { return opts_.seed; }
  Rng& rng() noexcept { return rng_; }
  // The last trace_tail events as text (for failure reports).
  std::vector<std::string> trace_tail() const;
  struct Counters {
    std::uint64_t sent = 0, delivered = 0, dropped_loss = 0, dropped_partition = 0, dropped_down = 0,
                  dropped_oversize = 0, dropped_filter = 0, duplicated = 0, reordered = 0, timers_fired = 0,
                  refused_events = 0;
  };
  const Counters& counters() const noexcept { return counters_; }
  // Datagrams sent by each node since the simulator was created.
  std::uint64_t sent_by(node::NodeId id) const;

 private:
  struct NodeSlot;
  class Ctx;
  struct Event {
    Instant t;
    std::uint64_t seq;
    enum Kind : std::uint8_t { kStart, kMessage, kTimer, kScript } kind;
    node::NodeId to = 0;
    node::NodeId from = 0;
    std::uint64_t epoch = 0;  // node incarnation in the simulator; stale events are dropped
    node::TimerId timer = 0;
    std::uint64_t tag = 0;
    std::shared_ptr<node::Bytes> payload;
    std::shared_ptr<std::function<void(Simulator&)>> script;
  };
  struct Later {
    bool operator()(const Event& a, const Event& b) const noexcept { return a.t != b.t ? a.t > b.t : a.seq > b.seq; }
  };

  bool push(Event e);
  void send_from(node::NodeId from, node::NodeId to, node::Bytes msg);
  node::TimerId set_timer_for(node::NodeId id, Duration after, std::uint64_t tag);
  Instant slow_delay(NodeSlot& s, Instant t);
  void mix(std::uint64_t v) noexcept;
  void note(const Event& e, const char* what);
  Status dispatch(Event& e);

  SimOptions opts_;
  Rng rng_;
  Instant now_{0};
  std::uint64_t seq_ = 0;
  std::uint64_t events_ = 0;
  std::uint64_t hash_ = 1469598103934665603ull;
  std::priority_queue<Event, std::vector<Event>, Later> queue_;
  std::unordered_map<node::NodeId, std::unique_ptr<NodeSlot>> nodes_;
  std::vector<node::NodeId> order_;  // insertion order: deterministic iteration
  std::set<std::pair<node::NodeId, node::NodeId>> blocks_;
  Invariant invariant_;
  Filter filter_;
  Counters counters_;
  std::vector<std::string> tail_;
  std::size_t tail_pos_ = 0;
};

// ---- seed handling for simulation tests ----
// Seeds to run: HS_SIM_SEED=<n> runs only that seed (replay); otherwise `count` seeds starting at
// HS_SIM_SEED_BASE (default 1); HS_SIM_SEEDS=<k> overrides `count`.
std::vector<std::uint64_t> seeds_to_run(std::size_t count);
// "HS_SIM_SEED=<seed> <program> '<test>'": the command that replays one seed of a test.
std::string replay_command(std::uint64_t seed, const std::string& program, const std::string& test);

}  // namespace hs::sim
