#include "hyperscale/wal/format.hpp"

#include <cstring>

#include "hyperscale/base/enum_names.hpp"
#include "hyperscale/base/crc32c.hpp"

namespace hs::wal {
namespace {

constexpr char kMagic[8] = {'H', 'S', 'W', 'A', 'L', 'S', 'G', '1'};

inline void put32(std::uint8_t* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
inline void put64(std::uint8_t* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
inline std::uint32_t get32(const std::uint8_t* p) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
inline std::uint64_t get64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// CRC over the length field, then everything after the crc field.
inline std::uint32_t record_crc(const std::uint8_t* rec, std::size_t payload_len) {
  std::uint32_t c = crc32c::value(rec, 4);
  return crc32c::extend(c, rec + 8, kRecordHeaderSize - 8 + payload_len);
}

}  // namespace

void encode_record(std::vector<std::uint8_t>& out, Lsn lsn, std::uint32_t type, std::span<const std::uint8_t> payload) {
  const std::size_t at = out.size();
  out.resize(at + kRecordHeaderSize + payload.size());
  std::uint8_t* p = out.data() + at;
  put32(p, static_cast<std::uint32_t>(payload.size()));
  put64(p + 8, lsn);
  put32(p + 16, type);
  if (!payload.empty()) std::memcpy(p + kRecordHeaderSize, payload.data(), payload.size());
  put32(p + 4, record_crc(p, payload.size()));
}

void encode_segment_header(std::uint8_t* out, Lsn first_lsn) {
  std::memcpy(out, kMagic, 8);
  put32(out + 8, kFormatVersion);
  put32(out + 12, 0);
  put64(out + 16, first_lsn);
  put32(out + 24, crc32c::value(out, 24));
  put32(out + 28, 0);
}

bool decode_segment_header(std::span<const std::uint8_t> b, Lsn& first_lsn, std::string& why) {
  if (b.size() < kSegmentHeaderSize) {
    why = "short segment header (" + std::to_string(b.size()) + " bytes)";
    return false;
  }
  if (std::memcmp(b.data(), kMagic, 8) != 0) {
    why = "bad segment magic";
    return false;
  }
  if (get32(b.data() + 24) != crc32c::value(b.data(), 24)) {
    why = "segment header crc mismatch";
    return false;
  }
  const std::uint32_t version = get32(b.data() + 8);
  if (version != kFormatVersion) {
    why = "unsupported segment version " + std::to_string(version);
    return false;
  }
  first_lsn = get64(b.data() + 16);
  if (first_lsn == 0) {
    why = "segment header first_lsn is 0";
    return false;
  }
  return true;
}

constexpr EnumNames<RecordCheck, 6> kRecordCheckNames{
    {"ok", "short_header", "short_payload", "bad_length", "crc_mismatch", "lsn_out_of_sequence"}};
static_assert(kRecordCheckNames.covers(RecordCheck::bad_lsn));

const char* record_check_name(RecordCheck c) noexcept { return kRecordCheckNames(c); }

RecordCheck decode_record(std::span<const std::uint8_t> b, Lsn expected_lsn, RecordView& out, std::size_t& size) {
  if (b.size() < kRecordHeaderSize) return RecordCheck::short_header;
  const std::uint32_t len = get32(b.data());
  if (len > kMaxPayload) return RecordCheck::bad_length;
  if (b.size() - kRecordHeaderSize < len) return RecordCheck::short_payload;
  if (get32(b.data() + 4) != record_crc(b.data(), len)) return RecordCheck::bad_crc;
  const Lsn lsn = get64(b.data() + 8);
  if (lsn != expected_lsn) return RecordCheck::bad_lsn;
  out.lsn = lsn;
  out.type = get32(b.data() + 16);
  out.payload = b.subspan(kRecordHeaderSize, len);
  size = kRecordHeaderSize + len;
  return RecordCheck::ok;
}

bool find_next_valid(std::span<const std::uint8_t> b, std::size_t from, Lsn min_lsn, Lsn max_lsn, std::size_t& offset,
                     RecordView& rec, std::size_t& size) {
  for (std::size_t p = from; p + kRecordHeaderSize <= b.size(); ++p) {
    const std::uint8_t* h = b.data() + p;
    const Lsn lsn = get64(h + 8);
    if (lsn < min_lsn || lsn > max_lsn) continue;
    const std::uint32_t len = get32(h);
    if (len > kMaxPayload || b.size() - p - kRecordHeaderSize < len) continue;
    if (decode_record(b.subspan(p), lsn, rec, size) == RecordCheck::ok) {
      offset = p;
      return true;
    }
  }
  return false;
}

SegmentScan scan_segment(std::span<const std::uint8_t> b, const std::function<void(const RecordView&)>& visit) {
  SegmentScan s;
  if (!decode_segment_header(b, s.first_lsn, s.header_error)) {
    s.end = SegmentScan::End::corrupt;
    s.bad_offset = 0;
    return s;
  }
  s.header_ok = true;
  s.next_lsn = s.first_lsn;
  std::size_t off = kSegmentHeaderSize;
  s.valid_end = off;
  while (off < b.size()) {
    RecordView rec;
    std::size_t size = 0;
    const RecordCheck c = decode_record(b.subspan(off), s.next_lsn, rec, size);
    if (c != RecordCheck::ok) {
      s.bad_offset = off;
      s.bad_reason = c;
      // Does any valid later record follow? Then this is corruption, not a torn tail.
      const Lsn max_lsn = s.next_lsn + (b.size() - off) / kRecordHeaderSize + 1;
      std::size_t at = 0;
      if (find_next_valid(b, off + 1, s.next_lsn, max_lsn, at, rec, size)) {
        s.end = SegmentScan::End::corrupt;
        s.resync_offset = at;
        s.resync_lsn = rec.lsn;
        // Count the run of valid records from there (what a repair would drop).
        std::size_t p = at + size;
        Lsn want = rec.lsn + 1;
        s.records_after = 1;
        while (p < b.size() && decode_record(b.subspan(p), want, rec, size) == RecordCheck::ok) {
          ++s.records_after;
          ++want;
          p += size;
        }
      } else {
        s.end = SegmentScan::End::torn_tail;
      }
      return s;
    }
    if (visit) visit(rec);
    ++s.records;
    ++s.next_lsn;
    off += size;
    s.valid_end = off;
  }
  s.end = SegmentScan::End::clean;
  return s;
}

}  // namespace hs::wal
