// Helpers shared by the WAL tests: temp dirs, driving a standalone reactor, deterministic payloads.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "hyperscale/runtime/reactor.hpp"

namespace hs::wal::test {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/hs-wal-test-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

// Runs the reactor until `done()` or the deadline; returns done().
inline bool run_until(runtime::Reactor& r, const std::function<bool()>& done,
                      std::chrono::milliseconds limit = std::chrono::milliseconds(20000)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return false;
    r.run_nowait();
    if (!done()) std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  return true;
}

// Deterministic payload for an LSN (lets a verifier check any recovered record on its own).
inline std::vector<std::uint8_t> payload_for(std::uint64_t lsn, std::size_t max_len = 64) {
  const std::size_t n = static_cast<std::size_t>(lsn % max_len) + 1;
  std::vector<std::uint8_t> p;
  p.reserve(n);
  for (std::size_t i = 0; i < n; ++i) p.push_back(static_cast<std::uint8_t>(lsn * 131 + i * 7));
  return p;
}
inline std::uint32_t type_for(std::uint64_t lsn) { return static_cast<std::uint32_t>(lsn % 5 + 1); }

inline std::vector<std::uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(f), {});
}
inline void write_bytes(const std::string& path, const std::uint8_t* p, std::size_t n) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(p), static_cast<std::streamsize>(n));
}

}  // namespace hs::wal::test
