#include "hyperscale/sim/mem_disk.hpp"

#include <fmt/format.h>

namespace hs::sim {

Status MemDisk::put(const std::string& key, std::span<const std::uint8_t> value) {
  auto it = kv_.find(key);
  const std::size_t old = it == kv_.end() ? 0 : it->second.size() + key.size();
  const std::size_t add = value.size() + key.size();
  if (it == kv_.end() && kv_.size() >= limits_.max_keys)
    return make_error(Errc::backpressure, fmt::format("disk: key limit {} reached", limits_.max_keys));
  if (bytes_ - old + add > limits_.max_bytes)
    return make_error(Errc::backpressure, fmt::format("disk: byte limit {} reached", limits_.max_bytes));
  bytes_ = bytes_ - old + add;
  kv_[key] = node::Bytes(value.begin(), value.end());
  return ok_status();
}

std::optional<node::Bytes> MemDisk::get(const std::string& key) const {
  auto it = kv_.find(key);
  if (it == kv_.end()) return std::nullopt;
  return it->second;
}

Status MemDisk::erase(const std::string& key) {
  auto it = kv_.find(key);
  if (it == kv_.end()) return make_error(Errc::not_found, "disk: no key " + key);
  bytes_ -= it->second.size() + key.size();
  kv_.erase(it);
  return ok_status();
}

Status MemDisk::append(const std::string& log, std::span<const std::uint8_t> record) {
  auto it = logs_.find(log);
  if (it == logs_.end() && logs_.size() >= limits_.max_logs)
    return make_error(Errc::backpressure, fmt::format("disk: log limit {} reached", limits_.max_logs));
  if (bytes_ + record.size() > limits_.max_bytes)
    return make_error(Errc::backpressure, fmt::format("disk: byte limit {} reached", limits_.max_bytes));
  bytes_ += record.size();
  logs_[log].emplace_back(record.begin(), record.end());
  return ok_status();
}

std::vector<node::Bytes> MemDisk::read_log(const std::string& log) const {
  auto it = logs_.find(log);
  return it == logs_.end() ? std::vector<node::Bytes>{} : it->second;
}

Status MemDisk::truncate_log(const std::string& log) {
  auto it = logs_.find(log);
  if (it == logs_.end()) return make_error(Errc::not_found, "disk: no log " + log);
  for (auto& r : it->second) bytes_ -= r.size();
  logs_.erase(it);
  return ok_status();
}

Status MemDisk::replace_log(const std::string& log, std::span<const node::Bytes> records) {
  auto it = logs_.find(log);
  std::size_t old = 0, add = 0;
  if (it != logs_.end())
    for (const auto& r : it->second) old += r.size();
  for (const auto& r : records) add += r.size();
  if (it == logs_.end() && !records.empty() && logs_.size() >= limits_.max_logs)
    return make_error(Errc::backpressure, fmt::format("disk: log limit {} reached", limits_.max_logs));
  if (bytes_ - old + add > limits_.max_bytes)
    return make_error(Errc::backpressure, fmt::format("disk: byte limit {} reached", limits_.max_bytes));
  bytes_ = bytes_ - old + add;
  if (records.empty()) {
    if (it != logs_.end()) logs_.erase(it);
    return ok_status();
  }
  logs_[log].assign(records.begin(), records.end());
  return ok_status();
}

}  // namespace hs::sim
