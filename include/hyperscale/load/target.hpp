// A small built-in target for demos and tests: an HTTP/1.1 server, a TCP echo and a UDP echo on
// loopback, on one reactor. HTTP routes:
//   /              200 "ok\n"
//   /status/NNN    that status
//   /delay/MS      200 after MS milliseconds (max 60000)
//   /echo          200 with the request body
//   /json          200 {"token":"abc123","id":42}
//   /chunked       200 with a chunked body
//   /close         200, then the server closes the connection
#pragma once

#include <cstdint>
#include <memory>

#include "hyperscale/base/status.hpp"
#include "hyperscale/runtime/reactor.hpp"

namespace hs::load {

struct TargetOptions {
  int http_port = -1;  // -1: off, 0: any free port
  int tcp_port = -1;
  int udp_port = -1;
  std::string host = "127.0.0.1";
};

struct TargetCounters {
  std::uint64_t http_requests = 0;
  std::uint64_t http_connections = 0;
  std::uint64_t tcp_connections = 0;
  std::uint64_t tcp_bytes = 0;
  std::uint64_t udp_datagrams = 0;
  std::uint64_t bad_requests = 0;
};

class Target {
 public:
  Target();
  ~Target();
  // Binds and listens on `r`'s loop (call on r's thread). Closes itself when r shuts down.
  Status start(runtime::Reactor& r, const TargetOptions& o);
  int http_port() const;
  int tcp_port() const;
  int udp_port() const;
  // Read on the reactor's thread, or after it stopped.
  const TargetCounters& counters() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hs::load
