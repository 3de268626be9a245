#include "hyperscale/host/daemon.hpp"

#include <fmt/format.h>

#include "hyperscale/base/log.hpp"
#include "hyperscale/net/config.hpp"

namespace hs::host {

namespace {
std::optional<std::string> node_addr_check(const ConfigValue& v) {
  auto r = parse_node_addr(std::get<std::string>(v));
  if (!r.ok()) return r.status().message();
  return std::nullopt;
}
std::optional<std::string> admin_addr_check(const ConfigValue& v) {
  const auto& s = std::get<std::string>(v);
  if (s.empty() || s == kAdminAuto) return std::nullopt;
  auto r = parse_listen_addr(s);
  if (!r.ok()) return r.status().message();
  return std::nullopt;
}
std::optional<std::string> durability_check(const ConfigValue& v) {
  const auto& s = std::get<std::string>(v);
  if (s == "fsync" || s == "none") return std::nullopt;
  return "expected 'fsync' or 'none', got '" + s + "'";
}
std::optional<std::string> level_check(const ConfigValue& v) {
  log::Level l{};
  if (log::parse_level(std::get<std::string>(v), l)) return std::nullopt;
  return "expected one of trace, debug, info, warn, error, off";
}
std::optional<std::string> not_empty(const ConfigValue& v) {
  if (std::get<std::string>(v).empty()) return std::string("must not be empty");
  return std::nullopt;
}
// net.* keys the daemon derives from node.listen: it listens on TCP and UDP at that one address.
bool derived_from_listen(std::string_view key) {
  return key == "net.listen_host" || key == "net.tcp_port" || key == "net.udp_port";
}

// Every wire.* / net.* key of net::config_key_info(), typed and bounded as the transport parses it;
// the value is checked by net::set_config itself, so the error is the transport's own.
void add_net_keys(ConfigSchema& s) {
  const net::NetConfig defaults;
  for (const net::KeyInfo& k : net::config_key_info()) {
    ConfigEntry e;
    e.key = std::string(k.key);
    e.doc = std::string(k.doc);
    if (derived_from_listen(k.key)) {
      // Listed so that setting one gets a clear error instead of "unknown key" (empty / 0: unset).
      const bool is_port = k.kind == net::KeyKind::port;
      e.type = is_port ? ValueType::integer : ValueType::string;
      // Built, then moved: assigning a 1-character literal trips GCC 12's -Wrestrict at -O3 (a false
      // positive, GCC PR 105329).
      e.default_value = is_port ? std::string("0") : std::string();
      e.doc = "not settable: derived from node.listen (TCP and UDP listen on that address)";
      e.check = [](const ConfigValue& v) -> std::optional<std::string> {
        const bool unset =
            std::holds_alternative<std::string>(v) ? std::get<std::string>(v).empty() : std::get<std::int64_t>(v) == 0;
        if (unset) return std::nullopt;
        return std::string(
            "derived from node.listen (the daemon listens on TCP and UDP at that address); set "
            "node.listen instead");
      };
      s.push_back(std::move(e));
      continue;
    }
    auto def = net::get_config(defaults, k.key);
    e.default_value = def.ok() ? *def : "";
    const std::string key = e.key;
    if (k.kind == net::KeyKind::string) {
      e.type = ValueType::string;
      e.check = [key](const ConfigValue& v) -> std::optional<std::string> {
        net::NetConfig scratch;
        Status st = net::set_config(scratch, key, std::get<std::string>(v));
        if (st.ok()) return std::nullopt;
        return st.message();
      };
    } else {
      e.type = ValueType::integer;
      e.min = static_cast<std::int64_t>(k.min);
      e.max = static_cast<std::int64_t>(k.max);
    }
    s.push_back(std::move(e));
  }
}

// The config's wire.* / net.* values through net::set_config, then net::validate (cross-field).
Status net_settings(const Config& cfg, net::NetConfig& nc) {
  for (const net::KeyInfo& k : net::config_key_info()) {
    if (derived_from_listen(k.key)) continue;
    const std::string text = k.kind == net::KeyKind::string ? cfg.str(k.key) : std::to_string(cfg.integer(k.key));
    Status st = net::set_config(nc, k.key, text);
    if (!st.ok()) return make_error(Errc::invalid_argument, fmt::format("{} ({})", st.message(), cfg.source(k.key)));
  }
  return net::validate(nc);
}

}  // namespace

ConfigSchema common_schema() {
  using T = ValueType;
  ConfigSchema s;
  s.push_back({"node.listen",
               T::string,
               "",
               "TCP and UDP address of this node (IPv4:port); also its node id",
               true,
               {},
               {},
               node_addr_check});
  s.push_back({"node.data_dir",
               T::string,
               "",
               "directory of the node's WAL (one daemon per directory: LOCK file)",
               true,
               {},
               {},
               not_empty});
  s.push_back({"admin.listen",
               T::string,
               std::string(kAdminAuto),
               "admin HTTP address (/metrics, /status, /healthz; no authentication): auto = 127.0.0.1 at the "
               "node.listen port + 1000; or IP:PORT (port 0 = ephemeral); empty = disabled",
               false,
               {},
               {},
               admin_addr_check});
  s.push_back({"admin.max_connections", T::integer, "64", "admin connections open at once", false, 1, 4096, {}});
  s.push_back({"admin.idle_timeout",
               T::duration_ms,
               "5s",
               "admin connection closed if no full request by then",
               false,
               100,
               600'000,
               {}});
  add_net_keys(s);
  s.push_back({"disk.durability",
               T::string,
               "fsync",
               "fsync, or none (tests only: acknowledged writes can be lost)",
               false,
               {},
               {},
               durability_check});
  s.push_back(
      {"disk.max_bytes", T::integer, "67108864", "bound of the live disk state (encoded bytes)", false, 4096, {}, {}});
  s.push_back({"disk.max_keys", T::integer, "100000", "bound of the number of keys", false, 1, {}, {}});
  s.push_back({"disk.max_logs", T::integer, "1000", "bound of the number of named logs", false, 1, {}, {}});
  s.push_back({"disk.compact_min_bytes",
               T::integer,
               "67108864",
               "WAL bytes written since the last snapshot before compaction is considered",
               false,
               4096,
               {},
               {}});
  s.push_back({"disk.segment_bytes", T::integer, "16777216", "WAL segment size", false, 4096, 1 << 30, {}});
  s.push_back({"log.level", T::string, "info", "trace, debug, info, warn, error or off", false, {}, {}, level_check});
  return s;
}

Result<std::string> auto_admin_listen(const Config& cfg) {
  auto node = parse_node_addr(cfg.str("node.listen"));
  if (!node.ok()) return node.status().with_context("node.listen");
  const int port = endpoint(*node).port + kAdminPortOffset;
  if (port > 65535)
    return make_error(Errc::invalid_argument,
                      fmt::format("admin.listen = \"auto\" ({}), node.listen = {} ({}): the admin port would be {} + "
                                  "{} = {}, above 65535; set admin.listen to \"127.0.0.1:PORT\"",
                                  cfg.source("admin.listen"), cfg.display("node.listen"), cfg.source("node.listen"),
                                  endpoint(*node).port, kAdminPortOffset, port));
  return fmt::format("127.0.0.1:{}", port);
}

Status resolve_admin_listen(Config& cfg) {
  if (cfg.str("admin.listen") != kAdminAuto) return ok_status();
  HS_ASSIGN_OR_RETURN(auto addr, auto_admin_listen(cfg));
  return cfg.set(
      "admin.listen", addr,
      fmt::format("{} (auto: 127.0.0.1, node.listen port + {})", cfg.source("admin.listen"), kAdminPortOffset));
}

bool is_loopback(const net::Endpoint& ep) { return ep.host.rfind("127.", 0) == 0; }

std::optional<std::string> admin_exposure_warning(const HostSettings& h) {
  if (!h.admin_enabled || is_loopback(h.admin.listen)) return std::nullopt;
  return fmt::format(
      "admin.listen {} is not a loopback address: the admin port has no authentication, so anyone who "
      "can reach it reads /status and /metrics; bind it to 127.0.0.1 unless a firewall guards it",
      h.admin.listen.to_string());
}

Result<HostSettings> host_settings(const Config& cfg, wire::fb::Role role) {
  HostSettings h;
  auto listen = parse_node_addr(cfg.str("node.listen"));
  if (!listen.ok()) return listen.status().with_context("node.listen");
  h.net.listen = endpoint(*listen);
  h.net.role = role;
  net::NetConfig nc;
  HS_TRY(net_settings(cfg, nc));
  h.net.cluster_id = nc.cluster_id;
  h.net.limits = nc.limits;
  h.net.transport = nc.transport;  // NetHost sets listen host / ports from node.listen
  auto keys = wire::load_keyring(nc.secret, nc.previous_secret);
  if (!keys.ok()) return keys.status().with_context("wire.secret_file / wire.secret_env");
  h.net.keys = std::move(keys).value();
  h.disk.dir = cfg.str("node.data_dir");
  h.disk.durability = cfg.str("disk.durability") == "none" ? wal::Durability::none : wal::Durability::fsync;
  h.disk.limits.max_bytes = static_cast<std::size_t>(cfg.integer("disk.max_bytes"));
  h.disk.limits.max_keys = static_cast<std::size_t>(cfg.integer("disk.max_keys"));
  h.disk.limits.max_logs = static_cast<std::size_t>(cfg.integer("disk.max_logs"));
  h.disk.compact_min_bytes = static_cast<std::uint64_t>(cfg.integer("disk.compact_min_bytes"));
  h.disk.segment_bytes = static_cast<std::uint64_t>(cfg.integer("disk.segment_bytes"));
  std::string admin = cfg.str("admin.listen");
  if (admin == kAdminAuto) {
    auto a = auto_admin_listen(cfg);
    if (!a.ok()) return a.status();
    admin = *a;
  }
  h.admin_enabled = !admin.empty();
  if (h.admin_enabled) {
    auto ep = parse_listen_addr(admin);
    if (!ep.ok()) return ep.status().with_context("admin.listen");
    h.admin.listen = *ep;
  }
  h.admin.max_connections = static_cast<std::size_t>(cfg.integer("admin.max_connections"));
  h.admin.idle_timeout = cfg.duration("admin.idle_timeout");
  h.log_level = cfg.str("log.level");
  return h;
}

}  // namespace hs::host
