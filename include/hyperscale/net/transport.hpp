// The transport interface the roles use. Two implementations live in src/net (libuv TCP/UDP, and
// in-process between shards); the simulator (src/sim) implements the same interface.
//
// Semantics every implementation keeps:
//   - handlers run on the transport's owning shard; one handler per message type (on() replaces);
//   - request(): exactly one call of `done` later (a reply, or an error: timeout at the deadline,
//     unavailable if the connection carrying it closed), unless request() itself returns an error,
//     in which case `done` is never called;
//   - send()/send_datagram()/request() return backpressure when a bounded queue is full; the caller
//     decides to retry or drop. Nothing is dropped silently.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "hyperscale/base/status.hpp"
#include "hyperscale/base/time.hpp"
#include "hyperscale/wire/frame.hpp"

namespace hs::net {

// A numeric IPv4 address and port ("127.0.0.1:7000"); host names are not resolved.
struct Endpoint {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::string to_string() const { return host + ":" + std::to_string(port); }
  static Result<Endpoint> parse(std::string_view s);
  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

// One received message. `body` is verified and valid only during the handler call.
struct Inbound {
  wire::MsgType type = wire::MsgType::NONE;
  std::string_view sender_id;
  wire::fb::Role sender_role = wire::fb::Role::Unknown;
  std::uint8_t peer_minor = 0;
  std::span<const std::uint8_t> body;
  Endpoint from;  // UDP: the sender's socket; TCP: the connection's remote address
  bool expects_reply = false;
};

// Replies to the message a handler is running for. May be kept and used later; fails with
// unavailable if the connection went away meanwhile.
class Responder {
 public:
  using Fn = std::function<Status(wire::MsgType, std::span<const std::uint8_t>)>;
  Responder() = default;
  explicit Responder(Fn fn) : fn_(std::move(fn)) {}
  Status reply(wire::MsgType type, std::span<const std::uint8_t> body) const {
    if (!fn_) return make_error(Errc::invalid_argument, "this message does not take a reply");
    return fn_(type, body);
  }
  bool can_reply() const noexcept { return static_cast<bool>(fn_); }

 private:
  Fn fn_;
};

using Handler = std::function<void(const Inbound&, const Responder&)>;
// The reply (owning its bytes; read the body with wire::body_as<T>(reply.body)) or an error.
using ReplyFn = std::function<void(Result<wire::Decoded>)>;

class Transport {
 public:
  virtual ~Transport() = default;
  virtual void on(wire::MsgType type, Handler h) = 0;
  // One datagram (UDP): at most Limits::max_udp_datagram bytes sealed, no delivery guarantee.
  virtual Status send_datagram(const Endpoint& to, wire::MsgType type, std::span<const std::uint8_t> body) = 0;
  // One-way message over the reliable channel.
  virtual Status send(const Endpoint& to, wire::MsgType type, std::span<const std::uint8_t> body) = 0;
  // Request with a deadline; see the file comment for the exactly-once contract of `done`.
  virtual Status request(const Endpoint& to, wire::MsgType type, std::span<const std::uint8_t> body, Duration deadline,
                         ReplyFn done) = 0;
  // Where this transport receives (for peers to address it).
  virtual Endpoint tcp_endpoint() const = 0;
  virtual Endpoint udp_endpoint() const = 0;
};

}  // namespace hs::net
