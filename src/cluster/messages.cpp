#include "hyperscale/cluster/messages.hpp"

#include "hyperscale/base/enum_names.hpp"

namespace hs::cluster {

constexpr EnumNames<JobState, 7> kJobStateNames{
    {"submitted", "running", "completed", "failed", "cancelled", "timeout", "partial"}};
static_assert(kJobStateNames.covers(JobState::partial));

const char* name(JobState s) { return kJobStateNames(s); }

constexpr EnumNames<WfState, 6> kWfStateNames{{"pending", "dispatched", "running", "completed", "failed", "cancelled"}};
static_assert(kWfStateNames.covers(WfState::cancelled));

const char* name(WfState s) { return kWfStateNames(s); }

constexpr EnumNames<Err, 9> kErrNames{
    {"none", "invalid", "conflict", "not_leader", "no_quorum", "overloaded", "not_found", "fence", "unavailable"}};
static_assert(kErrNames.covers(Err::unavailable));

const char* name(Err e) { return kErrNames(e); }

constexpr EnumNames<Health, 4> kHealthNames{{"healthy", "busy", "degraded", "overloaded"}};
static_assert(kHealthNames.covers(Health::overloaded));

const char* name(Health h) { return kHealthNames(h); }

constexpr EnumNames<DcState, 5> kDcStateNames{{"awaiting", "initializing", "ready", "partial", "unavailable"}};
static_assert(kDcStateNames.covers(DcState::unavailable));

const char* name(DcState s) { return kDcStateNames(s); }

constexpr EnumNames<DcHealth, 4> kDcHealthNames{{"healthy", "busy", "degraded", "unhealthy"}};
static_assert(kDcHealthNames.covers(DcHealth::unhealthy));

const char* name(DcHealth h) { return kDcHealthNames(h); }

std::uint64_t digest_of(const JobSpec& spec) {
  JobSpec copy = spec;
  copy.job_id.clear();
  copy.idempotency_key.clear();
  Enc e;
  e(copy);
  // FNV-1a 64 over the canonical encoding.
  std::uint64_t h = 1469598103934665603ull;
  for (std::uint8_t c : e.w.out()) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace hs::cluster
