#include "hyperscale/load/schedule.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace hs::load {
namespace {
std::uint64_t split(std::uint64_t total, int shard, int shards) {
  const std::uint64_t n = static_cast<std::uint64_t>(shards);
  return total / n + (static_cast<std::uint64_t>(shard) < total % n ? 1 : 0);
}
}  // namespace

ShardShare share_for(const Workflow& wf, int shard, int shards) {
  ShardShare s;
  s.shard = shard;
  s.shards = shards;
  if (wf.kind == WorkflowKind::setup) {
    // Setup runs exactly once, on shard 0.
    s.active = shard == 0;
    s.vus = s.active ? 1 : 0;
    s.iterations = s.active ? 1 : 0;
    return s;
  }
  if (wf.executor == Executor::constant_vus) {
    s.vus = split(wf.vus, shard, shards);
    s.active = s.vus > 0;
    if (wf.iterations) {
      // Only shards with VUs take iterations.
      const int m = static_cast<int>(std::min<std::uint64_t>(wf.vus, static_cast<std::uint64_t>(shards)));
      s.iterations = shard < m ? split(*wf.iterations, shard, m) : 0;
      if (*s.iterations == 0) s.active = false;
    }
  } else {
    // Arrival index j (global) runs on shard j % shards; the slot cap is split evenly (>= 1).
    s.vus = std::max<std::uint64_t>(1, split(wf.max_vus, shard, shards));
    if (wf.iterations) {
      s.iterations = split(*wf.iterations, shard, shards);
      if (*s.iterations == 0) s.active = false;
    }
  }
  return s;
}

Result<std::vector<PartShare>> split_parts(const Workflow& wf, const std::vector<std::uint32_t>& cores_per_part) {
  if (cores_per_part.empty()) return make_error(Errc::invalid_argument, "split_parts: no parts");
  std::uint64_t total = 0;
  for (std::size_t k = 0; k < cores_per_part.size(); ++k) {
    if (cores_per_part[k] == 0)
      return make_error(Errc::invalid_argument, fmt::format("split_parts: part {} has 0 cores", k));
    total += cores_per_part[k];
    if (total > kMaxGlobalShards)
      return make_error(Errc::invalid_argument,
                        fmt::format("split_parts: more than {} cores in total", kMaxGlobalShards));
  }
  const int shards = static_cast<int>(total);
  const bool arrival = wf.kind == WorkflowKind::test && wf.executor == Executor::constant_arrival_rate;
  std::vector<PartShare> out;
  out.reserve(cores_per_part.size());
  std::uint32_t first = 0;
  for (std::uint32_t cores : cores_per_part) {
    PartShare p;
    p.first_shard = first;
    p.shards = cores;
    if (wf.iterations || wf.kind == WorkflowKind::setup) p.iterations = 0;
    for (std::uint32_t i = 0; i < cores; ++i) {
      const int g = static_cast<int>(first + i);
      const ShardShare s = share_for(wf, g, shards);
      if (s.active) p.active = true;
      p.vus += s.vus;
      if (s.iterations) *p.iterations += *s.iterations;
      if (arrival) p.max_vus += split(wf.max_vus, g, shards);
    }
    first += cores;
    out.push_back(p);
  }
  return out;
}

std::vector<ShardShare> part_shares(const Workflow& wf, std::uint32_t first, std::uint32_t shards, std::uint32_t total,
                                    std::uint64_t skip_iterations) {
  std::vector<ShardShare> out;
  out.reserve(shards);
  std::uint64_t budget = 0;
  std::size_t with_budget = 0;  // shards with iterations to give
  for (std::uint32_t i = 0; i < shards; ++i) {
    out.push_back(share_for(wf, static_cast<int>(first + i), static_cast<int>(total)));
    const std::uint64_t n = out.back().iterations.value_or(0);
    budget += n;
    if (n > 0) ++with_budget;
  }
  if (wf.kind != WorkflowKind::test || !wf.iterations) return out;  // nothing to skip
  // Spread evenly over the shards that have iterations, the earlier ones taking the remainder, each at
  // most its share; `left` always fits in the shares still to come, so the total skipped is exact.
  std::uint64_t left = std::min(skip_iterations, budget);
  std::uint64_t rest = budget;  // iterations of the shards from this one on
  std::size_t j = 0;
  for (ShardShare& s : out) {
    const std::uint64_t n = s.iterations.value_or(0);
    if (n == 0) continue;
    rest -= n;
    const std::uint64_t even = left / (with_budget - j) + (left % (with_budget - j) != 0 ? 1 : 0);
    const std::uint64_t k = std::min(n, std::max(even, left > rest ? left - rest : 0));
    s.skipped = k;
    *s.iterations = n - k;
    if (*s.iterations == 0) s.active = false;
    left -= k;
    ++j;
  }
  return out;
}

Driver::Driver(const Workflow& wf, ShardShare share, Instant start)
    : executor_(wf.kind == WorkflowKind::setup ? Executor::constant_vus : wf.executor),
      share_(share),
      start_(start),
      end_(start + wf.duration),
      graceful_(wf.graceful_stop),
      pause_(wf.kind == WorkflowKind::setup ? Duration{0} : wf.pause),
      rate_(wf.rate),
      unit_(wf.time_unit) {
  if (!share_.active) {
    end_ = start;
    return;
  }
  if (executor_ == Executor::constant_vus) {
    ring_.resize(std::max<std::uint64_t>(1, share_.vus));
    for (std::uint64_t v = 0; v < share_.vus; ++v) push_ready(start, v);
  } else {
    free_.reserve(share_.vus);
    for (std::uint64_t v = share_.vus; v > 0; --v) free_.push_back(v - 1);
    next_k_ = share_.skipped;  // the arrivals an earlier attempt accounted for are not run again
  }
}

Instant Driver::due(std::uint64_t k) const {
  // Global arrival j = shard + k * shards at start + j * unit / rate.
  const __int128 j = static_cast<__int128>(share_.shard) + static_cast<__int128>(k) * share_.shards;
  const __int128 off = j * unit_.count() / static_cast<__int128>(rate_);
  return start_ + Duration(static_cast<std::int64_t>(off));
}

void Driver::poll(Instant now, std::vector<Start>& out) {
  if (!share_.active) return;
  if (executor_ == Executor::constant_vus) {
    while (count_ > 0 && ring_[head_].at <= now && now < end_ && budget_left()) {
      out.push_back({ring_[head_].vu, now});
      head_ = (head_ + 1) % ring_.size();
      --count_;
      ++started_;
      ++inflight_;
    }
    return;
  }
  while (budget_left()) {
    const Instant d = due(next_k_);
    if (d > now || d >= end_) break;
    ++next_k_;
    if (free_.empty()) {
      ++dropped_;
      continue;
    }
    const std::uint64_t vu = free_.back();
    free_.pop_back();
    out.push_back({vu, d});
    ++started_;
    ++inflight_;
  }
}

void Driver::on_done(std::uint64_t vu, Instant now) {
  if (inflight_ > 0) --inflight_;
  ++completed_;
  if (executor_ == Executor::constant_vus)
    push_ready(now + pause_, vu);
  else
    free_.push_back(vu);
}

void Driver::on_interrupted(std::uint64_t vu) {
  if (inflight_ > 0) --inflight_;
  ++interrupted_;
  if (executor_ == Executor::constant_vus)
    push_ready(end_, vu);
  else
    free_.push_back(vu);
}

void Driver::stop(Instant now, Duration grace) {
  if (grace < Duration{0}) grace = Duration{0};
  const Instant deadline = std::min(end_ + graceful_, now + grace);
  if (now < end_) end_ = std::max(now, start_);
  graceful_ = std::max(Duration{0}, deadline - end_);
}

Driver::Phase Driver::phase(Instant now) const {
  const bool more = share_.active && now < end_ && budget_left();
  if (more) return Phase::running;
  return inflight_ > 0 ? Phase::draining : Phase::done;
}

Instant Driver::next_wakeup(Instant now) const {
  const Phase p = phase(now);
  if (p == Phase::done) return kNever;
  if (p == Phase::draining) return end_ + graceful_ > now ? end_ + graceful_ : now;
  Instant next = end_;  // the phase change
  if (executor_ == Executor::constant_vus) {
    if (count_ > 0) next = std::min(next, std::max(ring_[head_].at, now));
  } else {
    next = std::min(next, std::max(due(next_k_), now));
  }
  return next;
}

}  // namespace hs::load
