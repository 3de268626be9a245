// MemDisk: the simulator's in-memory node::Disk (also the disk of a host run without a data
// directory). Writes are durable when they return. Hard bounds (total bytes, keys, logs): over a
// bound a write is refused with Errc::backpressure and nothing changes.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "hyperscale/node/node.hpp"

namespace hs::sim {

class MemDisk final : public node::Disk {
 public:
  struct Limits {
    std::size_t max_bytes = 64 << 20;
    std::size_t max_keys = 100'000;
    std::size_t max_logs = 1'000;
  };
  MemDisk() : MemDisk(Limits{}) {}
  explicit MemDisk(Limits limits) : limits_(limits) {}

  Status put(const std::string& key, std::span<const std::uint8_t> value) override;
  std::optional<node::Bytes> get(const std::string& key) const override;
  Status erase(const std::string& key) override;
  Status append(const std::string& log, std::span<const std::uint8_t> record) override;
  std::vector<node::Bytes> read_log(const std::string& log) const override;
  Status truncate_log(const std::string& log) override;
  Status replace_log(const std::string& log, std::span<const node::Bytes> records) override;
  std::size_t bytes() const noexcept { return bytes_; }

 private:
  Limits limits_;
  std::size_t bytes_ = 0;
  std::map<std::string, node::Bytes> kv_;
  std::map<std::string, std::vector<node::Bytes>> logs_;
};

}  // namespace hs::sim
