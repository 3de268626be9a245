#include "hyperscale/net/config.hpp"

#include <charconv>
#include <functional>

#include <fmt/format.h>

namespace hs::net {

namespace {

Status parse_u64(std::string_view key, std::string_view v, std::uint64_t lo, std::uint64_t hi, std::uint64_t& out) {
  std::uint64_t x = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (ec != std::errc() || p != v.data() + v.size())
    return make_error(Errc::invalid_argument, fmt::format("{}: {:?} is not a non-negative integer", key, v));
  if (x < lo || x > hi)
    return make_error(Errc::invalid_argument, fmt::format("{}: {} is outside [{}, {}]", key, x, lo, hi));
  out = x;
  return ok_status();
}

struct Entry {
  KeyInfo info;
  std::function<Status(NetConfig&, std::string_view key, std::string_view v)> set;
  std::function<std::string(const NetConfig&)> get;
};

template <typename T>
Entry size_key(std::string_view key, T NetConfig::*sub, std::size_t std::remove_reference_t<T>::*field,
               std::uint64_t lo, std::uint64_t hi, std::string_view doc) {
  return {{key, KeyKind::size, lo, hi, true, doc},
          [=](NetConfig& c, std::string_view k, std::string_view v) {
            std::uint64_t x = 0;
            HS_TRY(parse_u64(k, v, lo, hi, x));
            (c.*sub).*field = static_cast<std::size_t>(x);
            return ok_status();
          },
          [=](const NetConfig& c) { return std::to_string((c.*sub).*field); }};
}

template <typename T>
Entry ms_key(std::string_view key, T NetConfig::*sub, Duration std::remove_reference_t<T>::*field, std::uint64_t lo,
             std::uint64_t hi, std::string_view doc) {
  return {{key, KeyKind::millis, lo, hi, true, doc},
          [=](NetConfig& c, std::string_view k, std::string_view v) {
            std::uint64_t x = 0;
            HS_TRY(parse_u64(k, v, lo, hi, x));
            (c.*sub).*field = std::chrono::milliseconds(x);
            return ok_status();
          },
          [=](const NetConfig& c) {
            return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>((c.*sub).*field).count());
          }};
}

Entry string_key(std::string_view key, std::string NetConfig::*field, std::string_view doc, bool allow_empty = true) {
  return {{key, KeyKind::string, 0, 0, allow_empty, doc},
          [=](NetConfig& c, std::string_view k, std::string_view v) {
            if (!allow_empty && v.empty()) return make_error(Errc::invalid_argument, fmt::format("{}: empty", k));
            c.*field = std::string(v);
            return ok_status();
          },
          [=](const NetConfig& c) { return c.*field; }};
}

Entry secret_key(std::string_view key, wire::SecretSource NetConfig::*src, std::string wire::SecretSource::*field,
                 std::string_view doc) {
  return {{key, KeyKind::string, 0, 0, true, doc},
          [=](NetConfig& c, std::string_view, std::string_view v) {
            (c.*src).*field = std::string(v);
            return ok_status();
          },
          [=](const NetConfig& c) { return (c.*src).*field; }};
}

Entry listen_host_key() {
  return {{"net.listen_host", KeyKind::string, 0, 0, false, "numeric IPv4 address to listen on"},
          [](NetConfig& c, std::string_view k, std::string_view v) {
            if (v.empty()) return make_error(Errc::invalid_argument, fmt::format("{}: empty", k));
            c.transport.listen_host = std::string(v);
            return ok_status();
          },
          [](const NetConfig& c) { return c.transport.listen_host; }};
}

Entry port_key(std::string_view key, std::uint16_t TransportConfig::*field, std::string_view doc) {
  return {{key, KeyKind::port, 0, 65535, true, doc},
          [=](NetConfig& c, std::string_view k, std::string_view v) {
            std::uint64_t x = 0;
            HS_TRY(parse_u64(k, v, 0, 65535, x));
            c.transport.*field = static_cast<std::uint16_t>(x);
            return ok_status();
          },
          [=](const NetConfig& c) { return std::to_string(c.transport.*field); }};
}

const std::vector<Entry>& table() {
  constexpr std::uint64_t kMiB = 1 << 20;
  using N = NetConfig;
  using TC = TransportConfig;
  using wire::Limits;
  using wire::SecretSource;
  static const std::vector<Entry> t = {
      string_key("wire.cluster_id", &N::cluster_id, "frames with another cluster id are rejected (wrong_cluster)",
                 false),
      secret_key("wire.secret_file", &N::secret, &SecretSource::file,
                 "file holding the cluster secret (wins over wire.secret_env)"),
      secret_key("wire.secret_env", &N::secret, &SecretSource::env, "environment variable holding the cluster secret"),
      secret_key("wire.previous_secret_file", &N::previous_secret, &SecretSource::file,
                 "previous secret, accepted for decryption only (rotation)"),
      secret_key("wire.previous_secret_env", &N::previous_secret, &SecretSource::env,
                 "environment variable holding the previous secret (rotation)"),
      size_key("wire.max_tcp_frame_bytes", &N::limits, &Limits::max_tcp_frame, 1024, 64 * kMiB,
               "whole TCP frame incl. header and tag"),
      size_key("wire.max_udp_datagram_bytes", &N::limits, &Limits::max_udp_datagram, 256, 65507, "whole UDP datagram"),
      ms_key("wire.max_age_ms", &N::limits, &Limits::max_age, 1000, 3'600'000,
             "replay guard: frames older than this are rejected"),
      ms_key("wire.max_future_ms", &N::limits, &Limits::max_future, 0, 3'600'000,
             "replay guard: frames this far in the future are rejected"),
      size_key("wire.replay_window", &N::limits, &Limits::replay_window, 64, 1 << 20,
               "sequence numbers tracked per (sender, incarnation)"),
      size_key("wire.replay_max_senders", &N::limits, &Limits::replay_max_senders, 16, 10'000'000,
               "(sender, incarnation) pairs tracked; least recently seen evicted"),
      listen_host_key(),
      port_key("net.tcp_port", &TC::tcp_port, "TCP port; 0 = ephemeral"),
      port_key("net.udp_port", &TC::udp_port, "UDP port; 0 = ephemeral"),
      size_key("net.max_conns_per_peer", &N::transport, &TC::max_conns_per_peer, 1, 1024,
               "outbound connections per peer, reserved before connecting"),
      size_key("net.max_conns_total", &N::transport, &TC::max_conns_total, 1, 1'000'000,
               "outbound connections in total, reserved before connecting"),
      size_key("net.max_inbound_conns", &N::transport, &TC::max_inbound_conns, 1, 1'000'000,
               "authenticated inbound connections (past their first valid frame); more are closed"),
      size_key("net.max_preauth_conns", &N::transport, &TC::max_preauth_conns, 1, 1'000'000,
               "inbound connections without a valid frame yet; over it the oldest is closed"),
      size_key("net.max_preauth_per_source", &N::transport, &TC::max_preauth_per_source, 1, 1'000'000,
               "of those, from one source IP; over it that source's oldest is closed"),
      ms_key("net.preauth_timeout_ms", &N::transport, &TC::preauth_timeout, 10, 600'000,
             "an inbound connection without a valid frame this long after accept is closed"),
      size_key("net.open_new_at_inflight", &N::transport, &TC::open_new_at_inflight, 1, 1'000'000,
               "open another connection to a peer past this many outstanding requests"),
      ms_key("net.idle_timeout_ms", &N::transport, &TC::idle_timeout, 100, 86'400'000,
             "connections with nothing outstanding are closed after this"),
      ms_key("net.connect_timeout_ms", &N::transport, &TC::connect_timeout, 10, 600'000, "outbound connect timeout"),
      ms_key("net.frame_deadline_ms", &N::transport, &TC::frame_deadline, 10, 600'000,
             "a started frame must complete within this (stalled)"),
      ms_key("net.backoff_initial_ms", &N::transport, &TC::backoff_initial, 1, 600'000,
             "first reconnect delay (doubles per failure, jittered)"),
      ms_key("net.backoff_max_ms", &N::transport, &TC::backoff_max, 1, 3'600'000, "reconnect delay cap"),
      size_key("net.max_conn_write_queue_bytes", &N::transport, &TC::max_conn_write_queue, 4096, 1024 * kMiB,
               "write queue per connection, and per peer backlog while unconnected"),
      size_key("net.max_total_write_queue_bytes", &N::transport, &TC::max_total_write_queue, 4096, 64 * 1024 * kMiB,
               "all write queues of the transport"),
      size_key("net.max_pending_requests", &N::transport, &TC::max_pending_requests, 1, 10'000'000,
               "outstanding requests"),
      size_key("net.max_peers", &N::transport, &TC::max_peers, 1, 1'000'000,
               "peer table; idle unconnected peers are evicted"),
  };
  return t;
}

const Entry* find(std::string_view key) {
  for (const auto& e : table())
    if (e.info.key == key) return &e;
  return nullptr;
}

}  // namespace

Status set_config(NetConfig& cfg, std::string_view key, std::string_view value) {
  if (const Entry* e = find(key)) return e->set(cfg, key, value);
  return make_error(Errc::invalid_argument, fmt::format("unknown configuration key {:?}", key));
}

Result<std::string> get_config(const NetConfig& cfg, std::string_view key) {
  if (const Entry* e = find(key)) return e->get(cfg);
  return make_error(Errc::invalid_argument, fmt::format("unknown configuration key {:?}", key));
}

Status validate(const NetConfig& c) {
  const auto& t = c.transport;
  const auto& l = c.limits;
  if (c.secret.empty()) return make_error(Errc::invalid_argument, "wire.secret_file or wire.secret_env must be set");
  if (l.max_tcp_frame > t.max_conn_write_queue)
    return make_error(Errc::invalid_argument,
                      fmt::format("wire.max_tcp_frame_bytes ({}) exceeds net.max_conn_write_queue_bytes ({}): a "
                                  "maximum-size frame could never be queued",
                                  l.max_tcp_frame, t.max_conn_write_queue));
  if (t.max_conn_write_queue > t.max_total_write_queue)
    return make_error(Errc::invalid_argument,
                      fmt::format("net.max_conn_write_queue_bytes ({}) exceeds net.max_total_write_queue_bytes ({})",
                                  t.max_conn_write_queue, t.max_total_write_queue));
  if (l.max_udp_datagram > l.max_tcp_frame)
    return make_error(Errc::invalid_argument, "wire.max_udp_datagram_bytes exceeds wire.max_tcp_frame_bytes");
  if (t.max_conns_per_peer > t.max_conns_total)
    return make_error(Errc::invalid_argument, "net.max_conns_per_peer exceeds net.max_conns_total");
  if (t.max_preauth_per_source > t.max_preauth_conns)
    return make_error(Errc::invalid_argument,
                      fmt::format("net.max_preauth_per_source ({}) exceeds net.max_preauth_conns ({})",
                                  t.max_preauth_per_source, t.max_preauth_conns));
  if (t.backoff_initial > t.backoff_max)
    return make_error(Errc::invalid_argument, "net.backoff_initial_ms exceeds net.backoff_max_ms");
  return ok_status();
}

std::vector<std::string_view> config_keys() {
  std::vector<std::string_view> out;
  for (const auto& e : table()) out.push_back(e.info.key);
  return out;
}

std::vector<KeyInfo> config_key_info() {
  std::vector<KeyInfo> out;
  for (const auto& e : table()) out.push_back(e.info);
  return out;
}

}  // namespace hs::net
