#include <catch2/catch.hpp>

#include <sys/resource.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "hyperscale/base/crc32c.hpp"
#include "hyperscale/base/random.hpp"
#include "hyperscale/runtime/log_capture.hpp"
#include "hyperscale/runtime/reactor.hpp"
#include "hyperscale/wal/format.hpp"
#include "hyperscale/wal/recovery.hpp"
#include "hyperscale/wal/wal.hpp"
#include "wal_test_util.hpp"

using namespace hs;
using namespace hs::wal;
using namespace hs::wal::test;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> segment_paths(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.size() > 4 && n.substr(n.size() - 4) == ".seg") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Appends `n` records (payload_for(lsn)) and waits until every one is acknowledged.
void append_n(runtime::Reactor& r, Wal& w, int n, std::size_t max_len = 64) {
  int acked = 0, failed = 0;
  for (int i = 0; i < n; ++i) {
    const Lsn want = w.next_lsn();
    auto p = payload_for(want, max_len);
    auto lsn = w.append(type_for(want), p, [&](Status st) { st.ok() ? ++acked : ++failed; });
    REQUIRE(lsn.ok());
    REQUIRE(lsn.value() == want);
  }
  REQUIRE(run_until(r, [&] { return acked + failed == n; }));
  REQUIRE(failed == 0);
}

struct Replay {
  std::vector<RecordView> recs;
  std::vector<std::vector<std::uint8_t>> payloads;
  RecordVisitor visitor() {
    return [this](const RecordView& v) {
      payloads.emplace_back(v.payload.begin(), v.payload.end());
      recs.push_back(v);
    };
  }
  // Every record carries the payload and type its LSN implies, LSNs dense from `first`.
  void check(Lsn first, std::size_t count, std::size_t max_len = 64) const {
    REQUIRE(recs.size() == count);
    for (std::size_t i = 0; i < recs.size(); ++i) {
      REQUIRE(recs[i].lsn == first + i);
      REQUIRE(recs[i].type == type_for(recs[i].lsn));
      REQUIRE(payloads[i] == payload_for(recs[i].lsn, max_len));
    }
  }
};

// An I/O layer that fails the Nth submission's write or fdatasync; everything else goes to io_uring.
struct FaultIo final : WalIo {
  FaultIo(runtime::Reactor& r, int fail_at, bool fail_sync, int err)
      : r(r), real(make_uring_io(r)), fail_at(fail_at), fail_sync(fail_sync), err(err) {}
  Status write_and_sync(int fd, const std::uint8_t* buf, std::size_t len, std::uint64_t off, bool sync, IoDone wd,
                        IoDone sd) override {
    if (calls++ < fail_at) return real->write_and_sync(fd, buf, len, off, sync, std::move(wd), std::move(sd));
    const int wres = fail_sync ? static_cast<int>(len) : -err;
    const int sres = fail_sync ? -err : -ECANCELED;
    REQUIRE(r.defer([wd = std::move(wd), wres]() mutable { wd(wres); }).ok());
    if (sync) REQUIRE(r.defer([sd = std::move(sd), sres]() mutable { sd(sres); }).ok());
    return ok_status();
  }
  runtime::Reactor& r;
  std::unique_ptr<WalIo> real;
  int calls = 0;
  int fail_at;
  bool fail_sync;
  int err;
};

WalOptions small_opts(const std::string& dir) {
  WalOptions o;
  o.dir = dir;
  o.segment_bytes = 4096;
  o.max_batch_entries = 16;  // many batches, so segments roll over
  return o;
}

}  // namespace

TEST_CASE("crc32c: known vectors, and the SSE4.2 and table paths agree", "[crc32c]") {
  CHECK(crc32c::value("123456789", 9) == 0xE3069283u);
  CHECK(crc32c::value("", 0) == 0u);
  std::vector<std::uint8_t> zeros(32, 0);
  CHECK(crc32c::value(zeros.data(), zeros.size()) == 0x8A9136AAu);
  CHECK(crc32c::extend(crc32c::value("1234", 4), "56789", 5) == 0xE3069283u);
  INFO("hardware crc32c available: " << crc32c::hw_available());
  Rng rng(42);
  std::vector<std::uint8_t> buf(4096 + 16);
  for (auto& b : buf) b = static_cast<std::uint8_t>(rng.next_u64());
  for (int i = 0; i < 2000; ++i) {
    const std::size_t off = rng.next_u64() % 16;
    const std::size_t len = rng.next_u64() % 4096;
    const std::uint32_t seed = static_cast<std::uint32_t>(rng.next_u64());
    REQUIRE(crc32c::extend_sw(seed, buf.data() + off, len) == crc32c::extend_hw(seed, buf.data() + off, len));
    REQUIRE(crc32c::extend(seed, buf.data() + off, len) == crc32c::extend_sw(seed, buf.data() + off, len));
  }
}

TEST_CASE("Record codec round trip and scan of a clean segment", "[wal][format]") {
  std::vector<std::uint8_t> seg(kSegmentHeaderSize);
  encode_segment_header(seg.data(), 7);
  for (Lsn l = 7; l < 57; ++l) encode_record(seg, l, type_for(l), payload_for(l));
  std::vector<Lsn> seen;
  const SegmentScan s = scan_segment(seg, [&](const RecordView& r) {
    CHECK(r.type == type_for(r.lsn));
    CHECK(std::vector<std::uint8_t>(r.payload.begin(), r.payload.end()) == payload_for(r.lsn));
    seen.push_back(r.lsn);
  });
  CHECK(s.end == SegmentScan::End::clean);
  CHECK(s.records == 50);
  CHECK(s.first_lsn == 7);
  CHECK(s.next_lsn == 57);
  CHECK(s.valid_end == seg.size());
  CHECK(seen.size() == 50);
  // Empty payloads are valid records.
  std::vector<std::uint8_t> e(kSegmentHeaderSize);
  encode_segment_header(e.data(), 1);
  encode_record(e, 1, 9, {});
  CHECK(scan_segment(e).records == 1);
  // A bad header is corruption at offset 0.
  e[3] ^= 1;
  const SegmentScan bad = scan_segment(e);
  CHECK(bad.end == SegmentScan::End::corrupt);
  CHECK(!bad.header_ok);
}

TEST_CASE("Round trip of many records across several segments, and appends after reopen", "[wal]") {
  TempDir d;
  {
    runtime::Reactor r;
    auto w = Wal::open(r, small_opts(d.path));
    REQUIRE(w.ok());
    append_n(r, **w, 1500);
    CHECK((*w)->durable_lsn() == 1501);
    CHECK((*w)->segment_count() >= 5);
    CHECK(r.metrics().counter_value("hs_wal_appends_total") == 1500);
    CHECK((*w)->health().ok());
  }
  CHECK(segment_paths(d.path).size() >= 5);
  {
    runtime::Reactor r;
    Replay rp;
    auto w = Wal::open(r, small_opts(d.path), rp.visitor());
    REQUIRE(w.ok());
    rp.check(1, 1500);
    CHECK(!(*w)->recovery().torn_tail);
    CHECK((*w)->next_lsn() == 1501);
    append_n(r, **w, 300);
  }
  runtime::Reactor r;
  Replay rp;
  auto w = Wal::open(r, small_opts(d.path), rp.visitor());
  REQUIRE(w.ok());
  rp.check(1, 1800);
}

TEST_CASE("Appends in one loop turn become one write + one fdatasync; batch limits split them", "[wal]") {
  TempDir d;
  runtime::Reactor r;
  WalOptions o;
  o.dir = d.path;
  auto w = Wal::open(r, o);
  REQUIRE(w.ok());
  append_n(r, **w, 200);
  CHECK(r.metrics().counter_value("hs_wal_batches_total") == 1);
  TempDir d2;
  runtime::Reactor r2;
  o.dir = d2.path;
  o.max_batch_entries = 10;
  auto w2 = Wal::open(r2, o);
  REQUIRE(w2.ok());
  append_n(r2, **w2, 200);
  CHECK(r2.metrics().counter_value("hs_wal_batches_total") == 20);
}

TEST_CASE("Bad input changes nothing: oversized payload, bad options", "[wal]") {
  TempDir d;
  runtime::Reactor r;
  WalOptions o;
  o.dir = d.path;
  o.max_payload = 100;
  auto w = Wal::open(r, o);
  REQUIRE(w.ok());
  std::vector<std::uint8_t> big(101);
  bool called = false;
  auto res = (*w)->append(1, big, [&](Status) { called = true; });
  CHECK(res.status().code() == Errc::invalid_argument);
  CHECK(res.status().message().find("101 bytes exceeds the limit of 100") != std::string::npos);
  CHECK(r.metrics().counter_value("hs_wal_refused_total", {{"reason", "payload_too_large"}}) == 1);
  CHECK((*w)->next_lsn() == 1);
  CHECK((*w)->queued_bytes() == 0);
  r.run_nowait();
  CHECK(!called);
  WalOptions bad;
  bad.dir = "";
  CHECK(Wal::open(r, bad).status().code() == Errc::invalid_argument);
  bad.dir = d.path;
  bad.max_payload = kMaxPayload + 1;
  CHECK(Wal::open(r, bad).status().code() == Errc::invalid_argument);
}

TEST_CASE("Recovery after truncating the newest segment at every byte offset of its last three records",
          "[wal][recovery]") {
  TempDir src;
  const std::size_t kMax = 12;  // small records keep the test fast under ASan
  {
    runtime::Reactor r;
    WalOptions o = small_opts(src.path);
    o.segment_bytes = 512;
    auto w = Wal::open(r, o);
    REQUIRE(w.ok());
    for (int i = 0; i < 40; ++i) append_n(r, **w, 1, kMax);  // one batch each: segments roll over
    REQUIRE((*w)->segment_count() >= 2);
  }
  const auto segs = segment_paths(src.path);
  const std::string newest = segs.back();
  const auto bytes = read_bytes(newest);
  std::vector<std::size_t> starts;  // record start offsets in the newest segment
  Lsn seg_first = 0;
  {
    std::size_t off = kSegmentHeaderSize;
    const SegmentScan s = scan_segment(bytes, [&](const RecordView& v) {
      starts.push_back(off);
      off += encoded_size(v.payload.size());
    });
    REQUIRE(s.end == SegmentScan::End::clean);
    REQUIRE(s.records >= 3);
    seg_first = s.first_lsn;
  }
  const std::size_t from = starts[starts.size() - 3];
  TempDir work;
  int cases = 0;
  for (std::size_t cut = from; cut < bytes.size(); ++cut) {
    // Fully written records in the truncated segment.
    std::size_t complete = 0;
    for (std::size_t i = 0; i < starts.size(); ++i) {
      const std::size_t end = i + 1 < starts.size() ? starts[i + 1] : bytes.size();
      if (end <= cut) complete = i + 1;
    }
    const Lsn expect_next = seg_first + complete;
    // A fresh copy of the log with the newest segment cut at `cut`.
    const std::string dir = work.path + "/c" + std::to_string(cut);
    fs::create_directory(dir);
    for (const auto& s : segs) {
      const std::string dst = dir + "/" + fs::path(s).filename().string();
      if (s == newest) {
        write_bytes(dst, bytes.data(), cut);
      } else {
        fs::copy_file(s, dst);
      }
    }
    runtime::LogCapture logs;
    {
      runtime::Reactor r;
      Replay rp;
      auto w = Wal::open(r, small_opts(dir), rp.visitor());
      REQUIRE(w.ok());
      rp.check(1, expect_next - 1, kMax);
      CHECK((*w)->next_lsn() == expect_next);
      const bool torn = std::find(starts.begin(), starts.end(), cut) == starts.end();
      CHECK((*w)->recovery().torn_tail == torn);
      if (torn) CHECK(logs.contains({"event=torn_tail_truncated"}));
      // Appends after recovery survive a second recovery.
      append_n(r, **w, 3, kMax);
    }
    runtime::Reactor r;
    Replay rp;
    auto w = Wal::open(r, small_opts(dir), rp.visitor());
    REQUIRE(w.ok());
    rp.check(1, expect_next - 1 + 3, kMax);
    CHECK(!(*w)->recovery().torn_tail);
    ++cases;
    fs::remove_all(dir);
  }
  CHECK(cases > 3 * static_cast<int>(kRecordHeaderSize));
}

TEST_CASE("A flipped bit in a middle record with good records after it refuses to open; repair then opens",
          "[wal][recovery]") {
  TempDir d;
  {
    runtime::Reactor r;
    WalOptions o = small_opts(d.path);
    o.segment_bytes = 1 << 20;
    auto w = Wal::open(r, o);
    REQUIRE(w.ok());
    for (int i = 0; i < 20; ++i) append_n(r, **w, 1);
  }
  const auto segs = segment_paths(d.path);
  REQUIRE(segs.size() == 1);
  auto bytes = read_bytes(segs[0]);
  // Offset of record 10 (lsn 10).
  std::size_t off = kSegmentHeaderSize;
  for (Lsn l = 1; l < 10; ++l) off += encoded_size(payload_for(l).size());
  bytes[off + kRecordHeaderSize + 1] ^= 0x10;  // a payload bit
  write_bytes(segs[0], bytes.data(), bytes.size());

  runtime::LogCapture logs;
  {
    runtime::Reactor r;
    auto w = Wal::open(r, small_opts(d.path));
    REQUIRE(!w.ok());
    CHECK(w.status().code() == Errc::corruption);
    const std::string msg = w.status().message();
    INFO(msg);
    CHECK(msg.find(segs[0]) != std::string::npos);
    CHECK(msg.find("offset " + std::to_string(off)) != std::string::npos);
    CHECK(msg.find("wal repair") != std::string::npos);
    CHECK(logs.contains({"event=open_failed"}));
    CHECK(r.metrics().counter_value("hs_wal_errors_total", {{"reason", "recovery"}}) == 1);
  }
  // Nothing changed by the failed open; a dry run reports and changes nothing either.
  CHECK(read_bytes(segs[0]) == bytes);
  auto dry = recover_dir(d.path, RecoverMode::repair_dry_run);
  REQUIRE(dry.ok());
  CHECK(dry->lost_records_at_least == 10);
  CHECK(dry->lost_bytes == bytes.size() - off);
  CHECK(read_bytes(segs[0]) == bytes);

  const char* exe = std::getenv("HYPERSCALE_EXE");
  if (exe != nullptr) {
    // `hyperscale wal check DIR` reports the corruption with file and offset and fails.
    const std::string check =
        std::string(exe) + " --log-level off wal check " + d.path + " > " + d.path + "/../check-out.txt 2>&1";
    CHECK(std::system(check.c_str()) != 0);
    {
      std::ifstream cf(d.path + "/../check-out.txt");
      const std::string cout_text((std::istreambuf_iterator<char>(cf)), {});
      INFO(cout_text);
      CHECK(cout_text.find(segs[0] + " offset " + std::to_string(off)) != std::string::npos);
      fs::remove(d.path + "/../check-out.txt");
    }
    // The CLI: `hyperscale wal repair DIR` prints what will be lost, then truncates.
    const std::string cmd =
        std::string(exe) + " --log-level warn wal repair " + d.path + " > " + d.path + "/../repair-out.txt 2>&1";
    REQUIRE(std::system(cmd.c_str()) == 0);
    std::ifstream f(d.path + "/../repair-out.txt");
    const std::string out((std::istreambuf_iterator<char>(f)), {});
    INFO(out);
    CHECK(out.find("offset " + std::to_string(off)) != std::string::npos);
    CHECK(out.find("at least 10 record") != std::string::npos);
    fs::remove(d.path + "/../repair-out.txt");
  } else {
    REQUIRE(recover_dir(d.path, RecoverMode::repair).ok());
  }
  runtime::Reactor r;
  Replay rp;
  auto w = Wal::open(r, small_opts(d.path), rp.visitor());
  REQUIRE(w.ok());
  rp.check(1, 9);
  append_n(r, **w, 2);
  CHECK((*w)->durable_lsn() == 12);
}

TEST_CASE("Corruption in an older segment refuses to open even when it is at that segment's end", "[wal][recovery]") {
  TempDir d;
  {
    runtime::Reactor r;
    WalOptions o = small_opts(d.path);
    o.segment_bytes = 256;
    auto w = Wal::open(r, o);
    REQUIRE(w.ok());
    for (int i = 0; i < 30; ++i) append_n(r, **w, 1);
  }
  auto segs = segment_paths(d.path);
  REQUIRE(segs.size() >= 3);
  auto b = read_bytes(segs[0]);
  b.back() ^= 1;  // last byte of the last record of the oldest segment
  write_bytes(segs[0], b.data(), b.size());
  runtime::Reactor r;
  auto w = Wal::open(r, small_opts(d.path));
  REQUIRE(!w.ok());
  CHECK(w.status().message().find(segs[0]) != std::string::npos);
  // Repair drops the rest of the log from there.
  auto rep = recover_dir(d.path, RecoverMode::repair);
  REQUIRE(rep.ok());
  CHECK(rep->dropped_segments.size() == segs.size() - 1);
  Replay rp;
  auto w2 = Wal::open(r, small_opts(d.path), rp.visitor());
  REQUIRE(w2.ok());
  CHECK((*w2)->next_lsn() == rp.recs.size() + 1);
}

TEST_CASE("An injected write error fails pending and later appends, is logged once and counted", "[wal][failstop]") {
  for (const bool fail_sync : {false, true}) {
    DYNAMIC_SECTION((fail_sync ? "fdatasync" : "write") << " error") {
      TempDir d;
      runtime::LogCapture logs;
      runtime::Reactor r;
      WalOptions o;
      o.dir = d.path;
      auto w = Wal::open(r, o, {}, std::make_unique<FaultIo>(r, 1, fail_sync, EIO));
      REQUIRE(w.ok());
      append_n(r, **w, 5);  // submission 0: fine
      // Submission 1 fails; appends made while it is in flight are queued for the next batch.
      std::vector<Status> results;
      for (int i = 0; i < 4; ++i)
        REQUIRE((*w)->append(1, payload_for(1), [&](Status st) { results.push_back(st); }).ok());
      r.run_nowait();  // submits the batch of 4
      for (int i = 0; i < 3; ++i)
        REQUIRE((*w)->append(1, payload_for(1), [&](Status st) { results.push_back(st); }).ok());
      REQUIRE(run_until(r, [&] { return results.size() == 7; }));
      for (const auto& st : results) {
        CHECK(st.code() == Errc::io_error);
        CHECK(st.message().find("Input/output error") != std::string::npos);
      }
      CHECK(!(*w)->health().ok());
      CHECK((*w)->durable_lsn() == 6);
      bool called = false;
      auto later = (*w)->append(1, payload_for(1), [&](Status) { called = true; });
      CHECK(later.status().code() == Errc::io_error);
      r.run_nowait();
      CHECK(!called);
      CHECK(logs.find({"event=failed"}).size() == 1);
      CHECK(logs.contains({"event=failed", fail_sync ? "reason=fsync" : "reason=write"}));
      CHECK(r.metrics().counter_value("hs_wal_errors_total", {{"reason", fail_sync ? "fsync" : "write"}}) == 1);
      CHECK(r.metrics().gauge_value("hs_wal_healthy") == 0);
    }
  }
}

TEST_CASE("A full queue is backpressure returned at once; nothing queued", "[wal][backpressure]") {
  TempDir d;
  runtime::Reactor r;
  WalOptions o;
  o.dir = d.path;
  o.max_payload = 100;
  o.max_queued_bytes = 1000;
  auto w = Wal::open(r, o);
  REQUIRE(w.ok());
  std::vector<std::uint8_t> p(80);  // 100 bytes encoded
  int acked = 0;
  for (int i = 0; i < 10; ++i) REQUIRE((*w)->append(1, p, [&](Status st) { acked += st.ok(); }).ok());
  bool called = false;
  auto refused = (*w)->append(1, p, [&](Status) { called = true; });
  CHECK(refused.status().code() == Errc::backpressure);
  CHECK((*w)->next_lsn() == 11);
  CHECK(r.metrics().counter_value("hs_wal_backpressure_total") == 1);
  REQUIRE(run_until(r, [&] { return acked == 10; }));
  CHECK(!called);
  CHECK((*w)->queued_bytes() == 0);
  CHECK((*w)->append(1, p, [&](Status st) { acked += st.ok(); }).ok());
  REQUIRE(run_until(r, [&] { return acked == 11; }));
}

TEST_CASE("Checkpoint deletes whole segments below an LSN; reopen starts at the oldest remaining",
          "[wal][checkpoint]") {
  TempDir d;
  Lsn oldest = 0;
  std::size_t remaining = 0;
  {
    runtime::Reactor r;
    auto w = Wal::open(r, small_opts(d.path));
    REQUIRE(w.ok());
    append_n(r, **w, 1000);
    const std::size_t before = (*w)->segment_count();
    REQUIRE(before >= 4);
    auto del = (*w)->truncate_before(600);
    REQUIRE(del.ok());
    CHECK(del.value() >= 2);
    remaining = (*w)->segment_count();
    CHECK(remaining == before - del.value());
    CHECK(segment_paths(d.path).size() == remaining);
    // Everything at or above 600 is still there: the oldest remaining segment starts at or below it.
    auto rep = recover_dir(d.path, RecoverMode::read_only);
    REQUIRE(rep.ok());
    oldest = rep->segments.front().first_lsn;
    CHECK(oldest <= 600);
    CHECK(oldest > 1);
    // The active segment is never deleted.
    auto all = (*w)->truncate_before(1'000'000);
    REQUIRE(all.ok());
    CHECK((*w)->segment_count() == 1);
    append_n(r, **w, 10);
  }
  runtime::Reactor r;
  Replay rp;
  auto w = Wal::open(r, small_opts(d.path), rp.visitor());
  REQUIRE(w.ok());
  REQUIRE(!rp.recs.empty());
  rp.check(rp.recs.front().lsn, 1010 - rp.recs.front().lsn + 1);
  CHECK((*w)->next_lsn() == 1011);
  append_n(r, **w, 5);
}

TEST_CASE("Open logs the durability mode; an unfinished segment file is removed", "[wal]") {
  TempDir d;
  runtime::LogCapture logs;
  {
    runtime::Reactor r;
    WalOptions o;
    o.dir = d.path;
    o.durability = Durability::none;
    auto w = Wal::open(r, o);
    REQUIRE(w.ok());
    append_n(r, **w, 10);
  }
  CHECK(logs.contains({"event=open", "durability=none"}));
  write_bytes(d.path + "/wal-00000000000000000011.seg.tmp", reinterpret_cast<const std::uint8_t*>("xx"), 2);
  runtime::Reactor r;
  Replay rp;
  auto w = Wal::open(r, WalOptions{.dir = d.path}, rp.visitor());
  REQUIRE(w.ok());
  rp.check(1, 10);
  CHECK(logs.contains({"event=open", "durability=fsync"}));
  CHECK(logs.contains({"event=removed_unfinished_segment"}));
  CHECK(!fs::exists(d.path + "/wal-00000000000000000011.seg.tmp"));
}

TEST_CASE("A real write error from the kernel (file size limit) makes the log fail-stop", "[wal][failstop]") {
  // RLIMIT_FSIZE makes writes past the limit fail (EFBIG, or a short write at the boundary): the real
  // io_uring path, no fault hook. SIGXFSZ is ignored for the duration.
  TempDir d;
  runtime::LogCapture logs;
  runtime::Reactor r;
  WalOptions o;
  o.dir = d.path;
  auto w = Wal::open(r, o);
  REQUIRE(w.ok());
  struct rlimit old {};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
  auto* old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit lim = old;
  lim.rlim_cur = 64 << 10;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &lim) == 0);
  std::vector<Status> results;
  std::vector<std::uint8_t> p(1000);
  for (int round = 0; round < 100 && (*w)->health().ok(); ++round) {
    for (int i = 0; i < 10; ++i) {
      if (!(*w)->append(1, p, [&](Status st) { results.push_back(st); }).ok()) break;
    }
    const std::size_t want = static_cast<std::size_t>(round + 1) * 10;
    REQUIRE(run_until(r, [&] { return results.size() >= want || !(*w)->health().ok(); }));
  }
  REQUIRE(run_until(r, [&] { return !(*w)->busy(); }));
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &old) == 0);
  std::signal(SIGXFSZ, old_handler);
  REQUIRE(!(*w)->health().ok());
  INFO((*w)->health().to_string());
  CHECK((*w)->health().code() == Errc::io_error);
  std::size_t ok = 0, failed = 0;
  for (const auto& st : results) (st.ok() ? ok : failed)++;
  CHECK(ok > 0);
  CHECK(failed > 0);
  CHECK(ok * 1020 + kSegmentHeaderSize <= (64u << 10));
  CHECK((*w)->append(1, p, [](Status) {}).status().code() == Errc::io_error);
  CHECK(logs.find({"event=failed"}).size() == 1);
  CHECK(r.metrics().counter_value("hs_wal_errors_total", {{"reason", "write"}}) +
            r.metrics().counter_value("hs_wal_errors_total", {{"reason", "short_write"}}) ==
        1);
  // Reopen (no limit now): every acknowledged record is there. Records of the failed batch that
  // reached the file whole may be there too (a failed append promises nothing either way); the
  // partial record the short write left is a torn tail and is truncated.
  w = make_error(Errc::cancelled, "closed");  // releases the directory lock
  runtime::Reactor r2;
  Replay rp;
  auto w2 = Wal::open(r2, o, rp.visitor());
  REQUIRE(w2.ok());
  CHECK(rp.recs.size() >= ok);
  CHECK(rp.recs.size() <= ok + failed);
  for (std::size_t i = 0; i < rp.recs.size(); ++i) {
    CHECK(rp.recs[i].lsn == i + 1);
    CHECK(rp.payloads[i] == p);
  }
}

TEST_CASE("One owner per directory: a second open is refused while the first is open", "[wal]") {
  TempDir d;
  runtime::LogCapture logs;
  runtime::Reactor r;
  WalOptions o;
  o.dir = d.path;
  auto w = Wal::open(r, o);
  REQUIRE(w.ok());
  auto second = Wal::open(r, o);
  REQUIRE(!second.ok());
  CHECK(second.status().code() == Errc::unavailable);
  CHECK(second.status().message().find("locked") != std::string::npos);
  CHECK(r.metrics().counter_value("hs_wal_errors_total", {{"reason", "locked"}}) == 1);
  append_n(r, **w, 3);  // the first owner is unaffected
  CHECK(r.turn_end_hook_count() == 1);
  w = make_error(Errc::cancelled, "closed");
  CHECK(r.turn_end_hook_count() == 0);  // a closed log leaves no hook behind on its reactor
  auto third = Wal::open(r, o);
  REQUIRE(third.ok());
  CHECK((*third)->next_lsn() == 4);
}

TEST_CASE("A throwing append callback is logged and counted; the other callbacks of the batch still run", "[wal]") {
  TempDir d;
  runtime::LogCapture logs;
  runtime::Reactor r;
  auto w = Wal::open(r, WalOptions{.dir = d.path});
  REQUIRE(w.ok());
  int ok = 0;
  REQUIRE((*w)->append(1, payload_for(1), [&](Status st) { ok += st.ok(); }).ok());
  REQUIRE((*w)->append(1, payload_for(2), [](Status) { throw std::runtime_error("boom"); }).ok());
  REQUIRE((*w)->append(1, payload_for(3), [&](Status st) { ok += st.ok(); }).ok());
  REQUIRE(run_until(r, [&] { return ok == 2; }));
  CHECK(logs.contains({"event=callback_error", "lsn=2", "boom"}));
  CHECK(r.metrics().counter_value("hs_task_errors_total", {{"task", "wal_append_callback"}}) == 1);
  CHECK((*w)->health().ok());
}
