#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <set>

#include "hyperscale/base/alloc.hpp"
#include "hyperscale/base/assert.hpp"
#include "hyperscale/base/enum_names.hpp"
#include "hyperscale/base/host_port.hpp"
#include "hyperscale/base/log.hpp"
#include "hyperscale/base/metrics.hpp"
#include "hyperscale/base/random.hpp"
#include "hyperscale/base/small_fn.hpp"
#include "hyperscale/base/status.hpp"
#include "hyperscale/base/time.hpp"

using namespace hs;

namespace {
enum class Colour : std::uint8_t { red, green, blue };
enum class Signed : int { a, b, kCount };
}  // namespace

TEST_CASE("EnumNames names every enumerator and falls back outside the table", "[base][enum_names]") {
  constexpr EnumNames<Colour, 3> names{{"red", "green", "blue"}};
  STATIC_REQUIRE(names.covers(Colour::blue));
  CHECK(std::string_view(names(Colour::red)) == "red");
  CHECK(std::string_view(names(Colour::blue)) == "blue");
  CHECK(std::string_view(names(static_cast<Colour>(7))) == "unknown");  // a corrupt byte is not an index

  // A table that misses an enumerator or has an empty name does not cover the enum.
  constexpr EnumNames<Colour, 2> short_table{{"red", "green"}};
  STATIC_REQUIRE_FALSE(short_table.covers(Colour::blue));
  constexpr EnumNames<Colour, 3> hole{{"red", "", "blue"}};
  STATIC_REQUIRE_FALSE(hole.covers(Colour::blue));
  constexpr EnumNames<Colour, 3> unset{{"red", "green"}};  // the third name left null
  STATIC_REQUIRE_FALSE(unset.covers(Colour::blue));

  // A kCount sentinel is exclusive; a negative value and the sentinel itself get the fallback.
  constexpr EnumNames<Signed, 2> s{{"a", "b"}, "?"};
  STATIC_REQUIRE(s.covers(Signed::kCount, true));
  STATIC_REQUIRE_FALSE(s.covers(Signed::kCount));
  CHECK(std::string_view(s(static_cast<Signed>(-1))) == "?");
  CHECK(std::string_view(s(Signed::kCount)) == "?");

  // The project's tables answer through the helper.
  CHECK(log::level_name(log::Level::off) == "off");
  CHECK(errc_name(Errc::internal) == "internal");
  CHECK(errc_name(static_cast<Errc>(200)) == "unknown");
}

TEST_CASE("Status and Result carry errors with context", "[base]") {
  Status ok;
  CHECK(ok.ok());
  CHECK(ok.to_string() == "ok");
  Status e = make_error(Errc::io_error, "write failed").with_context("wal append");
  CHECK_FALSE(e.ok());
  CHECK(e.code() == Errc::io_error);
  CHECK(e.to_string() == "io_error: wal append: write failed");

  auto f = [](int x) -> Result<int> {
    if (x < 0) return make_error(Errc::invalid_argument, "negative");
    return x * 2;
  };
  auto g = [&](int x) -> Result<int> {
    HS_ASSIGN_OR_RETURN(int y, f(x));
    return y + 1;
  };
  CHECK(g(2).value() == 5);
  CHECK(g(-1).status().code() == Errc::invalid_argument);
  CHECK(errno_status("open /x", ENOENT).code() == Errc::not_found);
  CHECK(errno_status("open /x", ENOENT).message().find("open /x: No such file") == 0);
}

TEST_CASE("ManualClock only moves when told", "[base]") {
  ManualClock c(Instant{std::chrono::seconds(10)});
  CHECK(c.now() == Instant{std::chrono::seconds(10)});
  c.advance(std::chrono::milliseconds(5));
  CHECK(c.now() == Instant{std::chrono::milliseconds(10005)});
  const Instant a = MonotonicClock::instance().now();
  const Instant b = MonotonicClock::instance().now();
  CHECK(b >= a);
}

TEST_CASE("Rng is reproducible from its seed and unbiased enough", "[base]") {
  Rng a(42), b(42), c(43);
  std::vector<std::uint64_t> va, vb, vc;
  for (int i = 0; i < 100; ++i) {
    va.push_back(a.next_u64());
    vb.push_back(b.next_u64());
    vc.push_back(c.next_u64());
  }
  CHECK(va == vb);
  CHECK(va != vc);
  Rng r(7);
  std::vector<int> counts(10, 0);
  for (int i = 0; i < 100000; ++i) counts[r.below(10)]++;
  for (int n : counts) CHECK(std::abs(n - 10000) < 600);
  for (int i = 0; i < 1000; ++i) {
    auto v = r.range(-3, 3);
    CHECK(v >= -3);
    CHECK(v <= 3);
    double d = r.next_double();
    CHECK(d >= 0.0);
    CHECK(d < 1.0);
  }
  std::vector<int> perm(20);
  std::iota(perm.begin(), perm.end(), 0);
  r.shuffle(perm.begin(), perm.end());
  CHECK(std::set<int>(perm.begin(), perm.end()).size() == 20);
}

TEST_CASE("SmallFn stores small callables inline and boxes large ones", "[base]") {
  int hits = 0;
  SmallFn<void(int)> f = [&hits](int x) { hits += x; };
  f(3);
  SmallFn<void(int)> g = std::move(f);
  CHECK_FALSE(static_cast<bool>(f));
  g(4);
  CHECK(hits == 7);
  struct Big {
    char data[200] = {};
    int* out;
    void operator()(int x) { *out += x + data[0]; }
  };
  static_assert(!SmallFn<void(int)>::fits_inline<Big>());
  Big big;
  big.out = &hits;
  SmallFn<void(int)> h = big;
  SmallFn<void(int)> h2 = std::move(h);
  h2(1);
  CHECK(hits == 8);
  auto shared = std::make_shared<int>(5);
  {
    SmallFn<int()> k = [shared]() { return *shared; };
    CHECK(shared.use_count() == 2);
    CHECK(k() == 5);
  }
  CHECK(shared.use_count() == 1);  // destroyed with the SmallFn
}

TEST_CASE("Prometheus text of a registry with one metric of each kind", "[base][metrics]") {
  metrics::Registry reg;
  reg.counter("hs_requests_total", "Requests handled", {{"step", "get \"home\""}}).inc(3);
  reg.gauge("hs_connections", "Open connections").set(12);
  auto& h = reg.histogram("hs_latency_seconds", "Request latency", {0.01, 0.1, 1});
  h.observe(0.005);
  h.observe(0.05);
  h.observe(0.05);
  h.observe(5);
  const std::string text = reg.render_prometheus();
  const std::string expected =
      "# HELP hs_connections Open connections\n"
      "# TYPE hs_connections gauge\n"
      "hs_connections 12\n"
      "# HELP hs_latency_seconds Request latency\n"
      "# TYPE hs_latency_seconds histogram\n"
      "hs_latency_seconds_bucket{le=\"0.01\"} 1\n"
      "hs_latency_seconds_bucket{le=\"0.1\"} 3\n"
      "hs_latency_seconds_bucket{le=\"1\"} 3\n"
      "hs_latency_seconds_bucket{le=\"+Inf\"} 4\n"
      "hs_latency_seconds_sum 5.105\n"
      "hs_latency_seconds_count 4\n"
      "# HELP hs_requests_total Requests handled\n"
      "# TYPE hs_requests_total counter\n"
      "hs_requests_total{step=\"get \\\"home\\\"\"} 3\n";
  CHECK(text == expected);
}

TEST_CASE("Registry bounds its series and refuses bad names", "[base][metrics]") {
  metrics::Registry reg(3);
  reg.counter("a_total", "a", {{"k", "1"}}).inc();
  reg.counter("a_total", "a", {{"k", "2"}}).inc();
  reg.counter("a_total", "a", {{"k", "1"}}).inc();  // same series again
  CHECK(reg.series_count() == 2);
  CHECK(reg.counter_value("a_total", {{"k", "1"}}) == 2);
  reg.gauge("b", "b").set(1);
  auto& overflow = reg.counter("c_total", "c");
  overflow.inc();  // works, but is not exported
  CHECK(reg.series_count() == 3);
  CHECK(reg.dropped_series() == 1);
  reg.counter("bad name", "x");
  reg.gauge("a_total", "kind conflict");
  CHECK(reg.dropped_series() == 3);
  const std::string text = reg.render_prometheus();
  CHECK(text.find("c_total") == std::string::npos);
  CHECK(text.find("hs_metrics_series_dropped_total 3") != std::string::npos);
}

TEST_CASE("Snapshots from several shards merge by summing", "[base][metrics]") {
  metrics::Registry a, b;
  a.counter("x_total", "x").inc(2);
  b.counter("x_total", "x").inc(5);
  a.histogram("h", "h", {1, 2}).observe(1.5);
  b.histogram("h", "h", {1, 2}).observe(0.5);
  b.gauge("g", "g", {{"shard", "1"}}).set(4);
  auto snap = a.snapshot();
  CHECK(snap.merge(b.snapshot()).empty());
  const std::string text = snap.render_prometheus();
  CHECK(text.find("x_total 7\n") != std::string::npos);
  CHECK(text.find("h_bucket{le=\"1\"} 1\n") != std::string::npos);
  CHECK(text.find("h_bucket{le=\"2\"} 2\n") != std::string::npos);
  CHECK(text.find("h_count 2\n") != std::string::npos);
  CHECK(text.find("g{shard=\"1\"} 4\n") != std::string::npos);
}

namespace {
struct VectorSink : log::Sink {
  std::vector<std::string> lines;
  void write(log::Level, std::string_view line) noexcept override { lines.emplace_back(line); }
};
}  // namespace

TEST_CASE("Log lines carry shard and component, one line per event", "[base][log]") {
  VectorSink sink;
  log::set_sink(&sink);
  log::set_thread_shard(3);
  log::warn("wal", "fsync_failed", "file={} error={}", "/tmp/x", log::quoted("disk \"full\""));
  log::debug("wal", "hidden", "x={}", 1);  // below the default level
  log::set_thread_shard(-1);
  log::info("cli", "start");
  log::set_sink(nullptr);
  REQUIRE(sink.lines.size() == 2);
  CHECK(sink.lines[0].find("level=warn shard=3 comp=wal event=fsync_failed file=/tmp/x error=\"disk \\\"full\\\"\"") !=
        std::string::npos);
  CHECK(sink.lines[0].rfind("ts=", 0) == 0);
  CHECK(sink.lines[1].find("shard=main comp=cli event=start") != std::string::npos);
  log::Level lv;
  CHECK(log::parse_level("debug", lv));
  CHECK(lv == log::Level::debug);
  CHECK_FALSE(log::parse_level("loud", lv));
}

TEST_CASE("mimalloc is linked and is the global allocator", "[base][alloc]") {
  CHECK(alloc::mimalloc_version() >= 200);
  auto* p = new std::uint64_t[16];
  void* m = std::malloc(1000);
#if defined(HS_SANITIZE)
  // Under AddressSanitizer the sanitizer must own malloc to find memory errors; mimalloc is
  // still linked (version above) and serves malloc in every non-sanitizer build.
  CHECK_FALSE(alloc::owned_by_mimalloc(m));
  CHECK(alloc::describe().find("mimalloc") != std::string::npos);
#else
  CHECK(alloc::owned_by_mimalloc(p));
  CHECK(alloc::owned_by_mimalloc(m));
  CHECK(alloc::malloc_is_mimalloc());
  CHECK(alloc::stats().committed_bytes > 0);
#endif
  std::free(m);
  delete[] p;
}

namespace {
struct AssertTrip {
  std::string where, condition, values;
};
[[noreturn]] void throwing_assert_handler(std::string_view file, int line, std::string_view condition,
                                          std::string_view values) {
  throw AssertTrip{fmt::format("{}:{}", file, line), std::string(condition), std::string(values)};
}
}  // namespace

TEST_CASE("HS_ASSERT passes silently and reports a broken invariant with its values") {
  hs::set_assert_handler(&throwing_assert_handler);
  int formatted = 0;
  auto count = [&] { return ++formatted; };
  HS_ASSERT(1 + 1 == 2, "never formatted {}", count());
  CHECK(formatted == 0);  // values are formatted only on failure
  const std::uint64_t token = 3, last = 7;
  try {
    HS_ASSERT(token > last, "token={} last={}", token, last);
    FAIL("HS_ASSERT did not trip");
  } catch (const AssertTrip& t) {
    CHECK(t.condition == "token > last");
    CHECK(t.values == "token=3 last=7");
    CHECK(t.where.find("test_base.cpp:") != std::string::npos);
  }
  try {
    HS_ASSERT(false);
    FAIL("HS_ASSERT did not trip");
  } catch (const AssertTrip& t) {
    CHECK(t.condition == "false");
    CHECK(t.values.empty());
  }
  hs::set_assert_handler(nullptr);
}

TEST_CASE("parse_host_port splits host:port once for every caller", "[base][host_port]") {
  auto a = parse_host_port("127.0.0.1:7101");
  REQUIRE(a.ok());
  CHECK(a->host == "127.0.0.1");
  CHECK(a->port == 7101);
  auto v6 = parse_host_port("[::1]:443");
  REQUIRE(v6.ok());
  CHECK(v6->host == "::1");
  CHECK(v6->port == 443);
  // A default port makes the port optional, with or without brackets.
  auto d = parse_host_port("example.com", HostPortRules{.default_port = 80});
  REQUIRE(d.ok());
  CHECK(d->host == "example.com");
  CHECK(d->port == 80);
  auto d6 = parse_host_port("[::1]", HostPortRules{.default_port = 80});
  REQUIRE(d6.ok());
  CHECK(d6->port == 80);
  // Port 0 only where allowed (a listen address may ask for an ephemeral port).
  CHECK_FALSE(parse_host_port("127.0.0.1:0").ok());
  auto z = parse_host_port("0.0.0.0:0", HostPortRules{.allow_port_zero = true});
  REQUIRE(z.ok());
  CHECK(z->port == 0);
  // Bad input: a clear error that quotes the text.
  for (const char* bad : {"", "host", ":80", "h:", "h:65536", "h:-1", "h:8o", "h:123456", "[::1", "[::1]x", "[]:80"}) {
    INFO(bad);
    auto r = parse_host_port(bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Errc::invalid_argument);
    CHECK(r.status().message().find(fmt::format("address '{}'", bad)) != std::string::npos);
  }
  auto form = parse_host_port("nocolon", HostPortRules{.form = "IPv4:port"});
  REQUIRE_FALSE(form.ok());
  CHECK(form.status().message() == "address 'nocolon': expected IPv4:port");
}
