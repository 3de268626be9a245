// Live windows (issue 11, docs/windows.md) in the deterministic simulator: every part of a split
// workflow sends its windows to the leader, which merges them exactly and idempotently (a re-sent
// batch merges once), parts batch while the leader does not acknowledge, a window that overflows a
// worker's queue is counted and shown (never silently lost), an abort threshold judged on the merged
// windows fails the job and stops every part, and the windows are freed with the job.
// The managers merge with the host's LoadWindows (the same code as the daemons); the synthetic
// executor's actions are requests of one step "op" (support/sim_executor.hpp).
#include <catch2/catch.hpp>

#include <numeric>

#include "hyperscale/host/load_windows.hpp"
#include "hyperscale/load/window.hpp"
#include "scenario_util.hpp"
#include "support/windows.hpp"

using namespace hs;
using namespace hs::simdc;
using namespace hs::cluster;
using namespace std::chrono_literals;

namespace {

// The windows of a synthetic workflow: one step "op"; `abort_p99_ms=N` in the plan text adds an
// abort threshold p99 < N ms on the workflow (the sim plans are not workflow files).
manager::WindowsFactory sim_windows() {
  return [](std::span<const std::uint8_t> plan,
            const std::string& workflow) -> Result<std::unique_ptr<manager::WorkflowWindows>> {
    const std::string text(plan.begin(), plan.end());
    load::Plan p = test::one_step_plan(workflow, "op");
    load::Workflow& w = p.workflows.front();
    if (auto at = text.find("abort_p99_ms="); at != std::string::npos) {
      load::Threshold t;
      t.scope = "workflow " + workflow;
      t.key = "p99";
      const double ms = std::stod(text.substr(at + 13));
      t.condition = fmt::format("< {}ms", ms);
      t.metric = load::Metric::p99;
      t.op = load::CmpOp::lt;
      t.value = ms * 1e6;
      t.abort = true;
      w.thresholds.push_back(t);
    }
    auto lw = host::LoadWindows::create(p, workflow);
    if (!lw.ok()) return lw.status();
    return std::unique_ptr<manager::WorkflowWindows>(std::move(*lw));
  };
}

DcOptions windows_dc(int workers = 3) {
  DcOptions o;
  o.workers = workers;
  o.tune_manager = [](manager::ManagerConfig& c) {
    c.windows = sim_windows();
    c.retention_ok = 20s;
    c.retention_failed = 20s;
  };
  return o;
}

manager::Manager& leader_mgr(Dc& dc) {
  const auto l = dc.leader();
  REQUIRE(l.has_value());
  return dc.mgr(*l)->mgr;
}

std::size_t queued_windows(Dc& dc) {
  std::size_t n = 0;
  for (NodeId w : dc.workers())
    if (auto* node = dc.wrk(w)) n += node->wrk.queued_windows();
  return n;
}

std::uint64_t requests_sent(Dc& dc, const std::string& job) {
  std::uint64_t n = 0;
  for (NodeId w : dc.workers())
    if (auto* node = dc.wrk(w))
      for (const auto& [key, v] : node->exec.requests_in_windows)
        if (std::get<0>(key) == job) n += v;
  return n;
}

struct Merged {
  std::uint64_t closed_requests = 0, totals_requests = 0, windows = 0;
  WatchWorkflow wf;
};

// Every closed window of the job's only workflow, paging through the leader's watch replies.
Merged merged(Dc& dc, const std::string& job) {
  Merged m;
  std::uint64_t from = 0;
  for (int page = 0; page < 100; ++page) {
    auto r = leader_mgr(dc).watch(job, from, 50);
    REQUIRE(r.has_value());
    REQUIRE(r->workflows.size() == 1);
    m.wf = r->workflows[0];
    auto totals = load::decode_window(m.wf.totals);
    REQUIRE(totals.ok());
    m.totals_requests = totals->steps.empty() ? 0 : totals->steps[0].total.executed;
    for (const auto& w : m.wf.windows) {
      auto d = load::decode_window(w.merged);
      REQUIRE(d.ok());
      CHECK(w.index >= from);
      for (const auto& s : d->steps) m.closed_requests += s.total.executed;
      ++m.windows;
      from = w.index + 1;
    }
    if (!m.wf.more) break;
  }
  return m;
}

bool is_role(const node::Bytes& msg, MsgType t) {
  return msg.size() >= 2 && msg[0] == cluster::kRole && msg[1] == static_cast<std::uint8_t>(t);
}

}  // namespace

TEST_CASE("WIN-01 every part's windows reach the leader and merge exactly; they are freed with the job") {
  Dc dc(windows_dc());
  boot(dc);
  submit_ok(dc, job("w1", {wf("load", "ms=3000;iters=3000", 3, 3)}));
  const JobView v = finish(dc, "w1");
  CHECK(v.state == JobState::completed);
  REQUIRE(wfv(v, "load").parts.size() == 3);
  // Every window is acknowledged before its part's result: the ended workflow's windows are all closed
  // (sealed) without waiting for the lateness.
  REQUIRE(dc.run_until([&] { return queued_windows(dc) == 0; }, 10s));
  const Merged m = merged(dc, "w1");
  CHECK(requests_sent(dc, "w1") == 3000);
  CHECK(m.totals_requests == 3000);
  CHECK(m.closed_requests == 3000);
  CHECK(m.windows >= 3);
  CHECK(m.wf.duplicates == 0);
  CHECK(m.wf.dropped == 0);
  CHECK(m.wf.refused == 0);
  // Per-part load: three parts report, each with its worker and cores.
  auto r = leader_mgr(dc).watch("w1", 0, 50);
  REQUIRE(r.has_value());
  std::set<std::uint32_t> parts;
  for (const auto& w : r->workflows[0].windows)
    for (const auto& p : w.parts) {
      parts.insert(p.part);
      CHECK(p.cores == 1);
      CHECK(p.cpu_percent == 40);
    }
  CHECK(parts == std::set<std::uint32_t>{0, 1, 2});
  CHECK(leader_mgr(dc).table_sizes().at("window_mergers") == 1);
  // Retention forgets the job: its windows go with it.
  REQUIRE(dc.run_until([&] { return !dc.job_view("w1").has_value(); }, 60s));
  CHECK(leader_mgr(dc).table_sizes().at("window_mergers") == 0);
  CHECK_FALSE(leader_mgr(dc).watch("w1", 0, 10).has_value());
  CHECK_ENDS(dc);
}

TEST_CASE("WIN-02 a leader that does not acknowledge: parts re-send (merged once) and batch what queued") {
  Dc dc(windows_dc());
  boot(dc);
  std::size_t largest_batch = 0, batches = 0;
  bool block = false;
  REQUIRE(dc.sim()
              .add_filter([&](NodeId, NodeId, const node::Bytes& msg) {
                if (is_role(msg, MsgType::window_batch)) {
                  WindowBatch b;
                  if (decode(std::span<const std::uint8_t>(msg).subspan(2), b)) {
                    largest_batch = std::max(largest_batch, b.windows.size());
                    ++batches;
                  }
                }
                return block && is_role(msg, MsgType::window_ack);
              })
              .ok());
  submit_ok(dc, job("w2", {wf("load", "ms=6000;iters=6000", 3, 3)}));
  REQUIRE(dc.run_until(
      [&] {
        auto v = dc.job_view("w2");
        return v && !v->workflows[0].parts.empty() && v->workflows[0].parts[0].completed > 0;
      },
      20s));
  block = true;  // the leader merges but its acks are lost for 3 s: every batch is sent again
  dc.run_for(3s);
  block = false;
  const JobView v = finish(dc, "w2");
  CHECK(v.state == JobState::completed);
  REQUIRE(dc.run_until([&] { return queued_windows(dc) == 0; }, 10s));
  const Merged m = merged(dc, "w2");
  CHECK(m.wf.duplicates > 0);        // re-sent windows were recognised...
  CHECK(m.totals_requests == 6000);  // ...and merged once
  CHECK(m.closed_requests == 6000);
  CHECK(largest_batch >= 3);  // what queued while unacknowledged went together
  CHECK(batches > 0);
  CHECK_ENDS(dc);
}

TEST_CASE("WIN-03 windows that overflow a worker's queue are counted and reported, never silently lost") {
  DcOptions o = windows_dc();
  o.tune_worker = [](worker::WorkerConfig& c) {
    c.max_windows_queued = 3;
    c.max_windows_per_batch = 1;
  };
  Dc dc(o);
  boot(dc);
  bool block = false;
  REQUIRE(dc.sim()
              .add_filter(
                  [&](NodeId, NodeId, const node::Bytes& msg) { return block && is_role(msg, MsgType::window_ack); })
              .ok());
  submit_ok(dc, job("w3", {wf("load", "ms=8000;iters=8000", 3, 3)}));
  REQUIRE(dc.run_until(
      [&] {
        auto v = dc.job_view("w3");
        return v && !v->workflows[0].parts.empty() && v->workflows[0].parts[0].completed > 0;
      },
      20s));
  block = true;
  dc.run_for(5s);
  block = false;
  finish(dc, "w3");
  REQUIRE(dc.run_until([&] { return queued_windows(dc) == 0; }, 20s));
  std::uint64_t dropped = 0;
  for (NodeId w : dc.workers()) dropped += dc.wrk(w)->wrk.stats().windows_dropped;
  CHECK(dropped > 0);
  const Merged m = merged(dc, "w3");
  CHECK(m.wf.dropped == dropped);  // what the workers dropped, the leader shows
  CHECK(m.totals_requests < 8000);
  CHECK(m.closed_requests == m.totals_requests);
  // The final statistics do not depend on windows: the parts' totals stay exact.
  const JobView v = *dc.job_view("w3");
  CHECK(v.workflows[0].completed == 8000);
  CHECK_ENDS(dc);
}

TEST_CASE("WIN-04 an abort threshold failing on the merged windows fails the job and stops every part") {
  Dc dc(windows_dc());
  boot(dc);
  const Instant t0 = dc.sim().now();
  // 1 ms per action, 50 ms after 2 s: the merged p99 crosses 10 ms soon after.
  submit_ok(dc, job("w4", {wf("load", "ms=30000;iters=300000;lat=1000;slow=2000:50000;abort_p99_ms=10", 3, 3)}));
  const JobView v = finish(dc, "w4", 40s);
  CHECK(v.state == JobState::failed);
  CHECK(v.error.find("abort threshold failed in workflow 'load'") != std::string::npos);
  CHECK(v.error.find("p99") != std::string::npos);
  // Failed long before the 30 s run would have ended, every part stopped.
  CHECK(dc.sim().now() - t0 < 12s);
  CHECK(leader_mgr(dc).stats().threshold_aborts == 1);
  REQUIRE(dc.run_until(
      [&] {
        std::size_t live = 0;
        for (NodeId w : dc.workers()) live += dc.wrk(w)->exec.live();
        return live == 0;
      },
      15s));
  const auto end = dc.job_view("w4");
  REQUIRE(end.has_value());
  for (const auto& p : end->workflows[0].parts) CHECK(terminal(p.state));
  CHECK_ENDS(dc);
}

TEST_CASE("WIN-05 without an abort threshold a slow target only shows in the windows") {
  Dc dc(windows_dc());
  boot(dc);
  submit_ok(dc, job("w5", {wf("load", "ms=3000;iters=3000;lat=1000;slow=1000:50000", 3, 3)}));
  const JobView v = finish(dc, "w5");
  CHECK(v.state == JobState::completed);
  CHECK(leader_mgr(dc).stats().threshold_aborts == 0);
  CHECK_ENDS(dc);
}

TEST_CASE(
    "WIN-06 under loss, duplication, reordering and a leader crash: windows never count twice, jobs end, "
    "windows are freed") {
  for (std::uint64_t seed : {11u, 12u, 13u, 14u}) {
    DYNAMIC_SECTION("seed " << seed) {
      DcOptions o = windows_dc();
      o.seed = seed;
      o.net.loss = 0.02;
      o.net.duplicate = 0.05;
      o.net.reorder = 0.1;
      Dc dc(o);
      const NodeId l = boot(dc);
      submit_ok(dc, job("w6", {wf("load", "ms=6000;iters=6000", 3, 3)}));
      REQUIRE(dc.run_until(
          [&] {
            auto v = dc.job_view("w6");
            return v && !v->workflows[0].parts.empty() && v->workflows[0].parts[0].completed > 1000;
          },
          30s));
      REQUIRE(dc.sim().crash(l).ok());
      REQUIRE(dc.run_until([&] { return dc.leader().has_value() && dc.leader() != l; }, 30s));
      REQUIRE(dc.sim().restart(l).ok());
      const JobView v = finish(dc, "w6", 90s);
      CHECK(v.state == JobState::completed);
      REQUIRE(dc.run_until([&] { return queued_windows(dc) == 0; }, 30s));
      // The new leader merged what it received: never more than the parts sent, each window once.
      const Merged m = merged(dc, "w6");
      CHECK(m.totals_requests <= requests_sent(dc, "w6"));
      CHECK(m.closed_requests <= m.totals_requests);
      CHECK(m.totals_requests > 0);
      REQUIRE(dc.run_until(
          [&] {
            auto ld = dc.leader();
            return ld && !dc.job_view("w6").has_value() && dc.mgr(*ld)->mgr.table_sizes().at("window_mergers") == 0;
          },
          60s));
      CHECK_ENDS(dc);
    }
  }
}
