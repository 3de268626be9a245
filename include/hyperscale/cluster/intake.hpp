// What managers and gates share when they take a job from a client: the checks of a job spec that
// do not depend on the role, and the remembered rejections of the idempotency rules (a rejected
// submission's answer is given again to a repeat of the same key and payload for a TTL).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "hyperscale/base/time.hpp"
#include "hyperscale/cluster/messages.hpp"

namespace hs::cluster {

// 1..max characters of [A-Za-z0-9._-] (job ids, workflow and datacenter names).
bool valid_id(const std::string& s, std::size_t max);
// The workflows' dependencies form no cycle.
bool deps_acyclic(const JobSpec& s);
// The role-independent checks of a submitted job: ids and names, the key's length, at least one and
// at most max_workflows workflows, vus, the timeout, dependencies (known, not itself, no cycle) and
// each plan's size. The error says what is wrong, naming the workflow.
std::optional<std::string> check_job(const JobSpec& s, std::size_t max_workflows, std::size_t max_plan_bytes);

// Rejected submissions by idempotency key, each with its payload digest and answer, for a TTL.
// Bounded: at most `max` keys; a new one past it evicts the one expiring first (counted).
class RejectionCache {
 public:
  RejectionCache(std::size_t max, Duration ttl) : max_(max), ttl_(ttl) {}
  void remember(const std::string& key, std::uint64_t digest, const SubmitAck& ack, Instant now);
  // The remembered answer for this key and payload. A different payload under the key forgets the
  // rejection (the new payload is evaluated afresh).
  std::optional<SubmitAck> find(const std::string& key, std::uint64_t digest);
  void expire(Instant now);
  std::size_t size() const noexcept { return entries_.size(); }
  std::size_t queued() const noexcept { return expiry_.size(); }
  std::uint64_t evicted() const noexcept { return evicted_; }

 private:
  struct Entry {
    std::uint64_t digest = 0;
    SubmitAck ack;
    Instant expires{0};
  };
  std::size_t max_;
  Duration ttl_;
  std::map<std::string, Entry> entries_;
  std::deque<std::pair<Instant, std::string>> expiry_;  // in expiry order (one TTL for all)
  std::uint64_t evicted_ = 0;
};

}  // namespace hs::cluster
