// The gate's merge of datacenters' live windows (gate::JobWindows over host::LoadWindows, the
// managers' merger): exact (counts add, histograms bucket for bucket), idempotent across repeats
// and a datacenter's leader change, closing only what every running datacenter closed, bounded.
#include <catch2/catch.hpp>

#include <random>

#include "hyperscale/gate/windows.hpp"
#include "hyperscale/host/load_windows.hpp"
#include "support/windows.hpp"

using namespace hs;
using namespace hs::cluster;

namespace {

WindowsFactory factory() {
  load::WindowMergerConfig c;
  c.lateness = 2;
  c.max_ahead = 300;
  return test::one_step_windows("get", c);
}

JobSpec spec() {
  JobSpec s;
  s.job_id = "j";
  WorkflowSpec w;
  w.name = "load";
  s.workflows.push_back(w);
  return s;
}

// A datacenter's merged window (part 0, token 0) of `latencies`, `failed` of them failed.
WindowBytes dc_window(std::uint64_t index, const std::vector<std::uint64_t>& latencies, std::uint64_t failed = 0) {
  load::Window w;
  w.workflow = "load";
  w.index = index;
  load::WindowStep s;
  s.name = "get";
  for (auto v : latencies) s.latency.record(v);
  s.total.executed = latencies.size();
  s.total.failed = failed;
  s.total.ok = latencies.size() - failed;
  s.total.reasons[0] = failed;
  s.measured = s.total;
  w.steps.push_back(s);
  w.iterations.started = w.iterations.completed = latencies.size();
  w.saturation.cpu_percent = 50;
  return load::encode_window(w);
}

WatchReply reply(JobState state, std::uint64_t now, std::vector<WatchWindow> windows, std::uint32_t window_ms = 1000,
                 std::uint64_t origin = 1'000'000) {
  WatchReply r;
  r.state = state;
  WatchWorkflow f;
  f.name = "load";
  f.origin_unix_ms = origin;
  f.window_ms = window_ms;
  f.now_index = now;
  f.totals = dc_window(now, {});
  f.windows = std::move(windows);
  r.workflows.push_back(std::move(f));
  return r;
}

load::Window decode(const WindowBytes& b) {
  auto w = load::decode_window(b.data(), b.size());
  REQUIRE(w.ok());
  return *w;
}

std::uint64_t requests(const WindowBytes& b) {
  std::uint64_t n = 0;
  for (const auto& s : decode(b).steps) n += s.total.executed;
  return n;
}

}  // namespace

TEST_CASE("gate windows: two datacenters' windows merge exactly, bucket for bucket") {
  gate::JobWindows jw(factory(), 2);
  const JobSpec s = spec();
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> lat(13.0, 1.0);
  load::Histogram all[4];
  std::vector<WatchWindow> a, b;
  std::uint64_t failed_total = 0;
  for (std::uint64_t i = 0; i < 4; ++i) {
    std::vector<std::uint64_t> la, lb;
    for (int k = 0; k < 2000; ++k) la.push_back(static_cast<std::uint64_t>(lat(rng)));
    for (int k = 0; k < 1500; ++k) lb.push_back(static_cast<std::uint64_t>(lat(rng)));
    for (auto v : la) all[i].record(v);
    for (auto v : lb) all[i].record(v);
    a.push_back(WatchWindow{i, dc_window(i, la, 3), {PartLoad{0, 7, 2, 0, 50, 0, false}}});
    b.push_back(WatchWindow{i, dc_window(i, lb, 1), {PartLoad{0, 9, 1, 0, 50, 0, false}}});
    failed_total += 4;
  }
  std::size_t budget = 10;
  auto ra = jw.add(s, 0, "dc-a", reply(JobState::running, 6, a), budget);
  auto rb = jw.add(s, 1, "dc-b", reply(JobState::running, 6, b), budget);
  CHECK(ra.merged == 4);
  CHECK(rb.merged == 4);
  CHECK(ra.refused + rb.refused == 0);
  CHECK(budget == 9);  // one merger for the workflow
  jw.advance({true, true});
  const WatchReply r = jw.reply(s, 0, 100, 1u << 20);
  REQUIRE(r.workflows.size() == 1);
  const WatchWorkflow& f = r.workflows[0];
  REQUIRE(f.windows.size() == 4);  // now 6, lateness 2: 0..3 closed
  for (std::size_t i = 0; i < 4; ++i) {
    const load::Window w = decode(f.windows[i].merged);
    REQUIRE(w.steps.size() == 1);
    CHECK(w.steps[0].total.executed == 3500);
    CHECK(w.steps[0].total.failed == 4);
    CHECK(w.steps[0].latency == all[i]);      // exact: every percentile as one histogram of every sample
    REQUIRE(f.windows[i].parts.size() == 2);  // one per datacenter, with its parts' cores
    CHECK(f.windows[i].parts[0].cores == 2);
    CHECK(f.windows[i].parts[1].cores == 1);
  }
  CHECK(requests(f.totals) == 4 * 3500);
  REQUIRE(f.datacenters.size() == 2);
  CHECK(f.datacenters[0].name == "dc-a");
  CHECK(f.datacenters[1].windows == 4);
  CHECK(failed_total == 16);

  // The same answer again (a retry), and a new dc-a leader that holds only windows 2..3 again and
  // some of what it received since: nothing is counted twice, nothing goes back.
  ra = jw.add(s, 0, "dc-a", reply(JobState::running, 6, a), budget);
  CHECK(ra.merged == 0);
  CHECK(ra.skipped == 4);
  CHECK(jw.query_from(0) == 4);
  std::vector<WatchWindow> after{WatchWindow{2, dc_window(2, {5, 6}), {}}, WatchWindow{4, dc_window(4, {100}), {}}};
  ra = jw.add(s, 0, "dc-a", reply(JobState::running, 7, after), budget);
  CHECK(ra.skipped == 1);
  CHECK(ra.merged == 1);
  jw.advance({true, true});
  const WatchReply r2 = jw.reply(s, 0, 100, 1u << 20);
  CHECK(requests(r2.workflows[0].totals) == 4 * 3500 + 1);
  CHECK(decode(r2.workflows[0].windows[2].merged).steps[0].total.executed == 3500);
}

TEST_CASE("gate windows: a window closes once every running datacenter closed it; ended ones hold nothing back") {
  gate::JobWindows jw(factory(), 2);
  const JobSpec s = spec();
  std::size_t budget = 10;
  jw.add(s, 0, "dc-a", reply(JobState::running, 10, {WatchWindow{7, dc_window(7, {1}), {}}}), budget);
  jw.add(s, 1, "dc-b", reply(JobState::running, 4, {WatchWindow{1, dc_window(1, {1}), {}}}), budget);
  jw.advance({true, true});
  // dc-b is at window 4: the gate's now is 4, lateness 2: windows up to 2 closed.
  auto r = jw.reply(s, 0, 100, 1u << 20);
  REQUIRE(r.workflows[0].windows.size() == 1);
  CHECK(r.workflows[0].windows[0].index == 1);
  CHECK(r.workflows[0].now_index == 4);
  // dc-b ended and gave everything: dc-a alone sets the pace.
  jw.add(s, 1, "dc-b", reply(JobState::completed, 5, {}), budget);
  CHECK(jw.ended(1));
  jw.advance({true, false});
  r = jw.reply(s, 0, 100, 1u << 20);
  CHECK(r.workflows[0].now_index == 10);
  // Both ended: sealed, every window closed.
  jw.add(s, 0, "dc-a", reply(JobState::completed, 10, {WatchWindow{9, dc_window(9, {1, 2}), {}}}), budget);
  jw.advance({false, false});
  CHECK(jw.reply(s, 0, 100, 1u << 20).workflows[0].now_index == 12);  // past max(now 10, newest 9) by lateness 2
  jw.advance({false, false});  // sealed once: the gate's current window stays put
  r = jw.reply(s, 0, 100, 1u << 20);
  CHECK(r.workflows[0].now_index == 12);
  REQUIRE(r.workflows[0].windows.size() == 3);
  CHECK(r.workflows[0].windows[2].index == 9);
  CHECK(requests(r.workflows[0].totals) == 4);
  // Paging: at most `max` per reply, `more` says there are more.
  r = jw.reply(s, 0, 2, 1u << 20);
  CHECK(r.workflows[0].windows.size() == 2);
  CHECK(r.workflows[0].more);
}

TEST_CASE("gate windows: bad input is refused and counted, changes nothing; the merger budget bounds workflows") {
  gate::JobWindows jw(factory(), 2);
  const JobSpec s = spec();
  std::size_t budget = 10;
  REQUIRE(
      jw.add(s, 0, "dc-a", reply(JobState::running, 5, {WatchWindow{1, dc_window(1, {1, 2}), {}}}), budget).merged ==
      1);
  // Another window length than the merge's.
  auto a = jw.add(s, 1, "dc-b", reply(JobState::running, 5, {WatchWindow{1, dc_window(1, {1}), {}}}, 500), budget);
  CHECK(a.refused == 1);
  CHECK(a.first_error.find("windows of 500 ms") != std::string::npos);
  // Garbage bytes, a workflow the job does not have, a share out of range.
  a = jw.add(s, 1, "dc-b", reply(JobState::running, 5, {WatchWindow{2, {1, 2, 3}, {}}}), budget);
  CHECK(a.refused == 1);
  WatchReply other = reply(JobState::running, 5, {WatchWindow{1, dc_window(1, {1}), {}}});
  other.workflows[0].name = "other";
  CHECK(jw.add(s, 1, "dc-b", other, budget).refused == 1);
  CHECK(jw.add(s, 5, "dc-x", reply(JobState::running, 5, {}), budget).refused == 1);
  jw.advance({true, true});
  auto r = jw.reply(s, 0, 100, 1u << 20);
  CHECK(requests(r.workflows[0].totals) == 2);
  // No budget left: the workflow gets no merger (counted), and does not hold query_from back.
  gate::JobWindows none(factory(), 1);
  std::size_t zero = 0;
  a = none.add(s, 0, "dc-a", reply(JobState::running, 5, {WatchWindow{1, dc_window(1, {1}), {}}}), zero);
  CHECK(a.refused == 1);
  CHECK(none.refused_workflows() == 1);
  CHECK(none.mergers() == 0);
  CHECK(none.reply(s, 0, 100, 1u << 20).workflows.empty());
}

TEST_CASE("gate windows: a workflow a datacenter starts later is taken from its first window") {
  JobSpec s = spec();
  WorkflowSpec b;
  b.name = "later";
  s.workflows.push_back(b);
  gate::JobWindows jw(factory(), 1);
  std::size_t budget = 10;
  CHECK(jw.query_from(0) == 0);
  jw.add(s, 0, "dc-a", reply(JobState::running, 9, {WatchWindow{6, dc_window(6, {1}), {}}}), budget);
  CHECK(jw.query_from(0) == 7);
  // The answer to "from 7" shows the later workflow (its windows 0..1 were not asked for).
  WatchReply r = reply(JobState::running, 10, {WatchWindow{7, dc_window(7, {1}), {}}});
  WatchWorkflow later = reply(JobState::running, 4, {}).workflows[0];
  later.name = "later";
  r.workflows.push_back(later);
  auto a = jw.add(s, 0, "dc-a", r, budget);
  CHECK(a.merged == 1);
  CHECK(jw.more(0));             // asked again at once
  CHECK(jw.query_from(0) == 0);  // from the later workflow's start
  WatchWorkflow full = later;
  full.windows = {WatchWindow{0, dc_window(0, {1, 2}), {}}, WatchWindow{1, dc_window(1, {3}), {}}};
  for (auto& ww : full.windows) {
    auto d = load::decode_window(ww.merged.data(), ww.merged.size());
    REQUIRE(d.ok());
    d->workflow = "later";
    ww.merged = load::encode_window(*d);
  }
  WatchReply r2 = reply(JobState::running, 10, {WatchWindow{6, dc_window(6, {1}), {}}});  // a repeat: skipped
  r2.workflows.push_back(full);
  a = jw.add(s, 0, "dc-a", r2, budget);
  CHECK(a.merged == 2);
  CHECK(a.skipped == 1);
  CHECK(a.refused == 0);
  CHECK(jw.query_from(0) == 2);
  jw.advance({false});
  const WatchReply out = jw.reply(s, 0, 100, 1u << 20);
  REQUIRE(out.workflows.size() == 2);
  CHECK(requests(out.workflows[0].totals) == 2);
  CHECK(requests(out.workflows[1].totals) == 3);
}
