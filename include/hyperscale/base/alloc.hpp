// The global allocator. Every hyperscale binary links mimalloc, which replaces malloc/free and
// therefore operator new/delete. Under AddressSanitizer the sanitizer's allocator takes precedence
// (it must, to find memory errors); mimalloc stays linked but unused for malloc.
#pragma once

#include <cstddef>
#include <string>

namespace hs::alloc {

// mimalloc's version number, e.g. 217 for 2.1.7 (proves the library is linked).
int mimalloc_version() noexcept;
// True if `p` (from malloc or new) lies in memory managed by mimalloc.
bool owned_by_mimalloc(const void* p) noexcept;
// True if malloc() in this process is served by mimalloc (checked by allocating).
bool malloc_is_mimalloc() noexcept;
// "mimalloc 2.0.9" or "sanitizer (mimalloc 2.0.9 linked)".
std::string describe();

struct Stats {
  std::size_t committed_bytes = 0;
  std::size_t peak_committed_bytes = 0;
  std::size_t current_rss = 0;
};
Stats stats() noexcept;

}  // namespace hs::alloc
