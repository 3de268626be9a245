#include "hyperscale/cluster/intake.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

namespace hs::cluster {

bool valid_id(const std::string& s, std::size_t max) {
  if (s.empty() || s.size() > max) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.';
  });
}

// Kahn's algorithm: every workflow is reached once its dependencies are.
bool deps_acyclic(const JobSpec& s) {
  std::vector<int> indeg(s.workflows.size(), 0);
  for (std::size_t i = 0; i < s.workflows.size(); ++i) indeg[i] = static_cast<int>(s.workflows[i].deps.size());
  std::vector<std::size_t> ready;
  for (std::size_t i = 0; i < indeg.size(); ++i)
    if (indeg[i] == 0) ready.push_back(i);
  std::size_t seen = 0;
  while (!ready.empty()) {
    const std::size_t i = ready.back();
    ready.pop_back();
    ++seen;
    for (std::size_t k = 0; k < s.workflows.size(); ++k)
      for (const auto& d : s.workflows[k].deps)
        if (d == s.workflows[i].name && --indeg[k] == 0) ready.push_back(k);
  }
  return seen == s.workflows.size();
}

std::optional<std::string> check_job(const JobSpec& s, std::size_t max_workflows, std::size_t max_plan_bytes) {
  if (!valid_id(s.job_id, 64)) return "job id must be 1-64 characters of [A-Za-z0-9._-]";
  if (s.idempotency_key.size() > 256) return "idempotency key longer than 256 bytes";
  if (s.workflows.empty()) return "the job has no workflows";
  if (s.workflows.size() > max_workflows)
    return fmt::format("the job has {} workflows; the limit is {}", s.workflows.size(), max_workflows);
  if (s.timeout_ms > 7ull * 24 * 3600 * 1000) return "timeout longer than 7 days";
  std::map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < s.workflows.size(); ++i) {
    const auto& w = s.workflows[i];
    if (!valid_id(w.name, 128))
      return fmt::format("workflow name '{}' must be 1-128 characters of [A-Za-z0-9._-]", w.name);
    if (!index.emplace(w.name, i).second) return fmt::format("duplicate workflow name '{}'", w.name);
    if (w.vus == 0) return fmt::format("workflow '{}': vus must be at least 1", w.name);
    if (w.plan.size() > max_plan_bytes) return fmt::format("workflow '{}': plan larger than the limit", w.name);
  }
  for (const auto& w : s.workflows)
    for (const auto& d : w.deps) {
      if (index.count(d) == 0) return fmt::format("workflow '{}' depends on unknown workflow '{}'", w.name, d);
      if (d == w.name) return fmt::format("workflow '{}' depends on itself", w.name);
    }
  if (!deps_acyclic(s)) return "the workflow dependencies form a cycle";
  return std::nullopt;
}

void RejectionCache::remember(const std::string& key, std::uint64_t digest, const SubmitAck& ack, Instant now) {
  if (key.empty() || max_ == 0) return;
  while (entries_.size() >= max_ && !expiry_.empty()) {
    auto it = entries_.find(expiry_.front().second);
    if (it != entries_.end() && it->second.expires == expiry_.front().first) {
      entries_.erase(it);
      ++evicted_;
    }
    expiry_.pop_front();
  }
  if (entries_.size() >= max_) return;
  const Instant expires = now + ttl_;
  entries_[key] = Entry{digest, ack, expires};
  expiry_.emplace_back(expires, key);
}

std::optional<SubmitAck> RejectionCache::find(const std::string& key, std::uint64_t digest) {
  if (key.empty()) return std::nullopt;
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  if (it->second.digest != digest) {
    entries_.erase(it);
    return std::nullopt;
  }
  return it->second.ack;
}

void RejectionCache::expire(Instant now) {
  while (!expiry_.empty() && expiry_.front().first <= now) {
    auto it = entries_.find(expiry_.front().second);
    if (it != entries_.end() && it->second.expires <= now) entries_.erase(it);
    expiry_.pop_front();
  }
}

}  // namespace hs::cluster
