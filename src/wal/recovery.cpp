#include "hyperscale/wal/recovery.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include <fmt/format.h>

#include "hyperscale/base/log.hpp"

namespace hs::wal {
namespace {

constexpr std::string_view kPrefix = "wal-";
constexpr std::string_view kSuffix = ".seg";
constexpr std::string_view kTmpSuffix = ".seg.tmp";

bool ends_with(std::string_view s, std::string_view suf) {
  return s.size() >= suf.size() && s.substr(s.size() - suf.size()) == suf;
}

// Parses "wal-<20 digits>.seg".
bool parse_segment_name(std::string_view name, Lsn& lsn) {
  if (name.size() != kPrefix.size() + 20 + kSuffix.size()) return false;
  if (name.substr(0, kPrefix.size()) != kPrefix || !ends_with(name, kSuffix)) return false;
  Lsn v = 0;
  for (char c : name.substr(kPrefix.size(), 20)) {
    if (c < '0' || c > '9') return false;
    const Lsn d = static_cast<Lsn>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  lsn = v;
  return true;
}

Status read_file(const std::string& path, std::vector<std::uint8_t>& out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno_status("open " + path, errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    return errno_status("fstat " + path, e);
  }
  out.resize(static_cast<std::size_t>(st.st_size));
  std::size_t got = 0;
  while (got < out.size()) {
    const ssize_t n = ::pread(fd, out.data() + got, out.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      return errno_status("read " + path, e);
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  out.resize(got);
  ::close(fd);
  return ok_status();
}

Status truncate_file(const std::string& path, std::uint64_t size) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno_status("open " + path, errno);
  Status st;
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    st = errno_status(fmt::format("truncate {} to {}", path, size), errno);
  } else if (::fdatasync(fd) != 0) {
    st = errno_status("fdatasync " + path, errno);
  }
  ::close(fd);
  return st;
}

Status write_all(int fd, const std::uint8_t* p, std::size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return errno_status("write " + path, errno);
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return ok_status();
}

}  // namespace

std::string segment_name(Lsn first_lsn) { return fmt::format("wal-{:020d}.seg", first_lsn); }

Result<int> lock_dir(const std::string& dir) {
  const std::string path = dir + "/LOCK";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return errno_status("open lock file " + path, errno);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    ::close(fd);
    if (e == EWOULDBLOCK) {
      return make_error(Errc::unavailable,
                        "wal dir " + dir + " is locked by another owner (is the node that owns it still running?)");
    }
    return errno_status("lock " + path, e);
  }
  return fd;
}

Status fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno_status("open dir " + dir, errno);
  Status st;
  if (::fsync(fd) != 0) st = errno_status("fsync dir " + dir, errno);
  ::close(fd);
  return st;
}

Result<int> create_segment(const std::string& dir, Lsn first_lsn, bool sync) {
  const std::string path = dir + "/" + segment_name(first_lsn);
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno_status("create " + tmp, errno);
  std::uint8_t hdr[kSegmentHeaderSize];
  encode_segment_header(hdr, first_lsn);
  Status st = write_all(fd, hdr, sizeof hdr, tmp);
  if (st.ok() && sync && ::fdatasync(fd) != 0) st = errno_status("fdatasync " + tmp, errno);
  if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) st = errno_status("rename " + tmp, errno);
  if (st.ok() && sync) st = fsync_dir(dir);
  if (!st.ok()) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return st;
  }
  return fd;
}

Result<RecoveryReport> recover_dir(const std::string& dir, RecoverMode mode, const RecordVisitor& visit) {
  const bool modify = mode == RecoverMode::open || mode == RecoverMode::repair;
  const bool repairing = mode == RecoverMode::repair || mode == RecoverMode::repair_dry_run;
  RecoveryReport rep;

  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return errno_status("open wal dir " + dir, errno);
  std::vector<SegmentFile> segs;
  std::vector<std::string> temps;
  while (dirent* e = ::readdir(d)) {
    const std::string_view name = e->d_name;
    Lsn lsn = 0;
    if (parse_segment_name(name, lsn)) {
      segs.push_back({lsn, dir + "/" + std::string(name), 0});
    } else if (name.substr(0, std::min(name.size(), kPrefix.size())) == kPrefix && ends_with(name, kTmpSuffix)) {
      temps.push_back(dir + "/" + std::string(name));
    }
  }
  ::closedir(d);
  std::sort(segs.begin(), segs.end(),
            [](const SegmentFile& a, const SegmentFile& b) { return a.first_lsn < b.first_lsn; });

  // A temp file is a segment whose creation did not finish (it was never renamed): never holds records.
  for (const auto& t : temps) {
    if (modify) {
      if (::unlink(t.c_str()) != 0) return errno_status("remove unfinished segment " + t, errno);
      log::warn("wal", "removed_unfinished_segment", "file={}", log::quoted(t));
    }
    rep.removed_temp_files.push_back(t);
  }

  std::vector<std::uint8_t> buf;
  for (std::size_t i = 0; i < segs.size(); ++i) {
    SegmentFile& sf = segs[i];
    const bool last = i + 1 == segs.size();
    HS_TRY(read_file(sf.path, buf));
    // Check the header and the LSN chain before visiting, so records of a segment that recovery
    // drops (bad header, gap) are never handed to the visitor.
    Lsn hdr_lsn = 0;
    std::string why;
    const bool chain_ok =
        decode_segment_header(buf, hdr_lsn, why) && hdr_lsn == sf.first_lsn && (i == 0 || hdr_lsn == rep.next_lsn);
    const SegmentScan s = scan_segment(buf, chain_ok && visit ? visit : RecordVisitor{});
    if (chain_ok) rep.records += s.records;

    std::string problem;  // non-empty: corruption at s.bad_offset (or the header)
    std::uint64_t cut = s.valid_end;
    if (!s.header_ok) {
      problem = fmt::format("segment file {} offset 0: {}", sf.path, s.header_error);
      cut = 0;
    } else if (s.first_lsn != sf.first_lsn) {
      problem =
          fmt::format("segment file {} offset 0: header first_lsn {} does not match its name", sf.path, s.first_lsn);
      cut = 0;
    } else if (i > 0 && s.first_lsn != rep.next_lsn) {
      problem = fmt::format("segment file {} offset 0: starts at lsn {} but the previous segment ends before lsn {}",
                            sf.path, s.first_lsn, rep.next_lsn);
      cut = 0;
    } else if (s.end == SegmentScan::End::corrupt) {
      problem = fmt::format(
          "segment file {} offset {}: bad record ({}, expected lsn {}) followed by a valid record at offset {} (lsn "
          "{})",
          sf.path, s.bad_offset, record_check_name(s.bad_reason), s.next_lsn, s.resync_offset, s.resync_lsn);
    } else if (s.end == SegmentScan::End::torn_tail && !last) {
      problem =
          fmt::format("segment file {} offset {}: bad record ({}, expected lsn {}) in a segment that is not the newest",
                      sf.path, s.bad_offset, record_check_name(s.bad_reason), s.next_lsn);
    }

    if (!problem.empty()) {
      if (!repairing) {
        return make_error(Errc::corruption, "wal corruption in " + problem +
                                                "; records after it cannot be trusted. Run `hyperscale wal repair " +
                                                dir +
                                                "` to truncate the log there (it prints what will be lost first).");
      }
      // Repair: keep the good prefix of this segment (or drop it entirely if its header is bad)
      // and every later segment.
      rep.corruption = problem;
      rep.lost_bytes += buf.size() - cut;
      rep.lost_records_at_least += s.records_after;
      for (std::size_t j = i + 1; j < segs.size(); ++j) {
        struct stat st {};
        if (::stat(segs[j].path.c_str(), &st) == 0) rep.lost_bytes += static_cast<std::uint64_t>(st.st_size);
        std::vector<std::uint8_t> later;
        if (read_file(segs[j].path, later).ok()) rep.lost_records_at_least += scan_segment(later).records;
        rep.dropped_segments.push_back(segs[j].path);
      }
      if (cut == 0) {
        rep.dropped_segments.insert(rep.dropped_segments.begin(), sf.path);
        rep.lost_records_at_least += s.records;
      }
      if (mode == RecoverMode::repair) {
        for (const auto& p : rep.dropped_segments) {
          if (::unlink(p.c_str()) != 0) return errno_status("remove segment " + p, errno);
        }
        if (cut != 0) HS_TRY(truncate_file(sf.path, cut));
        HS_TRY(fsync_dir(dir));
        log::warn("wal", "repaired", "dir={} corruption={} lost_records_at_least={} lost_bytes={} dropped_segments={}",
                  log::quoted(dir), log::quoted(problem), rep.lost_records_at_least, rep.lost_bytes,
                  rep.dropped_segments.size());
      }
      if (cut != 0) {
        sf.size = cut;
        rep.next_lsn = s.next_lsn;
        rep.segments.push_back(sf);
      }
      return rep;
    }

    if (s.end == SegmentScan::End::torn_tail) {
      rep.torn_tail = true;
      rep.torn_file = sf.path;
      rep.torn_offset = s.bad_offset;
      rep.torn_bytes = buf.size() - s.valid_end;
      rep.torn_reason = record_check_name(s.bad_reason);
      if (modify) {
        HS_TRY(truncate_file(sf.path, s.valid_end));
        log::warn("wal", "torn_tail_truncated", "file={} offset={} dropped_bytes={} reason={} next_lsn={}",
                  log::quoted(sf.path), s.valid_end, rep.torn_bytes, rep.torn_reason, s.next_lsn);
      }
    }
    sf.size = s.valid_end;
    rep.next_lsn = s.next_lsn;
    rep.segments.push_back(sf);
  }
  return rep;
}

}  // namespace hs::wal
