// A thread-safe log sink that keeps lines in memory (bounded), for tests of any module.
#pragma once

#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "hyperscale/base/log.hpp"

namespace hs::runtime {

class LogCapture final : public log::Sink {
 public:
  explicit LogCapture(std::size_t max_lines = 100'000, bool echo = false);
  ~LogCapture() override;  // restores the default sink
  void write(log::Level level, std::string_view line) noexcept override;
  std::vector<std::string> lines() const;
  // Lines containing every one of `needles`.
  std::vector<std::string> find(std::initializer_list<std::string_view> needles) const;
  bool contains(std::initializer_list<std::string_view> needles) const { return !find(needles).empty(); }
  void clear();

 private:
  mutable std::mutex mu_;
  std::deque<std::string> lines_;
  std::size_t max_lines_;
  bool echo_;
};

}  // namespace hs::runtime
