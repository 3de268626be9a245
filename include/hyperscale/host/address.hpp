// Addressing of real processes: a process's node::NodeId is its listen address packed as
// (IPv4 << 16) | port, with TCP and UDP on the same port, so an id is all a role needs to reach a
// peer (the same encoding host::UdpHost uses). Port 0 and the unspecified address 0.0.0.0 are not
// valid node addresses.
#pragma once

#include <string>
#include <string_view>

#include "hyperscale/base/status.hpp"
#include "hyperscale/net/transport.hpp"
#include "hyperscale/node/node.hpp"

namespace hs::host {

using node::NodeId;

// "127.0.0.1:7101" -> id. Numeric IPv4 only, port 1..65535, not 0.0.0.0.
Result<NodeId> parse_node_addr(std::string_view text);
// Endpoint -> id (same validation as parse_node_addr).
Result<NodeId> node_id(const net::Endpoint& ep);
// id -> Endpoint (any 48-bit id maps to some address; ids above 48 bits are not addresses).
net::Endpoint endpoint(NodeId id);
// id -> "a.b.c.d:port"
std::string node_addr_string(NodeId id);
// A listen address that may use port 0 (ephemeral) or 0.0.0.0, e.g. for the admin port.
Result<net::Endpoint> parse_listen_addr(std::string_view text);

}  // namespace hs::host
