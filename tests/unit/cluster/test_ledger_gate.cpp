// JobLedger rules for the gate tier (docs/cluster.md "Gates"): a job's gate fence (accept, the
// gate_fence op, a gate's cancel) and tombstones (a gate's cancel of a job never submitted here),
// and that entries and snapshots written before these fields existed still decode.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include "hyperscale/cluster/ledger.hpp"

using namespace hs;
using namespace hs::cluster;

namespace {

JobSpec spec(const std::string& id, std::size_t workflows = 2) {
  JobSpec s;
  s.job_id = id;
  s.idempotency_key = "key-" + id;
  for (std::size_t i = 0; i < workflows; ++i) {
    WorkflowSpec w;
    w.name = fmt::format("wf{}", i);
    s.workflows.push_back(w);
  }
  return s;
}

struct Fixture {
  JobLedger ledger{JobLedger::Limits{.max_jobs = 4}};
  std::uint64_t index = 0;

  LedgerOutcome run(LedgerEntry e) {
    auto bytes = encode_entry(e);
    return static_cast<LedgerOutcome>(ledger.apply(++index, bytes));
  }
  LedgerOutcome accept(const std::string& id, std::uint64_t gate_fence, std::uint64_t digest = 7) {
    LedgerEntry e;
    e.op = LedgerOp::accept;
    e.job_id = id;
    e.spec = spec(id);
    e.digest = digest;
    e.gate_fence = gate_fence;
    return run(e);
  }
  LedgerOutcome op(LedgerOp o, const std::string& id, std::uint64_t gate_fence) {
    LedgerEntry e;
    e.op = o;
    e.job_id = id;
    e.gate_fence = gate_fence;
    return run(e);
  }
  LedgerOutcome dispatch(const std::string& id, std::uint32_t wf, std::uint64_t token) {
    LedgerEntry e;
    e.op = LedgerOp::dispatch;
    e.job_id = id;
    e.workflow = wf;
    e.token = token;
    e.worker = 9;
    e.cores = 1;
    return run(e);
  }
  const LedgerJob& job(const std::string& id) {
    const LedgerJob* j = ledger.job(id);
    REQUIRE(j != nullptr);
    return *j;
  }
};

// A LedgerJob and a LedgerEntry as version 3 wrote them before the gate fields were appended.
struct OldJob {
  JobSpec spec;
  std::uint64_t digest = 0;
  JobState state = JobState::submitted;
  bool cancel_requested = false;
  std::string error;
  std::uint64_t accepted_index = 0;
  std::uint64_t token_hw = 0;
  std::vector<LedgerWorkflow> workflows;
  std::uint32_t retries_used = 0;
  std::uint64_t elapsed_ms = 0;
  std::vector<std::string> cancel_errors;
  HS_FIELDS(spec, digest, state, cancel_requested, error, accepted_index, token_hw, workflows, retries_used, elapsed_ms,
            cancel_errors)
};
struct OldImage {
  std::uint64_t applied = 0;
  std::vector<OldJob> jobs;
  HS_FIELDS(applied, jobs)
};
struct Image {  // a ledger snapshot's image (ledger.cpp), for writing one by hand
  std::uint64_t applied = 0;
  std::vector<LedgerJob> jobs;
  HS_FIELDS(applied, jobs)
};
struct OldEntry {
  LedgerOp op = LedgerOp::accept;
  std::uint64_t term = 0;
  std::string job_id;
  JobSpec spec;
  std::uint64_t digest = 0;
  std::uint32_t workflow = 0;
  NodeId worker = 0;
  std::uint64_t token = 0;
  std::uint32_t cores = 0;
  std::uint8_t state = 0;
  std::uint64_t completed = 0, failed = 0;
  std::string error;
  std::uint64_t elapsed_ms = 0;
  bool uncounted = false;
  bool exclude = false;
  std::string note;
  std::vector<std::uint8_t> stats;
  KeyValues published;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> progress;
  std::uint32_t part = 0;
  std::vector<PartAssign> parts;
  std::uint32_t shard_total = 0;
  std::uint64_t started = 0;
  std::vector<PartProgress> part_progress;
  std::uint64_t start_at_ms = 0;
  HS_FIELDS(op, term, job_id, spec, digest, workflow, worker, token, cores, state, completed, failed, error, elapsed_ms,
            uncounted, exclude, note, stats, published, progress, part, parts, shard_total, started, part_progress,
            start_at_ms)
};

template <class T>
std::vector<std::uint8_t> versioned(std::uint8_t version, T& v) {
  Enc enc;
  enc.w.u8(version);
  enc(v);
  return enc.w.take();
}

}  // namespace

TEST_CASE("ledger gate: accept records the gate fence; gate_fence raises it, never lowers it") {
  Fixture f;
  REQUIRE(f.accept("a", 5) == LedgerOutcome::applied);
  CHECK(f.job("a").gate_fence == 5);
  CHECK(f.op(LedgerOp::gate_fence, "a", 3) == LedgerOutcome::stale_token);
  CHECK(f.op(LedgerOp::gate_fence, "a", 5) == LedgerOutcome::stale_token);  // not above it
  CHECK(f.job("a").gate_fence == 5);
  CHECK(f.op(LedgerOp::gate_fence, "a", 9) == LedgerOutcome::applied);
  CHECK(f.job("a").gate_fence == 9);
  CHECK(f.op(LedgerOp::gate_fence, "zz", 9) == LedgerOutcome::unknown_job);
  // A duplicate accept (a gate re-sending its submit) changes nothing, its fence included.
  CHECK(f.accept("a", 12) == LedgerOutcome::duplicate);
  CHECK(f.job("a").gate_fence == 9);
  // A client's job (no gate) has fence 0 until a gate raises it.
  REQUIRE(f.accept("b", 0) == LedgerOutcome::applied);
  CHECK(f.job("b").gate_fence == 0);
  CHECK(f.op(LedgerOp::gate_fence, "b", 1) == LedgerOutcome::applied);
}

TEST_CASE("ledger gate: gate_fence applies to a terminal job without changing its state") {
  Fixture f;
  REQUIRE(f.accept("a", 2) == LedgerOutcome::applied);
  REQUIRE(f.dispatch("a", 0, make_token(1, 1)) == LedgerOutcome::applied);
  REQUIRE(f.op(LedgerOp::cancel, "a", 2) == LedgerOutcome::applied);
  REQUIRE(f.job("a").state == JobState::cancelled);
  CHECK(f.op(LedgerOp::gate_fence, "a", 4) == LedgerOutcome::applied);
  CHECK(f.job("a").gate_fence == 4);
  CHECK(f.job("a").state == JobState::cancelled);
  CHECK(f.job("a").workflows[0].state == WfState::dispatched);  // its live part still waits for the stop
}

TEST_CASE("ledger gate: a gate's cancel below the job's fence changes nothing; at or above it cancels and raises") {
  Fixture f;
  REQUIRE(f.accept("a", 5) == LedgerOutcome::applied);
  REQUIRE(f.dispatch("a", 0, make_token(1, 1)) == LedgerOutcome::applied);
  CHECK(f.op(LedgerOp::cancel, "a", 3) == LedgerOutcome::stale_token);
  CHECK(f.job("a").state == JobState::running);
  CHECK_FALSE(f.job("a").cancel_requested);
  SECTION("the owner's fence") {
    CHECK(f.op(LedgerOp::cancel, "a", 5) == LedgerOutcome::applied);
    CHECK(f.job("a").state == JobState::cancelled);
    CHECK(f.job("a").gate_fence == 5);
  }
  SECTION("a newer owner's fence is raised with the cancel") {
    CHECK(f.op(LedgerOp::cancel, "a", 8) == LedgerOutcome::applied);
    CHECK(f.job("a").gate_fence == 8);
  }
  SECTION("a client's cancel (no gate fence) is not fenced by the gate") {
    CHECK(f.op(LedgerOp::cancel, "a", 0) == LedgerOutcome::applied);
    CHECK(f.job("a").gate_fence == 5);
  }
}

TEST_CASE("ledger gate: a tombstone stands for a job cancelled before it was submitted; its submit conflicts") {
  Fixture f;
  CHECK(f.op(LedgerOp::tombstone, "t", 0) == LedgerOutcome::malformed);  // a gate's fence is required
  CHECK(f.ledger.job("t") == nullptr);
  REQUIRE(f.op(LedgerOp::tombstone, "t", 4) == LedgerOutcome::applied);
  const LedgerJob& t = f.job("t");
  CHECK(t.tombstone);
  CHECK(t.state == JobState::cancelled);
  CHECK(t.cancel_requested);
  CHECK(t.workflows.empty());
  CHECK(t.gate_fence == 4);
  CHECK_FALSE(t.error.empty());
  // The submit that was still on its way: refused whatever its payload, nothing to run.
  CHECK(f.accept("t", 4) == LedgerOutcome::conflict);
  CHECK(f.accept("t", 4, 0) == LedgerOutcome::conflict);
  CHECK(f.job("t").workflows.empty());
  CHECK_FALSE(f.ledger.job_for_key("key-t"));
  CHECK(f.dispatch("t", 0, make_token(1, 1)) == LedgerOutcome::unknown_job);  // no workflow to place
  // The gate's cancel again (a retry, or a newer owner): a duplicate that raises the fence.
  CHECK(f.op(LedgerOp::tombstone, "t", 2) == LedgerOutcome::duplicate);
  CHECK(f.job("t").gate_fence == 4);
  CHECK(f.op(LedgerOp::tombstone, "t", 6) == LedgerOutcome::duplicate);
  CHECK(f.job("t").gate_fence == 6);
  CHECK(f.op(LedgerOp::gate_fence, "t", 7) == LedgerOutcome::applied);
  // A tombstone of a job that was accepted first is a conflict: the job itself is cancelled instead.
  REQUIRE(f.accept("a", 1) == LedgerOutcome::applied);
  CHECK(f.op(LedgerOp::tombstone, "a", 1) == LedgerOutcome::conflict);
  CHECK(f.job("a").state == JobState::submitted);
  CHECK_FALSE(f.job("a").tombstone);
  // It is terminal: retired like any cancelled job, after which the id is free again.
  CHECK(f.op(LedgerOp::retire, "t", 0) == LedgerOutcome::applied);
  CHECK(f.ledger.job("t") == nullptr);
  CHECK(f.accept("t", 4) == LedgerOutcome::applied);
}

TEST_CASE("ledger gate: tombstones count toward max_jobs") {
  Fixture f;
  for (int i = 0; i < 4; ++i) REQUIRE(f.op(LedgerOp::tombstone, fmt::format("t{}", i), 1) == LedgerOutcome::applied);
  CHECK(f.op(LedgerOp::tombstone, "t4", 1) == LedgerOutcome::full);
  CHECK(f.accept("a", 1) == LedgerOutcome::full);
}

TEST_CASE("ledger gate: entries and snapshots carry the gate fields and round-trip") {
  Fixture f;
  REQUIRE(f.accept("a", 5) == LedgerOutcome::applied);
  REQUIRE(f.op(LedgerOp::tombstone, "t", 3) == LedgerOutcome::applied);
  const auto snap = f.ledger.snapshot();
  JobLedger other;
  REQUIRE(other.restore(snap).ok());
  CHECK(other.snapshot() == snap);
  REQUIRE(other.job("a") != nullptr);
  CHECK(other.job("a")->gate_fence == 5);
  CHECK_FALSE(other.job("a")->tombstone);
  REQUIRE(other.job("t") != nullptr);
  CHECK(other.job("t")->tombstone);
  CHECK(other.job("t")->gate_fence == 3);
  CHECK(other.job("t")->state == JobState::cancelled);

  LedgerEntry e;
  e.op = LedgerOp::gate_fence;
  e.job_id = std::string("a");  // not a literal: GCC 12 -O3 -Wrestrict false positive
  e.gate_fence = 77;
  const auto bytes = encode_entry(e);
  LedgerEntry back;
  const char* why = nullptr;
  REQUIRE(decode_entry(bytes, back, &why));
  CHECK(back.op == LedgerOp::gate_fence);
  CHECK(back.gate_fence == 77);
  CHECK(std::string(name(LedgerOp::tombstone)) == "tombstone");
  CHECK(std::string(name(static_cast<LedgerOp>(200))) == "unknown");

  // An op past the last one is refused as malformed (what an older ledger does with these).
  auto future = bytes;
  REQUIRE(future[2] == static_cast<std::uint8_t>(LedgerOp::gate_fence));
  future[2] = static_cast<std::uint8_t>(LedgerOp::kLast) + 1;  // version, record length, op
  LedgerEntry x;
  CHECK_FALSE(decode_entry(future, x, &why));

  // A snapshot holding an inconsistent tombstone (workflows, or live) is refused.
  JobLedger copy;
  REQUIRE(copy.restore(snap).ok());
  Image img{copy.applied_index(), {*copy.job("t")}};
  img.jobs[0].state = JobState::running;
  JobLedger bad;
  CHECK_FALSE(bad.restore(versioned(3, img)).ok());
  CHECK(bad.size() == 0);
}

TEST_CASE("ledger gate: entries and snapshots written without the gate fields decode with fence 0") {
  Fixture f;
  OldEntry old;
  old.op = LedgerOp::accept;
  old.job_id = "a";
  old.spec = spec("a");
  old.digest = 7;
  const auto bytes = versioned(3, old);
  LedgerEntry e;
  const char* why = nullptr;
  REQUIRE(decode_entry(bytes, e, &why));
  CHECK(e.gate_fence == 0);
  CHECK(e.spec.workflows.size() == 2);
  REQUIRE(static_cast<LedgerOutcome>(f.ledger.apply(++f.index, bytes)) == LedgerOutcome::applied);
  CHECK(f.job("a").gate_fence == 0);
  CHECK_FALSE(f.job("a").tombstone);
  // An old cancel (no gate fence) of a gate's job is a client's cancel: not fenced.
  REQUIRE(f.op(LedgerOp::gate_fence, "a", 4) == LedgerOutcome::applied);
  OldEntry cancel;
  cancel.op = LedgerOp::cancel;
  cancel.job_id = "a";
  CHECK(static_cast<LedgerOutcome>(f.ledger.apply(++f.index, versioned(3, cancel))) == LedgerOutcome::applied);
  CHECK(f.job("a").state == JobState::cancelled);

  OldImage img;
  img.applied = 12;
  OldJob& j = img.jobs.emplace_back();
  j.spec = spec("b", 1);
  j.digest = 9;
  j.state = JobState::running;
  j.accepted_index = 3;
  j.workflows.resize(1);
  JobLedger restored;
  REQUIRE(restored.restore(versioned(3, img)).ok());
  REQUIRE(restored.job("b") != nullptr);
  CHECK(restored.job("b")->gate_fence == 0);
  CHECK_FALSE(restored.job("b")->tombstone);
  CHECK(restored.job("b")->state == JobState::running);
  CHECK(restored.applied_index() == 12);
}
