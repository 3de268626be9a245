// The consistent-hash ring of gate ownership (ring.hpp).
#include "hyperscale/gate/ring.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <set>

namespace hs::gate {

std::uint64_t ring_hash(std::string_view bytes) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a 64 offset basis
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ULL;  // FNV-1a 64 prime
  }
  h ^= h >> 30;  // splitmix64 finaliser
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  return h;
}

Ring::Ring(const std::vector<node::NodeId>& members) {
  const std::set<node::NodeId> unique(members.begin(), members.end());
  points_.reserve(unique.size() * kVnodes);
  for (node::NodeId m : unique)
    for (int i = 0; i < kVnodes; ++i) points_.emplace_back(ring_hash(fmt::format("{}#{}", m, i)), m);
  std::sort(points_.begin(), points_.end());
}

node::NodeId Ring::owner(std::string_view key) const {
  if (points_.empty()) return 0;
  const std::uint64_t h = ring_hash(key);
  auto it = std::lower_bound(points_.begin(), points_.end(), std::make_pair(h, node::NodeId{0}));
  return it == points_.end() ? points_.front().second : it->second;
}

}  // namespace hs::gate
