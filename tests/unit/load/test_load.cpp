// Unit tests of the load engine's pure parts: histogram, schedules (ManualClock), plan parsing and
// validation, templates, thresholds and exit codes.
#include <algorithm>
#include <catch2/catch.hpp>
#include <random>

#include "hyperscale/load/engine.hpp"
#include "hyperscale/load/histogram.hpp"
#include "hyperscale/load/plan.hpp"
#include "hyperscale/load/report.hpp"
#include "hyperscale/load/schedule.hpp"
#include "hyperscale/load/stats.hpp"

using namespace hs;
using namespace hs::load;

namespace {
EnvLookup fake_env(std::map<std::string, std::string> m) {
  return [m](const std::string& k) -> std::optional<std::string> {
    auto it = m.find(k);
    if (it == m.end()) return std::nullopt;
    return it->second;
  };
}
Result<Plan> parse(const std::string& text, EnvLookup env = fake_env({})) {
  return load_plan_text(text, "t.toml", false, env);
}

const char* kMinimal = R"(version = 1
[[workflow]]
name = "w"
vus = 2
duration = "1s"
[[workflow.step]]
name = "s"
url = "http://127.0.0.1:8080/x"
)";
}  // namespace

// ------------------------------------------------------------------ histogram

TEST_CASE("histogram: merge is exact (equals recording everything into one)", "[load][histogram]") {
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> dist(13.0, 1.5);  // ~0.4 ms median in ns, long tail
  Histogram a, b, all;
  for (int i = 0; i < 50000; ++i) {
    const auto v = static_cast<std::uint64_t>(dist(rng));
    (i % 3 ? a : b).record(v);
    all.record(v);
  }
  Histogram m = a;
  m.merge(b);
  REQUIRE(m == all);
  Histogram m2 = b;
  m2.merge(a);
  REQUIRE(m2 == all);
  for (double q : {0.5, 0.9, 0.99, 0.999, 0.9999}) REQUIRE(m.quantile(q) == all.quantile(q));
}

TEST_CASE("histogram: percentiles within 1/128 of sorted samples, to p99.99", "[load][histogram]") {
  std::mt19937_64 rng(11);
  std::exponential_distribution<double> dist(1.0 / 2e6);
  std::vector<std::uint64_t> xs;
  Histogram h;
  for (int i = 0; i < 200000; ++i) {
    const auto v = static_cast<std::uint64_t>(dist(rng)) + 1;
    xs.push_back(v);
    h.record(v);
  }
  std::sort(xs.begin(), xs.end());
  for (double q : {0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 0.9999}) {
    const std::size_t rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(xs.size())));
    const double truth = static_cast<double>(xs[rank - 1]);
    const double got = static_cast<double>(h.quantile(q));
    INFO("q=" << q << " truth=" << truth << " got=" << got);
    REQUIRE(got >= truth);
    REQUIRE((got - truth) / truth <= 1.0 / 128.0);
  }
  REQUIRE(h.min() == xs.front());
  REQUIRE(h.max() == xs.back());
  REQUIRE(h.count() == xs.size());
}

TEST_CASE("histogram: small values exact, buckets contiguous, huge values clamp", "[load][histogram]") {
  Histogram h;
  for (std::uint64_t v = 0; v < 256; ++v) REQUIRE(Histogram::upper_of(Histogram::index_of(v)) == v);
  for (std::uint64_t v : {256ull, 257ull, 1000ull, 123456789ull, (1ull << 41) + 5}) {
    const auto i = Histogram::index_of(v);
    REQUIRE(Histogram::upper_of(i) >= v);
    REQUIRE((i == 0 || Histogram::upper_of(i - 1) < v));
  }
  h.record(~0ull);
  REQUIRE(h.max() == Histogram::kMaxValue);
  REQUIRE(Histogram::index_of(Histogram::kMaxValue) < Histogram::kBuckets);
}

// ------------------------------------------------------------------ schedules under a manual clock

TEST_CASE("arrival rate: evenly spaced starts, split across shards without overlap", "[load][schedule]") {
  Workflow wf;
  wf.executor = Executor::constant_arrival_rate;
  wf.rate = 100;
  wf.time_unit = std::chrono::seconds(1);
  wf.max_vus = 1000;
  wf.duration = std::chrono::seconds(1);
  ManualClock clock;
  std::vector<Instant> all;
  for (int shard = 0; shard < 3; ++shard) {
    Driver d(wf, share_for(wf, shard, 3), clock.now());
    std::vector<Driver::Start> out;
    for (int ms = 0; ms <= 1200; ++ms) {
      d.poll(Instant(std::chrono::milliseconds(ms)), out);
    }
    for (auto& s : out) all.push_back(s.intended);
    for (std::size_t i = 1; i < out.size(); ++i)
      REQUIRE(out[i].intended - out[i - 1].intended == std::chrono::milliseconds(30));
  }
  std::sort(all.begin(), all.end());
  REQUIRE(all.size() == 100);
  for (std::size_t i = 0; i < all.size(); ++i)
    REQUIRE(all[i] == Instant(std::chrono::milliseconds(10 * static_cast<int>(i))));
}

TEST_CASE("arrival rate: iterations beyond max_vus are dropped and counted", "[load][schedule]") {
  Workflow wf;
  wf.executor = Executor::constant_arrival_rate;
  wf.rate = 10;
  wf.max_vus = 3;
  wf.duration = std::chrono::seconds(1);
  Driver d(wf, share_for(wf, 0, 1), Instant{0});
  std::vector<Driver::Start> out;
  // Nothing ever completes: after 3 starts every later arrival is dropped.
  for (int ms = 0; ms < 1000; ms += 5) d.poll(Instant(std::chrono::milliseconds(ms)), out);
  REQUIRE(out.size() == 3);
  REQUIRE(d.started() == 3);
  REQUIRE(d.dropped() == 7);
  // Freeing a slot lets the next arrival start on schedule (intended time, not completion time).
  Driver d2(wf, share_for(wf, 0, 1), Instant{0});
  out.clear();
  d2.poll(Instant(std::chrono::milliseconds(250)), out);  // arrivals at 0, 100, 200 -> 3 starts
  REQUIRE(out.size() == 3);
  d2.on_done(out[0].vu, Instant(std::chrono::milliseconds(250)));
  out.clear();
  d2.poll(Instant(std::chrono::milliseconds(350)), out);  // 300 starts (slot free)
  REQUIRE(out.size() == 1);
  REQUIRE(out[0].intended == Instant(std::chrono::milliseconds(300)));
  REQUIRE(d2.dropped() == 0);
  REQUIRE(d2.next_wakeup(Instant(std::chrono::milliseconds(350))) == Instant(std::chrono::milliseconds(400)));
}

TEST_CASE("constant VUs: closed loop, pause, shared iteration budget, graceful stop", "[load][schedule]") {
  Workflow wf;
  wf.vus = 5;
  wf.duration = std::chrono::seconds(10);
  wf.iterations = 12;
  wf.pause = std::chrono::milliseconds(100);
  wf.graceful_stop = std::chrono::seconds(2);
  std::uint64_t total_started = 0;
  for (int shard = 0; shard < 2; ++shard) {
    const ShardShare sh = share_for(wf, shard, 2);
    REQUIRE(sh.vus == (shard == 0 ? 3u : 2u));
    Driver d(wf, sh, Instant{0});
    std::vector<Driver::Start> out;
    d.poll(Instant{0}, out);
    REQUIRE(out.size() == sh.vus);
    Instant t{0};
    while (d.phase(t) != Driver::Phase::done) {
      t += std::chrono::milliseconds(10);
      for (auto& s : out) d.on_done(s.vu, t);
      out.clear();
      REQUIRE(d.next_wakeup(t) >= t);
      d.poll(t, out);
      // Each VU waits `pause` after finishing before its next iteration.
      for (auto& s : out) REQUIRE(s.intended >= Instant(std::chrono::milliseconds(110)));
      if (t > std::chrono::seconds(5)) FAIL("did not finish");
    }
    total_started += d.started();
  }
  REQUIRE(total_started == 12);

  // Graceful stop: at duration the driver drains; past graceful_stop in-flight work is interrupted.
  Workflow g;
  g.vus = 2;
  g.duration = std::chrono::seconds(1);
  g.graceful_stop = std::chrono::milliseconds(500);
  Driver d(g, share_for(g, 0, 1), Instant{0});
  std::vector<Driver::Start> out;
  d.poll(Instant{0}, out);
  REQUIRE(d.phase(std::chrono::milliseconds(999)) == Driver::Phase::running);
  REQUIRE(d.phase(std::chrono::seconds(1)) == Driver::Phase::draining);
  REQUIRE(d.next_wakeup(std::chrono::seconds(1)) == Instant(std::chrono::milliseconds(1500)));
  d.on_done(out[0].vu, std::chrono::milliseconds(1200));
  out.clear();
  d.poll(std::chrono::milliseconds(1200), out);
  REQUIRE(out.empty());  // no new iteration after duration
  REQUIRE_FALSE(d.graceful_expired(std::chrono::milliseconds(1499)));
  REQUIRE(d.graceful_expired(std::chrono::milliseconds(1500)));
  d.on_interrupted(1);
  REQUIRE(d.interrupted() == 1);
  REQUIRE(d.phase(std::chrono::milliseconds(1500)) == Driver::Phase::done);
}

TEST_CASE("setup workflows run exactly once, on shard 0", "[load][schedule]") {
  Workflow wf;
  wf.kind = WorkflowKind::setup;
  wf.vus = 50;
  REQUIRE(share_for(wf, 0, 4).active);
  REQUIRE(share_for(wf, 0, 4).vus == 1);
  REQUIRE(*share_for(wf, 0, 4).iterations == 1);
  for (int s = 1; s < 4; ++s) REQUIRE_FALSE(share_for(wf, s, 4).active);
}

// ------------------------------------------------------------------ parts: one workflow over several workers

namespace {
// The shares of every global shard of every part, as a worker running the part computes them: its local
// shard i is global shard first_shard + i of the workflow's total.
std::vector<ShardShare> part_shards(const Workflow& wf, const PartShare& p, std::uint32_t total) {
  std::vector<ShardShare> out;
  for (std::uint32_t i = 0; i < p.shards; ++i)
    out.push_back(share_for(wf, static_cast<int>(p.first_shard + i), static_cast<int>(total)));
  return out;
}

// Arrival rate: the intended start of every iteration a shard starts (nothing completes; slots suffice).
std::vector<Instant> arrivals(const Workflow& wf, const ShardShare& sh) {
  Driver d(wf, sh, Instant{0});
  std::vector<Driver::Start> out;
  d.poll(Instant{0} + wf.duration + std::chrono::seconds(1), out);
  REQUIRE(d.dropped() == 0);
  std::vector<Instant> t;
  for (const auto& s : out) t.push_back(s.intended);
  return t;
}

// Constant VUs: drives a shard's Driver to the end (every iteration takes 1 ms); iterations started.
std::uint64_t run_closed(const Workflow& wf, const ShardShare& sh) {
  Driver d(wf, sh, Instant{0});
  std::vector<Driver::Start> out;
  Instant t{0};
  d.poll(t, out);
  while (d.phase(t) != Driver::Phase::done) {
    t += std::chrono::milliseconds(1);
    for (const auto& s : out) d.on_done(s.vu, t);
    out.clear();
    d.poll(t, out);
    if (t > Instant{0} + wf.duration) FAIL("did not finish");
  }
  return d.started();
}
}  // namespace

TEST_CASE("parts: constant VUs split proportionally to cores; iterations sum exactly", "[load][schedule][parts]") {
  const std::vector<std::uint32_t> cores{1, 2, 3};
  for (std::uint64_t vus : {6u, 2u, 600u}) {
    for (std::optional<std::uint64_t> iters : {std::optional<std::uint64_t>{}, std::optional<std::uint64_t>{3000},
                                               std::optional<std::uint64_t>{7}, std::optional<std::uint64_t>{5}}) {
      Workflow wf;
      wf.vus = vus;
      wf.iterations = iters;
      wf.duration = std::chrono::seconds(100);
      CAPTURE(vus, iters.value_or(0));
      auto parts = split_parts(wf, cores);
      REQUIRE(parts.ok());
      REQUIRE(parts->size() == 3);
      std::uint64_t vus_sum = 0, iter_sum = 0, started = 0;
      std::uint32_t first = 0;
      for (std::size_t k = 0; k < 3; ++k) {
        const PartShare& p = (*parts)[k];
        REQUIRE(p.first_shard == first);
        REQUIRE(p.shards == cores[k]);
        first += p.shards;
        // Proportional to cores when the VUs divide evenly (6 -> 1, 2, 3; 600 -> 100, 200, 300).
        if (vus % 6 == 0) REQUIRE(p.vus == vus / 6 * cores[k]);
        vus_sum += p.vus;
        REQUIRE(p.iterations.has_value() == iters.has_value());
        REQUIRE(p.max_vus == 0);
        std::uint64_t shard_vus = 0, shard_iters = 0;
        bool any_active = false;
        for (const ShardShare& sh : part_shards(wf, p, 6)) {
          shard_vus += sh.vus;
          if (sh.iterations) shard_iters += *sh.iterations;
          any_active = any_active || sh.active;
          if (iters) started += run_closed(wf, sh);  // what the part's shards actually start
        }
        REQUIRE(p.vus == shard_vus);
        REQUIRE(p.active == any_active);
        if (iters) {
          REQUIRE(*p.iterations == shard_iters);
          iter_sum += *p.iterations;
        }
      }
      REQUIRE(vus_sum == vus);
      if (iters) {
        REQUIRE(iter_sum == *iters);
        REQUIRE(started == *iters);
      }
    }
  }
  // vus 6, iterations 3000 over cores (1, 2, 3): 500, 1000, 1500.
  Workflow wf;
  wf.vus = 6;
  wf.iterations = 3000;
  auto parts = split_parts(wf, cores);
  REQUIRE(parts.ok());
  REQUIRE(*(*parts)[0].iterations == 500);
  REQUIRE(*(*parts)[1].iterations == 1000);
  REQUIRE(*(*parts)[2].iterations == 1500);
  // vus 2 over 6 cores: the part of 3 cores gets no VU and nothing to do.
  wf.vus = 2;
  wf.iterations = 5;
  parts = split_parts(wf, cores);
  REQUIRE(parts.ok());
  REQUIRE((*parts)[0].vus == 1);
  REQUIRE((*parts)[1].vus == 1);
  REQUIRE((*parts)[2].vus == 0);
  REQUIRE_FALSE((*parts)[2].active);
}

TEST_CASE("parts: the merged arrival schedule of all parts is exactly one generator's", "[load][schedule][parts]") {
  for (std::optional<std::uint64_t> iters :
       {std::optional<std::uint64_t>{}, std::optional<std::uint64_t>{7}, std::optional<std::uint64_t>{3000}}) {
    Workflow wf;
    wf.executor = Executor::constant_arrival_rate;
    wf.rate = 7;  // 7 per 100 ms: spacing 14.285714 ms, not a whole number of ns per shard
    wf.time_unit = std::chrono::milliseconds(100);
    wf.max_vus = 6000;
    wf.duration = std::chrono::seconds(1);
    wf.iterations = iters;
    CAPTURE(iters.value_or(0));
    // One generator: 1 shard, and 6 shards of one machine.
    std::vector<Instant> one = arrivals(wf, share_for(wf, 0, 1));
    std::vector<Instant> six;
    for (int s = 0; s < 6; ++s)
      for (Instant t : arrivals(wf, share_for(wf, s, 6))) six.push_back(t);
    // Parts of 1, 2 and 3 cores.
    auto parts = split_parts(wf, {1, 2, 3});
    REQUIRE(parts.ok());
    std::vector<Instant> merged;
    std::uint64_t max_vus_sum = 0;
    for (const PartShare& p : *parts) {
      max_vus_sum += p.max_vus;
      std::vector<Instant> mine;
      for (const ShardShare& sh : part_shards(wf, p, 6))
        for (Instant t : arrivals(wf, sh)) mine.push_back(t);
      if (p.iterations && *iters <= 70) REQUIRE(mine.size() == *p.iterations);  // 70 arrivals in the duration
      merged.insert(merged.end(), mine.begin(), mine.end());
    }
    REQUIRE(max_vus_sum == 6000);
    REQUIRE(one.size() == (iters ? std::min<std::uint64_t>(*iters, 70) : 70));
    std::sort(one.begin(), one.end());
    std::sort(six.begin(), six.end());
    std::sort(merged.begin(), merged.end());
    REQUIRE(six == one);
    REQUIRE(merged == one);  // interleaved like one generator, not bunched per part
  }
}

TEST_CASE("parts: a re-dispatched part skips the iterations accounted for evenly over its shards",
          "[load][schedule][parts]") {
  // 3000 iterations over parts of 1, 2, 3 of 6 global shards: 500 per global shard; parts 500, 1000, 1500.
  Workflow wf;
  wf.vus = 6;
  wf.iterations = 3000;
  wf.duration = std::chrono::seconds(100);
  auto parts = split_parts(wf, {1, 2, 3});
  REQUIRE(parts.ok());
  struct Case {
    std::uint64_t skip;
    std::vector<std::uint64_t> left;  // per part: iterations per shard after the skip
  };
  const std::vector<std::vector<Case>> cases{
      {{0, {500}}, {499, {1}}, {500, {0}}, {501, {0}}, {1'000'000, {0}}},
      {{0, {500, 500}}, {700, {150, 150}}, {501, {249, 250}}, {999, {0, 1}}, {1000, {0, 0}}, {1001, {0, 0}}},
      {{200, {433, 433, 434}}, {1499, {0, 0, 1}}, {std::uint64_t{1} << 63, {0, 0, 0}}},
  };
  for (std::size_t k = 0; k < 3; ++k) {
    const PartShare& p = (*parts)[k];
    for (const Case& c : cases[k]) {
      CAPTURE(k, c.skip);
      const auto shares = part_shares(wf, p.first_shard, p.shards, 6, c.skip);
      REQUIRE(shares.size() == p.shards);
      std::uint64_t started = 0, skipped = 0;
      for (std::size_t i = 0; i < shares.size(); ++i) {
        const ShardShare& sh = shares[i];
        const ShardShare whole = share_for(wf, static_cast<int>(p.first_shard + i), 6);
        REQUIRE(sh.shard == whole.shard);
        REQUIRE(sh.vus == whole.vus);
        REQUIRE(sh.iterations == std::optional<std::uint64_t>(c.left[i]));
        REQUIRE(sh.skipped + c.left[i] == *whole.iterations);
        REQUIRE(sh.active == (c.left[i] > 0));
        skipped += sh.skipped;
        started += run_closed(wf, sh);  // what the shard actually starts
      }
      REQUIRE(skipped == std::min(c.skip, *p.iterations));
      REQUIRE(started == *p.iterations - std::min(c.skip, *p.iterations));
    }
    // No skip: exactly share_for's shares.
    const auto plain = part_shares(wf, p.first_shard, p.shards, 6);
    for (std::size_t i = 0; i < plain.size(); ++i) {
      REQUIRE(plain[i].iterations == share_for(wf, static_cast<int>(p.first_shard + i), 6).iterations);
      REQUIRE(plain[i].skipped == 0);
    }
  }

  // A shard without VUs has no iterations and gives none: 2 VUs over 6 global shards, 10 iterations (5, 5,
  // then 0 on shards 2 to 5); the part [1, 3) has 5 + 0.
  Workflow few = wf;
  few.vus = 2;
  few.iterations = 10;
  const auto sp = part_shares(few, 1, 2, 6, 3);
  REQUIRE(sp.size() == 2);
  REQUIRE(sp[0].iterations == std::optional<std::uint64_t>(2));
  REQUIRE(sp[0].skipped == 3);
  REQUIRE(sp[0].active);
  REQUIRE(sp[1].iterations == std::optional<std::uint64_t>(0));
  REQUIRE(sp[1].skipped == 0);
  REQUIRE_FALSE(sp[1].active);

  // Arrival rate with a budget: a shard's remaining arrivals are its last ones, at their scheduled times.
  Workflow open;
  open.executor = Executor::constant_arrival_rate;
  open.rate = 7;
  open.time_unit = std::chrono::milliseconds(100);
  open.max_vus = 6000;
  open.duration = std::chrono::seconds(1);
  open.iterations = 60;  // 10 per global shard (70 arrivals fit the duration)
  for (std::uint64_t skip : {0u, 4u, 10u, 13u, 25u, 30u, 31u}) {
    CAPTURE(skip);
    const auto shares = part_shares(open, 3, 3, 6, skip);  // the part [3, 6) of 6: 30 iterations
    std::uint64_t started = 0;
    for (std::size_t i = 0; i < shares.size(); ++i) {
      const std::vector<Instant> all = arrivals(open, share_for(open, static_cast<int>(3 + i), 6));
      const std::vector<Instant> mine = shares[i].active ? arrivals(open, shares[i]) : std::vector<Instant>{};
      REQUIRE(all.size() == 10);
      REQUIRE(mine.size() + shares[i].skipped == all.size());
      REQUIRE(std::equal(mine.begin(), mine.end(), all.end() - static_cast<std::ptrdiff_t>(mine.size())));
      started += mine.size();
    }
    REQUIRE(started == 30 - std::min<std::uint64_t>(skip, 30));
  }

  // No `iterations` budget (duration only), or a setup workflow: the skip is ignored.
  Workflow timed = open;
  timed.iterations.reset();
  Workflow setup;
  setup.kind = WorkflowKind::setup;
  for (const Workflow* w : {&timed, &setup}) {
    const auto shares = part_shares(*w, 0, 2, 2, 1000);
    for (int i = 0; i < 2; ++i) {
      const ShardShare want = share_for(*w, i, 2);
      REQUIRE(shares[static_cast<std::size_t>(i)].skipped == 0);
      REQUIRE(shares[static_cast<std::size_t>(i)].iterations == want.iterations);
      REQUIRE(shares[static_cast<std::size_t>(i)].active == want.active);
    }
  }
  REQUIRE(arrivals(timed, part_shares(timed, 0, 1, 2, 1000)[0]).size() == 35);  // even arrivals of 70
}

TEST_CASE("parts: max_vus splits exactly; setup workflows stay one part; bad input is an error",
          "[load][schedule][parts]") {
  Workflow wf;
  wf.executor = Executor::constant_arrival_rate;
  wf.rate = 10;
  for (std::uint64_t m : {7u, 4u, 6u, 1000u}) {
    wf.max_vus = m;
    auto parts = split_parts(wf, {1, 2, 3});
    REQUIRE(parts.ok());
    std::uint64_t sum = 0;
    for (const PartShare& p : *parts) {
      sum += p.max_vus;
      REQUIRE(p.vus >= p.shards);  // every shard may run at least one iteration at a time
      REQUIRE(p.vus >= p.max_vus);
      REQUIRE(p.active);
      REQUIRE_FALSE(p.iterations.has_value());
    }
    REQUIRE(sum == m);
  }
  wf.max_vus = 7;  // global shards get 2, 1, 1, 1, 1, 1
  auto parts = split_parts(wf, {1, 2, 3});
  REQUIRE(parts.ok());
  REQUIRE((*parts)[0].max_vus == 2);
  REQUIRE((*parts)[1].max_vus == 2);
  REQUIRE((*parts)[2].max_vus == 3);

  Workflow setup;
  setup.kind = WorkflowKind::setup;
  setup.vus = 50;
  for (const auto& cores : std::vector<std::vector<std::uint32_t>>{{1, 2, 3}, {3, 1}, {1}}) {
    auto sp = split_parts(setup, cores);
    REQUIRE(sp.ok());
    REQUIRE(sp->size() == cores.size());
    for (std::size_t k = 0; k < sp->size(); ++k) {
      const PartShare& p = (*sp)[k];
      REQUIRE(p.active == (k == 0));
      REQUIRE(p.vus == (k == 0 ? 1u : 0u));
      REQUIRE(p.iterations == std::optional<std::uint64_t>(k == 0 ? 1u : 0u));
    }
  }

  const auto bad = [&](const std::vector<std::uint32_t>& cores) {
    auto r = split_parts(wf, cores);
    REQUIRE_FALSE(r.ok());
    return r.status().message();
  };
  REQUIRE(bad({}).find("no parts") != std::string::npos);
  REQUIRE(bad({1, 0, 2}).find("part 1 has 0 cores") != std::string::npos);
  REQUIRE(bad({kMaxGlobalShards, 1}).find("cores in total") != std::string::npos);
  REQUIRE(split_parts(wf, {kMaxGlobalShards}).ok());
}

// ------------------------------------------------------------------ parsing and validation

TEST_CASE("parse: a full file becomes a normalised plan with a stable hash", "[load][parse]") {
  const std::string text = R"(version = 1
[test]
name = "shop"
[defaults]
timeout = "2s"
connect_timeout = "500ms"
[defaults.headers]
User-Agent = "hs/1"
[vars]
base = "${env.SHOP:-http://127.0.0.1:8080}"
[thresholds]
error_rate = "< 1%"
p99 = "< 250ms"
[output]
formats = ["json"]
percentiles = [75, 99.9]

[[workflow]]
name = "login"
kind = "setup"
provide = { token = "${steps.auth.token}" }
[[workflow.step]]
name = "auth"
method = "POST"
url = "${vars.base}/login"
json = { user = "a", n = 1 }
extract = { token = { from = "json", path = "/token" } }

[[workflow]]
name = "browse"
depends_on = ["login"]
executor = "constant-arrival-rate"
rate = 50
time_unit = "1s"
duration = "30s"
warmup = "5s"
[workflow.thresholds]
p95 = { limit = "< 100ms" }
[[workflow.step]]
name = "a"
url = "${vars.base}/items/${rand.int(1,9)}"
headers = { Authorization = "Bearer ${ctx.login.token}" }
[[workflow.step]]
name = "b"
after = []
type = "tcp"
address = "127.0.0.1:11211"
send = "stats\r\n"
read_until = "END\r\n"
[[workflow.step]]
name = "c"
after = ["a", "b"]
type = "udp"
address = "127.0.0.1:8125"
send = "x:1|c"
reply = false
[workflow.step.thresholds]
error_rate = "<= 0.5%"
)";
  auto p = parse(text);
  INFO(p.status().to_string());
  REQUIRE(p.ok());
  REQUIRE(p->test_name == "shop");
  REQUIRE(p->workflows.size() == 2);
  const Workflow& b = p->workflows[1];
  REQUIRE(b.executor == Executor::constant_arrival_rate);
  REQUIRE(b.max_vus == 100);  // rate * 2 by default
  REQUIRE(b.warmup == std::chrono::seconds(5));
  REQUIRE(b.steps[0].after.empty());
  REQUIRE(b.steps[1].after.empty());
  REQUIRE(b.steps[2].after == std::vector<int>{0, 1});
  REQUIRE(b.steps[0].host == "127.0.0.1");
  REQUIRE(b.steps[0].port == 8080);
  REQUIRE_FALSE(b.steps[0].path.is_static());
  REQUIRE(b.steps[0].timeout == std::chrono::seconds(2));
  REQUIRE(b.steps[0].connect_timeout == std::chrono::milliseconds(500));
  REQUIRE(b.steps[1].read_until == "END\r\n");
  REQUIRE_FALSE(b.steps[2].reply);
  REQUIRE(b.steps[2].thresholds.size() == 1);
  REQUIRE(b.steps[2].thresholds[0].value == Approx(0.005));
  REQUIRE(p->thresholds.size() == 2);
  REQUIRE(p->percentiles == std::vector<double>{75, 99.9});
  const Step& auth = p->workflows[0].steps[0];
  REQUIRE(auth.body.literal() == R"({"n":1,"user":"a"})");
  REQUIRE(std::any_of(auth.headers.begin(), auth.headers.end(), [](auto& h) { return h.first == "Content-Type"; }));
  REQUIRE(std::any_of(auth.headers.begin(), auth.headers.end(), [](auto& h) { return h.first == "User-Agent"; }));
  // Same content -> same hash; a different env value -> a different plan and hash.
  auto p2 = parse(text);
  REQUIRE(p2->hash == p->hash);
  auto p3 = parse(text, fake_env({{"SHOP", "http://127.0.0.1:9999"}}));
  REQUIRE(p3.ok());
  REQUIRE(p3->workflows[1].steps[0].port == 9999);
  REQUIRE(p3->hash != p->hash);
}

TEST_CASE("parse: the same tree as JSON gives the same plan", "[load][parse]") {
  const std::string json = R"({"version": 1, "workflow": [{"name": "w", "vus": 2, "duration": "1s",
    "step": [{"name": "s", "url": "http://127.0.0.1:8080/x"}]}]})";
  auto pj = load_plan_text(json, "t.json", true, fake_env({}));
  INFO(pj.status().to_string());
  REQUIRE(pj.ok());
  auto pt = parse(kMinimal);
  REQUIRE(pt.ok());
  pj->file = pt->file;
  REQUIRE(plan_to_json(*pj) == plan_to_json(*pt));
  // Validation errors in JSON carry the value's line and column too.
  auto badv = load_plan_text(
      "{\"version\": 1,\n \"workflow\": [{\"name\": \"w\",\n   \"vus\": \"x\", \"step\": [{\"name\": \"s\", "
      "\"url\": \"http://h/\", \"bogus\": 1}]}]}",
      "t.json", true, fake_env({}));
  REQUIRE_FALSE(badv.ok());
  INFO(badv.status().message());
  REQUIRE(badv.status().message().find("t.json:3:11: 'vus' must be an integer") != std::string::npos);
  REQUIRE(badv.status().message().find("t.json:3:68: unknown key 'bogus'") != std::string::npos);
  auto bad = load_plan_text("{\"version\": 1,\n  \"workflow\": [}", "t.json", true, fake_env({}));
  REQUIRE_FALSE(bad.ok());
  REQUIRE(bad.status().message().rfind("t.json:2:", 0) == 0);
}

TEST_CASE("validation errors carry FILE:LINE:COL and every problem is reported", "[load][parse]") {
  struct Case {
    std::string text;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"version = 1\n[[workflow]]\nname = \"w\"\nvus = \"many\"\n[[workflow.step]]\nname = \"s\"\nurl = "
       "\"http://h/\"\n",
       "t.toml:4:7: 'vus' must be an integer"},
      {"version = 1\n[[workflow]]\nname = \"w\"\nvus = 1\nduraton = \"1s\"\n[[workflow.step]]\nname = \"s\"\nurl = "
       "\"http://h/\"\n",
       "t.toml:5:11: unknown key 'duraton'"},
      {"version = 1\n[[workflow]]\nname = \"w\"\nvus = 1\nduration = \"10 parsecs\"\n[[workflow.step]]\nname = "
       "\"s\"\nurl = \"http://h/\"\n",
       "t.toml:5:12: 'duration': bad duration"},
      {"version = 1\n[[workflow]]\nname = \"w\"\nvus = 1\n[[workflow.step]]\nname = \"s\"\nurl = "
       "\"http://h/${nope}\"\n",
       "t.toml:7:7: unknown template '${nope}'"},
      {"version = 1\n[[workflow]]\nname = \"w\"\nvus = 1\n[[workflow.step]]\nname = \"s\"\nurl = \"${env.MISSING}/\"\n",
       "t.toml:7:7: environment variable 'MISSING' is not set"},
      {"version = 1\n[thresholds]\np99 = \"< 200\"\n[[workflow]]\nname = \"w\"\nvus = 1\n[[workflow.step]]\nname = "
       "\"s\"\nurl = \"http://h/\"\n",
       "t.toml:3:7: threshold 'p99': latency condition '< 200' needs a unit"},
      {"version = 1\n[[workflow]]\nname = \"w\"\nvus = 1\ndepends_on = [\"ghost\"]\n[[workflow.step]]\nname = "
       "\"s\"\nurl = \"http://h/\"\n",
       "t.toml:5:14: workflow 'w' depends on unknown workflow 'ghost'"},
      {"version = 1\n[[workflow]]\nname = \"w\"\nvus = 1\n[[workflow.step]]\nname = \"s\"\nafter = [\"t\"]\nurl = "
       "\"http://h/\"\n"
       "[[workflow.step]]\nname = \"t\"\nurl = \"http://h/\"\n",
       "the steps' after edges form a cycle"},
      {"version = 1\n[[workflow]]\nname = \"w\"\nvus = 1\n[[workflow.step]]\nname = \"s\"\nurl = "
       "\"http://h/${steps.s.x}\"\n",
       "${steps.s.x} must name a step it runs after"},
      {"version = 1\n[[workflow]]\nname = \"w\"\nvus = 1\n[[workflow.step]]\nname = \"s\"\ntype = \"tcp\"\naddress = "
       "\"h:1\"\n",
       "a tcp step needs exactly one of read_until, read_bytes, read = \"none\""},
      {"version = 1\n[[workflow]]\nname = \"w\"\nexecutor = \"constant-arrival-rate\"\n[[workflow.step]]\nname = "
       "\"s\"\nurl = \"http://h/\"\n",
       "constant-arrival-rate needs rate"},
      {"version = 1\n[[workflow]]\nname = \"w\"\nvus = 1\n[[workflow.step]]\nname = \"s\"\nurl = \"http://h/\"\nexpect "
       "= { status = [\"9xx\"] }\n",
       "t.toml:8:22: status entries must be codes"},
      {"version = 1\nworkflow = [ {name = \n", "t.toml:2:22: invalid TOML"},
      {"[[workflow]]\nname = \"w\"\nvus = 1\n[[workflow.step]]\nname = \"s\"\nurl = \"http://h/\"\n",
       "missing required key 'version'"},
      {"version = 1\n[[workflow]]\nname = \"w\"\nvus = 1\n[[workflow.step]]\nname = \"s\"\nurl = "
       "\"https://h/\"\ntls_verify = \"no\"\n",
       "t.toml:8:14: 'tls_verify' must be true or false"},
  };
  for (const auto& c : cases) {
    auto p = parse(c.text);
    INFO(c.text);
    REQUIRE_FALSE(p.ok());
    INFO(p.status().message());
    REQUIRE(p.status().message().find(c.expect) != std::string::npos);
  }
  // Several problems: all reported, one line each.
  auto p =
      parse("version = 2\n[[workflow]]\nname = \"w\"\nvus = 0\n[[workflow.step]]\nname = \"s\"\nurl = \"ftp://h/\"\n");
  REQUIRE_FALSE(p.ok());
  const auto& m = p.status().message();
  REQUIRE(std::count(m.begin(), m.end(), '\n') == 2);
  REQUIRE(m.find("t.toml:1:11: version must be 1") != std::string::npos);
  REQUIRE(m.find("t.toml:4:7: 'vus' = 0 is out of range") != std::string::npos);
  REQUIRE(m.find("t.toml:7:7: url 'ftp://h/' must start with http://") != std::string::npos);
}

TEST_CASE("templates: load-time resolution and runtime rendering", "[load][template]") {
  std::map<std::string, std::string> vars = {{"host", "h.test"}};
  auto env = fake_env({{"PORT", "81"}});
  auto t = parse_template("http://${vars.host}:${env.PORT}/u/${vu}/i/${iteration}?w=${worker}&d=${env.NOPE:-dflt}",
                          vars, env);
  REQUIRE(t.ok());
  REQUIRE(t->parts[0].text == "http://h.test:81/u/");
  TemplateScope sc;
  sc.vu = 7;
  sc.iteration = 42;
  sc.worker = 1;
  std::string out;
  render(*t, sc, out);
  REQUIRE(out == "http://h.test:81/u/7/i/42?w=1&d=dflt");

  std::map<std::string, std::string> steps = {{"login.token", "abc"}}, ctx = {{"setup.key", "K"}};
  auto t2 = parse_template("${steps.login.token}-${ctx.setup.key}-${rand.int(5,5)}-${rand.hex(6)}-${uuid}", vars, env);
  REQUIRE(t2.ok());
  sc.steps = &steps;
  sc.ctx = &ctx;
  out.clear();
  render(*t2, sc, out);
  REQUIRE(out.rfind("abc-K-5-", 0) == 0);
  REQUIRE(out.size() == std::string("abc-K-5-").size() + 6 + 1 + 36);
  REQUIRE(out[8 + 6 + 1 + 14] == '4');  // uuid version nibble

  REQUIRE_FALSE(parse_template("${vars.missing}", vars, env).ok());
  REQUIRE_FALSE(parse_template("${rand.int(5,1)}", vars, env).ok());
  REQUIRE_FALSE(parse_template("${unclosed", vars, env).ok());
  REQUIRE_FALSE(parse_template("${steps.only}", vars, env).ok());
}

TEST_CASE("parse: https URLs enable TLS on port 443; tls_verify from defaults or the step", "[load][parse]") {
  auto p = parse(
      "version = 1\n[defaults]\ntls_verify = false\n[[workflow]]\nname = \"w\"\nvus = 1\n[[workflow.step]]\n"
      "name = \"a\"\nurl = \"https://example.test/x\"\n[[workflow.step]]\nname = \"b\"\n"
      "url = \"https://example.test:8443/\"\ntls_verify = true\n");
  INFO(p.status().to_string());
  REQUIRE(p.ok());
  const auto& a = p->workflows[0].steps[0];
  const auto& b = p->workflows[0].steps[1];
  REQUIRE(a.tls);
  REQUIRE(a.port == 443);
  REQUIRE_FALSE(a.tls_verify);
  REQUIRE(b.port == 8443);
  REQUIRE(b.tls_verify);
}

TEST_CASE("durations", "[load][parse]") {
  REQUIRE(*parse_duration("500ms") == std::chrono::milliseconds(500));
  REQUIRE(*parse_duration("1m30s") == std::chrono::seconds(90));
  REQUIRE(*parse_duration("250us") == std::chrono::microseconds(250));
  REQUIRE(*parse_duration("1h") == std::chrono::hours(1));
  REQUIRE_FALSE(parse_duration("5").ok());
  REQUIRE_FALSE(parse_duration("5d").ok());
  REQUIRE_FALSE(parse_duration("").ok());
}

// ------------------------------------------------------------------ thresholds and exit codes

TEST_CASE("parse: abort thresholds { limit, abort = true, after }; after without abort and bad after are errors",
          "[load][parse][thresholds]") {
  auto with = [](const std::string& thresholds) {
    return parse("version = 1\n[thresholds]\n" + thresholds +
                 "\n[[workflow]]\nname = \"w\"\nvus = 1\n[[workflow.step]]\nname = \"s\"\nurl = \"http://h/\"\n"
                 "[workflow.step.thresholds]\nerror_rate = { limit = \"< 1%\", abort = true }\n");
  };
  auto p = with(
      "p99 = { limit = \"< 100ms\", abort = true, after = \"30s\" }\nerrors = { limit = \"< 5\", abort = "
      "false }\nrps = \"> 10\"");
  INFO(p.status().to_string());
  REQUIRE(p.ok());
  REQUIRE(p->thresholds.size() == 3);
  auto find = [&](const std::string& key) {
    return *std::find_if(p->thresholds.begin(), p->thresholds.end(), [&](const Threshold& t) { return t.key == key; });
  };
  const Threshold p99 = find("p99"), errors = find("errors"), rps = find("rps");
  REQUIRE(p99.abort);
  REQUIRE(p99.after == std::chrono::seconds(30));
  REQUIRE(p99.value == Approx(100e6));
  REQUIRE_FALSE(errors.abort);
  REQUIRE(errors.after == Duration{0});
  REQUIRE_FALSE(rps.abort);
  const Threshold& step = p->workflows[0].steps[0].thresholds.at(0);
  REQUIRE(step.abort);  // abort without after: judged from the start
  REQUIRE(step.after == Duration{0});
  // The plan dump shows them.
  const std::string dump = plan_to_json(*p);
  REQUIRE(dump.find(R"("p99":{"abort":true,"after_ns":30000000000,"limit":"< 100ms"})") != std::string::npos);
  REQUIRE(dump.find(R"("errors":"< 5")") != std::string::npos);
  // after without abort = true, a bad or negative after: errors naming the key.
  auto bad = with("p99 = { limit = \"< 100ms\", after = \"30s\" }");
  REQUIRE_FALSE(bad.ok());
  INFO(bad.status().message());
  REQUIRE(bad.status().message().find("t.toml:3:36: threshold 'p99': 'after' applies to abort thresholds only") !=
          std::string::npos);
  bad = with("p99 = { limit = \"< 100ms\", abort = false, after = \"30s\" }");
  REQUIRE(bad.status().message().find("'after' applies to abort thresholds only") != std::string::npos);
  for (const char* d : {"\"soon\"", "\"-5s\"", "\"\"", "30"}) {
    bad = with(std::string("p99 = { limit = \"< 100ms\", abort = true, after = ") + d + " }");
    INFO(d);
    REQUIRE_FALSE(bad.ok());
    INFO(bad.status().message());
    REQUIRE(bad.status().message().find("after") != std::string::npos);
  }
  bad = with("p99 = { limit = \"< 100ms\", abort = true, after = \"-5s\" }");
  REQUIRE(bad.status().message().find("'after': bad duration '-5s'") != std::string::npos);
}

TEST_CASE("thresholds are judged on merged data; exit codes", "[load][thresholds]") {
  auto p = parse(R"(version = 1
[thresholds]
error_rate = "< 10%"
[[workflow]]
name = "w"
vus = 1
[workflow.thresholds]
p99 = "< 50ms"
rps = ">= 10"
[[workflow.step]]
name = "s"
url = "http://127.0.0.1:1/"
[workflow.step.thresholds]
errors = "== 0"
)");
  REQUIRE(p.ok());
  RunStats rs;
  rs.workflows.resize(1);
  auto& ws = rs.workflows[0];
  ws.outcome = WorkflowOutcome::completed;
  ws.measured = std::chrono::seconds(10);
  ws.steps.resize(1);
  // Two shards' data, merged: 200 requests, p99 ~ 40 ms, no errors.
  StepStats a, b;
  for (int i = 0; i < 100; ++i)
    a.record(true, FailReason::timeout, 1'000'000 + static_cast<std::uint64_t>(i) * 390'000, true, 0);
  for (int i = 0; i < 100; ++i) b.record(true, FailReason::timeout, 2'000'000, true, 1);
  ws.steps[0].merge(a);
  ws.steps[0].merge(b);
  REQUIRE(ws.steps[0].measured.executed == 200);
  REQUIRE(ws.steps[0].series.size() == 2);
  evaluate_thresholds(*p, rs);
  REQUIRE(rs.thresholds.size() == 4);
  for (const auto& t : rs.thresholds) {
    INFO(t.threshold.scope << " " << t.threshold.key << " observed " << t.observed);
    REQUIRE(t.passed);
  }
  REQUIRE(exit_code_for(rs) == 0);

  // One failure breaks errors == 0 but not error_rate < 10%.
  ws.steps[0].record(false, FailReason::unexpected_status, 3'000'000, true, 1);
  evaluate_thresholds(*p, rs);
  REQUIRE(std::count_if(rs.thresholds.begin(), rs.thresholds.end(), [](auto& t) { return !t.passed; }) == 1);
  REQUIRE(exit_code_for(rs) == 3);

  // Aborted wins; unreachable (only connection failures) is 5.
  rs.aborted = true;
  REQUIRE(exit_code_for(rs) == 4);
  RunStats down;
  down.workflows.resize(1);
  down.workflows[0].steps.resize(1);
  for (int i = 0; i < 5; ++i) down.workflows[0].steps[0].record(false, FailReason::refused, 100, true, 0);
  REQUIRE(exit_code_for(down) == 5);
  // No data never passes silently.
  RunStats empty;
  empty.workflows.resize(1);
  empty.workflows[0].steps.resize(1);
  evaluate_thresholds(*p, empty);
  REQUIRE(
      std::any_of(empty.thresholds.begin(), empty.thresholds.end(), [](auto& t) { return t.no_data && !t.passed; }));
  // A skipped dependant makes the run fail (3).
  RunStats skipped;
  skipped.workflows.resize(1);
  skipped.workflows[0].outcome = WorkflowOutcome::skipped;
  REQUIRE(exit_code_for(skipped) == 3);
}

TEST_CASE("worst_case_run_time bounds a run by durations, graceful stops and step timeouts", "[load][plan]") {
  using std::chrono::seconds;
  Plan plan;
  CHECK(worst_case_run_time(plan) == seconds(10));  // an empty plan: only the run's slack
  Workflow a;
  a.duration = seconds(60);
  a.graceful_stop = seconds(30);
  a.steps.resize(2);
  a.steps[0].timeout = seconds(2);
  a.steps[1].timeout = seconds(3);  // the graceful stop is cut to the steps' timeouts + 1 s = 6 s
  Workflow b;
  b.duration = seconds(5);
  b.graceful_stop = seconds(1);  // shorter than b's step timeout (5 s default) + 1 s
  b.steps.resize(1);
  plan.workflows = {a, b};
  CHECK(worst_case_run_time(plan) == seconds((60 + 6 + 2) + (5 + 1 + 2) + 10));
}

TEST_CASE("parse: a value of the wrong TOML type is named by its type", "[load][parse]") {
  // One name table for every TOML reader (plan files here, daemon config in host): a float is "a float"
  // and a date "a date", not a catch-all.
  auto f = parse(std::string(kMinimal) + "[[workflow]]\nname = 1.5\n");
  REQUIRE_FALSE(f.ok());
  CHECK(f.status().message().find("'name' must be a string, not a float") != std::string::npos);
  auto d = parse(std::string(kMinimal) + "[[workflow]]\nname = 1979-05-27\n");
  REQUIRE_FALSE(d.ok());
  CHECK(d.status().message().find("'name' must be a string, not a date") != std::string::npos);
}

TEST_CASE("parse: a workflow's cores key (1..4096) for cluster jobs; out of range is an error", "[load][parse]") {
  auto with = [](const std::string& cores) {
    return parse("version = 1\n[[workflow]]\nname = \"w\"\nvus = 4\n" + cores +
                 "\n[[workflow.step]]\nname = \"s\"\nurl = \"http://h/\"\n");
  };
  auto p = with("cores = 3");
  INFO(p.status().to_string());
  REQUIRE(p.ok());
  CHECK(p->workflows[0].cores == 3);
  CHECK(plan_to_json(*p).find(R"("cores":3)") != std::string::npos);
  auto none = with("");
  REQUIRE(none.ok());
  CHECK(none->workflows[0].cores == 0);  // the manager's share
  for (const char* bad : {"cores = 0", "cores = 5000", "cores = \"two\""}) {
    auto b = with(bad);
    CAPTURE(bad);
    REQUIRE_FALSE(b.ok());
    CHECK(b.status().message().find("cores") != std::string::npos);
  }
}
