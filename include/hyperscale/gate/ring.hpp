// A consistent-hash ring over the live gates: which gate owns a job (docs/gates.md "Ownership").
// Each gate puts kVnodes points on a 64-bit circle, point i at hash("<gate id>#<i>"); a key (a job
// id) belongs to the gate of the first point at or after hash(key), wrapping around. The hash is
// FNV-1a 64 of the bytes followed by the splitmix64 finaliser (FNV alone clusters short, similar
// strings). Deterministic: every gate with the same member set picks the same owner; a gate joining
// or leaving moves only the keys of the arcs it gains or loses (about 1/n of them).
#pragma once

#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "hyperscale/node/node.hpp"

namespace hs::gate {

std::uint64_t ring_hash(std::string_view bytes) noexcept;

class Ring {
 public:
  static constexpr int kVnodes = 64;
  Ring() = default;
  explicit Ring(const std::vector<node::NodeId>& members);
  bool empty() const noexcept { return points_.empty(); }
  std::size_t members() const noexcept { return points_.size() / kVnodes; }
  // The owner of `key` (0 when the ring is empty).
  node::NodeId owner(std::string_view key) const;

 private:
  std::vector<std::pair<std::uint64_t, node::NodeId>> points_;  // sorted by point, then id
};

}  // namespace hs::gate
