// libFuzzer target: the live window encoding and merger (include/hyperscale/load/window.hpp).
//
// The input is decoded as one window and as a batch. What decodes must re-encode to bytes that decode
// again to the same encoding (an input may hold non-canonical varints, so the first encoding need not
// equal the input). Every decoded window is then fed to a merger of workflow "w" with steps a, b, c
// (moving its `now` by the window index's low bits first): the merger must never accept a refused
// window, must keep its ring within max_windows, and its totals must equal the sum of the windows it
// accepted (merged or late). A mismatch aborts; so does any crash, sanitizer report or leak.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "hyperscale/load/window.hpp"

using namespace hs::load;

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_window: %s\n", what);
  std::abort();
}

void round_trip(const Window& w) {
  const auto once = encode_window(w);
  auto again = decode_window(once);
  if (!again.ok()) fail("the encoding of a decoded window does not decode");
  if (encode_window(*again) != once) fail("encode(decode(encode(w))) differs from encode(w)");
}

void merge_all(const std::vector<Window>& ws) {
  WindowMerger m("w", {"a", "b", "c"}, WindowMergerConfig{.lateness = 2, .max_ahead = 4, .max_windows = 16});
  std::uint64_t accepted_executed = 0, accepted_started = 0;
  for (const auto& w : ws) {
    m.advance(m.now() + (w.index & 3));
    const auto before = m.counters();
    auto r = m.add(w);
    if (!r.ok()) {
      if (m.counters().refused != before.refused + 1) fail("a refused window was not counted as refused");
      continue;
    }
    if (*r == WindowAdd::merged || *r == WindowAdd::late) {
      for (const auto& s : w.steps) accepted_executed += s.total.executed;
      accepted_started += w.iterations.started;
    }
    if (m.retained() > m.config().max_windows) fail("the ring holds more than max_windows windows");
  }
  std::uint64_t executed = 0;
  for (const auto& s : m.totals().steps) {
    executed += s.total.executed;
    if (s.latency.count() != s.measured.executed) fail("totals: latency samples differ from measured requests");
  }
  if (executed != accepted_executed || m.totals().iterations.started != accepted_started)
    fail("totals differ from the sum of the accepted windows");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (auto w = decode_window(data, size); w.ok()) {
    round_trip(*w);
    merge_all({*w, *w});
  }
  if (auto ws = decode_windows(data, size); ws.ok()) {
    for (const auto& w : *ws) round_trip(w);
    if (encode_windows(*ws) != encode_windows(*decode_windows(encode_windows(*ws))))
      fail("a batch does not round-trip");
    merge_all(*ws);
  }
  return 0;
}
