// Cross-shard messaging benchmark.
//   throughput: shard 0 sends batched messages to shard 1 as fast as the ring allows
//   wake-up:    shard 1 is idle (blocked in epoll); shard 0 stamps the time and sends one message;
//               shard 1 measures the one-way latency until the message runs.
// Prints per-round figures, then a last line: xshard msgs_per_s=<median> wake_us=<median>
#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <thread>
#include <vector>

#include "hyperscale/base/log.hpp"
#include "hyperscale/runtime/shard_set.hpp"

using namespace hs;
using namespace hs::runtime;
using namespace std::chrono_literals;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

double throughput_round(double seconds) {
  ShardSetOptions o;
  o.shards = 2;
  o.ring_capacity = 8192;
  o.reactor.send_batch = 256;
  ShardSet set(o);
  std::uint64_t received = 0;  // shard 1 only
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> result{0};
  std::function<void(Reactor&)> pump = [&](Reactor& r) {
    for (int burst = 0; burst < 64 && !stop.load(std::memory_order_relaxed); ++burst) {
      for (int i = 0; i < 1024; ++i) {
        Message m = [&received](Reactor&) { ++received; };
        if (!r.try_send(1, m).ok()) {
          (void)r.on_writable(1, [&pump, &r]() { pump(r); });
          return;
        }
      }
    }
    if (!stop.load(std::memory_order_relaxed)) (void)r.defer([&pump, &r]() { pump(r); });
  };
  if (!set.start([&](Reactor& r) {
            if (r.shard_id() == 0) pump(r);
          })
           .ok()) {
    std::abort();
  }
  // Measure a window after warm-up, reading shard 1's counter on shard 1.
  auto read_count = [&]() {
    std::atomic<bool> got{false};
    (void)set.post(1, [&](Reactor&) {
      result = received;
      got = true;
    });
    while (!got.load()) std::this_thread::yield();
    return result.load();
  };
  std::this_thread::sleep_for(200ms);
  const auto t0 = std::chrono::steady_clock::now();
  const std::uint64_t c0 = read_count();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  const std::uint64_t c1 = read_count();
  const auto t1 = std::chrono::steady_clock::now();
  stop = true;
  set.stop();
  return static_cast<double>(c1 - c0) / std::chrono::duration<double>(t1 - t0).count();
}

double wake_round(int samples, bool pin) {
  ShardSetOptions o;
  o.shards = 2;
  o.pin = pin;
  ShardSet set(o);
  std::vector<double> lat;  // shard 1 only until stop
  lat.reserve(static_cast<std::size_t>(samples));
  std::atomic<int> sent{0};
  if (!set.start([&](Reactor& r) {
            if (r.shard_id() != 0) return;
            auto t = r.every("ping", 2ms, [&r, &lat, &sent, samples]() {
              if (sent.load() >= samples) return ok_status();
              const Instant t0 = MonotonicClock::instance().now();
              Message m = [t0, &lat](Reactor&) { lat.push_back(to_micros(MonotonicClock::instance().now() - t0)); };
              Status st = r.try_send(1, m);
              r.flush();
              if (st.ok()) ++sent;
              return st;
            });
            if (!t.ok()) std::abort();
          })
           .ok()) {
    std::abort();
  }
  while (sent.load() < samples) std::this_thread::sleep_for(10ms);
  std::this_thread::sleep_for(20ms);
  set.stop();
  return median(lat);
}

// Floor of the machine: two bare threads, an eventfd and epoll, no runtime at all.
double raw_eventfd_round(int samples, bool pin) {
  const int efd = eventfd(0, EFD_NONBLOCK);
  std::atomic<std::int64_t> t0{0};
  std::vector<double> lat;
  lat.reserve(static_cast<std::size_t>(samples));
  auto pin_to = [pin](int cpu) {
    if (!pin || ShardSet::available_cores() < 2) return;
    cpu_set_t c;
    CPU_ZERO(&c);
    CPU_SET(cpu, &c);
    pthread_setaffinity_np(pthread_self(), sizeof c, &c);
  };
  std::thread rx([&]() {
    pin_to(1);
    const int ep = epoll_create1(0);
    epoll_event ev{};
    ev.events = EPOLLIN;
    epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev);
    // An eventfd is a counter: two writes before one read arrive as one wake-up with value 2, so
    // count the value, not the wake-ups (otherwise a descheduled receiver would wait forever).
    std::uint64_t received = 0;
    while (received < static_cast<std::uint64_t>(samples)) {
      epoll_event out{};
      while (epoll_wait(ep, &out, 1, -1) != 1) {
      }
      const auto now = MonotonicClock::instance().now().count();
      std::uint64_t v = 0;
      if (read(efd, &v, sizeof v) < 0) std::abort();
      received += v;
      if (v == 1) lat.push_back(static_cast<double>(now - t0.load()) / 1000.0);
    }
    close(ep);
  });
  pin_to(0);
  for (int i = 0; i < samples; ++i) {
    std::this_thread::sleep_for(2ms);
    t0 = MonotonicClock::instance().now().count();
    const std::uint64_t one = 1;
    if (write(efd, &one, sizeof one) < 0) std::abort();
  }
  rx.join();
  close(efd);
  // Undo the main thread's pinning.
  cpu_set_t all;
  CPU_ZERO(&all);
  for (int c = 0; c < CPU_SETSIZE; ++c) CPU_SET(c, &all);
  sched_setaffinity(0, sizeof all, &all);
  return median(lat);
}

}  // namespace

int main(int argc, char** argv) {
  // The throughput rounds stop with messages still in the rings; that warning is expected here.
  log::set_level(log::Level::error);
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 5;
  const double seconds = argc > 2 ? std::atof(argv[2]) : 1.0;
  std::printf("cores available: %d\n", ShardSet::available_cores());
  std::vector<double> tput, wake, wake_unpinned, raw;
  for (int i = 0; i < rounds; ++i) {
    tput.push_back(throughput_round(seconds));
    wake.push_back(wake_round(500, true));
    wake_unpinned.push_back(wake_round(500, false));
    raw.push_back(raw_eventfd_round(500, true));
    std::printf(
        "round %d: msgs_per_s=%.0f wake_us=%.1f (pinned, the default) wake_unpinned_us=%.1f "
        "raw_eventfd_pinned_us=%.1f\n",
        i + 1, tput.back(), wake.back(), wake_unpinned.back(), raw.back());
    std::fflush(stdout);
  }
  std::printf(
      "median raw_eventfd_pinned_us=%.1f (two bare pinned threads: the machine's floor for a cross-core wake)\n",
      median(raw));
  std::printf(
      "median wake_unpinned_us=%.1f (threads not pinned; the scheduler may wake the receiver on the sender's core)\n",
      median(wake_unpinned));
  std::printf("xshard msgs_per_s=%.0f wake_us=%.1f\n", median(tput), median(wake));
  return 0;
}
