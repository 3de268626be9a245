// GateLedger: the replicated job state of the gate cluster, as the deterministic state machine of
// the gates' RaftNode (cluster/raft.hpp). A gate's job runs as one share per datacenter; each
// datacenter's managers run their share as a job of their own (same job id) and stay the source of
// truth for its execution. The gate ledger holds what the gate tier must not forget: the job, its
// datacenters, its owner's fence, which datacenters accepted it, each share's final result, cancels
// and the job's end. See docs/gates.md.
//
// Entries (GateOp) and the rules apply() enforces on every gate:
//   accept       a job with its spec, idempotency key and chosen datacenters (one share each), owned
//                by the proposer with `fence`. A known job id or key with the same payload is a
//                duplicate, with another payload a conflict; over max_jobs it is refused (full).
//   own          a new owner (the ring's successor of a dead owner, or a gate handed the job) takes
//                the job: the entry carries the fence its proposer saw and the job's fence becomes
//                that + 1 (it only grows); another fence is stale. Terminal jobs are owned too
//                (their cancels fan out, their retention ends).
// Every entry but accept and a client's cancel (fence 0) carries the job's fence as its proposer
// knows it; one that is not the job's fence is refused (stale_fence): a former owner's word.
//   dc_accepted  a datacenter's managers committed the share (its submit was acknowledged).
//   reroute      a share not yet accepted moves to another datacenter (the first refused it).
//   dc_done      a share's final result (the datacenter's view) or its failure (unreachable, lost).
//                On a share already decided it is recorded as late and changes nothing else.
//   cancel       the job is cancelled: terminal at once; live shares are stopped by the owner.
//   job_done     the owner decided the end: timeout, or a best-effort end (partial); like cancel.
//   cancel_done  every share confirmed its stop or was declared unreachable (cancel_errors).
//   checkpoint   the owner's elapsed time and the running shares' counts (totals never go back).
//   retire       forgets a terminal job (retention over) and its key.
// After each entry a live job whose shares have all ended ends: completed if all completed,
// partial if at least `required` (min_datacenters, or all) completed, otherwise timeout if a share
// timed out, else failed. Once terminal, a job or a share never changes state again (HS_ASSERT).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "hyperscale/cluster/ledger.hpp"  // make_token, token_term: fences carry the Raft term
#include "hyperscale/cluster/messages.hpp"
#include "hyperscale/cluster/raft.hpp"

namespace hs::gate {

using cluster::JobSpec;
using cluster::JobState;
using cluster::NodeId;

enum class GateOp : std::uint8_t {
  accept = 1,
  own,
  dc_accepted,
  reroute,
  dc_done,
  cancel,
  job_done,
  cancel_done,
  checkpoint,
  retire,
  kLast = retire
};

enum class GateOutcome : std::uint64_t {
  applied = 0,
  duplicate,     // accept: the job id is known (same payload)
  conflict,      // accept: the key or job id is taken by another payload
  full,          // accept: max_jobs reached
  unknown_job,   // the job or share does not exist
  job_terminal,  // cancel/job_done of an ended job
  stale_fence,   // own: the fence is not above the job's
  share_done,    // dc_accepted/reroute of a share already ended or accepted
  late,          // dc_done of a share already decided: recorded as late
  not_terminal,  // retire of a live job
  malformed,     // the entry did not decode or is inconsistent
};
const char* name(GateOutcome o);

struct GateShare {
  std::string dc;
  JobState state = JobState::submitted;  // submitted until accepted, running once accepted
  bool accepted = false;
  std::uint64_t completed = 0, failed = 0;
  std::string error;
  std::vector<cluster::WorkflowView> workflows;  // the datacenter's final view (dc_done)
  bool late = false;
  std::vector<std::string> tried;  // datacenters that refused the share (reroute)
  // The gate ended the share without the datacenter's word (unreachable, lost, stop not
  // confirmed): it may still run there, so the owner tells the datacenter to stop it.
  bool gate_decided = false;
  HS_FIELDS(dc, state, accepted, completed, failed, error, workflows, late, tried, gate_decided)
};

struct GateJob {
  JobSpec spec;
  std::uint64_t digest = 0;
  JobState state = JobState::submitted;  // running from accept until it ends
  bool cancel_requested = false;
  bool cancel_complete = false;
  std::string error;
  std::uint64_t accepted_index = 0;
  std::uint64_t fence = 0;  // the owner's (gate term << 32 | seq)
  NodeId owner = 0;
  std::vector<GateShare> shares;
  std::uint32_t required = 0;  // completed shares for partial (min_datacenters, or all)
  bool routed = false;         // datacenters picked by the gate (a refusal may reroute)
  std::uint64_t elapsed_ms = 0;
  std::vector<std::string> cancel_errors;
  HS_FIELDS(spec, digest, state, cancel_requested, cancel_complete, error, accepted_index, fence, owner, shares,
            required, routed, elapsed_ms, cancel_errors)
};

struct ShareCount {
  std::uint32_t share = 0;
  std::uint64_t completed = 0, failed = 0;
  HS_FIELDS(share, completed, failed)
};

struct GateEntry {
  GateOp op = GateOp::accept;
  std::uint64_t term = 0;
  std::string job_id;
  JobSpec spec;                                  // accept
  std::uint64_t digest = 0;                      // accept
  std::vector<std::string> dcs;                  // accept: one share each
  bool routed = false;                           // accept
  std::uint64_t fence = 0;                       // accept: the first fence; others: the job's, as seen
  NodeId owner = 0;                              // accept, own
  std::uint32_t share = 0;                       // dc_accepted, reroute, dc_done
  std::string dc;                                // reroute: the new datacenter
  std::uint8_t state = 0;                        // dc_done, job_done: JobState
  std::uint64_t completed = 0, failed = 0;       // dc_done
  std::string error;                             // dc_done, job_done, cancel (reason), reroute (why)
  std::vector<cluster::WorkflowView> workflows;  // dc_done
  std::uint64_t elapsed_ms = 0;                  // every op: the proposer's view
  std::vector<ShareCount> counts;                // checkpoint, cancel, job_done
  std::vector<std::string> notes;                // cancel_done: shares declared unreachable
  bool gate_decided = false;                     // dc_done: the gate's decision, not the datacenter's result
  HS_FIELDS(op, term, job_id, spec, digest, dcs, routed, fence, owner, share, dc, state, completed, failed, error,
            workflows, elapsed_ms, counts, notes, gate_decided)
};

std::vector<std::uint8_t> encode_entry(GateEntry& e);
bool decode_entry(std::span<const std::uint8_t> in, GateEntry& out, const char** why);

// The job's state once every share ended (see above).
JobState settle_state(const GateJob& j);

class GateLedger final : public cluster::StateMachine {
 public:
  struct Limits {
    std::size_t max_jobs = 10'000;
  };
  GateLedger() : GateLedger(Limits{}) {}
  explicit GateLedger(Limits limits) : limits_(limits) {}

  std::uint64_t apply(std::uint64_t index, std::span<const std::uint8_t> command) override;
  node::Bytes snapshot() override;
  Status restore(std::span<const std::uint8_t> snapshot) override;

  const GateJob* job(const std::string& id) const;
  const std::map<std::string, GateJob>& jobs() const noexcept { return jobs_; }
  std::optional<std::string> job_for_key(const std::string& key) const;
  std::uint64_t applied_index() const noexcept { return applied_; }
  std::size_t size() const noexcept { return jobs_.size(); }
  std::size_t active() const noexcept { return active_; }  // jobs not terminal
  std::uint64_t malformed() const noexcept { return malformed_; }
  std::uint64_t stale() const noexcept { return stale_; }  // entries refused for a stale fence

 private:
  GateOutcome apply_entry(std::uint64_t index, GateEntry& e);
  GateOutcome accept(std::uint64_t index, GateEntry& e);
  GateOutcome on_job(GateJob& j, GateEntry& e);
  static void end(GateJob& j, JobState s, const std::string& why);
  static void settle(GateJob& j);
  static void take_counts(GateJob& j, const GateEntry& e);

  Limits limits_;
  std::map<std::string, GateJob> jobs_;      // bounded by limits_.max_jobs
  std::map<std::string, std::string> keys_;  // idempotency key -> job id
  std::uint64_t applied_ = 0;
  std::uint64_t malformed_ = 0;
  std::uint64_t stale_ = 0;
  std::size_t active_ = 0;  // jobs not terminal (kept with every change of a job's state)
};

}  // namespace hs::gate
