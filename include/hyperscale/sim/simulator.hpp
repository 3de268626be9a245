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
//
// More faults (all per node or per link, deterministic from the seed, schedulable with at()):
// pausing a node (SIGSTOP: timers and deliveries held, memory kept), channels (per-channel network
// options and blocks, in-order TCP-like channels whose in-flight messages a link cut drops), several
// message filters at once, disk faults (FaultyDisk: refused writes, full disk, fsync errors returned to
// the node, unsynced writes lost or torn at a crash; plus a stalled sync barrier), rogue nodes
// (sim/rogue.hpp), several named invariants, and HS_ASSERT failures inside a node stopping the run.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "hyperscale/base/random.hpp"
#include "hyperscale/base/status.hpp"
#include "hyperscale/base/time.hpp"
#include "hyperscale/node/node.hpp"
#include "hyperscale/sim/faulty_disk.hpp"
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
  std::size_t trace_tail = 64;               // last events kept as text for failure reports
  std::size_t max_paused_messages = 10'000;  // per paused node; later messages are dropped and counted
  std::size_t max_filters = 256;
  std::size_t max_invariants = 256;
  std::size_t max_ordered_links = 65'536;  // FIFO state of ordered links; idle entries evicted past it
  std::size_t max_link_delays = 65'536;    // directed links with an extra delay (set_link_delay)
};

// A message's channel: the cluster::Mux one-byte prefix (kSwim = 1 is UDP-like, the others TCP-like),
// or whatever the test's classifier says. Without a classifier every message is on channel 0.
using ChannelId = std::uint8_t;

// Network behaviour of one channel. `net` replaces the simulator's net() for the channel's messages.
// `ordered` makes the channel TCP-like: the messages of one directed link (from, to) on it are
// delivered in send order (reorder does not apply; each gets max(its latency, the previous one's
// delivery)), and cutting the link (block, partition, block_channel, partition_channel) or restarting
// the receiver drops what is in flight on it, like a reset connection. loss and duplicate still apply
// if set (0 by default), for tests that want them.
struct ChannelOptions {
  NetworkOptions net;
  bool ordered = false;
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
  // Per-link latency (e.g. between datacenters): every message from -> to gets `extra` on top of its
  // drawn latency (no random draw: the other faults' draws do not shift). Zero removes the link's
  // delay. Refused past SimOptions::max_link_delays links. heal() leaves delays in place.
  Status set_link_delay(node::NodeId from, node::NodeId to, Duration extra);
  // set_link_delay both ways between every node of `a` and every node of `b`.
  Status set_group_delay(const std::vector<node::NodeId>& a, const std::vector<node::NodeId>& b, Duration extra);
  Duration link_delay(node::NodeId from, node::NodeId to) const;
  void clear_link_delays() { link_delays_.clear(); }
  // Drops every message for which `drop(from, to, bytes)` returns true (scenarios' drop_msg fault,
  // e.g. one message type on one link). Counted in counters().dropped_filter. nullptr removes it.
  using Filter = std::function<bool(node::NodeId from, node::NodeId to, const node::Bytes& msg)>;
  void set_filter(Filter f) { filter_ = std::move(f); }
  // Several filters at once: a message is dropped if set_filter's filter or any added filter says so
  // (checked in that order; the first that drops wins). Bounded by SimOptions::max_filters.
  using FilterId = std::uint64_t;
  Result<FilterId> add_filter(Filter f);
  Status remove_filter(FilterId id);

  // ---- channels ----
  // How a message's channel is found. mux_channel reads the cluster::Mux prefix byte.
  using ChannelOf = std::function<ChannelId(const Bytes& msg)>;
  void set_channel_of(ChannelOf f) { channel_of_ = std::move(f); }
  static ChannelId mux_channel(const Bytes& msg) { return msg.empty() ? ChannelId{0} : msg[0]; }
  ChannelId channel_of(const Bytes& msg) const { return channel_of_ ? channel_of_(msg) : ChannelId{0}; }
  // Options for one channel (channels without options use net(), unordered).
  Status set_channel(ChannelId ch, ChannelOptions o);
  void clear_channel(ChannelId ch) { channels_.erase(ch); }
  // Per-channel blocks: only that channel's messages on the link are dropped (e.g. role traffic cut
  // while SWIM passes). heal() removes them too; blocked(from, to) is about whole-link blocks only.
  void block_channel(NodeId from, NodeId to, ChannelId ch);
  void unblock_channel(NodeId from, NodeId to, ChannelId ch);
  void partition_channel(const std::vector<NodeId>& a, const std::vector<NodeId>& b, ChannelId ch);
  bool blocked(NodeId from, NodeId to, ChannelId ch) const;

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
  Status set_disk_fault(NodeId id, Duration fsync_delay, bool fail_sync);
  // The node's disk fault controls (refused writes, full, fsync errors returned, crash loss): see
  // sim/faulty_disk.hpp. nullptr if unknown. The same object as disk(id).
  FaultyDisk* disk_faults(NodeId id);
  // Stall: while stalled, writes are accepted but no sync barrier of the node completes; the held
  // barriers complete (in order) when the stall ends. Counted in counters().syncs_stalled.
  Status stall_disk(NodeId id, bool stalled);
  // Pause (SIGSTOP): the node keeps its memory; its timers and sync completions are held, and
  // messages reaching it wait (up to SimOptions::max_paused_messages, then dropped and counted in
  // dropped_paused), so it sends nothing. resume (SIGCONT) runs everything held at the resume time,
  // in the order it arrived (timers that came due fire late). A crash of a paused node ends the pause.
  Status pause(NodeId id);
  Status resume(NodeId id);
  bool is_paused(NodeId id) const;

  // ---- running ----
  Instant now() const noexcept { return now_; }
  // Runs events up to and including time `t` (virtual). Stops early and returns the error if the
  // invariant fails or a bound is hit.
  Status run_until(Instant t);
  Status run_for(Duration d) { return run_until(now_ + d); }
  // Runs `fn` at virtual time `t` as an event (scripted faults).
  void at(Instant t, std::function<void(Simulator&)> fn);
  void set_invariant(Invariant inv) { invariant_ = std::move(inv); }
  // Several named invariants, each checked after every event (after set_invariant's). The first
  // failure stops the run: "seed S at t=T s: invariant 'name': message". Bounded by max_invariants.
  Status add_invariant(std::string name, Invariant inv);
  // During run_until an HS_ASSERT failing inside a node (or an invariant) does not abort the process:
  // the run stops with "seed S at t=T s: assertion failed: file:line: condition (values)", and every
  // later run_until returns that error (the node that asserted is half-way through an event).
  // The message of the last failure (invariant or assertion; empty if none), with its replay seed.
  const std::string& failure() const noexcept { return failure_; }

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
    std::uint64_t dropped_paused = 0;  // messages to a paused node past its bound
    std::uint64_t dropped_cut = 0;     // in flight on an ordered link when it was cut / the receiver restarted
    std::uint64_t held_paused = 0;     // events held while their node was paused
    std::uint64_t syncs_stalled = 0;   // sync completions held by a disk stall
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
    // Ordered-channel messages only: the cut generation at send and the receiver's incarnation.
    bool ordered = false;
    bool arrived = false;  // passed the network (cut) check; held or slowed copies are not re-checked
    ChannelId channel = 0;
    std::uint64_t sent_gen = 0;
    std::uint64_t to_epoch = 0;
  };
  using LinkKey = std::tuple<NodeId, NodeId, ChannelId>;
  struct OrderedLink {
    Instant last{0};           // latest delivery time scheduled on the link
    std::uint64_t cut_at = 0;  // cut generation of the latest cut
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
  Status dispatch_timer(NodeSlot& s, Event& e);
  Status check_invariants();
  void hold(NodeSlot& s, Event e);
  void cut(NodeId from, NodeId to, std::optional<ChannelId> ch);
  Instant ordered_time(NodeId from, NodeId to, ChannelId ch, Instant t);
  Status fail_run(Status st);

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
  std::map<std::pair<node::NodeId, node::NodeId>, Duration> link_delays_;  // bounded by max_link_delays
  Invariant invariant_;
  std::vector<std::pair<std::string, Invariant>> invariants_;
  Filter filter_;
  std::vector<std::pair<FilterId, Filter>> filters_;
  FilterId next_filter_ = 1;
  ChannelOf channel_of_;
  std::map<ChannelId, ChannelOptions> channels_;
  std::set<LinkKey> channel_blocks_;
  std::map<LinkKey, OrderedLink> links_;
  std::uint64_t cut_gen_ = 0;
  Status sticky_;  // an assertion failed: the run cannot go on
  std::string failure_;
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
