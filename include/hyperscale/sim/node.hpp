// The sans-IO node interface: protocol state machines (SWIM, elections, roles) implement Node and
// reach the outside world only through a Context. The deterministic simulator provides one Context
// per simulated node; real hosts (e.g. swim::UdpHost) provide a Context backed by a libuv loop.
//
// Rules for Node code: no sockets, no threads, no std::chrono::steady_clock, no global randomness.
// Time comes from ctx.clock(), randomness from ctx.rng(), effects go through ctx.send / set_timer /
// disk(). Everything a node does is then a function of the events it is given.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "hyperscale/base/random.hpp"
#include "hyperscale/base/status.hpp"
#include "hyperscale/base/time.hpp"

namespace hs::sim {

// A node address. In the simulator ids are small integers; over UDP an id encodes IPv4 + port
// (see swim/udp_host.hpp), so an id is all a protocol needs to reach a peer.
using NodeId = std::uint64_t;
using TimerId = std::uint64_t;
using Bytes = std::vector<std::uint8_t>;

// Durable storage that survives a crash/restart of its node: a bounded key/value map plus named
// append-only logs. A write is only sure to survive a crash once a Context::sync made after it has
// fired (the simulator's FaultyDisk can lose or tear unsynced writes; see sim/faulty_disk.hpp).
class Disk {
 public:
  virtual ~Disk() = default;
  virtual Status put(const std::string& key, std::span<const std::uint8_t> value) = 0;
  virtual std::optional<Bytes> get(const std::string& key) const = 0;
  virtual Status erase(const std::string& key) = 0;
  virtual Status append(const std::string& log, std::span<const std::uint8_t> record) = 0;
  // Every record of `log` in append order (empty if the log does not exist).
  virtual std::vector<Bytes> read_log(const std::string& log) const = 0;
  virtual Status truncate_log(const std::string& log) = 0;
};

// In-memory Disk with hard bounds (total bytes, keys, logs). Over a bound a write is refused with
// Errc::backpressure and nothing changes.
class MemDisk final : public Disk {
 public:
  struct Limits {
    std::size_t max_bytes = 64 << 20;
    std::size_t max_keys = 100'000;
    std::size_t max_logs = 1'000;
  };
  MemDisk() : MemDisk(Limits{}) {}
  explicit MemDisk(Limits limits) : limits_(limits) {}

  Status put(const std::string& key, std::span<const std::uint8_t> value) override;
  std::optional<Bytes> get(const std::string& key) const override;
  Status erase(const std::string& key) override;
  Status append(const std::string& log, std::span<const std::uint8_t> record) override;
  std::vector<Bytes> read_log(const std::string& log) const override;
  Status truncate_log(const std::string& log) override;
  std::size_t bytes() const noexcept { return bytes_; }

 private:
  Limits limits_;
  std::size_t bytes_ = 0;
  std::map<std::string, Bytes> kv_;
  std::map<std::string, std::vector<Bytes>> logs_;
};

class Context {
 public:
  virtual ~Context() = default;
  virtual NodeId self() const = 0;
  // This node's clock (the simulator may skew it relative to other nodes).
  virtual const Clock& clock() const = 0;
  Instant now() const { return clock().now(); }
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

}  // namespace hs::sim
