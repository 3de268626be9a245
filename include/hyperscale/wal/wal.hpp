// Write-ahead log owned by one shard: group commit on io_uring, recovery at open, checkpoints,
// fail-stop on I/O errors, bounded queue.
//
//   WalOptions o; o.dir = "/var/lib/hs/wal";
//   auto w = Wal::open(reactor, o, [&](const RecordView& r) { replay(r); });  // recovery + replay
//   auto lsn = (*w)->append(kJobCreated, bytes, [](Status st) {
//     // runs on the owning shard, only after the record is durable (or with the error)
//   });
//   if (!lsn.ok()) ...  // backpressure (queue full) or the log has failed: nothing was queued
//
// Appends issued during one loop turn become one write + one fdatasync (linked SQEs) at turn end.
// One batch is in flight at a time; appends made meanwhile wait for the next batch. A write or sync
// error makes the log fail-stop: every pending and every later append fails with that error, it is
// logged once and counted in hs_wal_errors_total, and health() returns it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "hyperscale/base/small_fn.hpp"
#include "hyperscale/base/status.hpp"
#include "hyperscale/wal/format.hpp"
#include "hyperscale/wal/recovery.hpp"

namespace hs::runtime {
class Reactor;
}

namespace hs::wal {

enum class Durability {
  fsync,  // default: an append completes after write + fdatasync
  none,   // write only (tests, benchmarks of the non-durable path): lost on power failure
};
const char* durability_name(Durability d) noexcept;

// Completion of an I/O submission: a byte count / 0, or -errno.
using IoDone = SmallFn<void(int res), 48>;

// The I/O the WAL does on its hot path, behind a small interface so tests can inject errors.
// Implementations call `done` on the owning shard's thread.
class WalIo {
 public:
  virtual ~WalIo() = default;
  // Queues a write of [buf, buf+len) at `offset` of `fd`, linked to an fdatasync when `sync`.
  // `write_done` gets the write result, `sync_done` (only when `sync`) the fdatasync result
  // (-ECANCELED if the write failed). Fails without calling either when the ring has no space.
  virtual Status write_and_sync(int fd, const std::uint8_t* buf, std::size_t len, std::uint64_t offset, bool sync,
                                IoDone write_done, IoDone sync_done) = 0;
};

// io_uring implementation on the reactor's ring.
std::unique_ptr<WalIo> make_uring_io(runtime::Reactor& reactor);

struct WalOptions {
  std::string dir;
  Durability durability = Durability::fsync;
  std::uint64_t segment_bytes = 32u << 20;  // roll over to a new segment past this size
  std::size_t max_batch_bytes = 1u << 20;   // one write carries at most this much (or one record)
  std::size_t max_batch_entries = 4096;
  std::size_t max_queued_bytes = 64u << 20;  // queued + in flight; past it append() = backpressure
  std::uint32_t max_payload = 4u << 20;      // <= kMaxPayload
  bool create_dir = true;
};

// Append completion: ok once durable, or the error.
using AppendDone = SmallFn<void(Status), 48>;

class Wal {
 public:
  // Recovers `o.dir` (see recovery.hpp), calling `visit` for every recovered record, then opens the
  // newest segment for appends. `io` defaults to the reactor's io_uring. Call on the owning shard.
  static Result<std::unique_ptr<Wal>> open(runtime::Reactor& reactor, WalOptions o, const RecordVisitor& visit = {},
                                           std::unique_ptr<WalIo> io = nullptr);
  // Appends queued and not yet submitted fail with `unavailable`; a batch in flight completes later.
  ~Wal();
  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  // Queues a record; returns its LSN. `done` runs on the owning shard after the record is durable,
  // or with the error. An error return (payload too large, backpressure, failed log) queues nothing
  // and `done` is never called.
  Result<Lsn> append(std::uint32_t type, std::span<const std::uint8_t> payload, AppendDone done);

  // Checkpoint: deletes whole segments whose records are all below `lsn` (never the active one).
  // Returns the number of segments deleted.
  Result<std::size_t> truncate_before(Lsn lsn);

  // OK while healthy; after an I/O error, that error (the log is fail-stop).
  const Status& health() const noexcept;
  Lsn next_lsn() const noexcept;     // LSN the next append gets
  Lsn durable_lsn() const noexcept;  // every LSN below this is durable (acknowledged)
  std::size_t queued_bytes() const noexcept;
  std::size_t segment_count() const noexcept;
  const RecoveryReport& recovery() const noexcept;
  // True while a batch is in flight or appends are queued.
  bool busy() const noexcept;

  struct Impl;

 private:
  explicit Wal(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace hs::wal
