// Live windowed statistics (include/hyperscale/load/window.hpp): the window encoding and the merger a
// job's leader keeps per workflow. Deterministic: every random input comes from a seeded Rng.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <vector>

#include "hyperscale/base/random.hpp"
#include "hyperscale/load/window.hpp"

using namespace hs;
using namespace hs::load;

namespace {

bool same_counts(const Counts& a, const Counts& b) {
  return a.executed == b.executed && a.ok == b.ok && a.failed == b.failed && a.reasons == b.reasons;
}

void require_same(const Window& a, const Window& b) {
  REQUIRE(a.workflow == b.workflow);
  REQUIRE(a.part == b.part);
  REQUIRE(a.token == b.token);
  REQUIRE(a.index == b.index);
  REQUIRE(a.steps.size() == b.steps.size());
  for (std::size_t i = 0; i < a.steps.size(); ++i) {
    REQUIRE(a.steps[i].name == b.steps[i].name);
    REQUIRE(same_counts(a.steps[i].total, b.steps[i].total));
    REQUIRE(same_counts(a.steps[i].measured, b.steps[i].measured));
    REQUIRE(a.steps[i].latency == b.steps[i].latency);
  }
  REQUIRE(a.iterations == b.iterations);
  REQUIRE(a.saturation == b.saturation);
}

// A skewed latency: lognormal around 2 ms (Box-Muller on the seeded Rng), in nanoseconds.
std::uint64_t lognormal_ns(Rng& rng) {
  const double u1 = 1.0 - rng.next_double(), u2 = rng.next_double();
  const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
  return static_cast<std::uint64_t>(std::exp(std::log(2e6) + 1.2 * z));
}

// Records one request into a window step (as StepStats::record does: measured requests go to the histogram).
void record(WindowStep& s, bool ok, FailReason why, std::uint64_t ns, bool measured) {
  auto bump = [&](Counts& c) {
    c.executed++;
    if (ok)
      c.ok++;
    else
      c.failed++, c.reasons[static_cast<int>(why)]++;
  };
  bump(s.total);
  if (measured) {
    bump(s.measured);
    s.latency.record(ns);
  }
}

const std::vector<std::string> kSteps = {"get", "post"};

// A window of workflow "wf" with `n` random requests spread over the steps.
Window make_window(Rng& rng, std::uint32_t part, std::uint64_t token, std::uint64_t index, int n) {
  Window w;
  w.workflow = "wf";
  w.part = part;
  w.token = token;
  w.index = index;
  w.steps.resize(kSteps.size());
  for (std::size_t i = 0; i < kSteps.size(); ++i) w.steps[i].name = kSteps[i];
  for (int k = 0; k < n; ++k) {
    const bool ok = !rng.chance(0.05);
    record(w.steps[rng.below(kSteps.size())], ok, ok ? FailReason::refused : FailReason::timeout, lognormal_ns(rng),
           !rng.chance(0.1));
  }
  w.iterations = {static_cast<std::uint64_t>(n), n > 0 ? static_cast<std::uint64_t>(n) - 1 : 0, 1, 2};
  w.saturation = {37 + part, 1000000u * (part + 1)};
  return w;
}

// Everything an observer of a merger can read, to show that a refused input changed nothing.
struct Snapshot {
  std::vector<std::vector<std::uint8_t>> windows;  // each retained window's figures, encoded
  std::vector<std::vector<std::uint8_t>> totals;
  WindowCounters counters;
  std::uint64_t now = 0;
  bool operator==(const Snapshot& o) const {
    return windows == o.windows && totals == o.totals && now == o.now && counters.merged == o.counters.merged &&
           counters.duplicates == o.counters.duplicates && counters.late == o.counters.late &&
           counters.stale == o.counters.stale && counters.expired == o.counters.expired &&
           counters.late_executed == o.counters.late_executed && counters.evicted == o.counters.evicted;
  }
};

std::vector<std::uint8_t> encode_steps(const std::vector<WindowStep>& steps, const WindowIterations& it) {
  Window w;
  w.steps = steps;
  w.iterations = it;
  return encode_window(w);
}

Snapshot snapshot(const WindowMerger& m, std::uint64_t upto) {
  Snapshot s;
  for (std::uint64_t i = 0; i <= upto; ++i) {
    auto w = m.window(i);
    if (!w) continue;
    s.windows.push_back(encode_steps(w->steps, w->iterations));
    for (const auto& p : w->parts)
      s.windows.back().insert(s.windows.back().end(),
                              {static_cast<std::uint8_t>(p.part), static_cast<std::uint8_t>(p.token), p.late});
  }
  s.totals.push_back(encode_steps(m.totals().steps, m.totals().iterations));
  s.counters = m.counters();
  s.now = m.now();
  return s;
}

Counts sum_total(const std::vector<Window>& ws, std::size_t step) {
  Counts c;
  for (const auto& w : ws) c.merge(w.steps[step].total);
  return c;
}

}  // namespace

TEST_CASE("windows: merging through the wire encoding is exact (every percentile)", "[load][window]") {
  // 200 000 lognormal samples: one histogram per step gets them all; the same samples, split at random
  // over 3 parts x 10 windows, go through encode_windows/decode_windows and the merger.
  constexpr int kParts = 3, kWindows = 10, kSamples = 200000;
  Rng rng(20261202);
  std::vector<Histogram> single(kSteps.size());
  Histogram single_all;
  std::vector<Counts> single_total(kSteps.size());
  std::vector<std::vector<Window>> parts(kParts);
  for (int p = 0; p < kParts; ++p)
    for (int k = 0; k < kWindows; ++k) {
      Window w = make_window(rng, static_cast<std::uint32_t>(p), 7, static_cast<std::uint64_t>(k), 0);
      w.iterations = {};
      parts[static_cast<std::size_t>(p)].push_back(std::move(w));
    }
  for (int i = 0; i < kSamples; ++i) {
    const std::uint64_t ns = lognormal_ns(rng);
    const std::size_t step = rng.below(kSteps.size());
    const bool ok = !rng.chance(0.02);
    Window& w = parts[rng.below(kParts)][rng.below(kWindows)];
    record(w.steps[step], ok, FailReason::reset, ns, true);
    w.iterations.started++, w.iterations.completed++;
    single[step].record(ns);
    single_all.record(ns);
    single_total[step].executed++;
    ok ? single_total[step].ok++ : (single_total[step].failed++, single_total[step].reasons[3]++);
  }
  std::vector<Window> decoded;
  for (const auto& ws : parts) {
    auto d = decode_windows(encode_windows(ws));
    INFO(d.status().to_string());
    REQUIRE(d.ok());
    REQUIRE(d->size() == ws.size());
    for (std::size_t i = 0; i < ws.size(); ++i) require_same((*d)[i], ws[i]);
    decoded.insert(decoded.end(), d->begin(), d->end());
  }
  rng.shuffle(decoded.begin(), decoded.end());
  WindowMerger m("wf", kSteps);
  for (const auto& w : decoded) {
    auto r = m.add(w);
    REQUIRE(r.ok());
    REQUIRE(*r == WindowAdd::merged);
  }
  m.advance(kWindows + 5);  // every window closed
  REQUIRE(m.counters().merged == kParts * kWindows);
  std::vector<double> qs;
  for (int p = 0; p <= 99; ++p) qs.push_back(p / 100.0);
  qs.push_back(0.999);
  qs.push_back(1.0);
  auto same_percentiles = [&](const Histogram& a, const Histogram& b) {
    for (double q : qs) {
      INFO("q " << q);
      REQUIRE(a.quantile(q) == b.quantile(q));
    }
  };
  std::uint64_t executed = 0;
  for (std::size_t s = 0; s < kSteps.size(); ++s) {
    const WindowStep& t = m.totals().steps[s];
    REQUIRE(t.name == kSteps[s]);
    REQUIRE(t.latency == single[s]);  // bucket for bucket, count, sum, min, max
    REQUIRE(t.latency.counts() == single[s].counts());
    same_percentiles(t.latency, single[s]);
    REQUIRE(same_counts(t.measured, single_total[s]));
    REQUIRE(same_counts(t.total, single_total[s]));
    executed += t.total.executed;
    // The merged windows add up to the totals too.
    Histogram from_windows;
    for (int k = 0; k < kWindows; ++k) from_windows.merge(m.window(static_cast<std::uint64_t>(k))->steps[s].latency);
    REQUIRE(from_windows == single[s]);
  }
  REQUIRE(executed == kSamples);
  REQUIRE(m.totals().merged_latency() == single_all);
  same_percentiles(m.totals().merged_latency(), single_all);
  REQUIRE(m.totals().iterations.completed == kSamples);
}

TEST_CASE("windows: AGG-01 against windows: duplicated and reordered windows merge once, totals exact",
          "[load][window][agg]") {
  Rng rng(101);
  std::vector<Window> sent;
  for (std::uint32_t p = 0; p < 3; ++p)
    for (std::uint64_t k = 0; k < 6; ++k)
      sent.push_back(make_window(rng, p, 1, k, 50 + static_cast<int>(rng.below(50))));
  const Counts expect = sum_total(sent, 0);
  // Every window sent twice (retries), all in a random order, all within the lateness.
  std::vector<Window> wire = sent;
  wire.insert(wire.end(), sent.begin(), sent.end());
  rng.shuffle(wire.begin(), wire.end());
  WindowMerger m("wf", kSteps);
  m.advance(4);  // now = 4, lateness 5: window 0 is still open
  int merged = 0, dup = 0;
  for (const auto& w : wire) {
    auto d = decode_window(encode_window(w));
    REQUIRE(d.ok());
    auto r = m.add(*d);
    REQUIRE(r.ok());
    REQUIRE((*r == WindowAdd::merged || *r == WindowAdd::duplicate));
    (*r == WindowAdd::merged ? merged : dup)++;
    // The progress shown never goes above the final total.
    REQUIRE(m.totals().steps[0].total.executed <= expect.executed);
  }
  REQUIRE(merged == 18);
  REQUIRE(dup == 18);
  REQUIRE(m.counters().duplicates == 18);
  REQUIRE(same_counts(m.totals().steps[0].total, expect));
  // Per window: the sum of the three parts, once.
  for (std::uint64_t k = 0; k < 6; ++k) {
    std::vector<Window> of_k;
    for (const auto& w : sent)
      if (w.index == k) of_k.push_back(w);
    auto mw = m.window(k);
    REQUIRE(mw);
    REQUIRE(same_counts(mw->steps[0].total, sum_total(of_k, 0)));
    REQUIRE(mw->parts.size() == 3);
    REQUIRE(mw->iterations.started ==
            of_k[0].iterations.started + of_k[1].iterations.started + of_k[2].iterations.started);
  }
}

TEST_CASE("windows: AGG-03 against windows: a closed window does not change; late data is counted, in totals once",
          "[load][window][agg]") {
  Rng rng(303);
  WindowMerger m("wf", kSteps, WindowMergerConfig{.lateness = 2});
  const Window a = make_window(rng, 0, 1, 3, 40), b = make_window(rng, 1, 1, 3, 60);
  REQUIRE(*m.add(a) == WindowAdd::merged);
  m.advance(5);  // window 3 closes (3 + 2 <= 5)
  REQUIRE(m.closed_through() == 3u);
  REQUIRE(m.window(3)->closed);
  const std::uint64_t total_before = m.totals().steps[1].total.executed;
  REQUIRE(*m.add(b) == WindowAdd::late);
  // The closed window's figures stay as they were; the late part is listed as late.
  auto w3 = m.window(3);
  REQUIRE(same_counts(w3->steps[1].total, a.steps[1].total));
  REQUIRE(w3->parts.size() == 2);
  REQUIRE_FALSE(w3->parts[0].late);
  REQUIRE(w3->parts[1].late);
  REQUIRE(m.counters().late == 1);
  REQUIRE(m.counters().late_executed == b.steps[0].total.executed + b.steps[1].total.executed);
  // ... and the totals have it, exactly once: a retry of the late window is a duplicate.
  REQUIRE(m.totals().steps[1].total.executed == total_before + b.steps[1].total.executed);
  const auto after_late = snapshot(m, 10);
  REQUIRE(*m.add(b) == WindowAdd::duplicate);
  REQUIRE(*m.add(a) == WindowAdd::duplicate);
  auto again = snapshot(m, 10);
  REQUIRE(again.counters.duplicates == 2);
  again.counters.duplicates = 0;
  REQUIRE(again == after_late);
  // A window late for a window nobody had reported: counted late, in the totals, no figures.
  REQUIRE(*m.add(make_window(rng, 2, 1, 1, 10)) == WindowAdd::late);
  REQUIRE(m.window(1)->steps[0].total.executed == 0);
  REQUIRE(m.counters().late == 2);
}

TEST_CASE("windows: AGG-05 against windows: parts with skewed clocks land in one window; too old is dropped",
          "[load][window][agg]") {
  Rng rng(505);
  WindowMerger m("wf", kSteps, WindowMergerConfig{.lateness = 2, .max_ahead = 2, .max_windows = 8});
  // Part 1's clock runs ahead (its window k arrives while the leader is at k - 1), part 2 behind (at k + 1).
  for (std::uint64_t k = 0; k < 20; ++k) {
    m.advance(k);
    REQUIRE(*m.add(make_window(rng, 1, 1, k + 1, 5)) == WindowAdd::merged);
    REQUIRE(*m.add(make_window(rng, 0, 1, k, 5)) == WindowAdd::merged);
    if (k >= 1) REQUIRE(*m.add(make_window(rng, 2, 1, k - 1, 5)) == WindowAdd::merged);
  }
  // Every window within the ring has all three parts, once.
  for (std::uint64_t k = 13; k < 19; ++k) {
    auto w = m.window(k);
    REQUIRE(w);
    REQUIRE(w->parts.size() == 3);
  }
  // The ring holds 8 windows: (20 - 8, 20]. Window 12 is gone; a window for it is too old to tell from a
  // duplicate: refused as expired, not in the totals.
  REQUIRE_FALSE(m.window(12));
  const auto totals = m.totals().steps[0].total.executed;
  REQUIRE(*m.add(make_window(rng, 0, 1, 12, 5)) == WindowAdd::expired);
  REQUIRE(m.counters().expired == 1);
  REQUIRE(m.totals().steps[0].total.executed == totals);
  // A window too far ahead (clock skew beyond max_ahead) is refused as bad input.
  auto ahead = m.add(make_window(rng, 0, 1, 19 + 3, 5));
  REQUIRE_FALSE(ahead.ok());
  REQUIRE(ahead.status().message().find("past now") != std::string::npos);
}

TEST_CASE("windows: a superseded token is refused; a re-dispatched part's windows merge", "[load][window]") {
  Rng rng(7);
  WindowMerger m("wf", kSteps);
  REQUIRE(*m.add(make_window(rng, 0, 5, 0, 10)) == WindowAdd::merged);
  REQUIRE(*m.add(make_window(rng, 1, 5, 0, 10)) == WindowAdd::merged);
  // Part 0 dies and is re-dispatched with token 6: its new windows merge, even into a window the old
  // attempt reported (different key).
  REQUIRE(*m.add(make_window(rng, 0, 6, 0, 10)) == WindowAdd::merged);
  REQUIRE(*m.add(make_window(rng, 0, 6, 1, 10)) == WindowAdd::merged);
  REQUIRE(m.window(0)->parts.size() == 3);
  // The old attempt's windows are refused from now on, and change nothing.
  const auto before = snapshot(m, 10);
  REQUIRE(*m.add(make_window(rng, 0, 5, 1, 10)) == WindowAdd::stale_token);
  REQUIRE(*m.add(make_window(rng, 0, 5, 2, 10)) == WindowAdd::stale_token);
  auto after = snapshot(m, 10);
  REQUIRE(after.counters.stale == 2);
  after.counters.stale = 0;
  REQUIRE(after == before);
  // Part 1 is untouched by part 0's fencing.
  REQUIRE(*m.add(make_window(rng, 1, 5, 1, 10)) == WindowAdd::merged);
  // Tokens of one part within one window are bounded.
  WindowMerger small("wf", kSteps, WindowMergerConfig{.max_tokens_per_part = 2});
  REQUIRE(*small.add(make_window(rng, 0, 1, 0, 1)) == WindowAdd::merged);
  REQUIRE(*small.add(make_window(rng, 0, 2, 0, 1)) == WindowAdd::merged);
  auto third = small.add(make_window(rng, 0, 3, 0, 1));
  REQUIRE_FALSE(third.ok());
  REQUIRE(small.counters().refused == 1);
}

TEST_CASE("windows: the ring keeps max_windows windows and counts evictions", "[load][window]") {
  Rng rng(11);
  WindowMerger m("wf", kSteps, WindowMergerConfig{.lateness = 2, .max_ahead = 3, .max_windows = 20});
  for (std::uint64_t k = 0; k < 100; ++k) {
    m.advance(k);
    REQUIRE(*m.add(make_window(rng, 0, 1, k, 3)) == WindowAdd::merged);
    REQUIRE(m.retained() <= 20);
  }
  REQUIRE(m.retained() == 20);
  REQUIRE(m.counters().evicted == 80);
  REQUIRE_FALSE(m.window(79));
  for (std::uint64_t k = 80; k < 100; ++k) REQUIRE(m.window(k));
  // Moving now far ahead empties the ring (counted) without walking every skipped index.
  m.advance(1'000'000'000'000);
  REQUIRE(m.retained() == 0);
  REQUIRE(m.counters().evicted == 100);
  REQUIRE(m.totals().steps[0].total.executed + m.totals().steps[1].total.executed == 300);
  // Far past the ring: expired; indices near the top of u64 do not wrap any comparison.
  REQUIRE(*m.add(make_window(rng, 0, 1, 5, 3)) == WindowAdd::expired);
  m.advance(~std::uint64_t{0});
  REQUIRE(m.closed_through() == ~std::uint64_t{0} - 2);
  REQUIRE(*m.add(make_window(rng, 0, 1, ~std::uint64_t{0} - 2, 3)) == WindowAdd::late);
  REQUIRE(*m.add(make_window(rng, 0, 1, ~std::uint64_t{0}, 3)) == WindowAdd::merged);
  REQUIRE_FALSE(m.window(~std::uint64_t{0} - 20));
}

TEST_CASE("windows: bad input is a clear error and changes nothing", "[load][window]") {
  Rng rng(99);
  const Window good = make_window(rng, 1, 3, 2, 100);  // < 128 requests per step: one-byte counts
  const auto enc = encode_window(good);
  WindowMerger m("wf", kSteps);
  REQUIRE(*m.add(make_window(rng, 0, 1, 2, 20)) == WindowAdd::merged);
  const Snapshot before = snapshot(m, 20);
  auto refused = [&](const Result<WindowAdd>& r, const char* what) {
    INFO(what);
    REQUIRE_FALSE(r.ok());
    REQUIRE(r.status().code() == Errc::invalid_argument);
    REQUIRE(r.status().message().find(what) != std::string::npos);
    REQUIRE(snapshot(m, 20) == before);
  };
  SECTION("every truncation of a window and of a batch") {
    for (std::size_t n = 0; n < enc.size(); ++n) {
      INFO("prefix " << n);
      auto d = decode_window(enc.data(), n);
      REQUIRE_FALSE(d.ok());
      REQUIRE(d.status().code() == Errc::invalid_argument);
    }
    const std::vector<Window> two = {good, make_window(rng, 2, 1, 2, 30)};
    const auto batch = encode_windows(two);
    for (std::size_t n = 0; n < batch.size(); ++n) {
      INFO("batch prefix " << n);
      REQUIRE_FALSE(decode_windows(batch.data(), n).ok());
    }
  }
  SECTION("magic, version, trailing bytes") {
    auto bad = enc;
    bad[0] = 'X';
    REQUIRE(decode_window(bad).status().message().find("bad magic") != std::string::npos);
    bad = enc;
    bad[4] = 9;
    REQUIRE(decode_window(bad).status().message().find("unsupported version 9") != std::string::npos);
    bad = enc;
    bad.push_back(0);
    REQUIRE(decode_window(bad).status().message().find("trailing") != std::string::npos);
    REQUIRE(decode_windows(enc).status().message().find("bad magic") != std::string::npos);
  }
  SECTION("over-limit counts") {
    // Header (5), workflow "wf" (3), part, token, index (1 each): then the step count.
    auto bad = enc;
    const std::size_t p = 5 + 3 + 3;
    REQUIRE(bad[p] == 2);
    bad[p] = 0xff;  // 0xff 0x7f... : a step count far over the bound
    bad.insert(bad.begin() + static_cast<std::ptrdiff_t>(p) + 1, 0x7f);
    REQUIRE(decode_window(bad).status().message().find("exceeds the bound") != std::string::npos);
    // cpu_percent over its bound (the encoder refuses it as a caller's bug; write the bytes by hand).
    Window w = good;
    w.saturation = {};
    auto e = encode_window(w);
    REQUIRE(e[e.size() - 2] == 0);  // cpu_percent 0, rss_bytes 0: the last two bytes
    e.resize(e.size() - 2);
    e.insert(e.end(), {0x80, 0x80, 0x40, 0x00});  // cpu_percent 1048576 > 409600
    REQUIRE(decode_window(e).status().message().find("bad cpu_percent: 1048576 exceeds the bound") !=
            std::string::npos);
    // A batch count over the bound.
    std::vector<std::uint8_t> batch = {'H', 'S', 'W', 'B', kWindowCodecVersion, 0x81, 0x10};  // 2049
    REQUIRE(decode_windows(batch).status().message().find("exceeds the bound 1024") != std::string::npos);
    // A part index out of the merger's range.
    Window far = good;
    far.part = 5000;
    refused(m.add(far), "out of range");
  }
  SECTION("inconsistent counts") {
    // Step count at 11, step "get" at 12 (length byte + 3), its total executed count at 16.
    auto bad = enc;
    const std::size_t p = 5 + 3 + 3 + 1 + 4;
    REQUIRE(bad[p - 4] == 3);  // "get"
    REQUIRE(bad[p] == good.steps[0].total.executed);
    bad[p]++;
    REQUIRE(decode_window(bad).status().message().find("ok + failed != executed") != std::string::npos);
    Window w = good;
    w.steps[0].measured = w.steps[0].total;
    w.steps[0].measured.executed++, w.steps[0].measured.ok++;
    refused(m.add(w), "measured counts exceed total counts");
    w = good;
    w.steps[0].latency.record(5);
    refused(m.add(w), "latency samples");
    w = good;
    w.steps[1].total.reasons[2]++;
    refused(m.add(w), "failure reasons do not add up");
  }
  SECTION("unknown step, repeated step, another workflow, overflow") {
    Window w = good;
    w.steps[1].name = "delete";
    refused(m.add(w), "does not have");
    w = good;
    w.steps[1].name = "get";
    refused(m.add(w), "twice");
    w = good;
    w.workflow = "other";
    refused(m.add(w), "sent to the merger of 'wf'");
    w = make_window(rng, 0, 1, 3, 0);
    w.iterations.started = ~std::uint64_t{0};
    refused(m.add(w), "overflow");
  }
  SECTION("random garbage and corruption: an error, or a window that round-trips") {
    for (int i = 0; i < 3000; ++i) {
      std::vector<std::uint8_t> buf;
      if (i % 2 == 0) {
        buf.resize(rng.below(200));
        for (auto& x : buf) x = static_cast<std::uint8_t>(rng.next_u32());
        if (buf.size() >= 5 && i % 4 == 0) std::memcpy(buf.data(), "HSWN\x01", 5);
      } else {
        buf = enc;
        for (int k = 0; k < 3; ++k) buf[rng.below(buf.size())] = static_cast<std::uint8_t>(rng.next_u32());
      }
      auto d = decode_window(buf);
      if (d.ok())
        require_same(*decode_window(encode_window(*d)), *d);
      else
        REQUIRE_FALSE(d.status().message().empty());
    }
  }
}

TEST_CASE("windows: batch round trip, and thresholds judged on the merged totals", "[load][window]") {
  Rng rng(42);
  std::vector<Window> ws;
  for (std::uint64_t k = 0; k < 40; ++k)
    ws.push_back(make_window(rng, static_cast<std::uint32_t>(k % 4), 2, k / 4, 25));
  Window empty;  // an empty window (nothing completed) round-trips too
  empty.workflow = "wf";
  ws.push_back(empty);
  auto d = decode_windows(encode_windows(ws));
  INFO(d.status().to_string());
  REQUIRE(d.ok());
  REQUIRE(d->size() == ws.size());
  for (std::size_t i = 0; i < ws.size(); ++i) require_same((*d)[i], ws[i]);
  REQUIRE(decode_windows(encode_windows({}))->empty());

  WindowMerger m("wf", kSteps);
  for (const auto& w : *d) REQUIRE(m.add(w).ok());
  Threshold t;
  t.scope = "step wf.get";
  t.metric = Metric::p99;
  t.op = CmpOp::lt;
  t.value = 1e12;
  auto j = m.judge(t, 10.0);
  REQUIRE(j.ok());
  REQUIRE(j->passed);
  REQUIRE(j->observed == static_cast<double>(m.totals().steps[0].latency.quantile(0.99)));
  t.scope = "workflow wf";
  t.metric = Metric::rps;
  t.op = CmpOp::gt;
  t.value = 0;
  j = m.judge(t, 10.0);
  REQUIRE(j.ok());
  REQUIRE(j->observed == static_cast<double>(m.totals().measured_counts().executed) / 10.0);
  t.scope = "run";
  REQUIRE_FALSE(m.judge(t, 10.0).ok());
  t.scope = "step wf.nope";
  REQUIRE_FALSE(m.judge(t, 10.0).ok());
}

// ---------------------------------------------------------------- WindowCutter

namespace {

using std::chrono::milliseconds;

// A part's live view as its Runner gives it: cumulative totals/measured and iteration counters, and
// the measured latencies since the previous sample.
struct LiveSim {
  WorkflowLive live;
  std::vector<Histogram> all;  // every measured latency
  explicit LiveSim(std::size_t steps) : all(steps) {
    live.steps.resize(steps);
    live.measured.resize(steps);
    live.window.resize(steps);
  }
  void request(std::size_t step, bool ok, FailReason why, std::uint64_t ns, bool measured) {
    auto bump = [&](Counts& c) {
      c.executed++;
      if (ok)
        c.ok++;
      else
        c.failed++, c.reasons[static_cast<int>(why)]++;
    };
    bump(live.steps[step]);
    if (measured) {
      bump(live.measured[step]);
      live.window[step].record(ns);
      all[step].record(ns);
    }
  }
  // What the Runner hands out, then a new latency window starts.
  WorkflowLive sample() {
    WorkflowLive out = live;
    for (auto& h : live.window) h.reset();
    return out;
  }
};

void append(std::vector<Window>& all, std::vector<Window> ws) {
  for (auto& w : ws) {
    const Status st = check_window(w);
    INFO(st.to_string());
    REQUIRE(st.ok());
    auto d = decode_window(encode_window(w));  // every emitted window travels as is
    REQUIRE(d.ok());
    require_same(*d, w);
    all.push_back(std::move(w));
  }
}

const WindowStep* step_of(const Window& w, const std::string& name) {
  for (const auto& s : w.steps)
    if (s.name == name) return &s;
  return nullptr;
}

}  // namespace

TEST_CASE("cutter: the emitted windows add up exactly to the last cumulative view, one window per index",
          "[load][window][cutter]") {
  Rng rng(11);
  LiveSim sim(kSteps.size());
  const Duration len = milliseconds(250), offset = milliseconds(600);  // the part starts in window 2
  WindowCutter cut("w", kSteps, 3, 77, len, offset);
  REQUIRE(cut.current() == 2);
  std::vector<Window> all;
  Duration t = offset;
  for (int k = 0; k < 60; ++k) {
    const std::uint64_t n = rng.below(40);
    for (std::uint64_t i = 0; i < n; ++i)
      sim.request(rng.below(kSteps.size()), !rng.chance(0.1), static_cast<FailReason>(rng.below(3)), lognormal_ns(rng),
                  k > 5);  // a warmup: the first samples have no measured requests
    sim.live.started += n + 1;
    sim.live.completed += n;
    sim.live.iterations_failed += n / 7;
    sim.live.dropped += rng.below(2);
    t += milliseconds(rng.below(700));  // sometimes within the same window, sometimes several later
    append(all, cut.feed(sim.sample(), t, Saturation{static_cast<std::uint64_t>(k), 1000}));
  }
  sim.request(0, true, FailReason::reset, 5'000'000, true);  // the last requests, in the final view
  append(all, cut.finish(sim.sample(), t + milliseconds(10), Saturation{}));
  REQUIRE(cut.finished());
  REQUIRE(cut.feed(sim.sample(), t + std::chrono::seconds(10), Saturation{}).empty());
  // One window per index, from the part's first window to the last sample's, in order.
  REQUIRE(all.front().index == 2);
  REQUIRE(all.back().index == cut.index_of(t + milliseconds(10)));
  for (std::size_t i = 0; i < all.size(); ++i) REQUIRE(all[i].index == 2 + i);
  REQUIRE(cut.skipped_windows() == 0);
  REQUIRE(cut.refused_samples() == 0);
  // Sums: step by step, bucket for bucket, and the iteration counters.
  WindowIterations it;
  for (const auto& w : all) {
    REQUIRE(w.workflow == "w");
    REQUIRE(w.part == 3);
    REQUIRE(w.token == 77);
    it.merge(w.iterations);
  }
  REQUIRE(it == WindowIterations{sim.live.started, sim.live.completed, sim.live.iterations_failed, sim.live.dropped});
  for (std::size_t s = 0; s < kSteps.size(); ++s) {
    Counts total, measured;
    Histogram lat;
    for (const auto& w : all)
      if (const WindowStep* ws = step_of(w, kSteps[s])) {
        total.merge(ws->total);
        measured.merge(ws->measured);
        lat.merge(ws->latency);
      }
    REQUIRE(same_counts(total, sim.live.steps[s]));
    REQUIRE(same_counts(measured, sim.live.measured[s]));
    REQUIRE(lat.count() > 0);
    REQUIRE(lat == sim.all[s]);
  }
}

TEST_CASE(
    "cutter: samples go to the window of their time; empty windows are emitted; the clock going back "
    "reopens nothing",
    "[load][window][cutter]") {
  LiveSim sim(kSteps.size());
  WindowCutter cut("w", kSteps, 0, 1, std::chrono::seconds(1), milliseconds(1500));
  REQUIRE(cut.current() == 1);
  sim.request(0, true, FailReason::reset, 1'000'000, true);
  REQUIRE(cut.feed(sim.sample(), milliseconds(1200), Saturation{10, 1}).empty());  // window 1 is current
  sim.request(1, false, FailReason::timeout, 2'000'000, true);
  sim.request(1, true, FailReason::reset, 3'000'000, false);  // warmup: counted in total only
  std::vector<Window> got;
  append(got, cut.feed(sim.sample(), milliseconds(3400), Saturation{20, 2}));
  // Window 1 closes with the first sample; window 2 passed empty; the second sample is in window 3.
  REQUIRE(got.size() == 2);
  REQUIRE(got[0].index == 1);
  REQUIRE(got[0].steps.size() == 1);  // a step with nothing in the window is left out
  REQUIRE(got[0].steps[0].name == "get");
  REQUIRE(got[0].steps[0].measured.executed == 1);
  REQUIRE(got[0].saturation == Saturation{10, 1});
  REQUIRE(got[1].index == 2);
  REQUIRE(got[1].steps.empty());
  REQUIRE(got[1].saturation == Saturation{20, 2});  // the gap carries the saturation that ended it
  REQUIRE(cut.current() == 3);
  // The clock goes back to window 2: the sample goes into the current window 3.
  sim.request(0, true, FailReason::reset, 4'000'000, true);
  REQUIRE(cut.feed(sim.sample(), milliseconds(2100), Saturation{30, 3}).empty());
  REQUIRE(cut.current() == 3);
  got.clear();
  append(got, cut.finish(sim.sample(), milliseconds(3900), Saturation{40, 4}));
  REQUIRE(got.size() == 1);
  REQUIRE(got[0].index == 3);
  REQUIRE(got[0].saturation == Saturation{40, 4});
  const WindowStep* get = step_of(got[0], "get");
  const WindowStep* post = step_of(got[0], "post");
  REQUIRE(get);
  REQUIRE(post);
  REQUIRE(get->measured.executed == 1);
  REQUIRE(get->latency.min() >= 3'900'000);  // the 4 ms request
  REQUIRE(post->total.executed == 2);
  REQUIRE(post->total.failed == 1);
  REQUIRE(post->measured.executed == 1);
  REQUIRE(post->measured.reasons[static_cast<int>(FailReason::timeout)] == 1);
  // Before the origin: window 0; a cpu above the bound is clamped.
  WindowCutter early("w", kSteps, 0, 1, std::chrono::seconds(1), -std::chrono::seconds(5));
  REQUIRE(early.current() == 0);
  got.clear();
  append(got, early.finish(LiveSim(kSteps.size()).sample(), -milliseconds(1), Saturation{kMaxWindowCpuPercent + 5, 0}));
  REQUIRE(got.size() == 1);
  REQUIRE(got[0].index == 0);
  REQUIRE(got[0].saturation.cpu_percent == kMaxWindowCpuPercent);
}

TEST_CASE(
    "cutter: a jump of more than kMaxGapWindows emits only the gap's last window; a sample that does not "
    "add up is refused and counted",
    "[load][window][cutter]") {
  LiveSim sim(kSteps.size());
  WindowCutter cut("w", kSteps, 0, 1, milliseconds(100), Duration{0});
  sim.request(0, true, FailReason::reset, 1'000'000, true);
  REQUIRE(cut.feed(sim.sample(), milliseconds(50), Saturation{}).empty());
  std::vector<Window> got;
  const std::uint64_t far = 10'000;
  append(got, cut.feed(sim.sample(), milliseconds(100 * far + 5), Saturation{}));
  REQUIRE(got.size() == 2);
  REQUIRE(got[0].index == 0);
  REQUIRE(got[0].steps.size() == 1);
  REQUIRE(got[1].index == far - 1);
  REQUIRE(cut.skipped_windows() == far - 2);
  // A jump of exactly kMaxGapWindows empty windows is still emitted in full.
  got.clear();
  append(got, cut.feed(sim.sample(), milliseconds(100 * (far + 1 + WindowCutter::kMaxGapWindows) + 5), Saturation{}));
  REQUIRE(got.size() == 1 + WindowCutter::kMaxGapWindows);
  REQUIRE(cut.skipped_windows() == far - 2);
  // Inconsistent samples: a histogram without its measured requests, then counts going back.
  WorkflowLive bad = sim.sample();
  bad.window[0].record(7);
  const std::uint64_t base = cut.current();
  REQUIRE(cut.feed(bad, milliseconds(100 * base + 10), Saturation{}).empty());
  REQUIRE(cut.refused_samples() == 1);
  REQUIRE(cut.last_refusal().find("latency samples") != std::string::npos);
  WorkflowLive back = sim.sample();
  back.steps[0] = Counts{};
  back.measured[0] = Counts{};
  REQUIRE(cut.feed(back, milliseconds(100 * base + 20), Saturation{}).empty());
  REQUIRE(cut.refused_samples() == 2);
  REQUIRE(cut.last_refusal().find("went back") != std::string::npos);
  got.clear();
  append(got, cut.finish(back, milliseconds(100 * base + 30), Saturation{}));  // back is the new base
  REQUIRE(got.size() == 1);
  REQUIRE(got[0].steps.empty());
}
