// WAL on-disk format: the record codec and the recovery scan, as pure functions over bytes
// (no I/O), so they are easy to test exhaustively and to fuzz.
//
// A segment file is a 32-byte header followed by records, all little-endian:
//
//   segment header: magic "HSWALSG1" (8) | version u32 = 1 | reserved u32 = 0 | first_lsn u64 |
//                   crc32c of the previous 24 bytes u32 | reserved u32 = 0
//   record:         length u32 (payload bytes) | crc32c u32 | lsn u64 | type u32 | payload
//                   crc32c covers length, lsn, type and payload (every record byte except itself)
//
// LSNs are dense: the first record of a segment has the header's first_lsn, each next record +1.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace hs::wal {

using Lsn = std::uint64_t;

inline constexpr std::size_t kSegmentHeaderSize = 32;
inline constexpr std::size_t kRecordHeaderSize = 20;
inline constexpr std::uint32_t kFormatVersion = 1;
// Hard upper bound of one record's payload; larger lengths are treated as corruption by the scan.
inline constexpr std::uint32_t kMaxPayload = 16u << 20;

struct RecordView {
  Lsn lsn = 0;
  std::uint32_t type = 0;
  std::span<const std::uint8_t> payload;
};

inline std::size_t encoded_size(std::size_t payload_len) { return kRecordHeaderSize + payload_len; }

// Appends one encoded record to `out`.
void encode_record(std::vector<std::uint8_t>& out, Lsn lsn, std::uint32_t type, std::span<const std::uint8_t> payload);
// Writes the segment header into `out` (exactly kSegmentHeaderSize bytes).
void encode_segment_header(std::uint8_t* out, Lsn first_lsn);

// Parses a segment header; false if short, wrong magic/version or CRC mismatch (`why` says which).
bool decode_segment_header(std::span<const std::uint8_t> bytes, Lsn& first_lsn, std::string& why);

// Tries to decode one record at the start of `bytes` that must carry `expected_lsn`.
enum class RecordCheck { ok, short_header, short_payload, bad_length, bad_crc, bad_lsn };
const char* record_check_name(RecordCheck c) noexcept;
RecordCheck decode_record(std::span<const std::uint8_t> bytes, Lsn expected_lsn, RecordView& out, std::size_t& size);

// Result of scanning one segment's bytes.
struct SegmentScan {
  enum class End {
    clean,      // every byte after the header is a valid record
    torn_tail,  // the bytes after the last valid record hold no valid record: a torn write
    corrupt,    // a bad record is followed by valid records (or the header is bad)
  };
  End end = End::clean;
  bool header_ok = false;
  std::string header_error;
  Lsn first_lsn = 0;
  Lsn next_lsn = 0;            // lsn the next appended record gets (first_lsn + records)
  std::size_t records = 0;     // valid records before the first bad one
  std::size_t valid_end = 0;   // byte offset just after the last valid record
  std::size_t bad_offset = 0;  // offset of the first bad record (torn_tail / corrupt)
  RecordCheck bad_reason = RecordCheck::ok;
  // For `corrupt`: the first valid record found after the bad one, and how many valid records follow.
  std::size_t resync_offset = 0;
  Lsn resync_lsn = 0;
  std::size_t records_after = 0;
};

// Scans a whole segment. `visit` (optional) is called for each valid record in order, before the
// first bad one. The scan never reads outside `bytes`.
SegmentScan scan_segment(std::span<const std::uint8_t> bytes, const std::function<void(const RecordView&)>& visit = {});

// Looks for the first offset >= `from` at which a valid record with lsn in [min_lsn, max_lsn] starts.
// Returns false if there is none. Cheap checks run before the CRC, so random bytes are scanned fast.
bool find_next_valid(std::span<const std::uint8_t> bytes, std::size_t from, Lsn min_lsn, Lsn max_lsn,
                     std::size_t& offset, RecordView& rec, std::size_t& size);

}  // namespace hs::wal
