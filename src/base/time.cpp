#include "hyperscale/base/time.hpp"

#include <time.h>

namespace hs {

Instant MonotonicClock::now() const noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return Instant{std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec};
}

MonotonicClock& MonotonicClock::instance() noexcept {
  static MonotonicClock clock;
  return clock;
}

std::int64_t wall_time_us() noexcept {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000 + ts.tv_nsec / 1000;
}

}  // namespace hs
