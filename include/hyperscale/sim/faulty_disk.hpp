// FaultyDisk: the Disk a simulated node sees. It wraps the node's MemDisk (the medium that survives a
// crash) and injects disk faults, per node, under the control of a test (usually scheduled with
// Simulator::at). With no fault set it forwards every call unchanged.
//
// Faults:
//   refused write   refuse_next(n) / set_refuse_probability(p): put, erase, append and truncate_log
//                   return Errc::io_error ("injected write error (EIO)") and change nothing.
//   full            set_full(true): the disk's capacity becomes the bytes it holds now. A put or
//                   append that needs more room returns Errc::backpressure ("disk full (ENOSPC)") and
//                   changes nothing; erase and truncate_log still work, and the room they free can be
//                   used again. set_full(false) removes the cap.
//   fsync error     fail_next_syncs(n): the next n sync barriers to complete fail (sync_end returns
//                   an error; the simulator then fires the node's sync timer with kSyncFailed set in
//                   its tag, see node.hpp). A failed barrier makes nothing durable: the writes it
//                   covered stay unsynced until a later barrier succeeds.
//   unsynced writes set_crash_loss(mode): what a crash does to the writes made after the last
//   at a crash      completed barrier (a barrier covers the writes made before its Context::sync call):
//                     kNone      nothing is lost (the default, and the simulator's old behaviour)
//                     kAll       every unsynced write is undone, newest first
//                     kSuffix    a uniformly random number k in [0, n] of the n unsynced writes is
//                                kept (the oldest k, in write order); the others are undone
//                     kTornLast  every unsynced write is kept except the newest, which is torn
//   (a stall of the sync barrier is the simulator's: Simulator::stall_disk.)
//
// A torn write is one that reached the medium partially. For a write of n bytes (n >= 2) a length k
// is drawn uniformly in [1, n-1]:
//   append(log, r)   the log's last record is r's first k bytes (a short record: a reader that does
//                    not check a length or a checksum inside its records sees garbage)
//   put(key, v)      the key holds v[0, k) followed by the old value's bytes at offsets [k, |v|) as
//                    far as the old value reaches (an in-place overwrite of which only the first k
//                    bytes landed); a key that did not exist holds v[0, k)
// A write of 0 or 1 byte cannot be partial: it is undone. erase and truncate_log are metadata
// operations and atomic: a torn one is undone.
//
// Bookkeeping: while the crash-loss mode is not kNone (or track_durable is on), every successful
// write records how to undo it (a journal, newest last). A completed barrier drops the entries it
// covers. The journal is bounded (max_unsynced_writes entries and max_unsynced_bytes of saved data):
// past a bound its oldest entry is dropped, i.e. that write became durable early (the kernel wrote
// the page back on its own), counted in counters().journal_evicted. Setting kNone without tracking
// drops the journal (everything written so far counts as durable). Randomness (refusal draws, suffix
// length, tear length) comes from the disk's own Rng, so enabling a disk fault never shifts the
// network's random draws.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "hyperscale/base/random.hpp"
#include "hyperscale/base/status.hpp"
#include "hyperscale/node/node.hpp"
#include "hyperscale/sim/mem_disk.hpp"

namespace hs::sim {

// The simulator implements the node contract; its code names the contract's types unqualified.
using node::Bytes;
using node::Context;
using node::Disk;
using node::kSyncFailed;
using node::Node;
using node::NodeId;
using node::TimerId;

enum class CrashLoss : std::uint8_t { kNone, kAll, kSuffix, kTornLast };

class FaultyDisk final : public Disk {
 public:
  struct Limits {
    std::size_t max_unsynced_writes = 100'000;
    std::size_t max_unsynced_bytes = 64 << 20;
  };
  struct Counters {
    std::uint64_t writes = 0;           // successful writes
    std::uint64_t refused = 0;          // refused by refuse_next / refuse probability
    std::uint64_t refused_full = 0;     // refused because the disk is full
    std::uint64_t syncs_ok = 0;         // barriers completed
    std::uint64_t syncs_failed = 0;     // barriers failed (fail_next_syncs)
    std::uint64_t lost_at_crash = 0;    // writes undone at a crash
    std::uint64_t torn_at_crash = 0;    // writes torn at a crash
    std::uint64_t journal_evicted = 0;  // unsynced writes counted durable early (journal bound)
  };

  FaultyDisk(MemDisk& base, std::uint64_t seed) : FaultyDisk(base, seed, Limits{}) {}
  FaultyDisk(MemDisk& base, std::uint64_t seed, Limits limits) : base_(base), rng_(seed), limits_(limits) {}

  // ---- Disk ----
  Status put(const std::string& key, std::span<const std::uint8_t> value) override;
  std::optional<Bytes> get(const std::string& key) const override { return base_.get(key); }
  Status erase(const std::string& key) override;
  Status append(const std::string& log, std::span<const std::uint8_t> record) override;
  std::vector<Bytes> read_log(const std::string& log) const override { return base_.read_log(log); }
  Status truncate_log(const std::string& log) override;
  // Atomic: a crash undoes it whole (never torn), like an erase.
  Status replace_log(const std::string& log, std::span<const Bytes> records) override;

  // ---- faults (bad arguments get Errc::invalid_argument and change nothing) ----
  void refuse_next(std::uint32_t n) noexcept { refuse_next_ = n; }
  Status set_refuse_probability(double p);
  void set_full(bool full) noexcept;
  void fail_next_syncs(std::uint32_t n) noexcept { fail_syncs_ = n; }
  void set_crash_loss(CrashLoss mode);
  CrashLoss crash_loss() const noexcept { return mode_; }

  // ---- used by the simulator ----
  // The barrier position of a Context::sync made now (it covers every write made so far).
  std::uint64_t sync_begin() const noexcept { return seq_; }
  // Completes the barrier at `pos`: OK and the covered writes are durable, or the injected fsync error.
  Status sync_end(std::uint64_t pos);
  // The node crashed: applies the crash-loss mode to the unsynced writes, then all that is left is durable.
  void crash();

  // ---- observation ----
  // Keep the journal of unsynced writes even when a crash loses nothing (kNone), so durable_log()
  // can tell written from durable in every mode (checkers of "acknowledged only when durable").
  void track_durable(bool on);
  // The records of `log` a crash that lost every unsynced write would leave (what is durable now).
  // Without a journal (kNone and not tracking) every write counts as durable.
  std::vector<Bytes> durable_log(const std::string& log) const;
  std::size_t unsynced_writes() const noexcept { return journal_.size(); }
  bool full() const noexcept { return cap_.has_value(); }
  const Counters& counters() const noexcept { return counters_; }
  MemDisk& medium() noexcept { return base_; }

 private:
  struct Undo {
    enum Kind : std::uint8_t { kPut, kErase, kAppend, kTruncate, kReplace } kind;
    std::uint64_t seq = 0;
    std::string name;                // key or log
    std::optional<Bytes> old_value;  // kPut / kErase: the value before (nullopt: absent)
    std::vector<Bytes> old_records;  // kTruncate, kReplace: the log before
    std::size_t saved_bytes() const noexcept;
  };
  bool journaling() const noexcept { return mode_ != CrashLoss::kNone || track_; }
  Status check_refused(const char* op, const std::string& name);
  Status check_space(const char* op, const std::string& name, std::size_t grows_by);
  void record(Undo u);
  void undo(const Undo& u);
  void tear(const Undo& u);
  void drop_log_tail(const std::string& log);

  MemDisk& base_;
  Rng rng_;
  Limits limits_;
  CrashLoss mode_ = CrashLoss::kNone;
  std::uint32_t refuse_next_ = 0;
  double refuse_p_ = 0.0;
  std::uint32_t fail_syncs_ = 0;
  std::optional<std::size_t> cap_;  // set while full
  std::uint64_t seq_ = 0;           // successful writes so far (barrier positions)
  std::uint64_t durable_ = 0;       // writes up to this position are durable
  bool track_ = false;              // keep the journal in kNone too (track_durable)
  std::deque<Undo> journal_;        // unsynced writes, oldest first
  std::size_t journal_bytes_ = 0;
  Counters counters_;
};

}  // namespace hs::sim
