#include "hyperscale/base/host_port.hpp"

#include <fmt/format.h>

namespace hs {

Result<HostPort> parse_host_port(std::string_view text, const HostPortRules& rules) {
  std::string_view host = text;
  std::string_view port;
  bool has_port = false;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos)
      return make_error(Errc::invalid_argument, fmt::format("address '{}': no ']' after '['", text));
    host = text.substr(1, close - 1);
    const std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':')
        return make_error(Errc::invalid_argument, fmt::format("address '{}': expected {}", text, rules.form));
      port = rest.substr(1);
      has_port = true;
    }
  } else if (const auto colon = text.rfind(':'); colon != std::string_view::npos) {
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    has_port = true;
  }
  if (host.empty() || (!has_port && rules.default_port == 0))
    return make_error(Errc::invalid_argument, fmt::format("address '{}': expected {}", text, rules.form));
  HostPort out{std::string(host), rules.default_port};
  if (!has_port) return out;
  const unsigned low = rules.allow_port_zero ? 0 : 1;
  unsigned value = 0;
  bool ok = !port.empty() && port.size() <= 5;
  for (char ch : port) {
    if (ch < '0' || ch > '9') ok = false;
    if (ok) value = value * 10 + static_cast<unsigned>(ch - '0');
  }
  if (!ok || value < low || value > 65535)
    return make_error(Errc::invalid_argument, fmt::format("address '{}': bad port '{}' ({}..65535)", text, port, low));
  out.port = static_cast<std::uint16_t>(value);
  return out;
}

}  // namespace hs
