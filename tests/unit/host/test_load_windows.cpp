// The leader manager's live windows on the load engine (include/hyperscale/host/load_windows.hpp):
// the factory, merging the parts' encoded windows, the tally, abort thresholds, and exactness through
// the wire encoding. Sans-IO and deterministic (a seeded Rng).
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <vector>

#include "hyperscale/base/random.hpp"
#include "hyperscale/host/load_windows.hpp"

using namespace hs;
using namespace hs::load;
using hs::host::LoadWindows;

namespace {

const std::string kPlan = R"(version = 1
[[workflow]]
name = "checkout"
vus = 2
duration = "60s"
thresholds = { p50 = "< 1ms" }
[[workflow.step]]
name = "get"
url = "http://127.0.0.1:8080/"
thresholds = { p99 = "< 100ms", error_rate = "< 50%" }
[[workflow.step]]
name = "post"
method = "POST"
url = "http://127.0.0.1:8080/echo"
)";

std::vector<std::uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }

Plan parse(const std::string& text) {
  auto p = load_plan_text(text, "t.toml", false, [](const std::string&) { return std::nullopt; });
  INFO(p.status().to_string());
  REQUIRE(p.ok());
  return std::move(p).value();
}

std::unique_ptr<LoadWindows> make(const Plan& plan, const std::string& wf = "checkout") {
  auto w = LoadWindows::create(plan, wf);
  INFO(w.status().to_string());
  REQUIRE(w.ok());
  return std::move(w).value();
}

bool same_counts(const Counts& a, const Counts& b) {
  return a.executed == b.executed && a.ok == b.ok && a.failed == b.failed && a.reasons == b.reasons;
}

void record(WindowStep& s, bool ok, std::uint64_t ns) {
  for (Counts* c : {&s.total, &s.measured}) {
    c->executed++;
    if (ok)
      c->ok++;
    else
      c->failed++, c->reasons[static_cast<int>(FailReason::timeout)]++;
  }
  s.latency.record(ns);
}

// A window of "checkout" with both steps (empty).
Window window(std::uint32_t part, std::uint64_t token, std::uint64_t index) {
  Window w;
  w.workflow = "checkout";
  w.part = part;
  w.token = token;
  w.index = index;
  w.steps.resize(2);
  w.steps[0].name = "get";
  w.steps[1].name = "post";
  return w;
}

std::uint64_t lognormal_ns(Rng& rng) {
  const double u1 = 1.0 - rng.next_double(), u2 = rng.next_double();
  const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
  return static_cast<std::uint64_t>(std::exp(std::log(2e6) + 1.3 * z));
}

Window decode(const std::vector<std::uint8_t>& b) {
  auto w = decode_window(b);
  INFO(w.status().to_string());
  REQUIRE(w.ok());
  return std::move(w).value();
}

bool same_tally(const manager::WindowTally& a, const manager::WindowTally& b) {
  return a.merged == b.merged && a.duplicates == b.duplicates && a.late == b.late && a.stale == b.stale &&
         a.expired == b.expired && a.refused == b.refused && a.evicted == b.evicted;
}

}  // namespace

TEST_CASE("load windows: the factory refuses a bad plan and an unknown workflow, naming why", "[host][windows]") {
  auto factory = host::load_windows_factory({}, [](const std::string&) { return std::nullopt; });
  SECTION("bad plan") {
    auto r = factory(bytes("version = 1\n[[workflow]\nname = "), "checkout");
    REQUIRE(!r.ok());
    REQUIRE(r.status().code() == Errc::invalid_argument);
    REQUIRE_THAT(r.status().message(), Catch::Contains("workflow.toml:"));
  }
  SECTION("a bad JSON plan is parsed as JSON") {
    auto r = factory(bytes("  {\"version\": 1,"), "checkout");
    REQUIRE(!r.ok());
    REQUIRE_THAT(r.status().message(), Catch::Contains("workflow.json:") && Catch::Contains("invalid JSON"));
  }
  SECTION("an unset environment variable") {
    auto r = factory(bytes(kPlan + "[[workflow.step]]\nname = \"x\"\nurl = \"${env.NOPE}/\"\n"), "checkout");
    REQUIRE(!r.ok());
    REQUIRE_THAT(r.status().message(), Catch::Contains("NOPE"));
  }
  SECTION("unknown workflow") {
    auto r = factory(bytes(kPlan), "nope");
    REQUIRE(!r.ok());
    REQUIRE(r.status().code() == Errc::not_found);
    REQUIRE_THAT(r.status().message(), Catch::Contains("no workflow named 'nope'"));
  }
  SECTION("plan text too large") {
    auto r = factory(std::vector<std::uint8_t>((4u << 20) + 1, ' '), "checkout");
    REQUIRE(!r.ok());
    REQUIRE_THAT(r.status().message(), Catch::Contains("exceeds the bound"));
  }
  SECTION("a good plan") {
    auto r = factory(bytes(kPlan), "checkout");
    INFO(r.status().to_string());
    REQUIRE(r.ok());
    REQUIRE((*r)->now() == 0);
    REQUIRE((*r)->closed_since(0, 10).empty());
  }
}

TEST_CASE("load windows: windows of 3 parts merge; closed ones are served after advance; totals are the sum",
          "[host][windows]") {
  auto factory = host::load_windows_factory({}, [](const std::string&) { return std::nullopt; });
  auto made = factory(bytes(kPlan), "checkout");
  REQUIRE(made.ok());
  manager::WorkflowWindows& lw = **made;
  Counts sum_get, sum_post;
  WindowIterations its;
  for (std::uint32_t p = 0; p < 3; ++p)
    for (std::uint64_t k = 0; k < 4; ++k) {
      Window w = window(p, 10 + p, k);
      for (std::uint64_t i = 0; i < 10 + p + k; ++i) record(w.steps[0], i % 7 != 0, 1000000 * (i + 1));
      if (k != 2) record(w.steps[1], true, 5000000);  // no post in window 2 at all
      sum_get.merge(w.steps[0].total);
      sum_post.merge(w.steps[1].total);
      w.iterations = {5, 4, 1, p};
      its.merge(w.iterations);
      w.saturation = {30 + p * 10, 1000 * (p + 1)};
      REQUIRE(lw.add(encode_window(w)).ok());
    }
  // Nothing is closed yet (lateness 5).
  lw.advance(4);
  REQUIRE(lw.closed_since(0, 100).empty());
  lw.advance(8);  // windows 0..3 closed
  REQUIRE(lw.now() == 8);
  auto closed = lw.closed_since(0, 100);
  REQUIRE(closed.size() == 4);
  for (std::uint64_t k = 0; k < 4; ++k) {
    const auto& c = closed[k];
    REQUIRE(c.index == k);
    REQUIRE(c.parts.size() == 3);
    for (std::uint32_t p = 0; p < 3; ++p) {
      REQUIRE(c.parts[p].part == p);
      REQUIRE(c.parts[p].token == 10 + p);
      REQUIRE(c.parts[p].cpu_percent == 30 + p * 10);
      REQUIRE(c.parts[p].rss_bytes == 1000 * (p + 1));
      REQUIRE(!c.parts[p].late);
    }
    const Window m = decode(c.merged);
    REQUIRE(m.workflow == "checkout");
    REQUIRE(m.part == 0);
    REQUIRE(m.token == 0);
    REQUIRE(m.index == k);
    REQUIRE(m.saturation.cpu_percent == 30 + 40 + 50);
    REQUIRE(m.saturation.rss_bytes == 6000);
    REQUIRE(m.iterations == WindowIterations{15, 12, 3, 3});
    REQUIRE(m.steps.size() == (k == 2 ? 1u : 2u));  // a step with nothing in the window is left out
    REQUIRE(m.steps[0].name == "get");
    REQUIRE(m.steps[0].total.executed == 33 + 3 * k);
  }
  // From and max: windows 1 and 2 only.
  auto some = lw.closed_since(1, 2);
  REQUIRE(some.size() == 2);
  REQUIRE(some[0].index == 1);
  REQUIRE(some[1].index == 2);
  REQUIRE(lw.closed_since(4, 10).empty());
  REQUIRE(lw.closed_since(0, 0).empty());

  const Window t = decode(lw.totals());
  REQUIRE(t.index == 8);
  REQUIRE(t.part == 0);
  REQUIRE(t.token == 0);
  REQUIRE(t.steps.size() == 2);
  REQUIRE(same_counts(t.steps[0].total, sum_get));
  REQUIRE(same_counts(t.steps[1].total, sum_post));
  REQUIRE(t.iterations == its);
  REQUIRE(lw.tally().merged == 12);
  REQUIRE(lw.tally().refused == 0);
}

TEST_CASE("load windows: a duplicate, late, stale or expired window is tallied, not an error", "[host][windows]") {
  auto lw = make(parse(kPlan));
  Window a = window(0, 5, 3);
  record(a.steps[0], true, 1000);
  REQUIRE(lw->add(encode_window(a)).ok());
  REQUIRE(lw->add(encode_window(a)).ok());  // duplicate
  REQUIRE(lw->tally().duplicates == 1);
  lw->advance(10);  // window 3 closed
  Window late = window(1, 5, 3);
  record(late.steps[0], false, 2000);
  REQUIRE(lw->add(encode_window(late)).ok());
  REQUIRE(lw->tally().late == 1);
  Window stale = window(0, 4, 9);  // part 0 has sent token 5
  record(stale.steps[0], true, 1000);
  REQUIRE(lw->add(encode_window(stale)).ok());
  REQUIRE(lw->tally().stale == 1);
  lw->advance(2000);
  Window old = window(2, 1, 4);
  REQUIRE(lw->add(encode_window(old)).ok());
  const auto t = lw->tally();
  REQUIRE(t.expired == 1);
  REQUIRE(t.merged == 1);
  REQUIRE(t.refused == 0);
  REQUIRE(t.evicted >= 1);
  // The late window is in the totals, not in its window.
  const Window tot = decode(lw->totals());
  REQUIRE(tot.steps[0].total.executed == 2);
  REQUIRE(tot.steps[0].total.failed == 1);
}

TEST_CASE("load windows: garbage or a refused window is an error and changes nothing but the refused tally",
          "[host][windows]") {
  auto lw = make(parse(kPlan));
  Window a = window(0, 1, 0);
  record(a.steps[0], true, 1000);
  REQUIRE(lw->add(encode_window(a)).ok());
  lw->advance(6);
  const auto totals_before = lw->totals();
  const auto tally_before = lw->tally();
  const auto closed_before = lw->closed_since(0, 10);
  auto unchanged = [&](std::uint64_t refused) {
    REQUIRE(lw->totals() == totals_before);
    REQUIRE(lw->closed_since(0, 10).size() == closed_before.size());
    REQUIRE(lw->closed_since(0, 10)[0].merged == closed_before[0].merged);
    auto t = lw->tally();
    REQUIRE(t.refused == tally_before.refused + refused);
    t.refused = tally_before.refused;
    REQUIRE(same_tally(t, tally_before));
  };
  const std::vector<std::uint8_t> garbage = {'H', 'S', 'W', 'N', 1, 0xff, 0xff, 0xff};
  Status s = lw->add(garbage);
  REQUIRE(!s.ok());
  REQUIRE(s.code() == Errc::invalid_argument);
  REQUIRE_THAT(s.message(), Catch::Contains("window"));
  unchanged(1);
  REQUIRE(!lw->add(std::vector<std::uint8_t>{}).ok());
  unchanged(2);
  Window other = window(1, 1, 1);
  other.workflow = "browse";
  s = lw->add(encode_window(other));
  REQUIRE(!s.ok());
  REQUIRE_THAT(s.message(), Catch::Contains("browse"));
  unchanged(3);
  Window unknown = window(1, 1, 1);
  unknown.steps[1].name = "delete";
  REQUIRE(!lw->add(encode_window(unknown)).ok());
  unchanged(4);
}

TEST_CASE("load windows: an abort threshold fails once its `after` has passed; one without abort never reports",
          "[host][windows]") {
  Plan plan = parse(kPlan);
  // Step get: p99 < 100ms (abort after 30s) and error_rate < 50% (abort, passes); the workflow's
  // p50 < 1ms fails but has no abort.
  auto& get_ths = plan.workflows[0].steps[0].thresholds;
  REQUIRE(get_ths.size() == 2);
  for (auto& t : get_ths) {
    t.abort = true;
    if (t.key == "p99") t.after = std::chrono::seconds(30);
  }
  auto lw = make(plan);
  REQUIRE(lw->thresholds().size() == 3);
  REQUIRE(!lw->abort_breach(100).has_value());  // no data never fails
  Window w = window(0, 1, 0);
  for (int i = 0; i < 100; ++i) record(w.steps[0], true, 412000000);
  REQUIRE(lw->add(encode_window(w)).ok());
  REQUIRE(!lw->abort_breach(0).has_value());
  REQUIRE(!lw->abort_breach(29.9).has_value());
  auto breach = lw->abort_breach(30);
  REQUIRE(breach.has_value());
  REQUIRE(*breach == "step checkout.get: p99 < 100ms failed (observed 412.0ms)");
  REQUIRE(lw->abort_breach(31) == breach);

  // Without abort, the same failing thresholds never report.
  Plan calm = parse(kPlan);
  auto lw2 = make(calm);
  REQUIRE(lw2->add(encode_window(w)).ok());
  REQUIRE(!lw2->abort_breach(1e6).has_value());
}

TEST_CASE("load windows: run thresholds are judged only when the plan has one test workflow", "[host][windows]") {
  // kPlan with a [thresholds] table after its first line (version = 1).
  const std::string run_ths = "version = 1\n[thresholds]\np99 = \"< 100ms\"\n";
  const std::string rest = kPlan.substr(kPlan.find('\n') + 1);
  {
    Plan plan = parse(run_ths + rest);
    REQUIRE(plan.thresholds.size() == 1);
    plan.thresholds[0].abort = true;
    auto lw = make(plan);
    REQUIRE(lw->thresholds().size() == 4);
    Window w = window(2, 1, 0);
    for (int i = 0; i < 10; ++i) record(w.steps[1], true, 250000000);
    REQUIRE(lw->add(encode_window(w)).ok());
    REQUIRE(lw->abort_breach(1) == std::optional<std::string>("run: p99 < 100ms failed (observed 250.0ms)"));
  }
  {
    // A second test workflow: the run threshold spans both, so neither judges it.
    Plan plan = parse(run_ths + rest +
                      "[[workflow]]\nname = \"browse\"\nvus = 1\n[[workflow.step]]\nname = \"home\"\n"
                      "url = \"http://127.0.0.1:8080/\"\n");
    plan.thresholds[0].abort = true;
    auto lw = make(plan);
    REQUIRE(lw->thresholds().size() == 3);
    for (const auto& t : lw->thresholds()) REQUIRE(t.scope != "run");
    Window w = window(2, 1, 0);
    for (int i = 0; i < 10; ++i) record(w.steps[1], true, 250000000);
    REQUIRE(lw->add(encode_window(w)).ok());
    REQUIRE(!lw->abort_breach(1).has_value());
  }
}

TEST_CASE("load windows: the merge is exact (every percentile and bucket through the wire encoding)",
          "[host][windows]") {
  // 100 000 lognormal samples: one histogram gets them all; the same samples split over 5 parts x 6
  // windows go through encode_window -> LoadWindows::add; the decoded totals() must be identical.
  constexpr int kParts = 5, kWindows = 6, kSamples = 100000;
  Rng rng(20261202);
  Histogram single;
  std::vector<Histogram> single_step(2);
  std::vector<std::vector<Window>> parts(kParts);
  for (int p = 0; p < kParts; ++p)
    for (int k = 0; k < kWindows; ++k)
      parts[static_cast<std::size_t>(p)].push_back(
          window(static_cast<std::uint32_t>(p), 3, static_cast<std::uint64_t>(k)));
  for (int i = 0; i < kSamples; ++i) {
    const std::uint64_t ns = lognormal_ns(rng);
    const std::size_t step = rng.below(2);
    Window& w = parts[rng.below(kParts)][rng.below(kWindows)];
    record(w.steps[step], !rng.chance(0.01), ns);
    single.record(ns);
    single_step[step].record(ns);
  }
  std::vector<std::vector<std::uint8_t>> wire;
  for (const auto& ws : parts)
    for (const auto& w : ws) wire.push_back(encode_window(w));
  rng.shuffle(wire.begin(), wire.end());
  auto lw = make(parse(kPlan));
  lw->advance(2);
  for (const auto& b : wire) REQUIRE(lw->add(b).ok());
  REQUIRE(lw->tally().merged == kParts * kWindows);
  const Window t = decode(lw->totals());
  REQUIRE(t.steps.size() == 2);
  Histogram merged;
  for (std::size_t s = 0; s < 2; ++s) {
    REQUIRE(t.steps[s].latency.counts() == single_step[s].counts());
    REQUIRE(t.steps[s].latency == single_step[s]);
    merged.merge(t.steps[s].latency);
  }
  REQUIRE(merged.count() == kSamples);
  REQUIRE(merged.counts() == single.counts());  // every bucket
  for (double q : {0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 0.9999, 0.0, 1.0}) {
    INFO("q " << q);
    REQUIRE(merged.quantile(q) == single.quantile(q));
  }
  REQUIRE(merged.min() == single.min());
  REQUIRE(merged.max() == single.max());
  REQUIRE(merged.mean() == single.mean());
  REQUIRE(merged.sum() == single.sum());
  // The closed windows add up to the totals too.
  lw->advance(kWindows + 5);
  Histogram from_windows;
  const auto closed = lw->closed_since(0, 100);
  REQUIRE(closed.size() == kWindows);
  for (const auto& c : closed)
    for (const auto& s : decode(c.merged).steps) from_windows.merge(s.latency);
  REQUIRE(from_windows == single);
}
