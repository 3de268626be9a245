#include "hyperscale/cluster/ledger.hpp"

#include <fmt/format.h>

#include "hyperscale/base/assert.hpp"
#include "hyperscale/base/log.hpp"

namespace hs::cluster {

namespace {
constexpr std::uint8_t kEntryVersion = 1;
constexpr std::uint8_t kSnapshotVersion = 1;

bool valid_job_state(std::uint8_t s) { return s <= static_cast<std::uint8_t>(JobState::partial); }
bool valid_wf_state(std::uint8_t s) { return s <= static_cast<std::uint8_t>(WfState::cancelled); }

struct SnapshotImage {
  std::uint64_t applied = 0;
  std::vector<LedgerJob> jobs;
  HS_FIELDS(applied, jobs)
};
}  // namespace

const char* name(LedgerOutcome o) {
  switch (o) {
    case LedgerOutcome::applied:
      return "applied";
    case LedgerOutcome::duplicate:
      return "duplicate";
    case LedgerOutcome::conflict:
      return "conflict";
    case LedgerOutcome::full:
      return "full";
    case LedgerOutcome::unknown_job:
      return "unknown_job";
    case LedgerOutcome::job_terminal:
      return "job_terminal";
    case LedgerOutcome::cancelled:
      return "cancelled";
    case LedgerOutcome::stale_token:
      return "stale_token";
    case LedgerOutcome::wf_terminal:
      return "wf_terminal";
    case LedgerOutcome::not_terminal:
      return "not_terminal";
    case LedgerOutcome::malformed:
      return "malformed";
  }
  return "?";
}

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
  if (out.op < LedgerOp::accept || out.op > LedgerOp::retire) {
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
  if (terminal(j.state)) return LedgerOutcome::job_terminal;  // terminal stays terminal, whatever arrives
  switch (e.op) {
    case LedgerOp::dispatch:
      return dispatch(j, e);
    case LedgerOp::cancel:
      j.cancel_requested = true;
      return LedgerOutcome::applied;
    case LedgerOp::wf_done:
      return wf_done(j, e);
    case LedgerOp::job_done:
      return job_done(j, e);
    default:
      return LedgerOutcome::malformed;
  }
}

LedgerOutcome JobLedger::accept(std::uint64_t index, LedgerEntry& e) {
  if (e.job_id.empty() || e.spec.job_id != e.job_id) return LedgerOutcome::malformed;
  if (auto it = jobs_.find(e.job_id); it != jobs_.end()) {
    return it->second.digest == e.digest ? LedgerOutcome::duplicate : LedgerOutcome::conflict;
  }
  const std::string key = e.spec.idempotency_key;  // a copy: e.spec is moved below
  if (!key.empty()) {
    if (auto k = keys_.find(key); k != keys_.end())
      return k->second == e.job_id ? LedgerOutcome::duplicate : LedgerOutcome::conflict;
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
  if (j.cancel_requested) return LedgerOutcome::cancelled;
  if (e.workflow >= j.workflows.size()) return LedgerOutcome::unknown_job;
  LedgerWorkflow& w = j.workflows[e.workflow];
  if (terminal(w.state)) return LedgerOutcome::wf_terminal;
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

LedgerOutcome JobLedger::wf_done(LedgerJob& j, const LedgerEntry& e) {
  if (e.workflow >= j.workflows.size()) return LedgerOutcome::unknown_job;
  if (!valid_wf_state(e.state) || !terminal(static_cast<WfState>(e.state))) return LedgerOutcome::malformed;
  LedgerWorkflow& w = j.workflows[e.workflow];
  if (terminal(w.state)) return LedgerOutcome::wf_terminal;
  if (e.token != w.token) return LedgerOutcome::stale_token;  // a late result of an older attempt
  w.state = static_cast<WfState>(e.state);
  w.completed = e.completed;
  w.failed = e.failed;
  w.error = e.error;
  return LedgerOutcome::applied;
}

LedgerOutcome JobLedger::job_done(LedgerJob& j, const LedgerEntry& e) {
  if (!valid_job_state(e.state) || !terminal(static_cast<JobState>(e.state))) return LedgerOutcome::malformed;
  j.state = static_cast<JobState>(e.state);
  j.error = e.error;
  HS_ASSERT(terminal(j.state), "ledger: job_done left job {} live", e.job_id);
  return LedgerOutcome::applied;
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
