#include "hyperscale/host/admin.hpp"

#include <string_view>

#include "hyperscale/base/log.hpp"
#include "hyperscale/runtime/c_boundary.hpp"

namespace hs::host {

struct AdminServer::Conn {
  uv_tcp_t tcp{};
  uv_write_t write_req{};
  AdminServer* server = nullptr;
  std::uint64_t id = 0;
  std::string in;
  std::string out;
  Instant opened{0};
  bool responding = false;  // a response is being written; the connection closes after it
  bool closing = false;
  char read_buf[2048];
};

// The libuv callbacks enter the server through here, each at a C callback boundary: an exception is
// logged and counted (runtime/c_boundary.hpp) and, where a connection is involved, that connection closes.
struct AdminAccess {
  static void on_accept(AdminServer& s, int st) noexcept {
    runtime::at_c_boundary(&s.reg_, "admin_accept", "", [&] { s.on_accept(st); });
  }
  static void on_read(AdminServer::Conn& c, ssize_t n, const uv_buf_t* b) noexcept {
    AdminServer& s = *c.server;
    if (!runtime::at_c_boundary(&s.reg_, "admin_read", "", [&] { s.on_read(c, n, b); })) s.close_conn(c);
  }
  static void handle_closed(AdminServer& s) noexcept {
    runtime::at_c_boundary(&s.reg_, "admin_close", "", [&] { s.handle_closed(); });
  }
  static std::unordered_map<std::uint64_t, AdminServer::Conn*>& conns(AdminServer& s) { return s.conns_; }
};

namespace {
constexpr std::string_view kRejected = "Admin HTTP requests or connections refused, by reason";
constexpr std::string_view kRequests = "Admin HTTP requests answered, by path";
}  // namespace

AdminServer::AdminServer(runtime::Reactor& reactor, AdminOptions opts, TextFn status_json, HealthFn health)
    : reactor_(reactor),
      opts_(std::move(opts)),
      status_fn_(std::move(status_json)),
      health_fn_(std::move(health)),
      alive_(std::make_shared<AdminServer*>(this)),
      reg_(reactor.metrics()) {
  listener_.data = this;
}

AdminServer::~AdminServer() {
  close();
  for (int i = 0; i < 10'000 && open_handles_ > 0; ++i) uv_run(reactor_.loop(), UV_RUN_NOWAIT);
  if (open_handles_ > 0)
    log::error("host", "admin_destroyed_with_open_handles", "handles={} note=destroy it outside the loop callback",
               open_handles_);
  *alive_ = nullptr;
}

Status AdminServer::start() {
  if (started_) return make_error(Errc::already_exists, "admin server already started");
  started_ = true;
  sockaddr_in sa{};
  if (uv_ip4_addr(opts_.listen.host.c_str(), opts_.listen.port, &sa) != 0)
    return make_error(Errc::invalid_argument, fmt::format("admin listen host {} is not a numeric IPv4 address",
                                                          log::quoted(opts_.listen.host)));
  int rc = uv_tcp_init(reactor_.loop(), &listener_);
  if (rc != 0) return errno_status("admin uv_tcp_init", -rc);
  ++open_handles_;
  if ((rc = uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&sa), 0)) != 0 ||
      (rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 128, [](uv_stream_t* s, int st) noexcept {
         AdminAccess::on_accept(*static_cast<AdminServer*>(s->data), st);
       })) != 0)
    return errno_status(fmt::format("admin listen {}", opts_.listen.to_string()), -rc);
  sockaddr_storage name{};
  int len = sizeof(name);
  uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&name), &len);
  const auto* sin = reinterpret_cast<const sockaddr_in*>(&name);
  char host[INET_ADDRSTRLEN] = {0};
  uv_ip4_name(sin, host, sizeof(host));
  bound_ = net::Endpoint{host, ntohs(sin->sin_port)};
  std::weak_ptr<AdminServer*> weak = alive_;
  auto t = reactor_.every("admin.sweep", opts_.sweep_period, [weak]() -> Status {
    if (auto p = weak.lock(); p && *p) (*p)->sweep();
    return ok_status();
  });
  if (!t.ok()) return t.status().with_context("admin sweep task");
  sweep_task_ = *t;
  log::info("host", "admin_listening", "addr={}", bound_.to_string());
  return ok_status();
}

void AdminServer::close(std::function<void()> done) {
  if (done) {
    if (closed_ && open_handles_ == 0) {
      done();
      return;
    }
    on_closed_ = std::move(done);
  }
  if (closed_) return;
  closed_ = true;
  if (sweep_task_.valid()) reactor_.cancel(sweep_task_);
  sweep_task_ = {};
  std::vector<Conn*> all;
  for (auto& [id, c] : conns_) all.push_back(c);
  for (Conn* c : all) close_conn(*c);
  if (started_ && open_handles_ > 0 && !uv_is_closing(reinterpret_cast<uv_handle_t*>(&listener_)))
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_),
             [](uv_handle_t* h) noexcept { AdminAccess::handle_closed(*static_cast<AdminServer*>(h->data)); });
  if (open_handles_ == 0 && on_closed_) {
    auto cb = std::move(on_closed_);
    on_closed_ = nullptr;
    cb();
  }
}

void AdminServer::handle_closed() {
  --open_handles_;
  if (open_handles_ == 0 && closed_ && on_closed_) {
    auto cb = std::move(on_closed_);
    on_closed_ = nullptr;
    cb();
  }
}

void AdminServer::on_accept(int status) {
  if (status < 0) {
    reg_.counter("hs_admin_rejected_total", kRejected, {{"reason", "accept_error"}}).inc();
    log::warn("host", "admin_accept_failed", "error={}", log::quoted(uv_strerror(status)));
    return;
  }
  auto* c = new Conn();
  c->server = this;
  c->id = next_id_++;
  c->opened = reactor_.clock().now();
  c->tcp.data = c;
  if (int rc = uv_tcp_init(reactor_.loop(), &c->tcp); rc != 0) {
    delete c;
    reg_.counter("hs_admin_rejected_total", kRejected, {{"reason", "accept_error"}}).inc();
    log::warn("host", "admin_accept_failed", "error={}", log::quoted(uv_strerror(rc)));
    return;
  }
  ++open_handles_;
  conns_[c->id] = c;
  if (uv_accept(reinterpret_cast<uv_stream_t*>(&listener_), reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) {
    reg_.counter("hs_admin_rejected_total", kRejected, {{"reason", "accept_error"}}).inc();
    close_conn(*c);
    return;
  }
  if (conns_.size() > opts_.max_connections) {
    reg_.counter("hs_admin_rejected_total", kRejected, {{"reason", "max_connections"}}).inc();
    log::debug("host", "admin_refused", "reason=max_connections limit={}", opts_.max_connections);
    close_conn(*c);
    return;
  }
  int rc = uv_read_start(
      reinterpret_cast<uv_stream_t*>(&c->tcp),
      [](uv_handle_t* h, size_t, uv_buf_t* b) noexcept {
        auto* cc = static_cast<Conn*>(h->data);
        *b = uv_buf_init(cc->read_buf, sizeof(cc->read_buf));
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) noexcept {
        AdminAccess::on_read(*static_cast<Conn*>(s->data), n, b);
      });
  if (rc != 0) {
    reg_.counter("hs_admin_rejected_total", kRejected, {{"reason", "accept_error"}}).inc();
    close_conn(*c);
  }
}

void AdminServer::on_read(Conn& c, ssize_t n, const uv_buf_t* buf) {
  if (c.closing || c.responding) return;
  if (n < 0) {
    if (n != UV_EOF) log::debug("host", "admin_read_error", "error={}", log::quoted(uv_strerror(static_cast<int>(n))));
    if (!c.in.empty()) reg_.counter("hs_admin_rejected_total", kRejected, {{"reason", "incomplete"}}).inc();
    close_conn(c);
    return;
  }
  if (n == 0) return;
  c.in.append(buf->base, static_cast<std::size_t>(n));
  if (c.in.find("\r\n\r\n") != std::string::npos || c.in.find("\n\n") != std::string::npos) {
    handle(c);
    return;
  }
  if (c.in.size() > opts_.max_request_bytes) reject(c, "too_large", 431, "Request Header Fields Too Large");
}

void AdminServer::reject(Conn& c, std::string_view why, int code, std::string_view reason) {
  reg_.counter("hs_admin_rejected_total", kRejected, {{"reason", std::string(why)}}).inc();
  log::debug("host", "admin_bad_request", "reason={} code={}", why, code);
  respond(c, code, reason, "text/plain; charset=utf-8", std::string(reason) + "\n");
}

void AdminServer::handle(Conn& c) {
  if (c.in.size() > opts_.max_request_bytes) {
    reject(c, "too_large", 431, "Request Header Fields Too Large");
    return;
  }
  // Request line: METHOD SP TARGET SP HTTP/1.x
  const std::size_t eol = c.in.find('\n');
  std::string_view line(c.in.data(), eol);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  const std::size_t s1 = line.find(' ');
  const std::size_t s2 = s1 == std::string_view::npos ? s1 : line.find(' ', s1 + 1);
  if (s1 == std::string_view::npos || s2 == std::string_view::npos || s1 == 0 || s2 == s1 + 1 ||
      line.find(' ', s2 + 1) != std::string_view::npos) {
    reject(c, "malformed", 400, "Bad Request");
    return;
  }
  const std::string_view method = line.substr(0, s1);
  std::string_view target = line.substr(s1 + 1, s2 - s1 - 1);
  const std::string_view version = line.substr(s2 + 1);
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    reject(c, "malformed", 400, "Bad Request");
    return;
  }
  for (char ch : target) {
    if (static_cast<unsigned char>(ch) <= 0x20 || static_cast<unsigned char>(ch) >= 0x7f) {
      reject(c, "malformed", 400, "Bad Request");
      return;
    }
  }
  if (method != "GET" && method != "HEAD") {
    reject(c, "method", 405, "Method Not Allowed");
    return;
  }
  const bool head = method == "HEAD";
  if (auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
  auto count = [&](std::string_view path) {
    reg_.counter("hs_admin_requests_total", kRequests, {{"path", std::string(path)}}).inc();
  };
  if (target == "/metrics") {
    count("metrics");
    std::string body = metrics_fn_ ? metrics_fn_() : reg_.render_prometheus();
    respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", std::move(body), head);
  } else if (target == "/status") {
    count("status");
    std::string body = status_fn_ ? status_fn_() : std::string("{}");
    respond(c, 200, "OK", "application/json", std::move(body), head);
  } else if (target == "/healthz") {
    count("healthz");
    Status st = health_fn_ ? health_fn_() : ok_status();
    if (st.ok()) {
      respond(c, 200, "OK", "text/plain; charset=utf-8", "ok\n", head);
    } else {
      respond(c, 503, "Service Unavailable", "text/plain; charset=utf-8", st.to_string() + "\n", head);
    }
  } else {
    count("other");
    respond(c, 404, "Not Found", "text/plain; charset=utf-8", "not found\n", head);
  }
}

void AdminServer::respond(Conn& c, int code, std::string_view reason, std::string_view content_type, std::string body,
                          bool head) {
  c.responding = true;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&c.tcp));
  c.out = fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", code,
                      reason, content_type, body.size());
  if (!head) c.out += body;
  uv_buf_t b = uv_buf_init(c.out.data(), static_cast<unsigned>(c.out.size()));
  c.write_req.data = &c;
  int rc = uv_write(&c.write_req, reinterpret_cast<uv_stream_t*>(&c.tcp), &b, 1, [](uv_write_t* req, int st) noexcept {
    auto* cc = static_cast<Conn*>(req->data);
    if (st < 0) log::debug("host", "admin_write_failed", "error={}", log::quoted(uv_strerror(st)));
    cc->server->close_conn(*cc);
  });
  if (rc != 0) {
    log::debug("host", "admin_write_failed", "error={}", log::quoted(uv_strerror(rc)));
    close_conn(c);
  }
}

void AdminServer::close_conn(Conn& c) {
  if (c.closing) return;
  c.closing = true;
  conns_.erase(c.id);
  uv_close(reinterpret_cast<uv_handle_t*>(&c.tcp), [](uv_handle_t* h) noexcept {
    auto* cc = static_cast<Conn*>(h->data);
    AdminServer* s = cc->server;
    delete cc;
    AdminAccess::handle_closed(*s);
  });
}

void AdminServer::sweep() {
  const Instant now = reactor_.clock().now();
  std::vector<Conn*> idle;
  for (auto& [id, c] : conns_)
    if (!c->responding && now - c->opened > opts_.idle_timeout) idle.push_back(c);
  for (Conn* c : idle) {
    reg_.counter("hs_admin_rejected_total", kRejected, {{"reason", "idle_timeout"}}).inc();
    log::debug("host", "admin_idle_closed", "conn={} bytes={}", c->id, c->in.size());
    close_conn(*c);
  }
}

}  // namespace hs::host
