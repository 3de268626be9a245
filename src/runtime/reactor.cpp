#include "hyperscale/runtime/reactor.hpp"

#include <cmath>

#include "hyperscale/base/log.hpp"
#include "hyperscale/runtime/shard_set.hpp"
#include "hyperscale/runtime/uring.hpp"

namespace hs::runtime {
namespace {

template <typename H>
Reactor* owner(H* h) {
  return static_cast<Reactor*>(h->data);
}

void check_uv(int rc, const char* what) {
  if (rc != 0) {
    log::error("runtime", "uv_error", "call={} error={}", what, log::quoted(uv_strerror(rc)));
    throw std::runtime_error(std::string(what) + ": " + uv_strerror(rc));
  }
}

}  // namespace

Reactor::Reactor(ReactorOptions opts)
    : opts_(opts),
      scheduler_(MonotonicClock::instance(), metrics_, opts.max_tasks),
      msgs_sent_(metrics_.counter("hs_shard_messages_sent_total", "Messages sent to other shards")),
      msgs_received_(metrics_.counter("hs_shard_messages_received_total", "Messages received from other shards")),
      backpressure_(
          metrics_.counter("hs_shard_backpressure_total", "Sends refused because the destination ring was full")),
      doorbells_(metrics_.counter("hs_shard_doorbells_total", "Doorbell wake-ups handled")) {
  check_uv(uv_loop_init(&loop_), "uv_loop_init");
  loop_.data = this;
  check_uv(uv_async_init(&loop_, &async_, [](uv_async_t* h) { owner(h)->on_async(); }), "uv_async_init");
  async_.data = this;
  check_uv(uv_prepare_init(&loop_, &prepare_), "uv_prepare_init");
  prepare_.data = this;
  check_uv(uv_prepare_start(&prepare_, [](uv_prepare_t* h) { owner(h)->on_prepare(); }), "uv_prepare_start");
  uv_unref(reinterpret_cast<uv_handle_t*>(&prepare_));
  check_uv(uv_idle_init(&loop_, &idle_), "uv_idle_init");
  idle_.data = this;
  check_uv(uv_timer_init(&loop_, &timer_), "uv_timer_init");
  timer_.data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(&timer_));
  check_uv(uv_timer_init(&loop_, &shutdown_timer_), "uv_timer_init");
  shutdown_timer_.data = this;
  scheduler_.set_stop_node_hook([this](const TaskError& e) {
    request_node_stop("task " + e.task + " failed with policy stop_node: " + e.error);
  });
}

Reactor::~Reactor() {
  if (!finished_) {
    // Never ran (or run() was not called to completion): close handles synchronously.
    uring_.reset();
    close_own_handles();
    uv_run(&loop_, UV_RUN_DEFAULT);
  }
  deferred_.clear();
  const int rc = uv_loop_close(&loop_);
  if (rc != 0) {
    log::error("runtime", "loop_close_failed", "shard={} error={} note=handles still open at destruction",
               opts_.shard_id, log::quoted(uv_strerror(rc)));
  }
}

bool Reactor::on_own_thread() const noexcept {
  return thread_id_ == std::thread::id{} || thread_id_ == std::this_thread::get_id();
}

Status Reactor::defer(SmallFn<void()> fn) {
  if (deferred_.size() >= opts_.max_deferred) {
    backpressure_.inc();
    return make_error(Errc::backpressure, "defer queue full (" + std::to_string(opts_.max_deferred) + ")");
  }
  if (deferred_.empty() && !stopping_) uv_idle_start(&idle_, [](uv_idle_t* h) { owner(h)->on_idle(); });
  deferred_.push_back(std::move(fn));
  return ok_status();
}

void Reactor::on_idle() {
  // Run what is queued now; work deferred by these callbacks runs on the next turn.
  std::size_t n = deferred_.size();
  while (n-- > 0 && !deferred_.empty()) {
    SmallFn<void()> fn = std::move(deferred_.front());
    deferred_.pop_front();
    try {
      fn();
    } catch (const std::exception& e) {
      report_task_error(metrics_, "deferred", e.what());
    }
  }
  if (deferred_.empty()) uv_idle_stop(&idle_);
}

void Reactor::on_shutdown(std::string name, std::function<void(std::function<void()>)> hook) {
  shutdown_hooks_.push_back(ShutdownHook{std::move(name), std::move(hook), false});
}

Status Reactor::try_send(int to, Message& msg) {
  if (to == opts_.shard_id || shards_ == nullptr) {
    if (to != opts_.shard_id) {
      return make_error(Errc::invalid_argument, "send to shard " + std::to_string(to) + " from a standalone reactor");
    }
    Message m = std::move(msg);
    return defer([this, m = std::move(m)]() mutable { m(*this); });
  }
  if (to < 0 || to >= shards_->size()) {
    return make_error(Errc::invalid_argument, "send to unknown shard " + std::to_string(to));
  }
  auto& ring = shards_->ring(opts_.shard_id, to);
  if (!ring.try_push(msg)) {
    // Tell the consumer we are waiting, then re-check to close the race with a concurrent drain.
    ring.set_producer_waiting();
    ring.publish();
    shards_->shard(to).wake();
    if (!ring.try_push(msg)) {
      backpressure_.inc();
      return make_error(Errc::backpressure, "ring to shard " + std::to_string(to) + " is full (" +
                                                std::to_string(ring.capacity()) + " messages)");
    }
  }
  msgs_sent_.inc();
  if (ring.staged() >= opts_.send_batch) {
    ring.publish();
    shards_->shard(to).wake();
  } else if (!dirty_flag_[static_cast<std::size_t>(to)]) {
    dirty_flag_[static_cast<std::size_t>(to)] = 1;
    dirty_.push_back(to);
  }
  return ok_status();
}

void Reactor::flush() {
  if (shards_ == nullptr) return;
  for (int to : dirty_) {
    dirty_flag_[static_cast<std::size_t>(to)] = 0;
    if (shards_->ring(opts_.shard_id, to).publish() > 0) shards_->shard(to).wake();
  }
  dirty_.clear();
}

Status Reactor::on_writable(int to, SmallFn<void()> fn) {
  if (shards_ == nullptr || to < 0 || to >= shards_->size() || to == opts_.shard_id) {
    return make_error(Errc::invalid_argument, "on_writable: bad shard " + std::to_string(to));
  }
  auto& waiters = writable_waiters_[static_cast<std::size_t>(to)];
  if (waiters.size() >= opts_.max_writable_waiters) {
    return make_error(Errc::backpressure, "too many writable waiters for shard " + std::to_string(to));
  }
  auto& ring = shards_->ring(opts_.shard_id, to);
  ring.set_producer_waiting();
  waiters.push_back(std::move(fn));
  if (ring.producer_has_space()) writable_notice_.store(true, std::memory_order_release), wake();
  return ok_status();
}

void Reactor::run_writable_waiters() {
  for (std::size_t to = 0; to < writable_waiters_.size(); ++to) {
    auto& waiters = writable_waiters_[to];
    if (waiters.empty()) continue;
    if (!shards_->ring(opts_.shard_id, static_cast<int>(to)).producer_has_space()) {
      shards_->ring(opts_.shard_id, static_cast<int>(to)).set_producer_waiting();
      continue;
    }
    auto run = std::move(waiters);
    waiters.clear();
    for (auto& fn : run) {
      try {
        fn();
      } catch (const std::exception& e) {
        log::error("runtime", "writable_callback_error", "to={} error={}", to, log::quoted(e.what()));
      }
    }
  }
}

void Reactor::on_async() {
  doorbells_.inc();
  if (shards_ != nullptr) {
    shards_->drain_external(*this);
    const int n = shards_->size();
    const int me = opts_.shard_id;
    std::size_t budget = opts_.drain_budget;
    bool more = true;
    while (more && budget > 0) {
      more = false;
      for (int from = 0; from < n; ++from) {
        if (from == me) continue;
        auto& ring = shards_->ring(from, me);
        const std::size_t got = ring.drain(
            [this](Message& m) {
              try {
                m(*this);
              } catch (const std::exception& e) {
                report_task_error(metrics_, "message", e.what());
              }
            },
            budget);
        msgs_received_.inc(got);
        budget -= got;
        if (ring.take_waiter()) {
          Reactor& producer = shards_->shard(from);
          producer.writable_notice_.store(true, std::memory_order_release);
          producer.wake();
        }
        if (!ring.empty_for_consumer()) more = true;
      }
    }
    if (more) wake();  // budget spent: yield to I/O, continue next turn
    if (writable_notice_.exchange(false, std::memory_order_acq_rel)) run_writable_waiters();
  }
  if (stop_requested_.exchange(false, std::memory_order_acq_rel) && !stopping_) {
    begin_shutdown(Duration(stop_bound_ns_.load(std::memory_order_acquire)));
  }
}

std::uint64_t Reactor::on_turn_end(std::function<void()> fn) {
  const std::uint64_t id = next_turn_end_id_++;
  turn_end_hooks_.push_back(std::make_unique<TurnEndHook>(TurnEndHook{id, std::move(fn)}));
  return id;
}

void Reactor::remove_turn_end(std::uint64_t id) noexcept {
  for (auto it = turn_end_hooks_.begin(); it != turn_end_hooks_.end(); ++it) {
    if ((*it)->id != id) continue;
    if (in_turn_end_) {
      (*it)->removed = true;  // erased after the loop below finishes
    } else {
      turn_end_hooks_.erase(it);
    }
    return;
  }
}

void Reactor::on_prepare() {
  in_turn_end_ = true;
  // Index loop: a hook may add hooks (appended, run this turn) or remove hooks (skipped).
  for (std::size_t i = 0; i < turn_end_hooks_.size(); ++i) {
    TurnEndHook* hook = turn_end_hooks_[i].get();
    if (hook->removed) continue;
    try {
      hook->fn();
    } catch (const std::exception& e) {
      report_task_error(metrics_, "turn_end", e.what());
    }
  }
  in_turn_end_ = false;
  std::erase_if(turn_end_hooks_, [](const auto& h) { return h->removed; });
  if (uring_) {
    Status st = uring_->submit();
    if (!st.ok()) log::error("runtime", "uring_submit_failed", "error={}", log::quoted(st.to_string()));
  }
  flush();
  arm_timer();
}

void Reactor::arm_timer() {
  if (stopping_) return;
  auto next = scheduler_.next_deadline();
  if (!next) {
    if (timer_armed_) uv_timer_stop(&timer_);
    timer_armed_ = false;
    return;
  }
  if (timer_armed_ && timer_deadline_ == *next) return;
  const Instant now = clock().now();
  const double ms = *next > now ? std::ceil(to_millis(*next - now)) : 0.0;
  timer_deadline_ = *next;
  timer_armed_ = true;
  uv_update_time(&loop_);
  uv_timer_start(
      &timer_,
      [](uv_timer_t* h) {
        Reactor* r = owner(h);
        r->timer_armed_ = false;
        r->scheduler_.run_due();
      },
      static_cast<std::uint64_t>(ms), 0);
  // Timers keep the loop alive only while tasks exist.
  uv_ref(reinterpret_cast<uv_handle_t*>(&timer_));
}

Result<Uring*> Reactor::uring() {
  if (!uring_) {
    auto u = Uring::create(*this, opts_.uring_entries);
    if (!u.ok()) return u.status();
    uring_ = std::move(u).value();
  }
  return uring_.get();
}

void Reactor::run() {
  thread_id_ = std::this_thread::get_id();
  log::set_thread_shard(opts_.shard_id);
  uv_run(&loop_, UV_RUN_DEFAULT);
  if (!finished_) {
    // The loop ran out of work without a shutdown (standalone use): close handles now.
    finished_ = true;
    if (uring_) uring_->close();
    close_own_handles();
    uv_run(&loop_, UV_RUN_DEFAULT);
  }
}

void Reactor::run_nowait() {
  thread_id_ = std::this_thread::get_id();
  uv_run(&loop_, UV_RUN_NOWAIT);
}

void Reactor::request_node_stop(std::string reason) {
  if (shards_ != nullptr) {
    shards_->request_stop(std::move(reason));
    return;
  }
  log::warn("runtime", "stop_requested", "reason={}", log::quoted(reason));
  if (!stopping_) begin_shutdown(std::chrono::seconds(5));
}

void Reactor::begin_shutdown(Duration bound) {
  if (stopping_) return;
  stopping_ = true;
  log::info("runtime", "shutdown_begin", "bound_ms={:.0f} hooks={} tasks={}", to_millis(bound), shutdown_hooks_.size(),
            scheduler_.size());
  scheduler_.cancel_all();
  uv_timer_stop(&timer_);
  hooks_pending_ = shutdown_hooks_.size();
  for (std::size_t i = 0; i < shutdown_hooks_.size(); ++i) {
    auto done = [this, i]() {
      if (finished_ || shutdown_hooks_[i].done) return;
      shutdown_hooks_[i].done = true;
      if (--hooks_pending_ == 0) finish_shutdown();
    };
    try {
      shutdown_hooks_[i].fn(done);
    } catch (const std::exception& e) {
      log::error("runtime", "shutdown_hook_error", "hook={} error={}", shutdown_hooks_[i].name, log::quoted(e.what()));
      done();
    }
    if (finished_) return;
  }
  if (hooks_pending_ == 0) {
    finish_shutdown();
    return;
  }
  uv_timer_start(
      &shutdown_timer_,
      [](uv_timer_t* h) {
        Reactor* r = owner(h);
        if (!r->finished_) r->finish_shutdown();
      },
      static_cast<std::uint64_t>(std::max<double>(0.0, std::ceil(to_millis(bound)))), 0);
}

void Reactor::finish_shutdown() {
  if (finished_) return;
  finished_ = true;
  for (const auto& h : shutdown_hooks_) {
    if (!h.done) {
      report_.clean = false;
      report_.unfinished_hooks.push_back(h.name);
      log::error("runtime", "shutdown_hook_timeout", "hook={} note=did not finish within the shutdown bound", h.name);
    }
  }
  if (!deferred_.empty()) {
    report_.dropped_messages += deferred_.size();
    log::warn("runtime", "shutdown_dropped_deferred", "count={}", deferred_.size());
    deferred_.clear();
  }
  for (auto& w : writable_waiters_) w.clear();
  if (uring_) uring_->close();
  close_own_handles();
  log::info("runtime", "shutdown_end", "clean={}", report_.clean);
}

void Reactor::close_own_handles() {
  auto close = [](auto* h) {
    auto* hh = reinterpret_cast<uv_handle_t*>(h);
    if (!uv_is_closing(hh)) uv_close(hh, nullptr);
  };
  close(&async_);
  close(&prepare_);
  close(&idle_);
  close(&timer_);
  close(&shutdown_timer_);
}

}  // namespace hs::runtime
