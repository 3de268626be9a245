// JobLedger: the replicated job state of a role cluster (managers of a datacenter; gates later),
// as the deterministic state machine of a RaftNode. Every change the cluster must not forget is a
// log entry; every member applies the committed entries in order and holds the same ledger.
//
// Entries (LedgerOp) and the rules apply() enforces, identically on every member:
//   accept    a job with its plan and idempotency key. A known job id is a duplicate (no change);
//             a known key with another job id is a conflict; over max_jobs it is refused.
//   dispatch  a workflow to a worker with a fence token. The token carries the proposer's Raft
//             term in its high 32 bits (make_token) and must be above the workflow's current token;
//             refused after a cancel was accepted (nothing starts after a cancel is acknowledged),
//             on a terminal job or workflow, and on an unknown job or workflow.
//   cancel    sets cancel_requested on a live job; a terminal job is unchanged (terminal stays
//             terminal, and a cancel never revives anything).
//   wf_done   a workflow's terminal state, accepted only for the workflow's current token and only
//             while the job is live: a late result of an older attempt, or any result after the job
//             ended, changes nothing.
//   job_done  the job's terminal state; once terminal a job never changes state again.
//   retire    forgets a terminal job (retention over) and its idempotency key.
// Each apply returns an LedgerOutcome (to the proposer's Done). HS_ASSERT states the invariants the
// rules rely on: a workflow's token only grows, a terminal job or workflow never leaves its state,
// applied indexes only grow. The ledger is bounded by max_jobs (retire frees a slot).
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

enum class LedgerOp : std::uint8_t { accept = 1, dispatch, cancel, wf_done, job_done, retire };

enum class LedgerOutcome : std::uint64_t {
  applied = 0,
  duplicate,     // accept: the job id is known (same payload)
  conflict,      // accept: the key or job id is taken by another payload
  full,          // accept: max_jobs reached
  unknown_job,   // the job (or workflow index) does not exist
  job_terminal,  // the job ended: nothing changes it any more
  cancelled,     // dispatch after a cancel was accepted
  stale_token,   // dispatch: token not above the current one; wf_done: not the current token
  wf_terminal,   // the workflow ended already
  not_terminal,  // retire of a live job
  malformed,     // the entry did not decode (counted; never expected from our own proposers)
};
const char* name(LedgerOutcome o);

// A fence token: the Raft term of the leader that issued it, then a per-job sequence.
inline std::uint64_t make_token(std::uint64_t term, std::uint32_t seq) { return (term << 32) | seq; }
inline std::uint64_t token_term(std::uint64_t token) { return token >> 32; }

struct LedgerWorkflow {
  WfState state = WfState::pending;
  NodeId worker = 0;
  std::uint64_t token = 0;
  std::uint32_t attempts = 0;
  std::uint32_t cores = 0;
  std::uint64_t completed = 0, failed = 0;
  std::string error;
  HS_FIELDS(state, worker, token, attempts, cores, completed, failed, error)
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
  HS_FIELDS(spec, digest, state, cancel_requested, error, accepted_index, token_hw, workflows)
};

// One log entry. Fields that an op does not use stay at their defaults.
struct LedgerEntry {
  LedgerOp op = LedgerOp::accept;
  std::uint64_t term = 0;  // the proposer's term (informational; the token carries the fence)
  std::string job_id;
  JobSpec spec;              // accept
  std::uint64_t digest = 0;  // accept
  std::uint32_t workflow = 0;
  NodeId worker = 0;        // dispatch
  std::uint64_t token = 0;  // dispatch, wf_done
  std::uint32_t cores = 0;  // dispatch
  std::uint8_t state = 0;   // wf_done: WfState; job_done: JobState
  std::uint64_t completed = 0, failed = 0;
  std::string error;
  HS_FIELDS(op, term, job_id, spec, digest, workflow, worker, token, cores, state, completed, failed, error)
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
  // Entries that did not decode (never expected; a sign of a mixed-version bug).
  std::uint64_t malformed() const noexcept { return malformed_; }

 private:
  LedgerOutcome apply_entry(std::uint64_t index, LedgerEntry& e);
  LedgerOutcome accept(std::uint64_t index, LedgerEntry& e);
  LedgerOutcome dispatch(LedgerJob& j, const LedgerEntry& e);
  LedgerOutcome wf_done(LedgerJob& j, const LedgerEntry& e);
  LedgerOutcome job_done(LedgerJob& j, const LedgerEntry& e);
  LedgerOutcome retire(const std::string& id);

  Limits limits_;
  std::map<std::string, LedgerJob> jobs_;    // bounded by limits_.max_jobs
  std::map<std::string, std::string> keys_;  // idempotency key -> job id (one per job)
  std::uint64_t applied_ = 0;
  std::uint64_t malformed_ = 0;
};

}  // namespace hs::cluster
