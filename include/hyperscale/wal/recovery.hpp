// Directory-level recovery: lists a WAL directory's segments, scans them in order with the pure
// scan in format.hpp, and applies the recovery rules (see docs/wal.md):
//   * a torn tail of the newest segment (a short or CRC-bad last record with no valid record after
//     it) is truncated away (mode `open`) and appending continues after the last good record;
//   * a bad record followed by valid records, a bad record in an older segment, a bad segment header
//     or an LSN gap between segments is corruption: an error naming the file and byte offset;
//   * mode `repair` truncates at the corruption and deletes later segments, reporting what is lost.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "hyperscale/base/status.hpp"
#include "hyperscale/wal/format.hpp"

namespace hs::wal {

struct SegmentFile {
  Lsn first_lsn = 0;
  std::string path;
  std::uint64_t size = 0;  // bytes after recovery
};

enum class RecoverMode {
  read_only,       // change nothing; a torn tail is reported and skipped; corruption is an error
  open,            // truncate a torn tail; corruption is an error
  repair_dry_run,  // report what `repair` would drop; change nothing
  repair,          // truncate at the first bad record (torn or corrupt) and delete every later segment
};

struct RecoveryReport {
  std::vector<SegmentFile> segments;  // in LSN order, after recovery
  Lsn next_lsn = 1;
  std::uint64_t records = 0;  // valid records visited
  // Torn tail found in the newest segment (truncated unless read_only).
  bool torn_tail = false;
  std::string torn_file;
  std::uint64_t torn_offset = 0;
  std::uint64_t torn_bytes = 0;
  std::string torn_reason;
  // Corruption found (repair modes only; the other modes return an error instead).
  std::string corruption;  // human-readable: file, offset, reason
  std::uint64_t lost_records_at_least = 0;
  std::uint64_t lost_bytes = 0;
  std::vector<std::string> dropped_segments;
  std::vector<std::string> removed_temp_files;
};

using RecordVisitor = std::function<void(const RecordView&)>;

// Scans `dir` (which must exist). `visit` sees every valid record in LSN order; if an error is
// returned, records already visited must be discarded by the caller.
Result<RecoveryReport> recover_dir(const std::string& dir, RecoverMode mode, const RecordVisitor& visit = {});

// Segment file name for a first LSN: wal-00000000000000000001.seg
std::string segment_name(Lsn first_lsn);
// Takes an exclusive advisory lock (flock) on DIR/LOCK and returns its fd (close it to release).
// One owner per log directory: Wal::open holds it while open, `hyperscale wal repair` while repairing.
// Fails with Errc::unavailable when another open file description holds it.
Result<int> lock_dir(const std::string& dir);
// fsync a directory (after creating, renaming or deleting entries).
Status fsync_dir(const std::string& dir);
// Creates dir/segment_name(first_lsn) with its header, durably (temp file, fsync, rename, dir fsync
// unless sync is false). Returns the open fd (O_WRONLY) positioned for appends at kSegmentHeaderSize.
Result<int> create_segment(const std::string& dir, Lsn first_lsn, bool sync);

}  // namespace hs::wal
