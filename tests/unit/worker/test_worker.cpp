// The worker role driven directly in the simulator: one worker node (Mux: Worker on kRole, the
// synthetic SimExecutor on kExec) and three scripted fake managers that send exactly what a test
// says and record everything the worker sends them. Covers term fencing (dispatch, stop, heartbeat
// stop lists), where results go (the leader of the highest term, moved when it changes), orphans by
// missing leader confirmation, capacity refusal, durable fence marks (refused write, failed sync),
// and duplicates.
#include <catch2/catch.hpp>

#include <algorithm>
#include <functional>
#include <optional>

#include "hyperscale/base/log.hpp"
#include "hyperscale/cluster/ledger.hpp"
#include "hyperscale/cluster/messages.hpp"
#include "hyperscale/cluster/mux.hpp"
#include "hyperscale/sim/simulator.hpp"
#include "hyperscale/worker/worker.hpp"
#include "support/sim_executor.hpp"

using namespace hs;
using namespace hs::cluster;
using namespace std::chrono_literals;
using worker::Worker;
using worker::WorkerConfig;

namespace {

struct QuietLogs {
  QuietLogs() { log::set_level(log::Level::off); }
  ~QuietLogs() { log::set_level(log::Level::info); }
};

constexpr NodeId kW = 1, kM1 = 10, kM2 = 11, kM3 = 12;

struct WorkerNode final : node::Node {
  explicit WorkerNode(WorkerConfig c) : wrk(std::move(c), exec) {
    mux.add(kRole, &wrk);
    mux.add(kExec, &exec);
  }
  worker::SimExecutor exec;
  Worker wrk;
  Mux mux;
  node::Context* outer = nullptr;
  void on_start(node::Context& ctx) override {
    outer = &ctx;
    exec.attach(&wrk, &mux.context(kExec));
    mux.on_start(ctx);
  }
  void on_message(node::Context& ctx, NodeId f, std::span<const std::uint8_t> m) override { mux.on_message(ctx, f, m); }
  void on_timer(node::Context& ctx, node::TimerId id, std::uint64_t tag) override { mux.on_timer(ctx, id, tag); }
};

// A manager that says only what the test scripts, and records what the worker sends.
struct FakeManager final : node::Node {
  struct Got {
    MsgType type;
    Bytes body;
  };
  std::optional<HeartbeatAck> hb_reply;  // the answer to every heartbeat (none: silent)
  bool ack_results = false;
  std::vector<Got> got;
  node::Context* ctx = nullptr;

  void on_start(node::Context& c) override { ctx = &c; }
  void on_timer(node::Context&, node::TimerId, std::uint64_t) override {}
  void on_message(node::Context& c, NodeId from, std::span<const std::uint8_t> m) override {
    ctx = &c;
    if (m.size() < 2 || m[0] != kRole) return;
    const auto type = static_cast<MsgType>(m[1]);
    got.push_back(Got{type, Bytes(m.begin() + 2, m.end())});
    if (type == MsgType::heartbeat && hb_reply) send(from, MsgType::heartbeat_ack, *hb_reply);
    if (type == MsgType::result && ack_results) {
      const auto r = last<ResultMsg>(MsgType::result);
      ResultAck a{r.job_id, r.workflow, r.token};
      send(from, MsgType::result_ack, a);
    }
  }
  template <class T>
  void send(NodeId to, MsgType t, T msg) {
    Bytes b = encode(t, msg);
    b.insert(b.begin(), static_cast<std::uint8_t>(kRole));
    ctx->send(to, std::move(b));
  }
  template <class T>
  std::vector<T> all(MsgType t) const {
    std::vector<T> out;
    for (const auto& g : got) {
      if (g.type != t) continue;
      T v;
      REQUIRE(decode(std::span<const std::uint8_t>(g.body), v));
      out.push_back(std::move(v));
    }
    return out;
  }
  template <class T>
  T last(MsgType t) const {
    auto v = all<T>(t);
    REQUIRE(!v.empty());
    return v.back();
  }
  std::size_t count(MsgType t) const {
    return std::count_if(got.begin(), got.end(), [t](const Got& g) { return g.type == t; });
  }
};

HeartbeatAck hb(bool is_leader, std::uint64_t term, NodeId leader, std::vector<StopItem> stop = {}) {
  HeartbeatAck a;
  a.is_leader = is_leader;
  a.term = term;
  a.leader = leader;
  a.stop = std::move(stop);
  return a;
}

struct Rig {
  QuietLogs quiet;
  sim::Simulator sim{sim::SimOptions{}};

  explicit Rig(const std::function<void(WorkerConfig&)>& tune = {}) {
    WorkerConfig cfg;
    cfg.managers = {kM1, kM2, kM3};
    cfg.cores = 4;
    if (tune) tune(cfg);
    REQUIRE(sim.add_node(kW, [cfg](NodeId) { return std::make_unique<WorkerNode>(cfg); }).ok());
    for (NodeId m : {kM1, kM2, kM3})
      REQUIRE(sim.add_node(m, [](NodeId) { return std::make_unique<FakeManager>(); }).ok());
    sim.start_all();
    REQUIRE(sim.run_for(1ms).ok());
  }
  WorkerNode& w() { return *static_cast<WorkerNode*>(sim.node(kW)); }
  Worker& wrk() { return w().wrk; }
  FakeManager& m(NodeId id) { return *static_cast<FakeManager*>(sim.node(id)); }

  // Runs until `pred` holds (checked every 10 ms of virtual time); false after `max`.
  bool until(const std::function<bool()>& pred, Duration max = 30s) {
    const Instant end = sim.now() + max;
    while (!pred()) {
      if (sim.now() >= end) return false;
      REQUIRE(sim.run_for(10ms).ok());
    }
    return true;
  }
  static Dispatch dispatch(const std::string& wf, std::uint64_t term, std::uint32_t seq, std::uint32_t cores = 1,
                           const std::string& plan = "ms=600000") {
    Dispatch d;
    d.job_id = "job";
    d.workflow = wf;
    d.token = make_token(term, seq);
    d.term = term;
    d.cores = cores;
    d.vus = 1;
    d.plan.assign(plan.begin(), plan.end());
    return d;
  }
  // Sends a dispatch from `from` and waits for its answer (the n-th dispatch ack `from` receives).
  DispatchAck dispatch_and_wait(NodeId from, const Dispatch& d) {
    const std::size_t before = m(from).count(MsgType::dispatch_ack);
    m(from).send(kW, MsgType::dispatch, d);
    REQUIRE(until([&] { return m(from).count(MsgType::dispatch_ack) > before; }));
    return m(from).last<DispatchAck>(MsgType::dispatch_ack);
  }
  StopAck stop_and_wait(NodeId from, const StopExec& s) {
    const std::size_t before = m(from).count(MsgType::stop_ack);
    m(from).send(kW, MsgType::stop_exec, s);
    REQUIRE(until([&] { return m(from).count(MsgType::stop_ack) > before; }));
    return m(from).last<StopAck>(MsgType::stop_ack);
  }
  // Waits until every fake manager has received `n` more heartbeats (so each answered them).
  void heartbeats(std::size_t n) {
    std::vector<std::size_t> base;
    for (NodeId id : {kM1, kM2, kM3}) base.push_back(m(id).count(MsgType::heartbeat));
    REQUIRE(until([&] {
      return m(kM1).count(MsgType::heartbeat) >= base[0] + n && m(kM2).count(MsgType::heartbeat) >= base[1] + n &&
             m(kM3).count(MsgType::heartbeat) >= base[2] + n;
    }));
    REQUIRE(sim.run_for(20ms).ok());  // the answers to the last ones are handled
  }
};

}  // namespace

TEST_CASE("worker: a dispatch from a lower term than the worker has heard is refused and nothing starts") {
  Rig r;
  SECTION("the higher term heard from a dispatch") {
    REQUIRE(r.dispatch_and_wait(kM1, Rig::dispatch("a", 5, 1)).accepted);
  }
  SECTION("the higher term heard from a non-leader's heartbeat reply") {
    r.m(kM3).hb_reply = hb(false, 5, kM1);
    r.heartbeats(1);
    CHECK(r.wrk().leader_term() == 5);
    CHECK(r.wrk().leader() == kM1);
  }
  const std::size_t started = r.w().exec.started.size();
  // Another workflow (no fence mark of its own): only the term can refuse it.
  const DispatchAck ack = r.dispatch_and_wait(kM2, Rig::dispatch("b", 4, 1));
  CHECK_FALSE(ack.accepted);
  CHECK(ack.code == Err::fence);
  CHECK(ack.error == "from a deposed leader: term 4 < 5");
  CHECK(r.w().exec.started.size() == started);
  CHECK(r.wrk().stats().deposed_rejects == 1);
  for (const auto& e : r.wrk().live()) CHECK(e.workflow != "b");
  // The same dispatch at the current term is accepted.
  CHECK(r.dispatch_and_wait(kM1, Rig::dispatch("b", 5, 2)).accepted);
}

TEST_CASE("worker: a stop from a lower term is refused; the current leader's stop is obeyed") {
  Rig r;
  const Dispatch d = Rig::dispatch("a", 5, 1);
  REQUIRE(r.dispatch_and_wait(kM1, d).accepted);
  StopExec s{"job", "a", d.token, 4};
  CHECK_FALSE(r.stop_and_wait(kM2, s).stopped);
  CHECK(r.wrk().stats().deposed_rejects == 1);
  REQUIRE(r.sim.run_for(200ms).ok());
  CHECK(r.wrk().live().size() == 1);
  CHECK(r.wrk().used_cores() == 1);
  s.term = 5;
  CHECK(r.stop_and_wait(kM1, s).stopped);
  REQUIRE(r.until([&] { return r.wrk().used_cores() == 0; }));
  CHECK(r.wrk().stats().cancelled == 1);
}

TEST_CASE("worker: a stop that overtakes its dispatch fences it: the late dispatch is refused and nothing starts") {
  Rig r;
  const Dispatch d = Rig::dispatch("a", 5, 3);
  // The leader cancelled the job and stopped the attempt before its dispatch arrived.
  CHECK_FALSE(r.stop_and_wait(kM1, StopExec{"job", "a", d.token, 5}).stopped);
  const DispatchAck ack = r.dispatch_and_wait(kM1, d);
  CHECK_FALSE(ack.accepted);
  CHECK(ack.code == Err::fence);
  CHECK(r.w().exec.started.empty());
  CHECK(r.wrk().used_cores() == 0);
  // A later attempt (a higher token) is not affected.
  CHECK(r.dispatch_and_wait(kM1, Rig::dispatch("a", 5, 4)).accepted);
}

TEST_CASE("worker: a heartbeat reply's stop list is obeyed only from the leader of the highest term") {
  Rig r;
  const Dispatch d = Rig::dispatch("a", 5, 1);
  REQUIRE(r.dispatch_and_wait(kM1, d).accepted);
  const std::vector<StopItem> stop{StopItem{"job", "a", d.token}};
  r.m(kM2).hb_reply = hb(false, 5, kM1, stop);  // not the leader
  r.m(kM3).hb_reply = hb(true, 4, kM3, stop);   // a leader of a lower term
  r.heartbeats(3);
  CHECK(r.wrk().live().size() == 1);
  CHECK(r.wrk().stats().ignored_stop_lists >= 6);
  CHECK(r.wrk().leader() == kM1);
  r.m(kM1).hb_reply = hb(true, 5, kM1, stop);  // the leader of term 5
  REQUIRE(r.until([&] { return r.wrk().used_cores() == 0; }, 5s));
  CHECK(r.wrk().stats().cancelled == 1);
}

TEST_CASE("worker: results go to the leader of the highest term and move at once when it changes") {
  Rig r([](WorkerConfig& c) { c.result_retry = 1h; });  // only a leader change can move a result
  REQUIRE(r.dispatch_and_wait(kM1, Rig::dispatch("a", 5, 1, 1, "ms=300")).accepted);
  REQUIRE(r.until([&] { return r.m(kM1).count(MsgType::result) == 1; }));
  CHECK(r.m(kM2).count(MsgType::result) == 0);
  CHECK(r.m(kM3).count(MsgType::result) == 0);
  // A new leader at term 6: the pending result goes to it as soon as the worker hears of it.
  r.m(kM2).hb_reply = hb(true, 6, kM2);
  REQUIRE(r.until([&] { return r.m(kM2).count(MsgType::result) == 1; }, 3s));
  CHECK(r.wrk().leader_term() == 6);
  CHECK(r.wrk().leader() == kM2);
  CHECK(r.m(kM2).last<ResultMsg>(MsgType::result).workflow == "a");
  // The deposed leader still claims term 5: it gets nothing more.
  r.m(kM1).hb_reply = hb(true, 5, kM1);
  r.heartbeats(3);
  CHECK(r.wrk().leader() == kM2);
  CHECK(r.m(kM1).count(MsgType::result) == 1);
  // A term with no known leader yet (a non-leader reports term 7, leader unknown): every manager.
  r.m(kM3).hb_reply = hb(false, 7, 0);
  REQUIRE(r.until([&] { return r.m(kM1).count(MsgType::result) == 2 && r.m(kM3).count(MsgType::result) == 1; }, 3s));
  CHECK(r.wrk().leader() == 0);
  // The acknowledgement ends it.
  r.m(kM3).ack_results = true;
  r.m(kM3).hb_reply = hb(true, 7, kM3);
  REQUIRE(r.until([&] { return r.wrk().table_sizes()["execs"] == 0; }, 3s));
}

TEST_CASE("worker: an execution no leader confirms for orphan_grace is stopped; a confirmed one is not") {
  Rig r;
  SECTION("no leader answers") {
    const Instant t0 = r.sim.now();
    REQUIRE(r.dispatch_and_wait(kM1, Rig::dispatch("a", 5, 1)).accepted);
    REQUIRE(r.until([&] { return r.wrk().stats().orphaned == 1; }, 20s));
    CHECK(r.sim.now() - t0 >= 8s);
    CHECK(r.sim.now() - t0 < 9s);
    REQUIRE(r.until([&] { return r.wrk().used_cores() == 0; }, 1s));
  }
  SECTION("only a non-leader and a leader of a lower term answer") {
    r.m(kM2).hb_reply = hb(false, 5, kM1);
    r.m(kM3).hb_reply = hb(true, 4, kM3);
    REQUIRE(r.dispatch_and_wait(kM1, Rig::dispatch("a", 5, 1)).accepted);
    REQUIRE(r.until([&] { return r.wrk().stats().orphaned == 1; }, 20s));
  }
  SECTION("the leader confirms it") {
    r.m(kM1).hb_reply = hb(true, 5, kM1);
    REQUIRE(r.dispatch_and_wait(kM1, Rig::dispatch("a", 5, 1)).accepted);
    r.heartbeats(30);  // well past orphan_grace
    CHECK(r.wrk().stats().orphaned == 0);
    CHECK(r.wrk().live().size() == 1);
    // The leader goes silent: the execution stops one orphan_grace after the last confirmation.
    r.m(kM1).hb_reply.reset();
    REQUIRE(r.until([&] { return r.wrk().stats().orphaned == 1; }, 10s));
  }
}

TEST_CASE("worker: a dispatch over the free cores is refused as overloaded with the free cores") {
  Rig r;
  const DispatchAck first = r.dispatch_and_wait(kM1, Rig::dispatch("a", 5, 1, 3));
  REQUIRE(first.accepted);
  CHECK(first.available_cores == 1);
  const DispatchAck ack = r.dispatch_and_wait(kM1, Rig::dispatch("b", 5, 2, 2));
  CHECK_FALSE(ack.accepted);
  CHECK(ack.code == Err::overloaded);
  CHECK(ack.error == "needs 2 cores; 1 free");
  CHECK(ack.available_cores == 1);
  CHECK(r.wrk().stats().capacity_rejects == 1);
  CHECK(r.w().exec.started.size() == 1);
}

TEST_CASE("worker: a dispatch's part and start time reach the executor; none means the whole workflow at once") {
  Rig r;
  Dispatch d = Rig::dispatch("part", 5, 1, 2);
  d.shard_first = 3;
  d.shard_total = 7;
  d.start_at_unix_ms = 1'700'000'000'123;
  REQUIRE(r.dispatch_and_wait(kM1, d).accepted);
  REQUIRE(r.dispatch_and_wait(kM1, Rig::dispatch("whole", 5, 2, 1)).accepted);
  REQUIRE(r.w().exec.started.size() == 2);
  const worker::ExecSpec& part = r.w().exec.started[0];
  CHECK(part.workflow == "part");
  CHECK(part.cores == 2);
  CHECK(part.shard_first == 3);
  CHECK(part.shard_total == 7);
  CHECK(part.start_at_unix_ms == 1'700'000'000'123);
  const worker::ExecSpec& whole = r.w().exec.started[1];
  CHECK(whole.shard_first == 0);
  CHECK(whole.shard_total == 0);
  CHECK(whole.start_at_unix_ms == 0);
}

TEST_CASE("worker: a fence mark that cannot be written refuses the dispatch and starts nothing") {
  Rig r;
  r.sim.disk_faults(kW)->refuse_next(1);
  const Dispatch d = Rig::dispatch("a", 5, 1);
  const DispatchAck ack = r.dispatch_and_wait(kM1, d);
  CHECK_FALSE(ack.accepted);
  CHECK(ack.code == Err::unavailable);
  CHECK(ack.error.rfind("fence mark not durable: ", 0) == 0);
  CHECK(r.w().exec.started.empty());
  CHECK(r.wrk().used_cores() == 0);
  CHECK(r.wrk().stats().disk_errors == 1);
  // Nothing changed: the leader's retry with the same token is accepted once the disk takes it.
  CHECK(r.dispatch_and_wait(kM1, d).accepted);
  CHECK(r.w().exec.started.size() == 1);
}

TEST_CASE("worker: a failed sync barrier cancels the execution and refuses the dispatch") {
  Rig r;
  r.sim.disk_faults(kW)->fail_next_syncs(1);
  const DispatchAck ack = r.dispatch_and_wait(kM1, Rig::dispatch("a", 5, 1, 2));
  CHECK_FALSE(ack.accepted);
  CHECK(ack.code == Err::unavailable);
  CHECK(ack.error == "fence mark not durable: the sync barrier failed");
  CHECK(ack.available_cores == 4);
  CHECK(r.wrk().stats().sync_failures == 1);
  CHECK(r.wrk().used_cores() == 0);
  REQUIRE(r.until([&] { return r.w().exec.live() == 0; }, 1s));
  CHECK(r.wrk().table_sizes()["execs"] == 0);
  CHECK(r.m(kM1).count(MsgType::dispatch_ack) == 1);  // never an accepted ack
}

TEST_CASE("worker: a same-token dispatch is a duplicate: never started twice, acked only once durable") {
  SECTION("after the execution finished (its result waits for an ack)") {
    Rig r;
    const Dispatch d = Rig::dispatch("a", 5, 1, 1, "ms=200");
    REQUIRE(r.dispatch_and_wait(kM1, d).accepted);
    REQUIRE(r.until([&] { return r.m(kM1).count(MsgType::result) >= 1; }));
    const std::size_t results = r.m(kM1).count(MsgType::result);
    CHECK(r.dispatch_and_wait(kM1, d).accepted);
    CHECK(r.w().exec.started.size() == 1);
    CHECK(r.wrk().stats().duplicates == 1);
    CHECK(r.m(kM1).count(MsgType::result) == results + 1);  // the leader evidently lacks it: re-sent
  }
  SECTION("while its fence mark is not durable yet") {
    Rig r;
    REQUIRE(r.sim.stall_disk(kW, true).ok());
    const Dispatch d = Rig::dispatch("a", 5, 1);
    r.m(kM1).send(kW, MsgType::dispatch, d);
    REQUIRE(r.until([&] { return r.w().exec.started.size() == 1; }, 1s));
    r.m(kM1).send(kW, MsgType::dispatch, d);
    REQUIRE(r.until([&] { return r.wrk().stats().duplicates == 1; }, 1s));
    REQUIRE(r.sim.run_for(500ms).ok());
    CHECK(r.m(kM1).count(MsgType::dispatch_ack) == 0);
    REQUIRE(r.sim.stall_disk(kW, false).ok());
    REQUIRE(r.until([&] { return r.m(kM1).count(MsgType::dispatch_ack) == 2; }, 1s));
    for (const auto& a : r.m(kM1).all<DispatchAck>(MsgType::dispatch_ack)) CHECK(a.accepted);
    CHECK(r.w().exec.started.size() == 1);
  }
}

TEST_CASE("worker: a dead member only redirects its results; it does not orphan executions") {
  Rig r([](WorkerConfig& c) { c.result_retry = 1h; });
  r.m(kM1).hb_reply = hb(true, 5, kM1);
  REQUIRE(r.dispatch_and_wait(kM1, Rig::dispatch("short", 5, 1, 1, "ms=200")).accepted);
  REQUIRE(r.dispatch_and_wait(kM1, Rig::dispatch("long", 5, 2)).accepted);
  REQUIRE(r.until([&] { return r.m(kM1).count(MsgType::result) == 1; }));
  // SWIM declares the leader dead (a false positive: it still answers as leader).
  r.sim.at(r.sim.now(), [&](sim::Simulator&) { r.w().mux.run(*r.w().outer, [&] { r.wrk().on_member_dead(kM1); }); });
  REQUIRE(r.until([&] { return r.m(kM2).count(MsgType::result) == 1 && r.m(kM3).count(MsgType::result) == 1; }, 1s));
  r.heartbeats(20);  // well past orphan_grace (and the old 15 s grace)
  CHECK(r.wrk().stats().orphaned == 0);
  REQUIRE(r.wrk().live().size() == 1);
  CHECK(r.wrk().live()[0].workflow == "long");
}
