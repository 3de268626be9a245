// Compact, versioned binary encoding of SWIM datagrams (little-endian), used until the FlatBuffers
// wire transport (src/wire) replaces it. Every decode error has a reason, counted by the caller.
//
//   header  : magic 'S' (1) | version (1) | type (1) | flags (1) | sender id (8) | sender incarnation (4)
//             | seq (4) | target id (8)                                             = 28 bytes
//   state   : length (2) | role state bytes (≤ kMaxStateBytes)
//   gossip  : count (1) | count × { kind (1) | node (8) | incarnation (4) | origin (8) }  (21 bytes each)
//   nothing may follow the last gossip entry.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "hyperscale/base/status.hpp"

namespace hs::swim {

inline constexpr std::uint8_t kMagic = 0x53;  // 'S'
inline constexpr std::uint8_t kVersion = 1;
inline constexpr std::size_t kDatagramBudget = 1400;
inline constexpr std::size_t kHeaderBytes = 28;
inline constexpr std::size_t kGossipBytes = 21;
inline constexpr std::size_t kMaxStateBytes = 512;
inline constexpr std::size_t kMaxGossipPerMessage = 60;  // 28 + 2 + 512 + 1 + 60×21 > 1400: fit decides

enum class MsgType : std::uint8_t {
  ping = 1,      // seq, target = receiver (misdirected pings are rejected)
  ack = 2,       // seq, target = the node that was probed
  ping_req = 3,  // seq, target = node the proxy should probe
  nack = 4,      // seq, target: proxy could not reach target in time (Lifeguard)
  sync = 5,      // gossip only: join sync, "you are declared dead" notices
};

enum class GossipKind : std::uint8_t { alive = 1, suspect = 2, dead = 3, left = 4 };

struct Gossip {
  GossipKind kind = GossipKind::alive;
  std::uint64_t node = 0;
  std::uint32_t incarnation = 0;
  std::uint64_t origin = 0;  // who suspected / declared (confirmations count distinct origins)
  friend bool operator==(const Gossip&, const Gossip&) = default;
};

struct Message {
  MsgType type = MsgType::ping;
  std::uint8_t flags = 0;
  std::uint64_t sender = 0;
  std::uint32_t sender_incarnation = 0;
  std::uint32_t seq = 0;
  std::uint64_t target = 0;
  std::vector<std::uint8_t> state;
  std::vector<Gossip> gossip;
};

enum class DecodeError : std::uint8_t {
  none = 0,
  too_short,
  bad_magic,
  bad_version,
  bad_type,
  oversize,
  truncated_state,
  state_too_large,
  truncated_gossip,
  too_many_gossip,
  bad_gossip_kind,
  trailing_bytes,
  kCount
};
std::string_view decode_error_name(DecodeError e) noexcept;

// Encoded size of `m`.
std::size_t encoded_size(const Message& m) noexcept;
// Appends the encoding of `m` to `out`. Fails (and appends nothing) if `m` exceeds the datagram budget.
Status encode(const Message& m, std::vector<std::uint8_t>& out);
// Decodes one datagram; on error returns the reason and leaves `out` unspecified.
DecodeError decode(std::span<const std::uint8_t> in, Message& out);

}  // namespace hs::swim
