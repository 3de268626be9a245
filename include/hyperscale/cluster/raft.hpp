// RaftNode: a replicated, durable log for one cluster of peers (managers of a datacenter, gates),
// driven by libraft (Debian's libraft-dev 0.15) for the consensus itself. What is ours is the seam:
// libraft's `raft_io` implemented over the sans-IO node contract, so the same code runs on real
// hosts and, deterministically, in the simulator.
//
//   - messages: libraft's RPCs are encoded with the cluster codec and sent with ctx.send (on real
//     hosts: the sealed TCP transport, one Mux channel);
//   - storage: term and vote in one disk key, the log and its snapshot in one disk log whose
//     compaction is an atomic replace; nothing is reported durable to libraft (an append, a vote)
//     and no message leaves the node before a Context::sync barrier covering every write before it
//     has fired: a vote or an acknowledgement is never sent for state a crash could lose;
//   - time: libraft's tick from a node timer, its clock from ctx.clock(), randomness from ctx.rng().
//
// Leadership is Raft's: pre-vote and check-quorum (a leader that hears from no majority for an
// election timeout steps down) are on. A leader proposes commands; every member applies committed
// commands, in log order, to its StateMachine. A proposal's `done` runs once: after the command is
// committed and applied on this node, or with an error when it can no longer be (leadership lost,
// node closing). Snapshots of the state machine compact the log every `snapshot_threshold` entries.
//
// Storage errors are fail-stop for the log: a refused or failed write makes libraft unavailable on
// this node (it stops voting, leading and acknowledging), failed() turns true, and the event is
// logged and counted. Nothing that was not durable is ever acknowledged to a peer or a proposer.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "hyperscale/base/status.hpp"
#include "hyperscale/base/time.hpp"
#include "hyperscale/node/node.hpp"

namespace hs::cluster {

struct RaftConfig {
  // Every voter of the cluster, this node included; the same list on every member (the bootstrap
  // configuration). Ids must be non-zero.
  std::vector<node::NodeId> voters;
  Duration heartbeat = std::chrono::milliseconds(100);
  Duration election = std::chrono::milliseconds(1000);  // randomized to [1x, 2x) by libraft
  // An InstallSnapshot not answered in this time is sent again (a lost one must not stall a
  // member for libraft's default of 30 s).
  Duration install_snapshot_timeout = std::chrono::seconds(5);
  // Entries between snapshots: at least snapshot_threshold, and as many as make the log since the
  // last snapshot about as large in bytes as that snapshot, up to snapshot_threshold_max. A snapshot
  // encodes the whole state on the event loop: a large state is then encoded once per as many bytes
  // of log as it holds, not every few hundred entries (the log held in memory stays about the size
  // of the state).
  unsigned snapshot_threshold = 256;
  unsigned snapshot_threshold_max = 16'384;
  unsigned snapshot_trailing = 64;  // entries kept after a snapshot
  // An AppendEntries whose encoding would exceed this is cut to the entries that fit (at least
  // one); libraft resends the rest. A message still over it (an InstallSnapshot, one large entry)
  // is sent as fragments of at most this size and reassembled by the receiver.
  std::size_t max_message_bytes = 60 * 1024;
  // The largest message (in practice: a snapshot) sent or reassembled; one over it is dropped and
  // counted (oversize_dropped, reassembly_refused). A receiver holds at most one message being
  // reassembled, so this also bounds that memory.
  std::size_t max_snapshot_bytes = 256u << 20;
  std::size_t max_pending_proposals = 4096;  // propose() refuses with backpressure past this
  std::size_t max_held_messages = 65'536;    // messages waiting for a sync barrier
  std::string storage_name = "raft";         // disk key prefix and log name
};

// The replicated state. apply() must be deterministic: the same commands in the same order give
// the same state on every member. restore() replaces the whole state with a snapshot's.
class StateMachine {
 public:
  virtual ~StateMachine() = default;
  // Returns an outcome code handed to the proposer's Done on the node that proposed it (e.g.
  // "refused: job already terminal"); the same on every member, since apply is deterministic.
  virtual std::uint64_t apply(std::uint64_t index, std::span<const std::uint8_t> command) = 0;
  virtual node::Bytes snapshot() = 0;
  virtual Status restore(std::span<const std::uint8_t> snapshot) = 0;
};

class RaftNode final : public node::Node {
 public:
  // status ok: committed and applied at `index`, and `result` is what StateMachine::apply returned.
  // Otherwise the command may or may not commit later (leadership lost) or will not (refused);
  // `index` is 0 if it never entered the log.
  using Done = std::function<void(const Status& status, std::uint64_t index, std::uint64_t result)>;

  RaftNode(RaftConfig config, StateMachine& fsm);
  ~RaftNode() override;
  RaftNode(const RaftNode&) = delete;
  RaftNode& operator=(const RaftNode&) = delete;

  void on_start(node::Context& ctx) override;
  void on_message(node::Context& ctx, node::NodeId from, std::span<const std::uint8_t> msg) override;
  void on_timer(node::Context& ctx, node::TimerId id, std::uint64_t tag) override;

  // Appends a command (leader only; otherwise Errc::unavailable with the leader's id in the text).
  // Call from within an event of this node.
  Status propose(node::Bytes command, Done done);
  // Hands leadership to `to` (0: the most up-to-date follower). Leader only.
  Status transfer_leadership(node::NodeId to);

  bool is_leader() const noexcept;
  // Leader whose state machine holds everything committed before its term (its term's barrier
  // entry is applied). A role acts on the ledger (dispatch, answers) only when this is true.
  bool is_ready_leader() const noexcept;
  std::uint64_t term() const noexcept;
  node::NodeId leader_id() const noexcept;  // 0 when none is known
  std::uint64_t commit_index() const noexcept;
  std::uint64_t last_applied() const noexcept;
  std::uint64_t last_index() const noexcept;
  bool started() const noexcept;
  // Storage failed (or libraft stopped on an error): fail-stop, see above.
  bool failed() const noexcept;
  const RaftConfig& config() const noexcept;

  // Runs after any event in which leadership, the term, the known leader or readiness changed.
  void set_on_change(std::function<void()> fn);
  // Runs after any event in which entries were applied (outside libraft: it may propose).
  void set_on_applied(std::function<void()> fn);

  struct Counters {
    std::uint64_t sent = 0, received = 0, decode_errors = 0, unknown_sender = 0;
    std::uint64_t cut_batches = 0, oversize_dropped = 0, held_for_sync = 0, held_dropped = 0;
    std::uint64_t storage_errors = 0, proposals = 0, proposals_refused = 0, applied = 0;
    std::uint64_t snapshots_taken = 0, snapshots_installed = 0, syncs = 0;
    std::uint64_t commit_clamped = 0;  // libraft 0.15 stale-suffix workaround applied (raft.cpp)
    std::uint64_t torn_records = 0;    // torn (never synced) storage records skipped at load
    std::uint64_t fragments_sent = 0, fragments_received = 0, reassembled = 0, reassembly_refused = 0;
    std::uint64_t snapshot_threshold = 0;  // entries between snapshots as last adapted (0: not yet)
  };
  const Counters& counters() const noexcept;
  std::size_t pending_appends() const noexcept;  // written appends waiting for their sync barrier

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// What a RaftNode's storage log holds, for checkers that read a node's disk (the simulator's
// "nothing acknowledged that a quorum did not store"): the latest snapshot's state-machine data and
// the command entries stored after it, committed or not, in log order. A torn last record is skipped
// as at load; any other undecodable record is an error.
struct StoredCommands {
  std::optional<node::Bytes> snapshot;
  std::uint64_t snapshot_index = 0;
  std::vector<std::pair<std::uint64_t, node::Bytes>> commands;  // (index, command)
};
Result<StoredCommands> read_stored_commands(const std::vector<node::Bytes>& records);

}  // namespace hs::cluster
