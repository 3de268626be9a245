#include "hyperscale/runtime/log_capture.hpp"

#include <cstdio>

namespace hs::runtime {

LogCapture::LogCapture(std::size_t max_lines, bool echo) : max_lines_(max_lines), echo_(echo) { log::set_sink(this); }
LogCapture::~LogCapture() { log::set_sink(nullptr); }

void LogCapture::write(log::Level, std::string_view line) noexcept {
  try {
    std::lock_guard lk(mu_);
    if (lines_.size() >= max_lines_) lines_.pop_front();
    lines_.emplace_back(line);
    if (echo_) std::fprintf(stderr, "%.*s\n", static_cast<int>(line.size()), line.data());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "log capture failed: %s\n", e.what());
  }
}

std::vector<std::string> LogCapture::lines() const {
  std::lock_guard lk(mu_);
  return {lines_.begin(), lines_.end()};
}

std::vector<std::string> LogCapture::find(std::initializer_list<std::string_view> needles) const {
  std::lock_guard lk(mu_);
  std::vector<std::string> out;
  for (const auto& l : lines_) {
    bool all = true;
    for (auto n : needles) {
      if (l.find(n) == std::string::npos) {
        all = false;
        break;
      }
    }
    if (all) out.push_back(l);
  }
  return out;
}

void LogCapture::clear() {
  std::lock_guard lk(mu_);
  lines_.clear();
}

}  // namespace hs::runtime
