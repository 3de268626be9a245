// libFuzzer target: the role codec (include/hyperscale/cluster/messages.hpp).
//
// Every input is decoded as the body of every message type in use (tests/unit/cluster/
// role_messages.hpp). When a decode succeeds, the message is encoded, the encoding decoded again and
// encoded again: both decodes must succeed and both encodings must be equal (an input may hold
// fields of a newer version or non-canonical varints, so the first encoding need not equal the
// input, but what this build writes it must read back exactly). A mismatch aborts; so does any crash,
// sanitizer report or leak. Refusals are the expected outcome for most inputs.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "../../unit/cluster/role_messages.hpp"

using namespace hs::cluster;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> in(data, size);
  testing::for_each_message([&]<class S>(MsgType t) {
    S first;
    if (!decode(in, first)) return;
    const std::vector<std::uint8_t> once = encode(t, first);
    S second;
    const char* why = "";
    if (once.empty() || once[0] != static_cast<std::uint8_t>(t) || !decode(std::span(once).subspan(1), second, &why)) {
      std::fprintf(stderr, "type %d: the re-encoding of a decoded message does not decode: %s\n", int(t), why);
      std::abort();
    }
    if (encode(t, second) != once) {
      std::fprintf(stderr, "type %d: encode(decode(encode(m))) differs from encode(m)\n", int(t));
      std::abort();
    }
  });
  return 0;
}
