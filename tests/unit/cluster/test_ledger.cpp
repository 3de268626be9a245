// JobLedger rules, one by one (the state machine every manager applies in Raft log order).
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include "hyperscale/cluster/ledger.hpp"

using namespace hs;
using namespace hs::cluster;

namespace {

JobSpec spec(const std::string& id, const std::string& key, std::size_t workflows = 2) {
  JobSpec s;
  s.job_id = id;
  s.idempotency_key = key;
  for (std::size_t i = 0; i < workflows; ++i) {
    WorkflowSpec w;
    w.name = fmt::format("wf{}", i);
    s.workflows.push_back(w);
  }
  return s;
}

struct Fixture {
  JobLedger ledger{JobLedger::Limits{.max_jobs = 3}};
  std::uint64_t index = 0;

  LedgerOutcome run(LedgerEntry e) {
    auto bytes = encode_entry(e);
    return static_cast<LedgerOutcome>(ledger.apply(++index, bytes));
  }
  LedgerOutcome accept(const std::string& id, const std::string& key, std::uint64_t digest = 7) {
    LedgerEntry e;
    e.op = LedgerOp::accept;
    e.job_id = id;
    e.spec = spec(id, key);
    e.digest = digest;
    return run(e);
  }
  LedgerOutcome dispatch(const std::string& id, std::uint32_t wf, std::uint64_t token, NodeId worker = 9) {
    LedgerEntry e;
    e.op = LedgerOp::dispatch;
    e.job_id = id;
    e.workflow = wf;
    e.token = token;
    e.worker = worker;
    e.cores = 1;
    return run(e);
  }
  LedgerOutcome wf_done(const std::string& id, std::uint32_t wf, std::uint64_t token, WfState s = WfState::completed) {
    LedgerEntry e;
    e.op = LedgerOp::wf_done;
    e.job_id = id;
    e.workflow = wf;
    e.token = token;
    e.state = static_cast<std::uint8_t>(s);
    e.completed = 100;
    return run(e);
  }
  LedgerOutcome lost(const std::string& id, std::uint32_t wf, std::uint64_t token, bool uncounted = false,
                     bool exclude = true) {
    LedgerEntry e;
    e.op = LedgerOp::wf_lost;
    e.job_id = id;
    e.workflow = wf;
    e.token = token;
    e.uncounted = uncounted;
    e.exclude = exclude;
    e.error = "worker died";
    return run(e);
  }
  LedgerOutcome simple(LedgerOp op, const std::string& id, JobState s = JobState::completed) {
    LedgerEntry e;
    e.op = op;
    e.job_id = id;
    e.state = static_cast<std::uint8_t>(s);
    return run(e);
  }
};

}  // namespace

TEST_CASE("ledger: accept, duplicates, conflicts and the job bound") {
  Fixture f;
  CHECK(f.accept("a", "key-a") == LedgerOutcome::applied);
  CHECK(f.accept("a", "key-a") == LedgerOutcome::duplicate);    // same id, same payload
  CHECK(f.accept("a", "key-a", 8) == LedgerOutcome::conflict);  // same id, other payload
  CHECK(f.accept("b", "key-a") == LedgerOutcome::conflict);     // key taken by another job
  CHECK(f.ledger.job_for_key("key-a") == std::optional<std::string>("a"));
  CHECK(f.accept("b", "") == LedgerOutcome::applied);
  CHECK(f.accept("c", "key-c") == LedgerOutcome::applied);
  CHECK(f.accept("d", "key-d") == LedgerOutcome::full);  // max_jobs = 3
  CHECK(f.ledger.size() == 3);
  REQUIRE(f.ledger.job("a") != nullptr);
  CHECK(f.ledger.job("a")->workflows.size() == 2);
  CHECK(f.ledger.job("a")->state == JobState::submitted);
}

TEST_CASE("ledger: tokens carry the term and only grow; an older term's command is refused") {
  Fixture f;
  REQUIRE(f.accept("a", "k") == LedgerOutcome::applied);
  CHECK(make_token(5, 1) > make_token(4, 999));
  CHECK(token_term(make_token(5, 1)) == 5);
  CHECK(f.dispatch("a", 0, make_token(5, 1)) == LedgerOutcome::applied);
  CHECK(f.ledger.job("a")->state == JobState::running);
  // A deposed leader of term 4 still proposing: its token is below the job's high-water mark.
  CHECK(f.dispatch("a", 1, make_token(4, 7)) == LedgerOutcome::stale_token);
  CHECK(f.dispatch("a", 0, make_token(5, 1)) == LedgerOutcome::wf_busy);  // the same token again: it is live
  CHECK(f.lost("a", 0, make_token(4, 1)) == LedgerOutcome::stale_token);  // not the current attempt
  CHECK(f.lost("a", 0, make_token(5, 1)) == LedgerOutcome::applied);
  CHECK(f.dispatch("a", 0, make_token(5, 1)) == LedgerOutcome::stale_token);  // a token is never reused
  CHECK(f.dispatch("a", 0, make_token(6, 1)) == LedgerOutcome::applied);      // a re-dispatch by the next leader
  CHECK(f.ledger.job("a")->workflows[0].attempts == 2);
  CHECK(f.ledger.job("a")->workflows[0].token == make_token(6, 1));
  CHECK(f.dispatch("a", 5, make_token(7, 1)) == LedgerOutcome::unknown_job);  // no workflow 5
  CHECK(f.dispatch("zz", 0, make_token(7, 1)) == LedgerOutcome::unknown_job);
}

TEST_CASE("ledger: nothing is dispatched after a cancel is accepted") {
  Fixture f;
  REQUIRE(f.accept("a", "k") == LedgerOutcome::applied);
  REQUIRE(f.dispatch("a", 0, make_token(2, 1)) == LedgerOutcome::applied);
  CHECK(f.simple(LedgerOp::cancel, "a") == LedgerOutcome::applied);
  CHECK(f.ledger.job("a")->cancel_requested);
  CHECK(f.ledger.job("a")->state == JobState::cancelled);  // terminal at once
  CHECK(f.dispatch("a", 1, make_token(2, 2)) == LedgerOutcome::job_terminal);
  CHECK(f.lost("a", 0, make_token(2, 1)) == LedgerOutcome::applied);           // the running one stopped...
  CHECK(f.dispatch("a", 0, make_token(3, 1)) == LedgerOutcome::job_terminal);  // ...and is not retried
  CHECK(f.ledger.job("a")->workflows[0].state == WfState::cancelled);
  CHECK(f.ledger.job("a")->workflows[1].state == WfState::cancelled);
}

TEST_CASE("ledger: results count only for the current attempt and only while the job lives") {
  Fixture f;
  REQUIRE(f.accept("a", "k") == LedgerOutcome::applied);
  REQUIRE(f.dispatch("a", 0, make_token(2, 1)) == LedgerOutcome::applied);
  REQUIRE(f.lost("a", 0, make_token(2, 1)) == LedgerOutcome::applied);
  REQUIRE(f.dispatch("a", 0, make_token(3, 1)) == LedgerOutcome::applied);   // re-dispatched
  CHECK(f.wf_done("a", 0, make_token(2, 1)) == LedgerOutcome::stale_token);  // late result of attempt 1
  CHECK(f.wf_done("a", 0, make_token(3, 1)) == LedgerOutcome::applied);
  CHECK(f.wf_done("a", 0, make_token(3, 1)) == LedgerOutcome::wf_terminal);  // a duplicate result
  CHECK(f.ledger.job("a")->workflows[0].completed == 100);
  REQUIRE(f.dispatch("a", 1, make_token(3, 2)) == LedgerOutcome::applied);
  CHECK(f.simple(LedgerOp::job_done, "a", JobState::timeout) == LedgerOutcome::applied);
  // After the job timed out, the stopped workflow's own end is recorded (cancelled, with what it
  // gathered); the job's state does not change, and once the workflow is terminal a late result
  // changes nothing (issue 21, defect 5).
  CHECK(f.ledger.job("a")->workflows[1].state == WfState::dispatched);
  CHECK(f.wf_done("a", 1, make_token(3, 2)) == LedgerOutcome::applied);
  CHECK(f.ledger.job("a")->workflows[1].state == WfState::cancelled);
  CHECK(f.ledger.job("a")->workflows[1].completed == 100);
  CHECK(f.ledger.job("a")->state == JobState::timeout);
  CHECK(f.wf_done("a", 1, make_token(3, 2)) == LedgerOutcome::wf_terminal);
}

TEST_CASE("ledger: a terminal job never changes state again") {
  Fixture f;
  REQUIRE(f.accept("a", "k") == LedgerOutcome::applied);
  REQUIRE(f.simple(LedgerOp::cancel, "a") == LedgerOutcome::applied);
  CHECK(f.simple(LedgerOp::job_done, "a", JobState::cancelled) == LedgerOutcome::job_terminal);
  CHECK(f.simple(LedgerOp::job_done, "a", JobState::completed) == LedgerOutcome::job_terminal);
  CHECK(f.simple(LedgerOp::cancel, "a") == LedgerOutcome::job_terminal);
  CHECK(f.dispatch("a", 0, make_token(9, 1)) == LedgerOutcome::job_terminal);
  CHECK(f.ledger.job("a")->state == JobState::cancelled);
  // job_done must carry a terminal state.
  REQUIRE(f.accept("b", "kb") == LedgerOutcome::applied);
  CHECK(f.simple(LedgerOp::job_done, "b", JobState::running) == LedgerOutcome::malformed);
  CHECK(f.ledger.job("b")->state == JobState::submitted);
}

TEST_CASE("ledger: retire forgets a terminal job and frees its key; a live job stays") {
  Fixture f;
  REQUIRE(f.accept("a", "k") == LedgerOutcome::applied);
  CHECK(f.ledger.active() == 1);
  CHECK(f.simple(LedgerOp::retire, "a") == LedgerOutcome::not_terminal);
  CHECK(f.ledger.active() == 1);
  REQUIRE(f.simple(LedgerOp::job_done, "a", JobState::completed) == LedgerOutcome::applied);
  CHECK(f.ledger.active() == 0);  // terminal: no longer counted as active (a manager's submit limit)
  CHECK(f.simple(LedgerOp::retire, "a") == LedgerOutcome::applied);
  CHECK(f.ledger.active() == 0);
  CHECK(f.ledger.job("a") == nullptr);
  CHECK_FALSE(f.ledger.job_for_key("k").has_value());
  CHECK(f.ledger.size() == 0);
  CHECK(f.simple(LedgerOp::retire, "a") == LedgerOutcome::unknown_job);
  CHECK(f.accept("a2", "k") == LedgerOutcome::applied);  // the key is free again
  CHECK(f.accept("a2", "k") == LedgerOutcome::duplicate);
  CHECK(f.ledger.active() == 1);
}

TEST_CASE("ledger: snapshots restore the same state; a bad snapshot or entry changes nothing") {
  Fixture f;
  REQUIRE(f.accept("a", "k") == LedgerOutcome::applied);
  REQUIRE(f.dispatch("a", 0, make_token(2, 1)) == LedgerOutcome::applied);
  REQUIRE(f.accept("b", "") == LedgerOutcome::applied);
  const auto snap = f.ledger.snapshot();
  JobLedger other;
  REQUIRE(other.restore(snap).ok());
  CHECK(other.snapshot() == snap);
  CHECK(other.job_for_key("k") == std::optional<std::string>("a"));
  CHECK(other.applied_index() == f.ledger.applied_index());
  CHECK(f.ledger.active() == 2);
  CHECK(other.active() == 2);  // recounted from the restored jobs

  auto bad = snap;
  bad.resize(bad.size() / 2);
  CHECK_FALSE(other.restore(bad).ok());
  CHECK(other.snapshot() == snap);  // unchanged
  CHECK(other.active() == 2);
  bad = snap;
  bad[0] = 99;
  CHECK(other.restore(bad).code() == Errc::corruption);

  const std::vector<std::uint8_t> junk{1, 200, 3};
  CHECK(static_cast<LedgerOutcome>(f.ledger.apply(++f.index, junk)) == LedgerOutcome::malformed);
  CHECK(f.ledger.malformed() == 1);
  CHECK(f.ledger.size() == 2);
}

TEST_CASE("ledger: a lost attempt spends a retry while the budgets allow; a refusal spends none") {
  Fixture f;
  LedgerEntry e;
  e.op = LedgerOp::accept;
  e.job_id = "a";
  e.spec = spec("a", "k", 1);
  e.spec.workflow_retries = 2;
  e.spec.retry_budget = 1;
  REQUIRE(f.run(e) == LedgerOutcome::applied);
  REQUIRE(f.dispatch("a", 0, make_token(1, 1), 7) == LedgerOutcome::applied);
  CHECK(f.lost("a", 0, make_token(1, 1), /*uncounted=*/true, /*exclude=*/false) == LedgerOutcome::applied);
  const LedgerJob* j = f.ledger.job("a");
  CHECK(j->workflows[0].state == WfState::pending);
  CHECK(j->workflows[0].attempts == 0);  // a refusal never ran
  CHECK(j->retries_used == 0);
  CHECK(j->workflows[0].parts.at(0).excluded.empty());
  REQUIRE(f.dispatch("a", 0, make_token(1, 2), 7) == LedgerOutcome::applied);
  CHECK(f.lost("a", 0, make_token(1, 2)) == LedgerOutcome::applied);
  CHECK(j->workflows[0].state == WfState::pending);
  CHECK(j->retries_used == 1);
  CHECK(j->workflows[0].parts.at(0).excluded == std::vector<NodeId>{7});
  REQUIRE(f.dispatch("a", 0, make_token(1, 3), 8) == LedgerOutcome::applied);
  CHECK(f.lost("a", 0, make_token(1, 3)) == LedgerOutcome::applied);  // the job's budget (1) is spent
  CHECK(j->workflows[0].state == WfState::failed);
  CHECK(j->workflows[0].error == "retry budget exhausted: worker died");
  CHECK(j->state == JobState::failed);  // every workflow ended, one failed
  CHECK(j->retries_used == 1);
}

TEST_CASE("ledger: dependants of a failed workflow fail; the job's end follows its workflows") {
  Fixture f;
  LedgerEntry e;
  e.op = LedgerOp::accept;
  e.job_id = "a";
  e.spec = spec("a", "k", 3);
  e.spec.workflows[2].deps = {"wf0"};
  REQUIRE(f.run(e) == LedgerOutcome::applied);
  REQUIRE(f.dispatch("a", 0, make_token(1, 1)) == LedgerOutcome::applied);
  REQUIRE(f.dispatch("a", 1, make_token(1, 2)) == LedgerOutcome::applied);
  CHECK(f.wf_done("a", 0, make_token(1, 1), WfState::failed) == LedgerOutcome::applied);
  const LedgerJob* j = f.ledger.job("a");
  CHECK(j->workflows[2].state == WfState::failed);
  CHECK(j->workflows[2].error == "dependency 'wf0' failed");
  CHECK(j->state == JobState::running);  // wf1 still runs
  CHECK(f.wf_done("a", 1, make_token(1, 2)) == LedgerOutcome::applied);
  CHECK(j->state == JobState::failed);
  CHECK(j->error.rfind("workflow 'wf0' failed", 0) == 0);
}

TEST_CASE("ledger: cancelling one workflow stops it and the job ends partial") {
  Fixture f;
  REQUIRE(f.accept("a", "k") == LedgerOutcome::applied);
  REQUIRE(f.dispatch("a", 0, make_token(1, 1)) == LedgerOutcome::applied);
  LedgerEntry c;
  c.op = LedgerOp::cancel_wf;
  c.job_id = "a";
  c.workflow = 0;
  CHECK(f.run(c) == LedgerOutcome::applied);
  const LedgerJob* j = f.ledger.job("a");
  CHECK(j->workflows[0].stop_requested);
  CHECK(j->workflows[0].state == WfState::dispatched);  // until the stop is confirmed
  CHECK(f.run(c) == LedgerOutcome::duplicate);
  CHECK(f.dispatch("a", 0, make_token(1, 2)) == LedgerOutcome::wf_busy);
  c.workflow = 1;
  CHECK(f.run(c) == LedgerOutcome::applied);  // pending: cancelled at once
  CHECK(j->workflows[1].state == WfState::cancelled);
  CHECK(f.wf_done("a", 0, make_token(1, 1)) == LedgerOutcome::applied);  // it finished while stopping
  CHECK(j->workflows[0].state == WfState::cancelled);
  CHECK(j->state == JobState::partial);
}

TEST_CASE("ledger: checkpoints carry elapsed time and live totals, and freeze with a cancel") {
  Fixture f;
  REQUIRE(f.accept("a", "k") == LedgerOutcome::applied);
  REQUIRE(f.dispatch("a", 0, make_token(1, 1)) == LedgerOutcome::applied);
  LedgerEntry e;
  e.op = LedgerOp::checkpoint;
  e.job_id = "a";
  e.elapsed_ms = 4000;
  e.progress = {{50, 2}, {0, 0}};
  CHECK(f.run(e) == LedgerOutcome::applied);
  const LedgerJob* j = f.ledger.job("a");
  CHECK(j->elapsed_ms == 4000);
  CHECK(j->workflows[0].completed == 50);
  e.elapsed_ms = 1000;  // an older view never lowers it
  e.progress = {{10, 0}};
  CHECK(f.run(e) == LedgerOutcome::applied);
  CHECK(j->elapsed_ms == 4000);
  CHECK(j->workflows[0].completed == 50);
  LedgerEntry c;
  c.op = LedgerOp::cancel;
  c.job_id = "a";
  c.progress = {{70, 3}, {0, 0}};
  REQUIRE(f.run(c) == LedgerOutcome::applied);
  CHECK(j->workflows[0].completed == 70);
  LedgerEntry lost;  // the stop was never confirmed: the workflow ends with the frozen totals
  lost.op = LedgerOp::wf_lost;
  lost.job_id = "a";
  lost.workflow = 0;
  lost.token = make_token(1, 1);
  CHECK(f.run(lost) == LedgerOutcome::applied);
  LedgerEntry late;  // its own result arrives after that: it changes nothing
  late.op = LedgerOp::wf_done;
  late.job_id = "a";
  late.workflow = 0;
  late.token = make_token(1, 1);
  late.state = static_cast<std::uint8_t>(WfState::completed);
  late.completed = 500;
  CHECK(f.run(late) == LedgerOutcome::wf_terminal);
  CHECK(j->workflows[0].completed == 70);
  CHECK(j->workflows[0].state == WfState::cancelled);
  CHECK(j->state == JobState::cancelled);
  CHECK(f.run(e) == LedgerOutcome::job_terminal);
}

namespace {
struct V2Image {  // a ledger snapshot's image (ledger.cpp), for writing one as version 2 did
  std::uint64_t applied = 0;
  std::vector<LedgerJob> jobs;
  HS_FIELDS(applied, jobs)
};
LedgerEntry split3(const std::string& id, std::uint64_t term, std::vector<std::uint32_t> cores = {3, 2, 1}) {
  LedgerEntry e;
  e.op = LedgerOp::split;
  e.job_id = id;
  e.workflow = 0;
  std::uint32_t next = 0, seq = 1;
  for (std::uint32_t c : cores) {
    e.parts.push_back(PartAssign{NodeId{10} + seq, c, next, make_token(term, seq)});
    next += c;
    ++seq;
  }
  e.shard_total = next;
  e.start_at_ms = 1'800'000'000'500;
  return e;
}
}  // namespace

TEST_CASE("ledger: a split places every part at once; refused when inconsistent, changing nothing") {
  Fixture f;
  REQUIRE(f.accept("a", "k") == LedgerOutcome::applied);
  SECTION("gaps, zero cores, unordered tokens or a wrong total are refused") {
    auto gap = split3("a", 1);
    gap.parts[1].shard_first = 4;
    CHECK(f.run(gap) == LedgerOutcome::malformed);
    auto zero = split3("a", 1);
    zero.parts[2].cores = 0;
    CHECK(f.run(zero) == LedgerOutcome::malformed);
    auto order = split3("a", 1);
    std::swap(order.parts[0].token, order.parts[1].token);
    CHECK(f.run(order) == LedgerOutcome::stale_token);
    auto total = split3("a", 1);
    total.shard_total = 7;
    CHECK(f.run(total) == LedgerOutcome::malformed);
    CHECK(f.ledger.job("a")->workflows[0].parts.empty());
    CHECK(f.ledger.job("a")->workflows[0].state == WfState::pending);
    CHECK(f.ledger.job("a")->state == JobState::submitted);
  }
  SECTION("a valid split: three live parts, the shared start, totals summed") {
    REQUIRE(f.run(split3("a", 1)) == LedgerOutcome::applied);
    const LedgerWorkflow& w = f.ledger.job("a")->workflows[0];
    REQUIRE(w.parts.size() == 3);
    CHECK(w.state == WfState::dispatched);
    CHECK(w.shard_total == 6);
    CHECK(w.cores == 6);
    CHECK(w.start_at_ms == 1'800'000'000'500);
    CHECK(f.ledger.job("a")->token_hw == make_token(1, 3));
    CHECK(f.run(split3("a", 2)) == LedgerOutcome::wf_busy);  // placed already
    for (std::uint32_t k = 0; k < 3; ++k) {
      LedgerEntry d;
      d.op = LedgerOp::wf_done;
      d.job_id = "a";
      d.part = k;
      d.token = make_token(1, k + 1);
      d.state = static_cast<std::uint8_t>(WfState::completed);
      d.completed = 100 * (k + 1);
      REQUIRE(f.run(d) == LedgerOutcome::applied);
      CHECK(w.state == (k < 2 ? WfState::dispatched : WfState::completed));
    }
    CHECK(w.completed == 600);
  }
}

TEST_CASE("ledger: a lost part keeps what it acknowledged, counts what was in flight as lost, and skips both") {
  Fixture f;
  REQUIRE(f.accept("a", "k") == LedgerOutcome::applied);
  REQUIRE(f.run(split3("a", 1, {1, 1, 1})) == LedgerOutcome::applied);
  LedgerEntry cp;  // the leader checkpointed part 1 at 300 done, 302 begun
  cp.op = LedgerOp::checkpoint;
  cp.job_id = "a";
  cp.part_progress = {PartProgress{0, 1, 290, 10, 302}};
  REQUIRE(f.run(cp) == LedgerOutcome::applied);
  LedgerEntry lost;  // its worker died; the leader had seen a little more
  lost.op = LedgerOp::wf_lost;
  lost.job_id = "a";
  lost.part = 1;
  lost.token = make_token(1, 2);
  lost.completed = 295;
  lost.failed = 10;
  lost.started = 306;
  lost.exclude = true;
  lost.error = "worker died";
  REQUIRE(f.run(lost) == LedgerOutcome::applied);
  const LedgerWorkflow& w = f.ledger.job("a")->workflows[0];
  const LedgerPart& p = w.parts[1];
  CHECK(p.state == WfState::pending);
  CHECK(p.completed == 295);
  CHECK(p.failed == 10);
  CHECK(p.lost == 1);    // 306 begun - 305 done
  CHECK(p.skip == 306);  // the next attempt runs the rest
  CHECK(p.excluded == std::vector<NodeId>{12});
  CHECK(w.state == WfState::dispatched);  // the other parts still run (pending once none is live)
  // Placed again on the same cores (a part keeps its shards); other cores are refused.
  LedgerEntry d;
  d.op = LedgerOp::dispatch;
  d.job_id = "a";
  d.part = 1;
  d.worker = 20;
  d.cores = 2;
  d.token = make_token(1, 4);
  CHECK(f.run(d) == LedgerOutcome::malformed);
  d.cores = 1;
  d.token = make_token(1, 3);  // not above the job's tokens
  CHECK(f.run(d) == LedgerOutcome::stale_token);
  d.token = make_token(1, 4);
  REQUIRE(f.run(d) == LedgerOutcome::applied);
  CHECK(p.attempts == 2);
  LedgerEntry done;
  done.op = LedgerOp::wf_done;
  done.job_id = "a";
  done.part = 1;
  done.token = make_token(1, 4);
  done.state = static_cast<std::uint8_t>(WfState::completed);
  done.completed = 694;  // the remainder: 1000 - 306
  REQUIRE(f.run(done) == LedgerOutcome::applied);
  CHECK(p.completed == 295 + 694);
  CHECK(p.completed + p.failed + p.lost == 1000);
}

TEST_CASE("ledger: a failed part stops the workflow's other parts; the workflow ends failed") {
  Fixture f;
  REQUIRE(f.accept("a", "k") == LedgerOutcome::applied);
  REQUIRE(f.run(split3("a", 1, {1, 1, 1})) == LedgerOutcome::applied);
  LedgerEntry lost;  // part 2 is lost and waits for a new worker
  lost.op = LedgerOp::wf_lost;
  lost.job_id = "a";
  lost.part = 2;
  lost.token = make_token(1, 3);
  REQUIRE(f.run(lost) == LedgerOutcome::applied);
  LedgerEntry d;
  d.op = LedgerOp::wf_done;
  d.job_id = "a";
  d.part = 0;
  d.token = make_token(1, 1);
  d.state = static_cast<std::uint8_t>(WfState::failed);
  d.error = "boom";
  REQUIRE(f.run(d) == LedgerOutcome::applied);
  const LedgerWorkflow& w = f.ledger.job("a")->workflows[0];
  CHECK(w.stop_requested);
  CHECK(w.parts[2].state == WfState::cancelled);  // pending: never placed again
  CHECK(w.state == WfState::dispatched);          // part 1 still has to confirm its stop
  d.part = 1;
  d.token = make_token(1, 2);
  d.state = static_cast<std::uint8_t>(WfState::completed);  // it finished while being stopped
  d.error.clear();
  REQUIRE(f.run(d) == LedgerOutcome::applied);
  CHECK(w.parts[1].state == WfState::cancelled);
  CHECK(w.state == WfState::failed);
  CHECK(w.error == "part 0 failed: boom");
}

TEST_CASE("ledger: a version-2 snapshot restores, its placed workflows as workflows of one part") {
  Fixture f;
  REQUIRE(f.accept("a", "k") == LedgerOutcome::applied);
  REQUIRE(f.dispatch("a", 0, make_token(1, 1), 9) == LedgerOutcome::applied);
  auto snap = f.ledger.snapshot();
  // Rewrite it as version 2 wrote it: no parts (their fields are absent from the records).
  JobLedger copy;
  REQUIRE(copy.restore(snap).ok());
  LedgerJob j = *copy.job("a");
  j.workflows[0].parts.clear();
  V2Image img{copy.applied_index(), {j}};
  Enc enc;
  enc.w.u8(2);
  enc(img);
  JobLedger old;
  REQUIRE(old.restore(enc.w.take()).ok());
  const LedgerWorkflow& w = old.job("a")->workflows[0];
  REQUIRE(w.parts.size() == 1);
  CHECK(w.parts[0].worker == 9);
  CHECK(w.parts[0].token == make_token(1, 1));
  CHECK(w.parts[0].state == WfState::dispatched);
  JobLedger bad;
  auto unknown = snap;
  unknown[0] = 4;
  CHECK(!bad.restore(unknown).ok());
  CHECK(bad.size() == 0);
}
