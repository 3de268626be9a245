// Monotonic time behind an interface, so tests and the simulator can drive time.
//
// All hyperscale code reads time through a Clock&. Production code uses MonotonicClock
// (CLOCK_MONOTONIC); tests use ManualClock; the simulator provides its own virtual clock.
#pragma once

#include <chrono>
#include <cstdint>

namespace hs {

using Duration = std::chrono::nanoseconds;
// A point on a monotonic clock, as the duration since that clock's (arbitrary) origin.
using Instant = std::chrono::nanoseconds;

using namespace std::chrono_literals;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual Instant now() const noexcept = 0;
};

// CLOCK_MONOTONIC. Stateless; one shared instance is fine on every thread.
class MonotonicClock final : public Clock {
 public:
  Instant now() const noexcept override;
  static MonotonicClock& instance() noexcept;
};

// A clock that only moves when told to. Single-threaded: owned by one test or shard.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(Instant start = Instant{0}) : now_(start) {}
  Instant now() const noexcept override { return now_; }
  void advance(Duration d) noexcept { now_ += d; }
  void set(Instant t) noexcept { now_ = t; }

 private:
  Instant now_;
};

// Wall-clock time (CLOCK_REALTIME) for log timestamps and reports only; never for timeouts.
std::int64_t wall_time_us() noexcept;

inline double to_seconds(Duration d) { return std::chrono::duration<double>(d).count(); }
inline double to_millis(Duration d) { return std::chrono::duration<double, std::milli>(d).count(); }
inline double to_micros(Duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

}  // namespace hs
