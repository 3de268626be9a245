// The role protocol between clients, managers and workers (channel kRole of the Mux). Every message
// is one type byte followed by its struct as a record (cluster/codec.hpp): a varint byte length,
// then the fields in the order HS_FIELDS lists them. Each struct lists its fields once, in io(),
// which serves both encoding and decoding. A struct inside a struct (a field, or an element of a
// vector) is a record of its own. JobLedger entries and snapshots use the same codec.
//
// Evolution rules (mixed minor versions in one cluster; tests/unit/cluster/test_codec.cpp checks
// each, tests/fuzz/cluster/fuzz_role_codec.cpp fuzzes the decoders):
//  1. A struct's fields are only ever appended at the end of its HS_FIELDS list, in a struct at
//     any depth (a vector element included). Never remove, reorder or change the type of a field;
//     one that is no longer used stays (and is sent as its default).
//  2. A newer sender's record carries fields this decoder does not know: they are after the ones
//     it knows and inside the record's length, so they are skipped (every record, at every depth;
//     before records, an element of a vector could not grow: an old decoder read the new field's
//     bytes as the next element).
//  3. An older sender's record ends before fields this decoder knows: they keep the struct's
//     default (decode into a default-constructed struct). A field cut in the middle, a record
//     longer than what contains it, or bytes after the message are errors, so a message cut at
//     any byte is refused.
//  4. Every length is bounded: strings by kMaxString, byte strings by kMaxBlob, vectors by kMaxItems
//     and by the bytes left, records by what contains them; integers must fit their field.
//  5. A message type a receiver does not know is counted and dropped (manager, worker), and a type
//     number is never reused (retired_* below). An enum field may carry a value added by a newer
//     version: a receiver treats a value it does not name as unknown (name() says "unknown").
//  Scalars, strings, byte strings, vectors of them and pairs (KeyValues) never change shape; only
//  structs grow. A change these rules do not allow is a new message type.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "hyperscale/cluster/codec.hpp"
#include "hyperscale/node/node.hpp"

namespace hs::cluster {

using node::NodeId;

inline constexpr std::size_t kMaxString = 64 * 1024;
inline constexpr std::size_t kMaxBlob = 4 * 1024 * 1024;
inline constexpr std::size_t kMaxItems = 100'000;

enum class MsgType : std::uint8_t {
  submit = 1,
  submit_ack,
  status_query,
  status_reply,
  cancel_job,
  cancel_reply,
  cancel_workflow,
  node_query,
  node_status,
  retired_replicate,      // 10, 11: the hand-made record replication (the ledger is on Raft now);
  retired_replicate_ack,  // never sent, counted as unknown if received
  heartbeat,
  heartbeat_ack,
  dispatch,
  dispatch_ack,
  progress,
  result,
  result_ack,
  stop_exec,
  stop_ack,
  retired_transfer,      // 21-24: per-job leader transfer and pulls, retired with per-job leaders: the
  retired_transfer_ack,  // Raft leader leads every job, and a worker follows the leader of the
  retired_pull,          // highest term it has heard (HeartbeatAck.term)
  retired_pull_reply,
  window_batch,  // 25: a part's live windows to the leader (docs/windows.md)
  window_ack,
  watch_query,  // a client asks the leader for a job's live windows
  watch_reply,
  dc_heartbeat,  // 29: a manager to every gate (docs/gates.md)
  dc_heartbeat_ack,
  job_fence,  // a gate that took a job over raises its fence at a datacenter's managers
  job_fence_ack,
  gate_proposal,  // 33: a gate that is not the Raft leader forwards a ledger entry to the leader
  gate_proposal_ack,
  kCount
};

// ---- field codec ----
// field(x) is called for each field of a struct (HS_FIELDS), operator() for any value.
struct Enc {
  Writer w;
  template <class T>
  void field(T& v) {
    (*this)(v);
  }
  void operator()(std::string& s) { w.str(s); }
  void operator()(std::vector<std::uint8_t>& b) { w.bytes(b); }
  void operator()(bool& v) { w.b(v); }
  void operator()(double& v) { w.f64(v); }
  void operator()(std::int64_t& v) { w.i64(v); }
  template <class T>
  requires(std::is_unsigned_v<T> || std::is_enum_v<T>) void operator()(T& v) { w.var(static_cast<std::uint64_t>(v)); }
  template <class T>
  void operator()(std::vector<T>& v) {
    w.var(v.size());
    for (auto& e : v) (*this)(e);
  }
  template <class A, class B>
  void operator()(std::pair<A, B>& p) {
    (*this)(p.first);
    (*this)(p.second);
  }
  template <class T>
  requires requires(T t, Enc& e) { t.io(e); }
  void operator()(T& t) {  // a record: the fields, then their length inserted before them
    const std::size_t at = w.out().size();
    t.io(*this);
    w.prefix_length(at);
  }
};

struct Dec {
  Reader r;
  template <class T>
  void field(T& v) {
    if (r.at_end()) return;  // not written by an older sender: keeps its default
    (*this)(v);
  }
  void operator()(std::string& s) { s = r.str(kMaxString); }
  void operator()(std::vector<std::uint8_t>& b) { b = r.bytes(kMaxBlob); }
  void operator()(bool& v) { v = r.b(); }
  void operator()(double& v) { v = r.f64(); }
  void operator()(std::int64_t& v) { v = r.i64(); }
  template <class T>
  requires(std::is_unsigned_v<T> || std::is_enum_v<T>) void operator()(T& v) {
    const std::uint64_t x = r.var();
    using U = typename std::conditional_t<std::is_enum_v<T>, std::underlying_type<T>, std::type_identity<T>>::type;
    if (x > static_cast<std::uint64_t>(static_cast<U>(~U{0}))) r.fail("integer out of range");
    v = static_cast<T>(x);
  }
  template <class T>
  void operator()(std::vector<T>& v) {
    const std::size_t n = r.count(kMaxItems);
    v.clear();
    v.resize(n);
    for (auto& e : v) {
      if (!r.ok()) break;
      (*this)(e);
    }
  }
  template <class A, class B>
  void operator()(std::pair<A, B>& p) {
    (*this)(p.first);
    (*this)(p.second);
  }
  template <class T>
  requires requires(T t, Dec& d) { t.io(d); }
  void operator()(T& t) {  // a record: the fields it has, then skip those of newer versions
    const std::size_t outer = r.enter();
    if (r.ok()) t.io(*this);
    r.leave(outer);
  }
};

#define HS_FIELDS(...)         \
  template <class IO>          \
  void io(IO& f) {             \
    hs_fields(f, __VA_ARGS__); \
  }
template <class IO, class... T>
void hs_fields(IO& f, T&... t) {
  (f.field(t), ...);
}

using KeyValues = std::vector<std::pair<std::string, std::string>>;

// ---- jobs ----
enum class Priority : std::uint8_t { auto_ = 0, low, normal, high, exclusive };
enum class JobState : std::uint8_t { submitted = 0, running, completed, failed, cancelled, timeout, partial };
enum class WfState : std::uint8_t { pending = 0, dispatched, running, completed, failed, cancelled };
inline bool terminal(JobState s) { return s >= JobState::completed; }
inline bool terminal(WfState s) { return s >= WfState::completed; }
const char* name(JobState s);
const char* name(WfState s);

struct WorkflowSpec {
  std::string name;
  std::vector<std::string> deps;
  std::uint32_t vus = 1;
  std::uint32_t cores = 0;  // 0: the manager decides (even split of what is free)
  Priority priority = Priority::auto_;
  std::vector<std::uint8_t> plan;  // opaque to the manager (the load engine's workflow file text)
  bool one_part = false;           // never split over several workers (setup workflows: they run once)
  HS_FIELDS(name, deps, vus, cores, priority, plan, one_part)
};

struct JobSpec {
  std::string job_id;
  std::string idempotency_key;
  std::uint64_t timeout_ms = 0;        // whole job; 0: none
  std::uint64_t stuck_ms = 0;          // a running workflow without progress this long is stuck; 0: off
  std::uint32_t retry_budget = 10;     // retries across the job (clamped)
  std::uint32_t workflow_retries = 3;  // retries per workflow (clamped)
  std::vector<WorkflowSpec> workflows;
  // Gates only (managers ignore them; a gate sends each datacenter the spec with them cleared):
  // the datacenters to run in (names), or how many the gate picks (0 with no names: 1); with
  // min_datacenters > 0 the job is best effort: it ends once that many datacenters completed and the
  // others ended or best_effort_ms passed after that (docs/gates.md).
  std::vector<std::string> datacenters;
  std::uint32_t datacenter_count = 0;
  std::uint32_t min_datacenters = 0;
  std::uint64_t best_effort_ms = 0;
  HS_FIELDS(job_id, idempotency_key, timeout_ms, stuck_ms, retry_budget, workflow_retries, workflows, datacenters,
            datacenter_count, min_datacenters, best_effort_ms)
};

// Error codes carried by replies (stable numbers; text in `error`).
enum class Err : std::uint8_t {
  none = 0,
  invalid,     // the request is wrong; retrying it unchanged fails again
  conflict,    // idempotency key reused with another payload, or job id taken
  not_leader,  // ask `leader`
  no_quorum,   // retry later
  overloaded,  // retry after retry_after_ms
  not_found,
  fence,        // stale fence token
  unavailable,  // e.g. no workers, replication timed out: retry later
};
const char* name(Err e);
inline bool retryable(Err e) {
  return e == Err::not_leader || e == Err::no_quorum || e == Err::overloaded || e == Err::unavailable;
}

struct Submit {
  std::uint64_t req = 0;
  JobSpec spec;
  // A gate's fence for the job (0 from a client): the manager keeps the highest it has seen and
  // refuses a gate's commands (cancel, job_fence) with a lower one.
  std::uint64_t gate_fence = 0;
  HS_FIELDS(req, spec, gate_fence)
};
struct SubmitAck {
  std::uint64_t req = 0;
  bool accepted = false;
  std::string job_id;
  Err code = Err::none;
  std::string error;
  NodeId leader = 0;
  std::uint32_t retry_after_ms = 0;
  HS_FIELDS(req, accepted, job_id, code, error, leader, retry_after_ms)
};

// One part of a workflow (ledger.hpp: LedgerPart), as clients see it.
struct PartView {
  WfState state = WfState::pending;
  NodeId worker = 0;
  std::uint64_t token = 0;
  std::uint32_t attempts = 0;
  std::uint32_t shard_first = 0, cores = 0;
  std::uint64_t completed = 0, failed = 0;
  std::uint64_t lost = 0;  // iterations in flight when an attempt was lost (neither done nor re-run)
  std::string error;
  std::vector<std::uint8_t> stats;  // this part's statistics (clients merge the parts')
  HS_FIELDS(state, worker, token, attempts, shard_first, cores, completed, failed, lost, error, stats)
};
struct WorkflowView {
  std::string name;
  WfState state = WfState::pending;
  std::uint64_t completed = 0, failed = 0;
  std::uint32_t attempts = 0;
  std::uint32_t cores = 0;
  NodeId worker = 0;
  std::uint64_t token = 0;
  std::string error;
  std::vector<std::uint8_t> stats;
  KeyValues published;
  bool enqueued = false;
  std::vector<PartView> parts;    // empty until placed; stats above are a one-part workflow's only
  std::uint32_t shard_total = 0;  // global shards of the split (0: one whole part)
  std::uint64_t lost = 0;
  std::vector<std::uint8_t> plan;  // the workflow file's text (JobSpec): only when StatusQuery.with_plan
  HS_FIELDS(name, state, completed, failed, attempts, cores, worker, token, error, stats, published, enqueued, parts,
            shard_total, lost, plan)
};
// One datacenter's share of a gate's job (JobView.datacenters).
struct DcView {
  std::string name;
  JobState state = JobState::submitted;  // submitted: not yet accepted by the datacenter
  bool accepted = false;                 // the datacenter's managers committed the job
  std::uint64_t completed = 0, failed = 0;
  std::string error;
  NodeId leader = 0;                    // the datacenter's leading manager, as the gate last knew it
  std::vector<WorkflowView> workflows;  // the datacenter's view (final once state is terminal)
  bool late = false;                    // a result arrived after the share had been decided: recorded, not counted
  std::vector<std::string> tried;       // datacenters that refused the share before this one
  HS_FIELDS(name, state, accepted, completed, failed, error, leader, workflows, late, tried)
};
struct JobView {
  std::string job_id;
  JobState state = JobState::submitted;
  NodeId leader = 0;
  std::uint64_t completed = 0, failed = 0;
  std::uint32_t retries_used = 0, retry_budget = 0, workflow_retries = 0;
  std::string error;
  std::vector<WorkflowView> workflows;
  std::vector<std::string> cancel_errors;
  // A gate's job: one entry per datacenter share (workflows above are merged across them: counts
  // summed, parts concatenated), the owner's fence, and whether every share confirmed a cancel.
  std::vector<DcView> datacenters;
  std::uint64_t fence = 0;
  bool cancel_complete = false;
  NodeId owner = 0;  // a gate's job: the gate that owns it (docs/gates.md "Ownership")
  HS_FIELDS(job_id, state, leader, completed, failed, retries_used, retry_budget, workflow_retries, error, workflows,
            cancel_errors, datacenters, fence, cancel_complete, owner)
};
struct StatusQuery {
  std::uint64_t req = 0;
  std::string job_id;
  bool with_plan = false;  // fill WorkflowView.plan (`hyperscale results`; status replies stay small otherwise)
  HS_FIELDS(req, job_id, with_plan)
};
struct StatusReply {
  std::uint64_t req = 0;
  bool found = false;
  JobView job;
  // With found = false: none (this node is sure: no such job), or not_leader / unavailable when its
  // copy may lag (a gate that does not lead): ask `leader`, or again later.
  Err code = Err::none;
  NodeId leader = 0;
  HS_FIELDS(req, found, job, code, leader)
};

struct CancelJob {
  std::uint64_t req = 0;
  std::string job_id;
  std::uint64_t fence = 0;  // 0: any; otherwise must equal the job's current fence token
  std::string reason;
  // From a gate: its fence for the job (Submit.gate_fence); refused below the highest the manager
  // has seen. A gate's cancel of a job the manager does not know leaves a cancelled record, so a
  // submit of that job arriving later is refused instead of run.
  std::uint64_t gate_fence = 0;
  HS_FIELDS(req, job_id, fence, reason, gate_fence)
};
struct CancelWorkflow {
  std::uint64_t req = 0;
  std::string job_id;
  std::string workflow;
  HS_FIELDS(req, job_id, workflow)
};
struct CancelReply {
  std::uint64_t req = 0;
  bool success = false;
  bool already_cancelled = false;
  bool already_completed = false;
  std::uint32_t cancelled_workflow_count = 0;
  Err code = Err::none;
  std::string error;
  NodeId leader = 0;
  HS_FIELDS(req, success, already_cancelled, already_completed, cancelled_workflow_count, code, error, leader)
};

struct WorkerView {
  NodeId node = 0;
  bool healthy = false;
  std::uint8_t health = 0;  // Health
  std::uint32_t total_cores = 0, available_cores = 0;
  bool circuit_open = false;
  HS_FIELDS(node, healthy, health, total_cores, available_cores, circuit_open)
};
// ---- gates and datacenters (docs/gates.md) ----
// A datacenter as a gate sees it (AD-16): awaiting (configured, never heard), initializing (heard,
// no leader yet), ready (a leader and every manager heard), partial (a leader, some managers
// silent), unavailable (no leader heard within the gate's dc_stale).
enum class DcState : std::uint8_t { awaiting = 0, initializing, ready, partial, unavailable };
// Its health, the bucket routing picks from (AD-17: healthy > busy > degraded; never unhealthy):
// busy when no core is free, degraded when fewer than half its workers are healthy, unhealthy when
// it is not ready/partial or has no healthy worker.
enum class DcHealth : std::uint8_t { healthy = 0, busy, degraded, unhealthy };
const char* name(DcState s);
const char* name(DcHealth h);
struct DcStatus {
  std::string name;
  DcState state = DcState::awaiting;
  DcHealth health = DcHealth::unhealthy;
  NodeId leader = 0;
  std::uint64_t term = 0;
  std::uint32_t managers = 0, managers_heard = 0;  // configured, heard within dc_stale
  std::uint32_t worker_count = 0, healthy_worker_count = 0, total_cores = 0, available_cores = 0;
  std::uint32_t active_jobs = 0;
  std::uint64_t heard_ms_ago = 0;  // since the leader's last heartbeat (0: never heard)
  HS_FIELDS(name, state, health, leader, term, managers, managers_heard, worker_count, healthy_worker_count,
            total_cores, available_cores, active_jobs, heard_ms_ago)
};
// A manager to every configured gate, every ManagerConfig::gate_heartbeat: registration and
// liveness of the datacenter, what it has and the jobs it leads.
struct DcHeartbeat {
  std::string datacenter;
  bool is_leader = false;  // the ready Raft leader of the datacenter
  std::uint64_t term = 0;
  NodeId leader = 0;  // the leader this manager knows (itself when is_leader), 0: none
  std::uint32_t worker_count = 0, healthy_worker_count = 0, total_cores = 0, available_cores = 0;
  std::uint32_t active_jobs = 0;
  std::vector<std::string> jobs;  // leader only: active job ids (at most 1 000; more sets jobs_more)
  bool jobs_more = false;
  HS_FIELDS(datacenter, is_leader, term, leader, worker_count, healthy_worker_count, total_cores, available_cores,
            active_jobs, jobs, jobs_more)
};
struct DcHeartbeatAck {
  bool registered = false;  // false: the gate does not know this manager in this datacenter (error says why)
  std::string error;
  NodeId gate_leader = 0;  // the gates' leader as this gate knows it
  std::uint64_t term = 0;  // the gate's Raft term
  HS_FIELDS(registered, error, gate_leader, term)
};
// A gate that took a job over (a higher fence) tells the datacenter's leading manager, which keeps
// the highest fence per job and refuses a gate's commands carrying a lower one.
struct JobFence {
  std::uint64_t req = 0;
  std::string job_id;
  std::uint64_t gate_fence = 0;
  HS_FIELDS(req, job_id, gate_fence)
};
struct JobFenceAck {
  std::uint64_t req = 0;
  bool accepted = false;
  Err code = Err::none;  // fence: a higher fence is known (current); not_leader: ask leader; not_found
  std::string error;
  std::uint64_t current = 0;  // the manager's fence for the job after this
  NodeId leader = 0;
  HS_FIELDS(req, accepted, code, error, current, leader)
};

// Gate to gate: only the gates' Raft leader appends to the replicated gate ledger, so a job's
// owner that does not lead forwards its ledger entries (gate::encode_entry) to the leader, which
// refuses an entry whose fence is stale (the job has another owner) and answers once it committed.
struct GateProposal {
  std::uint64_t req = 0;
  std::vector<std::uint8_t> entry;
  HS_FIELDS(req, entry)
};
struct GateProposalAck {
  std::uint64_t req = 0;
  bool committed = false;
  std::uint64_t outcome = 0;  // gate::GateOutcome once committed
  std::uint64_t index = 0;    // the entry's log index: the proposer waits until it applied it
  Err code = Err::none;       // not_leader (leader: ask it), fence (stale), no_quorum, overloaded, invalid
  std::string error;
  NodeId leader = 0;
  HS_FIELDS(req, committed, outcome, index, code, error, leader)
};

struct NodeQuery {
  std::uint64_t req = 0;
  HS_FIELDS(req)
};
struct NodeStatus {
  std::uint64_t req = 0;
  NodeId node = 0;
  bool is_leader = false;
  std::uint64_t term = 0;
  NodeId leader = 0;
  std::uint32_t worker_count = 0, healthy_worker_count = 0, total_cores = 0, available_cores = 0;
  std::vector<std::string> active_job_ids;
  std::uint32_t active_workflow_count = 0;
  std::vector<WorkerView> workers;
  std::string role;                   // "manager", "gate" (empty from older nodes: a manager)
  std::vector<DcStatus> datacenters;  // a gate's view of every datacenter
  // The node's configured peers of its tier (a gate's gates, a manager's managers), itself included:
  // a client given one address learns the others (GTE-04: it survives the loss of that one node).
  std::vector<NodeId> peers;
  HS_FIELDS(req, node, is_leader, term, leader, worker_count, healthy_worker_count, total_cores, available_cores,
            active_job_ids, active_workflow_count, workers, role, datacenters, peers)
};

// ---- worker <-> manager ----
enum class Health : std::uint8_t { healthy = 0, busy, degraded, overloaded };
const char* name(Health h);
struct ExecReport {  // one live execution on a worker
  std::string job_id;
  std::string workflow;
  std::uint64_t token = 0;
  std::uint32_t cores = 0;
  NodeId leader = 0;
  std::uint64_t completed = 0, failed = 0;
  std::uint32_t part = 0;  // the part of the workflow (0 for a workflow of one part)
  HS_FIELDS(job_id, workflow, token, cores, leader, completed, failed, part)
};
struct Heartbeat {
  std::uint32_t total_cores = 0;
  std::uint32_t available_cores = 0;
  Health health = Health::healthy;
  std::vector<ExecReport> execs;
  std::uint64_t boot = 0;  // random per worker start: a change means the worker restarted
  HS_FIELDS(total_cores, available_cores, health, execs, boot)
};
struct StopItem {
  std::string job_id;
  std::string workflow;
  std::uint64_t token = 0;
  std::uint32_t part = 0;
  HS_FIELDS(job_id, workflow, token, part)
};
// A worker obeys `stop` only from a leader whose term is at least the highest term it has heard
// from any manager, and sends results and progress to the leader of the highest term.
struct HeartbeatAck {
  bool is_leader = false;
  std::vector<StopItem> stop;  // executions that must stop (cancelled, stale token, unknown job)
  std::uint64_t term = 0;      // the sender's Raft term
  NodeId leader = 0;           // the leader the sender knows (itself when is_leader), 0: none
  HS_FIELDS(is_leader, stop, term, leader)
};
struct Dispatch {
  std::string job_id;
  std::string workflow;
  std::uint64_t token = 0;
  std::uint32_t cores = 0;
  std::uint32_t vus = 1;
  std::vector<std::uint8_t> plan;
  KeyValues context;
  std::uint64_t term = 0;  // the sender's Raft term: refused below the highest term the worker heard
  // A part of a workflow spread over several workers (docs/load.md, "Parts"): the worker's `cores`
  // shards are the workflow's global shards [shard_first, shard_first + cores) of shard_total.
  // shard_total = 0: the whole workflow on this worker's cores (shard_first must then be 0).
  std::uint32_t shard_first = 0, shard_total = 0;
  // The wall-clock time (Unix ms) every part of the workflow starts its schedule at; 0: at once.
  std::uint64_t start_at_unix_ms = 0;
  std::uint32_t part = 0;  // which part of the workflow this is (an execution is keyed by job, workflow, part)
  // A part placed again after its worker was lost: iterations of its share an earlier attempt
  // accounted for (done or lost); this attempt runs the rest of an `iterations` budget.
  std::uint64_t skip_iterations = 0;
  // Live windows: their length (0: none) and the wall-clock time window 0 starts at (docs/windows.md).
  std::uint32_t window_ms = 0;
  std::uint64_t window_origin_unix_ms = 0;
  HS_FIELDS(job_id, workflow, token, cores, vus, plan, context, term, shard_first, shard_total, start_at_unix_ms, part,
            skip_iterations, window_ms, window_origin_unix_ms)
};
struct DispatchAck {
  std::string job_id;
  std::string workflow;
  std::uint64_t token = 0;
  bool accepted = false;
  Err code = Err::none;
  std::string error;
  std::uint32_t available_cores = 0;  // the worker's free cores when it answered (a capacity refusal
                                      // is Err::overloaded: refresh capacity, never a circuit error)
  std::uint32_t part = 0;
  HS_FIELDS(job_id, workflow, token, accepted, code, error, available_cores, part)
};
struct Progress {
  std::string job_id;
  std::string workflow;
  std::uint64_t token = 0;
  std::uint64_t completed = 0, failed = 0;
  std::uint32_t part = 0;
  std::uint64_t started = 0;  // iterations begun (completed + failed + in flight)
  HS_FIELDS(job_id, workflow, token, completed, failed, part, started)
};
enum class Outcome : std::uint8_t { completed = 0, failed, cancelled, lost };
struct ResultMsg {
  std::string job_id;
  std::string workflow;
  std::uint64_t token = 0;
  Outcome outcome = Outcome::completed;
  std::uint64_t completed = 0, failed = 0;
  std::string error;
  std::vector<std::uint8_t> stats;
  KeyValues published;
  std::uint32_t part = 0;
  HS_FIELDS(job_id, workflow, token, outcome, completed, failed, error, stats, published, part)
};
struct ResultAck {
  std::string job_id;
  std::string workflow;
  std::uint64_t token = 0;
  std::uint32_t part = 0;
  HS_FIELDS(job_id, workflow, token, part)
};
struct StopExec {  // cancel one execution (token must match the worker's current token for it)
  std::string job_id;
  std::string workflow;
  std::uint64_t token = 0;
  std::uint64_t term = 0;  // the sender's Raft term: refused below the highest term the worker heard
  std::uint32_t part = 0;
  HS_FIELDS(job_id, workflow, token, term, part)
};
struct StopAck {
  std::string job_id;
  std::string workflow;
  std::uint64_t token = 0;
  bool stopped = false;  // false: it was not running there (already finished or unknown)
  std::uint32_t part = 0;
  HS_FIELDS(job_id, workflow, token, stopped, part)
};

// ---- live windows (docs/windows.md) ----
// A part's windows, oldest first, numbered by the worker (per execution: first_seq..last_seq, with
// gaps where windows were dropped). The worker
// sends the next batch when this one is acknowledged (or after its retry interval), so a slow leader
// gets fewer, larger batches; windows that overflow the worker's queue are dropped, counted in
// `dropped` (cumulative for the execution) and shown by the leader.
struct WindowBatch {
  std::string job_id;
  std::string workflow;
  std::uint32_t part = 0;
  std::uint64_t token = 0;
  std::uint64_t origin_unix_ms = 0;  // window 0 starts here (the same for every part of the workflow)
  std::uint32_t window_ms = 0;
  std::uint64_t first_seq = 0, last_seq = 0;
  std::uint64_t dropped = 0;
  std::vector<std::vector<std::uint8_t>> windows;  // each an encoded load::Window (opaque to the roles)
  HS_FIELDS(job_id, workflow, part, token, origin_unix_ms, window_ms, first_seq, last_seq, dropped, windows)
};
struct WindowAck {
  std::string job_id;
  std::string workflow;
  std::uint32_t part = 0;
  std::uint64_t token = 0;
  std::uint64_t through_seq = 0;  // every window up to this one was taken (merged, or refused and counted)
  HS_FIELDS(job_id, workflow, part, token, through_seq)
};

struct WatchQuery {
  std::uint64_t req = 0;
  std::string job_id;
  std::uint64_t from_index = 0;   // closed windows from this index on
  std::uint32_t max_windows = 0;  // per workflow; 0: the leader's default (capped by it)
  HS_FIELDS(req, job_id, from_index, max_windows)
};
// One part's own load in a window (the load generator's saturation).
struct PartLoad {
  std::uint32_t part = 0;
  NodeId worker = 0;  // 0: not known (an attempt the leader no longer follows)
  std::uint32_t cores = 0;
  std::uint64_t token = 0;
  std::uint64_t cpu_percent = 0;  // percent of one core: saturated at >= 90 x cores
  std::uint64_t rss_bytes = 0;
  bool late = false;
  HS_FIELDS(part, worker, cores, token, cpu_percent, rss_bytes, late)
};
struct WatchWindow {
  std::uint64_t index = 0;
  std::vector<std::uint8_t> merged;  // encoded load::Window: every part merged (part 0, token 0)
  std::vector<PartLoad> parts;
  HS_FIELDS(index, merged, parts)
};
// From a gate: one datacenter's share of a workflow's merged windows (docs/gates.md "Live windows").
struct WatchDc {
  std::uint32_t share = 0;               // the share's index: its windows' part in the gate's merge
  std::string name;                      // the datacenter
  JobState state = JobState::submitted;  // the share's, as the gate last heard
  std::uint64_t now_index = 0;           // the datacenter's current window
  std::vector<std::uint8_t> totals;      // encoded load::Window: the datacenter's totals as last answered
  std::uint64_t windows = 0;             // its closed windows the gate merged
  HS_FIELDS(share, name, state, now_index, totals, windows)
};
struct WatchWorkflow {
  std::string name;
  std::uint64_t origin_unix_ms = 0;
  std::uint32_t window_ms = 0;
  std::uint64_t now_index = 0;
  std::vector<std::uint8_t> totals;  // encoded load::Window: everything merged so far
  std::vector<WatchWindow> windows;  // closed, oldest first
  bool more = false;                 // more closed windows after these: ask again from the next index
  std::uint64_t merged = 0, duplicates = 0, late = 0, stale = 0, expired = 0, refused = 0, evicted = 0;
  std::uint64_t dropped = 0;         // windows the parts dropped (their queue overflowed)
  std::vector<WatchDc> datacenters;  // from a gate: each datacenter's share (empty from a manager)
  HS_FIELDS(name, origin_unix_ms, window_ms, now_index, totals, windows, more, merged, duplicates, late, stale, expired,
            refused, evicted, dropped, datacenters)
};
struct WatchReply {
  std::uint64_t req = 0;
  Err code = Err::none;  // not_leader: ask `leader`; not_found: no such job
  std::string error;
  NodeId leader = 0;
  JobState state = JobState::submitted;
  std::string job_error;
  std::vector<WatchWorkflow> workflows;  // those with windows
  HS_FIELDS(req, code, error, leader, state, job_error, workflows)
};
template <class T>
std::vector<std::uint8_t> encode(MsgType t, T& msg) {
  Enc e;
  e.w.u8(static_cast<std::uint8_t>(t));
  e(msg);
  return e.w.take();
}
// Decodes the body (after the type byte) into `out`, which should be default-constructed (fields an
// older sender did not write keep their values). The body is exactly one record: fields of a newer
// version inside it are skipped; a byte after it is an error.
template <class T>
bool decode(std::span<const std::uint8_t> body, T& out, const char** why = nullptr) {
  Dec d{Reader(body)};
  d(out);
  if (d.r.ok() && !d.r.done()) d.r.fail("bytes after the message");
  if (why != nullptr) *why = d.r.error();
  return d.r.ok();
}

std::uint64_t digest_of(const JobSpec& spec);  // payload digest (job id and key excluded)

}  // namespace hs::cluster
