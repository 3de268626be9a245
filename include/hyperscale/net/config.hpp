// Configuration of the wire and transport layers as flat keys ("wire.max_tcp_frame_bytes"), so the
// CLI's config loader can pass values from TOML or flags without knowing the structs. docs/wire.md
// lists every key with its default.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "hyperscale/base/status.hpp"
#include "hyperscale/net/uv_transport.hpp"
#include "hyperscale/wire/frame.hpp"

namespace hs::net {

struct NetConfig {
  std::string cluster_id = "hyperscale";
  wire::SecretSource secret{"", "HYPERSCALE_CLUSTER_SECRET"};
  wire::SecretSource previous_secret;  // empty: no rotation in progress
  wire::Limits limits;
  TransportConfig transport;
};

// Sets one key from its text value. Unknown keys and unparsable or out-of-range values are refused
// with invalid_argument naming the key; the config is unchanged then.
Status set_config(NetConfig& cfg, std::string_view key, std::string_view value);
// Cross-field rules, e.g. a maximum-size frame must fit in a connection's write queue.
Status validate(const NetConfig& cfg);
// Every accepted key, in documentation order.
std::vector<std::string_view> config_keys();

// What a key holds, for loaders that type-check values themselves (the daemon's config schema).
enum class KeyKind { string, size, millis, port };  // size/millis/port: a decimal integer in [min, max]
struct KeyInfo {
  std::string_view key;
  KeyKind kind = KeyKind::string;
  std::uint64_t min = 0, max = 0;
  bool allow_empty = true;  // string keys
  std::string_view doc;
};
// Every key with its kind, bounds and a one-line description, in documentation order.
std::vector<KeyInfo> config_key_info();
// The text form of a key's value in `cfg` (a default-constructed NetConfig gives the defaults);
// set_config(cfg, key, get_config(cfg, key)) changes nothing.
Result<std::string> get_config(const NetConfig& cfg, std::string_view key);

}  // namespace hs::net
