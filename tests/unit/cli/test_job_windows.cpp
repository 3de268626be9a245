// The client's side of live windows (src/cli/job_windows.cpp): watch replies collected per workflow,
// the live view's lines, and the per-window series of results.json / windows.csv.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "cli/job_windows.hpp"
#include "hyperscale/load/plan.hpp"

using namespace hs;
using namespace hs::cli;

namespace {

load::Window window(std::uint64_t index, std::uint64_t requests, std::uint64_t latency_ns) {
  load::Window w;
  w.workflow = std::string("w");  // not operator=(const char*): a GCC 12 -O3 -Wrestrict false positive
  w.index = index;
  load::WindowStep s;
  s.name = "get";
  s.total.executed = s.total.ok = requests;
  s.measured = s.total;
  for (std::uint64_t i = 0; i < requests; ++i) s.latency.record(latency_ns);
  w.steps.push_back(std::move(s));
  w.iterations.started = w.iterations.completed = requests;
  return w;
}

cluster::WatchReply reply(std::vector<std::uint64_t> indices, std::uint64_t total, bool more = false) {
  cluster::WatchReply r;
  cluster::WatchWorkflow f;
  f.name = "w";
  f.window_ms = 1000;
  f.origin_unix_ms = 1'800'000'000'000;
  f.now_index = indices.empty() ? 0 : indices.back() + 3;
  f.totals = load::encode_window(window(f.now_index, total, 2'000'000));
  for (auto i : indices) {
    cluster::WatchWindow ww;
    ww.index = i;
    ww.merged = load::encode_window(window(i, 10, 2'000'000));
    ww.parts.push_back(cluster::PartLoad{0, 7, 1, 1, 95, 1u << 20, false});
    f.windows.push_back(std::move(ww));
  }
  f.more = more;
  f.dropped = 2;
  r.workflows.push_back(std::move(f));
  return r;
}

}  // namespace

TEST_CASE("job windows: replies accumulate by index, repeats replace, next_from moves past the newest") {
  JobWindows jw;
  CHECK(jw.next_from() == 0);
  REQUIRE(jw.add(reply({0, 1, 2}, 30, true)).ok());
  CHECK(jw.more());
  CHECK(jw.next_from() == 3);
  REQUIRE(jw.add(reply({2, 3}, 40)).ok());  // window 2 again: kept once
  CHECK_FALSE(jw.more());
  const auto& s = jw.series().at("w");
  CHECK(s.closed.size() == 4);
  CHECK(jw.newest() == 3);
  CHECK(s.dropped == 2);
  CHECK(s.totals.steps.at(0).total.executed == 40);
}

TEST_CASE("job windows: a window that does not decode is an error naming it; the others are kept") {
  JobWindows jw;
  auto r = reply({0, 1}, 20);
  r.workflows[0].windows[1].merged = {1, 2, 3};
  const Status st = jw.add(r);
  CHECK_FALSE(st.ok());
  CHECK(st.message().find("workflow 'w': window 1") != std::string::npos);
  CHECK(jw.series().at("w").closed.size() == 1);
}

TEST_CASE("job windows: the live lines show the last window's percentiles, saturation and the dropped count") {
  JobWindows jw;
  REQUIRE(jw.add(reply({0, 1}, 20)).ok());
  load::Plan plan;
  load::Workflow w;
  w.name = "w";
  load::Step st;
  st.name = "get";
  w.steps.push_back(st);
  plan.workflows.push_back(w);
  const auto lines = jw.lines(plan);
  std::string all;
  for (const auto& l : lines) all += l + "\n";
  CAPTURE(all);
  CHECK(all.find("get") != std::string::npos);
  CHECK(all.find("p99") != std::string::npos);
  CHECK(all.find("2.00ms") != std::string::npos);
  CHECK(all.find("SATURATED") != std::string::npos);  // 95 % of 1 core
  CHECK(all.find("2 dropped by the parts") != std::string::npos);
}

TEST_CASE("job windows: results.json gets the series; windows.csv one row per window and step") {
  JobWindows jw;
  REQUIRE(jw.add(reply({0, 1, 2}, 30)).ok());
  auto merged = add_windows_json(R"({"test": "t", "workflows": []})", jw.json());
  REQUIRE(merged.ok());
  const auto j = nlohmann::json::parse(*merged);
  CHECK(j["test"] == "t");
  const auto& series = j["windows"]["w"]["series"];
  REQUIRE(series.size() == 3);
  std::uint64_t sum = 0;
  for (const auto& x : series) sum += x["steps"]["get"]["requests"].get<std::uint64_t>();
  CHECK(sum == 30);
  CHECK(series[1]["start_ms"] == 1000);
  CHECK(series[0]["parts"][0]["saturated"] == true);
  CHECK(j["windows"]["w"]["counters"]["dropped"] == 2);
  const std::string csv = jw.csv();
  CHECK(csv.rfind("workflow,index,start_ms,step,requests,errors,p50_ms,p95_ms,p99_ms\n", 0) == 0);
  CHECK(std::count(csv.begin(), csv.end(), '\n') == 4);
  CHECK(csv.find("w,1,1000,get,10,0,") != std::string::npos);
  CHECK_FALSE(add_windows_json("not json", jw.json()).ok());
}

TEST_CASE("job windows: from a gate, parts are datacenters and each datacenter gets a line of its totals") {
  JobWindows jw;
  auto r = reply({0, 1}, 20);
  auto& f = r.workflows[0];
  for (auto& ww : f.windows)
    ww.parts = {cluster::PartLoad{0, 0, 2, 1, 40, 0, false}, cluster::PartLoad{1, 0, 1, 1, 95, 0, false}};
  f.datacenters = {
      cluster::WatchDc{0, "dc-a", cluster::JobState::running, 5, load::encode_window(window(5, 12, 1)), 2},
      cluster::WatchDc{1, "dc-b", cluster::JobState::completed, 4, load::encode_window(window(4, 8, 1)), 2}};
  REQUIRE(jw.add(r).ok());
  load::Plan plan;
  load::Workflow w;
  w.name = "w";
  load::Step st;
  st.name = "get";
  w.steps.push_back(st);
  plan.workflows.push_back(w);
  std::string all;
  for (const auto& l : jw.lines(plan)) all += l + "\n";
  CAPTURE(all);
  CHECK(all.find("parts: 0 dc-a 40% · 1 dc-b 95% SATURATED") != std::string::npos);
  CHECK(all.find("  datacenter dc-a (running): window 5, requests 12, errors 0, 2 windows merged\n") !=
        std::string::npos);
  CHECK(all.find("  datacenter dc-b (completed): window 4, requests 8, errors 0, 2 windows merged\n") !=
        std::string::npos);
  // A datacenter's totals that do not decode: an error naming it; the rest is kept.
  f.datacenters[1].totals = {9, 9};
  const Status bad = jw.add(r);
  CHECK_FALSE(bad.ok());
  CHECK(bad.message().find("datacenter dc-b: totals") != std::string::npos);
  CHECK(jw.series().at("w").datacenters.size() == 1);
}
