#include "hyperscale/base/log.hpp"

#include <unistd.h>

#include <cerrno>
#include <ctime>

#include "hyperscale/base/enum_names.hpp"
#include "hyperscale/base/time.hpp"

namespace hs::log {
namespace {

// Set before shard threads start (see header); read-only afterwards.
Level g_level = Level::info;
Sink* g_sink = nullptr;
thread_local int t_shard = -1;

void write_stderr(std::string_view line) noexcept {
  // One write(2) per line: lines from different threads do not interleave.
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // stderr is gone; nowhere left to report it
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace

constexpr EnumNames<Level, 6> kLevelNames{{"trace", "debug", "info", "warn", "error", "off"}, "?"};
static_assert(kLevelNames.covers(Level::off));

std::string_view level_name(Level l) noexcept { return kLevelNames(l); }

bool parse_level(std::string_view s, Level& out) noexcept {
  for (int i = 0; i <= static_cast<int>(Level::off); ++i) {
    if (s == level_name(static_cast<Level>(i))) {
      out = static_cast<Level>(i);
      return true;
    }
  }
  return false;
}

void set_level(Level l) noexcept { g_level = l; }
Level level() noexcept { return g_level; }
void set_sink(Sink* sink) noexcept { g_sink = sink; }
void set_thread_shard(int shard) noexcept { t_shard = shard; }

namespace {
thread_local bool t_virtual = false;
thread_local std::int64_t t_virtual_ns = 0;
thread_local std::uint64_t t_virtual_node = 0;
}  // namespace

VirtualTimeScope::VirtualTimeScope(std::int64_t virtual_ns, std::uint64_t node) noexcept
    : prev_active_(t_virtual), prev_ns_(t_virtual_ns), prev_node_(t_virtual_node) {
  t_virtual = true;
  t_virtual_ns = virtual_ns;
  t_virtual_node = node;
}

VirtualTimeScope::~VirtualTimeScope() {
  t_virtual = prev_active_;
  t_virtual_ns = prev_ns_;
  t_virtual_node = prev_node_;
}
int thread_shard() noexcept { return t_shard; }

std::string quoted(std::string_view v) {
  std::string out;
  out.reserve(v.size() + 2);
  out.push_back('"');
  for (char c : v) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out.push_back(c);
    }
  }
  out.push_back('"');
  return out;
}

void emit(Level l, std::string_view component, std::string_view event, std::string_view fields) noexcept {
  if (!enabled(l)) return;
  try {
    const std::int64_t us = t_virtual ? t_virtual_ns / 1'000 : wall_time_us();
    const std::time_t secs = static_cast<std::time_t>(us / 1'000'000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    fmt::memory_buffer buf;
    fmt::format_to(std::back_inserter(buf),
                   "ts={:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z level={} shard=", tm.tm_year + 1900, tm.tm_mon + 1,
                   tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, us % 1'000'000, level_name(l));
    if (t_shard < 0) {
      fmt::format_to(std::back_inserter(buf), "main");
    } else {
      fmt::format_to(std::back_inserter(buf), "{}", t_shard);
    }
    if (t_virtual && t_virtual_node != 0) fmt::format_to(std::back_inserter(buf), " node={}", t_virtual_node);
    fmt::format_to(std::back_inserter(buf), " comp={} event={}", component, event);
    if (!fields.empty()) fmt::format_to(std::back_inserter(buf), " {}", fields);
    if (g_sink != nullptr) {
      g_sink->write(l, std::string_view(buf.data(), buf.size()));
    } else {
      buf.push_back('\n');
      write_stderr(std::string_view(buf.data(), buf.size()));
    }
  } catch (const std::exception& e) {
    // Formatting or allocation failed: fall back to a fixed line so the event is not lost.
    write_stderr("level=error comp=log event=log_failed reason=");
    write_stderr(e.what());
    write_stderr("\n");
  }
}

}  // namespace hs::log
