#include "hyperscale/base/assert.hpp"

#include <cstdlib>

#include "hyperscale/base/log.hpp"

namespace hs {
namespace {
AssertHandler g_handler = nullptr;
}

void set_assert_handler(AssertHandler h) noexcept { g_handler = h; }
AssertHandler assert_handler() noexcept { return g_handler; }

void assert_failed(std::string_view file, int line, std::string_view condition, std::string_view values) {
  log::logf(log::Level::error, "assert", "assertion_failed", "file={} line={} condition={} values={}", file, line,
            log::quoted(condition), log::quoted(values));
  if (g_handler != nullptr) g_handler(file, line, condition, values);
  // A handler that returned (it must not) still stops the process: nothing after a broken
  // invariant may run.
  std::abort();
}

}  // namespace hs
