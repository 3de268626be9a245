// The managers' side of the gate tier (docs/cluster.md "Gates"), in the simulator: one datacenter
// whose client stands in for a gate (the managers list it in ManagerConfig::gates). It receives the
// managers' DcHeartbeats and sends what a gate sends: submits and cancels with its fence for the
// job, and JobFence after a takeover.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <string_view>

#include "scenario_util.hpp"

using namespace hs;
using namespace hs::simdc;
using namespace hs::cluster;
using namespace std::chrono_literals;

namespace {

DcOptions gated(std::uint64_t seed, std::function<void(manager::ManagerConfig&)> more = nullptr) {
  DcOptions o = t5(seed);
  o.tune_manager = [more](manager::ManagerConfig& c) {
    c.datacenter = "dc-east";
    c.gates = {kClient};
    if (more) more(c);
  };
  return o;
}

// Sends a request to the leader until one answers it (following redirects, retrying what is
// retryable); `send` sends to a manager and returns the request, `code` reads the answer's code.
template <class Send, class Code>
const SimClient::Reply& ask(Dc& dc, Send send, Code code, Duration limit = 20s) {
  const Instant end = dc.sim().now() + limit;
  NodeId target = dc.leader().value_or(dc.managers().front());
  const SimClient::Reply* r = nullptr;
  while (dc.sim().now() < end) {
    const std::uint64_t req = send(target);
    r = nullptr;
    dc.run_until([&] { return (r = dc.client().reply(req)) != nullptr; }, 3s);
    REQUIRE_DC_OK(dc);
    if (r == nullptr) continue;
    const auto [c, leader] = code(*r);
    if (c == Err::not_leader && leader != 0) {
      target = leader;
    } else if (retryable(c)) {
      dc.run_for(300ms);
      target = dc.leader().value_or(target);
    } else {
      return *r;
    }
  }
  FAIL("no answer from the datacenter's leader");
  return *r;
}

SubmitAck gate_submit(Dc& dc, const JobSpec& spec, std::uint64_t fence) {
  return ask(
             dc, [&](NodeId to) { return dc.client().gate_submit(to, spec, fence); },
             [](const SimClient::Reply& r) { return std::make_pair(r.submit.code, r.submit.leader); })
      .submit;
}
CancelReply gate_cancel(Dc& dc, const std::string& job, std::uint64_t fence) {
  return ask(
             dc, [&](NodeId to) { return dc.client().gate_cancel(to, job, fence); },
             [](const SimClient::Reply& r) { return std::make_pair(r.cancel.code, r.cancel.leader); })
      .cancel;
}
JobFenceAck job_fence(Dc& dc, const std::string& job, std::uint64_t fence) {
  return ask(
             dc, [&](NodeId to) { return dc.client().job_fence(to, job, fence); },
             [](const SimClient::Reply& r) { return std::make_pair(r.fence.code, r.fence.leader); })
      .fence;
}

// Every manager's heartbeat arrived after `since`.
bool heard_all_since(Dc& dc, Instant since) {
  return std::all_of(dc.managers().begin(), dc.managers().end(), [&](NodeId m) {
    auto it = dc.client().heartbeat_at.find(m);
    return it != dc.client().heartbeat_at.end() && it->second > since;
  });
}

// Counts the log lines of one event while it lives (the other lines are dropped).
struct EventCounter final : log::Sink {
  explicit EventCounter(std::string e) : event("event=" + std::move(e) + " ") {
    log::set_level(log::Level::warn);
    log::set_sink(this);
  }
  ~EventCounter() override {
    log::set_sink(nullptr);
    log::set_level(std::getenv("HS_TEST_LOG") ? log::Level::info : log::Level::error);
  }
  void write(log::Level, std::string_view line) noexcept override {
    if (line.find(event) != std::string_view::npos) ++count;
  }
  std::string event;
  std::size_t count = 0;
};

// No worker ever started anything of the job.
bool never_ran(Dc& dc, const std::string& job) {
  for (NodeId w : dc.workers())
    if (auto* n = dc.wrk(w))
      for (const auto& e : n->wrk.log())
        if (e.job_id == job) return false;
  return true;
}

}  // namespace

TEST_CASE("GATE-M1 every manager heartbeats the gate; exactly one says it leads and lists the jobs") {
  Dc dc(gated(11, [](manager::ManagerConfig& c) { c.max_heartbeat_jobs = 1; }));
  const NodeId l = boot(dc);
  submit_ok(dc, job("g1", {wf("a", "ms=30000", 1, 1)}));
  submit_ok(dc, job("g2", {wf("a", "ms=30000", 1, 1)}));
  // Wait until the followers applied both jobs, then for a round of heartbeats after that.
  REQUIRE(dc.run_until(
      [&] {
        return std::all_of(dc.managers().begin(), dc.managers().end(),
                           [&](NodeId m) { return dc.mgr(m)->mgr.ledger().size() == 2; });
      },
      10s));
  const Instant now = dc.sim().now();
  REQUIRE(dc.run_until([&] { return heard_all_since(dc, now); }, 5s));
  const auto term = dc.mgr(l)->mgr.raft().term();
  int leaders = 0;
  for (NodeId m : dc.managers()) {
    INFO("manager " << m);
    const DcHeartbeat& hb = dc.client().heartbeats.at(m);
    CHECK(hb.datacenter == "dc-east");
    CHECK(hb.term == term);
    CHECK(hb.leader == l);
    CHECK(hb.worker_count == 4);
    CHECK(hb.healthy_worker_count == 4);
    CHECK(hb.total_cores == 8);
    CHECK(hb.available_cores <= 8);
    CHECK(hb.active_jobs == 2);
    if (hb.is_leader) {
      ++leaders;
      CHECK(m == l);
      REQUIRE(hb.jobs.size() == 1);  // max_heartbeat_jobs = 1: the rest is flagged
      CHECK(hb.jobs[0] == "g1");
      CHECK(hb.jobs_more);
    } else {
      CHECK(hb.jobs.empty());  // only the leader lists jobs
      CHECK_FALSE(hb.jobs_more);
    }
    CHECK(dc.mgr(m)->mgr.stats().gate_heartbeats > 0);
    CHECK(dc.mgr(m)->mgr.table_sizes().at("gates") == 1);
  }
  CHECK(leaders == 1);

  // A gate that does not know these managers says so in every ack: counted each time (and logged
  // once per change), nothing else changes.
  {
    EventCounter refused("gate_refused");
    dc.client().refuse_heartbeats = "manager not configured for datacenter dc-east";
    std::size_t before = dc.client().heartbeats_received;
    REQUIRE(dc.run_until([&] { return dc.client().heartbeats_received >= before + 9; }, 10s));
    dc.run_for(200ms);
    for (NodeId m : dc.managers()) CHECK(dc.mgr(m)->mgr.stats().gate_refusals >= 2);
    CHECK(refused.count == 3);                                               // once per manager, not once per heartbeat
    dc.client().refuse_heartbeats = "datacenter dc-east is not configured";  // another reason: logged again
    before = dc.client().heartbeats_received;
    REQUIRE(dc.run_until([&] { return dc.client().heartbeats_received >= before + 9; }, 10s));
    dc.run_for(200ms);
    CHECK(refused.count == 6);
    dc.client().refuse_heartbeats.reset();
    dc.run_for(1s);
  }
  CHECK(dc.job_view("g1")->state == JobState::running);
  REQUIRE(gate_cancel(dc, "g1", 0).success);
  REQUIRE(gate_cancel(dc, "g2", 0).success);
  REQUIRE(finish(dc, "g1").state == JobState::cancelled);
  CHECK_ENDS(dc);
}

TEST_CASE("GATE-M2 a stale gate fence is refused; JobFence raises it; the owner's cancel goes through") {
  Dc dc(gated(12));
  boot(dc);
  const JobSpec spec = job("g1", {wf("a", "ms=30000", 2, 2)});
  const SubmitAck ack = gate_submit(dc, spec, 5);
  INFO(ack.error);
  REQUIRE(ack.accepted);
  REQUIRE(dc.run_until([&] { return runner(dc, "g1", "a") != 0; }, 10s));
  CHECK(dc.job_view("g1")->fence == 5);
  // The gate re-sends its submit (with a higher fence, after a takeover): the same job, as before.
  const SubmitAck again = gate_submit(dc, spec, 6);
  CHECK(again.accepted);
  CHECK(again.job_id == "g1");
  CHECK(dc.job_view("g1")->fence == 5);

  const NodeId l = *dc.leader();
  const auto rejects = dc.mgr(l)->mgr.stats().fence_rejects;
  CancelReply c = gate_cancel(dc, "g1", 3);
  CHECK_FALSE(c.success);
  CHECK(c.code == Err::fence);
  CHECK(c.error == "stale gate fence 3 (current 5)");
  CHECK(dc.mgr(l)->mgr.stats().fence_rejects == rejects + 1);
  dc.run_for(1s);
  CHECK(dc.job_view("g1")->state == JobState::running);
  CHECK(runner(dc, "g1", "a") != 0);

  JobFenceAck f = job_fence(dc, "g1", 9);
  CHECK(f.accepted);
  CHECK(f.code == Err::none);
  CHECK(f.current == 9);
  CHECK(dc.job_view("g1")->fence == 9);
  f = job_fence(dc, "g1", 9);  // the same fence again: accepted as it is
  CHECK(f.accepted);
  CHECK(f.current == 9);
  f = job_fence(dc, "g1", 7);  // an older owner's
  CHECK_FALSE(f.accepted);
  CHECK(f.code == Err::fence);
  CHECK(f.current == 9);
  f = job_fence(dc, "nope", 9);
  CHECK(f.code == Err::not_found);
  // A follower redirects.
  const NodeId follower = dc.managers().front() == l ? dc.managers().back() : dc.managers().front();
  const std::uint64_t req = dc.client().job_fence(follower, "g1", 10);
  const SimClient::Reply* r = nullptr;
  REQUIRE(dc.run_until([&] { return (r = dc.client().reply(req)) != nullptr; }, 3s));
  CHECK(r->fence.code == Err::not_leader);
  CHECK(r->fence.leader == l);
  // Status from any manager shows the fence (it is in every ledger).
  REQUIRE(dc.run_until([&] { return dc.mgr(follower)->mgr.job("g1")->fence == 9; }, 5s));

  c = gate_cancel(dc, "g1", 5);  // the owner before the takeover
  CHECK(c.code == Err::fence);
  CHECK(c.error == "stale gate fence 5 (current 9)");
  CHECK(dc.job_view("g1")->state == JobState::running);
  c = gate_cancel(dc, "g1", 9);
  CHECK(c.success);
  CHECK_FALSE(c.already_cancelled);
  CHECK(c.cancelled_workflow_count == 1);
  dc.cancel_acked.insert("g1");
  CHECK(finish(dc, "g1").state == JobState::cancelled);
  c = gate_cancel(dc, "g1", 9);  // idempotent
  CHECK(c.success);
  CHECK(c.already_cancelled);
  CHECK_ENDS(dc);
}

TEST_CASE("GATE-M3 a gate's cancel of an unknown job leaves a tombstone; the late submit is refused") {
  Dc dc(gated(13, [](manager::ManagerConfig& c) { c.retention_failed = 20s; }));
  boot(dc);
  CancelReply c = gate_cancel(dc, "ghost", 4);
  INFO(c.error);
  REQUIRE(c.success);
  CHECK_FALSE(c.already_cancelled);
  CHECK(c.cancelled_workflow_count == 0);
  dc.cancel_acked.insert("ghost");
  REQUIRE(dc.run_until(
      [&] {
        return std::all_of(dc.managers().begin(), dc.managers().end(), [&](NodeId m) {
          const LedgerJob* j = dc.mgr(m)->mgr.ledger().job("ghost");
          return j != nullptr && j->tombstone;
        });
      },
      5s));
  auto v = dc.job_view("ghost");
  REQUIRE(v);
  CHECK(v->state == JobState::cancelled);
  CHECK(v->workflows.empty());
  CHECK(v->fence == 4);
  // A client's cancel of an unknown job is still not_found (no tombstone without a gate).
  const std::uint64_t req = dc.client().cancel(*dc.leader(), "other");
  const SimClient::Reply* r = nullptr;
  REQUIRE(dc.run_until([&] { return (r = dc.client().reply(req)) != nullptr; }, 3s));
  CHECK(r->cancel.code == Err::not_found);

  // The submit that was on its way arrives: refused, whatever its fence, and never run.
  const SubmitAck ack = gate_submit(dc, job("ghost", {wf("a", "ms=2000", 1, 1)}), 4);
  CHECK_FALSE(ack.accepted);
  CHECK(ack.code == Err::conflict);
  CHECK(ack.error.find("cancelled by its gate") != std::string::npos);
  dc.run_for(3s);
  CHECK(never_ran(dc, "ghost"));
  c = gate_cancel(dc, "ghost", 4);  // the cancel again
  CHECK(c.success);
  CHECK(c.already_cancelled);
  // It is retired after retention_failed like any cancelled job.
  REQUIRE(dc.run_until(
      [&] {
        return std::all_of(dc.managers().begin(), dc.managers().end(),
                           [&](NodeId m) { return dc.mgr(m)->mgr.ledger().job("ghost") == nullptr; });
      },
      40s));
  CHECK(never_ran(dc, "ghost"));
  CHECK_ENDS(dc);
}

TEST_CASE("GATE-M4 the gate fence survives a manager leader failover") {
  Dc dc(gated(14));
  const NodeId old = boot(dc);
  REQUIRE(gate_submit(dc, job("g1", {wf("a", "ms=40000", 2, 2)}), 5).accepted);
  REQUIRE(job_fence(dc, "g1", 9).accepted);
  REQUIRE(dc.run_until([&] { return runner(dc, "g1", "a") != 0; }, 10s));
  REQUIRE(dc.sim().crash(old).ok());
  std::optional<NodeId> nl;
  REQUIRE(dc.run_until([&] { return (nl = dc.leader()).has_value() && *nl != old; }, 30s));
  // The new leader's heartbeat says so, with its term.
  const auto term = dc.mgr(*nl)->mgr.raft().term();
  REQUIRE(dc.run_until(
      [&] {
        auto it = dc.client().heartbeats.find(*nl);
        return it != dc.client().heartbeats.end() && it->second.is_leader && it->second.term == term;
      },
      5s));
  CancelReply c = gate_cancel(dc, "g1", 5);
  CHECK(c.code == Err::fence);
  CHECK(c.error == "stale gate fence 5 (current 9)");
  JobFenceAck f = job_fence(dc, "g1", 8);
  CHECK(f.code == Err::fence);
  CHECK(f.current == 9);
  dc.run_for(1s);
  CHECK(dc.job_view("g1")->state == JobState::running);
  c = gate_cancel(dc, "g1", 9);
  CHECK(c.success);
  dc.cancel_acked.insert("g1");
  CHECK(finish(dc, "g1").state == JobState::cancelled);
  REQUIRE(dc.sim().restart(old).ok());
  CHECK_ENDS(dc);
}
