// WalDisk: the node::Disk of a real process, kept in memory and made durable by a hs::wal::Wal in a
// data directory. Every put / erase / append / truncate_log is one WAL record (a replace_log is one
// contiguous run of records, applied whole or not at all); at open the WAL is
// replayed into memory, so get() and read_log() are memory reads.
//
// Durability: a write is visible to reads at once and durable once its record is fsynced.
// when_durable(fn) (what NetHost::sync uses) runs fn once every write made before the call is
// durable: many writes and syncs in one loop turn cost one write + one fdatasync (the WAL's group
// commit).
//
// Compaction: once the records written since the last snapshot exceed
// max(compact_min_bytes, compact_ratio x live bytes), the live state is written again as a snapshot
// (SNAP_BEGIN, one record per key and log record, SNAP_END{count}) and, when SNAP_END is durable,
// WAL segments wholly before SNAP_BEGIN are deleted. Replay applies records in order; a snapshot
// replaces the state only when its SNAP_END was read, so a crash in the middle of one loses nothing.
//
// Bounds (bytes, keys, logs) as in sim::MemDisk: over a bound a write is refused with
// Errc::backpressure and changes nothing. A WAL I/O error is fail-stop: logged, counted in
// hs_host_disk_errors_total, every later write fails with `unavailable`, pending when_durable calls
// never run, and the failure callback (the host stops the node; the daemon exits non-zero) runs once.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hyperscale/base/metrics.hpp"
#include "hyperscale/base/small_fn.hpp"
#include "hyperscale/runtime/reactor.hpp"
#include "hyperscale/node/node.hpp"
#include "hyperscale/sim/mem_disk.hpp"
#include "hyperscale/wal/wal.hpp"

namespace hs::host {

// A node::Disk with a durability barrier and a fail-stop signal (what NetHost needs from storage).
class DurableDisk : public node::Disk {
 public:
  // Runs `fn` once every write made before this call is durable. Fails (and never runs fn) when the
  // disk has failed; fn never runs if the disk fails before the writes are durable.
  virtual Status when_durable(SmallFn<void()> fn) = 0;
  // Called once, on the owning shard, when the disk fails (fail-stop).
  virtual void set_failure_callback(std::function<void(const Status&)> cb) = 0;
  virtual const Status& health() const = 0;
};

struct WalDiskOptions {
  std::string dir;  // the data directory; the WAL's LOCK keeps a second process off it
  wal::Durability durability = wal::Durability::fsync;
  sim::MemDisk::Limits limits;                  // bounds of the live state (as MemDisk)
  std::uint64_t compact_min_bytes = 64u << 20;  // never compact below this much WAL since the last snapshot
  double compact_ratio = 2.0;                   // ... nor below this multiple of the live state's size
  std::uint64_t segment_bytes = 16u << 20;      // WAL segment size (compaction deletes whole segments)
  // Tests: substitute the WAL's I/O (error injection, delayed completions). Default: io_uring.
  std::function<std::unique_ptr<wal::WalIo>(runtime::Reactor&)> io_factory;
};

struct WalDiskStats {
  std::size_t live_bytes = 0;  // keys + values + log records (the MemDisk measure)
  std::size_t keys = 0;
  std::size_t logs = 0;
  std::uint64_t records_since_snapshot = 0;
  std::uint64_t bytes_since_snapshot = 0;  // encoded WAL bytes written since the last snapshot began
  std::uint64_t compactions = 0;
  std::uint64_t replayed_records = 0;
  std::size_t segments = 0;
  std::size_t pending_syncs = 0;
};

class WalDisk final : public DurableDisk {
 public:
  // Opens (creating) the directory, replays the WAL into memory. Fails with the WAL's error
  // (corruption with file + offset, `unavailable` when another process holds the directory).
  static Result<std::unique_ptr<WalDisk>> open(runtime::Reactor& reactor, WalDiskOptions o);
  ~WalDisk() override;
  WalDisk(const WalDisk&) = delete;
  WalDisk& operator=(const WalDisk&) = delete;

  // ---- node::Disk ----
  Status put(const std::string& key, std::span<const std::uint8_t> value) override;
  std::optional<node::Bytes> get(const std::string& key) const override;
  Status erase(const std::string& key) override;
  Status append(const std::string& log, std::span<const std::uint8_t> record) override;
  std::vector<node::Bytes> read_log(const std::string& log) const override;
  Status truncate_log(const std::string& log) override;
  // One contiguous WAL run (replace_begin, the records, replace_end) applied at replay only when its
  // end was read, so a crash leaves the old log or the new one. Refused (nothing changes) over a
  // bound, when a record exceeds the WAL's record limit, or when the run does not fit the WAL queue
  // now; a WAL refusal in the middle of the run is fail-stop.
  Status replace_log(const std::string& log, std::span<const node::Bytes> records) override;

  // ---- DurableDisk ----
  Status when_durable(SmallFn<void()> fn) override;
  void set_failure_callback(std::function<void(const Status&)> cb) override { on_failure_ = std::move(cb); }
  const Status& health() const override { return health_; }

  // Writes a snapshot now (normally automatic). Fails if one is in progress or the disk failed.
  Status compact();
  // True while WAL writes are in flight or queued (destroy the disk when false).
  bool busy() const;
  WalDiskStats stats() const;
  const std::string& dir() const noexcept { return opts_.dir; }

 private:
  struct State {
    std::map<std::string, node::Bytes> kv;
    std::map<std::string, std::vector<node::Bytes>> logs;
    std::size_t bytes = 0;
  };
  struct PendingReplace {
    std::string log;
    std::vector<node::Bytes> records;
  };
  struct Waiter {
    wal::Lsn lsn;  // runs once every record below lsn+1 is durable
    SmallFn<void()> fn;
  };
  WalDisk(runtime::Reactor& reactor, WalDiskOptions o);
  Status write(std::uint32_t type, const std::vector<std::uint8_t>& payload);
  void on_durable(wal::Lsn lsn, const Status& st);
  void fail(const Status& st, std::string_view reason);
  void maybe_compact();
  Status check_usable();  // counts refusals after a failure
  static void apply(State& s, std::uint32_t type, std::span<const std::uint8_t> payload);
  static void replace(State& s, const std::string& log, std::vector<node::Bytes> records);

  runtime::Reactor& reactor_;
  WalDiskOptions opts_;
  std::unique_ptr<wal::Wal> wal_;
  State state_;
  Status health_;
  std::function<void(const Status&)> on_failure_;
  std::shared_ptr<WalDisk*> alive_;   // WAL completions after destruction see nullptr
  std::size_t max_payload_ = 0;       // the WAL's record payload limit
  std::size_t max_queued_bytes_ = 0;  // the WAL's queue bound
  wal::Lsn last_lsn_ = 0;             // LSN of the newest record written (0: none)
  wal::Lsn durable_through_ = 0;      // every record <= this is durable
  std::deque<Waiter> waiters_;
  bool compacting_ = false;
  wal::Lsn snapshot_begin_ = 0;
  std::uint64_t records_since_snapshot_ = 0;
  std::uint64_t bytes_since_snapshot_ = 0;
  std::uint64_t compactions_ = 0;
  std::uint64_t replayed_ = 0;
  std::vector<std::uint8_t> scratch_;
  metrics::Counter& writes_;
  metrics::Counter& refused_bounds_;
  metrics::Counter& refused_unavailable_;
  metrics::Counter& refused_too_large_;
  metrics::Counter& errors_;
  metrics::Counter& compactions_ctr_;
  metrics::Gauge& live_bytes_;
  metrics::Gauge& healthy_;
};

}  // namespace hs::host
