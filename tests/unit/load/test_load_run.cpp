// The engine end to end, in process: plans run on 2 shards against the built-in target (its own
// shard), with exact counts checked against the target's own counters.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <stdexcept>
#include <thread>

#include "hyperscale/load/engine.hpp"
#include "hyperscale/load/plan.hpp"
#include "hyperscale/load/report.hpp"
#include "hyperscale/load/target.hpp"
#include "hyperscale/runtime/c_boundary.hpp"
#include "hyperscale/runtime/log_capture.hpp"
#include "hyperscale/runtime/shard_set.hpp"
#include "target_fixture.hpp"

using namespace hs;
using namespace hs::load;
using namespace hs::load::testing;

namespace {

Plan must_parse(const std::string& text) {
  auto p = load_plan_text(text, "e2e.toml", false, process_env());
  INFO(p.status().to_string());
  REQUIRE(p.ok());
  return std::move(p).value();
}

RunStats must_run(const Plan& p, int shards = 2) {
  RunOptions o;
  o.shards = shards;
  o.handle_signals = false;
  auto r = run_plan(p, o);
  INFO(r.status().to_string());
  REQUIRE(r.ok());
  return std::move(r).value();
}

const StepStats& step(const RunStats& s, std::size_t w, std::size_t i) { return s.workflows.at(w).steps.at(i); }

}  // namespace

TEST_CASE("run: fixed iterations against the target give exact counts on every side", "[load][run]") {
  TargetProc t;
  const Plan p = must_parse(fmt::format(R"(version = 1
[[workflow]]
name = "w"
vus = 6
iterations = 1000
duration = "60s"
[[workflow.step]]
name = "home"
url = "http://127.0.0.1:{0}/"
expect = {{ status = [200], body_contains = "ok" }}
[[workflow.step]]
name = "echo"
method = "POST"
url = "http://127.0.0.1:{0}/echo"
body = "vu=${{vu}} it=${{iteration}}"
expect = {{ body_contains = "it=" }}
[[workflow.step]]
name = "chunked"
url = "http://127.0.0.1:{0}/chunked"
expect = {{ body_contains = "chunked body" }}
)",
                                        t.http));
  const RunStats s = must_run(p);
  const auto& c = t.stop();
  REQUIRE(s.workflows[0].outcome == WorkflowOutcome::completed);
  REQUIRE(s.workflows[0].started == 1000);
  REQUIRE(s.workflows[0].completed == 1000);
  for (std::size_t i = 0; i < 3; ++i) {
    INFO("step " << i << " reasons refused=" << step(s, 0, i).measured.reasons[0]);
    REQUIRE(step(s, 0, i).measured.executed == 1000);
    REQUIRE(step(s, 0, i).measured.ok == 1000);
    REQUIRE(step(s, 0, i).latency.count() == 1000);
  }
  REQUIRE(c.http_requests == 3000);
  REQUIRE(c.http_connections <= 18 + 1);  // keep-alive: one per VU per step (+1: the readiness probe)
  REQUIRE(exit_code_for(s) == 0);
  const std::string json = results_json(p, s, 0);
  REQUIRE(json.find("\"executed\": 3000") != std::string::npos);
}

TEST_CASE("run: constant arrival rate starts on schedule; started + dropped = scheduled", "[load][run]") {
  TargetProc t;
  const Plan p = must_parse(fmt::format(R"(version = 1
[[workflow]]
name = "open"
executor = "constant-arrival-rate"
rate = 400
time_unit = "1s"
max_vus = 40
duration = "1s"
[[workflow.step]]
name = "get"
url = "http://127.0.0.1:{}/"
)",
                                        t.http));
  const RunStats s = must_run(p);
  const auto& c = t.stop();
  const auto& w = s.workflows[0];
  REQUIRE(w.started + w.dropped == 400);
  REQUIRE(w.completed == w.started);
  REQUIRE(step(s, 0, 0).measured.executed == w.started);
  REQUIRE(c.http_requests == w.started);
}

TEST_CASE("run: drops at max_vus are counted when the target is slow", "[load][run]") {
  TargetProc t;
  const Plan p = must_parse(fmt::format(R"(version = 1
[[workflow]]
name = "slow"
executor = "constant-arrival-rate"
rate = 100
max_vus = 2
duration = "500ms"
[[workflow.step]]
name = "delay"
url = "http://127.0.0.1:{}/delay/300"
)",
                                        t.http));
  const RunStats s = must_run(p, 1);
  t.stop();
  const auto& w = s.workflows[0];
  REQUIRE(w.started + w.dropped == 50);
  REQUIRE(w.started >= 2);
  REQUIRE(w.started <= 6);
  REQUIRE(w.dropped >= 44);
  // Latency counts from the intended start: at least the server's 300 ms.
  // (the target's timer runs on its loop's cached clock, so allow it 5 ms of earliness)
  REQUIRE(step(s, 0, 0).latency.min() >= 295'000'000);
}

TEST_CASE("run: TCP and UDP steps against the echo target", "[load][run]") {
  TargetProc t;
  const Plan p = must_parse(fmt::format(R"(version = 1
[[workflow]]
name = "sock"
vus = 3
iterations = 60
[[workflow.step]]
name = "tcp"
type = "tcp"
address = "127.0.0.1:{0}"
send = "ping ${{iteration}}\n"
read_until = "\n"
expect = {{ contains = "ping" }}
[[workflow.step]]
name = "tcp-new"
type = "tcp"
address = "127.0.0.1:{0}"
connection = "new"
send = "abcd"
read_bytes = 4
expect = {{ equals = "abcd" }}
[[workflow.step]]
name = "udp"
type = "udp"
address = "127.0.0.1:{1}"
send = "hello"
expect = {{ equals = "hello" }}
[[workflow.step]]
name = "udp-fire"
type = "udp"
address = "127.0.0.1:{1}"
send = "fire and forget"
reply = false
)",
                                        t.tcp, t.udp));
  const RunStats s = must_run(p);
  const auto& c = t.stop();
  for (std::size_t i = 0; i < 4; ++i) {
    INFO("step " << i);
    REQUIRE(step(s, 0, i).measured.executed == 60);
    REQUIRE(step(s, 0, i).measured.ok == 60);
  }
  REQUIRE(c.udp_datagrams == 120);
  REQUIRE(c.tcp_connections >= 60);  // the "new" step opens one per iteration
}

TEST_CASE("run: setup provides values to dependants; a failed setup skips them", "[load][run]") {
  TargetProc t;
  const Plan p = must_parse(fmt::format(R"(version = 1
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
expect = {{ body_contains = "token=abc123" }}

[[workflow]]
name = "broken-setup"
kind = "setup"
[[workflow.step]]
name = "fail"
url = "http://127.0.0.1:{0}/status/500"

[[workflow]]
name = "never"
depends_on = ["broken-setup"]
vus = 1
iterations = 1
[[workflow.step]]
name = "x"
url = "http://127.0.0.1:{0}/"
)",
                                        t.http));
  const RunStats s = must_run(p);
  const auto& c = t.stop();
  REQUIRE(s.workflows[0].outcome == WorkflowOutcome::completed);
  REQUIRE(step(s, 0, 0).measured.executed == 1);  // setup ran exactly once over 2 shards
  REQUIRE(s.workflows[1].outcome == WorkflowOutcome::completed);
  REQUIRE(step(s, 1, 0).measured.ok == 20);
  REQUIRE(s.workflows[2].outcome == WorkflowOutcome::failed);
  REQUIRE(step(s, 2, 0).measured.reasons[static_cast<int>(FailReason::unexpected_status)] == 1);
  REQUIRE(s.workflows[3].outcome == WorkflowOutcome::skipped);
  REQUIRE(s.workflows[3].note.find("broken-setup") != std::string::npos);
  REQUIRE(step(s, 3, 0).measured.executed == 0);
  REQUIRE(c.http_requests == 22);
  REQUIRE(exit_code_for(s) == 3);
}

TEST_CASE("run: an unreachable target is connection errors per step, exit 5, no hang", "[load][run]") {
  const int dead = free_port(SOCK_STREAM);  // nothing listens there
  const Plan p = must_parse(fmt::format(R"(version = 1
[[workflow]]
name = "down"
vus = 2
duration = "300ms"
[[workflow.step]]
name = "a"
url = "http://127.0.0.1:{0}/"
[[workflow.step]]
name = "b"
url = "http://127.0.0.1:{0}/b"
)",
                                        dead));
  const RunStats s = must_run(p);
  const auto& a = step(s, 0, 0);
  REQUIRE(a.measured.executed > 0);
  REQUIRE(a.measured.ok == 0);
  REQUIRE(a.measured.reasons[static_cast<int>(FailReason::refused)] == a.measured.executed);
  REQUIRE(step(s, 0, 1).measured.executed == 0);  // b runs after a, which failed
  REQUIRE(step(s, 0, 1).skipped == a.measured.executed);
  REQUIRE(exit_code_for(s) == 5);
}

TEST_CASE("run: step timeouts are failures with reason timeout and full latency", "[load][run]") {
  TargetProc t;
  const Plan p = must_parse(fmt::format(R"(version = 1
[[workflow]]
name = "slow"
vus = 2
iterations = 4
[[workflow.step]]
name = "delay"
timeout = "150ms"
url = "http://127.0.0.1:{}/delay/2000"
)",
                                        t.http));
  const RunStats s = must_run(p, 1);
  t.stop();
  const auto& d = step(s, 0, 0);
  REQUIRE(d.measured.executed == 4);
  REQUIRE(d.measured.reasons[static_cast<int>(FailReason::timeout)] == 4);
  REQUIRE(d.latency.min() >= 150'000'000);
  REQUIRE(s.elapsed < std::chrono::seconds(3));
}

TEST_CASE("run: send-only steps complete on the next loop turn (no re-entrant loop)", "[load][run]") {
  TargetProc t;
  const Plan p = must_parse(fmt::format(R"(version = 1
[[workflow]]
name = "fire"
vus = 4
duration = "1500ms"
[[workflow.step]]
name = "udp"
type = "udp"
address = "127.0.0.1:{}"
send = "x"
reply = false
)",
                                        t.udp));
  RunOptions o;
  o.shards = 1;
  o.handle_signals = false;
  int live_while_running = 0;  // written on the load shard, read here after the run (threads joined)
  o.on_progress = [&](const LiveSnapshot& snap) { live_while_running += snap.workflows.at(0).running ? 1 : 0; };
  auto r = run_plan(p, o);
  t.stop();
  REQUIRE(r.ok());
  const RunStats& s = *r;
  REQUIRE(step(s, 0, 0).measured.executed > 0);
  REQUIRE(step(s, 0, 0).measured.failed == 0);
  REQUIRE(live_while_running >= 1);  // the shard's loop kept turning during the run
  REQUIRE(s.elapsed < std::chrono::seconds(4));
}

TEST_CASE("run: graceful stop interrupts iterations still running", "[load][run]") {
  TargetProc t;
  const Plan p = must_parse(fmt::format(R"(version = 1
[[workflow]]
name = "g"
vus = 2
duration = "200ms"
graceful_stop = "100ms"
[[workflow.step]]
name = "delay"
timeout = "10s"
url = "http://127.0.0.1:{}/delay/5000"
)",
                                        t.http));
  const RunStats s = must_run(p, 1);
  t.stop();
  const auto& w = s.workflows[0];
  REQUIRE(w.started == 2);
  REQUIRE(w.interrupted == 2);
  REQUIRE(w.completed == 0);
  REQUIRE(step(s, 0, 0).measured.executed == 0);  // interrupted, not failed
  REQUIRE(s.elapsed < std::chrono::seconds(2));
}

namespace {
int g_responses = 0;  // touched only by the one shard that runs the single VU, read after the run
}  // namespace

TEST_CASE("run: an exception in a response handler fails that request at the C callback boundary; the run goes on",
          "[load][run][c_boundary]") {
  TargetProc t;
  const Plan p = must_parse(fmt::format(R"(version = 1
[[workflow]]
name = "w"
vus = 1
iterations = 20
duration = "60s"
[[workflow.step]]
name = "home"
url = "http://127.0.0.1:{0}/"
)",
                                        t.http));
  runtime::LogCapture logs;
  g_responses = 0;
  // The 5th response's handler throws inside libuv's read callback (uv_read -> llhttp -> checks).
  on_response = [](std::string_view) {
    if (++g_responses == 5) throw std::runtime_error("injected by the test");
  };
  const std::uint64_t before = runtime::callback_errors_total();
  const RunStats s = must_run(p, 1);
  on_response = nullptr;
  t.stop();
  CHECK(runtime::callback_errors_total() == before + 1);
  CHECK(logs.contains({"event=callback_exception", "callback=uv_read", "about=\"home\"", "injected by the test"}));
  // That request failed and its connection closed; the other 19 went on to completion.
  REQUIRE(s.workflows[0].outcome == WorkflowOutcome::completed);
  CHECK(s.workflows[0].completed == 20);
  CHECK(step(s, 0, 0).measured.executed == 20);
  CHECK(step(s, 0, 0).measured.ok == 19);
  CHECK(step(s, 0, 0).measured.reasons[static_cast<std::size_t>(FailReason::bad_response)] == 1);
}
