// Timers and named background tasks with an error hook.
//
// A Scheduler holds one shard's timers. It does no I/O and reads time from a Clock, so tests drive it
// with a ManualClock; the Reactor drives it from a libuv timer armed for next_deadline().
//
// Every task has a name. When a task's function throws or returns an error Status, the scheduler
//   1. logs one line: comp=runtime event=task_error task=<name> error="…" policy=<policy> failures=<n>
//   2. increments hs_task_errors_total{task="<name>"} in the shard's metrics registry
//   3. applies the task's policy: keep_going (next run as scheduled), restart_with_backoff (next run
//      after an exponential, capped backoff; reset by a success), or stop_node (the task is cancelled
//      and the stop-node hook is called, which asks the whole node to shut down).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

#include "hyperscale/base/metrics.hpp"
#include "hyperscale/base/status.hpp"
#include "hyperscale/base/time.hpp"

namespace hs::runtime {

enum class TaskPolicy { keep_going, restart_with_backoff, stop_node };
std::string_view policy_name(TaskPolicy p) noexcept;

struct TaskOptions {
  TaskPolicy policy = TaskPolicy::keep_going;
  Duration backoff_initial = std::chrono::milliseconds(100);
  Duration backoff_max = std::chrono::seconds(30);
};

struct TaskError {
  std::string task;
  std::string error;
  TaskPolicy policy = TaskPolicy::keep_going;
  std::uint32_t consecutive_failures = 0;
};

struct TaskId {
  std::uint64_t value = 0;
  bool valid() const noexcept { return value != 0; }
  friend bool operator==(TaskId a, TaskId b) noexcept { return a.value == b.value; }
};

// Logs one line (comp=runtime event=task_error task=<task> error="…") and increments
// hs_task_errors_total{task=<task>}: the one error hook every callback path of the runtime uses
// (timers, deferred work, messages, turn-end hooks, posted work, io_uring completions).
void report_task_error(metrics::Registry& metrics, std::string_view task, std::string_view error,
                       std::string_view extra_fields = {});

// A task body returns OK, or an error Status that goes to the error hook.
using TaskFn = std::function<Status()>;

class Scheduler {
 public:
  static constexpr std::size_t kDefaultMaxTasks = 65'536;

  Scheduler(const Clock& clock, metrics::Registry& metrics, std::size_t max_tasks = kDefaultMaxTasks);
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Runs `fn` every `period` (first run one period from now). Fails with backpressure when the
  // shard already holds max_tasks timers, or invalid_argument for a non-positive period.
  Result<TaskId> every(std::string name, Duration period, TaskFn fn, TaskOptions opts = {});
  // Runs `fn` once after `delay` (0 = at the next run_due()).
  Result<TaskId> after(std::string name, Duration delay, TaskFn fn, TaskOptions opts = {});
  // Convenience for bodies that cannot fail (exceptions still reach the error hook).
  Result<TaskId> every_void(std::string name, Duration period, std::function<void()> fn, TaskOptions opts = {});
  Result<TaskId> after_void(std::string name, Duration delay, std::function<void()> fn, TaskOptions opts = {});

  // Returns false if the task was not live (already ran, cancelled, or unknown). Safe inside a task.
  bool cancel(TaskId id) noexcept;
  void cancel_all() noexcept;

  // Runs every task due at clock.now(), in deadline order (ties: creation order). Tasks created or
  // rescheduled during this call run at the next call at the earliest. Returns how many ran.
  std::size_t run_due();

  std::optional<Instant> next_deadline();
  std::size_t size() const noexcept { return tasks_.size(); }
  std::size_t max_tasks() const noexcept { return max_tasks_; }

  // Called (after logging and counting) when a task with policy stop_node fails.
  void set_stop_node_hook(std::function<void(const TaskError&)> hook) { stop_node_hook_ = std::move(hook); }
  // Extra observer of every task error (tests, health reporting).
  void set_error_observer(std::function<void(const TaskError&)> obs) { observer_ = std::move(obs); }

  const Clock& clock() const noexcept { return clock_; }

 private:
  struct Task {
    std::string name;
    TaskFn fn;
    Duration period{0};  // 0: one-shot
    TaskOptions opts;
    std::uint32_t failures = 0;
    std::uint64_t generation = 0;  // bumped on every (re)schedule; stale heap entries are skipped
  };
  struct HeapEntry {
    Instant deadline;
    std::uint64_t seq;
    std::uint64_t id;
    std::uint64_t generation;
    bool operator>(const HeapEntry& o) const noexcept {
      return deadline != o.deadline ? deadline > o.deadline : seq > o.seq;
    }
  };

  Result<TaskId> add(std::string name, Duration delay, Duration period, TaskFn fn, TaskOptions opts);
  void schedule(std::uint64_t id, Task& t, Instant deadline);
  void handle_failure(std::uint64_t id, Task& t, Instant deadline, std::string error);
  void prune_heap();

  const Clock& clock_;
  metrics::Registry& metrics_;
  std::size_t max_tasks_;
  std::uint64_t next_id_ = 1;
  std::uint64_t next_seq_ = 1;
  std::unordered_map<std::uint64_t, Task> tasks_;
  std::priority_queue<HeapEntry, std::vector<HeapEntry>, std::greater<>> heap_;
  std::function<void(const TaskError&)> stop_node_hook_;
  std::function<void(const TaskError&)> observer_;
  metrics::Counter& refused_;
};

}  // namespace hs::runtime
