// Pieces a daemon command wires together: the config keys every daemon has, and the host options
// built from them. A manager/worker command adds its own keys to common_schema(), loads a Config,
// calls host_settings(), then opens a WalDisk, starts a NetHost over its Mux and an AdminServer
// (tests/unit/host/test_host.cpp "daemon wiring" shows the whole sequence).
#pragma once

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

}  // namespace hs::host
