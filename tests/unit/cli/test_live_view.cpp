// The live view of a cluster job (src/cli/live_view.cpp): the lines `watch` and `submit --wait` print
// from the windows the job's leader serves. Golden strings.
#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "cli/live_view.hpp"

using namespace hs;
using hs::cli::live_lines;
using hs::cli::PartLoadView;

namespace {

constexpr std::uint64_t kMs = 1'000'000;

void record(load::WindowStep& s, bool ok, load::FailReason why, std::uint64_t ns) {
  for (load::Counts* c : {&s.total, &s.measured}) {
    c->executed++;
    if (ok)
      c->ok++;
    else
      c->failed++, c->reasons[static_cast<int>(why)]++;
  }
  s.latency.record(ns);
}

load::Window totals() {
  load::Window t;
  t.workflow = "checkout";
  t.index = 12;
  t.iterations = {345, 340, 2, 1};
  t.steps.resize(2);
  t.steps[0].name = "get";
  t.steps[1].name = "post";
  for (int i = 0; i < 1200; ++i) {
    const bool ok = i >= 3;
    record(t.steps[0], ok, i == 0 ? load::FailReason::reset : load::FailReason::timeout, 2 * kMs);
  }
  for (int i = 0; i < 400; ++i) record(t.steps[1], true, load::FailReason::refused, 5 * kMs);
  return t;
}

// The last closed window: get only (post had nothing in it, so it is left out), 98 x 2ms + 2 x 150ms.
load::Window last_closed() {
  load::Window w;
  w.workflow = "checkout";
  w.index = 7;
  w.steps.resize(1);
  w.steps[0].name = "get";
  for (int i = 0; i < 100; ++i) record(w.steps[0], true, load::FailReason::refused, i < 98 ? 2 * kMs : 150 * kMs);
  return w;
}

load::ThresholdResult mark(const std::string& scope, const std::string& key, const std::string& cond, load::Metric m,
                           double observed, bool passed, bool no_data) {
  load::ThresholdResult r;
  r.threshold.scope = scope;
  r.threshold.key = key;
  r.threshold.condition = cond;
  r.threshold.metric = m;
  r.observed = observed;
  r.passed = passed;
  r.no_data = no_data;
  return r;
}

}  // namespace

TEST_CASE("live view: a workflow's lines (golden)", "[cli][live]") {
  const std::vector<PartLoadView> parts = {
      {0, 2, 1, 83, 1 << 20, {}}, {1, 3, 1, 97, 1 << 20, {}}, {2, 4, 2, 170, 0, {}}, {3, 5, 2, 180, 0, {}}};
  const std::vector<load::ThresholdResult> marks = {
      mark("step checkout.get", "p99", "< 100ms", load::Metric::p99, 150.0 * kMs, false, false),
      mark("workflow checkout", "error_rate", "< 1%", load::Metric::error_rate, 0.0025, true, false),
      mark("run", "p95", "< 200ms", load::Metric::p95, 0, false, true)};
  const auto lines = live_lines("checkout", last_closed(), totals(), parts, 1.0, marks);
  const std::vector<std::string> expect = {
      "checkout         window    12   12.0s  iters 340 failed 2 dropped 1",
      "  get                  total      1200 err       3   0.25% (timeout) rps      100 p50   2.01ms p95   2.01ms "
      "p99  150.0ms",
      "  post                 total       400 err       0   0.00% rps        0 p50        - p95        - p99        -",
      "  parts: 0 w2 83% · 1 w3 97% SATURATED · 2 w4 170% · 3 w5 180% SATURATED",
      "  ✗ step checkout.get p99 < 100ms (observed 150.0ms)",
      "  ✓ workflow checkout error_rate < 1% (observed 0.25%)",
      "  · run p95 < 200ms (no data)",
  };
  REQUIRE(lines == expect);
}

TEST_CASE("live view: before the first closed window, with half-second windows, no parts, no marks", "[cli][live]") {
  load::Window t = totals();
  t.index = 3;
  auto lines = live_lines("checkout", load::Window{}, t, {}, 0.5, {});
  REQUIRE(lines ==
          std::vector<std::string>{
              "checkout         window     3    1.5s  iters 340 failed 2 dropped 1",
              "  get                  total      1200 err       3   0.25% (timeout) rps        0 p50        - "
              "p95        - p99        -",
              "  post                 total       400 err       0   0.00% rps        0 p50        - p95        "
              "- p99        -",
          });
  // The rps of the last window is its requests over the window's length.
  lines = live_lines("checkout", last_closed(), t, {}, 0.5, {});
  REQUIRE(lines.size() == 3);
  REQUIRE_THAT(lines[1], Catch::Contains(" rps      200 "));
}

TEST_CASE("live view: a part is saturated at 90% of its cores", "[cli][live]") {
  REQUIRE(!cli::saturated({0, 1, 1, 89, 0, {}}));
  REQUIRE(cli::saturated({0, 1, 1, 90, 0, {}}));
  REQUIRE(!cli::saturated({0, 1, 4, 359, 0, {}}));
  REQUIRE(cli::saturated({0, 1, 4, 360, 0, {}}));
  REQUIRE(!cli::saturated({0, 1, 0, 89, 0, {}}));  // unknown cores: one
  REQUIRE(cli::saturated({0, 1, 0, 95, 0, {}}));
}

TEST_CASE("live view: a part's worker is named by its address when the caller gives one", "[cli][live]") {
  const std::vector<PartLoadView> parts = {{0, 2, 1, 50, 0, "10.0.0.7:7201"}, {1, 3, 1, 95, 0, {}}};
  const auto lines = live_lines("checkout", last_closed(), totals(), parts, 1.0, {});
  REQUIRE_THAT(lines.back(), Catch::Contains("0 10.0.0.7:7201 50%") && Catch::Contains("1 w3 95% SATURATED"));
}
