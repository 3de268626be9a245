#include "hyperscale/base/alloc.hpp"

#include <cstdlib>
#include <cstring>

#include <fmt/format.h>
#include <mimalloc.h>

namespace hs::alloc {

int mimalloc_version() noexcept { return mi_version(); }

bool owned_by_mimalloc(const void* p) noexcept { return p != nullptr && mi_is_in_heap_region(p); }

bool malloc_is_mimalloc() noexcept {
  void* p = std::malloc(64);
  if (p != nullptr) std::memset(p, 0, 64);
  const bool ours = owned_by_mimalloc(p);
  std::free(p);
  return ours;
}

std::string describe() {
  const int v = mimalloc_version();
  const std::string ver = fmt::format("mimalloc {}.{}.{}", v / 100, (v / 10) % 10, v % 10);
  if (malloc_is_mimalloc()) return ver;
  return fmt::format("system/sanitizer malloc ({} linked)", ver);
}

Stats stats() noexcept {
  Stats s;
  std::size_t elapsed = 0, user = 0, sys = 0, peak_rss = 0, page_faults = 0;
  mi_process_info(&elapsed, &user, &sys, &s.current_rss, &peak_rss, &s.committed_bytes, &s.peak_committed_bytes,
                  &page_faults);
  return s;
}

}  // namespace hs::alloc
