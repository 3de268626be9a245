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
  std::string_view key;
  std::function<Status(NetConfig&, std::string_view key, std::string_view v)> set;
};

template <typename T>
Entry size_key(std::string_view key, T NetConfig::*sub, std::size_t std::remove_reference_t<T>::*field,
               std::uint64_t lo, std::uint64_t hi) {
  return {key, [=](NetConfig& c, std::string_view k, std::string_view v) {
            std::uint64_t x = 0;
            HS_TRY(parse_u64(k, v, lo, hi, x));
            (c.*sub).*field = static_cast<std::size_t>(x);
            return ok_status();
          }};
}

template <typename T>
Entry ms_key(std::string_view key, T NetConfig::*sub, Duration std::remove_reference_t<T>::*field, std::uint64_t lo,
             std::uint64_t hi) {
  return {key, [=](NetConfig& c, std::string_view k, std::string_view v) {
            std::uint64_t x = 0;
            HS_TRY(parse_u64(k, v, lo, hi, x));
            (c.*sub).*field = std::chrono::milliseconds(x);
            return ok_status();
          }};
}

Entry string_key(std::string_view key, std::function<void(NetConfig&, std::string)> set, bool allow_empty = true) {
  return {key, [=](NetConfig& c, std::string_view k, std::string_view v) {
            if (!allow_empty && v.empty()) return make_error(Errc::invalid_argument, fmt::format("{}: empty", k));
            set(c, std::string(v));
            return ok_status();
          }};
}

Entry port_key(std::string_view key, std::uint16_t TransportConfig::*field) {
  return {key, [=](NetConfig& c, std::string_view k, std::string_view v) {
            std::uint64_t x = 0;
            HS_TRY(parse_u64(k, v, 0, 65535, x));
            c.transport.*field = static_cast<std::uint16_t>(x);
            return ok_status();
          }};
}

const std::vector<Entry>& table() {
  constexpr std::uint64_t kMiB = 1 << 20;
  static const std::vector<Entry> t = {
      string_key(
          "wire.cluster_id", [](NetConfig& c, std::string v) { c.cluster_id = std::move(v); }, false),
      string_key("wire.secret_file", [](NetConfig& c, std::string v) { c.secret.file = std::move(v); }),
      string_key("wire.secret_env", [](NetConfig& c, std::string v) { c.secret.env = std::move(v); }),
      string_key("wire.previous_secret_file",
                 [](NetConfig& c, std::string v) { c.previous_secret.file = std::move(v); }),
      string_key("wire.previous_secret_env", [](NetConfig& c, std::string v) { c.previous_secret.env = std::move(v); }),
      size_key("wire.max_tcp_frame_bytes", &NetConfig::limits, &wire::Limits::max_tcp_frame, 1024, 64 * kMiB),
      size_key("wire.max_udp_datagram_bytes", &NetConfig::limits, &wire::Limits::max_udp_datagram, 256, 65507),
      ms_key("wire.max_age_ms", &NetConfig::limits, &wire::Limits::max_age, 1000, 3'600'000),
      ms_key("wire.max_future_ms", &NetConfig::limits, &wire::Limits::max_future, 0, 3'600'000),
      size_key("wire.replay_window", &NetConfig::limits, &wire::Limits::replay_window, 64, 1 << 20),
      size_key("wire.replay_max_senders", &NetConfig::limits, &wire::Limits::replay_max_senders, 16, 10'000'000),
      string_key(
          "net.listen_host", [](NetConfig& c, std::string v) { c.transport.listen_host = std::move(v); }, false),
      port_key("net.tcp_port", &TransportConfig::tcp_port),
      port_key("net.udp_port", &TransportConfig::udp_port),
      size_key("net.max_conns_per_peer", &NetConfig::transport, &TransportConfig::max_conns_per_peer, 1, 1024),
      size_key("net.max_conns_total", &NetConfig::transport, &TransportConfig::max_conns_total, 1, 1'000'000),
      size_key("net.max_inbound_conns", &NetConfig::transport, &TransportConfig::max_inbound_conns, 1, 1'000'000),
      size_key("net.open_new_at_inflight", &NetConfig::transport, &TransportConfig::open_new_at_inflight, 1, 1'000'000),
      ms_key("net.idle_timeout_ms", &NetConfig::transport, &TransportConfig::idle_timeout, 100, 86'400'000),
      ms_key("net.connect_timeout_ms", &NetConfig::transport, &TransportConfig::connect_timeout, 10, 600'000),
      ms_key("net.frame_deadline_ms", &NetConfig::transport, &TransportConfig::frame_deadline, 10, 600'000),
      ms_key("net.backoff_initial_ms", &NetConfig::transport, &TransportConfig::backoff_initial, 1, 600'000),
      ms_key("net.backoff_max_ms", &NetConfig::transport, &TransportConfig::backoff_max, 1, 3'600'000),
      size_key("net.max_conn_write_queue_bytes", &NetConfig::transport, &TransportConfig::max_conn_write_queue, 4096,
               1024 * kMiB),
      size_key("net.max_total_write_queue_bytes", &NetConfig::transport, &TransportConfig::max_total_write_queue, 4096,
               64 * 1024 * kMiB),
      size_key("net.max_pending_requests", &NetConfig::transport, &TransportConfig::max_pending_requests, 1,
               10'000'000),
      size_key("net.max_peers", &NetConfig::transport, &TransportConfig::max_peers, 1, 1'000'000),
  };
  return t;
}

}  // namespace

Status set_config(NetConfig& cfg, std::string_view key, std::string_view value) {
  for (const auto& e : table())
    if (e.key == key) return e.set(cfg, key, value);
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
  if (t.backoff_initial > t.backoff_max)
    return make_error(Errc::invalid_argument, "net.backoff_initial_ms exceeds net.backoff_max_ms");
  return ok_status();
}

std::vector<std::string_view> config_keys() {
  std::vector<std::string_view> out;
  for (const auto& e : table()) out.push_back(e.key);
  return out;
}

}  // namespace hs::net
