// Reactor: one shard's event loop (libuv), its timers and tasks, its metrics registry, its mailbox
// doorbell and (on demand) its io_uring ring. Everything a shard owns is touched only on the
// shard's thread; other threads reach it through send() (from another shard) or ShardSet::post().
#pragma once

#include <uv.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "hyperscale/base/metrics.hpp"
#include "hyperscale/base/small_fn.hpp"
#include "hyperscale/base/status.hpp"
#include "hyperscale/base/time.hpp"
#include "hyperscale/runtime/tasks.hpp"

namespace hs::runtime {

class Reactor;
class ShardSet;
class Uring;

// A message between shards: a closure run on the destination shard's thread. Up to 48 bytes of
// captures are stored inline in the ring slot (no allocation).
using Message = SmallFn<void(Reactor&), 48>;

struct ReactorOptions {
  int shard_id = 0;
  std::size_t max_tasks = Scheduler::kDefaultMaxTasks;
  std::size_t max_deferred = 1 << 20;  // bound of the local defer queue
  std::size_t send_batch = 64;         // a ring is published once this many messages are staged
  std::size_t drain_budget = 1 << 16;  // messages run per doorbell before yielding to I/O
  std::size_t max_writable_waiters = 1024;
  unsigned uring_entries = 256;
};

// Outcome of one reactor's shutdown.
struct ShutdownReport {
  bool clean = true;  // every hook finished and every handle closed in time
  std::vector<std::string> unfinished_hooks;
  std::size_t dropped_messages = 0;
};

class Reactor {
 public:
  explicit Reactor(ReactorOptions opts = {});
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;
  ~Reactor();

  int shard_id() const noexcept { return opts_.shard_id; }
  uv_loop_t* loop() noexcept { return &loop_; }
  const Clock& clock() const noexcept { return MonotonicClock::instance(); }
  metrics::Registry& metrics() noexcept { return metrics_; }
  Scheduler& tasks() noexcept { return scheduler_; }
  // The ShardSet this reactor belongs to, or nullptr for a standalone reactor.
  ShardSet* shards() noexcept { return shards_; }
  bool on_own_thread() const noexcept;

  // ---- timers and background tasks (see tasks.hpp for the error hook and policies) ----
  Result<TaskId> every(std::string name, Duration period, TaskFn fn, TaskOptions o = {}) {
    return scheduler_.every(std::move(name), period, std::move(fn), o);
  }
  Result<TaskId> after(std::string name, Duration delay, TaskFn fn, TaskOptions o = {}) {
    return scheduler_.after(std::move(name), delay, std::move(fn), o);
  }
  bool cancel(TaskId id) noexcept { return scheduler_.cancel(id); }

  // Runs `fn` on this loop soon (next idle phase). Fails with backpressure past max_deferred.
  Status defer(SmallFn<void()> fn);

  // Runs once per loop turn right before the loop blocks for I/O (libuv prepare phase): used to
  // batch work issued during the turn (WAL group commit, ring publication, io_uring submission).
  // Returns an id for remove_turn_end(); a component that goes away before the reactor removes its hook.
  std::uint64_t on_turn_end(std::function<void()> fn);
  // Safe to call from inside a turn-end hook (the hook is skipped from then on).
  void remove_turn_end(std::uint64_t id) noexcept;
  std::size_t turn_end_hook_count() const noexcept { return turn_end_hooks_.size(); }

  // Called when shutdown starts; call `done` when the component has finished (may be later).
  // Shutdown waits for every hook up to its time bound.
  void on_shutdown(std::string name, std::function<void(std::function<void()> done)> hook);

  // ---- cross-shard messages ----
  // Sends `msg` to shard `to`. On success `msg` is moved from; on backpressure (ring full) it is
  // left intact and the error says so: nothing is lost. Sending to self defers locally.
  Status try_send(int to, Message& msg);
  Status send(int to, Message msg) { return try_send(to, msg); }
  // Publishes every staged message now (normally done at turn end or every send_batch messages).
  void flush();
  // One-shot callback run on this shard when the ring to `to` has space again after backpressure.
  Status on_writable(int to, SmallFn<void()> fn);

  // ---- io_uring ----
  // The shard's ring, created on first use. Completions run on this shard's thread.
  Result<Uring*> uring();

  // ---- running ----
  // Runs the loop on the calling thread until stop() finishes (standalone use and ShardSet threads).
  void run();
  // Runs one non-blocking loop iteration (tests).
  void run_nowait();
  // Starts an orderly shutdown bounded by `bound`: tasks cancelled, shutdown hooks called, handles
  // closed; run() returns when done or when the bound expires. Call on the reactor's own thread.
  void begin_shutdown(Duration bound);
  bool stopping() const noexcept { return stopping_; }
  const ShutdownReport& shutdown_report() const noexcept { return report_; }

  // Asks the whole node to stop (routes to the ShardSet, or stops this reactor if standalone).
  void request_node_stop(std::string reason);

  // Thread-safe: ring this reactor's doorbell.
  void wake() noexcept { uv_async_send(&async_); }

 private:
  friend class ShardSet;

  void on_async();
  void on_prepare();
  void on_idle();
  void arm_timer();
  void finish_shutdown();
  void close_own_handles();
  void run_writable_waiters();

  ReactorOptions opts_;
  uv_loop_t loop_{};
  uv_async_t async_{};
  uv_prepare_t prepare_{};
  uv_idle_t idle_{};
  uv_timer_t timer_{};
  uv_timer_t shutdown_timer_{};
  bool timer_armed_ = false;
  Instant timer_deadline_{0};
  std::thread::id thread_id_{};

  metrics::Registry metrics_;
  Scheduler scheduler_;
  std::deque<SmallFn<void()>> deferred_;
  struct TurnEndHook {
    std::uint64_t id;
    std::function<void()> fn;
    bool removed = false;
  };
  std::vector<std::unique_ptr<TurnEndHook>> turn_end_hooks_;
  std::uint64_t next_turn_end_id_ = 1;
  bool in_turn_end_ = false;
  struct ShutdownHook {
    std::string name;
    std::function<void(std::function<void()>)> fn;
    bool done = false;
  };
  std::vector<ShutdownHook> shutdown_hooks_;
  std::size_t hooks_pending_ = 0;
  bool stopping_ = false;
  bool finished_ = false;
  ShutdownReport report_;

  // Set by ShardSet.
  ShardSet* shards_ = nullptr;
  std::vector<int> dirty_;  // targets with staged, unpublished messages
  std::vector<char> dirty_flag_;
  std::vector<std::vector<SmallFn<void()>>> writable_waiters_;  // per target shard
  std::atomic<bool> writable_notice_{false};                    // a consumer freed space for us
  std::atomic<bool> stop_requested_{false};
  std::atomic<std::int64_t> stop_bound_ns_{0};

  std::unique_ptr<Uring> uring_;

  metrics::Counter& msgs_sent_;
  metrics::Counter& msgs_received_;
  metrics::Counter& backpressure_;
  metrics::Counter& doorbells_;
};

}  // namespace hs::runtime
