// libFuzzer target: recovery of an arbitrary segment file (the pure scan that Wal::open and
// `hyperscale wal repair` run over each segment). The input is used twice: as a whole segment file,
// and as the records after a valid segment header (so the fuzzer reaches the record decoder at once).
// Invariants checked: the scan stays inside the buffer (ASan), offsets are consistent, LSNs are
// dense, and the kept prefix (what recovery truncates to) rescans clean with the same records.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "hyperscale/wal/format.hpp"

using namespace hs::wal;

namespace {

void check(const std::vector<std::uint8_t>& seg) {
  std::size_t visited = 0;
  Lsn prev = 0;
  const SegmentScan s = scan_segment(seg, [&](const RecordView& r) {
    if (visited > 0 && r.lsn != prev + 1) std::abort();
    if (r.payload.data() < seg.data() || r.payload.data() + r.payload.size() > seg.data() + seg.size()) std::abort();
    prev = r.lsn;
    ++visited;
  });
  if (visited != s.records) std::abort();
  if (!s.header_ok) {
    if (s.end != SegmentScan::End::corrupt || s.records != 0) std::abort();
    return;
  }
  if (s.valid_end > seg.size() || s.valid_end < kSegmentHeaderSize) std::abort();
  if (s.next_lsn != s.first_lsn + s.records) std::abort();
  switch (s.end) {
    case SegmentScan::End::clean:
      if (s.valid_end != seg.size()) std::abort();
      break;
    case SegmentScan::End::torn_tail:
      if (s.bad_offset != s.valid_end || s.valid_end >= seg.size()) std::abort();
      break;
    case SegmentScan::End::corrupt:
      if (s.bad_offset != s.valid_end || s.resync_offset <= s.bad_offset || s.resync_offset >= seg.size()) std::abort();
      if (s.resync_lsn < s.next_lsn || s.records_after == 0) std::abort();
      break;
  }
  // What recovery keeps (truncate at valid_end) must scan clean with the same records.
  const std::vector<std::uint8_t> kept(seg.begin(), seg.begin() + static_cast<std::ptrdiff_t>(s.valid_end));
  const SegmentScan k = scan_segment(kept);
  if (k.end != SegmentScan::End::clean || k.records != s.records || k.next_lsn != s.next_lsn) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::uint8_t> raw(data, data + size);
  check(raw);
  std::vector<std::uint8_t> with_header(kSegmentHeaderSize);
  encode_segment_header(with_header.data(), 1 + (size > 0 ? data[0] % 4 : 0));
  with_header.insert(with_header.end(), data, data + size);
  check(with_header);
  return 0;
}
