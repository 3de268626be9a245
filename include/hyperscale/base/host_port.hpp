#pragma once
// The one parser of "host:port" text: transport endpoints, node and listen addresses, workflow targets and
// the CLI's URLs all split and check their host and port here, then add their own rules (numeric IPv4
// only, no 0.0.0.0, ...).
#include <cstdint>
#include <string>
#include <string_view>

#include "hyperscale/base/status.hpp"

namespace hs {

struct HostPort {
  std::string host;  // without brackets for "[v6]:port"
  std::uint16_t port = 0;
};

struct HostPortRules {
  std::uint16_t default_port = 0;       // the port when the text names none; 0: a port is required
  bool allow_port_zero = false;         // "host:0" (an ephemeral listen port)
  std::string_view form = "host:port";  // how the error message names the expected form
};

// Splits "host:port" (the last ':' separates), "[v6]:port", and with a default port "host" or "[v6]".
// The host must be non-empty and is not resolved; the port is decimal digits only, 1..65535 (0 too when
// allowed). Errors (invalid_argument) quote the text: "address 'x': expected host:port".
Result<HostPort> parse_host_port(std::string_view text, const HostPortRules& rules = {});

}  // namespace hs
