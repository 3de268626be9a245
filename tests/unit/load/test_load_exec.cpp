// The runner API and the worker-side LoadExecutor, in process: workflows run on chosen shards of a
// 3-shard ShardSet against the built-in target (its own shard), plus the exact stats encoding.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <functional>
#include <optional>
#include <random>
#include <thread>

#include "hyperscale/host/load_executor.hpp"
#include "hyperscale/load/plan.hpp"
#include "hyperscale/load/runner.hpp"
#include "hyperscale/load/schedule.hpp"
#include "hyperscale/load/stats_codec.hpp"
#include "hyperscale/load/target.hpp"
#include "hyperscale/runtime/shard_set.hpp"
#include "target_fixture.hpp"

using namespace hs;
using namespace hs::load;
using namespace hs::load::testing;
using hs::host::LoadExecutor;
using hs::host::LoadExecutorOptions;

namespace {

// ---------------------------------------------------------------- stats encoding helpers

void require_same(const Counts& a, const Counts& b) {
  REQUIRE(a.executed == b.executed);
  REQUIRE(a.ok == b.ok);
  REQUIRE(a.failed == b.failed);
  REQUIRE(a.reasons == b.reasons);
}

void require_same(const WorkflowStats& a, const WorkflowStats& b) {
  REQUIRE(a.name == b.name);
  REQUIRE(a.outcome == b.outcome);
  REQUIRE(a.note == b.note);
  REQUIRE(a.started == b.started);
  REQUIRE(a.completed == b.completed);
  REQUIRE(a.dropped == b.dropped);
  REQUIRE(a.interrupted == b.interrupted);
  REQUIRE(a.iterations_failed == b.iterations_failed);
  REQUIRE(a.elapsed == b.elapsed);
  REQUIRE(a.measured == b.measured);
  REQUIRE(a.steps.size() == b.steps.size());
  for (std::size_t i = 0; i < a.steps.size(); ++i) {
    const StepStats& x = a.steps[i];
    const StepStats& y = b.steps[i];
    REQUIRE(x.name == y.name);
    require_same(x.total, y.total);
    require_same(x.measured, y.measured);
    REQUIRE(x.skipped == y.skipped);
    REQUIRE(x.latency == y.latency);  // bucket for bucket, count, sum, min, max
    REQUIRE(x.series.size() == y.series.size());
    for (std::size_t k = 0; k < x.series.size(); ++k) {
      REQUIRE(x.series[k].executed == y.series[k].executed);
      REQUIRE(x.series[k].failed == y.series[k].failed);
    }
  }
}

WorkflowStats synthetic(std::uint64_t seed, std::size_t requests) {
  std::mt19937_64 rng(seed);
  WorkflowStats s;
  s.name = "checkout";
  s.outcome = WorkflowOutcome::completed;
  s.note = "";
  s.started = requests + 3;
  s.completed = requests;
  s.dropped = seed % 7;
  s.interrupted = 3;
  s.iterations_failed = requests / 10;
  s.elapsed = std::chrono::milliseconds(12'345 + seed);
  s.measured = std::chrono::milliseconds(10'000 + seed);
  s.steps.resize(3);
  const char* names[] = {"login", "browse", "buy"};
  for (std::size_t i = 0; i < 3; ++i) {
    s.steps[i].name = names[i];
    s.steps[i].skipped = seed + i;
    for (std::size_t k = 0; k < requests; ++k) {
      const bool ok = rng() % 10 != 0;
      const auto why = static_cast<FailReason>(rng() % static_cast<int>(FailReason::kCount));
      // Latencies over the whole range: exact small values, log-linear buckets, the clamp.
      const std::uint64_t lat = k % 97 == 0 ? (std::uint64_t{1} << 50) : (rng() >> (rng() % 60));
      s.steps[i].record(ok, why, lat, k % 5 != 0, static_cast<std::size_t>(k / 50));
    }
  }
  return s;
}

// ---------------------------------------------------------------- a target and a control shard
// (the target: target_fixture.hpp)

worker::Bytes bytes_of(const std::string& s) { return worker::Bytes(s.begin(), s.end()); }
// ExecSpec's strings are set with `= std::string("...")`: `= "..."` trips a g++ 12 -O3 -Wrestrict false
// positive (memcpy of 2^63 bytes) in the release build.

// Everything a test observes, written on shard 0 only (or in per-shard slots) and read by the test
// thread after the set has stopped (the join orders it).
struct Observed {
  std::map<std::uint64_t, worker::ExecResult> done;
  std::map<std::uint64_t, std::vector<worker::ExecProgress>> progress;
  std::map<std::uint64_t, Instant> done_at;
  std::vector<std::string> errors;
  std::vector<long> run_states{-1, -1, -1};
  int replies = 0;
  std::size_t free_after = 0;
};

// A 3-shard worker: shard 0 is the control shard and hosts the executor over shards {0, 1, 2}.
struct Worker {
  runtime::ShardSet set{[] {
    runtime::ShardSetOptions o;
    o.shards = 3;
    o.pin = false;
    return o;
  }()};
  Observed obs;
  std::unique_ptr<LoadExecutor> ex;
  runtime::Reactor* r0 = nullptr;

  // Runs `body` on shard 0 once the executor exists.
  void run(std::function<void(Worker&)> body, LoadExecutorOptions opts = {}) {
    REQUIRE(set.start([this, body, opts](runtime::Reactor& r) {
                 if (r.shard_id() != 0) return;
                 r0 = &r;
                 ex = std::make_unique<LoadExecutor>(
                     r, std::vector<int>{0, 1, 2},
                     [this](std::uint64_t e, worker::ExecProgress p) { obs.progress[e].push_back(p); },
                     [this, &r](std::uint64_t e, worker::ExecResult res) {
                       obs.done_at[e] = r.clock().now();
                       obs.done[e] = std::move(res);
                       if (on_done) on_done(e);
                     },
                     opts);
                 r.on_shutdown("test-executor", [this](std::function<void()> done) {
                   ex.reset();
                   done();
                 });
                 body(*this);
               })
                .ok());
    const auto reason = set.wait_for_stop_request(std::chrono::seconds(60));
    set.stop();
    REQUIRE(reason.has_value());
  }
  std::function<void(std::uint64_t)> on_done;

  // On shard 0: after a short pause (the shards free a finished run right after reporting it), asks
  // every shard how many runs it still holds state for, then stops the set.
  void check_and_stop() {
    obs.free_after = ex->free_cores();
    auto t = r0->after("test-check", std::chrono::milliseconds(100), [this]() {
      for (int s = 0; s < 3; ++s) {
        Status st = r0->send(s, runtime::Message([this, s](runtime::Reactor& rs) {
                               const long n = static_cast<long>(shard_run_states());
                               Status back = rs.send(0, runtime::Message([this, s, n](runtime::Reactor& rr) {
                                                       obs.run_states[static_cast<std::size_t>(s)] = n;
                                                       if (++obs.replies == 3) rr.request_node_stop("checked");
                                                     }));
                               if (!back.ok()) FAIL(back.to_string());
                             }));
        if (!st.ok()) FAIL(st.to_string());
      }
      return ok_status();
    });
    if (!t.ok()) FAIL(t.status().to_string());
  }
};

}  // namespace

// ---------------------------------------------------------------- stats encoding

TEST_CASE("stats codec: decode(encode(x)) == x exactly, and decoded merges equal in-process merges", "[load][codec]") {
  const WorkflowStats a = synthetic(1, 2000), b = synthetic(2, 1500), c = synthetic(3, 10);
  for (const auto* x : {&a, &b, &c}) {
    auto d = decode_stats(encode_stats(*x));
    INFO(d.status().to_string());
    REQUIRE(d.ok());
    require_same(*d, *x);
  }
  WorkflowStats in_process = a;
  in_process.merge(b);
  in_process.merge(c);
  WorkflowStats decoded = *decode_stats(encode_stats(a));
  decoded.merge(*decode_stats(encode_stats(b)));
  decoded.merge(*decode_stats(encode_stats(c)));
  require_same(decoded, in_process);
  // The merged stats survive another round trip (what a manager forwards to a gate).
  require_same(*decode_stats(encode_stats(in_process)), in_process);
  // Empty stats too.
  WorkflowStats empty;
  require_same(*decode_stats(encode_stats(empty)), empty);
}

TEST_CASE("stats codec: bad input is a clear error, never a crash", "[load][codec]") {
  const auto good = encode_stats(synthetic(7, 300));
  SECTION("every truncation") {
    for (std::size_t n = 0; n < good.size(); ++n) {
      auto d = decode_stats(good.data(), n);
      INFO("prefix " << n);
      REQUIRE_FALSE(d.ok());
      REQUIRE(d.status().code() == Errc::invalid_argument);
    }
  }
  SECTION("magic, version, trailing bytes") {
    auto bad = good;
    bad[0] = 'X';
    REQUIRE(decode_stats(bad).status().message().find("bad magic") != std::string::npos);
    bad = good;
    bad[4] = 99;
    REQUIRE(decode_stats(bad).status().message().find("unsupported version 99") != std::string::npos);
    bad = good;
    bad.push_back(0);
    REQUIRE(decode_stats(bad).status().message().find("trailing") != std::string::npos);
  }
  SECTION("inconsistent counts") {
    WorkflowStats s;
    s.name = "w";
    s.steps.resize(1);
    s.steps[0].name = "s";
    s.steps[0].record(true, FailReason::reset, 1000, true, 0);
    auto enc = encode_stats(s);
    // Header (5), name "w" (2), outcome (1), note "" (1), 5 counters (1 each), 2 durations (0: 1 each),
    // step count (1), step name "s" (2); then the total counts: executed=1, ok=1, failed=0.
    const std::size_t p = 5 + 2 + 1 + 1 + 5 + 2 + 1 + 2;  // -> total.executed
    REQUIRE(enc[p] == 1);
    enc[p] = 2;  // executed 2 but ok 1, failed 0
    REQUIRE(decode_stats(enc).status().message().find("ok + failed != executed") != std::string::npos);
  }
  SECTION("random garbage and random corruption") {
    std::mt19937_64 rng(42);
    int decoded_ok = 0;
    for (int i = 0; i < 3000; ++i) {
      std::vector<std::uint8_t> buf;
      if (i % 2 == 0) {
        buf.resize(rng() % 200);
        for (auto& x : buf) x = static_cast<std::uint8_t>(rng());
        if (buf.size() >= 5 && i % 4 == 0) std::memcpy(buf.data(), "HSWS\x01", 5);
      } else {
        buf = good;
        for (int k = 0; k < 3; ++k) buf[rng() % buf.size()] = static_cast<std::uint8_t>(rng());
      }
      auto d = decode_stats(buf);
      if (d.ok()) {
        ++decoded_ok;  // a corruption can still be a valid encoding; it must then round-trip
        require_same(*decode_stats(encode_stats(*d)), *d);
      } else {
        REQUIRE_FALSE(d.status().message().empty());
      }
    }
    (void)decoded_ok;
  }
  SECTION("oversized counts are refused before allocating") {
    std::vector<std::uint8_t> b = {'H', 'S', 'W', 'S', 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0};
    // step count 2^40 as a varint
    for (int k = 0; k < 5; ++k) b.push_back(0x80);
    b.push_back(0x20);
    REQUIRE(decode_stats(b).status().message().find("step count") != std::string::npos);
  }
}

// ---------------------------------------------------------------- LoadExecutor

TEST_CASE("executor: two workflows run concurrently on disjoint shards with exact counts", "[load][exec]") {
  TargetProc t;
  const std::string plan = fmt::format(R"(version = 1
[[workflow]]
name = "a"
vus = 2
iterations = 300
duration = "60s"
[[workflow.step]]
name = "get"
url = "http://127.0.0.1:{0}/"
expect = {{ body_contains = "ok" }}

[[workflow]]
name = "b"
vus = 4
iterations = 500
duration = "60s"
[[workflow.step]]
name = "echo"
method = "POST"
url = "http://127.0.0.1:{0}/echo"
body = "vu=${{vu}}"
expect = {{ body_contains = "vu=" }}
)",
                                       t.http);
  Worker w;
  std::size_t free_while_running = 99;
  w.on_done = [&w](std::uint64_t) {
    if (w.obs.done.size() == 2) w.check_and_stop();
  };
  w.run([&](Worker& self) {
    worker::ExecSpec a;
    a.job_id = std::string("job-1");
    a.workflow = std::string("a");
    a.plan = bytes_of(plan);
    a.cores = 1;
    a.vus = 0;  // the file's
    worker::ExecSpec b = a;
    b.workflow = std::string("b");
    b.cores = 2;
    Status sa = self.ex->start(1, a);
    Status sb = self.ex->start(2, b);
    if (!sa.ok()) self.obs.errors.push_back(sa.to_string());
    if (!sb.ok()) self.obs.errors.push_back(sb.to_string());
    free_while_running = self.ex->free_cores();
    if (!sa.ok() || !sb.ok()) self.r0->request_node_stop("start failed");
  });
  const auto& c = t.stop();
  INFO(fmt::format("{}", fmt::join(w.obs.errors, "; ")));
  REQUIRE(w.obs.errors.empty());
  REQUIRE(free_while_running == 0);  // both live at once on {0} and {1, 2}
  REQUIRE(w.obs.done.size() == 2);
  const std::pair<std::uint64_t, std::uint64_t> want[] = {{1, 300}, {2, 500}};
  for (auto [e, n] : want) {
    const auto& res = w.obs.done.at(e);
    REQUIRE(res.outcome == worker::ExecOutcome::completed);
    REQUIRE(res.completed == n);
    REQUIRE(res.failed == 0);
    REQUIRE(res.error.empty());
    auto s = decode_stats(res.stats);
    INFO(s.status().to_string());
    REQUIRE(s.ok());
    REQUIRE(s->outcome == WorkflowOutcome::completed);
    REQUIRE(s->completed == n);
    REQUIRE(s->steps.size() == 1);
    REQUIRE(s->steps[0].measured.executed == n);
    REQUIRE(s->steps[0].measured.ok == n);
    REQUIRE(s->steps[0].latency.count() == n);
  }
  REQUIRE(c.http_requests == 800);
  REQUIRE(w.obs.free_after == 3);
  REQUIRE(w.obs.run_states == std::vector<long>{0, 0, 0});  // per-run state freed on every shard
}

TEST_CASE("executor: cancel mid-run ends quickly as cancelled and frees the cores", "[load][exec]") {
  TargetProc t;
  const std::string plan = fmt::format(R"(version = 1
[[workflow]]
name = "long"
vus = 4
duration = "30s"
[[workflow.step]]
name = "get"
url = "http://127.0.0.1:{0}/"

[[workflow]]
name = "short"
vus = 3
iterations = 30
[[workflow.step]]
name = "get"
url = "http://127.0.0.1:{0}/"
)",
                                       t.http);
  Worker w;
  Instant cancelled_at{0};
  bool restarted = false;
  w.on_done = [&](std::uint64_t e) {
    if (e == 7) {
      // The cores are back: all three run the next execution.
      worker::ExecSpec s;
      s.workflow = std::string("short");
      s.plan = bytes_of(plan);
      s.cores = 3;
      Status st = w.ex->start(8, s);
      restarted = st.ok();
      if (!st.ok()) {
        w.obs.errors.push_back(st.to_string());
        w.check_and_stop();
      }
      return;
    }
    w.check_and_stop();
  };
  w.run([&](Worker& self) {
    worker::ExecSpec s;
    s.job_id = std::string("job-2");
    s.workflow = std::string("long");
    s.plan = bytes_of(plan);
    s.cores = 2;
    Status st = self.ex->start(7, s);
    if (!st.ok()) {
      self.obs.errors.push_back(st.to_string());
      self.r0->request_node_stop("start failed");
      return;
    }
    auto task = self.r0->after("test-cancel", std::chrono::milliseconds(1500), [&self, &cancelled_at]() {
      cancelled_at = self.r0->clock().now();
      self.ex->cancel(7);
      return ok_status();
    });
    if (!task.ok()) FAIL(task.status().to_string());
  });
  t.stop();
  INFO(fmt::format("{}", fmt::join(w.obs.errors, "; ")));
  REQUIRE(w.obs.errors.empty());
  REQUIRE(restarted);
  const auto& res = w.obs.done.at(7);
  REQUIRE(res.outcome == worker::ExecOutcome::cancelled);
  REQUIRE(res.completed > 0);
  const auto took = w.obs.done_at.at(7) - cancelled_at;
  INFO("cancel took " << to_millis(took) << " ms");
  REQUIRE(took < std::chrono::seconds(2));
  auto s = decode_stats(res.stats);
  REQUIRE(s.ok());
  REQUIRE(s->outcome == WorkflowOutcome::interrupted);
  REQUIRE(s->elapsed < std::chrono::seconds(5));
  // Progress came about once a second, cumulative.
  REQUIRE_FALSE(w.obs.progress[7].empty());
  REQUIRE(w.obs.progress[7].back().completed > 0);
  REQUIRE(w.obs.progress[7].back().completed <= res.completed);
  REQUIRE(w.obs.done.at(8).outcome == worker::ExecOutcome::completed);
  REQUIRE(w.obs.done.at(8).completed == 30);
  REQUIRE(w.obs.free_after == 3);
  REQUIRE(w.obs.run_states == std::vector<long>{0, 0, 0});
}

TEST_CASE("executor: cancel abandons iterations still in flight after the grace", "[load][exec]") {
  TargetProc t;
  const std::string plan = fmt::format(R"(version = 1
[[workflow]]
name = "slow"
vus = 4
duration = "30s"
[[workflow.step]]
name = "wait"
url = "http://127.0.0.1:{0}/delay/10000"
timeout = "20s"
)",
                                       t.http);
  Worker w;
  Instant cancelled_at{0};
  w.on_done = [&w](std::uint64_t) { w.check_and_stop(); };
  LoadExecutorOptions o;
  o.cancel_grace = std::chrono::milliseconds(300);
  w.run(
      [&](Worker& self) {
        worker::ExecSpec s;
        s.workflow = std::string("slow");
        s.plan = bytes_of(plan);
        s.cores = 2;
        Status st = self.ex->start(3, s);
        if (!st.ok()) {
          self.obs.errors.push_back(st.to_string());
          self.r0->request_node_stop("start failed");
          return;
        }
        auto task = self.r0->after("test-cancel", std::chrono::milliseconds(500), [&self, &cancelled_at]() {
          cancelled_at = self.r0->clock().now();
          self.ex->cancel(3);
          return ok_status();
        });
        if (!task.ok()) FAIL(task.status().to_string());
      },
      o);
  t.stop();
  REQUIRE(w.obs.errors.empty());
  const auto& res = w.obs.done.at(3);
  REQUIRE(res.outcome == worker::ExecOutcome::cancelled);
  const auto took = w.obs.done_at.at(3) - cancelled_at;
  INFO("cancel took " << to_millis(took) << " ms");
  REQUIRE(took >= std::chrono::milliseconds(250));
  REQUIRE(took < std::chrono::milliseconds(1500));
  auto s = decode_stats(res.stats);
  REQUIRE(s.ok());
  INFO("started=" << s->started << " completed=" << s->completed << " interrupted=" << s->interrupted
                  << " executed=" << s->steps[0].total.executed << " failed=" << s->steps[0].total.failed);
  REQUIRE(s->interrupted == 4);  // every VU was waiting on the slow target
  REQUIRE(s->completed == 0);
  REQUIRE(w.obs.run_states == std::vector<long>{0, 0, 0});
}

TEST_CASE("executor: bad requests are refused with a clear error and change nothing", "[load][exec]") {
  Worker w;
  std::vector<std::string> errs;
  std::size_t free_after = 0, live_after = 99;
  w.run([&](Worker& self) {
    auto try_start = [&](std::uint64_t e, const std::string& text, const std::string& wf, std::uint32_t cores) {
      worker::ExecSpec s;
      s.job_id = std::string("job-9");
      s.workflow = wf;
      s.plan = bytes_of(text);
      s.cores = cores;
      Status st = self.ex->start(e, s);
      errs.push_back(st.ok() ? "OK" : st.message());
    };
    const std::string good =
        "version = 1\n[[workflow]]\nname = \"w\"\nvus = 1\niterations = 1\n[[workflow.step]]\nname = "
        "\"s\"\nurl = \"http://127.0.0.1:9/\"\n";
    try_start(1, "version = 1\n[[workflow]]\nname = \n", "w", 1);       // TOML syntax error
    try_start(2, "version = 1\n[[workflow]]\nname = \"w\"\n", "w", 1);  // no steps: validation
    try_start(3, good, "nope", 1);                                      // unknown workflow
    try_start(4, good, "w", 0);                                         // no cores
    try_start(5, good, "w", 4);                                         // more than the pool
    try_start(6, std::string(5u << 20, '#'), "w", 1);                   // oversized plan text
    try_start(7, good.substr(0, 40) + "\xff\xfe", "w", 1);              // binary garbage
    free_after = self.ex->free_cores();
    live_after = self.ex->live();
    self.r0->request_node_stop("done");
  });
  REQUIRE(errs.size() == 7);
  for (const auto& e : errs) REQUIRE(e != "OK");
  REQUIRE(errs[0].find("job-9.toml:3") != std::string::npos);
  REQUIRE(errs[1].find("job-9.toml") != std::string::npos);
  REQUIRE(errs[2].find("no workflow named 'nope'") != std::string::npos);
  REQUIRE(errs[3].find("cores = 0") != std::string::npos);
  REQUIRE(errs[4].find("not enough free cores: 4 wanted, 3 free") != std::string::npos);
  REQUIRE(errs[5].find("exceeds the bound") != std::string::npos);
  REQUIRE(free_after == 3);
  REQUIRE(live_after == 0);
}

TEST_CASE("runner: a setup workflow publishes; a dependant sees it as context; a failed setup fails", "[load][exec]") {
  TargetProc t;
  const std::string plan = fmt::format(R"(version = 1
[[workflow]]
name = "login"
kind = "setup"
provide = {{ token = "${{steps.auth.token}}" }}
[[workflow.step]]
name = "auth"
url = "http://127.0.0.1:{0}/json"
extract = {{ token = {{ from = "json", path = "/token" }} }}

[[workflow]]
name = "use"
depends_on = ["login"]
vus = 2
iterations = 20
[[workflow.step]]
name = "echo"
method = "POST"
url = "http://127.0.0.1:{0}/echo"
body = "token=${{ctx.login.token}}"
expect = {{ body_contains = "token=" }}

[[workflow]]
name = "broken"
kind = "setup"
[[workflow.step]]
name = "nope"
url = "http://127.0.0.1:{0}/status/500"
)",
                                       t.http);
  Worker w;
  w.on_done = [&](std::uint64_t e) {
    if (e == 1) {
      worker::ExecSpec s;
      s.workflow = std::string("use");
      s.plan = bytes_of(plan);
      s.cores = 2;
      for (const auto& [k, v] : w.obs.done.at(1).published)
        s.context.emplace_back("login." + k, v);  // as the manager does
      Status st = w.ex->start(2, s);
      if (!st.ok()) {
        w.obs.errors.push_back(st.to_string());
        w.check_and_stop();
      }
      return;
    }
    if (w.obs.done.size() == 3) w.check_and_stop();
  };
  w.run([&](Worker& self) {
    worker::ExecSpec s;
    s.workflow = std::string("login");
    s.plan = bytes_of(plan);
    s.cores = 1;
    Status st = self.ex->start(1, s);
    s.workflow = std::string("broken");
    Status st2 = self.ex->start(3, s);
    if (!st.ok() || !st2.ok()) {
      self.obs.errors.push_back(st.to_string() + " / " + st2.to_string());
      self.r0->request_node_stop("start failed");
    }
  });
  t.stop();
  INFO(fmt::format("{}", fmt::join(w.obs.errors, "; ")));
  REQUIRE(w.obs.errors.empty());
  const auto& login = w.obs.done.at(1);
  REQUIRE(login.outcome == worker::ExecOutcome::completed);
  REQUIRE(login.published.size() == 1);
  REQUIRE(login.published[0].first == "token");  // bare: the manager adds "login."
  REQUIRE_FALSE(login.published[0].second.empty());
  const auto& use = w.obs.done.at(2);
  REQUIRE(use.outcome == worker::ExecOutcome::completed);
  REQUIRE(use.completed == 20);
  REQUIRE(use.failed == 0);
  const auto& broken = w.obs.done.at(3);
  REQUIRE(broken.outcome == worker::ExecOutcome::failed);
  REQUIRE(broken.error == "a setup step failed");
  REQUIRE(broken.failed == 1);
  REQUIRE(w.obs.run_states == std::vector<long>{0, 0, 0});
}

// ---------------------------------------------------------------- Runner

TEST_CASE("runner: shard lists are checked; runs may share shards; a destroyed Runner frees everything",
          "[load][runner]") {
  TargetProc t;
  auto parsed = load_plan_text(fmt::format(R"(version = 1
[[workflow]]
name = "w"
vus = 2
iterations = 200
[[workflow.step]]
name = "get"
url = "http://127.0.0.1:{0}/"

[[workflow]]
name = "forever"
vus = 2
duration = "60s"
[[workflow.step]]
name = "get"
url = "http://127.0.0.1:{0}/"
)",
                                           t.http),
                               "r.toml", false, process_env());
  REQUIRE(parsed.ok());
  auto plan = std::make_shared<const Plan>(std::move(parsed).value());
  auto w = prepare_workflow(plan, "w");
  auto forever = prepare_workflow(plan, "forever");
  REQUIRE(w.ok());
  REQUIRE(forever.ok());
  REQUIRE_FALSE(prepare_workflow(plan, "nope").ok());

  runtime::ShardSet set([] {
    runtime::ShardSetOptions o;
    o.shards = 3;
    o.pin = false;
    return o;
  }());
  // Written on shard 0 (or per-shard slots), read after stop().
  std::vector<std::string> errors;
  std::vector<WorkflowResult> results;
  std::uint64_t sampled_completed = 0;
  bool sampled = false, orphan_called = false, checking = false;
  std::size_t sampled_steps = 0;
  RunId forever_id = 0;
  std::vector<long> states{-1, -1, -1};
  int replies = 0;
  std::unique_ptr<Runner> runner, doomed;
  runtime::Reactor* r0 = nullptr;

  auto check_and_stop = [&]() {
    auto task = r0->after("test-check", std::chrono::milliseconds(200), [&]() {
      for (int s = 0; s < 3; ++s) {
        Status st = r0->send(s, runtime::Message([&states, &replies, s](runtime::Reactor& rs) {
                               const long n = static_cast<long>(shard_run_states());
                               Status back =
                                   rs.send(0, runtime::Message([&states, &replies, s, n](runtime::Reactor& rr) {
                                             states[static_cast<std::size_t>(s)] = n;
                                             if (++replies == 3) rr.request_node_stop("checked");
                                           }));
                               if (!back.ok()) FAIL(back.to_string());
                             }));
        if (!st.ok()) FAIL(st.to_string());
      }
      return ok_status();
    });
    if (!task.ok()) FAIL(task.status().to_string());
  };

  REQUIRE(set.start([&](runtime::Reactor& r) {
               if (r.shard_id() != 0) return;
               r0 = &r;
               runner = std::make_unique<Runner>(r);
               doomed = std::make_unique<Runner>(r);
               r.on_shutdown("test-runner", [&](std::function<void()> done) {
                 runner.reset();
                 doomed.reset();
                 done();
               });
               for (const auto& bad : std::vector<std::vector<int>>{{}, {3}, {-1}, {1, 1}}) {
                 auto id = runner->start({*w, bad, {}}, {});
                 errors.push_back(id.ok() ? "OK" : id.status().message());
               }
               // A run on the doomed Runner that would go on for a minute, on shards 1 and 2 (sampled after 1.2 s:
               // the shards send live deltas every 500 ms).
               RunCallbacks orphan;
               orphan.on_done = [&](WorkflowResult) { orphan_called = true; };
               auto f = doomed->start({*forever, {1, 2}, {}}, std::move(orphan));
               if (!f.ok()) errors.push_back(f.status().to_string());
               // Two runs over the same shards {0, 1, 2} and {1, 2}.
               if (f.ok()) forever_id = *f;
               // Checks per-shard state once both runs are done and the doomed Runner is gone.
               auto maybe_check = [&]() {
                 if (results.size() == 2 && !doomed && !checking) {
                   checking = true;
                   check_and_stop();
                 }
               };
               RunCallbacks cb;
               cb.on_done = [&, maybe_check](WorkflowResult res) {
                 results.push_back(std::move(res));
                 maybe_check();
               };
               auto a = runner->start({*w, {0, 1, 2}, {}}, cb);
               auto b = runner->start({*w, {2, 1}, {}}, cb);
               if (!a.ok() || !b.ok()) {
                 errors.push_back("start failed");
                 r.request_node_stop("failed");
                 return;
               }
               auto task = r.after("test-sample-and-destroy", std::chrono::milliseconds(1200), [&, maybe_check]() {
                 WorkflowLive live;
                 sampled = doomed->sample(forever_id, live);
                 sampled_completed = live.completed;
                 sampled_steps = live.steps.size();
                 doomed.reset();  // cancels its run at once; its callback must not run
                 maybe_check();
                 return ok_status();
               });
               if (!task.ok()) FAIL(task.status().to_string());
             })
              .ok());
  const auto reason = set.wait_for_stop_request(std::chrono::seconds(60));
  set.stop();
  const auto& c = t.stop();
  REQUIRE(reason.has_value());
  REQUIRE(errors.size() == 4);
  REQUIRE(errors[0].find("no shards") != std::string::npos);
  REQUIRE(errors[1].find("shard 3 is not in this set of 3") != std::string::npos);
  REQUIRE(errors[2].find("shard -1 is not in this set") != std::string::npos);
  REQUIRE(errors[3].find("listed twice") != std::string::npos);
  REQUIRE(results.size() == 2);
  for (const auto& res : results) {
    REQUIRE(res.end == RunEnd::completed);
    REQUIRE(res.stats.completed == 200);
    REQUIRE(res.stats.steps[0].measured.ok == 200);
  }
  REQUIRE(sampled);
  REQUIRE(sampled_completed > 0);
  REQUIRE(sampled_steps == 1);
  REQUIRE_FALSE(orphan_called);
  REQUIRE(c.http_requests >= 400);  // + what the cancelled run did
  REQUIRE(states == std::vector<long>{0, 0, 0});
}

// With vus_from_spec, ExecSpec.vus is the whole workflow's VUs: on the whole workflow it replaces the
// file's `vus`; on a part (shard_first/shard_total) the part takes its share of it.
TEST_CASE("executor: with vus_from_spec, ExecSpec.vus replaces the file's VUs; a part takes its share",
          "[load][exec][parts]") {
  struct Case {
    const char* name;
    std::uint32_t vus, shard_first, shard_total;
    std::uint64_t started;
  };
  // A part of global shards [1, 3) of 3 with 9 VUs: 3 per global shard, 6 on this part.
  for (const Case& k : {Case{"whole workflow", 2, 0, 0, 2}, Case{"part [1, 3) of 3", 9, 1, 3, 6}}) {
    DYNAMIC_SECTION(k.name) {
      TargetProc t;
      // Each iteration outlasts the duration, so every VU starts exactly one.
      const std::string plan = fmt::format(R"(version = 1
[[workflow]]
name = "w"
vus = 5
duration = "300ms"
[[workflow.step]]
name = "wait"
url = "http://127.0.0.1:{0}/delay/600"
)",
                                           t.http);
      Worker w;
      w.on_done = [&w](std::uint64_t) { w.check_and_stop(); };
      LoadExecutorOptions o;
      o.vus_from_spec = true;
      w.run(
          [&](Worker& self) {
            worker::ExecSpec s;
            s.workflow = std::string("w");
            s.plan = bytes_of(plan);
            s.cores = 2;
            s.vus = k.vus;
            s.shard_first = k.shard_first;
            s.shard_total = k.shard_total;
            Status st = self.ex->start(1, s);
            if (!st.ok()) {
              self.obs.errors.push_back(st.to_string());
              self.r0->request_node_stop("start failed");
            }
          },
          o);
      t.stop();
      REQUIRE(w.obs.errors.empty());
      const auto& res = w.obs.done.at(1);
      REQUIRE(res.outcome == worker::ExecOutcome::completed);
      auto s = decode_stats(res.stats);
      REQUIRE(s.ok());
      REQUIRE(s->started == k.started);
      REQUIRE(s->completed == k.started);
      REQUIRE(res.completed == k.started);
    }
  }
}

// ---------------------------------------------------------------- parts: one workflow over several workers

namespace {
// Runs of parts on a Runner on shard 0 of a 3-shard set: `make` (on shard 0) returns the specs to
// start, after trying anything else it wants first. Each run's result and when it ended, or start
// errors; it returns once every run is done (or 60 s passed).
struct PartRuns {
  std::vector<std::optional<WorkflowResult>> results;
  std::vector<Instant> done_at;
  std::vector<std::string> errors;
  bool all_done = false;
};
// `on_progress` (optional): every progress of run k, on shard 0.
PartRuns run_on_three_shards(const std::function<std::vector<RunSpec>(runtime::Reactor&, Runner&)>& make,
                             const std::function<void(std::size_t, const WorkflowLive&)>& on_progress = nullptr) {
  runtime::ShardSet set([] {
    runtime::ShardSetOptions o;
    o.shards = 3;
    o.pin = false;
    return o;
  }());
  PartRuns out;
  std::unique_ptr<Runner> runner;
  const bool started =
      set.start([&](runtime::Reactor& r) {
           if (r.shard_id() != 0) return;
           runner = std::make_unique<Runner>(r);
           r.on_shutdown("test-runner", [&](std::function<void()> done) {
             runner.reset();
             done();
           });
           std::vector<RunSpec> specs = make(r, *runner);
           out.results.resize(specs.size());
           out.done_at.resize(specs.size());
           runtime::Reactor* rp = &r;
           for (std::size_t k = 0; k < specs.size(); ++k) {
             RunCallbacks cb;
             if (on_progress) cb.on_progress = [&on_progress, k](const WorkflowLive& l) { on_progress(k, l); };
             cb.on_done = [&out, rp, k](WorkflowResult res) {
               out.done_at[k] = rp->clock().now();
               out.results[k] = std::move(res);
               if (std::all_of(out.results.begin(), out.results.end(), [](const auto& x) { return x.has_value(); }))
                 rp->request_node_stop("runs done");
             };
             auto id = runner->start(std::move(specs[k]), std::move(cb));
             if (!id.ok()) {
               out.errors.push_back(id.status().to_string());
               r.request_node_stop("start failed");
             }
           }
         })
          .ok();
  if (started) out.all_done = set.wait_for_stop_request(std::chrono::seconds(60)).has_value();
  set.stop();
  return out;
}
}  // namespace

TEST_CASE("runner: a workflow run as 3 parts (1, 2, 3 of 6 global shards) does exactly its iterations",
          "[load][runner][parts]") {
  TargetProc t;
  auto parsed = load_plan_text(fmt::format(R"(version = 1
[[workflow]]
name = "closed"
vus = 6
iterations = 30
duration = "60s"
[[workflow.step]]
name = "get"
url = "http://127.0.0.1:{0}/"
expect = {{ body_contains = "ok" }}

[[workflow]]
name = "open"
executor = "constant-arrival-rate"
rate = 300
max_vus = 60
iterations = 30
duration = "60s"
[[workflow.step]]
name = "get"
url = "http://127.0.0.1:{0}/"

[[workflow]]
name = "once"
kind = "setup"
[[workflow.step]]
name = "get"
url = "http://127.0.0.1:{0}/"
)",
                                           t.http),
                               "p.toml", false, process_env());
  REQUIRE(parsed.ok());
  auto plan = std::make_shared<const Plan>(std::move(parsed).value());
  auto closed = prepare_workflow(plan, "closed");
  auto open = prepare_workflow(plan, "open");
  auto once = prepare_workflow(plan, "once");
  REQUIRE(closed.ok());
  REQUIRE(open.ok());
  REQUIRE(once.ok());

  // Parts may share shards (each shard keeps per-run state): the parts of 1, 2 and 3 shards run on
  // {0}, {1, 2} and {0, 1, 2} of this 3-shard set.
  struct Part {
    std::vector<int> shards;
    RunPart part;
  };
  const std::vector<Part> parts{{{0}, {0, 6}}, {{1, 2}, {1, 6}}, {{0, 1, 2}, {3, 6}}};
  std::vector<std::string> errors;  // written on shard 0, read after the runs
  std::size_t live_after_bad = 99;
  const PartRuns runs = run_on_three_shards([&](runtime::Reactor&, Runner& runner) {
    // Bad parts: refused, nothing started.
    const std::vector<RunSpec> bad{
        {*closed, {0}, {}, RunPart{0, 0}},
        {*closed, {1, 2}, {}, RunPart{5, 6}},
        {*closed, {0}, {}, RunPart{0, kMaxGlobalShards + 1}},
        {*once, {0}, {}, RunPart{1, 3}},
    };
    for (const auto& spec : bad) {
      auto id = runner.start(spec, {});
      errors.push_back(id.ok() ? "OK" : id.status().message());
    }
    live_after_bad = runner.live();
    std::vector<RunSpec> specs;  // closed's parts, then open's
    for (const auto* wf : {&*closed, &*open})
      for (const auto& p : parts) specs.push_back({*wf, p.shards, {}, p.part});
    return specs;
  });
  const auto& c = t.stop();
  REQUIRE(runs.all_done);
  errors.insert(errors.end(), runs.errors.begin(), runs.errors.end());
  INFO(fmt::format("{}", fmt::join(errors, "; ")));
  REQUIRE(errors.size() == 4);
  REQUIRE(errors[0].find("0 shards in total") != std::string::npos);
  REQUIRE(errors[1].find("part [5, 7) is beyond the workflow's 6 shards") != std::string::npos);
  REQUIRE(errors[2].find("at most") != std::string::npos);
  REQUIRE(errors[3].find("setup workflow 'once' runs as one part") != std::string::npos);
  REQUIRE(live_after_bad == 0);
  // Global shards get 5 iterations each: the parts do 5, 10 and 15, 30 in all, as one run on 6 shards.
  const std::uint64_t want[] = {5, 10, 15};
  std::uint64_t closed_sum = 0, open_started = 0;
  for (std::size_t k = 0; k < parts.size(); ++k) {
    CAPTURE(k);
    const WorkflowResult& a = *runs.results.at(k);
    REQUIRE(a.end == RunEnd::completed);
    REQUIRE(a.stats.started == want[k]);
    REQUIRE(a.stats.completed == want[k]);
    REQUIRE(a.stats.steps[0].measured.ok == want[k]);
    closed_sum += a.stats.completed;
    const WorkflowResult& b = *runs.results.at(parts.size() + k);
    REQUIRE(b.end == RunEnd::completed);
    REQUIRE(b.stats.started + b.stats.dropped == want[k]);  // its arrivals; drops (none expected) counted
    REQUIRE(b.stats.completed == b.stats.started);
    open_started += b.stats.started;
  }
  REQUIRE(closed_sum == 30);
  REQUIRE(c.http_requests == 30 + open_started);  // nothing from the refused parts
}

TEST_CASE("runner: the windows of every progress add up exactly to the final statistics (warmup excluded)",
          "[load][runner][live]") {
  TargetProc t;
  // Two steps (one after the other), a warmup, an open model on 3 shards: requests complete at every
  // moment, also between the last periodic progress and the end.
  auto parsed = load_plan_text(fmt::format(R"(version = 1
[[workflow]]
name = "w"
executor = "constant-arrival-rate"
rate = 150
max_vus = 30
duration = "2500ms"
warmup = "700ms"
[[workflow.step]]
name = "get"
url = "http://127.0.0.1:{0}/"
[[workflow.step]]
name = "echo"
method = "POST"
url = "http://127.0.0.1:{0}/echo"
body = "x"
after = ["get"]
)",
                                           t.http),
                               "p.toml", false, process_env());
  REQUIRE(parsed.ok());
  auto plan = std::make_shared<const Plan>(std::move(parsed).value());
  auto wf = prepare_workflow(plan, "w");
  REQUIRE(wf.ok());
  std::vector<Histogram> windows(2);  // written on shard 0, read after the set stopped
  std::vector<WorkflowLive> lives;
  const PartRuns runs = run_on_three_shards(
      [&](runtime::Reactor&, Runner&) {
        return std::vector<RunSpec>{{*wf, {0, 1, 2}, {}}};
      },
      [&](std::size_t, const WorkflowLive& l) {
        for (std::size_t i = 0; i < windows.size() && i < l.window.size(); ++i) windows[i].merge(l.window[i]);
        WorkflowLive copy = l;
        copy.window.clear();
        lives.push_back(std::move(copy));
      });
  t.stop();
  REQUIRE(runs.all_done);
  REQUIRE(runs.errors.empty());
  const WorkflowStats& s = runs.results.at(0)->stats;
  REQUIRE(s.steps.size() == 2);
  REQUIRE(s.steps[0].total.executed > s.steps[0].measured.executed);  // the warmup had requests
  REQUIRE(s.steps[1].measured.executed > 0);
  // Exactly one final progress, the last one; every figure of it equals the final statistics.
  REQUIRE_FALSE(lives.empty());
  REQUIRE(lives.back().final);
  REQUIRE(std::count_if(lives.begin(), lives.end(), [](const WorkflowLive& l) { return l.final; }) == 1);
  const WorkflowLive& last = lives.back();
  CHECK(last.started == s.started);
  CHECK(last.completed == s.completed);
  CHECK(last.iterations_failed == s.iterations_failed);
  CHECK(last.dropped == s.dropped);
  CHECK(last.inflight == 0);
  for (std::size_t i = 0; i < 2; ++i) {
    CAPTURE(i);
    REQUIRE(last.steps.size() == 2);
    REQUIRE(last.measured.size() == 2);
    require_same(last.steps[i], s.steps[i].total);
    require_same(last.measured[i], s.steps[i].measured);
    // The windows hold the measured requests only, every one exactly once: bucket for bucket.
    REQUIRE(windows[i].count() == s.steps[i].measured.executed);
    REQUIRE(windows[i] == s.steps[i].latency);
  }
}

TEST_CASE("runner: a re-dispatched part runs its share less skip_iterations; duration-only parts ignore it",
          "[load][runner][parts]") {
  TargetProc t;
  auto parsed = load_plan_text(fmt::format(R"(version = 1
[[workflow]]
name = "closed"
vus = 6
iterations = 3000
duration = "60s"
[[workflow.step]]
name = "get"
url = "http://127.0.0.1:{0}/"
expect = {{ body_contains = "ok" }}

[[workflow]]
name = "open"
executor = "constant-arrival-rate"
rate = 3000
max_vus = 60
iterations = 600
duration = "60s"
[[workflow.step]]
name = "get"
url = "http://127.0.0.1:{0}/"

[[workflow]]
name = "timed"
executor = "constant-arrival-rate"
rate = 100
max_vus = 60
duration = "500ms"
[[workflow.step]]
name = "get"
url = "http://127.0.0.1:{0}/"
)",
                                           t.http),
                               "p.toml", false, process_env());
  REQUIRE(parsed.ok());
  auto plan = std::make_shared<const Plan>(std::move(parsed).value());
  auto closed = prepare_workflow(plan, "closed");
  auto open = prepare_workflow(plan, "open");
  auto timed = prepare_workflow(plan, "timed");
  REQUIRE(closed.ok());
  REQUIRE(open.ok());
  REQUIRE(timed.ok());

  struct Run {
    std::shared_ptr<const PreparedWorkflow> wf;
    std::vector<int> shards;
    std::optional<RunPart> part;
    std::uint64_t skip;
    std::uint64_t want;  // iterations started (closed), or started + dropped (arrival rate)
    bool far_start = false;
  };
  // Parts of 1, 2 and 3 of 6 global shards. closed: 500 iterations per global shard (parts 500, 1000,
  // 1500), a skip spread over a part's shards; open: 100 per global shard (100, 200, 300).
  const std::vector<Run> runs{
      {*closed, {0}, RunPart{0, 6}, 0, 500},
      {*closed, {1, 2}, RunPart{1, 6}, 700, 300},
      {*closed, {0, 1, 2}, RunPart{3, 6}, 200, 1300},
      {*open, {0}, RunPart{0, 6}, 30, 70},
      {*open, {1, 2}, RunPart{1, 6}, 150, 50},
      {*open, {0, 1, 2}, RunPart{3, 6}, 0, 300},
      // A skip beyond the share: nothing to run, done at once (not at its start 30 s ahead), not an error.
      {*closed, {2}, RunPart{0, 6}, 501, 0, true},
      // Duration only: 50 arrivals in 500 ms (25 on the even global shard of 2); the skip is ignored.
      {*timed, {1}, RunPart{0, 2}, 1000, 25},
      {*timed, {2}, std::nullopt, 7, 50},
  };
  Instant far_at{0};
  const PartRuns done = run_on_three_shards([&](runtime::Reactor& r, Runner&) {
    far_at = r.clock().now() + std::chrono::seconds(30);
    std::vector<RunSpec> specs;
    for (const Run& run : runs) {
      RunSpec& spec = specs.emplace_back(RunSpec{run.wf, run.shards, {}, run.part});
      spec.skip_iterations = run.skip;
      if (run.far_start) spec.start_at = far_at;
    }
    return specs;
  });
  const auto& c = t.stop();
  INFO(fmt::format("{}", fmt::join(done.errors, "; ")));
  REQUIRE(done.errors.empty());
  REQUIRE(done.all_done);
  const auto& results = done.results;
  Instant far_done{0};
  for (std::size_t k = 0; k < runs.size(); ++k)
    if (runs[k].far_start) far_done = done.done_at[k];
  std::uint64_t closed_sum = 0, open_sum = 0, requests = 0;
  for (std::size_t k = 0; k < runs.size(); ++k) {
    CAPTURE(k, runs[k].skip);
    REQUIRE(results[k].has_value());
    const WorkflowResult& res = *results[k];
    REQUIRE(res.end == RunEnd::completed);
    REQUIRE(res.stats.completed == res.stats.started);
    REQUIRE(res.stats.steps[0].measured.failed == 0);
    const bool closed_loop = workflow_of(*runs[k].wf).executor == Executor::constant_vus;
    REQUIRE((closed_loop ? res.stats.started : res.stats.started + res.stats.dropped) == runs[k].want);
    if (closed_loop) REQUIRE(res.stats.dropped == 0);
    if (k < 3) closed_sum += res.stats.started;
    if (k >= 3 && k < 6) open_sum += res.stats.started + res.stats.dropped;
    requests += res.stats.started;
  }
  // The three parts of a workflow together: its budget less their skips.
  REQUIRE(closed_sum == 3000 - (0 + 700 + 200));
  REQUIRE(open_sum == 600 - (30 + 150 + 0));
  REQUIRE(far_done < far_at);
  REQUIRE(c.http_requests == requests);
}

TEST_CASE("executor: progress.started >= completed + failed and equal at rest; ExecSpec.skip_iterations reaches a part",
          "[load][exec][parts]") {
  TargetProc t;
  // "paced": 3 iterations, 1.2 s apart (the pause), so progress (about once a second) lands at least once
  // while the VU rests; iteration i asks for status 20i and only 200 passes: 1 completed, 2 failed.
  const std::string plan = fmt::format(R"(version = 1
[[workflow]]
name = "paced"
vus = 1
iterations = 3
pause = "1200ms"
duration = "60s"
[[workflow.step]]
name = "get"
url = "http://127.0.0.1:{0}/status/20${{iteration}}"
expect = {{ status = [200] }}

[[workflow]]
name = "w"
vus = 3
iterations = 30
duration = "60s"
[[workflow.step]]
name = "get"
url = "http://127.0.0.1:{0}/"
)",
                                       t.http);
  Worker w;
  w.on_done = [&w](std::uint64_t) {
    if (w.obs.done.size() == 2) w.check_and_stop();
  };
  w.run([&](Worker& self) {
    worker::ExecSpec a;
    a.job_id = std::string("job-k");
    a.workflow = std::string("paced");
    a.plan = bytes_of(plan);
    a.cores = 1;
    // The part [1, 3) of 3 global shards (10 + 10 iterations) again, 13 of them accounted for already.
    worker::ExecSpec b = a;
    b.workflow = std::string("w");
    b.cores = 2;
    b.shard_first = 1;
    b.shard_total = 3;
    b.skip_iterations = 13;
    for (auto [e, s] : {std::pair{std::uint64_t{1}, &a}, std::pair{std::uint64_t{2}, &b}}) {
      Status st = self.ex->start(e, *s);
      if (!st.ok()) {
        self.obs.errors.push_back(st.to_string());
        self.r0->request_node_stop("start failed");
      }
    }
  });
  const auto& c = t.stop();
  INFO(fmt::format("{}", fmt::join(w.obs.errors, "; ")));
  REQUIRE(w.obs.errors.empty());
  const auto& res = w.obs.done.at(1);
  REQUIRE(res.outcome == worker::ExecOutcome::completed);
  REQUIRE(res.completed == 1);
  REQUIRE(res.failed == 2);
  const auto& reports = w.obs.progress[1];
  REQUIRE_FALSE(reports.empty());
  bool resting = false;  // a report with every iteration begun also finished
  for (const worker::ExecProgress& p : reports) {
    INFO("started=" << p.started << " completed=" << p.completed << " failed=" << p.failed);
    REQUIRE(p.started >= p.completed + p.failed);
    REQUIRE(p.started <= 3);
    resting = resting || (p.started >= 1 && p.started == p.completed + p.failed);
  }
  REQUIRE(resting);
  REQUIRE(reports.back().started <= res.completed + res.failed);
  REQUIRE(w.obs.done.at(2).outcome == worker::ExecOutcome::completed);
  REQUIRE(w.obs.done.at(2).completed == 20 - 13);
  REQUIRE(c.http_requests == 3 + 7);
  REQUIRE(w.obs.free_after == 3);
  REQUIRE(w.obs.run_states == std::vector<long>{0, 0, 0});
}

TEST_CASE("executor: ExecSpec shard_first/shard_total run a part; a bad part is refused and starts nothing",
          "[load][exec][parts]") {
  TargetProc t;
  const std::string plan = fmt::format(R"(version = 1
[[workflow]]
name = "w"
vus = 3
iterations = 30
duration = "60s"
[[workflow.step]]
name = "get"
url = "http://127.0.0.1:{0}/"
expect = {{ body_contains = "ok" }}

[[workflow]]
name = "once"
kind = "setup"
[[workflow.step]]
name = "get"
url = "http://127.0.0.1:{0}/"
)",
                                       t.http);
  Worker w;
  std::vector<std::string> bad;
  std::size_t free_after_bad = 0, live_after_bad = 99;
  w.on_done = [&w](std::uint64_t) {
    if (w.obs.done.size() == 2) w.check_and_stop();
  };
  w.run([&](Worker& self) {
    auto spec = [&](const std::string& wf, std::uint32_t cores, std::uint32_t first, std::uint32_t total) {
      worker::ExecSpec s;
      s.job_id = std::string("job-p");
      s.workflow = wf;
      s.plan = bytes_of(plan);
      s.cores = cores;
      s.shard_first = first;
      s.shard_total = total;
      return s;
    };
    for (const auto& s : {spec("w", 1, 2, 0), spec("w", 2, 2, 3), spec("w", 3, 0, 2), spec("once", 1, 1, 3)}) {
      Status st = self.ex->start(10 + bad.size(), s);
      bad.push_back(st.ok() ? "OK" : st.message());
    }
    free_after_bad = self.ex->free_cores();
    live_after_bad = self.ex->live();
    // The workflow's 3 global shards as two parts on this worker: [0, 1) and [1, 3).
    Status a = self.ex->start(1, spec("w", 1, 0, 3));
    Status b = self.ex->start(2, spec("w", 2, 1, 3));
    if (!a.ok()) self.obs.errors.push_back(a.to_string());
    if (!b.ok()) self.obs.errors.push_back(b.to_string());
    if (!a.ok() || !b.ok()) self.r0->request_node_stop("start failed");
  });
  const auto& c = t.stop();
  INFO(fmt::format("{} | {}", fmt::join(w.obs.errors, "; "), fmt::join(bad, "; ")));
  REQUIRE(w.obs.errors.empty());
  REQUIRE(bad.size() == 4);
  REQUIRE(bad[0].find("shard_first = 2 without shard_total") != std::string::npos);
  REQUIRE(bad[1].find("part of 2 cores from global shard 2 is beyond the workflow's 3 shards") != std::string::npos);
  REQUIRE(bad[2].find("part of 3 cores from global shard 0 is beyond the workflow's 2 shards") != std::string::npos);
  REQUIRE(bad[3].find("setup workflow 'once' runs as one part") != std::string::npos);
  REQUIRE(free_after_bad == 3);
  REQUIRE(live_after_bad == 0);
  REQUIRE(w.obs.done.size() == 2);
  REQUIRE(w.obs.done.at(1).outcome == worker::ExecOutcome::completed);
  REQUIRE(w.obs.done.at(2).outcome == worker::ExecOutcome::completed);
  REQUIRE(w.obs.done.at(1).completed == 10);  // 30 iterations over 3 global shards: 10, then 10 + 10
  REQUIRE(w.obs.done.at(2).completed == 20);
  REQUIRE(c.http_requests == 30);
  REQUIRE(w.obs.free_after == 3);
  REQUIRE(w.obs.run_states == std::vector<long>{0, 0, 0});
}

TEST_CASE("runner: start_at anchors the schedule: a run waits for it, a late one keeps it and says how late",
          "[load][runner][parts]") {
  TargetProc t;
  auto parsed = load_plan_text(fmt::format(R"(version = 1
[[workflow]]
name = "w"
vus = 2
iterations = 6
duration = "60s"
[[workflow.step]]
name = "get"
url = "http://127.0.0.1:{0}/"
)",
                                           t.http),
                               "p.toml", false, process_env());
  REQUIRE(parsed.ok());
  auto plan = std::make_shared<const Plan>(std::move(parsed).value());
  auto wf = prepare_workflow(plan, "w");
  REQUIRE(wf.ok());
  runtime::ShardSet set([] {
    runtime::ShardSetOptions o;
    o.shards = 2;
    o.pin = false;
    return o;
  }());
  constexpr auto kAhead = std::chrono::milliseconds(400), kLate = std::chrono::milliseconds(250);
  std::string too_far;
  Instant called{0}, ahead_at{0}, ahead_done{0}, late_at{0};
  std::optional<WorkflowResult> ahead, late;
  std::unique_ptr<Runner> runner;
  REQUIRE(set.start([&](runtime::Reactor& r) {
               if (r.shard_id() != 0) return;
               runner = std::make_unique<Runner>(r);
               r.on_shutdown("test-runner", [&](std::function<void()> done) {
                 runner.reset();
                 done();
               });
               runtime::Reactor* rp = &r;
               auto both = [&, rp] {
                 if (ahead && late) rp->request_node_stop("done");
               };
               called = r.clock().now();
               auto far = runner->start({*wf, {0}, {}, std::nullopt, called + Runner::kMaxStartAhead + 1s}, {});
               too_far = far.ok() ? "OK" : far.status().message();
               ahead_at = called + kAhead;
               RunCallbacks a;
               a.on_done = [&, rp, both](WorkflowResult res) {
                 ahead_done = rp->clock().now();
                 ahead = std::move(res);
                 both();
               };
               late_at = called - kLate;
               RunCallbacks b;
               b.on_done = [&, both](WorkflowResult res) {
                 late = std::move(res);
                 both();
               };
               auto ida = runner->start({*wf, {0}, {}, std::nullopt, ahead_at}, std::move(a));
               auto idb = runner->start({*wf, {1}, {}, std::nullopt, late_at}, std::move(b));
               if (!ida.ok() || !idb.ok()) r.request_node_stop("start failed");
             })
              .ok());
  const auto reason = set.wait_for_stop_request(std::chrono::seconds(60));
  set.stop();
  t.stop();
  REQUIRE(reason.has_value());
  CHECK(too_far.find("ahead (at most 60000 ms)") != std::string::npos);
  REQUIRE(ahead.has_value());
  REQUIRE(late.has_value());
  // The early run waited for its start: it ended at least kAhead after the call, and its elapsed time
  // counts from the announced start, not from the call.
  CHECK(ahead->stats.completed == 6);
  CHECK(ahead->start_late == Duration{0});
  CHECK(ahead_done - called >= kAhead);
  CHECK(ahead->stats.elapsed <= ahead_done - ahead_at);
  // The late run started at least kLate after its start and kept it: its elapsed time includes the lateness.
  CHECK(late->stats.completed == 6);
  CHECK(late->start_late >= kLate);
  CHECK(late->stats.elapsed >= kLate);
}

TEST_CASE("executor: ExecSpec.start_at_unix_ms starts the run at that wall-clock time; too far ahead is refused",
          "[load][exec][parts]") {
  TargetProc t;
  const std::string plan = fmt::format(R"(version = 1
[[workflow]]
name = "w"
vus = 1
iterations = 3
duration = "60s"
[[workflow.step]]
name = "get"
url = "http://127.0.0.1:{0}/"
)",
                                       t.http);
  Worker w;
  Instant called{0}, done_at{0};
  std::string far;
  w.on_done = [&](std::uint64_t) {
    done_at = MonotonicClock::instance().now();
    w.check_and_stop();
  };
  w.run([&](Worker& self) {
    worker::ExecSpec s;
    s.job_id = std::string("job-s");
    s.workflow = std::string("w");
    s.plan = bytes_of(plan);
    s.cores = 1;
    s.start_at_unix_ms = static_cast<std::uint64_t>(wall_time_us() / 1000) + 120'000;
    Status st = self.ex->start(9, s);
    far = st.ok() ? "OK" : st.message();
    s.start_at_unix_ms = static_cast<std::uint64_t>(wall_time_us() / 1000) + 400;
    called = MonotonicClock::instance().now();
    Status a = self.ex->start(1, s);
    if (!a.ok()) {
      self.obs.errors.push_back(a.to_string());
      self.r0->request_node_stop("start failed");
    }
  });
  const auto& c = t.stop();
  INFO(fmt::format("{}", fmt::join(w.obs.errors, "; ")));
  REQUIRE(w.obs.errors.empty());
  CHECK(far.find("ahead (at most 60000 ms)") != std::string::npos);
  REQUIRE(w.obs.done.size() == 1);
  CHECK(w.obs.done.at(1).completed == 3);
  CHECK(c.http_requests == 3);
  // The start was announced 400 ms ahead (less the part of a millisecond lost to rounding).
  CHECK(done_at - called >= std::chrono::milliseconds(399));
}

TEST_CASE("executor: with window_ms, progress carries windows that add up exactly to the result's statistics",
          "[load][exec][windows]") {
  TargetProc t;
  // A warmup (windows hold measured latencies only), two steps, an open model on 2 shards.
  const std::string plan = fmt::format(R"(version = 1
[[workflow]]
name = "w"
executor = "constant-arrival-rate"
rate = 120
max_vus = 30
duration = "2200ms"
warmup = "500ms"
[[workflow.step]]
name = "get"
url = "http://127.0.0.1:{0}/"
[[workflow.step]]
name = "echo"
method = "POST"
url = "http://127.0.0.1:{0}/echo"
body = "x"
after = ["get"]
)",
                                       t.http);
  Worker w;
  std::size_t states_while_running = 99, states_after = 99;
  std::string too_short;
  w.on_done = [&w, &states_after](std::uint64_t) {
    states_after = w.ex->window_states();
    w.check_and_stop();
  };
  w.run([&](Worker& self) {
    worker::ExecSpec s;
    s.job_id = std::string("job-w");
    s.workflow = std::string("w");
    s.plan = bytes_of(plan);
    s.cores = 2;
    s.part = 2;
    s.token = 9;
    s.window_ms = 5;  // below the minimum: refused, nothing started
    Status bad = self.ex->start(7, s);
    too_short = bad.ok() ? "OK" : bad.message();
    s.window_ms = 200;
    s.window_origin_unix_ms = static_cast<std::uint64_t>(wall_time_us() / 1000);
    Status st = self.ex->start(1, s);
    states_while_running = self.ex->window_states();
    if (!st.ok()) {
      self.obs.errors.push_back(st.to_string());
      self.r0->request_node_stop("start failed");
    }
  });
  t.stop();
  INFO(fmt::format("{}", fmt::join(w.obs.errors, "; ")));
  REQUIRE(w.obs.errors.empty());
  CHECK(too_short.find("window_ms = 5 is below the minimum 10") != std::string::npos);
  REQUIRE(states_while_running == 1);
  REQUIRE(states_after == 0);  // the exec's cutter went with it
  const worker::ExecResult& res = w.obs.done.at(1);
  REQUIRE(res.outcome == worker::ExecOutcome::completed);
  auto stats = decode_stats(res.stats);
  REQUIRE(stats.ok());
  REQUIRE(stats->steps.size() == 2);
  REQUIRE(stats->steps[0].total.executed > stats->steps[0].measured.executed);  // the warmup had requests
  // Every window, decoded, in the order reported: one per index, from the first on.
  std::vector<Window> ws;
  const auto& reports = w.obs.progress.at(1);
  REQUIRE_FALSE(reports.empty());
  REQUIRE_FALSE(reports.back().windows.empty());  // the last progress (before done) carries the rest
  for (const auto& p : reports)
    for (const auto& b : p.windows) {
      auto d = decode_window(b);
      INFO(d.status().to_string());
      REQUIRE(d.ok());
      ws.push_back(std::move(d).value());
    }
  REQUIRE(ws.size() >= 10);  // >= 2.2 s of 200 ms windows
  std::uint64_t rss = 0;
  WindowIterations it;
  for (std::size_t k = 0; k < ws.size(); ++k) {
    REQUIRE(ws[k].workflow == "w");
    REQUIRE(ws[k].part == 2);
    REQUIRE(ws[k].token == 9);
    REQUIRE(ws[k].index == ws.front().index + k);
    REQUIRE(ws[k].saturation.cpu_percent <= kMaxWindowCpuPercent);
    rss = std::max(rss, ws[k].saturation.rss_bytes);
    it.merge(ws[k].iterations);
  }
  REQUIRE(ws.front().index <= 1);  // the origin is the start
  REQUIRE(rss > 0);
  REQUIRE(it.started == stats->started);
  REQUIRE(it.completed == stats->completed);
  REQUIRE(it.failed == stats->iterations_failed);
  REQUIRE(it.dropped == stats->dropped);
  for (const StepStats& step : stats->steps) {
    CAPTURE(step.name);
    Counts total, measured;
    Histogram lat;
    for (const Window& x : ws)
      for (const WindowStep& s : x.steps)
        if (s.name == step.name) {
          total.merge(s.total);
          measured.merge(s.measured);
          lat.merge(s.latency);
        }
    require_same(total, step.total);
    require_same(measured, step.measured);
    REQUIRE(lat == step.latency);  // bucket for bucket
  }
  REQUIRE(w.obs.run_states == std::vector<long>{0, 0, 0});
}
