// The role codec (cluster/codec.hpp, cluster/messages.hpp): every message type in use round-trips;
// messages of newer and older versions decode (the evolution rules at the top of messages.hpp);
// malformed input is refused with an error.
#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "role_messages.hpp"

using namespace hs::cluster;
using namespace hs::cluster::testing;

namespace {

using Bytes = std::vector<std::uint8_t>;

template <class T>
concept Record = requires(T t, Enc& e) {
  t.io(e);
};

// Sets every field at every depth to a value unlike its default (vectors get two elements).
struct Fill {
  std::uint64_t n = 0;
  template <class T>
  void field(T& v) {
    (*this)(v);
  }
  void operator()(std::string& s) { s = "text-" + std::to_string(++n); }
  void operator()(Bytes& b) {
    ++n;
    b = {static_cast<std::uint8_t>(n), 0, 0xff, static_cast<std::uint8_t>(n >> 8)};
  }
  void operator()(bool& v) {
    ++n;
    v = true;
  }
  void operator()(double& v) { v = 0.25 + static_cast<double>(++n); }
  void operator()(std::int64_t& v) { v = -static_cast<std::int64_t>(++n) * 1'000'003; }
  template <class T>
  requires std::is_unsigned_v<T>
  void operator()(T& v) {
    ++n;
    v = sizeof(T) == 1 ? static_cast<T>(n % 200 + 1) : static_cast<T>(n * 1'000'003 + 129);  // multi-byte varints
  }
  template <class T>
  requires std::is_enum_v<T>
  void operator()(T& v) {
    ++n;
    v = static_cast<T>(1);
  }
  template <class T>
  void operator()(std::vector<T>& v) {
    v.resize(2);
    for (auto& e : v) (*this)(e);
  }
  template <class A, class B>
  void operator()(std::pair<A, B>& p) {
    (*this)(p.first);
    (*this)(p.second);
  }
  template <Record T>
  void operator()(T& t) {
    t.io(*this);
  }
};

// Counts leaves (at every depth) that hold a zero or empty value.
struct CountZeros {
  int leaves = 0, zeros = 0;
  template <class T>
  void field(T& v) {
    (*this)(v);
  }
  void leaf(bool zero) {
    ++leaves;
    zeros += zero ? 1 : 0;
  }
  void operator()(std::string& s) { leaf(s.empty()); }
  void operator()(Bytes& b) { leaf(b.empty()); }
  void operator()(bool& v) { leaf(!v); }
  void operator()(double& v) { leaf(v == 0); }
  void operator()(std::int64_t& v) { leaf(v == 0); }
  template <class T>
  requires(std::is_unsigned_v<T> || std::is_enum_v<T>) void operator()(T& v) { leaf(v == T{}); }
  template <class T>
  void operator()(std::vector<T>& v) {
    if (v.empty()) leaf(true);
    for (auto& e : v) (*this)(e);
  }
  template <class A, class B>
  void operator()(std::pair<A, B>& p) {
    (*this)(p.first);
    (*this)(p.second);
  }
  template <Record T>
  void operator()(T& t) {
    t.io(*this);
  }
};

// Encodes like Enc, as another version would: `keep` fields per record (an older sender; every
// record at every depth), or with fields of a newer version appended to every record (`newer`).
struct VersionedEnc {
  Writer w;
  std::size_t keep = std::numeric_limits<std::size_t>::max();
  bool newer = false;
  std::vector<std::size_t> next_field;
  template <class T>
  void field(T& v) {
    if (next_field.back()++ < keep) (*this)(v);
  }
  void operator()(std::string& s) { w.str(s); }
  void operator()(Bytes& b) { w.bytes(b); }
  void operator()(bool& v) { w.b(v); }
  void operator()(double& v) { w.f64(v); }
  void operator()(std::int64_t& v) { w.i64(v); }
  template <class T>
  requires(std::is_unsigned_v<T> || std::is_enum_v<T>) void operator()(T& v) { w.var(static_cast<std::uint64_t>(v)); }
  template <class T>
  void operator()(std::vector<T>& v) {
    w.var(v.size());
    for (auto& e : v) (*this)(e);
  }
  template <class A, class B>
  void operator()(std::pair<A, B>& p) {
    (*this)(p.first);
    (*this)(p.second);
  }
  template <Record T>
  void operator()(T& t) {
    next_field.push_back(0);
    const std::size_t at = w.out().size();
    t.io(*this);
    if (newer) {  // a newer version's fields: a varint, a string, a struct of its own, a vector
      w.var(0x1234567);
      w.str("a field of a newer version");
      const std::size_t inner = w.out().size();
      w.var(7);
      w.str("its own struct");
      w.prefix_length(inner);
      w.var(2);
      w.str("a");
      w.str("b");
    }
    w.prefix_length(at);
    next_field.pop_back();
  }
};

// The addresses of a struct's fields, in order.
struct Collect {
  std::vector<const void*> at;
  template <class T>
  void field(T& v) {
    at.push_back(&v);
  }
};

// Gives every field after the first `keep` of each record (at every depth) its default: what a
// decoder must produce from VersionedEnc{keep} bytes.
struct ResetFrom {
  std::size_t keep;
  struct Level {
    std::vector<const void*> defaults;
    std::size_t next = 0;
  };
  std::vector<Level> levels;
  template <class T>
  void field(T& v) {
    const std::size_t i = levels.back().next++;
    if (i >= keep) {
      v = *static_cast<const T*>(levels.back().defaults[i]);
    } else {
      (*this)(v);
    }
  }
  template <Record T>
  void operator()(T& t) {
    T defaults{};
    Collect c;
    defaults.io(c);
    levels.push_back(Level{std::move(c.at)});
    t.io(*this);
    levels.pop_back();
  }
  template <class T>
  void operator()(std::vector<T>& v) {
    for (auto& e : v) (*this)(e);
  }
  template <class T>
  void operator()(T&) {}
};

template <class S>
Bytes body_of(S& m) {
  Enc e;
  e(m);
  return e.w.take();
}

template <class S>
S filled() {
  S m;
  Fill f;
  f(m);
  return m;
}

template <class S>
std::size_t field_count(S& m) {
  Collect c;
  m.io(c);
  return c.at.size();
}

}  // namespace

TEST_CASE("Codec: every message type is listed once, as in use or retired", "[cluster][codec]") {
  for (int v = 1; v < static_cast<int>(MsgType::kCount); ++v) {
    const auto t = static_cast<MsgType>(v);
    CAPTURE(v);
    CHECK(retired(t) != listed(t));
  }
}

TEST_CASE("Codec: every message type round-trips with non-default values in every field", "[cluster][codec]") {
  for_each_message([]<class S>(MsgType t) {
    CAPTURE(static_cast<int>(t));
    S m = filled<S>();
    CountZeros z;
    z(m);
    CHECK(z.leaves > 0);
    CHECK(z.zeros == 0);  // every field, at every depth, was given a value unlike its default
    const Bytes bytes = encode(t, m);
    REQUIRE(bytes.size() > 1);
    CHECK(bytes[0] == static_cast<std::uint8_t>(t));
    S d;
    const char* why = "";
    REQUIRE(decode(std::span(bytes).subspan(1), d, &why));
    CHECK(encode(t, d) == bytes);
    // The test's encoder of other versions writes what Enc writes when it plays this version.
    VersionedEnc same;
    same(m);
    CHECK(same.w.out() == body_of(m));
  });
}

TEST_CASE("Codec: mixed minor versions, generic: a newer sender's fields are skipped at every depth",
          "[cluster][codec]") {
  for_each_message([]<class S>(MsgType t) {
    CAPTURE(static_cast<int>(t));
    S m = filled<S>();
    VersionedEnc newer;
    newer.newer = true;
    newer(m);
    CHECK(newer.w.out().size() > body_of(m).size());
    S d;
    const char* why = "";
    REQUIRE(decode(newer.w.out(), d, &why));
    CHECK(body_of(d) == body_of(m));
  });
}

TEST_CASE("Codec: mixed minor versions, generic: an older sender's missing fields take their defaults",
          "[cluster][codec]") {
  for_each_message([]<class S>(MsgType t) {
    S m = filled<S>();
    const std::size_t n = field_count(m);
    for (std::size_t keep = 0; keep <= n; ++keep) {
      CAPTURE(static_cast<int>(t), keep);
      VersionedEnc older;
      older.keep = keep;
      older(m);
      S d;
      const char* why = "";
      REQUIRE(decode(older.w.out(), d, &why));
      S expected = m;
      ResetFrom reset{keep, {}};
      reset(expected);
      CHECK(body_of(d) == body_of(expected));
      if (keep < n) CHECK(body_of(d) != body_of(m));
    }
  });
}

// ---- explicit versions of two messages, as the next and the previous version would declare them ----
namespace {

// Next version: fields appended to ExecReport (the element of Heartbeat.execs) and to Heartbeat.
struct ExecReportNext : ExecReport {
  std::string host = "next-host";
  std::vector<std::string> tags{"x", "y"};
  template <class IO>
  void io(IO& f) {
    ExecReport::io(f);
    f.field(host);
    f.field(tags);
  }
};
struct HeartbeatNext {
  std::uint32_t total_cores = 0;
  std::uint32_t available_cores = 0;
  Health health = Health::healthy;
  std::vector<ExecReportNext> execs;
  std::uint64_t boot = 0;
  std::uint64_t memory_mb = 4096;  // appended
  HS_FIELDS(total_cores, available_cores, health, execs, boot, memory_mb)
};
// Previous version: ExecReport without completed and failed, Heartbeat without boot.
struct ExecReportPrev {
  std::string job_id;
  std::string workflow;
  std::uint64_t token = 0;
  std::uint32_t cores = 0;
  NodeId leader = 0;
  HS_FIELDS(job_id, workflow, token, cores, leader)
};
struct HeartbeatPrev {
  std::uint32_t total_cores = 0;
  std::uint32_t available_cores = 0;
  Health health = Health::healthy;
  std::vector<ExecReportPrev> execs;
  HS_FIELDS(total_cores, available_cores, health, execs)
};

// Next version of Submit: fields appended to WorkflowSpec (element of JobSpec.workflows, itself a
// field of Submit), to JobSpec and to Submit.
struct WorkflowSpecNext : WorkflowSpec {
  std::string region = "eu-west";
  std::uint32_t weight = 7;
  template <class IO>
  void io(IO& f) {
    WorkflowSpec::io(f);
    f.field(region);
    f.field(weight);
  }
};
struct JobSpecNext {
  std::string job_id;
  std::string idempotency_key;
  std::uint64_t timeout_ms = 0;
  std::uint64_t stuck_ms = 0;
  std::uint32_t retry_budget = 10;
  std::uint32_t workflow_retries = 3;
  std::vector<WorkflowSpecNext> workflows;
  std::vector<std::string> datacenters;  // the gate fields (this version's last)
  std::uint32_t datacenter_count = 0;
  std::uint32_t min_datacenters = 0;
  std::uint64_t best_effort_ms = 0;
  std::string owner = "team-a";  // appended
  HS_FIELDS(job_id, idempotency_key, timeout_ms, stuck_ms, retry_budget, workflow_retries, workflows, datacenters,
            datacenter_count, min_datacenters, best_effort_ms, owner)
};
struct SubmitNext {
  std::uint64_t req = 0;
  JobSpecNext spec;
  std::uint64_t gate_fence = 0;
  bool dry_run = true;  // appended
  HS_FIELDS(req, spec, gate_fence, dry_run)
};

ExecReport exec(int i) {
  ExecReport e;
  e.job_id = "job-" + std::to_string(i);
  e.workflow = "wf-" + std::to_string(i);
  e.token = 1000 + static_cast<std::uint64_t>(i);
  e.cores = 2;
  e.leader = 0x7f000001'1f90ULL;
  e.completed = 12345 + static_cast<std::uint64_t>(i);
  e.failed = 17;
  return e;
}

}  // namespace

TEST_CASE("Codec: mixed minor versions: a newer Heartbeat (fields appended to it and to its vector's elements)",
          "[cluster][codec]") {
  HeartbeatNext next;
  next.total_cores = 16;
  next.available_cores = 9;
  next.health = Health::busy;
  for (int i = 0; i < 3; ++i) {
    ExecReportNext e;
    static_cast<ExecReport&>(e) = exec(i);
    next.execs.push_back(e);
  }
  next.boot = 0xfeedface;
  const Bytes bytes = encode(MsgType::heartbeat, next);
  Heartbeat d;
  const char* why = "";
  REQUIRE(decode(std::span(bytes).subspan(1), d, &why));
  CHECK(d.total_cores == 16);
  CHECK(d.available_cores == 9);
  CHECK(d.health == Health::busy);
  CHECK(d.boot == 0xfeedface);
  // Before records, the old decoder read the first element's appended fields as the second element.
  REQUIRE(d.execs.size() == 3);
  for (int i = 0; i < 3; ++i) {
    ExecReport want = exec(i);
    CHECK(body_of(d.execs[static_cast<std::size_t>(i)]) == body_of(want));
  }
}

TEST_CASE("Codec: mixed minor versions: an older Heartbeat decodes with defaults for what it lacks",
          "[cluster][codec]") {
  HeartbeatPrev prev;
  prev.total_cores = 8;
  prev.available_cores = 3;
  prev.health = Health::degraded;
  for (int i = 0; i < 2; ++i) {
    ExecReport full = exec(i);
    prev.execs.push_back({full.job_id, full.workflow, full.token, full.cores, full.leader});
  }
  const Bytes bytes = encode(MsgType::heartbeat, prev);
  Heartbeat d;
  d.boot = 99;  // decode() leaves a field the sender did not write as it found it: the default
  Heartbeat defaults;
  const char* why = "";
  REQUIRE(decode(std::span(bytes).subspan(1), d, &why));
  CHECK(d.total_cores == 8);
  CHECK(d.available_cores == 3);
  CHECK(d.health == Health::degraded);
  CHECK(d.boot == 99);
  Heartbeat fresh;
  REQUIRE(decode(std::span(bytes).subspan(1), fresh, &why));
  CHECK(fresh.boot == defaults.boot);
  REQUIRE(fresh.execs.size() == 2);
  for (int i = 0; i < 2; ++i) {
    const ExecReport& e = fresh.execs[static_cast<std::size_t>(i)];
    ExecReport want = exec(i);
    CHECK(e.job_id == want.job_id);
    CHECK(e.workflow == want.workflow);
    CHECK(e.token == want.token);
    CHECK(e.cores == want.cores);
    CHECK(e.leader == want.leader);
    CHECK(e.completed == 0);
    CHECK(e.failed == 0);
  }
}

TEST_CASE("Codec: mixed minor versions: a newer Submit (fields appended at three depths)", "[cluster][codec]") {
  SubmitNext next;
  next.req = 77;
  next.spec.job_id = "job-1";
  next.spec.idempotency_key = "key-1";
  next.spec.timeout_ms = 60'000;
  next.spec.retry_budget = 4;
  for (int i = 0; i < 3; ++i) {
    WorkflowSpecNext w;
    w.name = "wf-" + std::to_string(i);
    w.deps = {"wf-0"};
    w.vus = 100 + static_cast<std::uint32_t>(i);
    w.cores = 2;
    w.priority = Priority::high;
    w.plan = {1, 2, 3, static_cast<std::uint8_t>(i)};
    next.spec.workflows.push_back(w);
  }
  next.spec.datacenters = {"dc-a", "dc-b"};
  next.gate_fence = 12;
  const Bytes bytes = encode(MsgType::submit, next);
  Submit d;
  const char* why = "";
  REQUIRE(decode(std::span(bytes).subspan(1), d, &why));
  CHECK(d.req == 77);
  CHECK(d.spec.job_id == "job-1");
  CHECK(d.spec.idempotency_key == "key-1");
  CHECK(d.spec.timeout_ms == 60'000);
  CHECK(d.spec.retry_budget == 4);
  CHECK(d.spec.workflow_retries == 3);
  CHECK(d.spec.datacenters == std::vector<std::string>{"dc-a", "dc-b"});
  CHECK(d.gate_fence == 12);
  REQUIRE(d.spec.workflows.size() == 3);
  for (int i = 0; i < 3; ++i) {
    WorkflowSpec want = next.spec.workflows[static_cast<std::size_t>(i)];
    CHECK(body_of(d.spec.workflows[static_cast<std::size_t>(i)]) == body_of(want));
  }
  // The digest a manager keeps for idempotency is the same whichever version sent the spec.
  JobSpec same;
  same.job_id = "job-1";
  same.idempotency_key = "key-1";
  same.timeout_ms = 60'000;
  same.retry_budget = 4;
  for (auto& w : next.spec.workflows) same.workflows.push_back(w);
  same.datacenters = {"dc-a", "dc-b"};
  CHECK(digest_of(d.spec) == digest_of(same));
}

// ---- malformed input ----

TEST_CASE("Codec: a message cut at any byte, or followed by a byte, is refused", "[cluster][codec]") {
  for_each_message([]<class S>(MsgType t) {
    CAPTURE(static_cast<int>(t));
    S m = filled<S>();
    const Bytes body = body_of(m);
    std::size_t accepted = 0;
    for (std::size_t len = 0; len < body.size(); ++len) {
      S d;
      const char* why = "";
      if (decode(std::span(body).first(len), d, &why)) {
        ++accepted;
        UNSCOPED_INFO("accepted a cut at " << len << " of " << body.size());
      } else if (std::string(why).empty()) {
        FAIL("refused without an error at " << len);
      }
    }
    CHECK(accepted == 0);
    Bytes longer = body;
    longer.push_back(0);
    S d;
    const char* why = "";
    CHECK_FALSE(decode(longer, d, &why));
    CHECK(std::string(why) == "bytes after the message");
  });
}

namespace {

template <class S>
std::string refusal(const Bytes& body) {
  S d;
  const char* why = "";
  if (decode(body, d, &why)) return "accepted";
  return why;
}

// A record from hand-written fields.
template <class Fn>
Bytes record(Fn&& fields) {
  Writer w;
  fields(w);
  w.prefix_length(0);
  return w.take();
}

}  // namespace

TEST_CASE("Codec: over-limit lengths and counts are refused; the limits themselves are accepted", "[cluster][codec]") {
  SECTION("strings") {
    SubmitAck a;
    a.error = std::string(kMaxString, 'x');
    CHECK(refusal<SubmitAck>(body_of(a)) == "accepted");
    a.error.push_back('x');
    CHECK(refusal<SubmitAck>(body_of(a)) == "string too long");
  }
  SECTION("byte strings") {
    Dispatch d;
    d.plan.assign(kMaxBlob, 7);
    CHECK(refusal<Dispatch>(body_of(d)) == "accepted");
    d.plan.push_back(7);
    CHECK(refusal<Dispatch>(body_of(d)) == "bytes too long");
  }
  SECTION("vector counts") {
    NodeStatus st;
    st.active_job_ids.assign(kMaxItems, "");
    CHECK(refusal<NodeStatus>(body_of(st)) == "accepted");
    st.active_job_ids.emplace_back();
    CHECK(refusal<NodeStatus>(body_of(st)) == "count too large");
    // A count larger than the bytes left in its record (each element takes at least one byte).
    HeartbeatAck ack;
    ack.stop.resize(3);
    Bytes b = body_of(ack);
    // record length, is_leader, count, 3 elements of 5 bytes, term, leader: a count of 60 with 17
    // bytes behind it
    REQUIRE(b[2] == 3);
    b[2] = 60;
    CHECK(refusal<HeartbeatAck>(b) == "count too large");
  }
  SECTION("records") {
    // Longer than the input.
    CHECK(refusal<NodeQuery>(Bytes{5, 1}) == "record longer than what contains it");
    // A vector element's record longer than the record that contains it.
    HeartbeatAck ack;
    ack.stop.resize(1);
    Bytes b = body_of(ack);
    // record length, is_leader, count, the element (length 4: an empty job_id and workflow, a zero
    // token and part), term, leader: an element of 7 bytes where 6 are left
    REQUIRE(b[3] == 4);
    b[3] = 7;
    CHECK(refusal<HeartbeatAck>(b) == "record longer than what contains it");
    CHECK(refusal<NodeQuery>(Bytes{}) == "truncated");
  }
  SECTION("integers") {
    // CancelReply: req, success, already_cancelled, already_completed, cancelled_workflow_count (u32)
    auto cancel_reply = [](std::uint64_t count, std::uint8_t success) {
      return record([&](Writer& w) {
        w.var(1);
        w.u8(success);
        w.b(false);
        w.b(false);
        w.var(count);
      });
    };
    CHECK(refusal<CancelReply>(cancel_reply(0xffffffffULL, 1)) == "accepted");
    CHECK(refusal<CancelReply>(cancel_reply(0x100000000ULL, 1)) == "integer out of range");
    CHECK(refusal<CancelReply>(cancel_reply(1, 2)) == "bad bool");
    // An enum beyond its underlying type: SubmitAck.code (u8) after req, accepted, job_id.
    CHECK(refusal<SubmitAck>(record([](Writer& w) {
            w.var(1);
            w.b(true);
            w.str("j");
            w.var(256);
          })) == "integer out of range");
    // A varint of more than 64 bits.
    CHECK(refusal<NodeQuery>(record([](Writer& w) {
            for (int i = 0; i < 10; ++i) w.u8(0xff);
            w.u8(1);
          })) == "varint too long");
  }
}

// `hyperscale results` (issue 11): StatusQuery.with_plan and WorkflowView.plan, appended last.
namespace {
struct StatusQueryPrev {
  std::uint64_t req = 0;
  std::string job_id;
  HS_FIELDS(req, job_id)
};
}  // namespace

TEST_CASE("Codec: StatusQuery.with_plan and WorkflowView.plan round-trip; an older query asks for no plan",
          "[cluster][codec]") {
  StatusQuery q{7, "job-1", true};
  const Bytes qb = encode(MsgType::status_query, q);
  StatusQuery qd;
  const char* why = "";
  REQUIRE(decode(std::span(qb).subspan(1), qd, &why));
  CHECK(qd.with_plan);
  CHECK(qd.job_id == "job-1");
  // An older client's query (no with_plan): the default, no plan in the reply.
  StatusQueryPrev prev{9, "job-2"};
  StatusQuery old;
  REQUIRE(decode(body_of(prev), old, &why));
  CHECK(old.req == 9);
  CHECK(old.job_id == "job-2");
  CHECK_FALSE(old.with_plan);

  StatusReply r;
  r.req = 3;
  r.found = true;
  WorkflowView w;
  w.name = "w";
  const std::string text = "version = 1\n";
  w.plan.assign(text.begin(), text.end());
  r.job.workflows = {w, w};
  const Bytes rb = encode(MsgType::status_reply, r);
  StatusReply rd;
  REQUIRE(decode(std::span(rb).subspan(1), rd, &why));
  REQUIRE(rd.job.workflows.size() == 2);
  CHECK(std::string(rd.job.workflows[1].plan.begin(), rd.job.workflows[1].plan.end()) == text);
  // The plan is the view's last field: a reply of the previous version (every field but it) decodes
  // with no plan.
  VersionedEnc older;
  older.keep = field_count(w) - 1;
  older(w);
  WorkflowView wd;
  REQUIRE(decode(older.w.out(), wd, &why));
  CHECK(wd.name == "w");
  CHECK(wd.plan.empty());
}

TEST_CASE("Codec: WatchWorkflow.datacenters (a gate's per-datacenter shares) round-trip; a manager's reply has none",
          "[cluster][codec]") {
  WatchReply r;
  r.req = 5;
  r.state = JobState::running;
  WatchWorkflow f;
  f.name = "load";
  f.window_ms = 1000;
  f.datacenters = {WatchDc{0, "dc-a", JobState::running, 12, {1, 2, 3}, 9},
                   WatchDc{1, "dc-b", JobState::completed, 11, {4}, 8}};
  r.workflows = {f};
  const Bytes b = encode(MsgType::watch_reply, r);
  WatchReply d;
  const char* why = "";
  REQUIRE(decode(std::span(b).subspan(1), d, &why));
  REQUIRE(d.workflows.size() == 1);
  REQUIRE(d.workflows[0].datacenters.size() == 2);
  CHECK(d.workflows[0].datacenters[1].name == "dc-b");
  CHECK(d.workflows[0].datacenters[1].state == JobState::completed);
  CHECK(d.workflows[0].datacenters[0].totals == std::vector<std::uint8_t>{1, 2, 3});
  CHECK(d.workflows[0].datacenters[0].windows == 9);
  // `datacenters` is the workflow's last field: a manager of the previous version (every field but
  // it) answers a reply that decodes with none.
  VersionedEnc older;
  older.keep = field_count(f) - 1;
  older(f);
  WatchWorkflow fd;
  REQUIRE(decode(older.w.out(), fd, &why));
  CHECK(fd.name == "load");
  CHECK(fd.window_ms == 1000);
  CHECK(fd.datacenters.empty());
}
