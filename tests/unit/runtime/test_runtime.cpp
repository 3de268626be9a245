#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "hyperscale/base/log.hpp"
#include "hyperscale/runtime/log_capture.hpp"
#include "hyperscale/runtime/shard_set.hpp"
#include "hyperscale/runtime/tasks.hpp"
#include "hyperscale/runtime/uring.hpp"

using namespace hs;
using namespace hs::runtime;
using namespace std::chrono_literals;

namespace {
ShardSetOptions small_set(int shards, std::size_t ring = 4096) {
  ShardSetOptions o;
  o.shards = shards;
  o.ring_capacity = ring;
  o.pin = false;
  o.shutdown_bound = 2s;
  return o;
}
}  // namespace

TEST_CASE("Timers driven by a manual clock fire in deadline order", "[runtime][tasks]") {
  ManualClock clock;
  metrics::Registry reg;
  Scheduler s(clock, reg);
  std::vector<std::string> order;
  auto rec = [&](const char* name) {
    return [&order, name]() {
      order.emplace_back(name);
      return ok_status();
    };
  };
  REQUIRE(s.after("c", 30ms, rec("c")).ok());
  REQUIRE(s.after("a", 10ms, rec("a")).ok());
  REQUIRE(s.after("b", 20ms, rec("b")).ok());
  REQUIRE(s.every("p", 15ms, rec("p")).ok());
  auto cancelled = s.after("x", 5ms, rec("x"));
  REQUIRE(cancelled.ok());
  CHECK(s.cancel(cancelled.value()));

  CHECK(s.run_due() == 0);
  CHECK(s.next_deadline() == Instant{10ms});
  for (int i = 0; i < 50; ++i) {
    clock.advance(1ms);
    s.run_due();
  }
  CHECK(order == std::vector<std::string>{"a", "p", "b", "c", "p", "p"});
  CHECK(s.size() == 1);  // only the periodic task remains

  // A jump far ahead runs an overdue periodic task once, not once per missed period.
  order.clear();
  clock.advance(1s);
  s.run_due();
  CHECK(order == std::vector<std::string>{"p"});
  CHECK(!s.every("bad", 0ms, rec("bad")).ok());
}

TEST_CASE("Scheduler refuses timers past its bound", "[runtime][tasks]") {
  ManualClock clock;
  metrics::Registry reg;
  Scheduler s(clock, reg, 2);
  auto noop = []() { return ok_status(); };
  REQUIRE(s.after("a", 1ms, noop).ok());
  REQUIRE(s.after("b", 1ms, noop).ok());
  auto third = s.after("c", 1ms, noop);
  CHECK(third.status().code() == Errc::backpressure);
  CHECK(reg.counter_value("hs_timers_refused_total") == 1);
}

TEST_CASE("Task policies: keep going, restart with backoff, stop the node", "[runtime][tasks]") {
  LogCapture logs;
  ManualClock clock;
  metrics::Registry reg;
  Scheduler s(clock, reg);
  int keep_runs = 0, retry_runs = 0;
  std::vector<TaskError> stops;
  s.set_stop_node_hook([&](const TaskError& e) { stops.push_back(e); });

  REQUIRE(s.every("keep", 10ms, [&]() -> Status {
             ++keep_runs;
             if (keep_runs <= 2) throw std::runtime_error("boom " + std::to_string(keep_runs));
             return ok_status();
           }).ok());
  TaskOptions backoff{TaskPolicy::restart_with_backoff, 100ms, 400ms};
  std::vector<Instant> retry_times;
  REQUIRE(s.after(
               "retry", 0ms,
               [&]() -> Status {
                 retry_times.push_back(clock.now());
                 return ++retry_runs < 5 ? make_error(Errc::unavailable, "not yet") : ok_status();
               },
               backoff)
              .ok());
  REQUIRE(s.every(
               "fatal", 50ms, []() -> Status { return make_error(Errc::internal, "invariant broken"); },
               TaskOptions{TaskPolicy::stop_node})
              .ok());

  for (int i = 0; i < 2000; ++i) {
    s.run_due();
    clock.advance(1ms);
  }
  CHECK(keep_runs > 100);  // kept its schedule after two failures
  CHECK(reg.counter_value("hs_task_errors_total", {{"task", "keep"}}) == 2);
  CHECK(logs.contains({"event=task_error", "task=keep", "boom 1", "policy=keep_going"}));

  REQUIRE(retry_runs == 5);  // a one-shot task retried until it succeeded
  CHECK(retry_times[1] - retry_times[0] == 100ms);
  CHECK(retry_times[2] - retry_times[1] == 200ms);
  CHECK(retry_times[3] - retry_times[2] == 400ms);
  CHECK(retry_times[4] - retry_times[3] == 400ms);  // capped
  CHECK(reg.counter_value("hs_task_errors_total", {{"task", "retry"}}) == 4);

  REQUIRE(stops.size() == 1);  // stop_node: hook called once, task cancelled
  CHECK(stops[0].task == "fatal");
  CHECK(stops[0].error.find("invariant broken") != std::string::npos);
  CHECK(reg.counter_value("hs_task_errors_total", {{"task", "fatal"}}) == 1);
}

TEST_CASE("A throwing background task on a live reactor is logged, counted, and the loop keeps running", "[runtime]") {
  LogCapture logs;
  Reactor r;
  int runs = 0, after_runs = 0;
  REQUIRE(r.every("flaky", 5ms, [&]() -> Status {
             if (++runs <= 2) throw std::runtime_error("flaky failure");
             return ok_status();
           }).ok());
  REQUIRE(r.after("later", 80ms, [&]() {
             ++after_runs;
             r.begin_shutdown(1s);
             return ok_status();
           }).ok());
  r.run();
  CHECK(runs > 3);
  CHECK(after_runs == 1);
  CHECK(r.metrics().counter_value("hs_task_errors_total", {{"task", "flaky"}}) == 2);
  CHECK(logs.find({"comp=runtime", "event=task_error", "task=flaky", "flaky failure"}).size() == 2);
  CHECK(r.shutdown_report().clean);
}

TEST_CASE("Messages between a shard pair arrive in FIFO order, none lost", "[runtime][mailbox]") {
  constexpr std::uint64_t kPerSender = 200'000;
  ShardSet set(small_set(3, 1024));
  // Shard 1 receives from shards 0 and 2. State for shard 1 only touched on shard 1.
  std::vector<std::uint64_t> next_expected(3, 0);
  std::uint64_t out_of_order = 0;
  std::atomic<int> senders_done{0};

  struct Sender {
    std::uint64_t next = 0;
  };
  std::vector<Sender> senders(3);
  std::function<void(Reactor&)> pump;
  pump = [&](Reactor& r) {
    Sender& s = senders[static_cast<std::size_t>(r.shard_id())];
    const std::uint64_t from = static_cast<std::uint64_t>(r.shard_id());
    while (s.next < kPerSender) {
      const std::uint64_t seq = s.next;
      Message m = [&, from, seq](Reactor&) {
        if (next_expected[from] != seq) ++out_of_order;
        next_expected[from] = seq + 1;
      };
      if (!r.try_send(1, m).ok()) {
        REQUIRE(static_cast<bool>(m));  // refused message left intact
        REQUIRE(r.on_writable(1, [&pump, &r]() { pump(r); }).ok());
        return;
      }
      ++s.next;
    }
    ++senders_done;
  };
  REQUIRE(set.start([&](Reactor& r) {
               if (r.shard_id() != 1) pump(r);
             })
              .ok());
  for (int i = 0; i < 500 && senders_done.load() < 2; ++i) std::this_thread::sleep_for(10ms);
  REQUIRE(senders_done.load() == 2);
  // Let shard 1 finish draining, then read its state on its own thread.
  std::atomic<bool> checked{false};
  std::uint64_t got0 = 0, got2 = 0, ooo = 0;
  for (int i = 0; i < 500; ++i) {
    checked = false;
    REQUIRE(set.post(1,
                     [&](Reactor&) {
                       got0 = next_expected[0];
                       got2 = next_expected[2];
                       ooo = out_of_order;
                       checked = true;
                     })
                .ok());
    while (!checked.load()) std::this_thread::sleep_for(1ms);
    if (got0 == kPerSender && got2 == kPerSender) break;
    std::this_thread::sleep_for(10ms);
  }
  CHECK(got0 == kPerSender);
  CHECK(got2 == kPerSender);
  CHECK(ooo == 0);
  auto rep = set.stop();
  CHECK(rep.clean);
}

TEST_CASE("A full ring is backpressure the sender sees; nothing is lost", "[runtime][mailbox]") {
  ShardSet set(small_set(2, 8));
  std::atomic<bool> consumer_blocked{false}, release{false}, done{false};
  std::vector<int> received;  // shard 1 only
  int refused_with_intact_message = 0;
  int sent = 0;
  constexpr int kTotal = 100;
  std::function<void(Reactor&)> pump;
  pump = [&](Reactor& r) {
    while (sent < kTotal) {
      const int v = sent;
      Message m = [&received, v](Reactor&) { received.push_back(v); };
      Status st = r.try_send(1, m);
      if (!st.ok()) {
        CHECK(st.code() == Errc::backpressure);
        if (m) ++refused_with_intact_message;
        release = true;  // let the consumer go once the sender has seen a full ring
        REQUIRE(r.on_writable(1, [&pump, &r]() { pump(r); }).ok());
        return;
      }
      ++sent;
    }
    Message fin = [&done](Reactor&) { done = true; };
    while (!r.try_send(1, fin).ok()) std::this_thread::yield();
    r.flush();
  };
  REQUIRE(set.start().ok());
  // Block shard 1 inside a callback so its ring fills up.
  REQUIRE(set.post(1,
                   [&](Reactor&) {
                     consumer_blocked = true;
                     while (!release.load()) std::this_thread::yield();
                   })
              .ok());
  while (!consumer_blocked.load()) std::this_thread::yield();
  REQUIRE(set.post(0, [&](Reactor& r) { pump(r); }).ok());
  for (int i = 0; i < 1000 && !done.load(); ++i) std::this_thread::sleep_for(5ms);
  REQUIRE(done.load());
  set.stop();
  CHECK(refused_with_intact_message >= 1);
  REQUIRE(received.size() == kTotal);
  for (int i = 0; i < kTotal; ++i) CHECK(received[static_cast<std::size_t>(i)] == i);
  CHECK(set.shard(0).metrics().counter_value("hs_shard_backpressure_total") >= 1);
}

TEST_CASE("An io_uring completion runs on the owning shard's thread", "[runtime][uring]") {
  ShardSet set(small_set(2));
  std::atomic<bool> done{false};
  std::thread::id shard_thread, completion_thread;
  int completion_shard = -1, write_res = -1, fsync_res = -1;
  char path[] = "/tmp/hs-uring-XXXXXX";
  const int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  static const char kData[] = "hello io_uring";
  REQUIRE(set.start([&](Reactor& r) {
               if (r.shard_id() != 1) return;
               shard_thread = std::this_thread::get_id();
               auto u = r.uring();
               REQUIRE(u.ok());
               io_uring_sqe* w = u.value()->prepare([&](int res) { write_res = res; });
               REQUIRE(w != nullptr);
               io_uring_prep_write(w, fd, kData, sizeof kData - 1, 0);
               w->flags |= IOSQE_IO_LINK;  // fdatasync only after the write
               io_uring_sqe* s = u.value()->prepare([&](int res) {
                 fsync_res = res;
                 completion_thread = std::this_thread::get_id();
                 completion_shard = log::thread_shard();
                 done = true;
               });
               REQUIRE(s != nullptr);
               io_uring_prep_fsync(s, fd, IORING_FSYNC_DATASYNC);
             })
              .ok());
  for (int i = 0; i < 500 && !done.load(); ++i) std::this_thread::sleep_for(5ms);
  set.stop();
  REQUIRE(done.load());
  CHECK(write_res == static_cast<int>(sizeof kData - 1));
  CHECK(fsync_res == 0);
  CHECK(completion_thread == shard_thread);
  CHECK(completion_shard == 1);
  char buf[64] = {};
  CHECK(pread(fd, buf, sizeof buf, 0) == static_cast<ssize_t>(sizeof kData - 1));
  CHECK(std::string(buf) == kData);
  close(fd);
  unlink(path);
}

TEST_CASE("Shutdown with pending work ends within its bound", "[runtime][shutdown]") {
  LogCapture logs;
  ShardSet set(small_set(2));
  std::atomic<int> ready{0};
  REQUIRE(set.start([&](Reactor& r) {
               // Pending work: a busy periodic task, a deferred flood, and a shutdown hook that never finishes.
               REQUIRE(r.every("busy", 1ms, []() { return ok_status(); }).ok());
               r.on_shutdown("stuck-drain", [](std::function<void()>) { /* never calls done */ });
               r.on_shutdown("quick-drain", [](std::function<void()> done) { done(); });
               ++ready;
             })
              .ok());
  while (ready.load() < 2) std::this_thread::sleep_for(1ms);
  const auto t0 = std::chrono::steady_clock::now();
  StopReport rep = set.stop(300ms);
  const auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took < 800ms);
  CHECK(took >= 250ms);  // it did wait for the stuck hook, up to the bound
  CHECK_FALSE(rep.clean);
  REQUIRE(rep.shards.size() == 2);
  CHECK(rep.shards[0].unfinished_hooks == std::vector<std::string>{"stuck-drain"});
  CHECK(logs.contains({"event=shutdown_hook_timeout", "hook=stuck-drain"}));
}

TEST_CASE("Shutdown waits for hooks that finish asynchronously", "[runtime][shutdown]") {
  ShardSet set(small_set(2));
  std::atomic<int> finished{0};
  REQUIRE(set.start([&](Reactor& r) {
               r.on_shutdown("async-drain", [&r, &finished](std::function<void()> done) {
                 // Tasks are cancelled at shutdown, so use a raw libuv timer for the asynchronous finish.
                 auto* t = new uv_timer_t;
                 uv_timer_init(r.loop(), t);
                 t->data = new std::function<void()>([done, &finished]() {
                   ++finished;
                   done();
                 });
                 uv_timer_start(
                     t,
                     [](uv_timer_t* h) {
                       auto* fn = static_cast<std::function<void()>*>(h->data);
                       (*fn)();
                       delete fn;
                       uv_close(reinterpret_cast<uv_handle_t*>(h),
                                [](uv_handle_t* hh) { delete reinterpret_cast<uv_timer_t*>(hh); });
                     },
                     50, 0);
               });
             })
              .ok());
  StopReport rep = set.stop(2s);
  CHECK(rep.clean);
  CHECK(finished.load() == 2);
  CHECK(rep.took < 1s);
}

TEST_CASE("A stop_node task failure stops the node", "[runtime][shutdown]") {
  LogCapture logs;
  ShardSet set(small_set(2));
  REQUIRE(set.start([&](Reactor& r) {
               if (r.shard_id() == 1) {
                 REQUIRE(r.after(
                              "ledger-check", 5ms, []() { return make_error(Errc::corruption, "ledger mismatch"); },
                              TaskOptions{TaskPolicy::stop_node})
                             .ok());
               }
             })
              .ok());
  auto reason = set.wait_for_stop_request(5s);
  REQUIRE(reason.has_value());
  CHECK(reason->find("ledger-check") != std::string::npos);
  CHECK(reason->find("ledger mismatch") != std::string::npos);
  auto rep = set.stop();
  CHECK(rep.clean);
  CHECK(logs.contains({"shard=1", "event=task_error", "task=ledger-check"}));
}

TEST_CASE("SIGTERM requests an orderly stop", "[runtime][signals]") {
  ShardSetOptions o = small_set(2);
  o.handle_signals = true;
  ShardSet set(o);
  std::atomic<bool> ready{false};
  REQUIRE(set.start([&](Reactor& r) {
               if (r.shard_id() == 0) ready = true;
             })
              .ok());
  while (!ready.load()) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(20ms);  // the loop is running with the signal watcher installed
  REQUIRE(::kill(::getpid(), SIGTERM) == 0);
  auto reason = set.wait_for_stop_request(5s);
  REQUIRE(reason.has_value());
  CHECK(reason->find("signal") != std::string::npos);
  CHECK(set.stop().clean);
}

TEST_CASE("Shard threads are named hs-shard-N", "[runtime]") {
  ShardSet set(small_set(2));
  std::vector<std::string> names(2);
  std::atomic<int> n{0};
  REQUIRE(set.start([&](Reactor& r) {
               char buf[32] = {};
               pthread_getname_np(pthread_self(), buf, sizeof buf);
               names[static_cast<std::size_t>(r.shard_id())] = buf;
               ++n;
             })
              .ok());
  while (n.load() < 2) std::this_thread::sleep_for(1ms);
  set.stop();
  CHECK(names[0] == "hs-shard-0");
  CHECK(names[1] == "hs-shard-1");
}

TEST_CASE("Turn-end hooks run once per loop turn and can be removed, even from inside a hook", "[runtime]") {
  Reactor r;
  int a = 0, b = 0, turns = 0;
  std::uint64_t id_b = 0;
  const std::uint64_t id_a = r.on_turn_end([&]() {
    ++a;
    if (a == 3) r.remove_turn_end(id_b);  // removal during iteration: b is skipped from now on
  });
  id_b = r.on_turn_end([&]() { ++b; });
  CHECK(r.turn_end_hook_count() == 2);
  REQUIRE(r.every("tick", 1ms, [&]() {
             if (++turns == 5) r.begin_shutdown(1s);
             return ok_status();
           }).ok());
  r.run();
  CHECK(a >= 5);
  CHECK(b == 2);  // ran in the two turns before a's third run removed it
  CHECK(r.turn_end_hook_count() == 1);
  r.remove_turn_end(id_a);
  CHECK(r.turn_end_hook_count() == 0);
}

TEST_CASE("ShardSet::call runs a function on a shard and waits for it; a call that cannot run times out",
          "[runtime][shard]") {
  ShardSet set(small_set(2));
  REQUIRE(set.start().ok());
  int seen_shard = -1;  // written on shard 1, read here after call() returned (ordered by its lock)
  REQUIRE(set.call(
                 1, [&](Reactor& r) { seen_shard = r.shard_id(); }, 5s)
              .ok());
  CHECK(seen_shard == 1);
  CHECK(set.call(
               7, [](Reactor&) {}, 1s)
            .code() == Errc::invalid_argument);
  // Shard 0 is busy in a function that waits for the caller's timeout to pass: the second call
  // times out and its function never runs afterwards.
  bool ran = false;
  std::atomic<bool> release{false};
  REQUIRE(set.post(0,
                   [&](Reactor&) {
                     while (!release.load()) std::this_thread::sleep_for(1ms);
                   })
              .ok());
  CHECK(set.call(
               0, [&](Reactor&) { ran = true; }, 50ms)
            .code() == Errc::timeout);
  release = true;
  REQUIRE(set.call(
                 0, [](Reactor&) {}, 5s)
              .ok());  // the abandoned call was drained before this one
  CHECK_FALSE(ran);
  set.stop();
}
