// JobLedger: the replicated job state of a role cluster (managers of a datacenter; gates later),
// as the deterministic state machine of a RaftNode. Every change the cluster must not forget is a
// log entry; every member applies the committed entries in order and holds the same ledger. The
// leader acts (dispatches, answers clients, sends stops) only on applied entries.
//
// A workflow runs as one or more parts (issue 11, docs/cluster.md "Parts"): a part is a range of
// the workflow's global shards on one worker, with its own fence token, attempts and totals. The
// workflow is live while a part is (pending while its unfinished parts all wait for a worker); it
// ends when every part has ended: failed if one failed,
// cancelled if one was cancelled, completed otherwise. Its totals are the sums of its parts'.
//
// Entries (LedgerOp) and the rules apply() enforces, identically on every member:
//   accept      a job with its plan and idempotency key. A known job id or key with the same
//               payload is a duplicate (no change), with another payload a conflict; over
//               max_jobs it is refused (full).
//   split       the first placement of a pending workflow: every part at once (worker, cores, first
//               global shard, token), covering the workflow's shard_total shards exactly. Tokens
//               grow from part to part and start above every token of the job.
//   dispatch    one part again (re-placement after a loss: same shards, a new worker and token), or
//               a whole unsplit workflow as its one part. The token carries the proposer's Raft
//               term in its high 32 bits (make_token) and must be above every token of the job;
//               refused after a cancel or on a terminal job (nothing starts after a cancel is
//               acknowledged), on a terminal, live or stop-requested workflow or part.
//   wf_lost     a part's current attempt ended without a result (worker dead or silent, refused,
//               stuck). What the attempt acknowledged (completed, failed, started) is kept: done
//               iterations count, iterations in flight at the last acknowledgement are `lost`,
//               and the next attempt skips both (skip). A refusal (`uncounted`) puts the part back
//               to pending without spending a retry; otherwise a retry is spent if the part's and
//               the job's budgets allow, else the part fails. On a terminal job or a stop-requested
//               workflow the part becomes cancelled.
//   wf_done     a part's current attempt's result: only for its current token while it is live. On
//               a terminal job it is the stopped attempt's end: cancelled, with what it gathered.
//   cancel      the job is cancelled (terminal at once): pending workflows and parts are cancelled,
//               live parts keep running until their stop is confirmed (wf_done/wf_lost), with the
//               totals the leader saw frozen into the entry.
//   cancel_wf   one workflow: unsplit -> cancelled; pending parts cancelled, live ones stop.
//   job_done    a terminal state decided by the leader (timeout); like cancel otherwise.
//   checkpoint  the leader's elapsed time and the live parts' acknowledged totals (so a new leader
//               resumes the timeout, the totals and a lost part's remainder); never changes a state.
//   retire      forgets a terminal job (retention over) and its idempotency key.
//   gate_fence  raises the job's gate fence (the highest fence of the gate that owns the job,
//               docs/cluster.md "Gates") to the entry's; one not above it is stale_token. Allowed
//               on a terminal job too: it changes no state. accept records Submit.gate_fence, and a
//               cancel carrying a gate fence raises it as well (below the job's it is stale_token).
//   tombstone   a gate cancelled a job this ledger does not hold (its submit may still be on the
//               way): a record of the job id with no workflows, cancelled at once, carrying the gate
//               fence (required). An accept of that id is then a conflict (a tombstone has no
//               payload to match), so the late submit is refused instead of run; the tombstone is
//               terminal and retired after its retention like any cancelled job. On a known job id
//               it is a duplicate if that is a tombstone (its fence raised), a conflict otherwise.
// A part that fails fails its workflow: the workflow's other live parts are stopped (stop
// requested) and its pending parts cancelled. After each entry, pending workflows whose dependency
// failed or was cancelled fail or are cancelled, and a live job whose workflows are all terminal
// ends: failed if one failed, partial if one was cancelled, completed otherwise. Once terminal, a
// job, a workflow or a part never changes state again.
// Each apply returns a LedgerOutcome (to the proposer's Done). HS_ASSERT states the invariants the
// rules rely on: a part's token only grows, a terminal job, workflow or part never leaves its
// state, applied indexes only grow. The ledger is bounded by max_jobs (retire frees a slot).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "hyperscale/cluster/messages.hpp"
#include "hyperscale/cluster/raft.hpp"

namespace hs::cluster {

enum class LedgerOp : std::uint8_t {
  accept = 1,
  dispatch,
  cancel,
  wf_done,
  job_done,
  retire,
  wf_lost,
  cancel_wf,
  checkpoint,
  split,
  gate_fence,  // 11
  tombstone,
  kLast = tombstone
};
const char* name(LedgerOp op);

enum class LedgerOutcome : std::uint64_t {
  applied = 0,
  duplicate,     // accept: the job id is known (same payload); tombstone: already one
  conflict,      // accept: the key or job id is taken by another payload (or a tombstone); tombstone: a job
  full,          // accept: max_jobs reached
  unknown_job,   // the job (or workflow index) does not exist
  job_terminal,  // the job ended: nothing changes it any more
  cancelled,     // dispatch after a cancel was accepted
  stale_token,   // dispatch: token not above the current one; wf_done/wf_lost: not the current token;
                 // gate_fence: not above the job's; cancel: a gate fence below the job's
  wf_terminal,   // the workflow ended already
  wf_busy,       // dispatch of a workflow or part that is live or whose stop was requested
  not_terminal,  // retire of a live job
  malformed,     // the entry did not decode, or is inconsistent (counted; never expected from our proposers)
};
const char* name(LedgerOutcome o);

// A fence token: the Raft term of the leader that issued it, then a per-job sequence.
inline std::uint64_t make_token(std::uint64_t term, std::uint32_t seq) { return (term << 32) | seq; }
inline std::uint64_t token_term(std::uint64_t token) { return token >> 32; }

inline constexpr std::size_t kMaxExcluded = 64;       // workers a workflow failed on, remembered
inline constexpr std::size_t kMaxCancelErrors = 100;  // unconfirmed stops noted per job

inline constexpr std::size_t kMaxParts = 4096;             // parts of one workflow
inline constexpr std::uint32_t kMaxShardTotal = 1u << 20;  // global shards of one workflow (load::kMaxGlobalShards)

// One part of a workflow: global shards [shard_first, shard_first + cores) of the workflow's
// shard_total (shard_total 0: the whole workflow on `cores` cores), on one worker at a time.
struct LedgerPart {
  WfState state = WfState::pending;  // pending: waiting for a (re)placement
  NodeId worker = 0;
  std::uint64_t token = 0;
  std::uint32_t attempts = 0;  // placements that counted (1 + retries)
  std::uint32_t shard_first = 0, cores = 0;
  std::uint64_t completed = 0, failed = 0;            // every attempt's acknowledged iterations (done ok / failed)
  std::uint64_t base_completed = 0, base_failed = 0;  // the part of those from earlier attempts
  std::uint64_t started = 0;                          // iterations the current attempt acknowledged as begun
  std::uint64_t skip = 0;  // iterations earlier attempts accounted for (done or lost): not run again
  std::uint64_t lost = 0;  // iterations in flight when an attempt was lost: neither done nor re-run
  std::string error;
  std::vector<NodeId> excluded;  // workers this part failed on (bounded)
  std::vector<std::uint8_t> stats;
  KeyValues published;
  HS_FIELDS(state, worker, token, attempts, shard_first, cores, completed, failed, base_completed, base_failed, started,
            skip, lost, error, excluded, stats, published)
};

// The fields before `parts` are the workflow's aggregate over its parts (kept in that place for the
// codec's evolution rules): worker is that of a workflow of one part (0 otherwise), token the
// highest of its parts, attempts and cores sums, published the union of the parts' values. stats is
// unused since parts: each part holds its own, once (views show a one-part workflow's part's).
struct LedgerWorkflow {
  WfState state = WfState::pending;
  NodeId worker = 0;
  std::uint64_t token = 0;
  std::uint32_t attempts = 0;
  std::uint32_t cores = 0;
  std::uint64_t completed = 0, failed = 0;
  std::string error;
  bool stop_requested = false;
  std::vector<NodeId> excluded;     // unused since parts (each part has its own)
  std::vector<std::uint8_t> stats;  // unused since parts (see above)
  KeyValues published;              // "<workflow>.<key>" values for dependants
  std::vector<LedgerPart> parts;    // empty until the workflow is placed
  std::uint32_t shard_total = 0;    // global shards of the split (0: one whole part)
  std::uint64_t lost = 0;           // sum of the parts' lost iterations
  std::uint64_t start_at_ms = 0;    // wall-clock start every part shares (Unix ms; 0: each at once)
  HS_FIELDS(state, worker, token, attempts, cores, completed, failed, error, stop_requested, excluded, stats, published,
            parts, shard_total, lost, start_at_ms)
};

struct LedgerJob {
  JobSpec spec;
  std::uint64_t digest = 0;
  JobState state = JobState::submitted;
  bool cancel_requested = false;
  std::string error;
  std::uint64_t accepted_index = 0;  // log index of the accept entry
  std::uint64_t token_hw = 0;        // highest token issued for the job
  std::vector<LedgerWorkflow> workflows;
  std::uint32_t retries_used = 0;
  std::uint64_t elapsed_ms = 0;  // the highest elapsed time a leader recorded
  std::vector<std::string> cancel_errors;
  std::uint64_t gate_fence = 0;  // the highest fence of the owning gate seen (0: not a gate's job)
  bool tombstone = false;        // a gate's cancel of a job never accepted here (no workflows)
  HS_FIELDS(spec, digest, state, cancel_requested, error, accepted_index, token_hw, workflows, retries_used, elapsed_ms,
            cancel_errors, gate_fence, tombstone)
};

// A part's placement in a split entry.
struct PartAssign {
  NodeId worker = 0;
  std::uint32_t cores = 0;
  std::uint32_t shard_first = 0;
  std::uint64_t token = 0;
  HS_FIELDS(worker, cores, shard_first, token)
};
// A live part's acknowledged totals (checkpoint, cancel, job_done).
struct PartProgress {
  std::uint32_t workflow = 0, part = 0;
  std::uint64_t completed = 0, failed = 0, started = 0;
  HS_FIELDS(workflow, part, completed, failed, started)
};

// One log entry. Fields that an op does not use stay at their defaults.
struct LedgerEntry {
  LedgerOp op = LedgerOp::accept;
  std::uint64_t term = 0;  // the proposer's term (informational; the token carries the fence)
  std::string job_id;
  JobSpec spec;              // accept
  std::uint64_t digest = 0;  // accept
  std::uint32_t workflow = 0;
  NodeId worker = 0;                        // dispatch
  std::uint64_t token = 0;                  // dispatch, wf_done, wf_lost
  std::uint32_t cores = 0;                  // dispatch
  std::uint8_t state = 0;                   // wf_done: WfState; job_done: JobState
  std::uint64_t completed = 0, failed = 0;  // wf_done: the attempt's result; wf_lost: its last acknowledged totals
  std::string error;
  std::uint64_t elapsed_ms = 0;     // every op: the proposer's view of the job's elapsed time
  bool uncounted = false;           // wf_lost: a refusal (no retry spent)
  bool exclude = false;             // wf_lost: remember the worker as failed for this part
  std::string note;                 // wf_lost/wf_done: appended to the job's cancel_errors
  std::vector<std::uint8_t> stats;  // wf_done
  KeyValues published;              // wf_done
  // cancel/job_done/checkpoint of entries before parts: per workflow, for its part 0 (still applied)
  std::vector<std::pair<std::uint64_t, std::uint64_t>> progress;
  std::uint32_t part = 0;                   // dispatch, wf_done, wf_lost: the part
  std::vector<PartAssign> parts;            // split
  std::uint32_t shard_total = 0;            // split
  std::uint64_t started = 0;                // wf_lost: iterations the attempt acknowledged as begun
  std::vector<PartProgress> part_progress;  // cancel/job_done/checkpoint
  std::uint64_t start_at_ms = 0;            // split: the parts' shared wall-clock start
  std::uint64_t gate_fence = 0;             // accept, cancel, gate_fence, tombstone: the gate's fence
  HS_FIELDS(op, term, job_id, spec, digest, workflow, worker, token, cores, state, completed, failed, error, elapsed_ms,
            uncounted, exclude, note, stats, published, progress, part, parts, shard_total, started, part_progress,
            start_at_ms, gate_fence)
};

std::vector<std::uint8_t> encode_entry(LedgerEntry& e);
bool decode_entry(std::span<const std::uint8_t> in, LedgerEntry& out, const char** why);

class JobLedger final : public StateMachine {
 public:
  struct Limits {
    std::size_t max_jobs = 10'000;
  };
  JobLedger() : JobLedger(Limits{}) {}
  explicit JobLedger(Limits limits) : limits_(limits) {}

  std::uint64_t apply(std::uint64_t index, std::span<const std::uint8_t> command) override;
  node::Bytes snapshot() override;
  Status restore(std::span<const std::uint8_t> snapshot) override;

  const LedgerJob* job(const std::string& id) const;
  const std::map<std::string, LedgerJob>& jobs() const noexcept { return jobs_; }
  std::optional<std::string> job_for_key(const std::string& key) const;
  std::uint64_t applied_index() const noexcept { return applied_; }
  std::size_t size() const noexcept { return jobs_.size(); }
  // Jobs not yet terminal, kept as entries apply (a manager checks it at every submit: no scan).
  std::size_t active() const noexcept { return active_; }
  // Entries that did not decode (never expected; a sign of a mixed-version bug).
  std::uint64_t malformed() const noexcept { return malformed_; }

 private:
  LedgerOutcome apply_entry(std::uint64_t index, LedgerEntry& e);
  LedgerOutcome accept(std::uint64_t index, LedgerEntry& e);
  LedgerOutcome on_job(LedgerJob& j, LedgerEntry& e);
  LedgerOutcome dispatch(LedgerJob& j, const LedgerEntry& e);
  LedgerOutcome split(LedgerJob& j, const LedgerEntry& e);
  LedgerOutcome wf_done(LedgerJob& j, LedgerEntry& e);
  LedgerOutcome wf_lost(LedgerJob& j, const LedgerEntry& e);
  LedgerOutcome end_job(LedgerJob& j, const LedgerEntry& e, JobState s);
  LedgerOutcome cancel_wf(LedgerJob& j, const LedgerEntry& e);
  LedgerOutcome retire(const std::string& id);
  LedgerOutcome tombstone(std::uint64_t index, const LedgerEntry& e);
  static void settle(LedgerJob& j);  // parts into workflows, dependency cascade, then the job's end
  static void apply_progress(LedgerJob& j, const LedgerEntry& e);

  Limits limits_;
  std::map<std::string, LedgerJob> jobs_;    // bounded by limits_.max_jobs
  std::map<std::string, std::string> keys_;  // idempotency key -> job id (one per job)
  std::uint64_t applied_ = 0;
  std::uint64_t malformed_ = 0;
  std::size_t active_ = 0;  // jobs_ not terminal
};

}  // namespace hs::cluster
