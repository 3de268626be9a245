// AdminServer: a daemon's admin HTTP port on the reactor's libuv loop.
//
//   GET /metrics  -> 200, Prometheus text (a metrics source callback, default: the reactor's registry)
//   GET /status   -> 200, application/json from the status callback
//   GET /healthz  -> 200 "ok" (503 + the error when the health callback says so)
//   other paths   -> 404; methods other than GET/HEAD -> 405; malformed requests -> 400;
//   a request head larger than max_request_bytes -> 431.
//
// One request per connection (the reply says Connection: close). Bounded: at most max_connections
// open (more are accepted and closed at once), request head size, and an idle timeout after which
// a connection that has not sent a complete request is closed. Every refusal is counted in
// hs_admin_rejected_total{reason} and logged at debug level (a scanner must not flood the log).
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include "hyperscale/base/metrics.hpp"
#include "hyperscale/base/status.hpp"
#include "hyperscale/net/transport.hpp"
#include "hyperscale/runtime/reactor.hpp"

namespace hs::host {

struct AdminOptions {
  net::Endpoint listen{"127.0.0.1", 0};  // port 0: ephemeral (see endpoint())
  std::size_t max_connections = 64;
  std::size_t max_request_bytes = 8192;
  Duration idle_timeout = std::chrono::seconds(5);
  Duration sweep_period = std::chrono::milliseconds(200);
};

class AdminServer {
 public:
  using TextFn = std::function<std::string()>;
  using HealthFn = std::function<Status()>;
  AdminServer(runtime::Reactor& reactor, AdminOptions opts, TextFn status_json, HealthFn health = {});
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Replaces the /metrics source (e.g. a merge of every shard's snapshot).
  void set_metrics_source(TextFn fn) { metrics_fn_ = std::move(fn); }
  Status start();
  // Closes the listener and every connection; `done` once all handles are closed.
  void close(std::function<void()> done = {});
  net::Endpoint endpoint() const { return bound_; }
  std::size_t connections() const noexcept { return conns_.size(); }

  struct Conn;

 private:
  friend struct AdminAccess;
  void on_accept(int status);
  void on_read(Conn& c, ssize_t n, const uv_buf_t* buf);
  void handle(Conn& c);
  void respond(Conn& c, int code, std::string_view reason, std::string_view content_type, std::string body,
               bool head = false);
  void reject(Conn& c, std::string_view why, int code, std::string_view reason);
  void close_conn(Conn& c);
  void handle_closed();
  void sweep();

  runtime::Reactor& reactor_;
  AdminOptions opts_;
  TextFn status_fn_;
  HealthFn health_fn_;
  TextFn metrics_fn_;
  uv_tcp_t listener_{};
  bool started_ = false;
  bool closed_ = false;
  int open_handles_ = 0;
  std::function<void()> on_closed_;
  net::Endpoint bound_;
  runtime::TaskId sweep_task_{};
  std::shared_ptr<AdminServer*> alive_;
  std::unordered_map<std::uint64_t, Conn*> conns_;
  std::uint64_t next_id_ = 1;
  metrics::Registry& reg_;
};

}  // namespace hs::host
