// WAL benchmark: durable appends/s of 128-byte-payload records with 1, 16 and 256 concurrent
// appenders (each keeps one append outstanding and issues the next on completion), against a naive
// pwrite + fdatasync per record loop on the same disk, in the same run. Run via tools/bench/wal.
//
// Last line: wal speedup_256=<ours/naive> p50_single_us=<…> fsync_us=<naive per-record latency>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "hyperscale/base/log.hpp"
#include "hyperscale/runtime/reactor.hpp"
#include "hyperscale/wal/wal.hpp"

using namespace hs;
using Clk = std::chrono::steady_clock;

namespace {

constexpr std::size_t kPayload = 128;
constexpr std::size_t kMaxSamples = 1 << 21;

double pct(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

struct Figures {
  double per_sec = 0;
  double p50_us = 0;
  double p99_us = 0;
  std::uint64_t n = 0;
  double batches = 0;
};

Figures naive(const std::string& dir, double seconds) {
  const std::string path = dir + "/naive.log";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::perror("open naive");
    std::exit(1);
  }
  std::vector<std::uint8_t> rec;
  std::vector<std::uint8_t> payload(kPayload, 0xab);
  std::vector<double> lat;
  std::uint64_t off = 0;
  const auto start = Clk::now();
  const auto end = start + std::chrono::duration_cast<Clk::duration>(std::chrono::duration<double>(seconds));
  Figures f;
  while (Clk::now() < end) {
    rec.clear();
    wal::encode_record(rec, f.n + 1, 1, payload);
    const auto t0 = Clk::now();
    if (::pwrite(fd, rec.data(), rec.size(), static_cast<off_t>(off)) != static_cast<ssize_t>(rec.size()) ||
        ::fdatasync(fd) != 0) {
      std::perror("naive pwrite/fdatasync");
      std::exit(1);
    }
    lat.push_back(std::chrono::duration<double, std::micro>(Clk::now() - t0).count());
    off += rec.size();
    ++f.n;
  }
  const double el = std::chrono::duration<double>(Clk::now() - start).count();
  ::close(fd);
  ::unlink(path.c_str());
  f.per_sec = static_cast<double>(f.n) / el;
  f.p50_us = pct(lat, 0.5);
  f.p99_us = pct(lat, 0.99);
  return f;
}

Figures ours(const std::string& dir, int appenders, double seconds, wal::Durability dur) {
  const std::string d = dir + "/wal-" + std::to_string(appenders);
  std::filesystem::remove_all(d);
  runtime::Reactor r;
  wal::WalOptions o;
  o.dir = d;
  o.durability = dur;
  auto w = wal::Wal::open(r, o);
  if (!w.ok()) {
    std::fprintf(stderr, "open: %s\n", w.status().to_string().c_str());
    std::exit(1);
  }
  wal::Wal& wal = **w;
  std::vector<std::uint8_t> payload(kPayload, 0xcd);
  std::vector<double> lat;
  lat.reserve(kMaxSamples);
  Figures f;
  bool stopping = false;
  int outstanding = 0;
  std::function<void()> one = [&]() {
    const auto t0 = Clk::now();
    ++outstanding;
    auto lsn = wal.append(1, payload, [&, t0](Status st) {
      --outstanding;
      if (!st.ok()) {
        std::fprintf(stderr, "append failed: %s\n", st.to_string().c_str());
        std::exit(1);
      }
      if (lat.size() < kMaxSamples) lat.push_back(std::chrono::duration<double, std::micro>(Clk::now() - t0).count());
      ++f.n;
      if (!stopping) one();
    });
    if (!lsn.ok()) {
      std::fprintf(stderr, "append refused: %s\n", lsn.status().to_string().c_str());
      std::exit(1);
    }
  };
  const auto start = Clk::now();
  const auto end = start + std::chrono::duration_cast<Clk::duration>(std::chrono::duration<double>(seconds));
  for (int i = 0; i < appenders; ++i) one();
  r.run_nowait();
  while (Clk::now() < end) uv_run(r.loop(), UV_RUN_ONCE);
  stopping = true;
  const double el = std::chrono::duration<double>(Clk::now() - start).count();
  const std::uint64_t counted = f.n;
  while (outstanding > 0) uv_run(r.loop(), UV_RUN_ONCE);
  f.per_sec = static_cast<double>(counted) / el;
  f.p50_us = pct(lat, 0.5);
  f.p99_us = pct(lat, 0.99);
  f.batches = static_cast<double>(r.metrics().counter_value("hs_wal_batches_total"));
  std::filesystem::remove_all(d);
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = "/var/tmp";
  double seconds = 3;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
      dir = argv[++i];
    } else if (std::strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: hs-bench-wal [--dir DIR] [--seconds S]\n");
      return 2;
    }
  }
  log::set_level(log::Level::warn);
  char tmpl[4096];
  std::snprintf(tmpl, sizeof tmpl, "%s/hs-bench-wal-XXXXXX", dir.c_str());
  if (::mkdtemp(tmpl) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string work = tmpl;
  std::printf("wal bench: dir %s, %zu-byte payloads (%zu-byte records), %.1f s per run, durability fsync\n",
              work.c_str(), kPayload, wal::encoded_size(kPayload), seconds);
  const Figures nv = naive(work, seconds);
  std::printf("naive pwrite+fdatasync per record: %10.0f rec/s  p50 %8.1f us  p99 %8.1f us\n", nv.per_sec, nv.p50_us,
              nv.p99_us);
  Figures res[3];
  const int conc[3] = {1, 16, 256};
  for (int i = 0; i < 3; ++i) {
    res[i] = ours(work, conc[i], seconds, wal::Durability::fsync);
    std::printf("wal %3d appender(s):               %10.0f rec/s  p50 %8.1f us  p99 %8.1f us  (%.1f records/batch)\n",
                conc[i], res[i].per_sec, res[i].p50_us, res[i].p99_us,
                res[i].batches > 0 ? static_cast<double>(res[i].n) / res[i].batches : 0.0);
  }
  const Figures none = ours(work, 256, seconds, wal::Durability::none);
  std::printf("wal 256 appender(s), durability none: %7.0f rec/s  p50 %8.1f us (no fdatasync; not durable)\n",
              none.per_sec, none.p50_us);
  std::filesystem::remove_all(work);
  std::printf("wal speedup_256=%.1f p50_single_us=%.1f fsync_us=%.1f\n", res[2].per_sec / nv.per_sec, res[0].p50_us,
              nv.p50_us);
  return 0;
}
