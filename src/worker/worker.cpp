#include "hyperscale/worker/worker.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "hyperscale/base/assert.hpp"
#include "hyperscale/base/log.hpp"
#include "hyperscale/cluster/ledger.hpp"

namespace hs::worker {

using namespace cluster;

namespace {
constexpr std::uint64_t kTagShift = 56;
constexpr std::uint64_t kTagValue = (1ull << kTagShift) - 1;
constexpr std::size_t kMaxAcksPerDispatch = 8;  // answers waiting for one dispatch's sync barrier
std::uint64_t make_tag(std::uint64_t kind, std::uint64_t v) { return (kind << kTagShift) | (v & kTagValue); }

long long ms(Duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

// Fence marks are persisted as records of the "fence" log: job, workflow, token, part (records
// written before parts end after the token: part 0).
std::vector<std::uint8_t> mark_record(const ExecKey& k, std::uint64_t token) {
  Writer w;
  w.str(k.job);
  w.str(k.workflow);
  w.var(token);
  w.var(k.part);
  return w.take();
}

template <class T>
bool parse(std::span<const std::uint8_t> body, T& m, WorkerStats& st, NodeId from, const char* what) {
  const char* why = nullptr;
  if (decode(body, m, &why)) return true;
  st.decode_errors++;
  log::warn("worker", "decode_error", "from={} type={} error={}", from, what, why);
  return false;
}
}  // namespace

Worker::Worker(WorkerConfig cfg, Executor& exec) : cfg_(std::move(cfg)), exec_(exec) {}
Worker::~Worker() = default;

void Worker::send(NodeId to, MsgType t, auto& msg) { ctx_->send(to, encode(t, msg)); }

// To the leader of the highest term heard; to every manager while that leader is not known.
void Worker::send_to_leader(MsgType t, auto& msg) {
  if (leader_ != 0) {
    send(leader_, t, msg);
    return;
  }
  const auto bytes = encode(t, msg);
  for (NodeId m : cfg_.managers) ctx_->send(m, bytes);
}

void Worker::on_start(node::Context& ctx) {
  ctx_ = &ctx;
  boot_ = ctx.rng().next_u64() | 1;
  load_marks();
  next_heartbeat_ = ctx.now();
  next_progress_ = ctx.now() + cfg_.progress;
  ctx.set_timer(Duration{0}, make_tag(kTick, 0));
  log::info("worker", "started", "cores={} managers={} orphan_grace_ms={}", cfg_.cores, cfg_.managers.size(),
            ms(cfg_.orphan_grace));
}

// ---------------------------------------------------------------- fence marks

void Worker::load_marks() {
  const Instant now = ctx_->now();
  for (const auto& rec : ctx_->disk().read_log("fence")) {
    Reader r(rec);
    ExecKey k;
    k.job = r.str(256);
    k.workflow = r.str(256);
    const std::uint64_t token = r.var();
    const std::uint64_t part = r.ok() && !r.at_end() ? r.var() : 0;
    if (r.ok() && part > UINT32_MAX) r.fail("part out of range");
    if (!r.ok()) {
      stats_.decode_errors++;
      log::error("worker", "fence_record_corrupt", "error={} (record skipped)", r.error());
      continue;
    }
    k.part = static_cast<std::uint32_t>(part);
    Mark& m = marks_[k];
    m.token = std::max(m.token, token);
    m.at = now;
  }
  // Rewrite the log with only the live marks (keeps it bounded across restarts).
  compact_marks();
}

// The mark is raised in memory only once its record is written: a refused write changes nothing, so
// the leader's retry with the same token is not fenced by a mark that never reached the disk.
Status Worker::set_mark(const Key& k, std::uint64_t token) {
  auto mk = marks_.find(k);
  const std::uint64_t hw = std::max(token, mk == marks_.end() ? 0 : mk->second.token);
  if (Status st = ctx_->disk().append("fence", mark_record(k, hw)); !st.ok()) return st;
  if (mk == marks_.end() && marks_.size() >= cfg_.max_hw) {
    // Evict the oldest mark (well past any live job at the default bounds).
    auto oldest = std::min_element(marks_.begin(), marks_.end(),
                                   [](const auto& a, const auto& b) { return a.second.at < b.second.at; });
    marks_.erase(oldest);
    stats_.hw_evicted++;
  }
  Mark& m = marks_[k];
  m.token = hw;
  m.at = ctx_->now();
  if (++mark_log_records_ > 2 * marks_.size() + 1000) compact_marks();
  return ok_status();
}

void Worker::compact_marks() {
  // One atomic replace: a crash leaves the old log or the new one, never a log missing live marks.
  std::vector<node::Bytes> records;
  records.reserve(marks_.size());
  for (const auto& [key, mk] : marks_) records.push_back(mark_record(key, mk.token));
  if (Status st = ctx_->disk().replace_log("fence", records); !st.ok()) {
    stats_.disk_errors++;
    log::error("worker", "fence_compact_failed", "marks={} error={} (the old fence log stands)", marks_.size(),
               log::quoted(st.to_string()));
    return;
  }
  mark_log_records_ = marks_.size();
}

void Worker::record(ExecEvent::Kind k, const ExecKey& key, std::uint64_t token) {
  if (log_.size() >= cfg_.max_log) log_.pop_front();
  log_.push_back(ExecEvent{k, key.job, key.workflow, token, ctx_->now(), key.part});
}

std::vector<ExecReport> Worker::live() const {
  std::vector<ExecReport> out;
  for (const auto& [k, e] : execs_) {
    if (e.done) continue;
    out.push_back(ExecReport{e.job_id, e.workflow, e.token, e.cores, leader_, e.completed, e.failed, e.part});
  }
  return out;
}

// ---------------------------------------------------------------- timers

void Worker::on_timer(node::Context& ctx, node::TimerId, std::uint64_t tag) {
  ctx_ = &ctx;
  const bool sync_failed = (tag & node::kSyncFailed) != 0;
  tag &= ~node::kSyncFailed;
  const std::uint64_t kind = tag >> kTagShift;
  if (kind == kTick) {
    ctx.set_timer(cfg_.tick, make_tag(kTick, 0));
    tick();
  } else if (kind == kAck) {
    on_sync(tag & kTagValue, sync_failed);
  } else {
    log::error("worker", "unknown_timer", "tag={} (ignored)", tag);
  }
}

// A dispatch's fence mark is durable (or its barrier failed): acknowledge, or unwind and refuse.
void Worker::on_sync(std::uint64_t seq, bool failed) {
  auto it = acks_.find(seq);
  if (it == acks_.end()) return;
  std::vector<PendingAck> batch = std::move(it->second);
  acks_.erase(it);
  for (PendingAck& p : batch) {
    if (failed) {
      unwind_unsynced(p);
      continue;
    }
    send(p.to, MsgType::dispatch_ack, p.ack);
    auto e = execs_.find(ExecKey{p.ack.job_id, p.ack.workflow, p.ack.part});
    if (e == execs_.end() || e->second.ack_seq != seq) continue;
    e->second.ack_seq = 0;
    send_windows(e->second);                     // windows made before its ack could go out
    if (e->second.done) send_result(e->second);  // it finished before its ack could go out
  }
}

// The sync barrier covering a dispatch's fence mark failed: the dispatch must not be acknowledged as
// accepted. Its execution is cancelled and forgotten (nothing about it was reported yet: progress and
// results wait for the ack), its cores freed, and the dispatch refused. The mark stays raised in
// memory (the write may still reach the disk), so a retry needs a new token.
void Worker::unwind_unsynced(PendingAck& p) {
  auto it = execs_.find(ExecKey{p.ack.job_id, p.ack.workflow, p.ack.part});
  if (it != execs_.end() && it->second.token == p.ack.token && it->second.ack_seq != 0) {
    Exec& e = it->second;
    stats_.sync_failures++;
    stats_.disk_errors++;
    log::error("worker", "dispatch_unwound",
               "job={} workflow={} token={} done={} (the fence mark's sync failed: execution cancelled, dispatch "
               "refused)",
               log::quoted(e.job_id), log::quoted(e.workflow), e.token, e.done);
    if (!e.done) {
      exec_.cancel(e.id);
      release_cores(e.cores);
    } else {
      stats_.results_dropped++;
    }
    record(ExecEvent::rejected, it->first, e.token);
    by_id_.erase(e.id);
    execs_.erase(it);
  }
  p.ack.accepted = false;
  p.ack.code = Err::unavailable;
  p.ack.error = "fence mark not durable: the sync barrier failed";
  p.ack.available_cores = free_cores();
  send(p.to, MsgType::dispatch_ack, p.ack);
}

void Worker::tick() {
  const Instant now = ctx_->now();
  if (now >= next_heartbeat_) heartbeat();
  if (now >= next_progress_) send_progress();
  for (auto it = execs_.begin(); it != execs_.end();) {
    Exec& e = it->second;
    check_exec(e, now);
    if (e.ack_seq == 0 && !e.windows.empty() && (e.window_inflight_through == 0 || now >= e.window_resend_at))
      send_windows(e);
    if (e.done && e.ack_seq == 0 && now >= e.resend_at) {
      if (expire_result(e, now)) {
        by_id_.erase(e.id);
        it = execs_.erase(it);
        continue;
      }
      send_result(e);
    }
    ++it;
  }
  // Age out fence marks of long-finished jobs.
  for (auto it = marks_.begin(); it != marks_.end();) {
    if (now - it->second.at > cfg_.hw_retention && execs_.count(it->first) == 0)
      it = marks_.erase(it);
    else
      ++it;
  }
}

void Worker::heartbeat() {
  next_heartbeat_ = ctx_->now() + cfg_.heartbeat;
  Heartbeat hb;
  hb.total_cores = cfg_.cores;
  hb.available_cores = free_cores();
  hb.health = health_;
  hb.execs = live();
  hb.boot = boot_;
  const auto bytes = encode(MsgType::heartbeat, hb);
  for (NodeId m : cfg_.managers) ctx_->send(m, bytes);
}

void Worker::send_progress() {
  next_progress_ = ctx_->now() + cfg_.progress;
  for (auto& [k, e] : execs_) {
    if (e.done || e.ack_seq != 0) continue;
    Progress p{e.job_id, e.workflow, e.token, e.completed, e.failed, e.part, e.started};
    send_to_leader(MsgType::progress, p);
  }
}

// Force-frees an execution that ignored its stop; stops one that no leader confirmed for orphan_grace.
void Worker::check_exec(Exec& e, Instant now) {
  if (e.done) return;
  if (e.stopping && now >= e.stop_deadline) {
    stats_.force_stops++;
    log::warn("worker", "force_stop", "job={} workflow={} token={} grace_ms={} (the execution ignored its stop)",
              log::quoted(e.job_id), log::quoted(e.workflow), e.token, ms(cfg_.stop_grace));
    ExecResult r;
    r.outcome = ExecOutcome::cancelled;
    r.completed = e.completed;
    r.failed = e.failed;
    r.error = "the execution did not stop within the grace; its cores were forced free";
    finish(e, std::move(r));
    return;
  }
  if (!e.stopping && now - e.confirmed_at >= cfg_.orphan_grace) {
    stats_.orphaned++;
    log::warn("worker", "orphan_cancelled",
              "job={} workflow={} token={} dispatched_by={} leader={} term={} (no leader confirmed it for {} ms)",
              log::quoted(e.job_id), log::quoted(e.workflow), e.token, e.dispatched_by, leader_, leader_term_,
              ms(now - e.confirmed_at));
    stop(e, "orphaned: no leader confirmed it");
  }
}

// Drops a result unacknowledged for result_keep (the leaders lost interest, or none was reachable).
bool Worker::expire_result(const Exec& e, Instant now) {
  if (now - e.done_at < cfg_.result_keep) return false;
  stats_.results_dropped++;
  log::warn("worker", "result_dropped",
            "job={} workflow={} token={} leader={} term={} (unacknowledged for {} ms; result_keep)",
            log::quoted(e.job_id), log::quoted(e.workflow), e.token, leader_, leader_term_, ms(now - e.done_at));
  return true;
}

// ---------------------------------------------------------------- messages

void Worker::on_message(node::Context& ctx, NodeId from, std::span<const std::uint8_t> msg) {
  ctx_ = &ctx;
  if (msg.empty()) {
    stats_.decode_errors++;
    log::warn("worker", "decode_error", "from={} error=\"empty message\"", from);
    return;
  }
  const auto body = msg.subspan(1);
  switch (static_cast<MsgType>(msg[0])) {
    case MsgType::dispatch: {
      Dispatch d;
      if (parse(body, d, stats_, from, "dispatch")) handle_dispatch(from, d);
      break;
    }
    case MsgType::result_ack: {
      ResultAck a;
      if (parse(body, a, stats_, from, "result_ack")) handle_result_ack(a);
      break;
    }
    case MsgType::window_ack: {
      WindowAck a;
      if (parse(body, a, stats_, from, "window_ack")) handle_window_ack(a);
      break;
    }
    case MsgType::stop_exec: {
      StopExec s;
      if (parse(body, s, stats_, from, "stop_exec")) handle_stop(from, s);
      break;
    }
    case MsgType::heartbeat_ack: {
      HeartbeatAck a;
      if (parse(body, a, stats_, from, "heartbeat_ack")) handle_heartbeat_ack(from, a);
      break;
    }
    default:
      stats_.unknown_messages++;
      log::warn("worker", "unknown_message", "from={} type={}", from, int(msg[0]));
      break;
  }
}

void Worker::learn(std::uint64_t term, NodeId leader) {
  if (term < leader_term_) return;
  if (term > leader_term_) {
    log::info("worker", "term_advanced", "term={} previous={} leader={}", term, leader_term_, leader);
    leader_term_ = term;
    set_leader(leader);  // 0: the old term's leader is deposed and the new one is not known yet
    return;
  }
  if (leader != 0) set_leader(leader);
}

void Worker::set_leader(NodeId leader) {
  if (leader == leader_) return;
  log::info("worker", "leader_changed", "term={} leader={} previous={} (pending results re-sent)", leader_term_, leader,
            leader_);
  leader_ = leader;
  stats_.leader_changes++;
  for (auto& [k, e] : execs_) {
    if (e.ack_seq != 0) continue;
    e.window_inflight_through = 0;  // the new leader gets the queued windows at once
    send_windows(e);
    if (e.done) send_result(e);
  }
}

void Worker::handle_heartbeat_ack(NodeId from, const HeartbeatAck& a) {
  learn(a.term, a.is_leader ? from : a.leader);
  if (!a.is_leader || a.term < leader_term_) {
    if (!a.stop.empty()) {
      stats_.ignored_stop_lists++;
      log::info("worker", "stop_list_ignored", "from={} is_leader={} term={} leader_term={} items={}", from,
                a.is_leader, a.term, leader_term_, a.stop.size());
    }
    return;
  }
  for (const auto& item : a.stop) {
    auto it = execs_.find(ExecKey{item.job_id, item.workflow, item.part});
    if (it != execs_.end() && !it->second.done && it->second.token == item.token)
      stop(it->second, "stopped by the leader (stale or cancelled)");
  }
  // Every execution the leader did not ask to stop is confirmed: the leader of the highest term
  // knows this worker and wants its live work to go on.
  const Instant now = ctx_->now();
  for (auto& [k, e] : execs_)
    if (!e.done && !e.stopping) e.confirmed_at = now;
}

void Worker::handle_stop(NodeId from, const StopExec& s) {
  StopAck ack{s.job_id, s.workflow, s.token, false, s.part};
  if (s.term < leader_term_) {
    stats_.deposed_rejects++;
    log::warn("worker", "stop_refused", "from={} job={} workflow={} token={} reason={}", from, log::quoted(s.job_id),
              log::quoted(s.workflow), s.token,
              log::quoted(fmt::format("from a deposed leader: term {} < {}", s.term, leader_term_)));
    send(from, MsgType::stop_ack, ack);
    return;
  }
  learn(s.term, from);
  const ExecKey k{s.job_id, s.workflow, s.part};
  auto it = execs_.find(k);
  if (it != execs_.end() && !it->second.done && it->second.token <= s.token) {
    stop(it->second, "stop requested");
    ack.stopped = true;
  }
  // The leader wants nothing up to this token running. A dispatch of it may still be on its way
  // (the stop overtook it): raise the fence so it is refused when it comes.
  if (auto mk = marks_.find(k); mk == marks_.end() || mk->second.token < s.token) {
    if (Status st = set_mark(k, s.token); !st.ok()) {
      stats_.disk_errors++;
      log::error("worker", "stop_fence_failed",
                 "job={} workflow={} token={} error={} (a late dispatch of it would start)", log::quoted(s.job_id),
                 log::quoted(s.workflow), s.token, log::quoted(st.to_string()));
    }
  }
  send(from, MsgType::stop_ack, ack);
}

void Worker::handle_result_ack(const ResultAck& a) {
  auto it = execs_.find(ExecKey{a.job_id, a.workflow, a.part});
  if (it == execs_.end() || !it->second.done || it->second.ack_seq != 0 || it->second.token != a.token) return;
  by_id_.erase(it->second.id);
  execs_.erase(it);
}

// ---------------------------------------------------------------- dispatch

void Worker::handle_dispatch(NodeId from, Dispatch& d) {
  stats_.dispatches++;
  DispatchAck ack{d.job_id, d.workflow, d.token, false, Err::none, "", free_cores(), d.part};
  const ExecKey k{d.job_id, d.workflow, d.part};
  if (refuse_deposed(from, d, ack)) return;
  learn(d.term, from);  // only a leader dispatches: the sender leads its term
  if (refuse_duplicate(from, d, ack)) return;
  record(ExecEvent::received, k, d.token);
  if (refuse_fence(from, d, ack)) return;
  supersede(k);
  if (refuse_resources(from, d, ack)) return;
  if (Status st = set_mark(k, d.token); !st.ok()) {
    stats_.disk_errors++;
    log::error("worker", "fence_mark_failed", "job={} workflow={} token={} error={}", log::quoted(d.job_id),
               log::quoted(d.workflow), d.token, log::quoted(st.to_string()));
    refuse(from, d, ack, Err::unavailable, "fence mark not durable: " + st.message());
    return;
  }
  start_exec(from, d, ack);
}

void Worker::release_cores(std::uint32_t n) {
  HS_ASSERT(n <= used_, "worker: releasing {} cores with {} in use", n, used_);
  used_ -= n;
}

void Worker::refuse(NodeId from, const Dispatch& d, DispatchAck& ack, Err code, std::string error) {
  ack.accepted = false;
  ack.code = code;
  ack.error = std::move(error);
  ack.available_cores = free_cores();
  log::warn("worker", "dispatch_refused", "from={} job={} workflow={} token={} term={} code={} reason={}", from,
            log::quoted(d.job_id), log::quoted(d.workflow), d.token, d.term, name(code), log::quoted(ack.error));
  record(ExecEvent::rejected, ExecKey{d.job_id, d.workflow, d.part}, d.token);
  send(from, MsgType::dispatch_ack, ack);
}

bool Worker::refuse_deposed(NodeId from, const Dispatch& d, DispatchAck& ack) {
  if (d.term >= leader_term_) return false;
  stats_.deposed_rejects++;
  refuse(from, d, ack, Err::fence, fmt::format("from a deposed leader: term {} < {}", d.term, leader_term_));
  return true;
}

// The same token again: the leader missed the ack (or the result). Nothing starts a second time.
bool Worker::refuse_duplicate(NodeId from, const Dispatch& d, DispatchAck& ack) {
  auto it = execs_.find(ExecKey{d.job_id, d.workflow, d.part});
  if (it == execs_.end() || it->second.token != d.token) return false;
  Exec& e = it->second;
  stats_.duplicates++;
  if (!e.done && !e.stopping) e.confirmed_at = ctx_->now();
  ack.accepted = true;
  log::info("worker", "duplicate_dispatch", "from={} job={} workflow={} token={} done={}", from, log::quoted(d.job_id),
            log::quoted(d.workflow), d.token, e.done);
  if (auto pending = acks_.find(e.ack_seq); e.ack_seq != 0 && pending != acks_.end()) {
    // Answered with the first, once the mark is durable (a few answers are enough: the rest are dropped).
    if (pending->second.size() < kMaxAcksPerDispatch)
      pending->second.push_back(PendingAck{from, ack});
    else
      log::warn("worker", "duplicate_unanswered", "from={} job={} workflow={} token={} (already {} answers pending)",
                from, log::quoted(d.job_id), log::quoted(d.workflow), d.token, kMaxAcksPerDispatch);
    return true;
  }
  send(from, MsgType::dispatch_ack, ack);
  if (e.done) send_result(e);  // the leader evidently lacks it
  return true;
}

bool Worker::refuse_fence(NodeId from, const Dispatch& d, DispatchAck& ack) {
  auto mk = marks_.find(ExecKey{d.job_id, d.workflow, d.part});
  const std::uint64_t hw = mk == marks_.end() ? 0 : mk->second.token;
  if (d.token > hw) return false;  // a token of a lower term is numerically lower (term << 32 | seq)
  stats_.fence_rejects++;
  refuse(from, d, ack, Err::fence,
         fmt::format("stale fence token {} (term {}); seen {} (term {})", d.token, token_term(d.token), hw,
                     token_term(hw)));
  return true;
}

bool Worker::refuse_resources(NodeId from, const Dispatch& d, DispatchAck& ack) {
  if (fail_next_dispatches > 0) {
    --fail_next_dispatches;
    refuse(from, d, ack, Err::unavailable, "injected dispatch failure");
    return true;
  }
  if (d.cores == 0) {
    refuse(from, d, ack, Err::invalid, "a dispatch needs at least 1 core");
    return true;
  }
  const bool race = refuse_capacity_next > 0;
  if (race || d.cores > free_cores()) {
    if (race) --refuse_capacity_next;
    stats_.capacity_rejects++;
    const std::uint32_t free = race ? 0 : free_cores();
    refuse(from, d, ack, Err::overloaded, fmt::format("needs {} cores; {} free", d.cores, free));
    return true;
  }
  return false;
}

// An older attempt of the same workflow (lower token) is still here: it is superseded.
void Worker::supersede(const Key& k) {
  auto it = execs_.find(k);
  if (it == execs_.end()) return;
  Exec& old = it->second;
  log::info("worker", "superseded", "job={} workflow={} token={} done={}", log::quoted(old.job_id),
            log::quoted(old.workflow), old.token, old.done);
  if (!old.done) {
    exec_.cancel(old.id);
    release_cores(old.cores);
  }
  by_id_.erase(old.id);
  execs_.erase(it);
}

// The fence mark is written; the ack waits for it to be durable (on_sync). The execution starts now:
// if the barrier fails it is cancelled and the dispatch refused, and until the ack has gone out
// nothing about it (progress, result) is reported.
void Worker::start_exec(NodeId from, Dispatch& d, DispatchAck& ack) {
  const std::uint64_t seq = next_ack_++;
  if (ctx_->sync(make_tag(kAck, seq)) == 0) {
    stats_.sync_failures++;
    stats_.disk_errors++;
    refuse(from, d, ack, Err::unavailable, "fence mark not durable: the sync barrier was refused");
    return;
  }
  const ExecKey k{d.job_id, d.workflow, d.part};
  Exec& e = execs_[k];
  e.job_id = d.job_id;
  e.workflow = d.workflow;
  e.part = d.part;
  e.token = d.token;
  e.cores = d.cores;
  e.dispatched_by = from;
  e.id = next_exec_++;
  e.ack_seq = seq;
  e.confirmed_at = ctx_->now();
  by_id_[e.id] = k;
  used_ += d.cores;
  HS_ASSERT(used_ <= cfg_.cores, "worker: {} cores in use of {} (job {} workflow {})", used_, cfg_.cores, d.job_id,
            d.workflow);
  stats_.accepted++;
  ack.accepted = true;
  ack.available_cores = free_cores();
  acks_[seq].push_back(PendingAck{from, ack});
  e.window_ms = d.window_ms;
  e.window_origin_ms = d.window_origin_unix_ms;
  ExecSpec spec{d.job_id,
                d.workflow,
                std::move(d.plan),
                d.cores,
                d.vus,
                std::move(d.context),
                d.shard_first,
                d.shard_total,
                d.start_at_unix_ms,
                d.skip_iterations,
                d.part,
                d.token,
                d.window_ms,
                d.window_origin_unix_ms};
  const std::uint64_t id = e.id;
  Status st = exec_.start(id, spec);
  auto again = by_id_.find(id);
  if (again == by_id_.end()) return;  // gone during start (finished and dropped)
  Exec& live = execs_.at(again->second);
  if (!st.ok()) {
    stats_.start_errors++;
    log::warn("worker", "start_failed", "job={} workflow={} error={}", log::quoted(d.job_id), log::quoted(d.workflow),
              log::quoted(st.message()));
    ExecResult r;
    r.outcome = ExecOutcome::failed;
    r.error = st.message();
    finish(live, std::move(r));
    return;
  }
  stats_.started++;
  record(ExecEvent::started, k, d.token);
  log::info("worker", "started_workflow",
            "job={} workflow={} part={} cores={} shards={}+{}/{} skip={} token={} term={} from={}",
            log::quoted(d.job_id), log::quoted(d.workflow), d.part, d.cores, d.shard_first, d.cores, d.shard_total,
            d.skip_iterations, d.token, d.term, from);
}

// ---------------------------------------------------------------- executions

void Worker::stop(Exec& e, const char* why) {
  if (e.stopping || e.done) return;
  e.stopping = true;
  e.stop_deadline = ctx_->now() + cfg_.stop_grace;
  log::info("worker", "stopping", "job={} workflow={} token={} reason={}", log::quoted(e.job_id),
            log::quoted(e.workflow), e.token, log::quoted(why));
  exec_.cancel(e.id);
}

void Worker::on_exec_progress(std::uint64_t exec, const ExecProgress& p) {
  auto it = by_id_.find(exec);
  if (it == by_id_.end()) return;
  Exec& e = execs_.at(it->second);
  if (e.done) return;
  e.completed = std::max(e.completed, p.completed);
  e.failed = std::max(e.failed, p.failed);
  e.started = std::max({e.started, p.started, e.completed + e.failed});
  for (const auto& w : p.windows) {
    if (e.window_ms == 0) break;  // the dispatch asked for none
    if (e.windows.size() >= cfg_.max_windows_queued) {
      // The oldest window not in flight goes (the leader may already hold those in flight), counted
      // and reported in every later batch.
      auto victim = std::find_if(e.windows.begin(), e.windows.end(),
                                 [&](const auto& q) { return q.first > e.window_inflight_through; });
      if (victim == e.windows.end()) victim = e.windows.begin();
      e.windows.erase(victim);
      e.windows_dropped++;
      stats_.windows_dropped++;
      log::warn("worker", "window_dropped", "job={} workflow={} part={} token={} queued={} (the leader is slow)",
                log::quoted(e.job_id), log::quoted(e.workflow), e.part, e.token, e.windows.size());
    }
    e.windows.emplace_back(e.window_next_seq++, w);
    stats_.windows_queued++;
  }
  if (!e.windows.empty() && e.window_inflight_through == 0 && e.ack_seq == 0) send_windows(e);
}

// The queued windows from the front, up to the batch bounds, to the leader. Until they are
// acknowledged (or window_retry passes) nothing more is sent, so windows queue and the next batch
// carries them all.
void Worker::send_windows(Exec& e) {
  if (e.windows.empty()) return;
  WindowBatch b{e.job_id, e.workflow,        e.part, e.token, e.window_origin_ms, e.window_ms, e.windows.front().first,
                0,        e.windows_dropped, {}};
  std::size_t bytes = 0;
  for (const auto& [seq, w] : e.windows) {
    if (b.windows.size() >= cfg_.max_windows_per_batch) break;
    if (!b.windows.empty() && bytes + w.size() > cfg_.max_window_batch_bytes) break;
    bytes += w.size();
    b.windows.push_back(w);
    b.last_seq = seq;
  }
  e.window_inflight_through = b.last_seq;
  e.window_resend_at = ctx_->now() + cfg_.window_retry;
  stats_.window_batches++;
  send_to_leader(MsgType::window_batch, b);
}

void Worker::handle_window_ack(const WindowAck& a) {
  auto it = execs_.find(ExecKey{a.job_id, a.workflow, a.part});
  if (it == execs_.end() || it->second.token != a.token) return;
  Exec& e = it->second;
  while (!e.windows.empty() && e.windows.front().first <= a.through_seq) {
    e.windows.pop_front();
    stats_.windows_acked++;
  }
  if (e.window_inflight_through <= a.through_seq) e.window_inflight_through = 0;
  if (!e.windows.empty() && e.window_inflight_through == 0) send_windows(e);
  if (e.windows.empty() && e.done && e.ack_seq == 0) send_result(e);  // it waited for its windows
}

void Worker::on_exec_done(std::uint64_t exec, ExecResult r) {
  auto it = by_id_.find(exec);
  if (it == by_id_.end()) return;  // forced free earlier, superseded, or unwound
  Exec& e = execs_.at(it->second);
  if (e.done) return;
  finish(e, std::move(r));
}

void Worker::finish(Exec& e, ExecResult r) {
  e.done = true;
  e.done_at = ctx_->now();
  release_cores(e.cores);
  const Outcome o = r.outcome == ExecOutcome::completed ? Outcome::completed
                    : r.outcome == ExecOutcome::failed  ? Outcome::failed
                                                        : Outcome::cancelled;
  const ExecEvent::Kind k = o == Outcome::completed ? ExecEvent::completed
                            : o == Outcome::failed  ? ExecEvent::failed
                                                    : ExecEvent::cancelled;
  (o == Outcome::completed ? stats_.completed : o == Outcome::failed ? stats_.failed : stats_.cancelled)++;
  record(k, ExecKey{e.job_id, e.workflow, e.part}, e.token);
  e.result = ResultMsg{
      e.job_id, e.workflow, e.token, o, r.completed, r.failed, r.error, std::move(r.stats), std::move(r.published),
      e.part};
  e.completed = r.completed;
  e.failed = r.failed;
  log::info("worker", "workflow_done", "job={} workflow={} token={} outcome={} completed={} failed={}",
            log::quoted(e.job_id), log::quoted(e.workflow), e.token, int(o), r.completed, r.failed);
  if (e.ack_seq == 0) send_result(e);  // otherwise on_sync sends it after the dispatch ack
  bound_results(e);
}

// Keeps at most max_results finished executions waiting for their ack: the oldest other one is dropped.
void Worker::bound_results(const Exec& keep) {
  if (execs_.size() <= cfg_.max_results) return;
  auto oldest = execs_.end();
  std::size_t waiting = 0;
  for (auto it = execs_.begin(); it != execs_.end(); ++it) {
    if (!it->second.done || it->second.ack_seq != 0) continue;
    ++waiting;
    if (&it->second != &keep && (oldest == execs_.end() || it->second.done_at < oldest->second.done_at)) oldest = it;
  }
  if (waiting <= cfg_.max_results || oldest == execs_.end()) return;
  stats_.results_dropped++;
  stats_.windows_dropped += oldest->second.windows.size();  // its windows go with it (counted)
  log::warn("worker", "result_dropped", "job={} workflow={} token={} (over max_results={}; oldest dropped)",
            log::quoted(oldest->second.job_id), log::quoted(oldest->second.workflow), oldest->second.token,
            cfg_.max_results);
  by_id_.erase(oldest->second.id);
  execs_.erase(oldest);
}

// A part's windows go before its result: when the leader takes the result, it has every window of
// the attempt (it then closes the workflow's windows). A result waits at most window_keep for them;
// windows still unacknowledged then are dropped (counted) and the result goes.
bool Worker::windows_before_result(Exec& e) {
  if (e.windows.empty()) return false;
  if (ctx_->now() - e.done_at < cfg_.window_keep) {
    e.resend_at = ctx_->now() + cfg_.tick;
    return true;
  }
  stats_.windows_dropped += e.windows.size();
  e.windows_dropped += e.windows.size();
  log::warn("worker", "windows_dropped",
            "job={} workflow={} part={} token={} windows={} (unacknowledged {} ms after the execution ended; its "
            "result goes without them)",
            log::quoted(e.job_id), log::quoted(e.workflow), e.part, e.token, e.windows.size(), ms(cfg_.window_keep));
  e.windows.clear();
  e.window_inflight_through = 0;
  return false;
}

void Worker::send_result(Exec& e) {
  if (windows_before_result(e)) return;
  e.resend_at = ctx_->now() + cfg_.result_retry;
  e.result_to = leader_;
  stats_.results_sent++;
  send_to_leader(MsgType::result, e.result);
}

void Worker::on_member_dead(NodeId node) {
  if (ctx_ == nullptr || node == 0) return;
  for (auto& [k, e] : execs_) {
    if (!e.done || e.ack_seq != 0 || e.result_to != node || !e.windows.empty()) continue;
    log::info("worker", "result_redirected", "job={} workflow={} token={} dead={} leader={} term={}",
              log::quoted(e.job_id), log::quoted(e.workflow), e.token, node, leader_, leader_term_);
    if (leader_ != node) {
      send_result(e);
      continue;
    }
    // The leader itself died: until a new term names another, every manager gets the result.
    e.resend_at = ctx_->now() + cfg_.result_retry;
    e.result_to = 0;
    stats_.results_sent++;
    const auto bytes = encode(MsgType::result, e.result);
    for (NodeId m : cfg_.managers)
      if (m != node) ctx_->send(m, bytes);
  }
}

std::size_t Worker::queued_windows() const {
  std::size_t n = 0;
  for (const auto& [k, e] : execs_) n += e.windows.size();
  return n;
}

std::map<std::string, std::size_t> Worker::table_sizes() const {
  return {{"execs", execs_.size()},       {"exec_ids", by_id_.size()},          {"fence_marks", marks_.size()},
          {"pending_acks", acks_.size()}, {"queued_windows", queued_windows()}, {"exec_log", log_.size()}};
}

}  // namespace hs::worker
