#include "hyperscale/swim/codec.hpp"

#include <fmt/format.h>

#include "hyperscale/base/enum_names.hpp"

namespace hs::swim {

constexpr EnumNames<DecodeError, 12> kDecodeErrorNames{
    {"none", "too_short", "bad_magic", "bad_version", "bad_type", "oversize", "truncated_state", "state_too_large",
     "truncated_gossip", "too_many_gossip", "bad_gossip_kind", "trailing_bytes"}};
static_assert(kDecodeErrorNames.covers(DecodeError::kCount, true));

std::string_view decode_error_name(DecodeError e) noexcept { return kDecodeErrorNames(e); }

namespace {

void put8(std::vector<std::uint8_t>& o, std::uint8_t v) { o.push_back(v); }
void put16(std::vector<std::uint8_t>& o, std::uint16_t v) {
  o.push_back(static_cast<std::uint8_t>(v));
  o.push_back(static_cast<std::uint8_t>(v >> 8));
}
void put32(std::vector<std::uint8_t>& o, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) o.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
void put64(std::vector<std::uint8_t>& o, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) o.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

struct Reader {
  std::span<const std::uint8_t> in;
  std::size_t pos = 0;
  std::size_t left() const { return in.size() - pos; }
  std::uint8_t u8() { return in[pos++]; }
  std::uint16_t u16() {
    std::uint16_t v = static_cast<std::uint16_t>(in[pos] | (in[pos + 1] << 8));
    pos += 2;
    return v;
  }
  std::uint32_t u32() {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(in[pos + static_cast<std::size_t>(i)]) << (8 * i);
    pos += 4;
    return v;
  }
  std::uint64_t u64() {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(in[pos + static_cast<std::size_t>(i)]) << (8 * i);
    pos += 8;
    return v;
  }
};

}  // namespace

std::size_t encoded_size(const Message& m) noexcept {
  return kHeaderBytes + 2 + m.state.size() + 1 + m.gossip.size() * kGossipBytes;
}

Status encode(const Message& m, std::vector<std::uint8_t>& out) {
  if (m.state.size() > kMaxStateBytes)
    return make_error(Errc::invalid_argument,
                      fmt::format("swim encode: state {} B > {} B", m.state.size(), kMaxStateBytes));
  if (m.gossip.size() > kMaxGossipPerMessage)
    return make_error(Errc::invalid_argument, fmt::format("swim encode: {} gossip entries", m.gossip.size()));
  const std::size_t size = encoded_size(m);
  if (size > kDatagramBudget)
    return make_error(Errc::invalid_argument, fmt::format("swim encode: {} B > budget {} B", size, kDatagramBudget));
  out.reserve(out.size() + size);
  put8(out, kMagic);
  put8(out, kVersion);
  put8(out, static_cast<std::uint8_t>(m.type));
  put8(out, m.flags);
  put64(out, m.sender);
  put32(out, m.sender_incarnation);
  put32(out, m.seq);
  put64(out, m.target);
  put16(out, static_cast<std::uint16_t>(m.state.size()));
  out.insert(out.end(), m.state.begin(), m.state.end());
  put8(out, static_cast<std::uint8_t>(m.gossip.size()));
  for (const Gossip& g : m.gossip) {
    put8(out, static_cast<std::uint8_t>(g.kind));
    put64(out, g.node);
    put32(out, g.incarnation);
    put64(out, g.origin);
  }
  return ok_status();
}

DecodeError decode(std::span<const std::uint8_t> in, Message& out) {
  if (in.size() > kDatagramBudget) return DecodeError::oversize;
  if (in.size() < kHeaderBytes + 3) return DecodeError::too_short;
  Reader r{in};
  if (r.u8() != kMagic) return DecodeError::bad_magic;
  if (r.u8() != kVersion) return DecodeError::bad_version;
  const std::uint8_t type = r.u8();
  if (type < 1 || type > 5) return DecodeError::bad_type;
  out.type = static_cast<MsgType>(type);
  out.flags = r.u8();
  out.sender = r.u64();
  out.sender_incarnation = r.u32();
  out.seq = r.u32();
  out.target = r.u64();
  const std::uint16_t slen = r.u16();
  if (slen > kMaxStateBytes) return DecodeError::state_too_large;
  if (r.left() < static_cast<std::size_t>(slen) + 1) return DecodeError::truncated_state;
  out.state.assign(in.begin() + static_cast<std::ptrdiff_t>(r.pos),
                   in.begin() + static_cast<std::ptrdiff_t>(r.pos + slen));
  r.pos += slen;
  const std::uint8_t count = r.u8();
  if (count > kMaxGossipPerMessage) return DecodeError::too_many_gossip;
  if (r.left() < static_cast<std::size_t>(count) * kGossipBytes) return DecodeError::truncated_gossip;
  out.gossip.clear();
  out.gossip.reserve(count);
  for (std::uint8_t i = 0; i < count; ++i) {
    Gossip g;
    const std::uint8_t k = r.u8();
    if (k < 1 || k > 4) return DecodeError::bad_gossip_kind;
    g.kind = static_cast<GossipKind>(k);
    g.node = r.u64();
    g.incarnation = r.u32();
    g.origin = r.u64();
    out.gossip.push_back(g);
  }
  if (r.left() != 0) return DecodeError::trailing_bytes;
  return DecodeError::none;
}

}  // namespace hs::swim
