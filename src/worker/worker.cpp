#include "hyperscale/worker/worker.hpp"

#include <algorithm>

#include "hyperscale/base/log.hpp"

namespace hs::worker {

using namespace cluster;

namespace {
constexpr std::uint64_t kTagShift = 56;
std::uint64_t make_tag(std::uint64_t kind, std::uint64_t v) {
  return (kind << kTagShift) | (v & ((1ull << kTagShift) - 1));
}

// Fence marks are persisted as records of the "fence" log: job, workflow, token.
std::vector<std::uint8_t> mark_record(const std::string& job, const std::string& wf, std::uint64_t token) {
  Writer w;
  w.str(job);
  w.str(wf);
  w.var(token);
  return w.take();
}
}  // namespace

Worker::Worker(WorkerConfig cfg, Executor& exec) : cfg_(std::move(cfg)), exec_(exec) {}
Worker::~Worker() = default;

void Worker::send(NodeId to, MsgType t, auto& msg) { ctx_->send(to, encode(t, msg)); }

void Worker::on_start(node::Context& ctx) {
  ctx_ = &ctx;
  boot_ = ctx.rng().next_u64() | 1;
  load_marks();
  next_heartbeat_ = ctx.now();
  next_progress_ = ctx.now() + cfg_.progress;
  ctx.set_timer(Duration{0}, make_tag(kTick, 0));
  log::info("worker", "started", "cores={} managers={}", cfg_.cores, cfg_.managers.size());
}

void Worker::load_marks() {
  const Instant now = ctx_->now();
  for (const auto& rec : ctx_->disk().read_log("fence")) {
    Reader r(rec);
    std::string job = r.str(256), wf = r.str(256);
    const std::uint64_t token = r.var();
    if (!r.ok()) {
      stats_.decode_errors++;
      log::error("worker", "fence_record_corrupt", "error={} (record skipped)", r.error());
      continue;
    }
    Mark& m = marks_[{job, wf}];
    m.token = std::max(m.token, token);
    m.at = now;
  }
  // Rewrite the log with only the live marks (keeps it bounded across restarts).
  compact_marks();
}

void Worker::set_mark(const Key& k, std::uint64_t token) {
  if (marks_.size() >= cfg_.max_hw && marks_.count(k) == 0) {
    // Evict the oldest mark (well past any live job at the default bounds).
    auto oldest = std::min_element(marks_.begin(), marks_.end(),
                                   [](const auto& a, const auto& b) { return a.second.at < b.second.at; });
    marks_.erase(oldest);
    stats_.hw_evicted++;
  }
  Mark& m = marks_[k];
  m.token = std::max(m.token, token);
  m.at = ctx_->now();
  (void)ctx_->disk().append("fence", mark_record(k.first, k.second, m.token));
  if (++mark_log_records_ > 2 * marks_.size() + 1000) compact_marks();
}

void Worker::compact_marks() {
  // One atomic replace: a crash leaves the old log or the new one, never a log missing live marks.
  std::vector<node::Bytes> records;
  records.reserve(marks_.size());
  for (const auto& [key, mk] : marks_) records.push_back(mark_record(key.first, key.second, mk.token));
  if (Status st = ctx_->disk().replace_log("fence", records); !st.ok()) {
    stats_.disk_errors++;
    log::error("worker", "fence_compact_failed", "marks={} error={} (the old fence log stands)", marks_.size(),
               log::quoted(st.to_string()));
    return;
  }
  mark_log_records_ = marks_.size();
}

void Worker::record(ExecEvent::Kind k, const std::string& job, const std::string& wf, std::uint64_t token) {
  if (log_.size() >= cfg_.max_log) log_.pop_front();
  log_.push_back(ExecEvent{k, job, wf, token, ctx_->now()});
}

std::vector<ExecReport> Worker::live() const {
  std::vector<ExecReport> out;
  for (const auto& [k, e] : execs_) {
    if (e.done) continue;
    out.push_back(ExecReport{e.job_id, e.workflow, e.token, e.cores, e.leader, e.completed, e.failed});
  }
  return out;
}

void Worker::on_timer(node::Context& ctx, node::TimerId, std::uint64_t tag) {
  ctx_ = &ctx;
  const std::uint64_t kind = tag >> kTagShift;
  const std::uint64_t v = tag & ((1ull << kTagShift) - 1);
  if (kind == kTick) {
    ctx.set_timer(cfg_.tick, make_tag(kTick, 0));
    tick();
  } else if (kind == kAck) {
    auto it = acks_.find(v);
    if (it == acks_.end()) return;
    for (auto& [to, bytes] : it->second) ctx.send(to, std::move(bytes));
    acks_.erase(it);
  }
}

void Worker::tick() {
  const Instant now = ctx_->now();
  if (now >= next_heartbeat_) {
    next_heartbeat_ = now + cfg_.heartbeat;
    Heartbeat hb;
    hb.total_cores = cfg_.cores;
    hb.available_cores = cfg_.cores - used_;
    hb.health = health_;
    hb.execs = live();
    hb.boot = boot_;
    auto bytes = encode(MsgType::heartbeat, hb);
    for (NodeId m : cfg_.managers) ctx_->send(m, bytes);
  }
  if (now >= next_progress_) {
    next_progress_ = now + cfg_.progress;
    for (auto& [k, e] : execs_) {
      if (e.done) continue;
      Progress p{e.job_id, e.workflow, e.token, e.completed, e.failed};
      send(e.leader, MsgType::progress, p);
    }
  }
  for (auto it = execs_.begin(); it != execs_.end();) {
    Exec& e = it->second;
    if (!e.done && e.stopping && now >= e.stop_deadline) {
      stats_.force_stops++;
      log::warn("worker", "force_stop", "job={} workflow={} token={} grace_ms={} (the execution ignored its stop)",
                log::quoted(e.job_id), log::quoted(e.workflow), e.token,
                std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.stop_grace).count());
      ExecResult r;
      r.outcome = ExecOutcome::cancelled;
      r.completed = e.completed;
      r.failed = e.failed;
      r.error = "the execution did not stop within the grace; its cores were forced free";
      finish(e, std::move(r));
    }
    if (!e.done && !e.stopping && e.orphan_deadline.count() >= 0 && now >= e.orphan_deadline) {
      stats_.orphaned++;
      log::warn("worker", "orphan_cancelled", "job={} workflow={} leader={} (no new job leader within the grace)",
                log::quoted(e.job_id), log::quoted(e.workflow), e.leader);
      stop(e, "orphaned");
    }
    if (e.done && now >= e.resend_at) {
      if (e.orphan_deadline.count() >= 0 && now >= e.orphan_deadline + cfg_.orphan_grace + cfg_.stop_grace) {
        stats_.results_dropped++;
        log::warn("worker", "result_dropped", "job={} workflow={} token={} (its job leader is gone)",
                  log::quoted(e.job_id), log::quoted(e.workflow), e.token);
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

template <class T>
static bool parse(std::span<const std::uint8_t> body, T& m, WorkerStats& st, NodeId from, const char* what) {
  const char* why = nullptr;
  if (decode(body, m, &why)) return true;
  st.decode_errors++;
  log::warn("worker", "decode_error", "from={} type={} error={}", from, what, why);
  return false;
}

void Worker::on_message(node::Context& ctx, NodeId from, std::span<const std::uint8_t> msg) {
  ctx_ = &ctx;
  if (msg.empty()) {
    stats_.decode_errors++;
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
      if (!parse(body, a, stats_, from, "result_ack")) break;
      auto it = execs_.find({a.job_id, a.workflow});
      if (it != execs_.end() && it->second.done && it->second.token == a.token) {
        by_id_.erase(it->second.id);
        execs_.erase(it);
      }
      break;
    }
    case MsgType::stop_exec: {
      StopExec s;
      if (!parse(body, s, stats_, from, "stop_exec")) break;
      StopAck ack{s.job_id, s.workflow, s.token, false};
      auto it = execs_.find({s.job_id, s.workflow});
      if (it != execs_.end() && !it->second.done && it->second.token <= s.token) {
        stop(it->second, "stop requested");
        ack.stopped = true;
      }
      send(from, MsgType::stop_ack, ack);
      break;
    }
    case MsgType::heartbeat_ack: {
      HeartbeatAck a;
      if (!parse(body, a, stats_, from, "heartbeat_ack")) break;
      for (const auto& item : a.stop) {
        auto it = execs_.find({item.job_id, item.workflow});
        if (it != execs_.end() && !it->second.done && it->second.token == item.token)
          stop(it->second, "stopped by the job leader (stale or cancelled)");
      }
      break;
    }
    case MsgType::transfer: {
      Transfer t;
      if (!parse(body, t, stats_, from, "transfer")) break;
      const Key k{t.job_id, t.workflow};
      TransferAck ack{t.job_id, t.workflow, t.token, false, false};
      auto mk = marks_.find(k);
      const std::uint64_t hw = mk == marks_.end() ? 0 : mk->second.token;
      if (t.token <= hw) {
        stats_.fence_rejects++;
        log::warn("worker", "transfer_refused", "job={} workflow={} token={} high_water={}", log::quoted(t.job_id),
                  log::quoted(t.workflow), t.token, hw);
        send(from, MsgType::transfer_ack, ack);
        break;
      }
      set_mark(k, t.token);
      ack.accepted = true;
      auto it = execs_.find(k);
      if (it != execs_.end()) {
        Exec& e = it->second;
        e.token = t.token;
        e.leader = t.leader;
        e.orphan_deadline = Instant{-1};
        e.result.token = t.token;
        e.resend_at = ctx_->now();
        ack.running = true;
        stats_.transfers++;
        log::info("worker", "transfer", "job={} workflow={} new_leader={} token={}", log::quoted(t.job_id),
                  log::quoted(t.workflow), t.leader, t.token);
      }
      // Acknowledge once the new mark is durable.
      const std::uint64_t seq = next_ack_++;
      acks_[seq].emplace_back(from, encode(MsgType::transfer_ack, ack));
      if (ctx_->sync(make_tag(kAck, seq)) == 0) acks_.erase(seq);
      break;
    }
    default:
      stats_.unknown_messages++;
      log::warn("worker", "unknown_message", "from={} type={}", from, int(msg[0]));
      break;
  }
}

void Worker::handle_dispatch(NodeId from, Dispatch& d) {
  stats_.dispatches++;
  const Key k{d.job_id, d.workflow};
  DispatchAck ack{d.job_id, d.workflow, d.token, false, Err::none, ""};
  auto it = execs_.find(k);
  if (it != execs_.end() && it->second.token == d.token) {
    stats_.duplicates++;
    ack.accepted = true;
    send(from, MsgType::dispatch_ack, ack);
    return;
  }
  record(ExecEvent::received, d.job_id, d.workflow, d.token);
  auto mk = marks_.find(k);
  const std::uint64_t hw = mk == marks_.end() ? 0 : mk->second.token;
  if (d.token <= hw) {
    stats_.fence_rejects++;
    ack.code = Err::fence;
    ack.error = "stale fence token " + std::to_string(d.token) + " (seen " + std::to_string(hw) + ")";
    log::warn("worker", "dispatch_refused", "job={} workflow={} reason={}", log::quoted(d.job_id),
              log::quoted(d.workflow), log::quoted(ack.error));
    record(ExecEvent::rejected, d.job_id, d.workflow, d.token);
    send(from, MsgType::dispatch_ack, ack);
    return;
  }
  if (it != execs_.end()) {
    // An older attempt of the same workflow is still here: it is superseded.
    Exec& old = it->second;
    if (!old.done) {
      exec_.cancel(old.id);
      used_ -= old.cores;
    }
    by_id_.erase(old.id);
    execs_.erase(it);
  }
  if (fail_next_dispatches > 0) {
    --fail_next_dispatches;
    ack.code = Err::unavailable;
    ack.error = "injected dispatch failure";
    record(ExecEvent::rejected, d.job_id, d.workflow, d.token);
    send(from, MsgType::dispatch_ack, ack);
    return;
  }
  if (d.cores == 0 || d.cores > cfg_.cores - used_) {
    stats_.capacity_rejects++;
    ack.code = Err::unavailable;
    ack.error = "needs " + std::to_string(d.cores) + " cores; " + std::to_string(cfg_.cores - used_) + " free";
    record(ExecEvent::rejected, d.job_id, d.workflow, d.token);
    send(from, MsgType::dispatch_ack, ack);
    return;
  }
  set_mark(k, d.token);
  Exec& e = execs_[k];
  e.job_id = d.job_id;
  e.workflow = d.workflow;
  e.token = d.token;
  e.cores = d.cores;
  e.leader = from;
  e.id = next_exec_++;
  by_id_[e.id] = k;
  used_ += d.cores;
  stats_.accepted++;
  ack.accepted = true;
  const std::uint64_t seq = next_ack_++;
  acks_[seq].emplace_back(from, encode(MsgType::dispatch_ack, ack));
  if (ctx_->sync(make_tag(kAck, seq)) == 0) acks_.erase(seq);
  ExecSpec spec;
  spec.job_id = d.job_id;
  spec.workflow = d.workflow;
  spec.plan = std::move(d.plan);
  spec.cores = d.cores;
  spec.vus = d.vus;
  spec.context = std::move(d.context);
  const std::uint64_t id = e.id;
  Status st = exec_.start(id, spec);
  auto again = by_id_.find(id);
  if (again == by_id_.end()) return;  // finished synchronously
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
  record(ExecEvent::started, d.job_id, d.workflow, d.token);
  log::info("worker", "started_workflow", "job={} workflow={} cores={} token={}", log::quoted(d.job_id),
            log::quoted(d.workflow), d.cores, d.token);
}

void Worker::stop(Exec& e, const char* why) {
  if (e.stopping || e.done) return;
  e.stopping = true;
  e.stop_deadline = ctx_->now() + cfg_.stop_grace;
  log::info("worker", "stopping", "job={} workflow={} token={} reason={}", log::quoted(e.job_id),
            log::quoted(e.workflow), e.token, why);
  exec_.cancel(e.id);
}

void Worker::on_exec_progress(std::uint64_t exec, const ExecProgress& p) {
  auto it = by_id_.find(exec);
  if (it == by_id_.end()) return;
  Exec& e = execs_.at(it->second);
  if (e.done) return;
  e.completed = std::max(e.completed, p.completed);
  e.failed = std::max(e.failed, p.failed);
}

void Worker::on_exec_done(std::uint64_t exec, ExecResult r) {
  auto it = by_id_.find(exec);
  if (it == by_id_.end()) return;  // forced free earlier, or superseded
  Exec& e = execs_.at(it->second);
  if (e.done) return;
  finish(e, std::move(r));
}

void Worker::finish(Exec& e, ExecResult r) {
  e.done = true;
  used_ -= e.cores;
  const Outcome o = r.outcome == ExecOutcome::completed ? Outcome::completed
                    : r.outcome == ExecOutcome::failed  ? Outcome::failed
                                                        : Outcome::cancelled;
  switch (o) {
    case Outcome::completed:
      stats_.completed++;
      record(ExecEvent::completed, e.job_id, e.workflow, e.token);
      break;
    case Outcome::failed:
      stats_.failed++;
      record(ExecEvent::failed, e.job_id, e.workflow, e.token);
      break;
    default:
      stats_.cancelled++;
      record(ExecEvent::cancelled, e.job_id, e.workflow, e.token);
      break;
  }
  e.result = ResultMsg{
      e.job_id, e.workflow, e.token, o, r.completed, r.failed, r.error, std::move(r.stats), std::move(r.published)};
  e.completed = r.completed;
  e.failed = r.failed;
  log::info("worker", "workflow_done", "job={} workflow={} token={} outcome={} completed={} failed={}",
            log::quoted(e.job_id), log::quoted(e.workflow), e.token, int(o), r.completed, r.failed);
  send_result(e);
}

void Worker::send_result(Exec& e) {
  e.resend_at = ctx_->now() + cfg_.result_retry;
  stats_.results_sent++;
  send(e.leader, MsgType::result, e.result);
}

void Worker::on_member_dead(NodeId node) {
  if (ctx_ == nullptr) return;
  for (auto& [k, e] : execs_) {
    if (e.leader == node && e.orphan_deadline.count() < 0) {
      e.orphan_deadline = ctx_->now() + cfg_.orphan_grace;
      log::warn("worker", "orphaned", "job={} workflow={} leader={} grace_ms={}", log::quoted(e.job_id),
                log::quoted(e.workflow), node,
                std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.orphan_grace).count());
    }
  }
}

std::map<std::string, std::size_t> Worker::table_sizes() const {
  return {{"execs", execs_.size()},
          {"exec_ids", by_id_.size()},
          {"fence_marks", marks_.size()},
          {"pending_acks", acks_.size()},
          {"exec_log", log_.size()}};
}

}  // namespace hs::worker
