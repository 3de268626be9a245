#include "hyperscale/runtime/shard_set.hpp"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>

#include "hyperscale/base/log.hpp"

namespace hs::runtime {

int ShardSet::available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) {
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? static_cast<int>(n) : 1;
  }
  return CPU_COUNT(&set);
}

ShardSet::ShardSet(ShardSetOptions opts) : opts_(std::move(opts)) {
  if (opts_.shards <= 0) opts_.shards = available_cores();
  const int n = opts_.shards;
  rings_.resize(static_cast<std::size_t>(n * n));
  for (int from = 0; from < n; ++from) {
    for (int to = 0; to < n; ++to) {
      if (from != to) {
        rings_[static_cast<std::size_t>(from * n + to)] = std::make_unique<SpscRing<Message>>(opts_.ring_capacity);
      }
    }
  }
  for (int i = 0; i < n; ++i) {
    ReactorOptions ro = opts_.reactor;
    ro.shard_id = i;
    auto r = std::make_unique<Reactor>(ro);
    r->shards_ = this;
    r->dirty_flag_.assign(static_cast<std::size_t>(n), 0);
    r->writable_waiters_.resize(static_cast<std::size_t>(n));
    reactors_.push_back(std::move(r));
    external_.push_back(std::make_unique<External>());
  }
}

ShardSet::~ShardSet() {
  if (started_ && !stopped_) (void)stop();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  std::size_t dropped = 0;
  for (auto& r : rings_) {
    if (r) dropped += r->clear_all();
  }
  for (auto& e : external_) {
    dropped += e->q.size();
    e->q.clear();
  }
  if (dropped > 0) log::warn("runtime", "messages_dropped_at_destroy", "count={}", dropped);
  signal_handles_.clear();
  reactors_.clear();
}

Status ShardSet::start(std::function<void(Reactor&)> init) {
  if (started_) return make_error(Errc::invalid_argument, "ShardSet already started");
  started_ = true;
  log::info("runtime", "shards_start", "shards={} cores={} pin={} ring_capacity={}", size(), available_cores(),
            opts_.pin && available_cores() >= size(), opts_.ring_capacity);
  for (int i = 0; i < size(); ++i) {
    threads_.emplace_back([this, i, init]() { thread_main(i, init); });
  }
  return ok_status();
}

void ShardSet::thread_main(int i, std::function<void(Reactor&)> init) {
  Reactor& r = *reactors_[static_cast<std::size_t>(i)];
  const std::string name = "hs-shard-" + std::to_string(i);
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
  log::set_thread_shard(i);
  r.thread_id_ = std::this_thread::get_id();

  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (opts_.pin && sched_getaffinity(0, sizeof allowed, &allowed) == 0 && CPU_COUNT(&allowed) >= size()) {
    int seen = -1;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (!CPU_ISSET(cpu, &allowed)) continue;
      if (++seen == i) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        const int rc = pthread_setaffinity_np(pthread_self(), sizeof one, &one);
        if (rc != 0) log::warn("runtime", "pin_failed", "cpu={} errno={}", cpu, rc);
        break;
      }
    }
  }

  if (i == 0 && opts_.handle_signals) {
    for (int sig : {SIGINT, SIGTERM}) {
      auto h = std::make_unique<uv_signal_t>();
      uv_signal_init(r.loop(), h.get());
      h->data = this;
      uv_signal_start(
          h.get(),
          [](uv_signal_t* s, int signum) {
            auto* self = static_cast<ShardSet*>(s->data);
            int seen;
            {
              std::lock_guard lk(self->state_mu_);
              seen = ++self->signals_seen_;
            }
            if (seen > 1) {
              log::error("runtime", "signal_forced_exit", "signal={} note=second signal during shutdown",
                         strsignal(signum));
              std::_Exit(128 + signum);
            }
            log::info("runtime", "signal", "signal={}", strsignal(signum));
            self->request_stop(std::string("signal ") + strsignal(signum));
          },
          sig);
      uv_unref(reinterpret_cast<uv_handle_t*>(h.get()));
      r.on_shutdown("signal_handler", [hp = h.get()](std::function<void()> done) {
        uv_close(reinterpret_cast<uv_handle_t*>(hp), nullptr);
        done();
      });
      signal_handles_.push_back(std::move(h));
    }
  }

  if (init) {
    try {
      init(r);
    } catch (const std::exception& e) {
      log::error("runtime", "shard_init_failed", "error={}", log::quoted(e.what()));
      request_stop(std::string("shard init failed: ") + e.what());
    }
  }
  r.run();
  {
    std::lock_guard lk(state_mu_);
    ++finished_threads_;
  }
  state_cv_.notify_all();
}

Status ShardSet::post(int shard, SmallFn<void(Reactor&)> fn) {
  if (shard < 0 || shard >= size())
    return make_error(Errc::invalid_argument, "post to unknown shard " + std::to_string(shard));
  External& e = *external_[static_cast<std::size_t>(shard)];
  {
    std::lock_guard lk(e.mu);
    if (e.q.size() >= opts_.max_external) {
      return make_error(Errc::backpressure, "external queue of shard " + std::to_string(shard) + " is full");
    }
    e.q.push_back(std::move(fn));
  }
  reactors_[static_cast<std::size_t>(shard)]->wake();
  return ok_status();
}

void ShardSet::drain_external(Reactor& r) {
  External& e = *external_[static_cast<std::size_t>(r.shard_id())];
  std::deque<SmallFn<void(Reactor&)>> batch;
  {
    std::lock_guard lk(e.mu);
    batch.swap(e.q);
  }
  for (auto& fn : batch) {
    try {
      fn(r);
    } catch (const std::exception& ex) {
      report_task_error(r.metrics(), "posted", ex.what());
    }
  }
}

void ShardSet::request_stop(std::string reason) {
  {
    std::lock_guard lk(state_mu_);
    if (stop_reason_) return;
    stop_reason_ = std::move(reason);
  }
  log::info("runtime", "stop_requested", "reason={}", log::quoted(*stop_reason_));
  state_cv_.notify_all();
}

Status ShardSet::call(int shard, std::function<void(Reactor&)> fn, Duration timeout) {
  struct Call {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false, abandoned = false;
    std::function<void(Reactor&)> fn;
  };
  auto c = std::make_shared<Call>();
  c->fn = std::move(fn);
  HS_TRY(post(shard, [c](Reactor& r) {
    std::lock_guard lk(c->mu);  // held while fn runs: the caller cannot give up half-way through it
    if (c->abandoned) return;
    c->fn(r);
    c->done = true;
    c->cv.notify_all();
  }));
  std::unique_lock lk(c->mu);
  if (c->cv.wait_for(lk, timeout, [&] { return c->done; })) return ok_status();
  c->abandoned = true;
  return make_error(Errc::timeout, "shard " + std::to_string(shard) + " did not run the call in time");
}

std::string ShardSet::wait_for_stop_request() {
  std::unique_lock lk(state_mu_);
  state_cv_.wait(lk, [&] { return stop_reason_.has_value(); });
  return *stop_reason_;
}

std::optional<std::string> ShardSet::wait_for_stop_request(Duration timeout) {
  std::unique_lock lk(state_mu_);
  if (!state_cv_.wait_for(lk, timeout, [&] { return stop_reason_.has_value(); })) return std::nullopt;
  return stop_reason_;
}

StopReport ShardSet::stop(std::optional<Duration> bound_opt) {
  if (stopped_ || !started_) return stop_report_;
  stopped_ = true;
  const Duration bound = bound_opt.value_or(opts_.shutdown_bound);
  const Instant t0 = MonotonicClock::instance().now();
  for (auto& r : reactors_) {
    r->stop_bound_ns_.store(bound.count(), std::memory_order_release);
    r->stop_requested_.store(true, std::memory_order_release);
    r->wake();
  }
  // Each reactor enforces `bound` itself; allow a little slack for the last loop turn.
  const Duration wait_limit = bound + std::chrono::milliseconds(500);
  bool all_done;
  {
    std::unique_lock lk(state_mu_);
    all_done = state_cv_.wait_for(lk, wait_limit, [&] { return finished_threads_ == size(); });
  }
  StopReport rep;
  rep.took = MonotonicClock::instance().now() - t0;
  if (!all_done) {
    // A shard is wedged inside a callback: it cannot be joined or freed safely.
    log::error("runtime", "shutdown_wedged", "bound_ms={:.0f} note=a shard did not return from its loop; exiting",
               to_millis(bound));
    std::_Exit(4);
  }
  for (auto& t : threads_) t.join();
  threads_.clear();
  for (auto& r : reactors_) {
    rep.shards.push_back(r->shutdown_report());
    if (!r->shutdown_report().clean) rep.clean = false;
  }
  rep.within_bound = rep.took <= bound + std::chrono::milliseconds(100);
  log::info("runtime", "shards_stopped", "clean={} took_ms={:.1f}", rep.clean, to_millis(rep.took));
  stop_report_ = rep;
  return rep;
}

}  // namespace hs::runtime
