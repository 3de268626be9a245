// Scenario tests of the gate tier (scenarios.md §3, gates over several datacenters) in the
// deterministic simulator: each test is named by its scenario id and asserts what a client or a
// status endpoint observes. World (world.hpp) checks the instant invariants after every event and
// end_checks() the rest. Gate timings are scaled down (test_gate_config(): dc_stale 2 s, dc_grace
// 4 s, poll 300 ms, request_timeout 500 ms, cancel_timeout 4 s, checkpoint 1 s).
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <cstdlib>
#include <set>

#include <fmt/format.h>

#include "hyperscale/base/log.hpp"
#include "hyperscale/base/random.hpp"
#include "hyperscale/host/load_windows.hpp"
#include "hyperscale/gate/ring.hpp"
#include "support/windows.hpp"
#include "world.hpp"

using namespace hs;
using namespace hs::simgate;
using namespace hs::cluster;
using namespace std::chrono_literals;

namespace {

struct Quiet {
  Quiet() { hs::log::set_level(std::getenv("HS_TEST_LOG") ? hs::log::Level::info : hs::log::Level::error); }
};
Quiet quiet;

#define REQUIRE_OK(w)             \
  do {                            \
    INFO((w).status().message()); \
    REQUIRE((w).status().ok());   \
  } while (0)
#define CHECK_ENDS(w)                  \
  do {                                 \
    const auto st_ = (w).end_checks(); \
    INFO(st_.message());               \
    CHECK(st_.ok());                   \
  } while (0)

// 3 gates, 2 datacenters of 3 managers and 2 workers × 2 cores. HS_GATE_SEED_OFFSET=<n> shifts every
// scenario's seed (robustness runs; the sweep takes HS_SIM_SEED* instead).
WorldOptions t3(std::uint64_t seed) {
  WorldOptions o;
  const char* off = std::getenv("HS_GATE_SEED_OFFSET");
  o.seed = seed + (off != nullptr ? std::strtoull(off, nullptr, 10) : 0);
  o.gates = 3;
  o.dcs = 2;
  o.managers = 3;
  o.workers = 2;
  o.cores = 2;
  return o;
}

void boot(World& w) {
  REQUIRE(w.boot(40s));
  REQUIRE_OK(w);
}

JobSpec spread(JobSpec s, std::uint32_t dcs) {
  s.datacenter_count = dcs;
  return s;
}

JobSpec in(JobSpec s, std::vector<std::string> dcs) {
  s.datacenters = std::move(dcs);
  return s;
}

cluster::SubmitAck submit_ok(World& w, const JobSpec& s, NodeId to = 0) {
  auto r = w.submit(s, to);
  REQUIRE_OK(w);
  REQUIRE(r.ack.has_value());
  INFO(r.ack->error);
  REQUIRE(r.ack->accepted);
  CHECK(r.ack->job_id == s.job_id);
  return *r.ack;
}

JobView finish(World& w, const std::string& id, Duration limit = 60s) {
  auto v = w.finish(id, limit);
  REQUIRE_OK(w);
  REQUIRE(v.has_value());
  return *v;
}

const DcView& dcv(const JobView& v, const std::string& name) {
  for (const auto& d : v.datacenters)
    if (d.name == name) return d;
  FAIL("no datacenter " << name << " in the view of " << v.job_id);
  return v.datacenters.front();
}

// Every datacenter's leader holds no active job and has every core free.
void dcs_idle(World& w) {
  REQUIRE(w.run_until(
      [&] {
        for (std::size_t d = 0; d < w.dc_count(); ++d) {
          auto l = w.dc_leader(d);
          if (!l) return false;
          const auto st = w.mgr(*l)->mgr.node_status();
          if (!st.active_job_ids.empty() || st.available_cores != st.total_cores) return false;
        }
        return true;
      },
      15s));
}

// One submission to one gate, its first answer (no retry, no redirect).
cluster::SubmitAck submit_once(World& w, const JobSpec& s, NodeId to) {
  const std::uint64_t req = w.client().submit(to, s);
  const simdc::SimClient::Reply* r = nullptr;
  REQUIRE(w.run_until([&] { return (r = w.client().reply(req)) != nullptr; }, 5s));
  return r->submit;
}

// Every share of the job accepted by its datacenter and running on a worker there.
void wait_running(World& w, const std::string& id, Duration limit = 10s) {
  REQUIRE(w.run_until(
      [&] {
        auto v = w.view(id);
        if (!v) return false;
        for (const auto& d : v->datacenters)
          if (!d.accepted || w.running_in(w.dc_index(d.name), id) == 0) return false;
        return !v->datacenters.empty();
      },
      limit));
  REQUIRE_OK(w);
}

// Every live gate's status answer for the job: found, in `state`.
void every_gate_reports(World& w, const std::string& id, JobState state) {
  for (NodeId g : w.gates()) {
    if (w.gate(g) == nullptr) continue;
    INFO("gate " << g);
    auto r = w.status_of(id, g);
    REQUIRE(r.has_value());
    CHECK(r->found);
    CHECK(r->job.state == state);
  }
}

// ---- live windows (AGG-05) ----

// The windows of a synthetic workflow (one step "op", as the sim executor reports them), with the
// merger's `cfg`: the managers' and, with max_ahead 300 as on the gate daemon, the gates'.
cluster::WindowsFactory sim_windows(load::WindowMergerConfig cfg = {}) { return test::one_step_windows("op", cfg); }

load::WindowMergerConfig gate_merge() {
  load::WindowMergerConfig c;
  c.max_ahead = 300;
  return c;
}

// Managers and gates with live windows.
WorldOptions with_windows(WorldOptions o) {
  auto gate_tune = o.tune_gate;
  o.tune_manager = [](manager::ManagerConfig& c) { c.windows = sim_windows(); };
  o.tune_gate = [gate_tune](gate::GateConfig& c) {
    c.windows = sim_windows(gate_merge());
    if (gate_tune) gate_tune(c);
  };
  return o;
}

std::uint64_t requests_of(std::span<const std::uint8_t> bytes) {
  auto d = load::decode_window(bytes.data(), bytes.size());
  REQUIRE(d.ok());
  std::uint64_t n = 0;
  for (const auto& st : d->steps) n += st.total.executed;
  return n;
}

// One watch query to gate `to`, its answer.
// A gate that is not the job's owner names it (not_leader): followed, at most 3 hops, as a client does.
WatchReply watch_once(World& w, NodeId to, const std::string& id, std::uint64_t from = 0, std::uint32_t max = 0,
                      int hops = 3) {
  for (int hop = 0;; ++hop) {
    const std::uint64_t req = w.client().watch(to, id, from, max);
    const simdc::SimClient::Reply* r = nullptr;
    REQUIRE(w.run_until([&] { return (r = w.client().reply(req)) != nullptr; }, 5s));
    if (r->watch.code != Err::not_leader || r->watch.leader == 0 || r->watch.leader == to || hop >= hops)
      return r->watch;
    to = r->watch.leader;
  }
}

// What a client watching through the gates saw: every closed window (by index, its requests), the
// totals after each answer, the per-datacenter lines of the last answer.
struct Watcher {
  explicit Watcher(std::string j) : job(std::move(j)) {}
  std::string job;
  std::map<std::uint64_t, std::uint64_t> windows;  // index -> requests
  std::uint64_t totals = 0, answers = 0, max_dcs = 0;
  std::vector<WatchDc> dcs;
  std::vector<std::string> violations;
  // Asks the gate leader from the next window on (paging while it has more) and checks that a
  // window seen again did not change and that the totals never go back.
  void poll(World& w) {
    const auto g = w.gate_leader();
    if (!g) return;
    std::uint64_t from = windows.empty() ? 0 : windows.rbegin()->first + 1;
    for (int page = 0; page < 20; ++page) {
      const WatchReply r = watch_once(w, *g, job, from > 2 ? from - 2 : 0);  // overlap: re-seen windows must match
      if (r.code != Err::none) return;
      ++answers;
      bool more = false;
      for (const WatchWorkflow& f : r.workflows) {
        const std::uint64_t t = requests_of(f.totals);
        if (t < totals) violations.push_back(fmt::format("totals went back: {} after {}", t, totals));
        totals = std::max(totals, t);
        dcs = f.datacenters;
        max_dcs = std::max<std::uint64_t>(max_dcs, f.datacenters.size());
        for (const WatchWindow& ww : f.windows) {
          const std::uint64_t n = requests_of(ww.merged);
          auto [it, fresh] = windows.emplace(ww.index, n);
          if (!fresh && it->second != n)
            violations.push_back(fmt::format("window {} changed: {} then {}", ww.index, it->second, n));
          from = std::max(from, ww.index + 1);
        }
        more = more || f.more;
      }
      if (!more) return;
    }
  }
  std::uint64_t sum() const {
    std::uint64_t n = 0;
    for (const auto& [i, r] : windows) n += r;
    return n;
  }
};

// Requests the sim executors put in windows for the job, in datacenter d.
std::uint64_t requests_sent(World& w, std::size_t d, const std::string& id) {
  std::uint64_t n = 0;
  for (NodeId x : w.workers(d))
    if (auto* node = w.wrk(x))
      for (const auto& [key, v] : node->exec.requests_in_windows)
        if (std::get<0>(key) == id) n += v;
  return n;
}

// The sum of the closed windows datacenter d's leader serves for the job (of workflow `only`, or all).
std::uint64_t dc_window_sum(World& w, std::size_t d, const std::string& id, const std::string& only = "") {
  const auto l = w.dc_leader(d);
  REQUIRE(l.has_value());
  std::uint64_t n = 0, from = 0;
  for (int page = 0; page < 100; ++page) {
    auto r = w.mgr(*l)->mgr.watch(id, from, 100);
    REQUIRE(r.has_value());
    bool more = false;
    for (const auto& f : r->workflows) {
      for (const auto& ww : f.windows) {
        if (only.empty() || f.name == only) n += requests_of(ww.merged);
        from = std::max(from, ww.index + 1);
      }
      more = more || f.more;
    }
    if (!more) break;
  }
  return n;
}

// A job id the ring gives to gate `g` among `live` (ownership is the ring's choice at accept time).
std::string owned_by(NodeId g, const std::vector<NodeId>& live, const std::string& prefix) {
  const gate::Ring ring(live);
  for (int i = 0;; ++i) {
    std::string id = fmt::format("{}{}", prefix, i);
    if (ring.owner(id) == g) return id;
  }
}

NodeId other_than(World& w, std::initializer_list<NodeId> not_these) {
  for (NodeId g : w.gates())
    if (std::find(not_these.begin(), not_these.end(), g) == not_these.end() && w.up(g)) return g;
  FAIL("no other gate");
  return 0;
}

// Every live gate's SWIM view holds exactly `live` (in the gates' order).
void wait_members(World& w, const std::vector<NodeId>& live, Duration limit = 20s) {
  REQUIRE(w.run_until(
      [&] {
        for (NodeId g : w.gates())
          if (auto* n = w.gate(g); n != nullptr && n->gate.live_gates() != live) return false;
        return true;
      },
      limit));
}

}  // namespace

TEST_CASE("SUB-01 happy path, 1 and 2 datacenters") {
  World w(t3(11));
  boot(w);
  for (std::uint32_t n : {1u, 2u}) {
    INFO("datacenter_count " << n);
    const std::string id = fmt::format("happy{}", n);
    submit_ok(w, spread(job(id, {wf("noop", "ms=1000;ops=10")}), n));
    std::vector<JobState> seen;
    REQUIRE(w.run_until(
        [&] {
          auto v = w.view(id);
          if (v && (seen.empty() || seen.back() != v->state)) seen.push_back(v->state);
          return v && terminal(v->state);
        },
        10s));
    for (std::size_t i = 1; i < seen.size(); ++i) CHECK(static_cast<int>(seen[i - 1]) < static_cast<int>(seen[i]));
    const JobView v = finish(w, id);
    CHECK(v.state == JobState::completed);
    CHECK(v.failed == 0);
    REQUIRE(v.datacenters.size() == n);
    std::uint64_t sum = 0;
    for (const auto& d : v.datacenters) {
      CHECK(d.state == JobState::completed);
      CHECK(d.accepted);
      CHECK(d.completed == 10);
      sum += d.completed;
    }
    CHECK(v.completed == 10 * n);
    CHECK(sum == v.completed);
    REQUIRE(v.workflows.size() == 1);
    CHECK(v.workflows[0].state == WfState::completed);
    CHECK(v.workflows[0].completed == 10 * n);
    // The client's answer, from every gate.
    for (NodeId g : w.gates()) {
      auto r = w.status_of(id, g);
      REQUIRE(r.has_value());
      CHECK(r->found);
      CHECK(r->job.state == JobState::completed);
      CHECK(r->job.completed == 10 * n);
    }
    dcs_idle(w);
  }
  CHECK_ENDS(w);
}

TEST_CASE("AGG-01 totals are exact across datacenters") {
  World w(t3(12));
  boot(w);
  submit_ok(w, spread(job("agg", {wf("a", "ms=4000;ops=1000", 10, 2), wf("b", "ms=3000;ops=1000", 10, 2)}), 2));
  std::uint64_t max_seen = 0;
  bool monotonic = true;
  REQUIRE(w.run_until(
      [&] {
        auto r = w.status_of("agg", 0, 2s);  // the client's view (the world checks it never goes down)
        if (!r || !r->found) return false;
        monotonic = monotonic && r->job.completed >= max_seen;
        max_seen = std::max(max_seen, r->job.completed);
        return terminal(r->job.state);
      },
      40s));
  const JobView v = finish(w, "agg");
  CHECK(v.state == JobState::completed);
  CHECK(v.completed == 2 * 2 * 10 * 1000);  // two workflows of 10 VUs × 1000, in each of 2 datacenters
  std::uint64_t per_dc = 0;
  for (const auto& d : v.datacenters) {
    CHECK(d.completed == 2 * 10 * 1000);
    per_dc += d.completed;
  }
  CHECK(per_dc == v.completed);
  std::uint64_t per_wf = 0;
  for (const auto& x : v.workflows) {
    CHECK(x.completed == 2 * 10 * 1000);
    per_wf += x.completed;
  }
  CHECK(per_wf == v.completed);
  CHECK(max_seen <= v.completed);
  CHECK(monotonic);
  CHECK_ENDS(w);
}

TEST_CASE("AD-44 the retry budget and per-workflow cap are the job's, split over its datacenters") {
  World w(t3(19));
  boot(w);
  struct Case {
    const char* id;
    std::uint32_t budget, per_wf;  // asked
    std::uint32_t want_b, want_w;  // after the gate's clamp (50, 5)
  };
  for (const Case& c : {Case{"rb1", 5, 3, 5, 3}, Case{"rb2", 100, 9, 50, 5}, Case{"rb3", 1, 1, 1, 1}}) {
    INFO(c.id);
    JobSpec s = spread(job(c.id, {wf("noop", "ms=1000;ops=10")}), 2);
    s.retry_budget = c.budget;
    s.workflow_retries = c.per_wf;
    submit_ok(w, s);
    REQUIRE(w.run_until([&] { return w.dc_view(0, c.id) && w.dc_view(1, c.id); }, 10s));
    const JobView a = *w.dc_view(0, c.id), b = *w.dc_view(1, c.id);
    CHECK(a.retry_budget + b.retry_budget == c.want_b);
    CHECK(a.workflow_retries + b.workflow_retries == c.want_w);
    CHECK(std::max(a.retry_budget, b.retry_budget) - std::min(a.retry_budget, b.retry_budget) <= 1);
    const JobView v = finish(w, c.id);
    CHECK(v.state == JobState::completed);
    CHECK(v.retry_budget == c.want_b);  // the gate's view: the whole job's budget
  }
  CHECK_ENDS(w);
}

TEST_CASE("AD-22 a full datacenter is asked again at a growing interval; the share runs once it has room") {
  WorldOptions o = t3(61);
  o.dcs = 1;
  o.tune_manager = [](manager::ManagerConfig& c) { c.max_active_jobs = 1; };
  World w(o);
  boot(w);
  const std::string dc = w.dc_name(0);
  submit_ok(w, in(job("full-a", {wf("noop", "ms=8000;ops=10")}), {dc}));
  wait_running(w, "full-a");
  // Summed over the gates: full-b's owner is the ring's choice (only it sends the submits).
  auto sum = [&](std::uint64_t gate::GateStats::*f) {
    std::uint64_t n = 0;
    for (NodeId g : w.gates()) n += w.gate(g)->gate.stats().*f;
    return n;
  };
  const std::uint64_t backoffs0 = sum(&gate::GateStats::dc_backoffs), submits0 = sum(&gate::GateStats::dc_submits);
  submit_ok(w, in(job("full-b", {wf("noop", "ms=500;ops=5")}), {dc}));
  // The datacenter refuses full-b (overloaded: one active job at most) while full-a runs. At a fixed
  // request_timeout (500 ms) the gate would ask 8 times in 4 s; doubling, it asks at 0, 0.5, 1.5, 3.5 s.
  w.run_for(4s);
  REQUIRE_OK(w);
  CHECK(sum(&gate::GateStats::dc_backoffs) - backoffs0 >= 3);
  CHECK(sum(&gate::GateStats::dc_submits) - submits0 <= 5);
  CHECK(!w.view("full-b")->datacenters.at(0).accepted);
  // Once full-a ends, full-b is accepted at its next ask (at most 8 x request_timeout later) and runs.
  CHECK(finish(w, "full-a").state == JobState::completed);
  const JobView b = finish(w, "full-b");
  CHECK(b.state == JobState::completed);
  CHECK(b.completed == 5);
  CHECK_ENDS(w);
}

TEST_CASE("CAN-01 cancel mid-run") {
  World w(t3(13));
  boot(w);
  submit_ok(w, spread(job("c1", {wf("a", "ms=60000", 50, 2), wf("b", "ms=60000", 50, 2)}), 2));
  wait_running(w, "c1");
  w.run_for(2s);
  auto r = w.cancel("c1");
  REQUIRE(r.has_value());
  CHECK(r->success);
  CHECK(r->cancelled_workflow_count >= 1);
  const Instant acked = w.sim().now();
  std::size_t started = 0;
  for (std::size_t d = 0; d < w.dc_count(); ++d) started += w.starts(d, "c1", "a") + w.starts(d, "c1", "b");
  REQUIRE(w.run_until([&] { return w.running_in(0, "c1") == 0 && w.running_in(1, "c1") == 0; }, 5s));
  CHECK(w.sim().now() - acked <= 5s);
  const JobView v = finish(w, "c1", 10s);
  CHECK(v.state == JobState::cancelled);
  for (const auto& d : v.datacenters) CHECK(d.state == JobState::cancelled);
  REQUIRE(w.run_until([&] { return w.view("c1")->cancel_complete; }, 10s));
  CHECK(w.view("c1")->cancel_errors.empty());
  for (std::size_t d = 0; d < w.dc_count(); ++d) {
    auto dv = w.dc_view(d, "c1");
    REQUIRE(dv.has_value());
    CHECK(dv->state == JobState::cancelled);
  }
  std::size_t after = 0;
  for (std::size_t d = 0; d < w.dc_count(); ++d) after += w.starts(d, "c1", "a") + w.starts(d, "c1", "b");
  CHECK(after == started);  // nothing started after the cancel was acknowledged
  dcs_idle(w);
  CHECK_ENDS(w);
}

TEST_CASE("CAN-01b cancel before a datacenter accepted: its late submit is refused, nothing runs there") {
  World w(t3(30));
  boot(w);
  const auto a = w.managers(0);
  auto drop = w.sim().add_filter([&](NodeId from, NodeId to, const node::Bytes& m) {
    return from < 100 && std::find(a.begin(), a.end(), to) != a.end() && m.size() > 1 && m[0] == kRole &&
           m[1] == static_cast<std::uint8_t>(MsgType::submit);
  });
  REQUIRE(drop.ok());
  submit_ok(w, in(job("c1b", {wf("a", "ms=20000")}), {"dc-a", "dc-b"}));
  REQUIRE(w.run_until([&] { return w.running_in(1, "c1b") == 1; }, 10s));
  CHECK_FALSE(w.view("c1b")->datacenters.at(0).accepted);
  auto r = w.cancel("c1b");
  REQUIRE(r.has_value());
  CHECK(r->success);
  w.run_for(1s);
  REQUIRE(w.sim().remove_filter(*drop).ok());  // submits may reach dc-a again (none should run)
  const JobView v = finish(w, "c1b", 20s);
  CHECK(v.state == JobState::cancelled);
  CHECK(dcv(v, "dc-a").state == JobState::cancelled);
  CHECK(dcv(v, "dc-b").state == JobState::cancelled);
  w.run_for(3s);
  CHECK(w.starts(0, "c1b", "a") == 0);
  auto dv = w.dc_view(0, "c1b");  // a tombstone: a submit arriving now would be refused
  REQUIRE(dv.has_value());
  CHECK(dv->state == JobState::cancelled);
  CHECK_ENDS(w);
}

TEST_CASE("CAN-02 cancel is idempotent and respects terminal states") {
  World w(t3(14));
  boot(w);
  submit_ok(w, spread(job("twice", {wf("a", "ms=30000")}), 2));
  wait_running(w, "twice");
  auto a1 = w.cancel("twice");
  REQUIRE(a1.has_value());
  CHECK(a1->success);
  auto a2 = w.cancel("twice");
  REQUIRE(a2.has_value());
  CHECK(a2->success);
  CHECK(a2->already_cancelled);

  submit_ok(w, spread(job("done", {wf("a", "ms=300")}), 2));
  REQUIRE(finish(w, "done").state == JobState::completed);
  auto b = w.cancel("done");
  REQUIRE(b.has_value());
  CHECK_FALSE(b->success);
  CHECK(b->already_completed);
  w.run_for(1s);
  CHECK(w.view("done")->state == JobState::completed);

  auto c = w.cancel("nope");
  REQUIRE(c.has_value());
  CHECK_FALSE(c->success);
  CHECK(c->code == Err::not_found);

  submit_ok(w, spread(job("fenced", {wf("a", "ms=3000")}), 2));
  wait_running(w, "fenced");
  const std::uint64_t fence = w.view("fenced")->fence;
  REQUIRE(fence > 1);
  auto d = w.cancel("fenced", fence - 1);
  REQUIRE(d.has_value());
  CHECK_FALSE(d->success);
  CHECK(d->code == Err::fence);
  CHECK(finish(w, "fenced").state == JobState::completed);
  CHECK(finish(w, "twice").state == JobState::cancelled);
  CHECK_ENDS(w);
}

TEST_CASE("GTE-01 the gate leader (and the job's owner) dies mid-run: a peer takes the job over with a higher fence") {
  World w(t3(15));
  boot(w);
  const std::string g1 = owned_by(*w.gate_leader(), w.gates(), "g1-");
  submit_ok(w, spread(job(g1, {wf("a", "ms=8000;ops=80", 1, 1)}), 2));
  wait_running(w, g1);
  const NodeId old = *w.gate_leader();
  REQUIRE(w.view(g1)->owner == old);
  const std::uint64_t fence = w.view(g1)->fence;
  w.kill(old);
  std::optional<NodeId> now;
  REQUIRE(w.run_until([&] { return (now = w.gate_leader()).has_value(); }, 15s));
  CHECK(*now != old);
  REQUIRE(w.run_until([&] { return w.view(g1)->fence > fence; }, 10s));
  const JobView v = finish(w, g1, 30s);
  CHECK(v.state == JobState::completed);
  CHECK(v.fence > fence);
  CHECK(v.completed == 2 * 80);
  for (std::size_t d = 0; d < w.dc_count(); ++d) CHECK(w.starts(d, g1, "a") == 1);  // not restarted
  every_gate_reports(w, g1, JobState::completed);
  CHECK(w.gate_leader_changes == 2);  // the first leader, then exactly one new one
  w.restart(old);                     // it catches up and reports the same end
  REQUIRE(w.run_until(
      [&] {
        auto* n = w.gate(old);
        auto j = n == nullptr ? std::nullopt : n->gate.job(g1);
        return j && j->state == JobState::completed;
      },
      15s));
  every_gate_reports(w, g1, JobState::completed);
  // (b) a gate that neither leads nor owns the job dies: nothing moves (no takeover, the same fence).
  submit_ok(w, spread(job("g2", {wf("a", "ms=3000;ops=30", 1, 1)}), 2));
  wait_running(w, "g2");
  const NodeId lead = *w.gate_leader();
  const std::uint64_t f2 = w.view("g2")->fence;
  w.kill(other_than(w, {lead, w.view("g2")->owner}));
  const JobView v2 = finish(w, "g2", 20s);
  CHECK(v2.state == JobState::completed);
  CHECK(v2.fence == f2);
  CHECK(v2.completed == 2 * 30);
  CHECK(*w.gate_leader() == lead);
  CHECK_ENDS(w);
}

TEST_CASE("SUB-02 a retry after a lost ack returns the same job, to the same gate and to another") {
  World w(t3(16));
  boot(w);
  const auto spec = spread(job("s2", {wf("a", "ms=3000", 1, 1)}), 2);
  const NodeId l = *w.gate_leader();
  w.client().drop_submit_acks = 1;
  auto r = w.submit(spec, l);  // the first ack is lost: the retry goes to the same gate
  REQUIRE_OK(w);
  REQUIRE(r.ack.has_value());
  CHECK(r.ack->accepted);
  CHECK(r.ack->job_id == "s2");
  CHECK(r.attempts == 2);
  NodeId other = 0;
  for (NodeId g : w.gates())
    if (g != l) other = g;
  REQUIRE(w.run_until([&] { return w.gate(other)->gate.job("s2").has_value(); }, 5s));
  const auto b = submit_once(w, spec, other);  // (b) another gate (a follower) knows the key
  CHECK(b.accepted);
  CHECK(b.job_id == "s2");
  CHECK(finish(w, "s2").state == JobState::completed);
  for (std::size_t d = 0; d < w.dc_count(); ++d) {
    CHECK(w.starts(d, "s2", "a") == 1);
    for (NodeId m : w.managers(d))
      if (auto* n = w.mgr(m)) CHECK(n->mgr.ledger().jobs().size() == 1);
  }
  CHECK_ENDS(w);
}

TEST_CASE("SUB-06 a submit to a follower gate is accepted there (its entry forwarded to the leader), bounded") {
  World w(t3(17));
  boot(w);
  const NodeId l = *w.gate_leader();
  NodeId follower = 0;
  for (NodeId g : w.gates())
    if (g != l) follower = g;
  // (a) to a follower: accepted there, no redirect; the ring picks the owner.
  const auto first = submit_once(w, job("r1", {wf("a", "ms=500")}), follower);
  CHECK(first.accepted);
  CHECK(first.job_id == "r1");
  // Acked on the leader's word that the entry committed: until the follower learns the commit (the
  // leader's next append) a status there is redirected to the leader, never "no such job".
  const bool held_at_ack = w.gate(follower)->gate.job("r1").has_value();
  const auto st = w.status_of("r1", follower);
  REQUIRE(st.has_value());
  INFO("held at the ack: " << held_at_ack << ", status code " << cluster::name(st->code));
  CHECK((st->found || (st->code == Err::not_leader && st->leader == l)));
  REQUIRE(w.run_until([&] { return w.gate(follower)->gate.job("r1").has_value(); }, 2s));
  CHECK(w.gate(follower)->gate.stats().forwarded >= 1);
  CHECK(w.view("r1")->owner == gate::Ring(w.gates()).owner("r1"));
  CHECK(finish(w, "r1").state == JobState::completed);
  // (b) to a gate cut off from the others: a retryable refusal, never a loop, no job created.
  w.partition_gates({follower});
  REQUIRE(w.run_until([&] { return w.gate(follower)->gate.raft().leader_id() == 0; }, 10s));
  const auto cut = submit_once(w, job("r2", {wf("a", "ms=500")}), follower);
  CHECK_FALSE(cut.accepted);
  CHECK(retryable(cut.code));
  w.heal();
  w.run_for(3s);
  for (NodeId g : w.gates()) CHECK_FALSE(w.gate(g)->gate.job("r2").has_value());
  CHECK_ENDS(w);
}

TEST_CASE("SUB-06b the forwarded-entry table is bounded: full, a follower refuses retryably, records nothing") {
  WorldOptions o = t3(117);
  o.tune_gate = [](gate::GateConfig& c) { c.max_forwarded = 0; };
  World w(o);
  boot(w);
  const NodeId follower = other_than(w, {*w.gate_leader()});
  const auto refused = submit_once(w, job("fw1", {wf("a", "ms=500")}), follower);
  CHECK_FALSE(refused.accepted);
  CHECK(retryable(refused.code));
  CHECK(w.gate(follower)->gate.stats().forward_refused >= 1);
  CHECK(w.gate(follower)->gate.table_sizes().at("forwarded") == 0);
  w.run_for(2s);
  for (NodeId g : w.gates()) CHECK_FALSE(w.gate(g)->gate.job("fw1").has_value());
  REQUIRE_OK(w);
}

TEST_CASE("SUB-07 gate: an invalid submission is rejected with no side effects") {
  World w(t3(118));
  boot(w);
  const NodeId l = *w.gate_leader();
  const NodeId follower = other_than(w, {l});
  w.run_for(1s);
  const std::uint64_t last = w.gate(l)->gate.raft().last_index();
  for (NodeId to : {l, follower}) {
    INFO("to gate " << to);
    const auto bad = submit_once(w, in(job("bad1", {wf("a", "ms=500")}), {"dc-zz"}), to);
    CHECK_FALSE(bad.accepted);
    CHECK(bad.code == Err::invalid);
    CHECK(bad.error.find("unknown datacenter") != std::string::npos);
    const auto empty = submit_once(w, job("bad2", {}), to);
    CHECK_FALSE(empty.accepted);
    CHECK(empty.code == Err::invalid);
  }
  w.run_for(1s);
  for (NodeId g : w.gates()) {
    CHECK(w.gate(g)->gate.ledger().size() == 0);
    CHECK(w.gate(g)->gate.table_sizes().at("forwarded") == 0);
  }
  CHECK(w.gate(l)->gate.raft().last_index() == last);  // nothing was proposed
  CHECK_ENDS(w);
}

TEST_CASE("GTE-06 the owner gate dies: the ring's successor adopts the job with a higher fence, it completes") {
  World w(t3(119));
  boot(w);
  const NodeId lead = *w.gate_leader();
  const NodeId owner = other_than(w, {lead});
  const std::string id = owned_by(owner, w.gates(), "own-");
  submit_ok(w, spread(job(id, {wf("a", "ms=9000;ops=90", 1, 1)}), 2), lead);
  wait_running(w, id);
  REQUIRE(w.view(id)->owner == owner);
  const std::uint64_t fence = w.view(id)->fence;
  std::vector<NodeId> rest;
  for (NodeId g : w.gates())
    if (g != owner) rest.push_back(g);
  const NodeId heir = gate::Ring(rest).owner(id);
  w.kill(owner);
  REQUIRE(w.run_until([&] { return w.view(id)->owner == heir; }, 20s));
  REQUIRE_OK(w);
  CHECK(w.view(id)->fence == fence + 1);
  CHECK(w.gate(heir)->gate.stats().adoptions >= 1);
  CHECK(*w.gate_leader() == lead);  // leadership did not move
  // The datacenters learn the new fence.
  for (std::size_t d = 0; d < w.dc_count(); ++d)
    REQUIRE(w.run_until(
        [&] {
          auto v = w.dc_view(d, id);
          return v && v->fence == fence + 1;
        },
        10s));
  const JobView v = finish(w, id, 40s);
  CHECK(v.state == JobState::completed);
  CHECK(v.completed == 2 * 90);
  CHECK(v.fence == fence + 1);
  for (std::size_t d = 0; d < w.dc_count(); ++d) CHECK(w.starts(d, id, "a") == 1);  // not restarted
  w.restart(owner);  // it comes back as a plain member: the job stays with its heir
  REQUIRE(w.run_until(
      [&] {
        auto j = w.gate(owner)->gate.job(id);
        return j && j->owner == heir;
      },
      15s));
  CHECK_ENDS(w);
}

TEST_CASE("OWN-01 jobs spread over every live gate, each owned by the ring's choice") {
  World w(t3(120));
  boot(w);
  std::vector<std::string> ids;
  for (int i = 0; i < 24; ++i) {
    ids.push_back(fmt::format("spread-{}", i));
    submit_ok(w, job(ids.back(), {wf("a", "ms=300")}), w.gates()[static_cast<std::size_t>(i) % w.gates().size()]);
  }
  const gate::Ring ring(w.gates());
  std::set<NodeId> owners;
  for (const auto& id : ids) {
    const auto v = w.view(id);
    REQUIRE(v.has_value());
    CHECK(v->owner == ring.owner(id));
    owners.insert(v->owner);
  }
  CHECK(owners == std::set<NodeId>(w.gates().begin(), w.gates().end()));
  for (const auto& id : ids) CHECK(finish(w, id).state == JobState::completed);
  CHECK_ENDS(w);
}

TEST_CASE("OWN-02 a former owner's entry is refused by fence") {
  World w(t3(121));
  boot(w);
  const NodeId lead = *w.gate_leader();
  const NodeId owner = other_than(w, {lead});
  const std::string id = owned_by(owner, w.gates(), "stale-");
  submit_ok(w, spread(job(id, {wf("a", "ms=10000;ops=100", 1, 1)}), 2), lead);
  wait_running(w, id);
  const std::uint64_t fence = w.view(id)->fence;
  w.partition_gates({owner});  // it loses the quorum: it stops; the others adopt after member_grace
  REQUIRE(w.run_until([&] { return w.gate(lead)->gate.job(id)->fence > fence; }, 20s));
  REQUIRE(w.run_until([&] { return !w.gate(owner)->gate.in_quorum(); }, 10s));
  const std::uint64_t stale_before = w.gate(lead)->gate.stats().stale_proposals;
  w.heal();
  // The old owner's checkpoint with its old fence reaches the leader: refused, nothing changes.
  gate::GateEntry e;
  e.op = gate::GateOp::checkpoint;
  e.job_id = id;
  e.fence = fence;
  e.counts.push_back(gate::ShareCount{0, 1'000'000, 0});
  cluster::GateProposal m;
  m.req = 424242;
  m.entry = gate::encode_entry(e);
  node::Bytes bytes{static_cast<std::uint8_t>(kRole)};
  const node::Bytes body = cluster::encode(MsgType::gate_proposal, m);
  bytes.insert(bytes.end(), body.begin(), body.end());
  w.gate(owner)->outbox.emplace_back(lead, bytes);
  REQUIRE(w.run_until([&] { return w.gate(lead)->gate.stats().stale_proposals > stale_before; }, 5s));
  CHECK(w.gate(lead)->gate.ledger().job(id)->shares[0].completed < 1'000'000);
  REQUIRE(w.run_until(
      [&] {
        auto j = w.gate(owner)->gate.job(id);
        return j && j->fence > fence;
      },
      15s));
  const JobView v = finish(w, id, 40s);
  CHECK(v.state == JobState::completed);
  CHECK(v.completed == 2 * 100);
  CHECK(v.owner != owner);
  CHECK_ENDS(w);
}

TEST_CASE("OWN-03 a gate joining takes no running job (ownership is sticky)") {
  World w(t3(122));
  boot(w);
  const NodeId lead = *w.gate_leader();
  const NodeId late = other_than(w, {lead});
  w.kill(late);
  std::vector<NodeId> rest;
  for (NodeId g : w.gates())
    if (g != late) rest.push_back(g);
  wait_members(w, rest);
  // Jobs the ring would give the late gate once it is back go to the others meanwhile.
  std::vector<std::string> ids;
  for (int i = 0; i < 2; ++i) {
    ids.push_back(owned_by(late, w.gates(), fmt::format("sticky{}-", i)));
    submit_ok(w, spread(job(ids.back(), {wf("a", "ms=8000;ops=80", 1, 1)}), 2), lead);
  }
  std::map<std::string, std::pair<NodeId, std::uint64_t>> before;
  for (const auto& id : ids) {
    wait_running(w, id);
    const auto v = w.view(id);
    CHECK(v->owner != late);
    before[id] = {v->owner, v->fence};
  }
  w.restart(late);
  wait_members(w, w.gates());
  w.run_for(3s);
  for (const auto& id : ids) {
    const auto v = w.view(id);
    CHECK(v->owner == before[id].first);
    CHECK(v->fence == before[id].second);
    const JobView end = finish(w, id, 30s);
    CHECK(end.state == JobState::completed);
    CHECK(end.owner == before[id].first);
  }
  // A new job can go to it now.
  const std::string fresh = owned_by(late, w.gates(), "fresh-");
  submit_ok(w, job(fresh, {wf("a", "ms=300")}), lead);
  CHECK(w.view(fresh)->owner == late);
  CHECK(finish(w, fresh).state == JobState::completed);
  CHECK_ENDS(w);
}

TEST_CASE("TMO-02 a timeout across datacenters is decided by the gate") {
  WorldOptions o = t3(18);
  o.plan_in_dc = [](std::size_t dc, const worker::ExecSpec&) { return dc == 0 ? std::string("hang") : std::string(); };
  World w(o);
  boot(w);
  auto spec = in(job("t2", {wf("a", "ms=1000", 1, 1)}), {"dc-a", "dc-b"});
  spec.timeout_ms = 10'000;
  submit_ok(w, spec);
  const Instant t0 = w.sim().now();
  const JobView v = finish(w, "t2", 30s);
  CHECK(w.sim().now() - t0 <= 10s + 500ms + 5s);  // timeout + check interval + cancel propagation
  CHECK(v.state == JobState::timeout);
  CHECK(dcv(v, "dc-a").state == JobState::timeout);
  CHECK(dcv(v, "dc-b").state == JobState::completed);
  // No datacenter keeps running after the decision (the hung execution is forced off its cores).
  REQUIRE(w.run_until([&] { return w.running_in(0, "t2") == 0 && w.running_in(1, "t2") == 0; }, 15s));
  auto a = w.dc_view(0, "t2");
  REQUIRE(a.has_value());
  CHECK(terminal(a->state));
  CHECK(a->state != JobState::completed);
  CHECK_ENDS(w);
}

TEST_CASE("MGR-06 a datacenter's whole manager tier is lost mid-run") {
  const bool best_effort = GENERATE(false, true);
  INFO("best effort " << best_effort);
  WorldOptions o = t3(best_effort ? 20 : 19);
  o.plan_in_dc = [](std::size_t dc, const worker::ExecSpec&) {
    return dc == 0 ? std::string("ms=40000") : std::string();
  };
  World w(o);
  boot(w);
  auto spec = in(job("m6", {wf("a", "ms=8000;ops=50", 1, 1)}), {"dc-a", "dc-b"});
  if (best_effort) spec.min_datacenters = 1;
  submit_ok(w, spec);
  wait_running(w, "m6");
  w.kill_dc_managers(0);
  REQUIRE(w.run_until(
      [&] {
        for (NodeId g : w.gates())
          for (const auto& d : w.gate(g)->gate.datacenters())
            if (d.name == "dc-a" && d.health != DcHealth::unhealthy) return false;
        return true;
      },
      10s));
  const JobView v = finish(w, "m6", 40s);
  CHECK(dcv(v, "dc-a").state == JobState::failed);
  CHECK(dcv(v, "dc-b").state == JobState::completed);
  CHECK(dcv(v, "dc-b").completed == 50);
  CHECK(v.state == (best_effort ? JobState::partial : JobState::failed));
  CHECK_FALSE(v.error.empty());
  // The gate leader changes before dc-a is back: the new one stops the share too.
  const NodeId old = *w.gate_leader();
  w.kill(old);
  REQUIRE(w.run_until([&] { return w.gate_leader().has_value(); }, 15s));
  w.restart_dc_managers(0);
  REQUIRE(w.run_until(
      [&] {
        auto a = w.dc_view(0, "m6");
        return a && terminal(a->state);
      },
      20s));
  auto a = w.dc_view(0, "m6");
  REQUIRE(a.has_value());
  CHECK(a->state == JobState::cancelled);  // the gate stops the share it declared failed once dc-a is back
  w.restart(old);
  CHECK_ENDS(w);
}

TEST_CASE("RTE-01 routing avoids an unhealthy datacenter") {
  World w(t3(21));
  boot(w);
  const NodeId l = *w.gate_leader();
  auto unhealthy = [&](const std::string& name) {
    return w.run_until(
        [&] {
          for (const auto& d : w.gate(l)->gate.datacenters())
            if (d.name == name) return d.health == DcHealth::unhealthy;
          return false;
        },
        10s);
  };
  w.kill_dc_managers(0);
  REQUIRE(unhealthy("dc-a"));
  // (a) one datacenter asked: it lands in the healthy one.
  submit_ok(w, spread(job("ra", {wf("a", "ms=500")}), 1));
  const JobView a = finish(w, "ra");
  CHECK(a.state == JobState::completed);
  REQUIRE(a.datacenters.size() == 1);
  CHECK(a.datacenters[0].name == "dc-b");
  // (b) the unhealthy datacenter named explicitly: a clear error at once.
  const auto b = submit_once(w, in(job("rb", {wf("a", "ms=500")}), {"dc-a"}), l);
  CHECK_FALSE(b.accepted);
  CHECK(b.code == Err::unavailable);
  CHECK(b.error.find("dc-a") != std::string::npos);
  CHECK(b.error.find("unavailable") != std::string::npos);
  // (c) every datacenter down: no usable datacenter.
  w.kill_dc_managers(1);
  REQUIRE(unhealthy("dc-b"));
  const auto c = submit_once(w, spread(job("rc", {wf("a", "ms=500")}), 1), l);
  CHECK_FALSE(c.accepted);
  CHECK(c.error.find("no usable datacenter") != std::string::npos);
  w.run_for(1s);
  for (NodeId g : w.gates()) {
    CHECK_FALSE(w.gate(g)->gate.job("rb").has_value());
    CHECK_FALSE(w.gate(g)->gate.job("rc").has_value());
  }
  w.restart_dc_managers(0);
  w.restart_dc_managers(1);
  CHECK_ENDS(w);
}

TEST_CASE("WAL-01 an acked job survives the gate leader's crash and a crash of every gate") {
  SECTION("(a) the gate leader dies right after the ack") {
    World w(t3(22));
    boot(w);
    const NodeId l = *w.gate_leader();
    submit_ok(w, spread(job("w1a", {wf("a", "ms=3000", 1, 1)}), 2), l);
    w.kill(l);
    // Found by every live gate once a new leader committed (a follower's applied ledger may lag
    // the acknowledged entry until then: see the report), and never missing after that.
    std::set<NodeId> found;
    for (int i = 0; i < 20; ++i) {
      for (NodeId g : w.gates()) {
        if (w.gate(g) == nullptr) continue;
        auto r = w.status_of("w1a", g);
        REQUIRE(r.has_value());
        if (r->found) found.insert(g);
        INFO("gate " << g << " at " << w.sim().now().count() / 1'000'000 << " ms");
        CHECK((r->found || found.count(g) == 0));
      }
      w.run_for(250ms);
    }
    CHECK(found.size() == 2);
    CHECK(finish(w, "w1a", 40s).state == JobState::completed);
    w.restart(l);
    CHECK_ENDS(w);
  }
  SECTION("(b) every gate dies once the datacenters took the job; they come back") {
    World w(t3(23));
    boot(w);
    submit_ok(w, spread(job("w1b", {wf("a", "ms=8000;ops=80", 1, 1)}), 2));
    wait_running(w, "w1b");
    for (NodeId g : w.gates()) w.kill(g);
    w.run_for(3s);
    // The managers keep running the job while no gate is up.
    for (std::size_t d = 0; d < w.dc_count(); ++d) {
      CHECK(w.running_in(d, "w1b") == 1);
      auto v = w.dc_view(d, "w1b");
      REQUIRE(v.has_value());
      CHECK(v->state == JobState::running);
    }
    for (NodeId g : w.gates()) w.restart(g);
    const JobView v = finish(w, "w1b", 40s);
    CHECK(v.state == JobState::completed);
    CHECK(v.completed == 2 * 80);
    for (std::size_t d = 0; d < w.dc_count(); ++d) CHECK(w.starts(d, "w1b", "a") == 1);
    every_gate_reports(w, "w1b", JobState::completed);
    CHECK_ENDS(w);
  }
}

TEST_CASE("WAL-04 idempotency survives manager and gate restarts") {
  World w(t3(29));
  boot(w);
  const auto spec = spread(job("w4", {wf("a", "ms=6000;ops=60", 1, 1)}), 2);
  const NodeId first = *w.gate_leader();
  submit_ok(w, spec, first);
  wait_running(w, "w4");
  // Every manager of dc-a, then every gate, killed and restarted with their data (cold caches).
  w.kill_dc_managers(0);
  w.run_for(500ms);
  w.restart_dc_managers(0);
  for (NodeId g : w.gates()) w.kill(g);
  w.run_for(500ms);
  for (NodeId g : w.gates()) w.restart(g);
  REQUIRE(w.run_until([&] { return w.gate_leader().has_value(); }, 15s));
  NodeId other = 0;
  for (NodeId g : w.gates())
    if (g != first) other = g;
  auto again = w.submit(spec, other);
  REQUIRE_OK(w);
  REQUIRE(again.ack.has_value());
  CHECK(again.ack->accepted);
  CHECK(again.ack->job_id == "w4");
  const JobView v = finish(w, "w4", 40s);
  CHECK(v.state == JobState::completed);
  for (std::size_t d = 0; d < w.dc_count(); ++d) {
    INFO(w.dc_name(d));
    CHECK(w.starts(d, "w4", "a") == 1);
    for (NodeId m : w.managers(d))
      if (auto* n = w.mgr(m)) CHECK(n->mgr.ledger().jobs().size() == 1);
  }
  CHECK_ENDS(w);
}

TEST_CASE("WAL-05 a cancel is durable across the gate leader's and the job's manager's crash") {
  World w(t3(24));
  boot(w);
  submit_ok(w, spread(job("w5", {wf("a", "ms=60000", 2, 2)}), 2));
  wait_running(w, "w5");
  const NodeId l = *w.gate_leader();
  const NodeId m = *w.dc_leader(0);
  auto r = w.cancel("w5");
  REQUIRE(r.has_value());
  REQUIRE(r->success);
  w.kill(l);
  w.kill(m);
  const JobView v = finish(w, "w5", 30s);
  CHECK(v.state == JobState::cancelled);
  REQUIRE(w.run_until([&] { return w.running_in(0, "w5") == 0 && w.running_in(1, "w5") == 0; }, 20s));
  w.restart(l);
  w.restart(m);
  for (std::size_t d = 0; d < w.dc_count(); ++d)
    REQUIRE(w.run_until(
        [&] {
          auto dv = w.dc_view(d, "w5");
          return dv && terminal(dv->state);
        },
        20s));
  for (std::size_t d = 0; d < w.dc_count(); ++d) CHECK(w.dc_view(d, "w5")->state == JobState::cancelled);
  CHECK_ENDS(w);
}

TEST_CASE("GTE-03 the gate leader (and the job's owner) in a minority partition") {
  World w(t3(25));
  boot(w);
  const std::string p1 = owned_by(*w.gate_leader(), w.gates(), "p1-");
  submit_ok(w, spread(job(p1, {wf("a", "ms=10000;ops=100", 1, 1)}), 2));
  wait_running(w, p1);
  const NodeId old = *w.gate_leader();
  REQUIRE(w.view(p1)->owner == old);
  const std::uint64_t fence = w.view(p1)->fence;
  w.partition_gates({old});
  NodeId fresh = 0;
  REQUIRE(w.run_until(
      [&] {
        for (NodeId g : w.gates())
          if (g != old && w.gate(g)->gate.is_leader()) fresh = g;
        return fresh != 0 && !w.gate(old)->gate.is_leader();
      },
      15s));
  // The cut-off gate refuses new jobs with a retryable error; it does not record them.
  const auto refused = submit_once(w, job("p2", {wf("a", "ms=500")}), old);
  CHECK_FALSE(refused.accepted);
  CHECK(retryable(refused.code));
  REQUIRE(w.run_until([&] { return w.gate(fresh)->gate.job(p1)->fence > fence; }, 10s));
  // The datacenters learn the new fence; a command with the old one is refused there.
  const std::uint64_t taken = w.gate(fresh)->gate.job(p1)->fence;
  for (std::size_t d = 0; d < w.dc_count(); ++d) {
    INFO(w.dc_name(d));
    REQUIRE(w.run_until(
        [&] {
          auto v = w.dc_view(d, p1);
          return v && v->fence == taken;
        },
        10s));
    const std::uint64_t req = w.client().gate_cancel(*w.dc_leader(d), p1, fence);
    const simdc::SimClient::Reply* r = nullptr;
    REQUIRE(w.run_until([&] { return (r = w.client().reply(req)) != nullptr; }, 5s));
    CHECK_FALSE(r->cancel.success);
    CHECK(r->cancel.code == Err::fence);
  }
  REQUIRE(w.run_until([&] { return terminal(w.gate(fresh)->gate.job(p1)->state); }, 30s));
  CHECK(w.gate(fresh)->gate.job(p1)->state == JobState::completed);
  w.heal();
  const JobView v = finish(w, p1, 20s);
  CHECK(v.state == JobState::completed);
  CHECK(v.completed == 2 * 100);
  for (NodeId g : w.gates()) CHECK_FALSE(w.gate(g)->gate.job("p2").has_value());
  every_gate_reports(w, p1, JobState::completed);
  CHECK_ENDS(w);
}

// A leader handing over (libraft names no leader while the transfer runs: RaftNode allows it).
TEST_CASE("GTE-05 hand_off moves the gate's jobs and leadership; jobs continue, none lost", "[gate]") {
  World w(t3(26));
  boot(w);
  submit_ok(w, spread(job("h1", {wf("a", "ms=6000;ops=60", 1, 1)}), 2));
  submit_ok(w, spread(job("h2", {wf("a", "ms=4000;ops=40", 1, 1)}), 1));
  wait_running(w, "h1");
  const NodeId old = *w.gate_leader();
  w.gate(old)->hand_off_requested = true;
  w.run_until([&] { return w.gate(old)->handed_off; }, 10s);
  REQUIRE_OK(w);
  REQUIRE(w.gate(old)->handed_off);
  for (const auto& [id, j] : w.gate(old)->gate.ledger().jobs()) CHECK(j.owner != old);  // its jobs went first
  std::optional<NodeId> now;
  REQUIRE(w.run_until([&] { return (now = w.gate_leader()).has_value() && *now != old; }, 10s));
  w.kill(old);  // it stops once it handed off
  const JobView a = finish(w, "h1", 30s);
  const JobView b = finish(w, "h2", 30s);
  CHECK(a.state == JobState::completed);
  CHECK(a.completed == 2 * 60);
  CHECK(b.state == JobState::completed);
  CHECK(b.completed == 40);
  for (std::size_t d = 0; d < w.dc_count(); ++d) CHECK(w.starts(d, "h1", "a") == 1);
  w.restart(old);
  CHECK_ENDS(w);
}

TEST_CASE("GTE-05b hand_off with a gate dead: leadership goes to the live gate, never to the dead one", "[gate]") {
  // libraft left to choose (a transfer to 0) may pick a voter that is down; the stopping leader must
  // pick among the gates SWIM sees alive, so the hand-off ends in one transfer.
  for (int round = 0; round < 2; ++round) {
    INFO("round " << round);
    World w(t3(40 + static_cast<std::uint64_t>(round)));
    boot(w);
    const NodeId old = *w.gate_leader();
    std::vector<NodeId> others;
    for (NodeId g : w.gates())
      if (g != old) others.push_back(g);
    // Round 0 kills the lower id of the two followers, round 1 the higher: the configuration's
    // order does not decide.
    const NodeId dead = round == 0 ? std::min(others[0], others[1]) : std::max(others[0], others[1]);
    const NodeId live = dead == others[0] ? others[1] : others[0];
    w.kill(dead);
    REQUIRE(w.run_until([&] { return w.gate(old)->gate.live_gates().size() == 2; }, 20s));  // old and live
    submit_ok(w, spread(job(round == 0 ? "d0" : "d1", {wf("a", "ms=3000;ops=30", 1, 1)}), 1));
    w.gate(old)->hand_off_requested = true;
    REQUIRE(w.run_until([&] { return w.gate(old)->handed_off; }, 10s));
    std::optional<NodeId> now;
    // One transfer: well within one election timeout of the live gate's catching up.
    REQUIRE(w.run_until([&] { return (now = w.gate_leader()).has_value() && *now != old; }, 3s));
    CHECK(*now == live);
    REQUIRE_OK(w);
  }
}

TEST_CASE("The shares pass runs in slices: with 2 jobs a slice, every job of 7 is stepped and completes", "[gate]") {
  WorldOptions o = t3(42);
  o.tune_gate = [](gate::GateConfig& c) { c.shares_slice = 2; };
  World w(o);
  boot(w);
  std::vector<std::string> ids;
  for (int i = 0; i < 7; ++i) ids.push_back(fmt::format("slice{}", i));
  for (std::size_t i = 0; i < ids.size(); ++i)
    submit_ok(w, spread(job(ids[i], {wf("a", "ms=500;ops=10", 1, 1)}), 1 + i % 2));
  for (const auto& id : ids) {
    INFO(id);
    const JobView v = finish(w, id, 30s);
    CHECK(v.state == JobState::completed);
  }
  // Every gate walks all 7 ledger jobs each tick: 4 slices (2 + 2 + 2 + 1) a pass, so over 2 s (20
  // ticks) at least 60 slices on each gate in quorum.
  std::map<NodeId, std::uint64_t> before;
  for (NodeId g : w.gates()) before[g] = w.gate(g)->gate.stats().share_slices;
  w.run_for(2s);
  for (NodeId g : w.gates()) {
    INFO("gate " << g);
    CHECK(w.gate(g)->gate.stats().share_slices - before[g] >= 60);
  }
  CHECK_ENDS(w);
}

TEST_CASE("RTE-02 datacenter health buckets are visible and drive routing") {
  WorldOptions o = t3(27);
  o.dcs = 3;
  o.workers = 3;
  o.cores = 1;
  World w(o);
  boot(w);
  auto health = [&](const std::string& dc) {
    auto l = w.gate_leader();
    if (!l) return DcHealth::unhealthy;
    for (const auto& d : w.gate(*l)->gate.datacenters())
      if (d.name == dc) return d.health;
    return DcHealth::unhealthy;
  };
  auto wait_health = [&](const std::string& dc, DcHealth h) {
    INFO(dc << " to become " << name(h));
    REQUIRE(w.run_until([&] { return health(dc) == h; }, 15s));
  };
  // (a) every core of dc-b busy: busy.
  submit_ok(w, in(job("fill", {wf("a", "ms=60000"), wf("b", "ms=60000"), wf("c", "ms=60000")}), {"dc-b"}));
  wait_health("dc-b", DcHealth::busy);
  // (b) most of dc-c's workers dead: degraded.
  w.kill(w.workers(2)[0]);
  w.kill(w.workers(2)[1]);
  wait_health("dc-c", DcHealth::degraded);
  submit_ok(w, spread(job("one", {wf("a", "ms=300")}), 1));
  CHECK(w.view("one")->datacenters.at(0).name == "dc-a");  // healthy first
  submit_ok(w, spread(job("two", {wf("a", "ms=300")}), 2));
  {
    auto v = *w.view("two");
    std::vector<std::string> names;
    for (const auto& d : v.datacenters) names.push_back(d.name);
    std::sort(names.begin(), names.end());
    CHECK(names == std::vector<std::string>{"dc-a", "dc-b"});  // then busy, before degraded
  }
  // (c) every dc-c worker dead: unhealthy, never picked.
  w.kill(w.workers(2)[2]);
  wait_health("dc-c", DcHealth::unhealthy);
  const auto three = submit_once(w, spread(job("three", {wf("a", "ms=300")}), 3), *w.gate_leader());
  CHECK_FALSE(three.accepted);
  CHECK(three.code == Err::unavailable);
  // Faults removed: every datacenter healthy again.
  REQUIRE(w.cancel("fill").has_value());
  for (NodeId x : w.workers(2)) w.restart(x);
  for (const char* n : {"dc-a", "dc-b", "dc-c"}) wait_health(n, DcHealth::healthy);
  finish(w, "one");
  finish(w, "two");
  CHECK_ENDS(w);
}

TEST_CASE("SUB-05 a submission storm gives unique ids, an answer to each, and loses nothing") {
  World w(t3(31));
  boot(w);
  // 150 key-less submissions within 1.5 s, spread over the three gates; a redirect is followed once.
  constexpr int kJobs = 150;
  std::map<std::uint64_t, JobSpec> sent;  // request -> job
  for (int i = 0; i < kJobs; ++i) {
    JobSpec s = job(fmt::format("storm-{}", i), {wf("a", "ms=300;ops=3", 1, 1)});
    s.idempotency_key.clear();
    const NodeId to = w.gates()[static_cast<std::size_t>(i) % w.gates().size()];
    sent.emplace(w.client().submit(to, s), s);
    if (i % 10 == 9) w.run_for(100ms);
  }
  std::set<std::string> accepted;
  std::size_t refused = 0;
  std::map<std::uint64_t, JobSpec> again;
  REQUIRE(w.run_until(
      [&] {
        for (const auto& [req, s] : sent)
          if (w.client().reply(req) == nullptr) return false;
        return true;
      },
      20s));
  for (const auto& [req, s] : sent) {
    const auto& a = w.client().reply(req)->submit;
    if (a.accepted) {
      CHECK(accepted.insert(a.job_id).second);
    } else if (a.code == Err::not_leader && a.leader != 0) {
      again.emplace(w.client().submit(a.leader, s), s);
    } else {
      INFO(a.error);
      CHECK(retryable(a.code));  // an explicit, retryable refusal (overloaded, unavailable) is an answer too
      CHECK((a.code != Err::overloaded || a.retry_after_ms > 0));
      ++refused;
    }
  }
  REQUIRE(w.run_until(
      [&] {
        for (const auto& [req, s] : again)
          if (w.client().reply(req) == nullptr) return false;
        return true;
      },
      20s));
  for (const auto& [req, s] : again) {
    const auto& a = w.client().reply(req)->submit;
    if (a.accepted)
      CHECK(accepted.insert(a.job_id).second);
    else
      ++refused;
  }
  CHECK(accepted.size() + refused == static_cast<std::size_t>(kJobs));
  CHECK(accepted.size() >= static_cast<std::size_t>(kJobs) / 2);
  for (const auto& id : accepted) {
    const JobView v = finish(w, id, 60s);
    CHECK(v.state == JobState::completed);
  }
  CHECK_ENDS(w);
}

TEST_CASE("MEM-06 two datacenters lost at once are flagged as a partition; a short one fails no job") {
  WorldOptions o = t3(32);
  o.dcs = 3;
  World w(o);
  boot(w);
  submit_ok(w, spread(job("m06", {wf("a", "ms=9000;ops=90", 1, 1)}), 3));
  wait_running(w, "m06");
  const NodeId leader = *w.gate_leader();
  const auto before = w.gate(leader)->gate.stats();
  std::vector<NodeId> cut = w.dc_nodes(0);
  for (NodeId n : w.dc_nodes(1)) cut.push_back(n);
  w.sim().partition(w.gates(), cut);
  // Both become unusable within dc_stale of each other: one flag, not two datacenter failures.
  REQUIRE(
      w.run_until([&] { return w.gate(leader)->gate.stats().correlated_failures > before.correlated_failures; }, 10s));
  // Healed before dc_grace (4 s) ran out for the shares: the job goes on everywhere.
  w.heal();
  REQUIRE(w.run_until([&] { return w.gate(leader)->gate.stats().partitions_healed > before.partitions_healed; }, 10s));
  CHECK(w.gate(leader)->gate.stats().correlated_failures == before.correlated_failures + 1);
  const JobView v = finish(w, "m06", 40s);
  CHECK(v.state == JobState::completed);
  for (const auto& d : v.datacenters) {
    CHECK(d.state == JobState::completed);
    CHECK(d.completed == 90);
  }
  CHECK_ENDS(w);
}

TEST_CASE("AGG-04 a datacenter's leading manager dies mid-run: totals never go back and end exact") {
  World w(t3(33));
  boot(w);
  submit_ok(w, spread(job("a4", {wf("a", "ms=6000;ops=600", 2, 2)}), 2));
  wait_running(w, "a4");
  REQUIRE(w.run_until(
      [&] {
        auto v = w.view("a4");
        return v && v->completed > 0;
      },
      10s));
  const auto shown = w.view("a4")->completed;
  const auto l = w.dc_leader(0);
  REQUIRE(l.has_value());
  w.kill(*l);  // the world checks after every event that the totals gates show never go down
  const JobView v = finish(w, "a4", 60s);
  CHECK(v.state == JobState::completed);
  CHECK(v.completed >= shown);
  CHECK(v.completed == 2 * 2 * 600);  // 2 VUs x 600 in each datacenter (a new manager leader adopts the part)
  for (const auto& d : v.datacenters) CHECK(d.completed == 2 * 600);
  w.restart(*l);
  CHECK_ENDS(w);
}

TEST_CASE("AGG-05 live windows through the gate merge both datacenters exactly") {
  World w(with_windows(t3(35)));
  boot(w);
  // Bad input changes nothing: an unknown job, and a follower's redirect to the owner.
  const NodeId leader = *w.gate_leader();
  CHECK(watch_once(w, leader, "nope").code == Err::not_found);
  submit_ok(w, spread(job("w5", {wf("a", "ms=6000;ops=600", 2, 2)}), 2));
  // Every gate has applied the job (and its owner) before the redirect is checked.
  REQUIRE(w.run_until(
      [&] {
        for (NodeId g : w.gates())
          if (!w.gate(g)->gate.job("w5")) return false;
        return true;
      },
      5s));
  const NodeId owner = w.view("w5")->owner;
  for (NodeId g : w.gates()) {
    if (g == owner) continue;
    const WatchReply r = watch_once(w, g, "w5", 0, 0, 0);
    CHECK(r.code == Err::not_leader);
    CHECK(r.leader == owner);
    CHECK(r.workflows.empty());
  }
  wait_running(w, "w5");
  Watcher v("w5");
  // A client watching: once a second until the job ended and the gate has every window of both.
  REQUIRE(w.run_until(
      [&] {
        v.poll(w);
        auto jv = w.view("w5");
        return jv && terminal(jv->state) && v.sum() == 2 * 2 * 600;
      },
      60s));
  for (const auto& e : v.violations) FAIL_CHECK(e);
  CHECK(w.gate(leader)->gate.table_sizes().at("watched_jobs") == 1);
  CHECK(w.gate(leader)->gate.stats().windows_merged > 0);
  CHECK(v.windows.size() >= 4);
  // Exact: the gate's windows sum to each datacenter's windows, and to what the workers sent.
  const std::uint64_t dc0 = dc_window_sum(w, 0, "w5"), dc1 = dc_window_sum(w, 1, "w5");
  CHECK(dc0 == 2 * 600);
  CHECK(dc1 == 2 * 600);
  CHECK(v.sum() == dc0 + dc1);
  CHECK(requests_sent(w, 0, "w5") + requests_sent(w, 1, "w5") == v.sum());
  CHECK(v.totals == v.sum());
  // Per datacenter: its share, its own totals.
  REQUIRE(v.dcs.size() == 2);
  std::uint64_t per_dc = 0;
  for (const auto& d : v.dcs) {
    CHECK(requests_of(d.totals) == 2 * 600);
    CHECK(d.windows > 0);
    per_dc += requests_of(d.totals);
  }
  CHECK(per_dc == v.sum());
  // A workflow that starts later (b after a) is taken from its first window too.
  submit_ok(w, spread(job("w7", {wf("a", "ms=3000;ops=300"), wf("b", "ms=3000;ops=200", 1, 1, {"a"})}), 2));
  std::map<std::string, std::uint64_t> per_wf;
  REQUIRE(w.run_until(
      [&] {
        const WatchReply r = watch_once(w, leader, "w7", 0, 1000);
        per_wf.clear();
        for (const auto& f : r.workflows) {
          std::uint64_t n = 0;
          for (const auto& ww : f.windows) n += requests_of(ww.merged);
          per_wf[f.name] = n;
        }
        auto jv = w.view("w7");
        return jv && terminal(jv->state) && per_wf["a"] == 2 * 300 && per_wf["b"] == 2 * 200;
      },
      60s));
  CHECK(per_wf["a"] == dc_window_sum(w, 0, "w7", "a") + dc_window_sum(w, 1, "w7", "a"));
  CHECK(per_wf["b"] == dc_window_sum(w, 0, "w7", "b") + dc_window_sum(w, 1, "w7", "b"));
  // Nobody asks any more: the gate stops following the jobs (watch_linger) and frees their windows.
  REQUIRE(w.run_until([&] { return w.gate(leader)->gate.table_sizes().at("watched_jobs") == 0; }, 20s));
  CHECK(w.gate(leader)->gate.table_sizes().at("window_mergers") == 0);
  CHECK(w.gate(leader)->gate.table_sizes().at("watch_requests") == 0);
  CHECK_ENDS(w);
}

TEST_CASE(
    "AGG-05b a datacenter's leader fails over mid-run: the gate's live view neither double counts nor goes back") {
  World w(with_windows(t3(36)));
  boot(w);
  submit_ok(w, spread(job("w6", {wf("a", "ms=8000;ops=800", 2, 2)}), 2));
  wait_running(w, "w6");
  Watcher v("w6");
  REQUIRE(w.run_until(
      [&] {
        v.poll(w);
        return v.windows.size() >= 3;
      },
      20s));
  const auto l = w.dc_leader(0);
  REQUIRE(l.has_value());
  w.kill(*l);
  REQUIRE(w.run_until(
      [&] {
        v.poll(w);
        auto jv = w.view("w6");
        return jv && terminal(jv->state) && v.max_dcs == 2;
      },
      60s));
  // The job ended: a few more looks until both datacenters gave their last windows.
  w.run_until(
      [&] {
        v.poll(w);
        return v.dcs.size() == 2 &&
               std::all_of(v.dcs.begin(), v.dcs.end(), [](const WatchDc& d) { return terminal(d.state); });
      },
      10s);
  v.poll(w);
  for (const auto& e : v.violations) FAIL_CHECK(e);
  // Windows are leader soft state in a datacenter (docs/windows.md): the new leader's series holds
  // what it received. Never more than was sent, and the other datacenter's windows all came.
  const std::uint64_t sent = requests_sent(w, 0, "w6") + requests_sent(w, 1, "w6");
  CHECK(sent == 2 * 2 * 800);
  CHECK(v.sum() <= sent);
  CHECK(v.sum() >= 2 * 800);
  CHECK(v.totals >= v.sum());
  CHECK(v.totals <= sent);
  const JobView jv = finish(w, "w6");
  CHECK(jv.completed == 2 * 2 * 800);  // the final results are exact regardless
  w.restart(*l);
  CHECK_ENDS(w);
}

TEST_CASE("AGG-05c a gate without a window merger answers watch queries with a clear error, changes nothing") {
  World w(t3(37));
  boot(w);
  submit_ok(w, job("w8", {wf("a", "ms=500")}));
  const NodeId leader = *w.gate_leader();
  const WatchReply r = watch_once(w, leader, "w8");
  CHECK(r.code == Err::invalid);
  CHECK(r.error.find("merges no live windows") != std::string::npos);
  CHECK(r.workflows.empty());
  CHECK(w.gate(leader)->gate.table_sizes().at("watched_jobs") == 0);
  CHECK(finish(w, "w8").state == JobState::completed);
  CHECK_ENDS(w);
}

TEST_CASE("RES-G per-job gate state returns to its idle size after retention") {
  WorldOptions o = t3(28);
  o.tune_gate = [](gate::GateConfig& c) {
    c.retention_ok = 2s;
    c.retention_failed = 2s;
    c.idem_rejected_ttl = 2s;
    c.max_watched_jobs = 4;  // live windows: watched jobs over it evict the least recently asked
  };
  World w(with_windows(o));
  boot(w);
  w.run_for(1s);
  std::map<NodeId, std::map<std::string, std::size_t>> idle;
  for (NodeId g : w.gates()) idle[g] = w.gate(g)->gate.table_sizes();
  std::vector<std::string> ids;
  // HS_GATE_MEM_JOBS=10000 is the opt-in soak of the memory bound (docs/gates.md).
  int jobs = 300;
  if (const char* e = std::getenv("HS_GATE_MEM_JOBS"); e != nullptr && *e != '\0') jobs = std::atoi(e);
  for (int i = 0; i < jobs; ++i) {
    const std::string id = fmt::format("m{}", i);
    const std::string plan = i % 10 == 9 ? "ms=10;fail=boom" : fmt::format("ms={}", 10 + 20 * (i % 10));
    auto s = spread(job(id, {wf("a", plan)}), 2);
    submit_ok(w, s);
    ids.push_back(id);
    if (i % 7 == 3) REQUIRE(w.cancel(id).has_value());
    if (i % 5 == 0) {  // a client watches some: the owner follows them, at most max_watched_jobs at once
      // (the owner may not have applied the job yet: its answer then redirects to the leader)
      REQUIRE(w.run_until([&] { return watch_once(w, *w.gate_leader(), id).code == Err::none; }, 5s));
      for (NodeId g : w.gates()) CHECK(w.gate(g)->gate.table_sizes().at("watched_jobs") <= 4);
    }
  }
  std::uint64_t evicted = 0;
  for (NodeId g : w.gates()) evicted += w.gate(g)->gate.stats().watches_evicted;
  CHECK(evicted > 0);
  auto bad = submit_once(w, job("bad", {wf("a", "ms=1", 0)}), *w.gate_leader());  // remembered, then forgotten
  CHECK(bad.code == Err::invalid);
  // Every job ends and is retired (end_checks: each was seen terminal before it went).
  CHECK(w.run_until(
      [&] {
        for (NodeId g : w.gates())
          if (w.gate(g)->gate.table_sizes() != idle[g]) return false;
        return true;
      },
      30s + std::chrono::milliseconds(100) * jobs));
  for (NodeId g : w.gates()) {
    std::string tables;
    for (const auto& [k, n] : w.gate(g)->gate.table_sizes()) tables += fmt::format(" {}={}", k, n);
    INFO("gate " << g << ":" << tables);
    CHECK(w.gate(g)->gate.table_sizes() == idle[g]);
    CHECK(w.gate(g)->gate.ledger().size() == 0);
  }
  const auto st = w.end_checks(90s, true);
  INFO(st.message());
  CHECK(st.ok());
}

namespace {

JobSpec sweep_job(Rng& rng, const std::string& id) {
  JobSpec s;
  switch (rng.below(4)) {
    case 0:
      s = job(id, {wf("a", fmt::format("ms={};ops=40", 2000 + rng.below(5000)),
                      1 + static_cast<std::uint32_t>(rng.below(2)), 1)});
      break;
    case 1:
      s = job(id, {wf("a", "ms=1500"), wf("b", "ms=1000", 1, 1, {"a"})});
      break;
    case 2:
      s = job(id, {wf("a", "ms=1000;fail=boom")});
      break;
    default:  // W-hang under a job timeout: the gate ends it
      s = job(id, {wf("a", "hang")});
      s.timeout_ms = 6'000;
      break;
  }
  s.datacenter_count = 1 + static_cast<std::uint32_t>(rng.below(2));
  if (s.datacenter_count == 2 && rng.chance(0.3)) s.min_datacenters = 1;
  return s;
}

}  // namespace

TEST_CASE("GATE-SWEEP mixed gate, datacenter and network faults keep every invariant") {
  std::size_t count = 200;  // the default of CI (about a minute on the debug build)
  if (const char* e = std::getenv("HS_GATE_SEEDS"); e != nullptr && *e != '\0') count = std::strtoull(e, nullptr, 10);
  const auto seeds = sim::seeds_to_run(count);
  std::size_t acked_total = 0, ended_total = 0;
  for (std::uint64_t seed : seeds) {
    Rng rng(seed * 104'729 + 7);
    Rng pick(seed * 7'919 + 3);
    WorldOptions o = t3(seed);
    o.seed = seed;
    o.net.loss = rng.next_double() * 0.01;
    o.net.duplicate = rng.next_double() * 0.02;
    o.net.reorder = rng.next_double() * 0.05;
    World w(o);
    INFO("seed " << seed << " replay: " << sim::replay_command(seed, "test_gate_scenarios", "GATE-SWEEP*"));
    REQUIRE(w.boot(60s));
    REQUIRE_OK(w);
    std::vector<std::string> acked;
    for (int j = 0; j < 3; ++j) {
      const std::string id = fmt::format("s{}", j);
      auto r = w.submit(sweep_job(rng, id), 0, 10s);
      REQUIRE_OK(w);
      if (r.ack && r.ack->accepted) acked.push_back(id);
    }
    // Faults for ~30 s: one or two every 1-4 s (a crashed node comes back at a later step; one gate
    // or all of them are down at a time); the client submits, polls and cancels meanwhile.
    std::vector<NodeId> down;
    std::map<std::uint64_t, std::string> during;  // submit request -> job
    for (int step = 0; step < 12; ++step) {
      if (rng.chance(0.7)) w.heal();
      for (auto it = down.begin(); it != down.end();) {
        if (rng.chance(0.6)) {
          w.restart(*it);
          it = down.erase(it);
        } else {
          ++it;
        }
      }
      const int faults = 1 + static_cast<int>(rng.below(2));
      for (int f = 0; f < faults; ++f) {
        switch (rng.below(7)) {
          case 0: {  // a gate crashes
            const bool gate_down = std::any_of(down.begin(), down.end(), [](NodeId n) { return n < 100; });
            const NodeId g = w.gates()[rng.below(w.gates().size())];
            if (!gate_down) {
              w.kill(g);
              down.push_back(g);
            }
            break;
          }
          case 1:  // a datacenter cut off from the gates and the other datacenter
            w.isolate_dc(rng.below(w.dc_count()));
            break;
          case 2:  // latency between the gates and a datacenter
            w.delay_dc(rng.below(w.dc_count()), std::chrono::milliseconds(rng.below(400)));
            break;
          case 3: {  // a datacenter's leading manager crashes
            const std::size_t d = rng.below(w.dc_count());
            if (auto m = w.dc_leader(d)) {
              w.kill(*m);
              down.push_back(*m);
            }
            break;
          }
          case 4:  // a gate cut off from the other gates
            w.partition_gates({w.gates()[rng.below(w.gates().size())]});
            break;
          case 5:  // every gate crashes (they come back at later steps, their data kept)
            for (NodeId g : w.gates())
              if (w.up(g)) {
                w.kill(g);
                down.push_back(g);
              }
            break;
          default:
            break;  // a quiet interval
        }
      }
      // Half the submissions go to any gate (it takes the job and forwards its entries to the
      // leader; the ring picks the owner), half to the leader (its own stream: the faults stay).
      const NodeId to = pick.chance(0.5)
                            ? w.gates()[pick.below(w.gates().size())]
                            : w.gate_leader().value_or(w.gates()[static_cast<std::size_t>(step) % w.gates().size()]);
      const std::string id = fmt::format("f{}", step);
      during[w.client().submit(to, sweep_job(rng, id))] = id;
      if (step % 3 == 2 && !acked.empty()) w.client().cancel(to, acked[rng.below(acked.size())]);
      for (const auto& a : acked)  // the client watches its jobs at any gate (totals never go down)
        w.client().status(w.gates()[rng.below(w.gates().size())], a);
      w.run_for(std::chrono::milliseconds(1000 + rng.below(3000)));
      REQUIRE_OK(w);
    }
    w.heal();
    w.sim().clear_link_delays();
    for (NodeId n : down) w.restart(n);
    for (const auto& [req, id] : during)
      if (const auto* r = w.client().reply(req); r != nullptr && r->submit.accepted) acked.push_back(id);
    acked_total += acked.size();
    const Status st = w.end_checks(180s);
    INFO(st.message());
    REQUIRE(st.ok());
    for (const auto& id : acked)
      if (auto v = w.view(id); v && terminal(v->state)) ++ended_total;
  }
  CHECK(acked_total >= seeds.size() * 3);  // most submissions got through the faults
  CHECK(ended_total == acked_total);
}
