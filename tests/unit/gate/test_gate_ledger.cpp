// The gate ledger's rules (include/hyperscale/gate/ledger.hpp): acceptance and idempotency, fences,
// shares and the job's end, cancels, retention, snapshots, and bad entries changing nothing.
#include <catch2/catch.hpp>

#include "hyperscale/gate/ledger.hpp"

using namespace hs;
using namespace hs::gate;
using cluster::JobState;

namespace {

struct L {
  GateLedger ledger{GateLedger::Limits{3}};
  std::uint64_t index = 0;
  GateOutcome put(GateEntry e) {
    auto bytes = encode_entry(e);
    return static_cast<GateOutcome>(ledger.apply(++index, bytes));
  }
};

GateEntry accept(const std::string& id, std::vector<std::string> dcs, std::uint32_t min_dcs = 0,
                 const std::string& key = "", std::uint64_t digest = 7) {
  GateEntry e;
  e.op = GateOp::accept;
  e.job_id = id;
  e.spec.job_id = id;
  e.spec.idempotency_key = key;
  e.spec.min_datacenters = min_dcs;
  cluster::WorkflowSpec w;
  w.name = "w";
  e.spec.workflows.push_back(w);
  e.digest = digest;
  e.dcs = std::move(dcs);
  e.fence = cluster::make_token(1, 1);
  e.owner = 11;
  return e;
}

GateEntry op(GateOp o, const std::string& id, std::uint32_t share = 0) {
  GateEntry e;
  e.op = o;
  e.job_id = id;
  e.share = share;
  return e;
}

GateEntry done(const std::string& id, std::uint32_t share, JobState st, std::uint64_t completed = 0) {
  GateEntry e = op(GateOp::dc_done, id, share);
  e.state = static_cast<std::uint8_t>(st);
  e.completed = completed;
  return e;
}

}  // namespace

TEST_CASE("gate ledger: accept, duplicates, conflicts, the bound", "[gate][ledger]") {
  L l;
  CHECK(l.put(accept("j1", {"a", "b"}, 0, "k1")) == GateOutcome::applied);
  CHECK(l.put(accept("j1", {"a", "b"}, 0, "k1")) == GateOutcome::duplicate);
  CHECK(l.put(accept("j1", {"a"}, 0, "k1", 8)) == GateOutcome::conflict);
  CHECK(l.put(accept("j2", {"a"}, 0, "k1", 8)) == GateOutcome::conflict);  // key taken by another payload
  CHECK(l.put(accept("j2", {"a"}, 0, "k1")) == GateOutcome::duplicate);    // same payload under the key
  REQUIRE(l.ledger.job_for_key("k1") == std::optional<std::string>("j1"));
  const GateJob* j = l.ledger.job("j1");
  REQUIRE(j != nullptr);
  CHECK(j->state == JobState::running);
  CHECK(j->shares.size() == 2);
  CHECK(j->required == 2);
  CHECK(l.ledger.active() == 1);
  CHECK(l.put(accept("j3", {}, 0)) == GateOutcome::malformed);  // no datacenter
  CHECK(l.put(accept("j3", {"a"})) == GateOutcome::applied);
  CHECK(l.put(accept("j4", {"a"})) == GateOutcome::applied);
  CHECK(l.put(accept("j5", {"a"})) == GateOutcome::full);
  CHECK(l.ledger.size() == 3);
}

TEST_CASE("gate ledger: own moves the job to a new owner at fence + 1; fences only grow", "[gate][ledger]") {
  L l;
  REQUIRE(l.put(accept("j", {"a"})) == GateOutcome::applied);
  const std::uint64_t first = cluster::make_token(1, 1);
  REQUIRE(l.ledger.job("j")->fence == first);
  GateEntry own = op(GateOp::own, "j");
  own.fence = first + 5;  // not the fence of the job: the proposer's view is wrong
  own.owner = 12;
  CHECK(l.put(own) == GateOutcome::stale_fence);
  own.fence = first;
  CHECK(l.put(own) == GateOutcome::applied);
  CHECK(l.ledger.job("j")->owner == 12);
  CHECK(l.ledger.job("j")->fence == first + 1);
  own.owner = 13;  // a second adopter that saw the same fence loses: one owner per fence
  CHECK(l.put(own) == GateOutcome::stale_fence);
  CHECK(l.ledger.job("j")->owner == 12);
  own.fence = first + 1;
  own.owner = 0;
  CHECK(l.put(own) == GateOutcome::malformed);
  CHECK(l.ledger.job("j")->fence == first + 1);
}

TEST_CASE("gate ledger: OWN-02 a former owner's entries are refused by fence", "[gate][ledger]") {
  L l;
  REQUIRE(l.put(accept("j", {"a"})) == GateOutcome::applied);
  const std::uint64_t first = cluster::make_token(1, 1);
  GateEntry own = op(GateOp::own, "j");
  own.fence = first;
  own.owner = 12;
  REQUIRE(l.put(own) == GateOutcome::applied);
  GateEntry stale = done("j", 0, JobState::failed);
  stale.fence = first;  // the old owner (11) still thinks it owns the job
  CHECK(l.put(stale) == GateOutcome::stale_fence);
  CHECK(l.ledger.stale() >= 1);
  CHECK(l.ledger.job("j")->shares[0].state == JobState::submitted);
  GateEntry cp = op(GateOp::checkpoint, "j");
  cp.fence = first;
  cp.counts.push_back(ShareCount{0, 99, 0});
  CHECK(l.put(cp) == GateOutcome::stale_fence);
  CHECK(l.ledger.job("j")->shares[0].completed == 0);
  GateEntry fresh = done("j", 0, JobState::completed, 5);
  fresh.fence = first + 1;  // the new owner's
  CHECK(l.put(fresh) == GateOutcome::applied);
  CHECK(l.ledger.job("j")->state == JobState::completed);
}

TEST_CASE("gate ledger: a job ends when every share ended", "[gate][ledger]") {
  SECTION("all completed: completed, counts kept") {
    L l;
    REQUIRE(l.put(accept("j", {"a", "b"})) == GateOutcome::applied);
    CHECK(l.put(op(GateOp::dc_accepted, "j", 0)) == GateOutcome::applied);
    CHECK(l.put(op(GateOp::dc_accepted, "j", 0)) == GateOutcome::share_done);
    CHECK(l.put(done("j", 0, JobState::completed, 100)) == GateOutcome::applied);
    CHECK(l.ledger.job("j")->state == JobState::running);
    CHECK(l.put(done("j", 1, JobState::completed, 50)) == GateOutcome::applied);
    CHECK(l.ledger.job("j")->state == JobState::completed);
    CHECK(l.ledger.job("j")->shares[0].completed == 100);
    CHECK(l.ledger.active() == 0);
  }
  SECTION("one failed without best effort: failed, naming the datacenter") {
    L l;
    REQUIRE(l.put(accept("j", {"a", "b"})) == GateOutcome::applied);
    l.put(done("j", 0, JobState::completed));
    l.put(done("j", 1, JobState::failed));
    CHECK(l.ledger.job("j")->state == JobState::failed);
    CHECK(l.ledger.job("j")->error.find("datacenter b") != std::string::npos);
  }
  SECTION("best effort: enough completed is partial; too few is failed; a timeout reads timeout") {
    L l;
    REQUIRE(l.put(accept("j", {"a", "b"}, 1)) == GateOutcome::applied);
    l.put(done("j", 0, JobState::failed));
    l.put(done("j", 1, JobState::completed));
    CHECK(l.ledger.job("j")->state == JobState::partial);
    REQUIRE(l.put(accept("k", {"a", "b"}, 1)) == GateOutcome::applied);
    l.put(done("k", 0, JobState::failed));
    l.put(done("k", 1, JobState::timeout));
    CHECK(l.ledger.job("k")->state == JobState::timeout);
  }
  SECTION("a late result is recorded and changes nothing") {
    L l;
    REQUIRE(l.put(accept("j", {"a"})) == GateOutcome::applied);
    l.put(done("j", 0, JobState::failed));
    CHECK(l.put(done("j", 0, JobState::completed, 9)) == GateOutcome::late);
    CHECK(l.ledger.job("j")->shares[0].late);
    CHECK(l.ledger.job("j")->shares[0].state == JobState::failed);
    CHECK(l.ledger.job("j")->state == JobState::failed);
  }
  SECTION("a share that is not terminal is malformed for dc_done") {
    L l;
    REQUIRE(l.put(accept("j", {"a"})) == GateOutcome::applied);
    CHECK(l.put(done("j", 0, JobState::running)) == GateOutcome::malformed);
    CHECK(l.put(done("j", 5, JobState::failed)) == GateOutcome::unknown_job);
    CHECK(l.ledger.job("j")->state == JobState::running);
  }
}

TEST_CASE("gate ledger: cancel wins, timeouts mark the stopped shares, retire needs an end", "[gate][ledger]") {
  L l;
  REQUIRE(l.put(accept("j", {"a", "b"})) == GateOutcome::applied);
  CHECK(l.put(op(GateOp::retire, "j")) == GateOutcome::not_terminal);
  CHECK(l.put(op(GateOp::cancel_done, "j")) == GateOutcome::not_terminal);
  GateEntry c = op(GateOp::cancel, "j");
  c.counts.push_back(ShareCount{0, 5, 1});
  CHECK(l.put(c) == GateOutcome::applied);
  CHECK(l.ledger.job("j")->state == JobState::cancelled);
  CHECK(l.ledger.job("j")->shares[0].completed == 5);
  CHECK(l.put(c) == GateOutcome::job_terminal);
  // The stopped shares' ends never bring the job back.
  l.put(done("j", 0, JobState::completed, 7));
  l.put(done("j", 1, JobState::cancelled));
  CHECK(l.ledger.job("j")->state == JobState::cancelled);
  GateEntry cd = op(GateOp::cancel_done, "j");
  cd.notes = {"b: stop not confirmed"};
  CHECK(l.put(cd) == GateOutcome::applied);
  CHECK(l.ledger.job("j")->cancel_complete);
  CHECK(l.ledger.job("j")->cancel_errors.size() == 1);
  CHECK(l.put(op(GateOp::retire, "j")) == GateOutcome::applied);
  CHECK(l.ledger.job("j") == nullptr);

  REQUIRE(l.put(accept("t", {"a", "b"})) == GateOutcome::applied);
  l.put(done("t", 0, JobState::completed));
  GateEntry t = op(GateOp::job_done, "t");
  t.state = static_cast<std::uint8_t>(JobState::timeout);
  t.error = "timed out";
  CHECK(l.put(t) == GateOutcome::applied);
  l.put(done("t", 1, JobState::cancelled));
  CHECK(l.ledger.job("t")->shares[1].state == JobState::timeout);
  CHECK(l.ledger.job("t")->state == JobState::timeout);
}

TEST_CASE("gate ledger: reroute moves an unaccepted share only", "[gate][ledger]") {
  L l;
  REQUIRE(l.put(accept("j", {"a", "b"})) == GateOutcome::applied);
  GateEntry r = op(GateOp::reroute, "j", 0);
  r.dc = std::string("b");                    // (not literals: GCC 12 -O3 -Wrestrict false positive)
  CHECK(l.put(r) == GateOutcome::malformed);  // one share per datacenter
  r.dc = std::string("c");
  CHECK(l.put(r) == GateOutcome::applied);
  CHECK(l.ledger.job("j")->shares[0].dc == "c");
  CHECK(l.ledger.job("j")->shares[0].tried == std::vector<std::string>{"a"});
  l.put(op(GateOp::dc_accepted, "j", 0));
  r.dc = std::string("d");
  CHECK(l.put(r) == GateOutcome::share_done);
}

TEST_CASE("gate ledger: snapshots round-trip; bad input changes nothing", "[gate][ledger]") {
  L l;
  REQUIRE(l.put(accept("j", {"a", "b"}, 1, "k")) == GateOutcome::applied);
  l.put(done("j", 0, JobState::completed, 3));
  auto snap = l.ledger.snapshot();
  GateLedger other(GateLedger::Limits{3});
  REQUIRE(other.restore(snap).ok());
  CHECK(other.job("j")->shares[0].completed == 3);
  CHECK(other.job_for_key("k") == std::optional<std::string>("j"));
  CHECK(other.active() == 1);
  CHECK(other.applied_index() == l.ledger.applied_index());
  snap[0] = 99;
  CHECK_FALSE(other.restore(snap).ok());
  CHECK(other.job("j") != nullptr);  // unchanged
  const std::vector<std::uint8_t> junk{1, 0xff, 0xff};
  CHECK(static_cast<GateOutcome>(l.ledger.apply(++l.index, junk)) == GateOutcome::malformed);
  CHECK(l.ledger.malformed() == 1);
  CHECK(l.ledger.size() == 1);
}

TEST_CASE("gate ledger: dc_done records whether the gate decided the share's end", "[gate][ledger]") {
  L l;
  REQUIRE(l.put(accept("j", {"a", "b"})) == GateOutcome::applied);
  GateEntry lost = done("j", 0, JobState::failed);
  lost.gate_decided = true;
  CHECK(l.put(lost) == GateOutcome::applied);
  CHECK(l.put(done("j", 1, JobState::failed)) == GateOutcome::applied);
  const GateJob* j = l.ledger.job("j");
  REQUIRE(j != nullptr);
  CHECK(j->shares[0].gate_decided);
  CHECK_FALSE(j->shares[1].gate_decided);
  GateEntry late = done("j", 0, JobState::completed, 5);  // the datacenter's late word changes nothing
  CHECK(l.put(late) == GateOutcome::late);
  CHECK(j->shares[0].gate_decided);
  GateLedger copy;
  REQUIRE(copy.restore(l.ledger.snapshot()).ok());
  CHECK(copy.job("j")->shares[0].gate_decided);
}
