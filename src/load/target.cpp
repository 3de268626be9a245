#include "hyperscale/load/target.hpp"

#include <fmt/format.h>
#include <llhttp.h>
#include <uv.h>

#include <cstring>
#include <list>
#include <memory>
#include <string>

#include "hyperscale/base/log.hpp"
#include "hyperscale/runtime/c_boundary.hpp"

namespace hs::load {

namespace {
constexpr std::size_t kMaxInput = 1 << 20;  // bytes buffered per connection before it is closed
constexpr std::size_t kMaxConns = 65536;    // connections accepted at once; more are refused
}  // namespace

struct Target::Impl {
  struct HttpConn {
    Impl* t = nullptr;
    uv_tcp_t tcp{};
    uv_timer_t timer{};
    llhttp_t parser{};
    std::string in, url, body;
    bool waiting = false, close_after = false, closing = false;
    int timer_open = 0;
    std::list<HttpConn>::iterator self;
  };
  struct EchoConn {
    Impl* t = nullptr;
    uv_tcp_t tcp{};
    std::list<EchoConn>::iterator self;
  };
  struct WriteReq {
    uv_write_t w{};
    std::string data;
    void* conn = nullptr;
    bool close_after = false;
  };
  struct UdpReq {
    uv_udp_send_t s{};
    std::string data;
  };

  runtime::Reactor* r = nullptr;
  TargetOptions opts;
  uv_tcp_t http_srv{}, tcp_srv{};
  uv_udp_t udp{};
  bool http_on = false, tcp_on = false, udp_on = false;
  int http_port = 0, tcp_port = 0, udp_port = 0;
  std::list<HttpConn> http_conns;
  std::list<EchoConn> echo_conns;
  TargetCounters c;
  llhttp_settings_t settings{};

  static int port_of(uv_handle_t* h, bool udp) {
    sockaddr_storage ss{};
    int len = sizeof ss;
    const int rc = udp ? uv_udp_getsockname(reinterpret_cast<uv_udp_t*>(h), reinterpret_cast<sockaddr*>(&ss), &len)
                       : uv_tcp_getsockname(reinterpret_cast<uv_tcp_t*>(h), reinterpret_cast<sockaddr*>(&ss), &len);
    if (rc != 0) return 0;
    return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  }

  metrics::Registry* registry() const { return &r->metrics(); }

  static void alloc(uv_handle_t*, std::size_t, uv_buf_t* b) noexcept {
    static thread_local char buf[64 * 1024];  // read callbacks consume it before the next read
    b->base = buf;
    b->len = sizeof buf;
  }

  void close_http(HttpConn& hc) {
    if (hc.closing) return;
    hc.closing = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&hc.timer), [](uv_handle_t* h) noexcept {
      auto* hc2 = static_cast<HttpConn*>(h->data);
      uv_close(reinterpret_cast<uv_handle_t*>(&hc2->tcp), [](uv_handle_t* h2) noexcept {
        auto* hc3 = static_cast<HttpConn*>(h2->data);
        hc3->t->http_conns.erase(hc3->self);
      });
    });
  }

  void write(uv_stream_t* s, void* conn, std::string data, bool close_after) {
    auto* w = new WriteReq;
    w->data = std::move(data);
    w->conn = conn;
    w->close_after = close_after;
    w->w.data = w;
    uv_buf_t b = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
    const int rc = uv_write(&w->w, s, &b, 1, [](uv_write_t* req, int status) noexcept {
      std::unique_ptr<WriteReq> own(static_cast<WriteReq*>(req->data));
      if (status == UV_ECANCELED) return;
      auto* hc = static_cast<HttpConn*>(own->conn);
      if (hc && (status < 0 || own->close_after)) hc->t->close_http(*hc);
    });
    if (rc < 0) {
      log::debug("target", "write_failed", "error={}", uv_strerror(rc));
      delete w;
      if (conn) close_http(*static_cast<HttpConn*>(conn));
    }
  }

  void respond(HttpConn& hc, int status, const std::string& body, bool chunked = false) {
    c.http_requests++;
    const bool keep = llhttp_should_keep_alive(&hc.parser) && !hc.close_after;
    std::string out = fmt::format("HTTP/1.1 {} {}\r\nServer: hyperscale-target\r\nContent-Type: text/plain\r\n", status,
                                  status < 300 ? "OK" : (status < 500 ? "Client Error" : "Server Error"));
    if (!keep) out += "Connection: close\r\n";
    if (chunked) {
      const std::size_t half = body.size() / 2;
      out += fmt::format("Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n", half,
                         body.substr(0, half), body.size() - half, body.substr(half));
    } else {
      out += fmt::format("Content-Length: {}\r\n\r\n{}", body.size(), body);
    }
    write(reinterpret_cast<uv_stream_t*>(&hc.tcp), &hc, std::move(out), !keep);
  }

  void route(HttpConn& hc) {
    const std::string& u = hc.url;
    if (u.rfind("/status/", 0) == 0) {
      const int s = std::atoi(u.c_str() + 8);
      respond(hc, s >= 200 && s <= 599 ? s : 400, fmt::format("status {}\n", s));
    } else if (u.rfind("/delay/", 0) == 0) {
      const long ms = std::min<long>(60000, std::max<long>(0, std::atol(u.c_str() + 7)));
      hc.waiting = true;
      uv_timer_start(
          &hc.timer,
          [](uv_timer_t* t) noexcept {
            auto* hc2 = static_cast<HttpConn*>(t->data);
            hc2->t->guarded(*hc2, "target_delay_timer", [&] {
              hc2->waiting = false;
              hc2->t->respond(*hc2, 200, "ok\n");
              hc2->t->process(*hc2);
            });
          },
          static_cast<std::uint64_t>(ms), 0);
    } else if (u == "/echo") {
      respond(hc, 200, hc.body);
    } else if (u == "/json") {
      respond(hc, 200, "{\"token\":\"abc123\",\"id\":42}");
    } else if (u == "/chunked") {
      respond(hc, 200, "hello from a chunked body\n", true);
    } else if (u == "/close") {
      hc.close_after = true;
      respond(hc, 200, "bye\n");
    } else {
      respond(hc, 200, "ok\n");
    }
  }

  // Runs a connection's callback body; when it throws, that connection is closed.
  template <typename Fn>
  void guarded(HttpConn& hc, const char* callback, Fn&& fn) noexcept {
    if (runtime::at_c_boundary(registry(), callback, hc.url, fn)) return;
    close_http(hc);
  }

  void process(HttpConn& hc) {
    while (!hc.waiting && !hc.closing && !hc.in.empty()) {
      const llhttp_errno_t e = llhttp_execute(&hc.parser, hc.in.data(), hc.in.size());
      if (e == HPE_PAUSED) {
        const char* pos = llhttp_get_error_pos(&hc.parser);
        hc.in.erase(0, static_cast<std::size_t>(pos - hc.in.data()));
        llhttp_resume(&hc.parser);
        route(hc);
        hc.url.clear();
        hc.body.clear();
      } else if (e == HPE_OK) {
        hc.in.clear();
      } else {
        c.bad_requests++;
        log::debug("target", "bad_request", "error={}", llhttp_errno_name(e));
        write(reinterpret_cast<uv_stream_t*>(&hc.tcp), &hc,
              "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", true);
        hc.in.clear();
        hc.waiting = true;  // the parser is in error: ignore further input until the close
        return;
      }
    }
  }

  Status listen_tcp(uv_tcp_t* srv, int port, uv_connection_cb cb, int& bound) {
    sockaddr_in addr{};
    int rc = uv_ip4_addr(opts.host.c_str(), port, &addr);
    if (rc == 0) rc = uv_tcp_init(r->loop(), srv);
    if (rc != 0)
      return make_error(Errc::invalid_argument, fmt::format("target: bad address {}: {}", opts.host, uv_strerror(rc)));
    srv->data = this;
    rc = uv_tcp_bind(srv, reinterpret_cast<sockaddr*>(&addr), 0);
    if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(srv), 1024, cb);
    if (rc != 0) {
      uv_close(reinterpret_cast<uv_handle_t*>(srv), nullptr);
      return make_error(Errc::io_error, fmt::format("target: listen on {}:{}: {}", opts.host, port, uv_strerror(rc)));
    }
    bound = port_of(reinterpret_cast<uv_handle_t*>(srv), false);
    return ok_status();
  }

  static void on_http_conn(uv_stream_t* srv, int status) noexcept {
    auto* self = static_cast<Impl*>(srv->data);
    if (status < 0) {
      log::warn("target", "accept_failed", "error={}", uv_strerror(status));
      return;
    }
    // Nothing to close yet when this throws (the list refused the new connection): logged and counted.
    runtime::at_c_boundary(self->registry(), "target_http_accept", "", [&] { self->accept_http(srv); });
  }

  void accept_http(uv_stream_t* srv) {
    Impl* self = this;
    self->http_conns.emplace_back();
    HttpConn& hc = self->http_conns.back();
    hc.self = std::prev(self->http_conns.end());
    hc.t = self;
    uv_tcp_init(self->r->loop(), &hc.tcp);
    uv_timer_init(self->r->loop(), &hc.timer);
    hc.tcp.data = &hc;
    hc.timer.data = &hc;
    if (uv_accept(srv, reinterpret_cast<uv_stream_t*>(&hc.tcp)) != 0 || self->http_conns.size() > kMaxConns) {
      self->close_http(hc);
      return;
    }
    self->c.http_connections++;
    uv_tcp_nodelay(&hc.tcp, 1);
    llhttp_init(&hc.parser, HTTP_REQUEST, &self->settings);
    hc.parser.data = &hc;
    uv_read_start(reinterpret_cast<uv_stream_t*>(&hc.tcp), alloc,
                  [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) noexcept {
                    auto* hc2 = static_cast<HttpConn*>(s->data);
                    if (n < 0) {
                      hc2->t->close_http(*hc2);
                      return;
                    }
                    if (hc2->in.size() + static_cast<std::size_t>(n) > kMaxInput) {
                      hc2->t->c.bad_requests++;
                      hc2->t->close_http(*hc2);
                      return;
                    }
                    hc2->t->guarded(*hc2, "target_http_read", [&] {
                      hc2->in.append(b->base, static_cast<std::size_t>(n));
                      hc2->t->process(*hc2);
                    });
                  });
  }

  static void on_echo_conn(uv_stream_t* srv, int status) noexcept {
    auto* self = static_cast<Impl*>(srv->data);
    if (status < 0) {
      log::warn("target", "accept_failed", "error={}", uv_strerror(status));
      return;
    }
    runtime::at_c_boundary(self->registry(), "target_echo_accept", "", [&] { self->accept_echo(srv); });
  }

  static void close_echo(EchoConn& e) noexcept {
    if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&e.tcp))) return;
    uv_close(reinterpret_cast<uv_handle_t*>(&e.tcp), [](uv_handle_t* h) noexcept {
      auto* e2 = static_cast<EchoConn*>(h->data);
      e2->t->echo_conns.erase(e2->self);
    });
  }

  void accept_echo(uv_stream_t* srv) {
    Impl* self = this;
    self->echo_conns.emplace_back();
    EchoConn& ec = self->echo_conns.back();
    ec.self = std::prev(self->echo_conns.end());
    ec.t = self;
    uv_tcp_init(self->r->loop(), &ec.tcp);
    ec.tcp.data = &ec;
    if (uv_accept(srv, reinterpret_cast<uv_stream_t*>(&ec.tcp)) != 0 || self->echo_conns.size() > kMaxConns) {
      close_echo(ec);
      return;
    }
    self->c.tcp_connections++;
    uv_tcp_nodelay(&ec.tcp, 1);
    uv_read_start(reinterpret_cast<uv_stream_t*>(&ec.tcp), alloc,
                  [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) noexcept {
                    auto* e = static_cast<EchoConn*>(s->data);
                    if (n < 0) {
                      close_echo(*e);
                      return;
                    }
                    e->t->c.tcp_bytes += static_cast<std::uint64_t>(n);
                    if (!runtime::at_c_boundary(e->t->registry(), "target_echo_read", "", [&] {
                          e->t->write(s, nullptr, std::string(b->base, static_cast<std::size_t>(n)), false);
                        }))
                      close_echo(*e);
                  });
  }

  Status start(runtime::Reactor& rr, const TargetOptions& o) {
    r = &rr;
    opts = o;
    llhttp_settings_init(&settings);
    // An llhttp callback that throws returns an error: the request is answered 400 and the connection closed.
    settings.on_url = [](llhttp_t* p, const char* at, std::size_t len) noexcept {
      auto* hc = static_cast<HttpConn*>(p->data);
      return runtime::at_c_boundary(hc->t->registry(), "target_llhttp_on_url", "", [&] { hc->url.append(at, len); })
                 ? 0
                 : -1;
    };
    settings.on_body = [](llhttp_t* p, const char* at, std::size_t len) noexcept {
      auto* hc = static_cast<HttpConn*>(p->data);
      return runtime::at_c_boundary(hc->t->registry(), "target_llhttp_on_body", hc->url,
                                    [&] { hc->body.append(at, len); })
                 ? 0
                 : -1;
    };
    settings.on_message_complete = [](llhttp_t*) noexcept { return static_cast<int>(HPE_PAUSED); };
    if (o.http_port >= 0) {
      HS_TRY(listen_tcp(&http_srv, o.http_port, on_http_conn, http_port));
      http_on = true;
    }
    if (o.tcp_port >= 0) {
      HS_TRY(listen_tcp(&tcp_srv, o.tcp_port, on_echo_conn, tcp_port));
      tcp_on = true;
    }
    if (o.udp_port >= 0) {
      sockaddr_in addr{};
      uv_ip4_addr(opts.host.c_str(), o.udp_port, &addr);
      uv_udp_init(r->loop(), &udp);
      udp.data = this;
      int rc = uv_udp_bind(&udp, reinterpret_cast<sockaddr*>(&addr), 0);
      if (rc == 0)
        rc = uv_udp_recv_start(
            &udp, alloc, [](uv_udp_t* h, ssize_t n, const uv_buf_t* b, const sockaddr* from, unsigned) noexcept {
              auto* self = static_cast<Impl*>(h->data);
              if (n <= 0 || from == nullptr) return;
              self->c.udp_datagrams++;
              // A datagram that cannot be echoed (out of memory) is dropped, logged and counted.
              runtime::at_c_boundary(self->registry(), "target_udp_recv", "", [&] {
                auto req = std::make_unique<UdpReq>();
                req->data.assign(b->base, static_cast<std::size_t>(n));
                req->s.data = req.get();
                uv_buf_t out = uv_buf_init(req->data.data(), static_cast<unsigned>(req->data.size()));
                if (uv_udp_send(&req->s, h, &out, 1, from,
                                [](uv_udp_send_t* s, int) noexcept { delete static_cast<UdpReq*>(s->data); }) == 0)
                  req.release();
              });
            });
      if (rc != 0) {
        uv_close(reinterpret_cast<uv_handle_t*>(&udp), nullptr);
        return make_error(Errc::io_error,
                          fmt::format("target: udp bind {}:{}: {}", opts.host, o.udp_port, uv_strerror(rc)));
      }
      udp_port = port_of(reinterpret_cast<uv_handle_t*>(&udp), true);
      udp_on = true;
    }
    r->on_shutdown("target", [this](std::function<void()> done) {
      if (http_on) uv_close(reinterpret_cast<uv_handle_t*>(&http_srv), nullptr);
      if (tcp_on) uv_close(reinterpret_cast<uv_handle_t*>(&tcp_srv), nullptr);
      if (udp_on) uv_close(reinterpret_cast<uv_handle_t*>(&udp), nullptr);
      http_on = tcp_on = udp_on = false;
      for (auto& hc : http_conns) close_http(hc);
      for (auto& ec : echo_conns)
        if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&ec.tcp)))
          uv_close(reinterpret_cast<uv_handle_t*>(&ec.tcp), [](uv_handle_t* h) noexcept {
            auto* e2 = static_cast<EchoConn*>(h->data);
            e2->t->echo_conns.erase(e2->self);
          });
      done();
    });
    return ok_status();
  }
};

Target::Target() : impl_(std::make_unique<Impl>()) {}
Target::~Target() = default;
Status Target::start(runtime::Reactor& r, const TargetOptions& o) { return impl_->start(r, o); }
int Target::http_port() const { return impl_->http_port; }
int Target::tcp_port() const { return impl_->tcp_port; }
int Target::udp_port() const { return impl_->udp_port; }
const TargetCounters& Target::counters() const { return impl_->c; }

}  // namespace hs::load
