// Structured logging: one line per event, logfmt style, with the shard id and component on every line.
//
//   ts=2026-11-28T06:50:01.123456Z level=warn shard=0 comp=runtime event=task_error task=gc error="..."
//
// Usage:  hs::log::warn("wal", "fsync_failed", "file={} error={}", path, quoted(err));
// Fields are free-form `key=value` text formatted with fmt; use log::quoted() for values with spaces.
//
// Configuration (level, sink) is process-global and must be set before shard threads start.
// Each line is handed to the sink in one call; the default sink writes it to stderr with a single
// write(2), so lines from different shards never interleave.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace hs::log {

enum class Level : int { trace = 0, debug, info, warn, error, off };

std::string_view level_name(Level l) noexcept;
// Parses "trace|debug|info|warn|error|off"; returns false on anything else.
bool parse_level(std::string_view s, Level& out) noexcept;

class Sink {
 public:
  virtual ~Sink() = default;
  // `line` has no trailing newline. Called from any shard thread.
  virtual void write(Level level, std::string_view line) noexcept = 0;
};

void set_level(Level l) noexcept;
Level level() noexcept;
inline bool enabled(Level l) noexcept { return l >= level(); }
// nullptr restores the default stderr sink. The sink must outlive all logging.
void set_sink(Sink* sink) noexcept;

// The shard id printed on lines from this thread; -1 (printed as "main") outside shard threads.
void set_thread_shard(int shard) noexcept;

// Virtual time for the lines of this thread (the simulator's hook). While a scope lives, `ts=` is
// `virtual_ns` (counted from the Unix epoch: virtual t=0 prints as 1970-01-01T00:00:00.000000Z) instead of
// the wall clock, and a non-zero `node` adds `node=<id>` after the shard. The simulator opens one around
// each event it delivers, so the role code's lines carry the virtual time of the event they belong to.
// Scopes nest; the destructor restores what was there before.
class VirtualTimeScope {
 public:
  VirtualTimeScope(std::int64_t virtual_ns, std::uint64_t node) noexcept;
  ~VirtualTimeScope();
  VirtualTimeScope(const VirtualTimeScope&) = delete;
  VirtualTimeScope& operator=(const VirtualTimeScope&) = delete;

 private:
  bool prev_active_;
  std::int64_t prev_ns_;
  std::uint64_t prev_node_;
};
int thread_shard() noexcept;

// Emits one line. `fields` is appended verbatim after the standard prefix.
void emit(Level l, std::string_view component, std::string_view event, std::string_view fields) noexcept;

// Quotes a value for logfmt: wraps in "…" and escapes backslash, quote and newline.
std::string quoted(std::string_view v);

template <typename... A>
void logf(Level l, std::string_view comp, std::string_view event, fmt::format_string<A...> f, A&&... a) {
  if (!enabled(l)) return;
  fmt::memory_buffer buf;
  fmt::format_to(std::back_inserter(buf), f, std::forward<A>(a)...);
  emit(l, comp, event, std::string_view(buf.data(), buf.size()));
}

inline void logf(Level l, std::string_view comp, std::string_view event) {
  if (enabled(l)) emit(l, comp, event, {});
}

template <typename... A>
void trace(std::string_view c, std::string_view e, fmt::format_string<A...> f, A&&... a) {
  logf(Level::trace, c, e, f, std::forward<A>(a)...);
}
template <typename... A>
void debug(std::string_view c, std::string_view e, fmt::format_string<A...> f, A&&... a) {
  logf(Level::debug, c, e, f, std::forward<A>(a)...);
}
template <typename... A>
void info(std::string_view c, std::string_view e, fmt::format_string<A...> f, A&&... a) {
  logf(Level::info, c, e, f, std::forward<A>(a)...);
}
template <typename... A>
void warn(std::string_view c, std::string_view e, fmt::format_string<A...> f, A&&... a) {
  logf(Level::warn, c, e, f, std::forward<A>(a)...);
}
template <typename... A>
void error(std::string_view c, std::string_view e, fmt::format_string<A...> f, A&&... a) {
  logf(Level::error, c, e, f, std::forward<A>(a)...);
}

inline void trace(std::string_view c, std::string_view e) { logf(Level::trace, c, e); }
inline void debug(std::string_view c, std::string_view e) { logf(Level::debug, c, e); }
inline void info(std::string_view c, std::string_view e) { logf(Level::info, c, e); }
inline void warn(std::string_view c, std::string_view e) { logf(Level::warn, c, e); }
inline void error(std::string_view c, std::string_view e) { logf(Level::error, c, e); }

}  // namespace hs::log
