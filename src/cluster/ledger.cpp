#include "hyperscale/cluster/ledger.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "hyperscale/base/assert.hpp"
#include "hyperscale/base/enum_names.hpp"
#include "hyperscale/base/log.hpp"

namespace hs::cluster {

namespace {
// 2: records (codec.hpp), the ops and fields of issue 21. 3: parts (split, per-part entries). A
// version-2 entry or snapshot still applies: its workflows become workflows of one part. Fields
// appended since (the gate fences of jobs and entries, tombstones) need no new version: a record
// without them decodes with their defaults (messages.hpp, rule 3). The ops gate_fence and tombstone
// are refused as malformed by a ledger older than them (counted), like any op it does not know.
constexpr std::uint8_t kEntryVersion = 3;
constexpr std::uint8_t kSnapshotVersion = 3;
constexpr std::uint8_t kOldestVersion = 2;

bool valid_job_state(std::uint8_t s) { return s <= static_cast<std::uint8_t>(JobState::partial); }
bool valid_wf_state(std::uint8_t s) { return s <= static_cast<std::uint8_t>(WfState::cancelled); }

struct SnapshotImage {
  std::uint64_t applied = 0;
  std::vector<LedgerJob> jobs;
  HS_FIELDS(applied, jobs)
};
}  // namespace

constexpr EnumNames<LedgerOutcome, 12> kOutcomeNames{{"applied", "duplicate", "conflict", "full", "unknown_job",
                                                      "job_terminal", "cancelled", "stale_token", "wf_terminal",
                                                      "wf_busy", "not_terminal", "malformed"}};
static_assert(kOutcomeNames.covers(LedgerOutcome::malformed));

const char* name(LedgerOutcome o) { return kOutcomeNames(o); }

constexpr EnumNames<LedgerOp, 13> kOpNames{{"none", "accept", "dispatch", "cancel", "wf_done", "job_done", "retire",
                                            "wf_lost", "cancel_wf", "checkpoint", "split", "gate_fence", "tombstone"}};
static_assert(kOpNames.covers(LedgerOp::kLast));

const char* name(LedgerOp op) { return kOpNames(op); }

std::vector<std::uint8_t> encode_entry(LedgerEntry& e) {
  Enc enc;
  enc.w.u8(kEntryVersion);
  enc(e);
  return enc.w.take();
}

bool decode_entry(std::span<const std::uint8_t> in, LedgerEntry& out, const char** why) {
  if (in.empty() || in[0] < kOldestVersion || in[0] > kEntryVersion) {
    if (why != nullptr) *why = "unknown ledger entry version";
    return false;
  }
  if (!decode(in.subspan(1), out, why)) return false;
  if (out.op < LedgerOp::accept || out.op > LedgerOp::kLast) {
    if (why != nullptr) *why = "unknown ledger op";
    return false;
  }
  return true;
}

std::uint64_t JobLedger::apply(std::uint64_t index, std::span<const std::uint8_t> command) {
  HS_ASSERT(index > applied_, "ledger: applied index must grow: {} after {}", index, applied_);
  applied_ = index;
  LedgerEntry e;
  const char* why = "";
  if (!decode_entry(command, e, &why)) {
    ++malformed_;
    log::logf(log::Level::error, "ledger", "malformed_entry", "index={} bytes={} error={}", index, command.size(),
              log::quoted(why));
    return static_cast<std::uint64_t>(LedgerOutcome::malformed);
  }
  // An entry touches one job: whether it is active before and after keeps the count.
  auto active = [this](const std::string& id) {
    auto it = jobs_.find(id);
    return it != jobs_.end() && !terminal(it->second.state);
  };
  const bool was = active(e.job_id);
  const LedgerOutcome o = apply_entry(index, e);
  const bool is = active(e.job_id);
  HS_ASSERT(was || active_ < jobs_.size() || !is, "ledger: {} active jobs of {} and job {} became active", active_,
            jobs_.size(), e.job_id);
  active_ = active_ + (is ? 1 : 0) - (was ? 1 : 0);
  if (o != LedgerOutcome::applied) {
    log::logf(log::Level::debug, "ledger", "entry_refused", "index={} op={} job={} outcome={}", index, name(e.op),
              log::quoted(e.job_id), name(o));
  }
  return static_cast<std::uint64_t>(o);
}

LedgerOutcome JobLedger::apply_entry(std::uint64_t index, LedgerEntry& e) {
  if (e.op == LedgerOp::accept) return accept(index, e);
  if (e.op == LedgerOp::retire) return retire(e.job_id);
  if (e.op == LedgerOp::tombstone) return tombstone(index, e);
  auto it = jobs_.find(e.job_id);
  if (it == jobs_.end()) return LedgerOutcome::unknown_job;
  LedgerJob& j = it->second;
  const JobState before = j.state;
  std::vector<std::vector<bool>> ended;  // per workflow: terminal, then each part terminal, before the entry
  for (const auto& w : j.workflows) {
    auto& v = ended.emplace_back(1, terminal(w.state));
    for (const auto& p : w.parts) v.push_back(terminal(p.state));
  }
  j.elapsed_ms = std::max(j.elapsed_ms, e.elapsed_ms);
  const LedgerOutcome o = on_job(j, e);
  settle(j);
  HS_ASSERT(!terminal(before) || j.state == before, "ledger: terminal job {} moved from {} to {}", e.job_id,
            name(before), name(j.state));
  for (std::size_t i = 0; i < j.workflows.size(); ++i) {
    const LedgerWorkflow& w = j.workflows[i];
    HS_ASSERT(!ended[i][0] || terminal(w.state), "ledger: terminal workflow {} of job {} left its state ({})", i,
              e.job_id, name(w.state));
    for (std::size_t k = 0; k + 1 < ended[i].size(); ++k)
      HS_ASSERT(!ended[i][k + 1] || terminal(w.parts[k].state),
                "ledger: terminal part {} of workflow {} of job {} left its state ({})", k, i, e.job_id,
                name(w.parts[k].state));
  }
  return o;
}

LedgerOutcome JobLedger::on_job(LedgerJob& j, LedgerEntry& e) {
  const bool needs_wf = e.op == LedgerOp::dispatch || e.op == LedgerOp::wf_done || e.op == LedgerOp::wf_lost ||
                        e.op == LedgerOp::cancel_wf || e.op == LedgerOp::split;
  if (needs_wf && e.workflow >= j.workflows.size()) return LedgerOutcome::unknown_job;
  const bool needs_part = e.op == LedgerOp::wf_done || e.op == LedgerOp::wf_lost;
  if (needs_part && e.part >= j.workflows[e.workflow].parts.size()) return LedgerOutcome::unknown_job;
  switch (e.op) {
    case LedgerOp::dispatch:
      return dispatch(j, e);
    case LedgerOp::split:
      return split(j, e);
    case LedgerOp::wf_done:
      return wf_done(j, e);  // also on a terminal job: a live part's stop is confirmed
    case LedgerOp::wf_lost:
      return wf_lost(j, e);
    case LedgerOp::gate_fence:  // also on a terminal job: it changes no state
      if (e.gate_fence <= j.gate_fence) return LedgerOutcome::stale_token;
      j.gate_fence = e.gate_fence;
      return LedgerOutcome::applied;
    default:
      break;
  }
  if (terminal(j.state)) return LedgerOutcome::job_terminal;  // terminal stays terminal, whatever arrives
  switch (e.op) {
    case LedgerOp::cancel:
      // A gate's cancel (gate_fence set) from an owner older than the job's current one changes nothing.
      if (e.gate_fence != 0 && e.gate_fence < j.gate_fence) return LedgerOutcome::stale_token;
      j.gate_fence = std::max(j.gate_fence, e.gate_fence);
      j.cancel_requested = true;
      return end_job(j, e, JobState::cancelled);
    case LedgerOp::job_done:
      if (!valid_job_state(e.state) || !terminal(static_cast<JobState>(e.state))) return LedgerOutcome::malformed;
      return end_job(j, e, static_cast<JobState>(e.state));
    case LedgerOp::cancel_wf:
      return cancel_wf(j, e);
    case LedgerOp::checkpoint:
      apply_progress(j, e);
      return LedgerOutcome::applied;
    default:
      return LedgerOutcome::malformed;
  }
}

LedgerOutcome JobLedger::accept(std::uint64_t index, LedgerEntry& e) {
  if (e.job_id.empty() || e.spec.job_id != e.job_id) return LedgerOutcome::malformed;
  if (auto it = jobs_.find(e.job_id); it != jobs_.end()) {
    // A tombstone has no payload to match: a submit arriving after the gate's cancel never runs.
    return !it->second.tombstone && it->second.digest == e.digest &&
                   it->second.spec.idempotency_key == e.spec.idempotency_key
               ? LedgerOutcome::duplicate
               : LedgerOutcome::conflict;
  }
  const std::string key = e.spec.idempotency_key;  // a copy: e.spec is moved below
  if (!key.empty()) {
    if (auto k = keys_.find(key); k != keys_.end()) return LedgerOutcome::conflict;  // another job id
  }
  if (jobs_.size() >= limits_.max_jobs) return LedgerOutcome::full;
  LedgerJob j;
  j.digest = e.digest;
  j.accepted_index = index;
  j.gate_fence = e.gate_fence;
  j.workflows.resize(e.spec.workflows.size());
  j.spec = std::move(e.spec);
  if (!key.empty()) keys_.emplace(key, e.job_id);
  jobs_.emplace(e.job_id, std::move(j));
  return LedgerOutcome::applied;
}

namespace {
bool live_state(WfState s) { return s == WfState::dispatched || s == WfState::running; }
void note(LedgerJob& j, const std::string& text) {
  if (!text.empty() && j.cancel_errors.size() < kMaxCancelErrors) j.cancel_errors.push_back(text);
}
// Why a placement of workflow `w` of job `j` cannot be recorded now (applied: it can).
LedgerOutcome placeable(const LedgerJob& j, const LedgerWorkflow& w) {
  if (terminal(j.state)) return LedgerOutcome::job_terminal;
  if (j.cancel_requested) return LedgerOutcome::cancelled;
  if (terminal(w.state)) return LedgerOutcome::wf_terminal;
  if (w.stop_requested) return LedgerOutcome::wf_busy;
  return LedgerOutcome::applied;
}
void place(LedgerJob& j, LedgerPart& p, NodeId worker, std::uint64_t token) {
  HS_ASSERT(token > p.token && token > j.token_hw, "ledger: token must grow: job={} token={} part={} job_hw={}",
            j.spec.job_id, token, p.token, j.token_hw);
  p.state = WfState::dispatched;
  p.worker = worker;
  p.token = token;
  p.started = 0;
  ++p.attempts;
  j.token_hw = token;
  if (j.state == JobState::submitted) j.state = JobState::running;
}
}  // namespace

LedgerOutcome JobLedger::split(LedgerJob& j, const LedgerEntry& e) {
  LedgerWorkflow& w = j.workflows[e.workflow];
  if (LedgerOutcome o = placeable(j, w); o != LedgerOutcome::applied) return o;
  if (!w.parts.empty() || w.state != WfState::pending) return LedgerOutcome::wf_busy;
  if (e.parts.empty() || e.parts.size() > kMaxParts || e.shard_total > kMaxShardTotal) return LedgerOutcome::malformed;
  std::uint64_t next_shard = 0, prev = j.token_hw;
  for (const PartAssign& a : e.parts) {
    if (a.cores == 0 || a.worker == 0 || a.shard_first != next_shard) return LedgerOutcome::malformed;
    if (a.token <= prev) return LedgerOutcome::stale_token;
    next_shard += a.cores;
    prev = a.token;
  }
  // shard_total 0: one part running the whole workflow on its cores.
  if (e.shard_total == 0 ? e.parts.size() != 1 : next_shard != e.shard_total) return LedgerOutcome::malformed;
  w.shard_total = e.shard_total;
  w.start_at_ms = e.start_at_ms;
  w.parts.resize(e.parts.size());
  for (std::size_t k = 0; k < e.parts.size(); ++k) {
    LedgerPart& p = w.parts[k];
    p.shard_first = e.parts[k].shard_first;
    p.cores = e.parts[k].cores;
    place(j, p, e.parts[k].worker, e.parts[k].token);
  }
  return LedgerOutcome::applied;
}

LedgerOutcome JobLedger::dispatch(LedgerJob& j, const LedgerEntry& e) {
  LedgerWorkflow& w = j.workflows[e.workflow];
  if (LedgerOutcome o = placeable(j, w); o != LedgerOutcome::applied) return o;
  if (w.parts.empty()) {  // the whole workflow as one part
    if (e.part != 0 || w.state != WfState::pending || e.cores == 0 || e.worker == 0) {
      return e.part != 0                   ? LedgerOutcome::unknown_job
             : w.state != WfState::pending ? LedgerOutcome::wf_busy
                                           : LedgerOutcome::malformed;
    }
    if (e.token <= j.token_hw) return LedgerOutcome::stale_token;
    w.parts.emplace_back().cores = e.cores;
  } else {
    if (e.part >= w.parts.size()) return LedgerOutcome::unknown_job;
    const LedgerPart& p = w.parts[e.part];
    if (terminal(p.state)) return LedgerOutcome::wf_terminal;
    if (p.state != WfState::pending) return LedgerOutcome::wf_busy;
    // A part of a split keeps its shards, so its cores; a whole-workflow part may take other cores.
    if (e.worker == 0 || e.cores == 0 || (w.shard_total != 0 && e.cores != p.cores)) return LedgerOutcome::malformed;
    if (e.token <= p.token || e.token <= j.token_hw) return LedgerOutcome::stale_token;
    w.parts[e.part].cores = e.cores;
  }
  place(j, w.parts[e.part], e.worker, e.token);
  return LedgerOutcome::applied;
}

LedgerOutcome JobLedger::wf_done(LedgerJob& j, LedgerEntry& e) {
  if (!valid_wf_state(e.state) || !terminal(static_cast<WfState>(e.state))) return LedgerOutcome::malformed;
  LedgerWorkflow& w = j.workflows[e.workflow];
  LedgerPart& p = w.parts[e.part];
  if (terminal(p.state)) return LedgerOutcome::wf_terminal;
  if (e.token != p.token || !live_state(p.state)) return LedgerOutcome::stale_token;  // an older attempt's result
  note(j, e.note);
  if (terminal(j.state)) {
    // The stopped attempt of a cancelled or timed-out job reports its own end: it is cancelled,
    // with the statistics it gathered until it stopped. The leader proposes this only while it
    // waits for the stop (cancel_timeout); once the part is terminal nothing changes it.
    p.state = WfState::cancelled;
    p.completed = std::max(p.completed, p.base_completed + e.completed);
    p.failed = std::max(p.failed, p.base_failed + e.failed);
    if (!e.stats.empty()) p.stats = std::move(e.stats);
    return LedgerOutcome::applied;
  }
  p.state = w.stop_requested && e.state != static_cast<std::uint8_t>(WfState::failed) ? WfState::cancelled
                                                                                      : static_cast<WfState>(e.state);
  p.completed = p.base_completed + e.completed;
  p.failed = p.base_failed + e.failed;
  if (!e.error.empty() || p.state != WfState::cancelled) p.error = e.error;
  p.stats = std::move(e.stats);
  p.published = std::move(e.published);
  return LedgerOutcome::applied;
}

LedgerOutcome JobLedger::wf_lost(LedgerJob& j, const LedgerEntry& e) {
  LedgerWorkflow& w = j.workflows[e.workflow];
  LedgerPart& p = w.parts[e.part];
  if (terminal(p.state)) return LedgerOutcome::wf_terminal;
  if (e.token != p.token || !live_state(p.state)) return LedgerOutcome::stale_token;
  note(j, e.note);
  // What the attempt acknowledged stays counted; what it had in flight then is lost; the next
  // attempt skips both (the entry's totals or the last checkpoint's, whichever is further).
  const std::uint64_t done_ok = std::max(e.completed, p.completed - p.base_completed);
  const std::uint64_t done_failed = std::max(e.failed, p.failed - p.base_failed);
  const std::uint64_t started = std::max({e.started, p.started, done_ok + done_failed});
  p.base_completed += done_ok;
  p.base_failed += done_failed;
  p.completed = p.base_completed;
  p.failed = p.base_failed;
  p.lost += started - done_ok - done_failed;
  p.skip += started;
  p.started = 0;
  if (e.exclude && p.worker != 0 && p.excluded.size() < kMaxExcluded &&
      std::find(p.excluded.begin(), p.excluded.end(), p.worker) == p.excluded.end())
    p.excluded.push_back(p.worker);
  p.worker = 0;
  if (terminal(j.state) || w.stop_requested) {
    p.state = WfState::cancelled;
    if (p.error.empty()) p.error = e.error;
    return LedgerOutcome::applied;
  }
  if (e.uncounted) {  // refused before it ran: the attempt does not count
    if (p.attempts > 0) --p.attempts;
    p.state = WfState::pending;
    return LedgerOutcome::applied;
  }
  const std::uint32_t retries = p.attempts > 0 ? p.attempts - 1 : 0;
  if (retries < j.spec.workflow_retries && j.retries_used < j.spec.retry_budget) {
    ++j.retries_used;
    p.state = WfState::pending;
  } else {
    p.state = WfState::failed;
    p.error = "retry budget exhausted: " + e.error;
  }
  return LedgerOutcome::applied;
}

void JobLedger::apply_progress(LedgerJob& j, const LedgerEntry& e) {
  auto one = [&j](const PartProgress& pp) {
    if (pp.workflow >= j.workflows.size() || pp.part >= j.workflows[pp.workflow].parts.size()) return;
    LedgerPart& p = j.workflows[pp.workflow].parts[pp.part];
    if (!live_state(p.state)) return;
    p.completed = std::max(p.completed, p.base_completed + pp.completed);
    p.failed = std::max(p.failed, p.base_failed + pp.failed);
    p.started = std::max(p.started, pp.started);
  };
  for (std::size_t i = 0; i < e.progress.size(); ++i)  // entries written before parts: part 0
    one(PartProgress{static_cast<std::uint32_t>(i), 0, e.progress[i].first, e.progress[i].second, 0});
  for (const PartProgress& pp : e.part_progress) one(pp);
}

LedgerOutcome JobLedger::end_job(LedgerJob& j, const LedgerEntry& e, JobState s) {
  apply_progress(j, e);  // the totals the leader saw, frozen with the job
  for (auto& w : j.workflows) {
    if (terminal(w.state)) continue;
    if (w.error.empty()) w.error = std::string("job ") + name(s);
    if (w.parts.empty()) w.state = WfState::cancelled;
    for (auto& p : w.parts)
      if (p.state == WfState::pending) p.state = WfState::cancelled;  // live ones end when their stop is confirmed
  }
  j.state = s;
  j.error = e.error;
  HS_ASSERT(terminal(j.state), "ledger: end_job left job {} live", e.job_id);
  return LedgerOutcome::applied;
}

LedgerOutcome JobLedger::cancel_wf(LedgerJob& j, const LedgerEntry& e) {
  LedgerWorkflow& w = j.workflows[e.workflow];
  if (terminal(w.state)) return LedgerOutcome::wf_terminal;
  if (w.stop_requested) return LedgerOutcome::duplicate;
  w.error = e.error.empty() ? "cancelled by request" : e.error;
  if (w.parts.empty())
    w.state = WfState::cancelled;
  else
    w.stop_requested = true;  // pending parts are cancelled in settle, live ones stop
  return LedgerOutcome::applied;
}

namespace {
// A workflow's state and totals from its parts. A failed part stops the others.
void sum_parts(LedgerWorkflow& w) {
  if (w.parts.empty() || terminal(w.state)) return;
  const LedgerPart* failed = nullptr;
  bool others = false;  // parts still pending or live
  for (const auto& p : w.parts) {
    if (p.state == WfState::failed && failed == nullptr) failed = &p;
    others |= !terminal(p.state);
  }
  if (failed != nullptr && others) w.stop_requested = true;  // the error is set below
  bool all_done = true, any_failed = false, any_cancelled = false;
  w.worker = w.parts.size() == 1 ? w.parts[0].worker : 0;
  w.token = w.attempts = w.cores = 0;
  w.completed = w.failed = w.lost = 0;
  w.published.clear();
  for (auto& p : w.parts) {
    if (w.stop_requested && p.state == WfState::pending) p.state = WfState::cancelled;
    all_done &= terminal(p.state);
    any_failed |= p.state == WfState::failed;
    any_cancelled |= p.state == WfState::cancelled;
    w.token = std::max(w.token, p.token);
    w.attempts += p.attempts;
    w.cores += p.cores;
    w.completed += p.completed;
    w.failed += p.failed;
    w.lost += p.lost;
    for (const auto& kv : p.published)
      if (std::none_of(w.published.begin(), w.published.end(), [&](const auto& x) { return x.first == kv.first; }))
        w.published.push_back(kv);
  }
  if (w.parts.size() == 1) {
    if (!w.parts[0].error.empty()) w.error = w.parts[0].error;
  } else if (failed != nullptr && w.error.empty()) {
    w.error = fmt::format("part {} failed: {}", failed - w.parts.data(), failed->error);
  }
  if (!all_done) {  // live while a part is; pending while every unfinished part waits for a worker
    const bool any_live =
        std::any_of(w.parts.begin(), w.parts.end(), [](const LedgerPart& p) { return live_state(p.state); });
    w.state = any_live ? WfState::dispatched : WfState::pending;
    return;
  }
  w.state = any_failed ? WfState::failed : any_cancelled ? WfState::cancelled : WfState::completed;
}
}  // namespace

void JobLedger::settle(LedgerJob& j) {
  auto& wfs = j.workflows;
  for (auto& w : wfs) sum_parts(w);
  for (bool changed = true; changed;) {  // dependants of failed or cancelled workflows never run
    changed = false;
    for (std::size_t i = 0; i < wfs.size(); ++i) {
      if (wfs[i].state != WfState::pending || !wfs[i].parts.empty()) continue;  // placed: its deps completed
      for (const auto& dep : j.spec.workflows[i].deps) {
        for (std::size_t k = 0; k < wfs.size(); ++k) {
          if (j.spec.workflows[k].name != dep) continue;
          if (wfs[k].state != WfState::failed && wfs[k].state != WfState::cancelled) continue;
          wfs[i].state = wfs[k].state;
          wfs[i].error = "dependency '" + dep + "' " + name(wfs[k].state);
          changed = true;
        }
        if (wfs[i].state != WfState::pending) break;
      }
    }
  }
  if (terminal(j.state)) return;
  bool any_failed = false, any_cancelled = false;
  for (const auto& w : wfs) {
    if (!terminal(w.state)) return;
    any_failed |= w.state == WfState::failed;
    any_cancelled |= w.state == WfState::cancelled;
  }
  j.state = any_failed ? JobState::failed : any_cancelled ? JobState::partial : JobState::completed;
  for (std::size_t i = 0; any_failed && i < wfs.size(); ++i) {
    if (wfs[i].state != WfState::failed) continue;
    j.error = "workflow '" + j.spec.workflows[i].name + "' failed: " + wfs[i].error;
    break;
  }
}

LedgerOutcome JobLedger::retire(const std::string& id) {
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return LedgerOutcome::unknown_job;
  if (!terminal(it->second.state)) return LedgerOutcome::not_terminal;
  if (!it->second.spec.idempotency_key.empty()) keys_.erase(it->second.spec.idempotency_key);
  jobs_.erase(it);
  return LedgerOutcome::applied;
}

LedgerOutcome JobLedger::tombstone(std::uint64_t index, const LedgerEntry& e) {
  if (e.job_id.empty() || e.gate_fence == 0) return LedgerOutcome::malformed;
  if (auto it = jobs_.find(e.job_id); it != jobs_.end()) {
    LedgerJob& j = it->second;
    if (!j.tombstone) return LedgerOutcome::conflict;  // the job was accepted first: cancel it instead
    j.gate_fence = std::max(j.gate_fence, e.gate_fence);
    return LedgerOutcome::duplicate;
  }
  if (jobs_.size() >= limits_.max_jobs) return LedgerOutcome::full;
  LedgerJob j;
  j.spec.job_id = e.job_id;
  j.state = JobState::cancelled;
  j.cancel_requested = true;
  j.error = e.error.empty() ? "cancelled by its gate before it was submitted here" : e.error;
  j.accepted_index = index;
  j.elapsed_ms = e.elapsed_ms;
  j.gate_fence = e.gate_fence;
  j.tombstone = true;
  jobs_.emplace(e.job_id, std::move(j));
  return LedgerOutcome::applied;
}

const LedgerJob* JobLedger::job(const std::string& id) const {
  auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : &it->second;
}

std::optional<std::string> JobLedger::job_for_key(const std::string& key) const {
  auto it = keys_.find(key);
  if (it == keys_.end()) return std::nullopt;
  return it->second;
}

node::Bytes JobLedger::snapshot() {
  SnapshotImage img;
  img.applied = applied_;
  img.jobs.reserve(jobs_.size());
  for (auto& [id, j] : jobs_) img.jobs.push_back(j);
  Enc enc;
  enc.w.u8(kSnapshotVersion);
  enc(img);
  return enc.w.take();
}

Status JobLedger::restore(std::span<const std::uint8_t> data) {
  if (data.empty() || data[0] < kOldestVersion || data[0] > kSnapshotVersion) {
    return make_error(Errc::corruption, "ledger snapshot: unknown version");
  }
  SnapshotImage img;
  const char* why = "";
  if (!decode(data.subspan(1), img, &why)) {
    return make_error(Errc::corruption, fmt::format("ledger snapshot: {}", why));
  }
  if (img.jobs.size() > limits_.max_jobs) {
    return make_error(Errc::corruption,
                      fmt::format("ledger snapshot: {} jobs over the limit {}", img.jobs.size(), limits_.max_jobs));
  }
  std::map<std::string, LedgerJob> jobs;
  std::map<std::string, std::string> keys;
  for (auto& j : img.jobs) {
    if (!valid_job_state(static_cast<std::uint8_t>(j.state)) || j.workflows.size() != j.spec.workflows.size() ||
        (j.tombstone && (!j.workflows.empty() || !terminal(j.state)))) {
      return make_error(Errc::corruption, fmt::format("ledger snapshot: job {} is inconsistent", j.spec.job_id));
    }
    for (auto& w : j.workflows) {  // a version-2 workflow that was placed: its one part
      if (!w.parts.empty() || w.token == 0) continue;
      LedgerPart& p = w.parts.emplace_back();
      p.state = w.state == WfState::running ? WfState::dispatched : w.state;
      p.worker = w.worker;
      p.token = w.token;
      p.attempts = w.attempts;
      p.cores = w.cores;
      p.completed = w.completed;
      p.failed = w.failed;
      p.error = w.error;
      p.excluded = w.excluded;
      p.stats = std::move(w.stats);  // held once, by the part
      w.stats.clear();
      p.published = w.published;
    }
    if (!j.spec.idempotency_key.empty()) keys.emplace(j.spec.idempotency_key, j.spec.job_id);
    std::string id = j.spec.job_id;
    jobs.emplace(std::move(id), std::move(j));
  }
  // Nothing changes unless the whole snapshot is valid.
  jobs_ = std::move(jobs);
  active_ = static_cast<std::size_t>(
      std::count_if(jobs_.begin(), jobs_.end(), [](const auto& kv) { return !terminal(kv.second.state); }));
  keys_ = std::move(keys);
  applied_ = img.applied;
  return ok_status();
}

}  // namespace hs::cluster
