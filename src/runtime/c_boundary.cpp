#include "hyperscale/runtime/c_boundary.hpp"

#include <unistd.h>

#include <atomic>

#include "hyperscale/base/log.hpp"

namespace hs::runtime {

namespace {
std::atomic<std::uint64_t> g_callback_errors{0};
}  // namespace

void callback_failed(metrics::Registry* registry, std::string_view callback, std::string_view context,
                     std::string_view what) noexcept {
  g_callback_errors.fetch_add(1, std::memory_order_relaxed);
  try {
    log::error("runtime", "callback_exception", "callback={} about={} error={}", callback, log::quoted(context),
               log::quoted(what));
    if (registry != nullptr)
      registry
          ->counter("hs_callback_errors_total",
                    "Exceptions caught at a C callback boundary (libuv, llhttp), by callback",
                    {{"callback", std::string(callback)}})
          .inc();
  } catch (...) {
    // Logging or counting itself failed (out of memory): say so on stderr, the last place left.
    static constexpr char kMsg[] = "hyperscale: callback_exception could not be logged or counted\n";
    const ssize_t n = ::write(STDERR_FILENO, kMsg, sizeof kMsg - 1);
    (void)n;  // stderr is gone: nowhere left to report it
  }
}

std::uint64_t callback_errors_total() noexcept { return g_callback_errors.load(std::memory_order_relaxed); }

}  // namespace hs::runtime
