// Child process for the WAL crash test: opens the WAL in DIR (durability fsync), keeps 32 appends
// outstanding forever, and prints each acknowledged LSN on its own line to stdout (one write(2)
// per acknowledgement, after the append completed durably). The test kills it with SIGKILL.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <functional>

#include "hyperscale/base/log.hpp"
#include "hyperscale/runtime/reactor.hpp"
#include "hyperscale/wal/wal.hpp"
#include "wal_test_util.hpp"

using namespace hs;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: wal_crash_child DIR\n");
    return 2;
  }
  log::set_level(log::Level::warn);
  runtime::Reactor r;
  wal::WalOptions o;
  o.dir = argv[1];
  o.segment_bytes = 64 << 10;  // several rollovers per run
  auto w = wal::Wal::open(r, o);
  if (!w.ok()) {
    std::fprintf(stderr, "wal_crash_child: open: %s\n", w.status().to_string().c_str());
    return 1;
  }
  wal::Wal& wal = **w;
  std::function<void()> one;
  one = [&]() {
    const wal::Lsn want = wal.next_lsn();
    auto p = wal::test::payload_for(want);
    auto lsn = wal.append(wal::test::type_for(want), p, [&, want](Status st) {
      if (!st.ok()) {
        std::fprintf(stderr, "wal_crash_child: append %llu failed: %s\n", static_cast<unsigned long long>(want),
                     st.to_string().c_str());
        std::_Exit(1);
      }
      char line[32];
      const int n = std::snprintf(line, sizeof line, "%llu\n", static_cast<unsigned long long>(want));
      if (::write(1, line, static_cast<std::size_t>(n)) != n) std::_Exit(1);
      one();
    });
    if (!lsn.ok() || lsn.value() != want) {
      std::fprintf(stderr, "wal_crash_child: append refused: %s\n", lsn.status().to_string().c_str());
      std::_Exit(1);
    }
  };
  for (int i = 0; i < 32; ++i) one();
  r.run();
  return 0;
}
