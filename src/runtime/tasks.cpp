#include "hyperscale/runtime/tasks.hpp"

#include <exception>

#include "hyperscale/base/enum_names.hpp"
#include "hyperscale/base/log.hpp"

namespace hs::runtime {

constexpr EnumNames<TaskPolicy, 3> kPolicyNames{{"keep_going", "restart_with_backoff", "stop_node"}, "?"};
static_assert(kPolicyNames.covers(TaskPolicy::stop_node));

std::string_view policy_name(TaskPolicy p) noexcept { return kPolicyNames(p); }

void report_task_error(metrics::Registry& metrics, std::string_view task, std::string_view error,
                       std::string_view extra_fields) {
  log::error("runtime", "task_error", "task={} error={}{}{}", task, log::quoted(error), extra_fields.empty() ? "" : " ",
             extra_fields);
  metrics.counter("hs_task_errors_total", "Errors raised by background tasks and timers", {{"task", std::string(task)}})
      .inc();
}

Scheduler::Scheduler(const Clock& clock, metrics::Registry& metrics, std::size_t max_tasks)
    : clock_(clock),
      metrics_(metrics),
      max_tasks_(max_tasks),
      refused_(
          metrics.counter("hs_timers_refused_total", "Timers refused because the shard's timer limit was reached")) {}

Result<TaskId> Scheduler::every(std::string name, Duration period, TaskFn fn, TaskOptions opts) {
  if (period <= Duration::zero()) {
    return make_error(Errc::invalid_argument, "task " + name + ": period must be positive");
  }
  return add(std::move(name), period, period, std::move(fn), opts);
}

Result<TaskId> Scheduler::after(std::string name, Duration delay, TaskFn fn, TaskOptions opts) {
  if (delay < Duration::zero()) delay = Duration::zero();
  return add(std::move(name), delay, Duration::zero(), std::move(fn), opts);
}

Result<TaskId> Scheduler::every_void(std::string name, Duration period, std::function<void()> fn, TaskOptions opts) {
  return every(
      std::move(name), period,
      [f = std::move(fn)]() {
        f();
        return ok_status();
      },
      opts);
}

Result<TaskId> Scheduler::after_void(std::string name, Duration delay, std::function<void()> fn, TaskOptions opts) {
  return after(
      std::move(name), delay,
      [f = std::move(fn)]() {
        f();
        return ok_status();
      },
      opts);
}

Result<TaskId> Scheduler::add(std::string name, Duration delay, Duration period, TaskFn fn, TaskOptions opts) {
  if (!fn) return make_error(Errc::invalid_argument, "task " + name + ": empty function");
  if (tasks_.size() >= max_tasks_) {
    refused_.inc();
    log::error("runtime", "timer_refused", "task={} limit={}", name, max_tasks_);
    return make_error(Errc::backpressure, "timer limit reached (" + std::to_string(max_tasks_) + ") for task " + name);
  }
  const std::uint64_t id = next_id_++;
  Task& t = tasks_[id];
  t.name = std::move(name);
  t.fn = std::move(fn);
  t.period = period;
  t.opts = opts;
  schedule(id, t, clock_.now() + delay);
  return TaskId{id};
}

void Scheduler::schedule(std::uint64_t id, Task& t, Instant deadline) {
  t.generation++;
  heap_.push(HeapEntry{deadline, next_seq_++, id, t.generation});
  prune_heap();
}

void Scheduler::prune_heap() {
  // Cancelled tasks leave stale entries behind; rebuild when they dominate so the heap stays bounded.
  if (heap_.size() <= 2 * tasks_.size() + 64) return;
  std::vector<HeapEntry> live;
  live.reserve(tasks_.size());
  while (!heap_.empty()) {
    const HeapEntry e = heap_.top();
    heap_.pop();
    auto it = tasks_.find(e.id);
    if (it != tasks_.end() && it->second.generation == e.generation) live.push_back(e);
  }
  for (const auto& e : live) heap_.push(e);
}

bool Scheduler::cancel(TaskId id) noexcept { return tasks_.erase(id.value) > 0; }

void Scheduler::cancel_all() noexcept {
  tasks_.clear();
  heap_ = {};
}

std::optional<Instant> Scheduler::next_deadline() {
  while (!heap_.empty()) {
    const HeapEntry& e = heap_.top();
    auto it = tasks_.find(e.id);
    if (it != tasks_.end() && it->second.generation == e.generation) return e.deadline;
    heap_.pop();
  }
  return std::nullopt;
}

std::size_t Scheduler::run_due() {
  const Instant now = clock_.now();
  const std::uint64_t seq_cutoff = next_seq_;
  std::size_t ran = 0;
  while (!heap_.empty()) {
    const HeapEntry e = heap_.top();
    if (e.deadline > now || e.seq >= seq_cutoff) break;
    heap_.pop();
    auto it = tasks_.find(e.id);
    if (it == tasks_.end() || it->second.generation != e.generation) continue;  // cancelled / rescheduled

    // Copy the function: the body may cancel its own task (erasing `it`).
    TaskFn fn = it->second.fn;
    std::string error;
    try {
      Status st = fn();
      if (!st.ok()) error = st.to_string();
    } catch (const std::exception& ex) {
      error = std::string("exception: ") + ex.what();
    } catch (...) {
      error = "exception: unknown (not derived from std::exception)";
    }
    ++ran;

    it = tasks_.find(e.id);
    if (it == tasks_.end()) continue;  // the body cancelled its own task
    Task& t = it->second;
    if (!error.empty()) {
      handle_failure(e.id, t, e.deadline, std::move(error));
      continue;
    }
    t.failures = 0;
    if (t.period == Duration::zero()) {
      tasks_.erase(it);
      continue;
    }
    Instant next = e.deadline + t.period;
    if (next <= now) next = now + t.period;  // fell behind: skip missed runs rather than burst
    schedule(e.id, t, next);
  }
  return ran;
}

void Scheduler::handle_failure(std::uint64_t id, Task& t, Instant deadline, std::string error) {
  t.failures++;
  TaskError te{t.name, std::move(error), t.opts.policy, t.failures};
  report_task_error(metrics_, te.task, te.error,
                    fmt::format("policy={} failures={}", policy_name(te.policy), te.consecutive_failures));
  if (observer_) observer_(te);

  const Instant now = clock_.now();
  switch (t.opts.policy) {
    case TaskPolicy::keep_going:
      if (t.period == Duration::zero()) {
        tasks_.erase(id);
      } else {
        Instant next = deadline + t.period;
        if (next <= now) next = now + t.period;
        schedule(id, t, next);
      }
      break;
    case TaskPolicy::restart_with_backoff: {
      Duration backoff = t.opts.backoff_initial;
      for (std::uint32_t i = 1; i < t.failures && backoff < t.opts.backoff_max; ++i) backoff *= 2;
      if (backoff > t.opts.backoff_max) backoff = t.opts.backoff_max;
      log::info("runtime", "task_restart", "task={} backoff_ms={:.1f}", te.task, to_millis(backoff));
      schedule(id, t, now + backoff);
      break;
    }
    case TaskPolicy::stop_node:
      tasks_.erase(id);
      if (stop_node_hook_) {
        stop_node_hook_(te);
      } else {
        log::error("runtime", "stop_node_unhandled", "task={} reason=no stop-node hook installed", te.task);
      }
      break;
  }
}

}  // namespace hs::runtime
