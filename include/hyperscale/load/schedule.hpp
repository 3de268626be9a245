// Executor schedules, sans-IO: when each iteration of a workflow starts on one shard, given the time.
// The shard's I/O layer calls poll() when next_wakeup() is reached and on_done() when an iteration
// finishes; tests drive the same object with a ManualClock.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "hyperscale/base/status.hpp"
#include "hyperscale/base/time.hpp"
#include "hyperscale/load/plan.hpp"

namespace hs::load {

// One shard's part of a workflow (even split, remainder to the first shards). `shard` and `shards` are
// global: a workflow spread over several workers (a "part" each, below) runs on `shards` shards in
// total, and a worker's local shard i of the part starting at global shard f is global shard f + i.
struct ShardShare {
  int shard = 0;                            // global shard index in [0, shards)
  int shards = 1;                           // global shard count
  std::uint64_t vus = 0;                    // constant-vus: VUs on this shard; arrival rate: max in flight
  std::optional<std::uint64_t> iterations;  // cap on iterations started on this shard
  bool active = true;                       // false: this shard has nothing to do
  // Iterations of this shard's budget an earlier attempt already accounted for (part_shares below),
  // already taken off `iterations`. Arrival rate: the shard's first arrival is its `skipped`-th, so the
  // arrivals it still runs keep their place in the schedule.
  std::uint64_t skipped = 0;
};
ShardShare share_for(const Workflow& wf, int shard, int shards);

// Parts: one workflow over several workers (docs/load.md, "Parts"). A workflow that runs on C cores in
// total is ONE generator of C global shards; a part is the contiguous range of global shards
// [first_shard, first_shard + shards) one worker runs (its local shard i is global shard first_shard + i,
// see RunSpec::part in runner.hpp). Every figure of a part is the sum of share_for() over its global
// shards, so the parts of a workflow add up exactly to the workflow, and their merged arrival schedule is
// the one of a single generator (global arrival j runs on global shard j mod C).
inline constexpr std::uint32_t kMaxGlobalShards = 1u << 20;  // cores one workflow may run on in total
struct PartShare {
  std::uint32_t first_shard = 0;  // first global shard of the part
  std::uint32_t shards = 0;       // its global shard count (= the cores it runs on)
  // The sum of its shards' ShardShare::vus. constant-vus: its VUs (proportional to its cores; the parts
  // sum to `vus`). constant-arrival-rate: its cap on iterations in flight as its shards apply it (each
  // shard at least 1, so the parts may sum to more than `max_vus` when it is below the cores). setup: 1
  // on the part holding global shard 0, 0 elsewhere.
  std::uint64_t vus = 0;
  std::optional<std::uint64_t> iterations;  // with an `iterations` budget: its share (the parts sum to it)
  std::uint64_t max_vus = 0;                // constant-arrival-rate: its share of `max_vus` (sums to it); else 0
  bool active = false;                      // false: the part has nothing to do (need not be dispatched)
};
// Splits `wf` over parts of cores_per_part[k] cores each, in that order (part k's first shard is the sum
// of the cores before it). Errors (nothing returned): no parts, a part of 0 cores, more than
// kMaxGlobalShards cores in total. A setup workflow stays one part: only the part holding global shard 0
// is active (vus 1, iterations 1); the others get nothing.
Result<std::vector<PartShare>> split_parts(const Workflow& wf, const std::vector<std::uint32_t>& cores_per_part);

// The shares of the `shards` global shards [first, first + shards) of a workflow of `total` global shards
// (share_for of each), for a part run again after its worker was lost: `skip_iterations` of the part's
// `iterations` budget were accounted for by an earlier attempt. The skip is spread evenly over the
// shards that have iterations (ShardShare::skipped; earlier shards take the remainder, none more than its
// share), as the earlier attempt ran them side by side: the part keeps all its VUs busy, and with the
// arrival rate each shard resumes near where it stopped. The part runs max(0, budget - skip) iterations
// in all; a shard left with none is inactive. Ignored (shares as share_for gives them) for a workflow
// without an `iterations` budget and for a setup workflow (it runs once, whole). The caller checks
// first + shards <= total.
std::vector<ShardShare> part_shares(const Workflow& wf, std::uint32_t first, std::uint32_t shards, std::uint32_t total,
                                    std::uint64_t skip_iterations = 0);

class Driver {
 public:
  struct Start {
    std::uint64_t vu;  // VU slot in [0, share.vus)
    Instant intended;  // scheduled start (arrival rate) or actual start (constant VUs)
  };
  enum class Phase { running, draining, done };
  static constexpr Instant kNever = Instant::max();

  Driver(const Workflow& wf, ShardShare share, Instant start);

  // Appends the iterations due at `now` to `out`. Drops (arrival rate, all slots busy) are counted.
  void poll(Instant now, std::vector<Start>& out);
  // An iteration on slot `vu` finished at `now` (frees the slot).
  void on_done(std::uint64_t vu, Instant now);
  // Iterations still running at graceful-stop expiry were interrupted by the I/O layer.
  void on_interrupted(std::uint64_t vu);
  // The earliest time poll() has something to do (a start, a drop, or a phase change).
  Instant next_wakeup(Instant now) const;
  Phase phase(Instant now) const;
  // After duration + graceful_stop with iterations still in flight: the caller interrupts them.
  bool graceful_expired(Instant now) const { return now >= end_ + graceful_ && inflight_ > 0; }
  // Cancel: no iteration starts from `now` on; the ones in flight get at most `grace` (and never more
  // than the graceful stop they already had) before graceful_expired() says to interrupt them.
  void stop(Instant now, Duration grace);

  Instant start() const { return start_; }
  Instant end() const { return end_; }
  std::uint64_t started() const { return started_; }
  std::uint64_t completed() const { return completed_; }
  std::uint64_t dropped() const { return dropped_; }
  std::uint64_t interrupted() const { return interrupted_; }
  std::uint64_t inflight() const { return inflight_; }

 private:
  bool budget_left() const { return !share_.iterations || started_ + dropped_ < *share_.iterations; }
  Instant due(std::uint64_t k) const;

  Executor executor_;
  ShardShare share_;
  Instant start_, end_;
  Duration graceful_, pause_;
  // arrival rate
  std::uint64_t rate_ = 0;
  Duration unit_{0};
  std::uint64_t next_k_ = 0;
  std::vector<std::uint64_t> free_;  // free VU slots (stack)
  // constant VUs: slots ready at a time. Ready times are monotonic, so a FIFO suffices: a fixed ring of
  // share.vus entries (every VU is in it at most once), so the steady state never allocates.
  struct Ready {
    Instant at;
    std::uint64_t vu;
  };
  std::vector<Ready> ring_;
  std::size_t head_ = 0, count_ = 0;
  void push_ready(Instant at, std::uint64_t vu) {
    ring_[(head_ + count_) % ring_.size()] = {at, vu};
    ++count_;
  }
  std::uint64_t started_ = 0, completed_ = 0, dropped_ = 0, interrupted_ = 0, inflight_ = 0;
};

}  // namespace hs::load
