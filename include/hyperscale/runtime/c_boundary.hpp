#pragma once
// C callbacks (libuv, llhttp) must not let a C++ exception unwind through C frames: that is undefined
// behaviour, and in practice a crash far from the cause. Every function handed to a C library as a
// callback is noexcept and runs its body through `at_c_boundary`, which catches, logs the callback's
// name with context, counts it (hs_callback_errors_total{callback=...} in the reactor's registry when one
// is given, and a process-wide total), and returns false so the callback takes its safe action: close that
// connection, fail that request. Nothing here is silent, and the loop keeps running.
#include <cstdint>
#include <exception>
#include <string_view>

#include "hyperscale/base/metrics.hpp"

namespace hs::runtime {

// Logs and counts one exception caught at a C callback boundary. Never throws.
void callback_failed(metrics::Registry* registry, std::string_view callback, std::string_view context,
                     std::string_view what) noexcept;

// Exceptions caught at C callback boundaries in this process so far (all threads).
std::uint64_t callback_errors_total() noexcept;

// Runs `fn()`; true when it returned, false when it threw (then logged and counted; see above).
// `context` is a short key=value text naming what the callback was working on (e.g. "step=login").
template <typename Fn>
bool at_c_boundary(metrics::Registry* registry, std::string_view callback, std::string_view context, Fn&& fn) noexcept {
  try {
    fn();
    return true;
  } catch (const std::exception& e) {
    callback_failed(registry, callback, context, e.what());
  } catch (...) {
    callback_failed(registry, callback, context, "an exception that is not a std::exception");
  }
  return false;
}

}  // namespace hs::runtime
