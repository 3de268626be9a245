// The JobLedger replicated by RaftNode, in the simulator, under mixed faults (crash and restart
// from disk, partitions, loss, duplication, reordering). A workload of ledger commands is proposed
// by whichever member is the ready leader, with fence tokens made from its Raft term. Checked:
//   - every member that applied index i holds the same ledger after it (snapshot bytes compared);
//   - a terminal job never changes state again, on any member;
//   - no dispatch takes effect after a cancel of the job was acknowledged to its proposer;
//   - every acknowledged accept is in every member's ledger at the end (or was retired);
//   - a deposed leader's proposals (tokens of an older term) never take effect after a newer
//     term's dispatch of the same job.
#include <catch2/catch.hpp>

#include <map>
#include <memory>
#include <set>

#include <fmt/format.h>

#include "hyperscale/cluster/ledger.hpp"
#include "hyperscale/sim/simulator.hpp"
#include "faults.hpp"

using namespace hs;
using namespace hs::cluster;
using namespace std::chrono_literals;
using node::NodeId;

namespace {

constexpr std::uint64_t kWorkTag = 1ull << 61;
struct World;

// The ledger plus the checks that need to see every apply.
struct CheckedLedger final : StateMachine {
  World* world = nullptr;
  NodeId id = 0;
  JobLedger ledger{JobLedger::Limits{.max_jobs = 64}};
  std::uint64_t apply(std::uint64_t index, std::span<const std::uint8_t> cmd) override;
  node::Bytes snapshot() override { return ledger.snapshot(); }
  Status restore(std::span<const std::uint8_t> s) override { return ledger.restore(s); }
};

struct Member final : node::Node {
  World* world;
  CheckedLedger sm;
  RaftNode raft;
  std::uint32_t seq = 0;
  Member(World* w, NodeId id, RaftConfig cfg) : world(w), raft(std::move(cfg), sm) {
    sm.world = w;
    sm.id = id;
  }
  void on_start(node::Context& ctx) override {
    raft.on_start(ctx);
    ctx.set_timer(15ms, kWorkTag);
  }
  void on_message(node::Context& ctx, NodeId from, std::span<const std::uint8_t> m) override {
    raft.on_message(ctx, from, m);
  }
  void on_timer(node::Context& ctx, node::TimerId id, std::uint64_t tag) override;
  void propose_some(node::Context& ctx);
};

struct World {
  sim::Simulator sim;
  std::vector<NodeId> ids;
  std::string violation;
  bool working = false;
  std::uint64_t next_job = 0;
  std::map<std::uint64_t, node::Bytes> state_at;            // index -> ledger snapshot after it
  std::map<std::string, JobState> terminal_state;           // job -> its terminal state (first seen)
  std::map<std::string, std::uint64_t> cancel_acked_index;  // job -> index of an acknowledged cancel
  std::set<std::string> accepted_acked;
  std::set<std::string> retired;                             // a retire was applied (its proposer may never have heard)
  std::map<std::string, std::uint64_t> max_term_dispatched;  // job -> highest token term applied
  std::uint64_t acks = 0, refusals = 0;

  static sim::SimOptions options(std::uint64_t seed) {
    sim::SimOptions o;
    o.seed = seed;
    return o;
  }
  World(std::uint64_t seed, std::size_t n) : sim(options(seed)) {
    for (std::size_t i = 1; i <= n; ++i) ids.push_back(i);
    RaftConfig cfg;
    cfg.voters = ids;
    cfg.heartbeat = 50ms;
    cfg.election = 500ms;
    cfg.snapshot_threshold = 40;
    cfg.snapshot_trailing = 10;
    cfg.install_snapshot_timeout = 2s;
    for (auto id : ids) {
      REQUIRE(sim.add_node(id, [this, id, cfg](NodeId) { return std::make_unique<Member>(this, id, cfg); }).ok());
    }
    sim.set_invariant([this](sim::Simulator&) -> Status {
      return violation.empty() ? ok_status() : make_error(Errc::internal, violation);
    });
  }
  Member* member(NodeId id) { return static_cast<Member*>(sim.node(id)); }
  void fail(std::string why) {
    if (violation.empty()) violation = std::move(why);
  }
};

std::uint64_t CheckedLedger::apply(std::uint64_t index, std::span<const std::uint8_t> cmd) {
  LedgerEntry e;
  const bool decoded = decode_entry(cmd, e, nullptr);
  const LedgerJob* before = decoded ? ledger.job(e.job_id) : nullptr;
  const bool was_terminal = before != nullptr && terminal(before->state);
  const JobState was_state = before != nullptr ? before->state : JobState::submitted;
  const std::uint64_t out = ledger.apply(index, cmd);
  const auto outcome = static_cast<LedgerOutcome>(out);
  if (decoded) {
    const LedgerJob* after = ledger.job(e.job_id);
    if (was_terminal && after != nullptr && after->state != was_state) {
      world->fail(fmt::format("member {}: terminal job {} changed state at index {}", id, e.job_id, index));
    }
    if (after != nullptr && terminal(after->state)) {
      auto [it, fresh] = world->terminal_state.emplace(e.job_id, after->state);
      if (!fresh && it->second != after->state) {
        world->fail(fmt::format("job {} ended {} on one member and {} on member {}", e.job_id, name(it->second),
                                name(after->state), id));
      }
    }
    if (e.op == LedgerOp::retire && outcome == LedgerOutcome::applied) world->retired.insert(e.job_id);
    if (e.op == LedgerOp::dispatch && outcome == LedgerOutcome::applied) {
      auto c = world->cancel_acked_index.find(e.job_id);
      if (c != world->cancel_acked_index.end() && c->second < index) {
        world->fail(fmt::format("member {}: dispatch of {} at {} after the cancel acknowledged at {}", id, e.job_id,
                                index, c->second));
      }
      auto& hw = world->max_term_dispatched[e.job_id];
      if (token_term(e.token) < hw) {
        world->fail(fmt::format("member {}: a term-{} dispatch of {} took effect after a term-{} one", id,
                                token_term(e.token), e.job_id, hw));
      }
      hw = std::max(hw, token_term(e.token));
    }
  }
  // State machine safety: the same ledger after the same index on every member.
  auto snap = ledger.snapshot();
  auto [it, fresh] = world->state_at.emplace(index, snap);
  if (!fresh && it->second != snap) world->fail(fmt::format("member {}: ledger diverged at index {}", id, index));
  return out;
}

void Member::on_timer(node::Context& ctx, node::TimerId id, std::uint64_t tag) {
  if (tag != kWorkTag) return raft.on_timer(ctx, id, tag);
  ctx.set_timer(15ms, kWorkTag);
  if (world->working && raft.is_ready_leader()) propose_some(ctx);
}

// One command chosen from the applied ledger (what a real leader does): accept a new job, dispatch
// a pending workflow, cancel, report a workflow done, end a job, or retire an ended one.
void Member::propose_some(node::Context& ctx) {
  const auto& jobs = sm.ledger.jobs();
  LedgerEntry e;
  e.term = raft.term();
  const std::uint64_t pick = ctx.rng().below(10);
  if (jobs.empty() || pick < 2) {
    e.op = LedgerOp::accept;
    e.job_id = fmt::format("job-{}", world->next_job++);
    e.spec.job_id = e.job_id;
    e.spec.idempotency_key = fmt::format("key-{}", e.job_id);
    e.spec.workflows.resize(1 + ctx.rng().below(3));
    e.digest = 1;
  } else {
    auto it = jobs.begin();
    std::advance(it, static_cast<long>(ctx.rng().below(jobs.size())));
    const LedgerJob& j = it->second;
    e.job_id = it->first;
    e.workflow = static_cast<std::uint32_t>(ctx.rng().below(j.workflows.size()));
    if (terminal(j.state)) {
      e.op = pick < 5 ? LedgerOp::retire : LedgerOp::cancel;
    } else if (pick < 5) {
      e.op = LedgerOp::dispatch;
      e.worker = 100;
      e.cores = 1;
      e.token = make_token(raft.term(), ++seq);
    } else if (pick < 6) {
      e.op = LedgerOp::cancel;
    } else if (pick < 8) {
      e.op = LedgerOp::wf_done;
      e.token = j.workflows[e.workflow].token;
      e.state = static_cast<std::uint8_t>(WfState::completed);
    } else {
      e.op = LedgerOp::job_done;
      e.state = static_cast<std::uint8_t>(j.cancel_requested ? JobState::cancelled : JobState::completed);
    }
  }
  const LedgerOp op = e.op;
  const std::string job = e.job_id;
  Status s =
      raft.propose(encode_entry(e), [w = world, op, job](const Status& st, std::uint64_t index, std::uint64_t r) {
        if (!st.ok()) return;
        ++w->acks;
        if (static_cast<LedgerOutcome>(r) != LedgerOutcome::applied) {
          ++w->refusals;
          return;
        }
        if (op == LedgerOp::cancel) w->cancel_acked_index.emplace(job, index);
        if (op == LedgerOp::accept) w->accepted_acked.insert(job);
      });
  (void)s;  // refused proposals (leadership lost, backpressure) are part of the faults
}

}  // namespace

TEST_CASE("ledger on raft: mixed faults keep the ledger identical and its rules on every member") {
  const int seeds = std::getenv("HS_LEDGER_SEEDS") ? std::atoi(std::getenv("HS_LEDGER_SEEDS")) : 30;
  for (int seed = 1; seed <= seeds; ++seed) {
    World w(5000 + seed, seed % 3 == 0 ? 5 : 3);
    w.sim.net().loss = 0.03;
    w.sim.net().duplicate = 0.03;
    w.sim.net().reorder = 0.1;
    w.sim.start_all();
    w.working = true;
    Rng rng(seed);
    const Instant end = w.sim.now() + 15s;
    simtest::schedule_faults(w.sim, w.ids, rng, w.sim.now() + 400ms, end, 400ms, 900, false);
    INFO("seed " << 5000 + seed);
    REQUIRE(w.sim.run_until(end).ok());
    w.working = false;
    w.sim.heal();
    for (auto id : w.ids) {
      if (!w.sim.is_up(id)) REQUIRE(w.sim.restart(id).ok());
    }
    // Quiesce: everyone applies the same last index.
    bool same = false;
    for (int i = 0; i < 200 && !same; ++i) {
      REQUIRE(w.sim.run_for(100ms).ok());
      std::set<std::uint64_t> applied;
      for (auto id : w.ids) applied.insert(w.member(id)->sm.ledger.applied_index());
      same = applied.size() == 1;
    }
    REQUIRE(same);
    const auto reference = w.member(w.ids[0])->sm.ledger.snapshot();
    for (auto id : w.ids) CHECK(w.member(id)->sm.ledger.snapshot() == reference);
    for (const auto& job : w.accepted_acked) {
      INFO("job " << job);
      CHECK((w.member(w.ids[0])->sm.ledger.job(job) != nullptr || w.retired.count(job) == 1));
    }
    REQUIRE(w.violation.empty());
    CHECK(w.acks > 50);
  }
}
