#include "hyperscale/net/uv_transport.hpp"

#include <openssl/rand.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstring>

#include "hyperscale/base/host_port.hpp"
#include "hyperscale/base/log.hpp"

namespace hs::net {

using wire::Channel;
using wire::Reject;

Result<Endpoint> Endpoint::parse(std::string_view s) {
  auto hp = parse_host_port(s);
  if (!hp.ok()) return hp.status();
  Endpoint e;
  e.host = std::move(hp->host);
  e.port = hp->port;
  sockaddr_in sa{};
  if (uv_ip4_addr(e.host.c_str(), e.port, &sa) != 0)
    return make_error(Errc::invalid_argument, fmt::format("endpoint {}: not a numeric IPv4 address", log::quoted(s)));
  return e;
}

struct UvTransport::Peer {
  Endpoint ep;
  std::string key;
  sockaddr_in addr{};
  std::vector<Conn*> conns;           // reserved slots: connecting, open and closing connections
  std::vector<std::uint8_t> backlog;  // sealed frames waiting for a connection
  std::uint32_t failures = 0;
  std::uint64_t failures_total = 0;
  std::string last_connect_error;
  std::uint64_t closed_after_send = 0;
  Instant next_attempt{0};
  Instant last_used{0};
};

struct UvTransport::Conn {
  uv_tcp_t tcp{};
  uv_connect_t connect_req{};
  UvTransport* t = nullptr;
  std::uint64_t id = 0;
  bool outbound = false;
  bool was_open = false;
  Peer* peer = nullptr;
  Endpoint remote;
  enum class St { connecting, open, closing } st = St::connecting;
  bool preauth = false;  // inbound, accepted, no valid frame yet (in preauth_)
  bool authed = false;   // inbound, past its first valid frame (counted in inbound_authed_)
  Instant opened_at{0};
  Instant last_activity{0};
  std::uint64_t bytes_written = 0;  // handed to the socket
  // reading
  bool in_frame = false;
  Instant frame_started{0};
  std::array<std::uint8_t, wire::kHeaderSize> hdr{};
  std::size_t hdr_have = 0;
  wire::FrameHeader h;
  std::vector<std::uint8_t> frame;
  std::size_t frame_have = 0;
  // writing
  std::vector<std::uint8_t> out;  // staged; handed to libuv at turn end
  std::size_t in_libuv = 0;
  bool dirty = false;
  std::size_t inflight = 0;
  std::size_t queued() const noexcept { return out.size() + in_libuv; }
};

namespace {

// Why a pre-auth connection was closed: index into preauth_closed_ and the log slots.
enum PreauthReason : std::size_t { kPreauthTimeout = 0, kPreauthEvicted, kPreauthEvictedSource, kPreauthFdLimit };
constexpr std::string_view kPreauthReasonName[] = {"preauth_timeout", "preauth_evicted", "preauth_evicted_source",
                                                   "preauth_fd_limit"};
// Log slots beyond the pre-auth reasons.
enum LogKind : std::size_t { kLogAcceptFdLimit = 4, kLogAcceptError, kLogInboundRefused };
constexpr std::uint32_t kLogPerSecond = 5;
// Descriptors kept free below RLIMIT_NOFILE for real peers, files and outbound connections.
constexpr std::uint64_t kFdReserve = 32;

struct WriteReq {
  uv_write_t req{};
  std::vector<std::uint8_t> buf;
  UvTransport::Conn* c = nullptr;
};

Endpoint endpoint_of(const sockaddr* sa) {
  Endpoint e;
  if (sa != nullptr && sa->sa_family == AF_INET) {
    char buf[INET_ADDRSTRLEN] = {};
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    uv_ip4_name(in, buf, sizeof(buf));
    e.host = buf;
    e.port = ntohs(in->sin_port);
  } else {
    e.host = "?";
  }
  return e;
}

}  // namespace

// Friend shim so the C callbacks can reach private members.
struct ConnAccess {
  static void on_connected(UvTransport& t, UvTransport::Conn& c, int st) { t.on_connected(c, st); }
  static void on_accept(UvTransport& t, int st) { t.on_accept(st); }
  static void on_read(UvTransport& t, UvTransport::Conn& c, const std::uint8_t* d, std::size_t n) {
    t.on_read(c, d, n);
  }
  static void close_conn(UvTransport& t, UvTransport::Conn& c, std::string_view why) { t.close_conn(c, why); }
  static void conn_closed(UvTransport& t, UvTransport::Conn& c) { t.conn_closed(c); }
  static void on_read_error(UvTransport& t, UvTransport::Conn& c, int err) {
    if (c.in_frame) {
      // The peer went away in the middle of a frame: that frame is truncated.
      t.reject(c, Reject::truncated,
               fmt::format("connection ended mid-frame ({}): {} of {} bytes", uv_strerror(err),
                           c.hdr_have < wire::kHeaderSize ? c.hdr_have : c.frame_have,
                           c.hdr_have < wire::kHeaderSize ? wire::kHeaderSize : c.frame.size()));
      return;
    }
    t.close_conn(c, err == UV_EOF ? "eof" : uv_strerror(err));
  }
  static void on_written(UvTransport& t, UvTransport::Conn& c, std::size_t b, int st) { t.on_written(c, b, st); }
  static void on_deadline(UvTransport& t) { t.on_deadline_timer(); }
  static void on_udp(UvTransport& t, const std::uint8_t* d, std::size_t n, const sockaddr* a) { t.on_udp(d, n, a); }
  static std::vector<std::uint8_t>& read_buf(UvTransport& t) { return t.read_buf_; }
  static std::vector<std::uint8_t>& dgram_buf(UvTransport& t) { return t.dgram_buf_; }
  // Starts reading a connection into the transport's shared read buffer (outbound and inbound alike).
  static int start_reading(UvTransport::Conn& c) {
    return uv_read_start(
        reinterpret_cast<uv_stream_t*>(&c.tcp),
        [](uv_handle_t* h, size_t, uv_buf_t* b) {
          auto& buf = ConnAccess::read_buf(*static_cast<UvTransport::Conn*>(h->data)->t);
          *b = uv_buf_init(reinterpret_cast<char*>(buf.data()), static_cast<unsigned>(buf.size()));
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
          auto* cc = static_cast<UvTransport::Conn*>(s->data);
          if (n < 0) {
            ConnAccess::on_read_error(*cc->t, *cc, static_cast<int>(n));
            return;
          }
          ConnAccess::on_read(*cc->t, *cc, reinterpret_cast<const std::uint8_t*>(b->base), static_cast<std::size_t>(n));
        });
  }
  static void handle_closed(UvTransport& t) {
    --t.open_handles_;
    t.check_all_closed();
  }
};

UvTransport::UvTransport(runtime::Reactor& reactor, TransportConfig cfg, wire::Identity self, wire::Keyring keys,
                         wire::Limits limits)
    : reactor_(reactor),
      cfg_(std::move(cfg)),
      codec_(std::move(self), std::move(keys), limits, reactor.metrics()),
      rng_(cfg_.seed),
      alive_(std::make_shared<UvTransport*>(this)),
      send_errors_backpressure_(
          reactor.metrics().counter("hs_net_backpressure_total", "Sends refused because a write queue was full")),
      request_timeouts_(reactor.metrics().counter("hs_net_request_timeouts_total", "Requests that hit their deadline")),
      conn_closed_reject_(reactor.metrics().counter("hs_net_conn_closed_total", "Connections closed, by reason",
                                                    {{"reason", "rejected_frame"}})),
      conn_closed_idle_(
          reactor.metrics().counter("hs_net_conn_closed_total", "Connections closed, by reason", {{"reason", "idle"}})),
      conn_closed_error_(reactor.metrics().counter("hs_net_conn_closed_total", "Connections closed, by reason",
                                                   {{"reason", "error"}})),
      connect_failures_ctr_(reactor.metrics().counter("hs_net_connect_failures_total", "Failed outbound connects")),
      late_replies_(reactor.metrics().counter("hs_net_late_replies_total",
                                              "Replies that arrived after their request completed (dropped)")),
      unhandled_(reactor.metrics().counter("hs_net_unhandled_total", "Messages with no registered handler")),
      handler_errors_(
          reactor.metrics().counter("hs_net_handler_errors_total", "Handlers or reply callbacks that threw")),
      refused_inbound_(
          reactor.metrics().counter("hs_net_inbound_refused_total",
                                    "Inbound connections closed at their first valid frame: inbound limit reached")),
      accept_fd_limit_(reactor.metrics().counter("hs_net_accept_errors_total", "accept() failures, by reason",
                                                 {{"reason", "fd_limit"}})),
      accept_error_(reactor.metrics().counter("hs_net_accept_errors_total", "accept() failures, by reason",
                                              {{"reason", "error"}})),
      preauth_gauge_(reactor.metrics().gauge("hs_net_preauth_conns", "Inbound connections without a valid frame yet")),
      outbound_gauge_(reactor.metrics().gauge("hs_net_conns", "Open connections", {{"dir", "outbound"}})),
      inbound_gauge_(reactor.metrics().gauge("hs_net_conns", "Open connections", {{"dir", "inbound"}})) {
  if (cfg_.seed == 0) {
    std::uint64_t s = 0;
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&s), sizeof(s)) != 1)
      s = static_cast<std::uint64_t>(wall_time_us());
    rng_.reseed(s);
  }
  for (std::size_t i = 0; i < preauth_closed_.size(); ++i)
    preauth_closed_[i] = &reactor.metrics().counter("hs_net_conn_closed_total", "Connections closed, by reason",
                                                    {{"reason", std::string(kPreauthReasonName[i])}});
  read_buf_.resize(64 * 1024);
  dgram_buf_.resize(64 * 1024);
  std::weak_ptr<UvTransport*> weak = alive_;
  turn_end_hook_ = reactor_.on_turn_end([weak] {
    if (auto p = weak.lock(); p && *p) (*p)->flush();
  });
  reactor_.on_shutdown("net.transport", [weak](std::function<void()> done) {
    auto p = weak.lock();
    if (!p || !*p) return done();
    (*p)->close(std::move(done));
  });
}

UvTransport::~UvTransport() {
  close();
  // Close callbacks reference this object: let them run before the memory goes away.
  for (int i = 0; i < 10'000 && open_handles_ > 0; ++i) uv_run(reactor_.loop(), UV_RUN_NOWAIT);
  if (open_handles_ > 0)
    log::error("net", "transport_destroyed_with_open_handles", "handles={} note=destroy it outside the loop callback",
               open_handles_);
  *alive_ = nullptr;
  reactor_.remove_turn_end(turn_end_hook_);
}

std::int64_t UvTransport::wall_ms() const { return wall_time_us() / 1000; }

Status UvTransport::start() {
  if (started_) return make_error(Errc::already_exists, "transport already started");
  started_ = true;
  uv_loop_t* loop = reactor_.loop();
  if (rlimit lim{}; getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY) {
    fd_limit_ = static_cast<std::uint64_t>(lim.rlim_cur);
    const std::uint64_t want = cfg_.max_inbound_conns + cfg_.max_preauth_conns + cfg_.max_conns_total + 2 * kFdReserve;
    // The soft limit is often 1024 while the hard one is far higher: raise the soft limit (this
    // process only) as far as the connection limits need before deciding that it is too low.
    if (cfg_.enable_tcp_listen && want > fd_limit_ && lim.rlim_max > lim.rlim_cur) {
      rlimit raised = lim;
      raised.rlim_cur = lim.rlim_max == RLIM_INFINITY ? want : std::min<rlim_t>(lim.rlim_max, want);
      if (setrlimit(RLIMIT_NOFILE, &raised) == 0) {
        log::info("net", "fd_limit_raised", "from={} to={}", fd_limit_, static_cast<std::uint64_t>(raised.rlim_cur));
        fd_limit_ = static_cast<std::uint64_t>(raised.rlim_cur);
      } else {
        log::info("net", "fd_limit_raise_failed", "error={}", log::quoted(std::strerror(errno)));
      }
    }
    if (cfg_.enable_tcp_listen && want > fd_limit_)
      log::warn("net", "fd_limit_low",
                "limit={} wanted={} note=inbound+preauth+outbound connection limits exceed RLIMIT_NOFILE; near the "
                "limit the oldest pre-auth connections are closed (hs_net_accept_errors_total{{reason=fd_limit}})",
                fd_limit_, want);
  }
  int rc = uv_timer_init(loop, &deadline_timer_);
  if (rc != 0) return errno_status("uv_timer_init", -rc);
  deadline_timer_.data = this;
  ++open_handles_;
  sockaddr_in sa{};
  if ((rc = uv_ip4_addr(cfg_.listen_host.c_str(), 0, &sa)) != 0)
    return make_error(Errc::invalid_argument,
                      fmt::format("listen_host {} is not a numeric IPv4 address", log::quoted(cfg_.listen_host)));
  if (cfg_.enable_tcp_listen) {
    uv_ip4_addr(cfg_.listen_host.c_str(), cfg_.tcp_port, &sa);
    if ((rc = uv_tcp_init(loop, &listener_)) != 0) return errno_status("uv_tcp_init", -rc);
    listener_.data = this;
    ++open_handles_;
    if ((rc = uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&sa), 0)) != 0 ||
        (rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 1024, [](uv_stream_t* s, int st) {
           ConnAccess::on_accept(*static_cast<UvTransport*>(s->data), st);
         })) != 0)
      return errno_status(fmt::format("tcp listen {}:{}", cfg_.listen_host, cfg_.tcp_port), -rc);
    sockaddr_storage name{};
    int len = sizeof(name);
    uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&name), &len);
    tcp_ep_ = endpoint_of(reinterpret_cast<sockaddr*>(&name));
    HS_TRY(codec_.accept_receiver(tcp_ep_.to_string()));  // frames sealed for the address peers dial
  }
  if (cfg_.enable_udp) {
    uv_ip4_addr(cfg_.listen_host.c_str(), cfg_.udp_port, &sa);
    if ((rc = uv_udp_init(loop, &udp_)) != 0) return errno_status("uv_udp_init", -rc);
    udp_.data = this;
    ++open_handles_;
    if ((rc = uv_udp_bind(&udp_, reinterpret_cast<const sockaddr*>(&sa), 0)) != 0)
      return errno_status(fmt::format("udp bind {}:{}", cfg_.listen_host, cfg_.udp_port), -rc);
    rc = uv_udp_recv_start(
        &udp_,
        [](uv_handle_t* h, size_t, uv_buf_t* b) {
          auto& buf = ConnAccess::dgram_buf(*static_cast<UvTransport*>(h->data));
          *b = uv_buf_init(reinterpret_cast<char*>(buf.data()), static_cast<unsigned>(buf.size()));
        },
        [](uv_udp_t* h, ssize_t n, const uv_buf_t* b, const sockaddr* addr, unsigned) {
          auto& t = *static_cast<UvTransport*>(h->data);
          if (n < 0) {
            log::warn("net", "udp_recv_error", "error={}", log::quoted(uv_strerror(static_cast<int>(n))));
            return;
          }
          if (n == 0 && addr == nullptr) return;  // nothing more to read
          ConnAccess::on_udp(t, reinterpret_cast<const std::uint8_t*>(b->base), static_cast<std::size_t>(n), addr);
        });
    if (rc != 0) return errno_status("uv_udp_recv_start", -rc);
    sockaddr_storage name{};
    int len = sizeof(name);
    uv_udp_getsockname(&udp_, reinterpret_cast<sockaddr*>(&name), &len);
    udp_ep_ = endpoint_of(reinterpret_cast<sockaddr*>(&name));
    HS_TRY(codec_.accept_receiver(udp_ep_.to_string()));
  }
  std::weak_ptr<UvTransport*> weak = alive_;
  auto task = reactor_.every("net.sweep", cfg_.sweep_period, [weak]() -> Status {
    if (auto p = weak.lock(); p && *p) (*p)->sweep();
    return ok_status();
  });
  if (!task.ok()) return task.status().with_context("net.sweep task");
  sweep_task_ = task.value();
  log::info("net", "transport_started", "node={} tcp={} udp={}", codec_.self().node_id, tcp_ep_.to_string(),
            udp_ep_.to_string());
  return ok_status();
}

void UvTransport::close(std::function<void()> done) {
  if (done) {
    if (closed_ && open_handles_ == 0) {
      done();
      return;
    }
    if (on_all_closed_) {
      auto prev = std::move(on_all_closed_);
      on_all_closed_ = [prev = std::move(prev), done = std::move(done)] {
        prev();
        done();
      };
    } else {
      on_all_closed_ = std::move(done);
    }
  }
  if (closed_) return;
  closed_ = true;
  if (sweep_task_.valid()) reactor_.cancel(sweep_task_);
  std::vector<Conn*> all;
  for (auto& [id, c] : conns_) all.push_back(c);
  for (Conn* c : all) close_conn(*c, "transport_closed");
  auto close_handle = [](uv_handle_t* h) {
    uv_close(h, [](uv_handle_t* hh) { ConnAccess::handle_closed(*static_cast<UvTransport*>(hh->data)); });
  };
  if (started_) {
    close_handle(reinterpret_cast<uv_handle_t*>(&deadline_timer_));
    if (cfg_.enable_tcp_listen && listener_.data) close_handle(reinterpret_cast<uv_handle_t*>(&listener_));
    if (cfg_.enable_udp && udp_.data) close_handle(reinterpret_cast<uv_handle_t*>(&udp_));
  }
  std::vector<std::uint64_t> ids;
  for (auto& [corr, p] : pending_) ids.push_back(corr);
  for (auto corr : ids) complete(corr, make_error(Errc::unavailable, "transport closed"));
  for (auto& [k, p] : peers_) {
    queued_bytes_ -= p->backlog.size();
    p->backlog.clear();
  }
  check_all_closed();
}

void UvTransport::check_all_closed() {
  if (closed_ && open_handles_ == 0 && on_all_closed_) {
    auto fn = std::move(on_all_closed_);
    on_all_closed_ = nullptr;
    fn();
  }
}

void UvTransport::on(wire::MsgType type, Handler h) { handlers_[static_cast<std::uint8_t>(type)] = std::move(h); }

TransportStats UvTransport::stats() const {
  TransportStats s;
  s.outbound_conns = outbound_;
  s.outbound_conns_max = outbound_max_;
  s.inbound_conns = inbound_;
  s.preauth_conns = preauth_.size();
  s.pending_requests = pending_.size();
  s.queued_bytes = queued_bytes_;
  s.connect_attempts = connect_attempts_;
  s.connect_failures = connect_failures_;
  s.largest_frame_buffer = largest_frame_buffer_;
  return s;
}

std::size_t UvTransport::peer_conns(const Endpoint& to) const {
  auto it = peers_.find(to.to_string());
  return it == peers_.end() ? 0 : it->second->conns.size();
}

PeerLink UvTransport::peer_link(const Endpoint& to) const {
  PeerLink l;
  auto it = peers_.find(to.to_string());
  if (it == peers_.end()) return l;
  const Peer& p = *it->second;
  l.known = true;
  l.connect_failures = p.failures;
  l.connect_failures_total = p.failures_total;
  l.last_connect_error = p.last_connect_error;
  l.closed_after_send = p.closed_after_send;
  return l;
}

Duration UvTransport::backoff_delay(std::uint32_t failures) {
  double base = static_cast<double>(cfg_.backoff_initial.count());
  double cap = static_cast<double>(cfg_.backoff_max.count());
  double d = base;
  for (std::uint32_t i = 1; i < failures && d < cap; ++i) d *= 2;
  d = std::min(d, cap);
  // Jitter: uniform in [d/2, d].
  return Duration(static_cast<std::int64_t>(d / 2 + rng_.next_double() * d / 2));
}

// ---- sending ----

UvTransport::Peer* UvTransport::peer_for(const Endpoint& to, Status& err) {
  std::string key = to.to_string();
  auto it = peers_.find(key);
  if (it != peers_.end()) return it->second.get();
  sockaddr_in sa{};
  if (uv_ip4_addr(to.host.c_str(), to.port, &sa) != 0 || to.port == 0) {
    err = make_error(Errc::invalid_argument, fmt::format("peer {} is not a numeric IPv4 endpoint", key));
    return nullptr;
  }
  if (peers_.size() >= cfg_.max_peers) {
    for (auto i = peers_.begin(); i != peers_.end(); ++i) {
      if (i->second->conns.empty() && i->second->backlog.empty()) {
        peers_.erase(i);
        break;
      }
    }
    if (peers_.size() >= cfg_.max_peers) {
      err = make_error(Errc::backpressure, fmt::format("peer table full ({} peers)", cfg_.max_peers));
      return nullptr;
    }
  }
  auto p = std::make_unique<Peer>();
  p->ep = to;
  p->key = key;
  p->addr = sa;
  Peer* raw = p.get();
  peers_.emplace(std::move(key), std::move(p));
  return raw;
}

UvTransport::Conn* UvTransport::pick_conn(Peer& p) {
  Conn* best = nullptr;
  for (Conn* c : p.conns)
    if (c->st != Conn::St::closing && (best == nullptr || c->inflight < best->inflight)) best = c;
  const bool want_new = best == nullptr || best->inflight >= cfg_.open_new_at_inflight;
  if (want_new && !closed_ && p.conns.size() < cfg_.max_conns_per_peer && outbound_ < cfg_.max_conns_total &&
      reactor_.clock().now() >= p.next_attempt) {
    if (Conn* n = open_conn(p)) return n;
  }
  return best;
}

UvTransport::Conn* UvTransport::open_conn(Peer& p) {
  auto* c = new Conn();
  c->t = this;
  c->id = next_conn_id_++;
  c->outbound = true;
  c->peer = &p;
  c->remote = p.ep;
  c->opened_at = c->last_activity = reactor_.clock().now();
  int rc = uv_tcp_init(reactor_.loop(), &c->tcp);
  if (rc != 0) {
    log::warn("net", "tcp_init_failed", "peer={} error={}", p.key, log::quoted(uv_strerror(rc)));
    delete c;
    return nullptr;
  }
  c->tcp.data = c;
  // Reserve the slot before connecting: the per-peer and total limits count this connection from now on.
  p.conns.push_back(c);
  ++outbound_;
  outbound_max_ = std::max(outbound_max_, outbound_);
  outbound_gauge_.set(static_cast<double>(outbound_));
  conns_[c->id] = c;
  ++open_handles_;
  ++connect_attempts_;
  c->connect_req.data = c;
  rc = uv_tcp_connect(&c->connect_req, &c->tcp, reinterpret_cast<const sockaddr*>(&p.addr),
                      [](uv_connect_t* req, int st) {
                        auto* cc = static_cast<Conn*>(req->data);
                        ConnAccess::on_connected(*cc->t, *cc, st);
                      });
  if (rc != 0) {
    on_connected(*c, rc);
    return nullptr;
  }
  return c;
}

void UvTransport::on_connected(Conn& c, int status) {
  if (c.st == Conn::St::closing) return;  // closed while connecting (ECANCELED)
  Peer& p = *c.peer;
  if (status != 0) {
    ++connect_failures_;
    connect_failures_ctr_.inc();
    ++p.failures;
    ++p.failures_total;
    p.last_connect_error = uv_strerror(status);
    p.next_attempt = reactor_.clock().now() + backoff_delay(p.failures);
    // A peer that stays down would fill the log: the first failure of a streak and every 16th after
    // it are warnings, the rest debug lines (every failure is counted either way).
    const bool loud = p.failures == 1 || p.failures % 16 == 0;
    log::logf(loud ? log::Level::warn : log::Level::debug, "net", "connect_failed",
              "peer={} error={} failures={} retry_in_ms={:.0f}", p.key, log::quoted(p.last_connect_error), p.failures,
              to_millis(p.next_attempt - reactor_.clock().now()));
    close_conn(c, "connect_failed");
    return;
  }
  c.st = Conn::St::open;
  c.was_open = true;
  c.last_activity = reactor_.clock().now();
  p.failures = 0;
  p.next_attempt = Instant{0};
  uv_tcp_nodelay(&c.tcp, 1);
  int rc = ConnAccess::start_reading(c);
  if (rc != 0) {
    close_conn(c, uv_strerror(rc));
    return;
  }
  // Frames that waited for a connection go out on this one.
  if (!p.backlog.empty()) {
    if (c.out.empty()) {
      c.out.swap(p.backlog);
    } else {
      c.out.insert(c.out.end(), p.backlog.begin(), p.backlog.end());
      p.backlog.clear();
    }
    for (auto& [corr, pr] : pending_) {
      if (pr.conn_id == 0 && pr.peer == p.key) {
        pr.conn_id = c.id;
        ++c.inflight;
      }
    }
  }
  if (!c.out.empty() && !c.dirty) {
    c.dirty = true;
    dirty_.push_back(c.id);
  }
}

Status UvTransport::write_frame(Conn& c, wire::MsgType type, std::span<const std::uint8_t> body, std::uint64_t corr,
                                bool is_reply, std::string_view receiver) {
  const std::size_t before = c.out.size();
  HS_TRY(codec_.seal(type, body, corr, is_reply, Channel::tcp, receiver, c.out, wall_ms()));
  queued_bytes_ += c.out.size() - before;
  if (!c.dirty) {
    c.dirty = true;
    dirty_.push_back(c.id);
  }
  return ok_status();
}

Status UvTransport::enqueue(const Endpoint& to, wire::MsgType type, std::span<const std::uint8_t> body,
                            std::uint64_t corr, bool is_reply, Conn** used) {
  if (closed_ || !started_) return make_error(Errc::unavailable, "transport not running");
  Status err;
  Peer* p = peer_for(to, err);
  if (p == nullptr) return err;
  const std::size_t est = body.size() + 256;
  if (est > codec_.limits().max_tcp_frame)
    return make_error(Errc::invalid_argument,
                      fmt::format("{} body of {} bytes exceeds the tcp frame limit of {}", wire::type_name(type),
                                  body.size(), codec_.limits().max_tcp_frame));
  if (queued_bytes_ + est > cfg_.max_total_write_queue) {
    send_errors_backpressure_.inc();
    return make_error(Errc::backpressure, fmt::format("total write queue full ({} bytes)", queued_bytes_));
  }
  p->last_used = reactor_.clock().now();
  Conn* c = pick_conn(*p);
  if (c != nullptr) {
    if (c->queued() + est > cfg_.max_conn_write_queue) {
      send_errors_backpressure_.inc();
      return make_error(Errc::backpressure, fmt::format("write queue to {} full ({} bytes)", p->key, c->queued()));
    }
    HS_TRY(write_frame(*c, type, body, corr, is_reply, p->key));
    if (used) *used = c;
    return ok_status();
  }
  if (p->backlog.size() + est > cfg_.max_conn_write_queue) {
    send_errors_backpressure_.inc();
    return make_error(Errc::backpressure, fmt::format("backlog to {} full ({} bytes; peer unreachable, failures={})",
                                                      p->key, p->backlog.size(), p->failures));
  }
  const std::size_t before = p->backlog.size();
  HS_TRY(codec_.seal(type, body, corr, is_reply, Channel::tcp, p->key, p->backlog, wall_ms()));
  queued_bytes_ += p->backlog.size() - before;
  if (used) *used = nullptr;
  return ok_status();
}

Status UvTransport::send(const Endpoint& to, wire::MsgType type, std::span<const std::uint8_t> body) {
  return enqueue(to, type, body, 0, false, nullptr);
}

Status UvTransport::request(const Endpoint& to, wire::MsgType type, std::span<const std::uint8_t> body,
                            Duration deadline, ReplyFn done) {
  if (pending_.size() >= cfg_.max_pending_requests) {
    send_errors_backpressure_.inc();
    return make_error(Errc::backpressure, fmt::format("{} requests pending", pending_.size()));
  }
  const std::uint64_t corr = next_corr_++;
  Conn* used = nullptr;
  HS_TRY(enqueue(to, type, body, corr, false, &used));
  Pending pr;
  pr.done = std::move(done);
  pr.deadline = reactor_.clock().now() + deadline;
  pr.conn_id = used ? used->id : 0;
  pr.peer = to.to_string();
  if (used) ++used->inflight;
  deadlines_.emplace(pr.deadline.count(), corr);
  pending_.emplace(corr, std::move(pr));
  if (deadlines_.size() > 2 * cfg_.max_pending_requests + 1024) {
    decltype(deadlines_) fresh;
    for (auto& [k, v] : pending_) fresh.emplace(v.deadline.count(), k);
    deadlines_.swap(fresh);
  }
  arm_deadline_timer();
  return ok_status();
}

Status UvTransport::send_datagram(const Endpoint& to, wire::MsgType type, std::span<const std::uint8_t> body) {
  return send_datagram_for(to, to.to_string(), type, body);
}

Status UvTransport::send_datagram_for(const Endpoint& to, std::string_view receiver, wire::MsgType type,
                                      std::span<const std::uint8_t> body) {
  if (closed_ || !started_ || !cfg_.enable_udp) return make_error(Errc::unavailable, "udp not running");
  sockaddr_in sa{};
  if (uv_ip4_addr(to.host.c_str(), to.port, &sa) != 0 || to.port == 0)
    return make_error(Errc::invalid_argument,
                      fmt::format("datagram peer {} is not a numeric IPv4 endpoint", to.to_string()));
  udp_out_.clear();
  HS_TRY(codec_.seal(type, body, 0, false, Channel::udp, receiver, udp_out_, wall_ms()));
  uv_buf_t b = uv_buf_init(reinterpret_cast<char*>(udp_out_.data()), static_cast<unsigned>(udp_out_.size()));
  int rc = uv_udp_try_send(&udp_, &b, 1, reinterpret_cast<const sockaddr*>(&sa));
  if (rc == UV_EAGAIN) {
    send_errors_backpressure_.inc();
    return make_error(Errc::backpressure, "udp socket buffer full");
  }
  if (rc < 0) return errno_status(fmt::format("udp send to {}", to.to_string()), -rc);
  return ok_status();
}

void UvTransport::flush() {
  if (dirty_.empty()) return;
  std::vector<std::uint64_t> ids;
  ids.swap(dirty_);
  for (auto id : ids) {
    auto it = conns_.find(id);
    if (it == conns_.end()) continue;
    Conn& c = *it->second;
    c.dirty = false;
    if (c.st == Conn::St::open && !c.out.empty()) flush_conn(c);
  }
}

void UvTransport::flush_conn(Conn& c) {
  auto* w = new WriteReq();
  w->buf.swap(c.out);
  w->c = &c;
  w->req.data = w;
  c.in_libuv += w->buf.size();
  uv_buf_t b = uv_buf_init(reinterpret_cast<char*>(w->buf.data()), static_cast<unsigned>(w->buf.size()));
  int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&c.tcp), &b, 1, [](uv_write_t* req, int st) {
    auto* wr = static_cast<WriteReq*>(req->data);
    ConnAccess::on_written(*wr->c->t, *wr->c, wr->buf.size(), st);
    delete wr;
  });
  if (rc != 0) {
    c.in_libuv -= w->buf.size();
    queued_bytes_ -= w->buf.size();
    delete w;
    close_conn(c, uv_strerror(rc));
    return;
  }
  c.bytes_written += b.len;
}

void UvTransport::on_written(Conn& c, std::size_t bytes, int status) {
  c.in_libuv -= bytes;
  queued_bytes_ -= bytes;
  c.last_activity = reactor_.clock().now();
  if (status != 0 && status != UV_ECANCELED) close_conn(c, uv_strerror(status));
}

// ---- receiving ----

void UvTransport::on_accept(int status) {
  if (status != 0) {
    if (status == UV_EMFILE || status == UV_ENFILE) {
      // Out of descriptors: libuv drops the waiting connections. Free one held by the oldest
      // unauthenticated connection so the next real peer can be accepted.
      accept_fd_limit_.inc();
      note_limited(
          kLogAcceptFdLimit, "accept_fd_limit",
          fmt::format("error={} inbound={} preauth={}", log::quoted(uv_strerror(status)), inbound_, preauth_.size()));
      for (int i = 0; i < 8 && !preauth_.empty(); ++i)
        close_preauth(*conns_.at(*preauth_.begin()), kPreauthFdLimit, "descriptors needed to accept");
    } else {
      accept_error_.inc();
      note_limited(kLogAcceptError, "accept_failed", fmt::format("error={}", log::quoted(uv_strerror(status))));
    }
    return;
  }
  auto* c = new Conn();
  c->t = this;
  c->id = next_conn_id_++;
  c->outbound = false;
  int rc = uv_tcp_init(reactor_.loop(), &c->tcp);
  if (rc != 0) {
    log::warn("net", "tcp_init_failed", "what=accept error={}", log::quoted(uv_strerror(rc)));
    delete c;
    return;
  }
  c->tcp.data = c;
  ++open_handles_;
  ++inbound_;
  conns_[c->id] = c;
  inbound_gauge_.set(static_cast<double>(inbound_));
  c->st = Conn::St::open;
  c->was_open = true;
  c->opened_at = c->last_activity = reactor_.clock().now();
  if ((rc = uv_accept(reinterpret_cast<uv_stream_t*>(&listener_), reinterpret_cast<uv_stream_t*>(&c->tcp))) != 0) {
    close_conn(*c, uv_strerror(rc));
    return;
  }
  sockaddr_storage name{};
  int len = sizeof(name);
  uv_tcp_getpeername(&c->tcp, reinterpret_cast<sockaddr*>(&name), &len);
  c->remote = endpoint_of(reinterpret_cast<sockaddr*>(&name));
  admit_preauth(*c);
  // Descriptors are allocated lowest first, so this one's number tells how close the process is to
  // its limit. Near it, the oldest unauthenticated connection gives its descriptor back before
  // accept() starts failing (libuv would then drop waiting connections, real peers included).
  uv_os_fd_t fd = -1;
  if (fd_limit_ > 0 && uv_fileno(reinterpret_cast<uv_handle_t*>(&c->tcp), &fd) == 0 &&
      static_cast<std::uint64_t>(fd) + kFdReserve >= fd_limit_) {
    accept_fd_limit_.inc();
    note_limited(kLogAcceptFdLimit, "accept_fd_limit",
                 fmt::format("fd={} limit={} reserve={} inbound={} preauth={}", fd, fd_limit_, kFdReserve, inbound_,
                             preauth_.size()));
    Conn& oldest = *conns_.at(*preauth_.begin());
    close_preauth(oldest, kPreauthFdLimit, "descriptor headroom");
    if (&oldest == c) return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  rc = ConnAccess::start_reading(*c);
  if (rc != 0) close_conn(*c, uv_strerror(rc));
}

void UvTransport::on_read(Conn& c, const std::uint8_t* p, std::size_t n) {
  const Instant now = reactor_.clock().now();
  c.last_activity = now;
  while (n > 0 && c.st != Conn::St::closing) {
    if (!c.in_frame) {
      c.in_frame = true;
      c.frame_started = now;
      c.hdr_have = 0;
      c.frame_have = 0;
    }
    if (c.hdr_have < wire::kHeaderSize) {
      const std::size_t k = std::min(n, wire::kHeaderSize - c.hdr_have);
      std::memcpy(c.hdr.data() + c.hdr_have, p, k);
      c.hdr_have += k;
      p += k;
      n -= k;
      if (c.hdr_have < wire::kHeaderSize) break;
      // The length is checked here, before the frame buffer is allocated.
      Reject r = wire::parse_header(c.hdr, codec_.limits().max_tcp_frame, c.h);
      if (r != Reject::none) {
        reject(c, r, fmt::format("header length={} type={}", c.h.length, c.h.type));
        return;
      }
      c.frame.resize(wire::kHeaderSize + c.h.length);
      largest_frame_buffer_ = std::max(largest_frame_buffer_, c.frame.size());
      std::memcpy(c.frame.data(), c.hdr.data(), wire::kHeaderSize);
      c.frame_have = wire::kHeaderSize;
    }
    const std::size_t k = std::min(n, c.frame.size() - c.frame_have);
    std::memcpy(c.frame.data() + c.frame_have, p, k);
    c.frame_have += k;
    p += k;
    n -= k;
    if (c.frame_have == c.frame.size()) {
      c.in_frame = false;
      on_frame(c);
      if (c.frame.capacity() > (64u << 10)) std::vector<std::uint8_t>().swap(c.frame);
    }
  }
}

void UvTransport::on_frame(Conn& c) {
  auto r = codec_.decode(c.frame, Channel::tcp, wall_ms());
  if (!r.ok()) {
    reject(c, r.reason, r.detail);
    return;
  }
  if (c.preauth) {
    // The first valid frame: the connection now takes an authenticated inbound slot.
    preauth_forget(c);
    if (inbound_authed_ >= cfg_.max_inbound_conns) {
      refused_inbound_.inc();
      note_limited(kLogInboundRefused, "inbound_refused",
                   fmt::format("peer={} sender={} authenticated={} limit={}", c.remote.to_string(),
                               log::quoted(r.msg.sender_id), inbound_authed_, cfg_.max_inbound_conns));
      close_conn(c, "inbound_limit");
      return;
    }
    c.authed = true;
    ++inbound_authed_;
  }
  dispatch(std::move(r.msg), c.remote, &c);
}

void UvTransport::on_udp(const std::uint8_t* data, std::size_t n, const sockaddr* addr) {
  Endpoint from = endpoint_of(addr);
  auto r = codec_.decode({data, n}, Channel::udp, wall_ms());
  if (!r.ok()) {
    codec_.note_reject(r.reason, Channel::udp, from.to_string(), r.detail, reactor_.clock().now());
    return;
  }
  dispatch(std::move(r.msg), from, nullptr);
}

// ---- pre-auth inbound connections ----

void UvTransport::admit_preauth(Conn& c) {
  // Make room first: the oldest pre-auth connection of this source, then the oldest of all.
  if (cfg_.max_preauth_per_source > 0) {
    auto it = preauth_by_source_.find(c.remote.host);
    if (it != preauth_by_source_.end() && it->second.size() >= cfg_.max_preauth_per_source)
      close_preauth(*conns_.at(*it->second.begin()), kPreauthEvictedSource,
                    fmt::format("source {} has {} pre-auth connections (limit {})", c.remote.host, it->second.size(),
                                cfg_.max_preauth_per_source));
  }
  if (!preauth_.empty() && preauth_.size() >= cfg_.max_preauth_conns)
    close_preauth(*conns_.at(*preauth_.begin()), kPreauthEvicted,
                  fmt::format("{} pre-auth connections (limit {})", preauth_.size(), cfg_.max_preauth_conns));
  c.preauth = true;
  preauth_.insert(c.id);
  preauth_by_source_[c.remote.host].insert(c.id);
  preauth_gauge_.set(static_cast<double>(preauth_.size()));
}

void UvTransport::preauth_forget(Conn& c) {
  if (!c.preauth) return;
  c.preauth = false;
  preauth_.erase(c.id);
  auto it = preauth_by_source_.find(c.remote.host);
  if (it != preauth_by_source_.end()) {
    it->second.erase(c.id);
    if (it->second.empty()) preauth_by_source_.erase(it);
  }
  preauth_gauge_.set(static_cast<double>(preauth_.size()));
}

void UvTransport::close_preauth(Conn& c, std::size_t reason, std::string_view detail) {
  preauth_closed_[reason]->inc();
  note_limited(
      reason, "preauth_closed",
      fmt::format("peer={} reason={} age_ms={:.0f} detail={}", c.remote.to_string(), kPreauthReasonName[reason],
                  to_millis(reactor_.clock().now() - c.opened_at), log::quoted(detail)));
  close_conn(c, kPreauthReasonName[reason]);
}

void UvTransport::note_limited(std::size_t kind, std::string_view event, std::string_view what) {
  LogSlot& s = log_slots_.at(kind);
  const std::int64_t second = reactor_.clock().now().count() / 1'000'000'000;
  if (s.second != second) {
    if (s.suppressed > 0) log::warn("net", "warnings_suppressed", "event={} count={} window_s=1", event, s.suppressed);
    s.second = second;
    s.logged = 0;
    s.suppressed = 0;
  }
  if (s.logged < kLogPerSecond) {
    ++s.logged;
    log::warn("net", event, "{}", what);
  } else {
    ++s.suppressed;
  }
}

void UvTransport::reject(Conn& c, Reject r, std::string_view detail) {
  codec_.note_reject(r, Channel::tcp, c.remote.to_string(), detail, reactor_.clock().now());
  conn_closed_reject_.inc();
  close_conn(c, wire::reject_name(r));
}

void UvTransport::dispatch(wire::Decoded&& d, const Endpoint& from, Conn* c) {
  if (d.is_reply) {
    if (c != nullptr && c->outbound) {
      complete(d.correlation, std::move(d));
    } else {
      late_replies_.inc();
      log::debug("net", "unexpected_reply", "from={} type={}", from.to_string(), wire::type_name(d.type));
    }
    return;
  }
  Inbound in;
  in.type = d.type;
  in.sender_id = d.sender_id;
  in.sender_role = d.sender_role;
  in.peer_minor = d.peer_minor;
  in.body = d.body;
  in.from = from;
  in.expects_reply = d.correlation != 0 && c != nullptr;
  Responder resp;
  if (in.expects_reply) {
    std::weak_ptr<UvTransport*> weak = alive_;
    const std::uint64_t conn_id = c->id, corr = d.correlation;
    // A reply is sealed for the requester (its authenticated sender id).
    resp = Responder(
        [weak, conn_id, corr, to = d.sender_id](wire::MsgType type, std::span<const std::uint8_t> body) -> Status {
          auto p = weak.lock();
          if (!p || !*p) return make_error(Errc::unavailable, "transport gone");
          return (*p)->reply_on(conn_id, corr, type, body, to);
        });
  } else if (c == nullptr) {
    std::weak_ptr<UvTransport*> weak = alive_;
    resp = Responder([weak, from, to = d.sender_id](wire::MsgType type, std::span<const std::uint8_t> body) -> Status {
      auto p = weak.lock();
      if (!p || !*p) return make_error(Errc::unavailable, "transport gone");
      return (*p)->send_datagram_for(from, to, type, body);
    });
  }
  auto h = handlers_.find(static_cast<std::uint8_t>(d.type));
  if (h == handlers_.end() || !h->second) {
    unhandled_.inc();
    log::debug("net", "no_handler", "type={} from={}", wire::type_name(d.type), from.to_string());
    if (in.expects_reply) {
      flatbuffers::FlatBufferBuilder b;
      b.Finish(wire::fb::CreateErrorReplyDirect(b, static_cast<std::uint16_t>(Errc::not_found), "no handler"));
      Status st = resp.reply(wire::MsgType::ErrorReply, wire::finished(b));
      if (!st.ok()) log::warn("net", "error_reply_failed", "error={}", log::quoted(st.to_string()));
    }
    return;
  }
  try {
    h->second(in, resp);
  } catch (const std::exception& e) {
    handler_errors_.inc();
    log::error("net", "handler_threw", "type={} from={} error={}", wire::type_name(d.type), from.to_string(),
               log::quoted(e.what()));
  }
}

Status UvTransport::reply_on(std::uint64_t conn_id, std::uint64_t corr, wire::MsgType type,
                             std::span<const std::uint8_t> body, std::string_view receiver) {
  auto it = conns_.find(conn_id);
  if (it == conns_.end() || it->second->st != Conn::St::open)
    return make_error(Errc::unavailable, "the connection the request came on is closed");
  Conn& c = *it->second;
  const std::size_t est = body.size() + 256;
  if (c.queued() + est > cfg_.max_conn_write_queue || queued_bytes_ + est > cfg_.max_total_write_queue) {
    send_errors_backpressure_.inc();
    return make_error(Errc::backpressure, fmt::format("write queue to {} full", c.remote.to_string()));
  }
  return write_frame(c, type, body, corr, true, receiver);
}

void UvTransport::complete(std::uint64_t corr, Result<wire::Decoded> r) {
  auto it = pending_.find(corr);
  if (it == pending_.end()) {
    late_replies_.inc();
    log::debug("net", "late_reply", "correlation={}", corr);
    return;
  }
  Pending pr = std::move(it->second);
  pending_.erase(it);
  if (pr.conn_id != 0) {
    auto c = conns_.find(pr.conn_id);
    if (c != conns_.end() && c->second->inflight > 0) --c->second->inflight;
  }
  try {
    pr.done(std::move(r));
  } catch (const std::exception& e) {
    handler_errors_.inc();
    log::error("net", "reply_callback_threw", "peer={} error={}", pr.peer, log::quoted(e.what()));
  }
}

// ---- deadlines, sweeping, closing ----

void UvTransport::arm_deadline_timer() {
  if (closed_ || deadlines_.empty()) return;
  const std::int64_t top = deadlines_.top().first;
  if (deadline_armed_ns_ >= 0 && deadline_armed_ns_ <= top) return;
  const std::int64_t now = reactor_.clock().now().count();
  const std::uint64_t ms = top <= now ? 0 : static_cast<std::uint64_t>((top - now + 999'999) / 1'000'000);
  deadline_armed_ns_ = top;
  uv_timer_start(
      &deadline_timer_, [](uv_timer_t* t) { ConnAccess::on_deadline(*static_cast<UvTransport*>(t->data)); }, ms, 0);
}

void UvTransport::on_deadline_timer() {
  deadline_armed_ns_ = -1;
  const std::int64_t now = reactor_.clock().now().count();
  while (!deadlines_.empty() && deadlines_.top().first <= now) {
    const std::uint64_t corr = deadlines_.top().second;
    deadlines_.pop();
    auto it = pending_.find(corr);
    if (it == pending_.end() || it->second.deadline.count() > now) continue;
    request_timeouts_.inc();
    complete(corr, make_error(Errc::timeout, fmt::format("request to {} timed out", it->second.peer)));
  }
  arm_deadline_timer();
}

void UvTransport::sweep() {
  const Instant now = reactor_.clock().now();
  // Pre-auth connections past their deadline, oldest first. After a stalled loop (this sweep much
  // later than the last) their first frames may be waiting unread: judge them next sweep.
  const bool loop_ran =
      last_sweep_.count() == 0 || now - last_sweep_ <= std::max(cfg_.preauth_timeout / 2, 4 * cfg_.sweep_period);
  last_sweep_ = now;
  std::vector<Conn*> late;
  if (loop_ran) {
    for (std::uint64_t id : preauth_) {
      Conn* c = conns_.at(id);
      if (now - c->opened_at <= cfg_.preauth_timeout) break;  // ids follow accept order
      late.push_back(c);
    }
  }
  for (Conn* c : late)
    close_preauth(*c, kPreauthTimeout,
                  fmt::format("no valid frame within {:.0f} ms ({} bytes of a frame received)",
                              to_millis(cfg_.preauth_timeout), c->in_frame ? std::max(c->hdr_have, c->frame_have) : 0));
  std::vector<Conn*> stalled, idle, slow_connect;
  for (auto& [id, c] : conns_) {
    if (c->st == Conn::St::closing) continue;
    if (c->st == Conn::St::connecting) {
      if (now - c->opened_at > cfg_.connect_timeout) slow_connect.push_back(c);
      continue;
    }
    if (c->in_frame && now - c->frame_started > cfg_.frame_deadline) {
      stalled.push_back(c);
    } else if (!c->in_frame && c->inflight == 0 && c->queued() == 0 && now - c->last_activity > cfg_.idle_timeout) {
      idle.push_back(c);
    }
  }
  for (Conn* c : stalled)
    reject(*c, Reject::stalled,
           fmt::format("frame started {:.0f} ms ago, {} of {} bytes", to_millis(now - c->frame_started),
                       c->hdr_have < wire::kHeaderSize ? c->hdr_have : c->frame_have,
                       c->hdr_have < wire::kHeaderSize ? wire::kHeaderSize : c->frame.size()));
  for (Conn* c : idle) {
    conn_closed_idle_.inc();
    close_conn(*c, "idle");
  }
  for (Conn* c : slow_connect) {
    Peer& p = *c->peer;
    ++connect_failures_;
    connect_failures_ctr_.inc();
    ++p.failures;
    ++p.failures_total;
    p.last_connect_error = "connect timed out";
    p.next_attempt = now + backoff_delay(p.failures);
    log::logf(p.failures == 1 || p.failures % 16 == 0 ? log::Level::warn : log::Level::debug, "net", "connect_timeout",
              "peer={} failures={}", p.key, p.failures);
    close_conn(*c, "connect_timeout");
  }
  // Peers with waiting frames and no connection: reconnect once the backoff has passed.
  for (auto it = peers_.begin(); it != peers_.end();) {
    Peer& p = *it->second;
    if (!p.backlog.empty() && p.conns.empty() && now >= p.next_attempt) {
      if (outbound_ >= cfg_.max_conns_total) {
        // The total limit is reached: free an idle connection of another peer for the next sweep.
        for (auto& [id, c] : conns_) {
          if (c->outbound && c->st == Conn::St::open && c->inflight == 0 && c->queued() == 0 && !c->in_frame) {
            close_conn(*c, "yield_slot");
            break;
          }
        }
      } else {
        pick_conn(p);
      }
    } else if (p.backlog.empty() && p.conns.empty() && now - p.last_used > cfg_.idle_timeout && p.failures == 0) {
      it = peers_.erase(it);
      continue;
    }
    ++it;
  }
}

void UvTransport::close_conn(Conn& c, std::string_view why) {
  if (c.st == Conn::St::closing) return;
  const bool was_open = c.was_open;
  c.st = Conn::St::closing;
  preauth_forget(c);
  if (c.authed) {
    c.authed = false;
    --inbound_authed_;
  }
  log::debug("net", "conn_closing", "id={} peer={} dir={} reason={}", c.id, c.remote.to_string(),
             c.outbound ? "out" : "in", log::quoted(why));
  if (why != "idle" && why != "eof" && why != "transport_closed" && why != "connect_failed" &&
      why != "connect_timeout" && why != "yield_slot" && c.outbound)
    conn_closed_error_.inc();
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&c.tcp));
  // The peer hung up on frames we sent (end of stream, or a reset when our bytes were still unread
  // there): what a node does to frames it cannot authenticate.
  const bool peer_hung_up = why == "eof" || why == uv_strerror(UV_ECONNRESET) || why == uv_strerror(UV_EPIPE);
  if (c.outbound && was_open && peer_hung_up && c.bytes_written > 0 && c.peer != nullptr) ++c.peer->closed_after_send;
  std::vector<std::uint64_t> failed;
  if (c.outbound && !was_open && c.peer != nullptr && !closed_) {
    // Never connected: its frames go back to the peer's backlog for the next attempt.
    Peer& p = *c.peer;
    p.backlog.insert(p.backlog.end(), c.out.begin(), c.out.end());
    c.out.clear();
    for (auto& [corr, pr] : pending_)
      if (pr.conn_id == c.id) pr.conn_id = 0;
  } else {
    queued_bytes_ -= c.out.size();
    c.out.clear();
    for (auto& [corr, pr] : pending_)
      if (pr.conn_id == c.id) failed.push_back(corr);
  }
  c.inflight = 0;
  std::vector<std::uint8_t>().swap(c.frame);
  uv_close(reinterpret_cast<uv_handle_t*>(&c.tcp), [](uv_handle_t* h) {
    auto* cc = static_cast<Conn*>(h->data);
    ConnAccess::conn_closed(*cc->t, *cc);
  });
  for (auto corr : failed)
    complete(corr,
             make_error(Errc::unavailable, fmt::format("connection to {} closed ({})", c.remote.to_string(), why)));
}

void UvTransport::conn_closed(Conn& c) {
  conns_.erase(c.id);
  if (c.outbound) {
    if (c.peer != nullptr) {
      auto& v = c.peer->conns;
      v.erase(std::remove(v.begin(), v.end(), &c), v.end());
    }
    --outbound_;
    outbound_gauge_.set(static_cast<double>(outbound_));
  } else {
    --inbound_;
    inbound_gauge_.set(static_cast<double>(inbound_));
  }
  --open_handles_;
  delete &c;
  check_all_closed();
}

}  // namespace hs::net
