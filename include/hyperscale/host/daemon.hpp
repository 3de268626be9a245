// Pieces a daemon command wires together: the config keys every daemon has, and the host options
// built from them. A manager/worker command adds its own keys to common_schema(), loads a Config,
// calls host_settings(), then opens a WalDisk, starts a NetHost over its Mux and an AdminServer
// (tests/unit/host/test_host.cpp "daemon wiring" shows the whole sequence).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "hyperscale/host/admin.hpp"
#include "hyperscale/host/config.hpp"
#include "hyperscale/host/net_host.hpp"
#include "hyperscale/host/wal_disk.hpp"

namespace hs::host {

// node.listen, node.data_dir, admin.*, wire.*, net.*, disk.*, log.level (docs/host.md lists them).
// The wire.* / net.* keys are every key of net::config_key_info() (except net.listen_host / tcp_port /
// udp_port, which node.listen sets: setting one is refused), checked by net::set_config.
ConfigSchema common_schema();

struct HostSettings {
  NetHostOptions net;
  WalDiskOptions disk;
  AdminOptions admin;
  bool admin_enabled = true;
  std::string log_level;
};

// Builds the options from a Config loaded with (a superset of) common_schema(): the wire.* / net.*
// values through net::set_config and net::validate (cross-field rules) into NetHostOptions; loads the
// cluster secret (file or environment variable) and derives the keys. Errors name the key.
Result<HostSettings> host_settings(const Config& cfg, wire::fb::Role role);

// admin.listen = "auto" (the default): loopback, at the node.listen port + kAdminPortOffset, so
// every daemon of a host gets its own documented admin port (node 7101 -> admin 127.0.0.1:8101).
inline constexpr std::string_view kAdminAuto = "auto";
inline constexpr int kAdminPortOffset = 1000;
// The address "auto" stands for; an error (naming node.listen) if the port would pass 65535.
Result<std::string> auto_admin_listen(const Config& cfg);
// Replaces admin.listen "auto" by that address in the config (source "default (auto: ...)"), so
// --print-config shows the address used. Call it after Config::load.
Status resolve_admin_listen(Config& cfg);
// "127.x.x.x".
bool is_loopback(const net::Endpoint& ep);
// A warning text when the admin port is enabled on a non-loopback address (it has no authentication).
std::optional<std::string> admin_exposure_warning(const HostSettings& h);

}  // namespace hs::host
