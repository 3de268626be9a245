// HS_ASSERT: an invariant a component relies on, stated in code and checked in every build type
// (it does not depend on NDEBUG). A failed assertion is fail-stop: it logs one error line with the
// file, line, condition and the values given, then calls the failure handler, which by default
// aborts the process. The simulator installs a handler that records the seed being run, so a failed
// invariant is reported as a found bug with the seed that replays it.
//
//   HS_ASSERT(token > last, "fence token must grow: token={} last={} workflow={}", token, last, wf);
//
// The message arguments are only formatted when the condition is false.
#pragma once

#include <string_view>

#include <fmt/format.h>

namespace hs {

// Called after the error line is logged. Must not return normally (abort, or throw to a test
// harness that stops the run). Set before shard threads start; process-global.
using AssertHandler = void (*)(std::string_view file, int line, std::string_view condition, std::string_view values);
void set_assert_handler(AssertHandler h) noexcept;  // nullptr restores the default (abort)
AssertHandler assert_handler() noexcept;            // the handler set now (nullptr: the default)

[[noreturn]] void assert_failed(std::string_view file, int line, std::string_view condition, std::string_view values);

namespace detail {
template <typename... A>
[[noreturn]] void assert_failed_fmt(std::string_view file, int line, std::string_view condition,
                                    fmt::format_string<A...> f, A&&... a) {
  assert_failed(file, line, condition, fmt::format(f, std::forward<A>(a)...));
}
[[noreturn]] inline void assert_failed_fmt(std::string_view file, int line, std::string_view condition) {
  assert_failed(file, line, condition, {});
}
}  // namespace detail

}  // namespace hs

#define HS_ASSERT(cond, ...)                                                                 \
  do {                                                                                       \
    if (!(cond)) [[unlikely]] {                                                              \
      ::hs::detail::assert_failed_fmt(__FILE__, __LINE__, #cond __VA_OPT__(, ) __VA_ARGS__); \
    }                                                                                        \
  } while (0)
