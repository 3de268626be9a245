#include "hyperscale/wire/messages.hpp"

#include <cstring>
#include <vector>

#include "hyperscale/wire/frame.hpp"

namespace hs::wire {

#define HS_CHECK_ORDER(N) static_assert(fb::BodyTraits<fb::N>::enum_value == fb::Body::N);
HS_WIRE_MESSAGES(HS_CHECK_ORDER)
#undef HS_CHECK_ORDER
// The union lists exactly the types of HS_WIRE_MESSAGES (NONE excluded).
#define HS_COUNT_ONE(N) +1
static_assert(sizeof(fb::EnumValuesBody()) / sizeof(fb::Body) == 1 HS_WIRE_MESSAGES(HS_COUNT_ONE));
#undef HS_COUNT_ONE
// Numbers already on the wire never change (messages.fbs: explicit values, retired ones never reused).
static_assert(static_cast<int>(fb::Body::Ping) == 42 && static_cast<int>(fb::Body::Pong) == 43 &&
              static_cast<int>(fb::Body::ErrorReply) == 45 && static_cast<int>(fb::Body::RoleMessage) == 49);

bool verify_body(fb::Body type, std::span<const std::uint8_t> body, std::size_t max_depth,
                 std::size_t max_tables) noexcept {
  // A FlatBuffer is at least a root offset plus a vtable; reject tiny inputs before the verifier.
  if (body.size() < 8 || body.size() > FLATBUFFERS_MAX_BUFFER_SIZE) return false;
  // The verifier checks alignment relative to the buffer start, so a start that is not 8-byte aligned
  // (a FlatBufferBuilder's output is only aligned to its largest scalar) is verified in an aligned copy.
  if (reinterpret_cast<std::uintptr_t>(body.data()) % 8 != 0) {
    std::vector<std::uint64_t> aligned((body.size() + 7) / 8);
    std::memcpy(aligned.data(), body.data(), body.size());
    return verify_body(type, {reinterpret_cast<const std::uint8_t*>(aligned.data()), body.size()}, max_depth,
                       max_tables);
  }
  flatbuffers::Verifier v(body.data(), body.size(), static_cast<flatbuffers::uoffset_t>(max_depth),
                          static_cast<flatbuffers::uoffset_t>(max_tables));
  switch (type) {
#define HS_VERIFY_CASE(N) \
  case fb::Body::N:       \
    return v.VerifyBuffer<fb::N>(nullptr);
    HS_WIRE_MESSAGES(HS_VERIFY_CASE)
#undef HS_VERIFY_CASE
    default:
      return false;
  }
}

std::string_view type_name(MsgType t) noexcept {
  switch (t) {
#define HS_NAME_CASE(N) \
  case fb::Body::N:     \
    return #N;
    HS_WIRE_MESSAGES(HS_NAME_CASE)
#undef HS_NAME_CASE
    default:
      return "unknown";
  }
}

bool known_type(std::uint16_t raw) noexcept {
  // The numbering has gaps (retired types, messages.fbs): only the listed values are known.
  switch (raw) {
#define HS_KNOWN_CASE(N) case static_cast<std::uint16_t>(fb::Body::N):
    HS_WIRE_MESSAGES(HS_KNOWN_CASE)
#undef HS_KNOWN_CASE
    return true;
    default:
      return false;
  }
}

}  // namespace hs::wire
