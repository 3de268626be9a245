#include "hyperscale/gate/ledger.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "hyperscale/base/assert.hpp"
#include "hyperscale/base/enum_names.hpp"
#include "hyperscale/base/log.hpp"

namespace hs::gate {

using cluster::terminal;

namespace {
constexpr std::uint8_t kEntryVersion = 1;
constexpr std::uint8_t kSnapshotVersion = 1;

bool valid_job_state(std::uint8_t s) { return s <= static_cast<std::uint8_t>(JobState::partial); }

struct SnapshotImage {
  std::uint64_t applied = 0;
  std::vector<GateJob> jobs;
  HS_FIELDS(applied, jobs)
};
}  // namespace

constexpr EnumNames<GateOutcome, 11> kOutcomeNames{{"applied", "duplicate", "conflict", "full", "unknown_job",
                                                    "job_terminal", "stale_fence", "share_done", "late", "not_terminal",
                                                    "malformed"}};
static_assert(kOutcomeNames.covers(GateOutcome::malformed));

const char* name(GateOutcome o) { return kOutcomeNames(o); }

std::vector<std::uint8_t> encode_entry(GateEntry& e) {
  cluster::Enc enc;
  enc.w.u8(kEntryVersion);
  enc(e);
  return enc.w.take();
}

bool decode_entry(std::span<const std::uint8_t> in, GateEntry& out, const char** why) {
  if (in.empty() || in[0] != kEntryVersion) {
    if (why != nullptr) *why = "unknown gate ledger entry version";
    return false;
  }
  if (!cluster::decode(in.subspan(1), out, why)) return false;
  if (out.op < GateOp::accept || out.op > GateOp::kLast) {
    if (why != nullptr) *why = "unknown gate ledger op";
    return false;
  }
  return true;
}

JobState settle_state(const GateJob& j) {
  std::size_t completed = 0;
  bool timed_out = false;
  for (const auto& s : j.shares) {
    completed += s.state == JobState::completed ? 1 : 0;
    timed_out = timed_out || s.state == JobState::timeout;
  }
  if (completed == j.shares.size()) return JobState::completed;
  if (completed > 0 && completed >= j.required) return JobState::partial;
  return timed_out ? JobState::timeout : JobState::failed;
}

std::uint64_t GateLedger::apply(std::uint64_t index, std::span<const std::uint8_t> command) {
  HS_ASSERT(index > applied_, "gate ledger: applied index must grow: {} after {}", index, applied_);
  applied_ = index;
  GateEntry e;
  const char* why = "";
  if (!decode_entry(command, e, &why)) {
    ++malformed_;
    log::logf(log::Level::error, "gate_ledger", "malformed_entry", "index={} bytes={} error={}", index, command.size(),
              log::quoted(why));
    return static_cast<std::uint64_t>(GateOutcome::malformed);
  }
  const GateOutcome o = apply_entry(index, e);
  if (o != GateOutcome::applied) {
    log::logf(log::Level::debug, "gate_ledger", "entry_refused", "index={} op={} job={} outcome={}", index,
              static_cast<int>(e.op), log::quoted(e.job_id), name(o));
  }
  return static_cast<std::uint64_t>(o);
}

GateOutcome GateLedger::apply_entry(std::uint64_t index, GateEntry& e) {
  if (e.op == GateOp::accept) {
    const GateOutcome o = accept(index, e);
    if (o == GateOutcome::applied) ++active_;
    return o;
  }
  auto it = jobs_.find(e.job_id);
  if (it == jobs_.end()) return GateOutcome::unknown_job;
  // Every entry of an owner carries the job's fence as the owner knows it: once another gate owns
  // the job (a higher fence), the old owner's entries are refused. A cancel from a client (fence 0)
  // is anyone's.
  if (e.fence != 0 && e.fence != it->second.fence) {
    ++stale_;
    return GateOutcome::stale_fence;
  }
  if (e.op == GateOp::retire) {
    if (!terminal(it->second.state)) return GateOutcome::not_terminal;
    keys_.erase(it->second.spec.idempotency_key);
    jobs_.erase(it);
    return GateOutcome::applied;
  }
  GateJob& j = it->second;
  const JobState before = j.state;
  std::vector<bool> ended;
  for (const auto& s : j.shares) ended.push_back(terminal(s.state));
  j.elapsed_ms = std::max(j.elapsed_ms, e.elapsed_ms);
  const GateOutcome o = on_job(j, e);
  settle(j);
  if (!terminal(before) && terminal(j.state)) --active_;
  HS_ASSERT(!terminal(before) || j.state == before, "gate ledger: terminal job {} moved from {} to {}", e.job_id,
            cluster::name(before), cluster::name(j.state));
  for (std::size_t i = 0; i < ended.size(); ++i)
    HS_ASSERT(!ended[i] || terminal(j.shares[i].state), "gate ledger: ended share {} ({}) of job {} left its state", i,
              j.shares[i].dc, e.job_id);
  return o;
}

GateOutcome GateLedger::accept(std::uint64_t index, GateEntry& e) {
  const std::uint64_t digest = e.digest;
  if (auto it = jobs_.find(e.job_id); it != jobs_.end())
    return it->second.digest == digest ? GateOutcome::duplicate : GateOutcome::conflict;
  if (!e.spec.idempotency_key.empty()) {
    if (auto k = keys_.find(e.spec.idempotency_key); k != keys_.end()) {
      const GateJob& other = jobs_.at(k->second);
      return other.digest == digest ? GateOutcome::duplicate : GateOutcome::conflict;
    }
  }
  if (e.dcs.empty() || e.job_id.empty() || e.fence == 0) return GateOutcome::malformed;
  if (jobs_.size() >= limits_.max_jobs) return GateOutcome::full;
  GateJob j;
  j.spec = std::move(e.spec);
  j.spec.job_id = e.job_id;
  j.digest = digest;
  j.state = JobState::running;
  j.accepted_index = index;
  j.fence = e.fence;
  j.owner = e.owner;
  j.routed = e.routed;
  for (auto& dc : e.dcs)
    j.shares.push_back(GateShare{.dc = std::move(dc),
                                 .state = JobState::submitted,
                                 .accepted = false,
                                 .completed = 0,
                                 .failed = 0,
                                 .error = {},
                                 .workflows = {},
                                 .late = false,
                                 .tried = {},
                                 .gate_decided = false});
  const auto n = static_cast<std::uint32_t>(j.shares.size());
  j.required = j.spec.min_datacenters == 0 ? n : std::min(j.spec.min_datacenters, n);
  if (!j.spec.idempotency_key.empty()) keys_[j.spec.idempotency_key] = e.job_id;
  jobs_.emplace(e.job_id, std::move(j));
  return GateOutcome::applied;
}

void GateLedger::take_counts(GateJob& j, const GateEntry& e) {
  for (const auto& c : e.counts) {
    if (c.share >= j.shares.size()) continue;
    GateShare& s = j.shares[c.share];
    if (terminal(s.state)) continue;
    s.completed = std::max(s.completed, c.completed);
    s.failed = std::max(s.failed, c.failed);
  }
}

void GateLedger::end(GateJob& j, JobState s, const std::string& why) {
  j.state = s;
  if (j.error.empty()) j.error = why;
}

GateOutcome GateLedger::on_job(GateJob& j, GateEntry& e) {
  const bool needs_share = e.op == GateOp::dc_accepted || e.op == GateOp::reroute || e.op == GateOp::dc_done;
  if (needs_share && e.share >= j.shares.size()) return GateOutcome::unknown_job;
  switch (e.op) {
    case GateOp::own: {  // e.fence (the fence the proposer saw) matched above
      if (e.fence == 0 || e.owner == 0) return GateOutcome::malformed;
      const std::uint64_t before = j.fence;
      j.fence = before + 1;
      j.owner = e.owner;
      HS_ASSERT(j.fence > before, "gate ledger: the fence of job {} must grow ({} after {})", e.job_id, j.fence,
                before);
      return GateOutcome::applied;
    }
    case GateOp::dc_accepted: {
      GateShare& s = j.shares[e.share];
      if (s.accepted) return GateOutcome::share_done;
      s.accepted = true;  // also on an ended share: its stop must reach the datacenter
      if (s.state == JobState::submitted) s.state = JobState::running;
      return GateOutcome::applied;
    }
    case GateOp::reroute: {
      GateShare& s = j.shares[e.share];
      if (s.accepted || terminal(s.state) || terminal(j.state)) return GateOutcome::share_done;
      if (e.dc.empty() || e.dc == s.dc) return GateOutcome::malformed;
      for (const auto& other : j.shares)
        if (other.dc == e.dc) return GateOutcome::malformed;  // one share per datacenter
      s.tried.push_back(s.dc);
      s.dc = e.dc;
      return GateOutcome::applied;
    }
    case GateOp::dc_done: {
      if (!valid_job_state(e.state) || !terminal(static_cast<JobState>(e.state))) return GateOutcome::malformed;
      GateShare& s = j.shares[e.share];
      if (terminal(s.state)) {
        s.late = true;  // recorded; the share's decided result stands
        return GateOutcome::late;
      }
      auto st = static_cast<JobState>(e.state);
      // A share stopped because the job timed out reads timeout, whatever the datacenter called it.
      if (j.state == JobState::timeout && st != JobState::completed) st = JobState::timeout;
      s.state = st;
      s.completed = std::max(s.completed, e.completed);
      s.failed = std::max(s.failed, e.failed);
      s.error = e.error;
      s.workflows = std::move(e.workflows);
      s.gate_decided = e.gate_decided;
      return GateOutcome::applied;
    }
    case GateOp::cancel:
      take_counts(j, e);
      if (j.cancel_requested || terminal(j.state)) return GateOutcome::job_terminal;
      j.cancel_requested = true;
      end(j, JobState::cancelled, e.error.empty() ? std::string("cancelled") : e.error);
      return GateOutcome::applied;
    case GateOp::job_done:
      take_counts(j, e);
      if (terminal(j.state)) return GateOutcome::job_terminal;
      if (!valid_job_state(e.state) || !terminal(static_cast<JobState>(e.state))) return GateOutcome::malformed;
      end(j, static_cast<JobState>(e.state), e.error);
      return GateOutcome::applied;
    case GateOp::cancel_done:
      if (!terminal(j.state)) return GateOutcome::not_terminal;
      if (j.cancel_complete) return GateOutcome::job_terminal;
      j.cancel_complete = true;
      for (auto& n : e.notes)
        if (j.cancel_errors.size() < 64) j.cancel_errors.push_back(std::move(n));
      return GateOutcome::applied;
    case GateOp::checkpoint:
      take_counts(j, e);
      return GateOutcome::applied;
    default:
      return GateOutcome::malformed;
  }
}

void GateLedger::settle(GateJob& j) {
  if (terminal(j.state)) return;
  for (const auto& s : j.shares)
    if (!terminal(s.state)) return;
  j.state = settle_state(j);
  if (j.state != JobState::completed && j.error.empty()) {
    for (const auto& s : j.shares) {
      if (s.state == JobState::completed) continue;
      j.error =
          fmt::format("datacenter {}: {}{}{}", s.dc, cluster::name(s.state), s.error.empty() ? "" : ": ", s.error);
      break;
    }
  }
}

const GateJob* GateLedger::job(const std::string& id) const {
  auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : &it->second;
}

std::optional<std::string> GateLedger::job_for_key(const std::string& key) const {
  auto it = keys_.find(key);
  if (it == keys_.end()) return std::nullopt;
  return it->second;
}

node::Bytes GateLedger::snapshot() {
  // The bytes of a SnapshotImage{applied_, every job}, written from the jobs in place: a copy of
  // every job first (specs included) cost more than the encoding, on the event loop, at every
  // snapshot. A record is its fields, then their length inserted before them (cluster::Enc).
  cluster::Enc enc;
  enc.w.u8(kSnapshotVersion);
  const std::size_t at = enc.w.out().size();
  std::uint64_t applied = applied_;
  enc.field(applied);
  enc.w.var(jobs_.size());
  for (auto& [id, j] : jobs_) enc(j);
  enc.w.prefix_length(at);
  return enc.w.take();
}

Status GateLedger::restore(std::span<const std::uint8_t> data) {
  if (data.empty() || data[0] != kSnapshotVersion)
    return make_error(Errc::corruption, "gate ledger snapshot: unknown version");
  SnapshotImage img;
  const char* why = "";
  if (!cluster::decode(data.subspan(1), img, &why))
    return make_error(Errc::corruption, fmt::format("gate ledger snapshot: {}", why));
  if (img.jobs.size() > limits_.max_jobs)
    return make_error(Errc::corruption, fmt::format("gate ledger snapshot: {} jobs over the limit {}", img.jobs.size(),
                                                    limits_.max_jobs));
  std::map<std::string, GateJob> jobs;
  std::map<std::string, std::string> keys;
  for (auto& j : img.jobs) {
    const std::string id = j.spec.job_id;
    if (id.empty() || j.shares.empty() || jobs.count(id) != 0)
      return make_error(Errc::corruption, fmt::format("gate ledger snapshot: job {} is inconsistent", id));
    if (!j.spec.idempotency_key.empty()) keys[j.spec.idempotency_key] = id;
    jobs.emplace(id, std::move(j));
  }
  jobs_ = std::move(jobs);
  keys_ = std::move(keys);
  applied_ = img.applied;
  active_ = 0;
  for (const auto& [id, j] : jobs_) active_ += terminal(j.state) ? 0 : 1;
  return Status();
}

}  // namespace hs::gate
