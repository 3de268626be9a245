// The node contract: the interfaces a sans-IO role is written against. Protocol state machines
// (SWIM, elections, the manager and worker roles) implement Node and reach the outside world only
// through a Context. The deterministic simulator (sim/) provides one Context per simulated node; the
// real hosts (host::NetHost, host::UdpHost) provide a Context backed by a libuv loop and the WAL.
// This module depends on base only, and the role libraries link base and node only (docs/architecture.md).
//
// Rules for Node code: no sockets, no threads, no std::chrono::steady_clock, no global randomness.
// Time comes from ctx.clock(), randomness from ctx.rng(), effects go through ctx.send / set_timer /
// disk(). Everything a node does is then a function of the events it is given.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "hyperscale/base/random.hpp"
#include "hyperscale/base/status.hpp"
#include "hyperscale/base/time.hpp"

namespace hs::node {

// A node address. In the simulator ids are small integers; over UDP an id encodes IPv4 + port
// (see host/udp_host.hpp and host/address.hpp), so an id is all a protocol needs to reach a peer.
using NodeId = std::uint64_t;
using TimerId = std::uint64_t;
using Bytes = std::vector<std::uint8_t>;

// Durable storage that survives a crash/restart of its node: a bounded key/value map plus named
// append-only logs. A write is visible to reads when it returns; it is only sure to survive a crash
// once a Context::sync made after it has fired (an in-memory disk is durable at once, a WAL-backed
// one after its group commit; the simulator's FaultyDisk can lose or tear unsynced writes, see
// sim/faulty_disk.hpp). A refused write (over a bound, or the disk has failed) returns an error and
// changes nothing.
class Disk {
 public:
  virtual ~Disk() = default;
  virtual Status put(const std::string& key, std::span<const std::uint8_t> value) = 0;
  virtual std::optional<Bytes> get(const std::string& key) const = 0;
  virtual Status erase(const std::string& key) = 0;
  virtual Status append(const std::string& log, std::span<const std::uint8_t> record) = 0;
  // Every record of `log` in append order (empty if the log does not exist).
  virtual std::vector<Bytes> read_log(const std::string& log) const = 0;
  // Removes `log` (not_found if it does not exist).
  virtual Status truncate_log(const std::string& log) = 0;
  // Atomically replaces the content of `log`: afterwards it holds exactly `records` (no records:
  // the log is removed; a missing log is created). A crash at any point leaves either the old log or
  // the new one, never a mix or a truncated log; a refusal or failure leaves the old one. Use it to
  // compact a log instead of truncate_log + append, which has a window with an empty log.
  virtual Status replace_log(const std::string& log, std::span<const Bytes> records) = 0;
};

// The Context a node is given stays valid for the node's lifetime (simulator and real hosts keep
// one per node), so a node may keep a pointer to it and use it from a call made during any of its
// events; using it outside the node's events is not allowed.
class Context {
 public:
  virtual ~Context() = default;
  virtual NodeId self() const = 0;
  // This node's clock (the simulator may skew it relative to other nodes).
  virtual const Clock& clock() const = 0;
  Instant now() const { return clock().now(); }
  // Wall-clock time, Unix milliseconds: only to announce an instant to other machines (the shared
  // start of a workflow's parts). Never for timeouts or ordering: those use clock(). The simulator
  // gives each node a virtual wall clock that follows its (possibly skewed) clock.
  virtual std::uint64_t wall_ms() const = 0;
  virtual Rng& rng() = 0;
  // Best-effort datagram to `to` (may be lost, delayed, duplicated, reordered).
  virtual void send(NodeId to, Bytes msg) = 0;
  // Calls Node::on_timer(ctx, id, tag) once, `after` from now on this node's clock.
  virtual TimerId set_timer(Duration after, std::uint64_t tag) = 0;
  virtual void cancel_timer(TimerId id) = 0;
  virtual Disk& disk() = 0;
  // Durability barrier: Node::on_timer(ctx, id, tag) runs once every disk() write made before this
  // call is durable (group commit on real hosts). If the disk fails, the host stops the node
  // (fail-stop) and the timer never fires, so nothing waiting on it is acknowledged. A host may
  // instead return the error: the timer then fires with kSyncFailed set in its tag and the writes
  // stay not durable (the simulator's fail_next_syncs fault; a node that ignores unknown tags
  // acknowledges nothing). The default suits a Disk whose writes are durable when they return.
  virtual TimerId sync(std::uint64_t tag) { return set_timer(Duration{0}, tag); }
};

// Set in the tag of a sync barrier's timer when the barrier failed (see Context::sync).
inline constexpr std::uint64_t kSyncFailed = std::uint64_t{1} << 63;

class Node {
 public:
  virtual ~Node() = default;
  virtual void on_start(Context& ctx) = 0;
  virtual void on_message(Context& ctx, NodeId from, std::span<const std::uint8_t> msg) = 0;
  virtual void on_timer(Context& ctx, TimerId id, std::uint64_t tag) = 0;
};

}  // namespace hs::node
