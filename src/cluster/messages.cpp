#include "hyperscale/cluster/messages.hpp"

namespace hs::cluster {

const char* name(JobState s) {
  switch (s) {
    case JobState::submitted:
      return "submitted";
    case JobState::running:
      return "running";
    case JobState::completed:
      return "completed";
    case JobState::failed:
      return "failed";
    case JobState::cancelled:
      return "cancelled";
    case JobState::timeout:
      return "timeout";
    case JobState::partial:
      return "partial";
  }
  return "unknown";
}

const char* name(WfState s) {
  switch (s) {
    case WfState::pending:
      return "pending";
    case WfState::dispatched:
      return "dispatched";
    case WfState::running:
      return "running";
    case WfState::completed:
      return "completed";
    case WfState::failed:
      return "failed";
    case WfState::cancelled:
      return "cancelled";
  }
  return "unknown";
}

const char* name(Err e) {
  switch (e) {
    case Err::none:
      return "none";
    case Err::invalid:
      return "invalid";
    case Err::conflict:
      return "conflict";
    case Err::not_leader:
      return "not_leader";
    case Err::no_quorum:
      return "no_quorum";
    case Err::overloaded:
      return "overloaded";
    case Err::not_found:
      return "not_found";
    case Err::fence:
      return "fence";
    case Err::unavailable:
      return "unavailable";
  }
  return "unknown";
}

const char* name(Health h) {
  switch (h) {
    case Health::healthy:
      return "healthy";
    case Health::busy:
      return "busy";
    case Health::degraded:
      return "degraded";
    case Health::overloaded:
      return "overloaded";
  }
  return "unknown";
}

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
