// WalDisk: replay, compaction, bounds, the durability barrier, fail-stop, the directory lock.
#include <catch2/catch.hpp>

#include <map>

#include "helpers.hpp"
#include "hyperscale/host/wal_disk.hpp"
#include "hyperscale/wal/wal.hpp"

using namespace hs;
using namespace hs::host;
using namespace std::chrono_literals;

namespace {

// "prefix" + std::to_string(n) (GCC 12 -O3 reports a false -Wrestrict on the operator+ form).
std::string cat(std::string_view prefix, std::uint64_t n) {
  std::string s(prefix);
  s += std::to_string(n);
  return s;
}

node::Bytes bytes(std::string_view s) { return node::Bytes(s.begin(), s.end()); }

struct Image {
  std::map<std::string, node::Bytes> kv;
  std::map<std::string, std::vector<node::Bytes>> logs;
  friend bool operator==(const Image&, const Image&) = default;
};

// What the disk holds for a known set of key and log names.
Image image(const WalDisk& d, const std::vector<std::string>& keys, const std::vector<std::string>& logs) {
  Image im;
  for (const auto& k : keys)
    if (auto v = d.get(k)) im.kv[k] = *v;
  for (const auto& l : logs) {
    auto r = d.read_log(l);
    if (!r.empty()) im.logs[l] = r;
  }
  return im;
}

void drain(runtime::Reactor& r, WalDisk& d) {
  REQUIRE(test::run_until(r, [&] { return !d.busy(); }));
}

// Holds WAL completions until release(): "durable" happens only when the test says so.
struct HoldIo final : wal::WalIo {
  explicit HoldIo(runtime::Reactor& r, int* released_counter) : real(wal::make_uring_io(r)), held(released_counter) {}
  Status write_and_sync(int fd, const std::uint8_t* buf, std::size_t len, std::uint64_t off, bool sync, wal::IoDone wd,
                        wal::IoDone sd) override {
    auto* self = this;
    auto wslot = std::make_shared<wal::IoDone>(std::move(wd));
    auto sslot = std::make_shared<wal::IoDone>(std::move(sd));
    return real->write_and_sync(
        fd, buf, len, off, sync, [self, wslot](int res) { self->pending.push_back([wslot, res] { (*wslot)(res); }); },
        [self, sslot](int res) { self->pending.push_back([sslot, res] { (*sslot)(res); }); });
  }
  void release() {
    auto p = std::move(pending);
    pending.clear();
    for (auto& f : p) f();
    ++*held;
  }
  std::unique_ptr<wal::WalIo> real;
  std::vector<std::function<void()>> pending;
  int* held;
};

WalDiskOptions opts(const std::string& dir) {
  WalDiskOptions o;
  o.dir = dir;
  o.segment_bytes = 4096;
  o.compact_min_bytes = 16 << 10;
  return o;
}

}  // namespace

TEST_CASE("WalDisk: state after reopen equals state before (puts, erases, logs, truncates, snapshot)", "[host][disk]") {
  test::TempDir dir;
  runtime::Reactor r;
  std::vector<std::string> keys, logs = {"log-a", "log-b", "log-c"};
  for (int i = 0; i < 40; ++i) keys.push_back(cat("job/", i));
  Image before;
  {
    auto d = WalDisk::open(r, opts(dir.path));
    REQUIRE(d.ok());
    WalDisk& disk = **d;
    for (int i = 0; i < 40; ++i) REQUIRE(disk.put(keys[i], bytes(cat("value-", i))).ok());
    for (int i = 0; i < 40; i += 3) REQUIRE(disk.erase(keys[i]).ok());
    REQUIRE(disk.put(keys[1], bytes("overwritten")).ok());
    for (int i = 0; i < 10; ++i) REQUIRE(disk.append(logs[i % 3], bytes(cat("rec-", i))).ok());
    REQUIRE(disk.truncate_log("log-b").ok());
    REQUIRE(disk.append("log-b", bytes("after-truncate")).ok());
    CHECK(disk.erase("missing").code() == Errc::not_found);
    CHECK(disk.truncate_log("missing").code() == Errc::not_found);
    before = image(disk, keys, logs);
    drain(r, disk);
  }
  {
    auto d = WalDisk::open(r, opts(dir.path));
    REQUIRE(d.ok());
    CHECK(image(**d, keys, logs) == before);
    CHECK((*d)->stats().replayed_records > 0);
    // A snapshot, then more writes: the replay reads the snapshot plus what follows it.
    REQUIRE((*d)->compact().ok());
    REQUIRE((*d)->put(keys[2], bytes("after-snapshot")).ok());
    REQUIRE((*d)->erase(keys[4]).ok());
    REQUIRE((*d)->append("log-c", bytes("after-snapshot")).ok());
    before = image(**d, keys, logs);
    drain(r, **d);
    CHECK((*d)->stats().compactions == 1);
  }
  auto d = WalDisk::open(r, opts(dir.path));
  REQUIRE(d.ok());
  CHECK(image(**d, keys, logs) == before);
  CHECK((*d)->stats().keys == before.kv.size());
}

TEST_CASE("WalDisk: compaction keeps the WAL bounded over 10 000 put/erase cycles", "[host][disk]") {
  test::TempDir dir;
  runtime::Reactor r;
  WalDiskOptions o = opts(dir.path);
  o.durability = wal::Durability::none;  // the bound is about bytes, not fsync
  auto d = WalDisk::open(r, o);
  REQUIRE(d.ok());
  WalDisk& disk = **d;
  // A small permanent state, plus per-job state that is erased at cleanup.
  for (int i = 0; i < 20; ++i) REQUIRE(disk.put(cat("keep/", i), node::Bytes(64, 'k')).ok());
  std::uint64_t max_size = 0;
  std::uint64_t written = 0;
  for (int cycle = 0; cycle < 10'000; ++cycle) {
    const std::string key = cat("job/", cycle);
    REQUIRE(disk.put(key, node::Bytes(100, static_cast<std::uint8_t>(cycle))).ok());
    REQUIRE(disk.append(cat("job-log/", cycle % 7), node::Bytes(20, 'l')).ok());
    REQUIRE(disk.erase(key).ok());
    if (cycle % 7 == 6)
      for (int l = 0; l < 7; ++l) REQUIRE(disk.truncate_log(cat("job-log/", l)).ok());
    written += 3 * 150;
    if (cycle % 100 == 99) {
      drain(r, disk);
      max_size = std::max(max_size, dir.size());
    }
  }
  drain(r, disk);
  const auto s = disk.stats();
  INFO("compactions=" << s.compactions << " max_dir_bytes=" << max_size << " written~" << written
                      << " live=" << s.live_bytes << " segments=" << s.segments);
  CHECK(s.compactions >= 50);
  CHECK(s.keys == 20);
  // Bound: the threshold (16 KiB since the last snapshot) + one snapshot + partial segments.
  CHECK(max_size < 64u * 1024);
  CHECK(written > 20 * max_size);
  // And the compacted log still replays to the same state.
  std::vector<std::string> keys;
  for (int i = 0; i < 20; ++i) keys.push_back(cat("keep/", i));
  keys.push_back("job/9999");
  const Image before = image(disk, keys, {"job-log/0"});
  d.value().reset();
  auto again = WalDisk::open(r, o);
  REQUIRE(again.ok());
  CHECK(image(**again, keys, {"job-log/0"}) == before);
}

TEST_CASE("WalDisk: bounds refuse writes and change nothing", "[host][disk]") {
  test::TempDir dir;
  runtime::Reactor r;
  WalDiskOptions o = opts(dir.path);
  o.limits.max_keys = 2;
  o.limits.max_logs = 1;
  o.limits.max_bytes = 400;
  auto d = WalDisk::open(r, o);
  REQUIRE(d.ok());
  WalDisk& disk = **d;
  REQUIRE(disk.put("a", bytes("1")).ok());
  REQUIRE(disk.put("b", bytes("2")).ok());
  Status st = disk.put("c", bytes("3"));
  CHECK(st.code() == Errc::backpressure);
  CHECK(!disk.get("c"));
  REQUIRE(disk.append("l1", bytes("x")).ok());
  CHECK(disk.append("l2", bytes("x")).code() == Errc::backpressure);
  CHECK(disk.put("a", node::Bytes(1000, 'x')).code() == Errc::backpressure);
  CHECK(*disk.get("a") == bytes("1"));
  CHECK(r.metrics().counter_value("hs_host_disk_refused_total", {{"reason", "bounds"}}) == 3);
  drain(r, disk);
  d.value().reset();
  auto again = WalDisk::open(r, o);
  REQUIRE(again.ok());
  CHECK(!(*again)->get("c"));
  CHECK((*again)->read_log("l2").empty());
  CHECK(*(*again)->get("a") == bytes("1"));
}

TEST_CASE("WalDisk: when_durable runs only after the fsync completed; one batch for many writes", "[host][disk]") {
  test::TempDir dir;
  runtime::Reactor r;
  int releases = 0;
  HoldIo* hold = nullptr;
  WalDiskOptions o = opts(dir.path);
  o.io_factory = [&](runtime::Reactor& rr) {
    auto io = std::make_unique<HoldIo>(rr, &releases);
    hold = io.get();
    return io;
  };
  auto d = WalDisk::open(r, o);
  REQUIRE(d.ok());
  WalDisk& disk = **d;
  REQUIRE(hold != nullptr);
  const auto batches0 = r.metrics().counter_value("hs_wal_batches_total");
  int fired = 0;
  for (int i = 0; i < 50; ++i) REQUIRE(disk.put(cat("k", i), bytes("v")).ok());
  REQUIRE(disk.when_durable([&] { ++fired; }).ok());
  REQUIRE(disk.when_durable([&] { ++fired; }).ok());
  test::run_for(r, 100ms);  // the write and fdatasync complete in the kernel, but are held back
  CHECK(fired == 0);
  CHECK(disk.stats().pending_syncs == 2);
  REQUIRE(test::run_until(r, [&] { return hold->pending.size() >= 2; }));
  hold->release();
  CHECK(fired == 2);
  CHECK(r.metrics().counter_value("hs_wal_batches_total") - batches0 == 1);
  // Nothing pending: the barrier still runs later, never inside the call.
  REQUIRE(disk.when_durable([&] { ++fired; }).ok());
  CHECK(fired == 2);
  REQUIRE(test::run_until(r, [&] { return fired == 3; }));
}

TEST_CASE("WalDisk: a WAL I/O error is fail-stop", "[host][disk]") {
  test::TempDir dir;
  runtime::Reactor r;
  WalDiskOptions o = opts(dir.path);
  o.io_factory = [](runtime::Reactor& rr) { return std::make_unique<test::FailIo>(rr, 1); };
  auto d = WalDisk::open(r, o);
  REQUIRE(d.ok());
  WalDisk& disk = **d;
  int failures = 0;
  Status seen;
  disk.set_failure_callback([&](const Status& st) {
    ++failures;
    seen = st;
  });
  int fired = 0;
  REQUIRE(disk.put("a", bytes("1")).ok());
  REQUIRE(disk.when_durable([&] { ++fired; }).ok());
  REQUIRE(test::run_until(r, [&] { return fired == 1; }));
  REQUIRE(disk.put("b", bytes("2")).ok());
  REQUIRE(disk.when_durable([&] { ++fired; }).ok());
  REQUIRE(test::run_until(r, [&] { return failures == 1; }));
  test::run_for(r, 50ms);
  CHECK(fired == 1);  // the barrier after the failed write never runs
  CHECK(!disk.health().ok());
  CHECK(seen.code() == Errc::io_error);
  CHECK(disk.put("c", bytes("3")).code() == Errc::unavailable);
  CHECK(disk.when_durable([&] { ++fired; }).code() == Errc::unavailable);
  CHECK(r.metrics().counter_value("hs_host_disk_errors_total", {{"reason", "wal_io"}}) == 1);
  CHECK(r.metrics().gauge_value("hs_host_disk_healthy") == 0);
  CHECK(r.metrics().counter_value("hs_host_disk_refused_total", {{"reason", "unavailable"}}) == 2);
  CHECK(failures == 1);
}

TEST_CASE("WalDisk: the WAL's LOCK keeps a second owner off the data dir", "[host][disk]") {
  test::TempDir dir;
  runtime::Reactor r;
  auto a = WalDisk::open(r, opts(dir.path));
  REQUIRE(a.ok());
  auto b = WalDisk::open(r, opts(dir.path));
  REQUIRE(!b.ok());
  CHECK(b.status().code() == Errc::unavailable);
}

TEST_CASE("WalDisk: an unfinished snapshot (crash while compacting) is ignored and closed", "[host][disk]") {
  test::TempDir dir;
  runtime::Reactor r;
  {
    auto d = WalDisk::open(r, opts(dir.path));
    REQUIRE(d.ok());
    REQUIRE((*d)->put("a", bytes("1")).ok());
    REQUIRE((*d)->put("b", bytes("2")).ok());
    drain(r, **d);
  }
  {
    // What a crash after SNAP_BEGIN and one snapshot record leaves: append them with a raw WAL.
    wal::WalOptions wo;
    wo.dir = dir.path;
    wo.segment_bytes = 4096;
    auto w = wal::Wal::open(r, wo);
    REQUIRE(w.ok());
    std::vector<std::uint8_t> put = {1, 0, 0, 0, 'a', 'X'};  // put a=X, inside the snapshot
    bool done = false;
    REQUIRE((*w)->append(5, {}, [](Status) {}).ok());
    REQUIRE((*w)->append(1, put, [&](Status st) { done = st.ok(); }).ok());
    REQUIRE(test::run_until(r, [&] { return done; }));
  }
  {
    auto d = WalDisk::open(r, opts(dir.path));
    REQUIRE(d.ok());
    CHECK(*(*d)->get("a") == bytes("1"));  // the partial snapshot did not replace the state
    CHECK(*(*d)->get("b") == bytes("2"));
    REQUIRE((*d)->put("c", bytes("3")).ok());  // after the abort record: a normal write
    drain(r, **d);
  }
  auto d = WalDisk::open(r, opts(dir.path));
  REQUIRE(d.ok());
  CHECK(*(*d)->get("a") == bytes("1"));
  CHECK(*(*d)->get("c") == bytes("3"));
}

TEST_CASE("WalDisk: replace_log swaps a log's content; the new log survives reopen and a snapshot", "[host][disk]") {
  test::TempDir dir;
  runtime::Reactor r;
  const std::vector<node::Bytes> fresh = {bytes("job-7"), bytes("job-9")};
  {
    auto d = WalDisk::open(r, opts(dir.path));
    REQUIRE(d.ok());
    WalDisk& disk = **d;
    for (int i = 0; i < 10; ++i) REQUIRE(disk.append("jobs", bytes(cat("job-", i))).ok());
    REQUIRE(disk.append("other", bytes("kept")).ok());
    const std::size_t before = disk.stats().live_bytes;
    REQUIRE(disk.replace_log("jobs", fresh).ok());
    CHECK(disk.read_log("jobs") == fresh);
    CHECK(disk.stats().live_bytes < before);
    REQUIRE(disk.replace_log("gone", std::vector<node::Bytes>{bytes("x")}).ok());  // creates a log
    REQUIRE(disk.replace_log("gone", {}).ok());                                    // no records: removed
    REQUIRE(disk.replace_log("never", {}).ok());                                   // nothing to remove
    CHECK(disk.stats().logs == 2);
    drain(r, disk);
  }
  {
    auto d = WalDisk::open(r, opts(dir.path));
    REQUIRE(d.ok());
    CHECK((*d)->read_log("jobs") == fresh);
    CHECK((*d)->read_log("other") == std::vector<node::Bytes>{bytes("kept")});
    CHECK((*d)->read_log("gone").empty());
    const std::size_t live = (*d)->stats().live_bytes;
    REQUIRE((*d)->compact().ok());
    REQUIRE((*d)->replace_log("jobs", std::vector<node::Bytes>{bytes("after-snapshot")}).ok());
    CHECK((*d)->stats().live_bytes != live);
    drain(r, **d);
  }
  auto d = WalDisk::open(r, opts(dir.path));
  REQUIRE(d.ok());
  CHECK((*d)->read_log("jobs") == std::vector<node::Bytes>{bytes("after-snapshot")});
  CHECK((*d)->read_log("other") == std::vector<node::Bytes>{bytes("kept")});
}

TEST_CASE("WalDisk: a refused replace_log leaves the old log, in memory and after reopen", "[host][disk]") {
  test::TempDir dir;
  runtime::Reactor r;
  WalDiskOptions o = opts(dir.path);
  o.limits.max_logs = 1;
  o.limits.max_bytes = 400;
  const std::vector<node::Bytes> old = {bytes("a"), bytes("b")};
  {
    auto d = WalDisk::open(r, o);
    REQUIRE(d.ok());
    WalDisk& disk = **d;
    for (const auto& rec : old) REQUIRE(disk.append("jobs", rec).ok());
    // Over the byte bound, a second log over the log bound, a record over the WAL's record limit.
    CHECK(disk.replace_log("jobs", std::vector<node::Bytes>{node::Bytes(500, 'x')}).code() == Errc::backpressure);
    CHECK(disk.replace_log("other", std::vector<node::Bytes>{bytes("x")}).code() == Errc::backpressure);
    CHECK(disk.replace_log("jobs", std::vector<node::Bytes>{node::Bytes(5u << 20, 'x')}).code() ==
          Errc::invalid_argument);
    CHECK(disk.read_log("jobs") == old);
    CHECK(disk.read_log("other").empty());
    CHECK(r.metrics().counter_value("hs_host_disk_refused_total", {{"reason", "bounds"}}) == 2);
    CHECK(r.metrics().counter_value("hs_host_disk_refused_total", {{"reason", "too_large"}}) == 1);
    CHECK(disk.health().ok());  // a refusal is not a failure
    drain(r, disk);
  }
  auto d = WalDisk::open(r, o);
  REQUIRE(d.ok());
  CHECK((*d)->read_log("jobs") == old);
  CHECK((*d)->read_log("other").empty());
}

TEST_CASE("WalDisk: a crash in the middle of replace_log leaves the old log, never a mix or an empty one",
          "[host][disk]") {
  test::TempDir dir;
  runtime::Reactor r;
  const std::vector<node::Bytes> old = {bytes("j1"), bytes("j2"), bytes("j3")};
  {
    auto d = WalDisk::open(r, opts(dir.path));
    REQUIRE(d.ok());
    for (const auto& rec : old) REQUIRE((*d)->append("jobs", rec).ok());
    drain(r, **d);
  }
  {
    // What a crash after replace_begin and one new record leaves: append them with a raw WAL.
    wal::WalOptions wo;
    wo.dir = dir.path;
    wo.segment_bytes = 4096;
    auto w = wal::Wal::open(r, wo);
    REQUIRE(w.ok());
    const std::vector<std::uint8_t> begin = {'j', 'o', 'b', 's'};
    const std::vector<std::uint8_t> rec = {4, 0, 0, 0, 'j', 'o', 'b', 's', 'n', 'e', 'w'};  // "jobs": "new"
    bool done = false;
    REQUIRE((*w)->append(8, begin, [](Status) {}).ok());                     // replace_begin
    REQUIRE((*w)->append(9, rec, [&](Status st) { done = st.ok(); }).ok());  // replace_rec
    REQUIRE(test::run_until(r, [&] { return done; }));
  }
  {
    auto d = WalDisk::open(r, opts(dir.path));
    REQUIRE(d.ok());
    CHECK((*d)->read_log("jobs") == old);             // the unfinished run did not touch the log
    REQUIRE((*d)->append("jobs", bytes("j4")).ok());  // after the abort record: a normal write
    drain(r, **d);
  }
  auto d = WalDisk::open(r, opts(dir.path));
  REQUIRE(d.ok());
  CHECK((*d)->read_log("jobs") == std::vector<node::Bytes>{bytes("j1"), bytes("j2"), bytes("j3"), bytes("j4")});
}
