#include "hyperscale/cluster/ledger.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "hyperscale/base/assert.hpp"
#include "hyperscale/base/enum_names.hpp"
#include "hyperscale/base/log.hpp"

namespace hs::cluster {

namespace {
constexpr std::uint8_t kEntryVersion = 2;  // 2: records (codec.hpp), the ops and fields of issue 21
constexpr std::uint8_t kSnapshotVersion = 2;

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

std::vector<std::uint8_t> encode_entry(LedgerEntry& e) {
  Enc enc;
  enc.w.u8(kEntryVersion);
  enc(e);
  return enc.w.take();
}

bool decode_entry(std::span<const std::uint8_t> in, LedgerEntry& out, const char** why) {
  if (in.empty() || in[0] != kEntryVersion) {
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
  const LedgerOutcome o = apply_entry(index, e);
  if (o != LedgerOutcome::applied) {
    log::logf(log::Level::debug, "ledger", "entry_refused", "index={} op={} job={} outcome={}", index,
              static_cast<int>(e.op), log::quoted(e.job_id), name(o));
  }
  return static_cast<std::uint64_t>(o);
}

LedgerOutcome JobLedger::apply_entry(std::uint64_t index, LedgerEntry& e) {
  if (e.op == LedgerOp::accept) return accept(index, e);
  if (e.op == LedgerOp::retire) return retire(e.job_id);
  auto it = jobs_.find(e.job_id);
  if (it == jobs_.end()) return LedgerOutcome::unknown_job;
  LedgerJob& j = it->second;
  const JobState before = j.state;
  j.elapsed_ms = std::max(j.elapsed_ms, e.elapsed_ms);
  const LedgerOutcome o = on_job(j, e);
  settle(j);
  HS_ASSERT(!terminal(before) || j.state == before, "ledger: terminal job {} moved from {} to {}", e.job_id,
            name(before), name(j.state));
  return o;
}

LedgerOutcome JobLedger::on_job(LedgerJob& j, LedgerEntry& e) {
  const bool needs_wf = e.op == LedgerOp::dispatch || e.op == LedgerOp::wf_done || e.op == LedgerOp::wf_lost ||
                        e.op == LedgerOp::cancel_wf;
  if (needs_wf && e.workflow >= j.workflows.size()) return LedgerOutcome::unknown_job;
  switch (e.op) {
    case LedgerOp::dispatch:
      return dispatch(j, e);
    case LedgerOp::wf_done:
      return wf_done(j, e);  // also on a terminal job: a live workflow's stop is confirmed
    case LedgerOp::wf_lost:
      return wf_lost(j, e);
    default:
      break;
  }
  if (terminal(j.state)) return LedgerOutcome::job_terminal;  // terminal stays terminal, whatever arrives
  switch (e.op) {
    case LedgerOp::cancel:
      j.cancel_requested = true;
      return end_job(j, e, JobState::cancelled);
    case LedgerOp::job_done:
      if (!valid_job_state(e.state) || !terminal(static_cast<JobState>(e.state))) return LedgerOutcome::malformed;
      return end_job(j, e, static_cast<JobState>(e.state));
    case LedgerOp::cancel_wf:
      return cancel_wf(j, e);
    case LedgerOp::checkpoint:
      for (std::size_t i = 0; i < j.workflows.size() && i < e.progress.size(); ++i) {
        LedgerWorkflow& w = j.workflows[i];
        if (terminal(w.state)) continue;
        w.completed = std::max(w.completed, e.progress[i].first);
        w.failed = std::max(w.failed, e.progress[i].second);
      }
      return LedgerOutcome::applied;
    default:
      return LedgerOutcome::malformed;
  }
}

LedgerOutcome JobLedger::accept(std::uint64_t index, LedgerEntry& e) {
  if (e.job_id.empty() || e.spec.job_id != e.job_id) return LedgerOutcome::malformed;
  if (auto it = jobs_.find(e.job_id); it != jobs_.end()) {
    return it->second.digest == e.digest && it->second.spec.idempotency_key == e.spec.idempotency_key
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
  j.workflows.resize(e.spec.workflows.size());
  j.spec = std::move(e.spec);
  if (!key.empty()) keys_.emplace(key, e.job_id);
  jobs_.emplace(e.job_id, std::move(j));
  return LedgerOutcome::applied;
}

LedgerOutcome JobLedger::dispatch(LedgerJob& j, const LedgerEntry& e) {
  if (terminal(j.state)) return LedgerOutcome::job_terminal;
  if (j.cancel_requested) return LedgerOutcome::cancelled;
  LedgerWorkflow& w = j.workflows[e.workflow];
  if (terminal(w.state)) return LedgerOutcome::wf_terminal;
  if (w.state != WfState::pending || w.stop_requested) return LedgerOutcome::wf_busy;
  if (e.token <= w.token || e.token <= j.token_hw) return LedgerOutcome::stale_token;
  HS_ASSERT(e.token > w.token, "ledger: token must grow: job={} wf={} token={} current={}", e.job_id, e.workflow,
            e.token, w.token);
  w.state = WfState::dispatched;
  w.worker = e.worker;
  w.token = e.token;
  w.cores = e.cores;
  ++w.attempts;
  j.token_hw = e.token;
  if (j.state == JobState::submitted) j.state = JobState::running;
  return LedgerOutcome::applied;
}

namespace {
bool live_wf(const LedgerWorkflow& w) { return w.state == WfState::dispatched || w.state == WfState::running; }
void note(LedgerJob& j, const std::string& text) {
  if (!text.empty() && j.cancel_errors.size() < kMaxCancelErrors) j.cancel_errors.push_back(text);
}
}  // namespace

LedgerOutcome JobLedger::wf_done(LedgerJob& j, LedgerEntry& e) {
  if (!valid_wf_state(e.state) || !terminal(static_cast<WfState>(e.state))) return LedgerOutcome::malformed;
  LedgerWorkflow& w = j.workflows[e.workflow];
  if (terminal(w.state)) return LedgerOutcome::wf_terminal;
  if (e.token != w.token || !live_wf(w)) return LedgerOutcome::stale_token;  // a late result of an older attempt
  note(j, e.note);
  if (terminal(j.state)) {
    // The stopped attempt of a cancelled or timed-out job reports its own end: it is cancelled,
    // with the statistics it gathered until it stopped. The leader proposes this only while it
    // waits for the stop (cancel_timeout); once the workflow is terminal nothing changes it.
    w.state = WfState::cancelled;
    w.completed = std::max(w.completed, e.completed);
    w.failed = std::max(w.failed, e.failed);
    if (!e.stats.empty()) w.stats = std::move(e.stats);
    return LedgerOutcome::applied;
  }
  w.state = w.stop_requested && e.state != static_cast<std::uint8_t>(WfState::failed) ? WfState::cancelled
                                                                                      : static_cast<WfState>(e.state);
  w.completed = e.completed;
  w.failed = e.failed;
  if (!e.error.empty() || w.state != WfState::cancelled) w.error = e.error;
  w.stats = std::move(e.stats);
  w.published = std::move(e.published);
  return LedgerOutcome::applied;
}

LedgerOutcome JobLedger::wf_lost(LedgerJob& j, const LedgerEntry& e) {
  LedgerWorkflow& w = j.workflows[e.workflow];
  if (terminal(w.state)) return LedgerOutcome::wf_terminal;
  if (e.token != w.token || !live_wf(w)) return LedgerOutcome::stale_token;
  note(j, e.note);
  if (e.exclude && w.worker != 0 && w.excluded.size() < kMaxExcluded &&
      std::find(w.excluded.begin(), w.excluded.end(), w.worker) == w.excluded.end())
    w.excluded.push_back(w.worker);
  w.worker = 0;
  w.cores = 0;
  if (terminal(j.state) || w.stop_requested) {
    w.state = WfState::cancelled;
    if (w.error.empty()) w.error = e.error;
    return LedgerOutcome::applied;
  }
  if (e.uncounted) {  // refused before it ran: the attempt does not count
    if (w.attempts > 0) --w.attempts;
    w.state = WfState::pending;
    return LedgerOutcome::applied;
  }
  const std::uint32_t retries = w.attempts > 0 ? w.attempts - 1 : 0;
  if (retries < j.spec.workflow_retries && j.retries_used < j.spec.retry_budget) {
    ++j.retries_used;
    w.state = WfState::pending;
  } else {
    w.state = WfState::failed;
    w.error = "retry budget exhausted: " + e.error;
  }
  return LedgerOutcome::applied;
}

LedgerOutcome JobLedger::end_job(LedgerJob& j, const LedgerEntry& e, JobState s) {
  for (std::size_t i = 0; i < j.workflows.size(); ++i) {
    LedgerWorkflow& w = j.workflows[i];
    if (terminal(w.state)) continue;
    if (i < e.progress.size()) {  // the totals the leader saw, frozen with the job
      w.completed = std::max(w.completed, e.progress[i].first);
      w.failed = std::max(w.failed, e.progress[i].second);
    }
    if (w.error.empty()) w.error = std::string("job ") + name(s);
    if (!live_wf(w)) w.state = WfState::cancelled;  // live ones end when their stop is confirmed
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
  if (live_wf(w))
    w.stop_requested = true;
  else
    w.state = WfState::cancelled;
  return LedgerOutcome::applied;
}

void JobLedger::settle(LedgerJob& j) {
  auto& wfs = j.workflows;
  for (bool changed = true; changed;) {  // dependants of failed or cancelled workflows never run
    changed = false;
    for (std::size_t i = 0; i < wfs.size(); ++i) {
      if (wfs[i].state != WfState::pending) continue;
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
  if (data.empty() || data[0] != kSnapshotVersion) {
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
    if (!valid_job_state(static_cast<std::uint8_t>(j.state)) || j.workflows.size() != j.spec.workflows.size()) {
      return make_error(Errc::corruption, fmt::format("ledger snapshot: job {} is inconsistent", j.spec.job_id));
    }
    if (!j.spec.idempotency_key.empty()) keys.emplace(j.spec.idempotency_key, j.spec.job_id);
    std::string id = j.spec.job_id;
    jobs.emplace(std::move(id), std::move(j));
  }
  // Nothing changes unless the whole snapshot is valid.
  jobs_ = std::move(jobs);
  keys_ = std::move(keys);
  applied_ = img.applied;
  return ok_status();
}

}  // namespace hs::cluster
