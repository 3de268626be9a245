// The local load engine (see engine.hpp). Per shard: WfRun (one workflow's share) → Vu (one virtual
// user: an iteration over the step DAG) → Conn (one connection per VU per step, libuv handles, llhttp
// parser). Requests whose bytes are static are serialised once per step; the steady state allocates
// nothing per request (tools/bench/load_alloc checks it).
#include "hyperscale/load/engine.hpp"

#include <fmt/format.h>
#include <llhttp.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <uv.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>

#include "hyperscale/base/assert.hpp"
#include "hyperscale/base/enum_names.hpp"
#include "hyperscale/base/log.hpp"
#include "hyperscale/load/runner.hpp"
#include "hyperscale/load/schedule.hpp"
#include "hyperscale/runtime/c_boundary.hpp"
#include "hyperscale/runtime/shard_set.hpp"

namespace hs::load {
namespace detail {

struct ResolvedStep {
  sockaddr_storage addr{};
  std::string request;  // pre-serialised bytes when the request is static
  bool dynamic = false;
  bool need_body = false;     // body_contains / extract / max_body
  bool need_headers = false;  // header expectation / extract
  std::vector<int> children;
};

}  // namespace detail

struct PreparedWorkflow {
  std::shared_ptr<const Plan> plan;
  const Workflow* wf = nullptr;
  std::vector<detail::ResolvedStep> steps;
  SSL_CTX* tls_verify = nullptr;  // shared by every shard (OpenSSL contexts are thread-safe)
  SSL_CTX* tls_noverify = nullptr;
  ~PreparedWorkflow() {
    if (tls_verify) SSL_CTX_free(tls_verify);
    if (tls_noverify) SSL_CTX_free(tls_noverify);
  }
};

namespace {

using detail::ResolvedStep;
using runtime::Reactor;

constexpr std::size_t kReadBuf = 16 * 1024;
constexpr std::size_t kMaxBodyDefault = 1 << 20;  // bodies kept for checks are capped at 1 MiB

struct ShardState;

// One run, as every shard of it sees it: immutable once the start messages are sent.
struct RunShared {
  std::shared_ptr<const PreparedWorkflow> prep;
  std::map<std::string, std::string> ctx;  // "workflow.key" -> value
  std::vector<int> shards;
  int first = 0;    // global shard of shards[0] (RunSpec::part; 0 without one)
  int total = 0;    // global shards of the workflow (shards.size() without a part)
  int control = 0;  // the control shard
  RunId id = 0;     // unique on the control shard
  // [pos]: the share of the shard at `pos` in `shards`, global shard first + pos of total, less its part
  // of RunSpec::skip_iterations (part_shares).
  std::vector<ShardShare> shares;
};

ShardShare share_at(const RunShared& sh, int pos) { return sh.shares[static_cast<std::size_t>(pos)]; }

struct WfRun;
struct Vu;

// ---------------------------------------------------------------- connection (one step of one VU)

struct Conn {
  Vu* vu = nullptr;
  int step = 0;
  const Step* st = nullptr;
  const ResolvedStep* rs = nullptr;
  uv_tcp_t tcp{};
  uv_udp_t udp{};
  uv_timer_t timer{};
  uv_connect_t creq{};
  uv_write_t wreq{};
  llhttp_t parser{};
  enum class S { idle, connecting, sending, receiving, failing, succeeding } state = S::idle;
  bool sock_open = false, connected = false, closing = false, pending_connect = false;
  bool msg_done = false, keep_alive = true, head = false;
  int status = 0;
  FailReason fail_reason = FailReason::reset;
  std::string body;  // kept only when needed (capacity reused)
  std::size_t body_len = 0;
  bool body_overflow = false;
  std::string field, value, header_hit;  // header expectation/extract
  bool in_value = false;
  std::string req;    // rendered request (dynamic steps)
  std::string reply;  // tcp/udp reply
  Instant t0{0}, connect_deadline{0}, step_deadline{0};
  std::unique_ptr<char[]> rbuf;
  std::size_t rbuf_size = kReadBuf;
  // TLS (https): OpenSSL over memory BIOs; encrypted bytes go out through the same libuv socket.
  SSL* ssl = nullptr;
  bool handshaking = false, tls_write_inflight = false;
  std::string tls_pending;  // encrypted bytes not yet handed to libuv
  std::string tls_wbuf;     // encrypted bytes libuv is writing
  uv_write_t tls_wreq{};
  ~Conn() {
    if (ssl) SSL_free(ssl);
  }
};

struct Vu {
  WfRun* run = nullptr;
  std::uint64_t id = 0;
  std::uint64_t iteration = 0;
  Instant intended{0};
  bool active = false;
  bool iter_failed = false;
  int steps_left = 0;
  std::vector<std::unique_ptr<Conn>> conns;
  std::vector<std::uint8_t> deps_left;
  std::vector<std::uint8_t> done;  // 0 pending, 1 finished/skipped
  std::map<std::string, std::string> extracted;
  TemplateScope scope;
};

struct WfRun {
  std::shared_ptr<const RunShared> sh;
  const PreparedWorkflow* prep = nullptr;
  ShardState* ss = nullptr;
  int pos = 0;  // index of this shard in sh->shards
  const Workflow* wf = nullptr;
  Driver driver;
  WorkflowStats stats;
  Instant warmup_end{0};
  uv_timer_t timer{};
  std::vector<std::unique_ptr<Vu>> vus;
  std::vector<Driver::Start> starts;
  std::uint64_t iteration_seq = 0;
  int closing_handles = 0;
  bool finishing = false, finished = false, in_pump = false, pump_again = false;
  std::map<std::string, std::string> provided;
  // Per step: latencies of the measured requests (after warmup) not yet sent to the control shard.
  // Cleared only by a live delta that was sent; the rest travels with the final result.
  std::vector<Histogram> window;
  WfRun(std::shared_ptr<const RunShared> s, ShardState* st, int p, Instant start)
      : sh(std::move(s)), prep(sh->prep.get()), ss(st), pos(p), wf(prep->wf), driver(*wf, share_at(*sh, p), start) {}
};

struct Control;

// Per shard: the runs this shard executes a share of, and the runs it controls. Created on first use
// on the shard's thread; lives as long as the thread (a bounded, constant footprint: the runs in it
// are freed when they end).
struct ShardState {
  Reactor* r = nullptr;
  std::vector<std::unique_ptr<WfRun>> runs;
  std::map<RunId, std::unique_ptr<Control>> controls;
  RunId next_id = 1;
  bool aborting = false;
  std::function<void()> shutdown_done;
  std::array<metrics::Counter*, static_cast<int>(FailReason::kCount)> errors{};  // by reason
  metrics::Counter* msg_unsent = nullptr;                                        // a ring was full
  metrics::Counter* msg_orphan = nullptr;                                        // the run it was for was gone
};

// Messages to the control shard.
struct LiveDelta {
  RunId id = 0;
  int pos = 0;
  std::uint64_t started = 0, completed = 0, iterations_failed = 0, dropped = 0, inflight = 0;
  std::vector<Counts> totals;     // per step, cumulative, warmup included
  std::vector<Counts> measured;   // per step, cumulative, after warmup
  std::vector<Histogram> window;  // per step, measured latencies since the previous delta
};
struct FinalResult {
  RunId id = 0;
  int pos = 0;
  WorkflowStats stats;
  std::map<std::string, std::string> provided;
  // Per step: the measured latencies no live delta carried (the shard's last window). With the live
  // deltas' windows they add up to stats' latency histograms exactly.
  std::vector<Histogram> window;
};

void pump(WfRun& run);
void step_finished(Conn& c, bool ok, FailReason why);
void start_step(Vu& vu, int step);
void maybe_finish(WfRun& run);

Instant now_of(const WfRun& run) { return run.ss->r->clock().now(); }

// ---------------------------------------------------------------- C callback boundaries
// Every function handed to libuv or llhttp is noexcept and runs its body through one of these: an
// exception is logged and counted (runtime/c_boundary.hpp), then the safe action runs.

void close_sock(Conn& c);
metrics::Registry* registry_of(const WfRun& run) { return &run.ss->r->metrics(); }

// A run's own handle (its timer): nothing to fail but the run's pacing, which the next pump re-arms.
template <typename Fn>
void run_callback(WfRun& run, const char* callback, Fn&& fn) noexcept {
  if (runtime::at_c_boundary(registry_of(run), callback, run.wf->name, fn)) return;
  run.in_pump = false;  // a pump that threw must not block every later one
}

// A connection's callback: when it throws, that request fails (bad_response) and the connection closes.
template <typename Fn>
void conn_callback(Conn& c, const char* callback, Fn&& fn) noexcept {
  WfRun& run = *c.vu->run;
  if (runtime::at_c_boundary(registry_of(run), callback, c.st->name, fn)) return;
  // Close first: the failed step must not hand this connection to the next request.
  runtime::at_c_boundary(registry_of(run), "conn_recover", c.st->name, [&] {
    close_sock(c);
    step_finished(c, false, FailReason::bad_response);
  });
}

// llhttp callbacks: when one throws, it returns an error, so llhttp_execute fails and so does the request.
template <typename Fn>
int http_callback(llhttp_t* p, const char* callback, Fn&& fn) noexcept {
  auto* c = static_cast<Conn*>(p->data);
  int rc = -1;
  if (runtime::at_c_boundary(registry_of(*c->vu->run), callback, c->st->name, [&] { rc = fn(*c); })) return rc;
  return -1;
}

void on_handle_closed(uv_handle_t* h) noexcept {
  auto* run = static_cast<WfRun*>(h->data);
  run_callback(*run, "uv_close(run)", [&] {
    run->closing_handles--;
    maybe_finish(*run);
  });
}

// Conn handles keep the Conn in data, except while the run is finishing.
void conn_on_sock_closed(uv_handle_t* h) noexcept {
  auto* c = static_cast<Conn*>(h->data);
  WfRun& run = *c->vu->run;
  run.closing_handles--;
  c->closing = false;
  c->sock_open = false;
  c->connected = false;
  if (c->ssl) {
    SSL_free(c->ssl);
    c->ssl = nullptr;
  }
  c->handshaking = c->tls_write_inflight = false;
  c->tls_pending.clear();
  c->tls_wbuf.clear();
  conn_callback(*c, "uv_close(conn)", [&] {
    if (run.finishing) {
      maybe_finish(run);
      return;
    }
    if (c->pending_connect) {
      c->pending_connect = false;
      start_step(*c->vu, c->step);
    }
  });
}

void close_sock(Conn& c) {
  if (!c.sock_open || c.closing) return;
  c.closing = true;
  c.connected = false;
  c.vu->run->closing_handles++;
  uv_handle_t* h =
      c.st->type == StepType::udp ? reinterpret_cast<uv_handle_t*>(&c.udp) : reinterpret_cast<uv_handle_t*>(&c.tcp);
  uv_close(h, conn_on_sock_closed);
}

// ---------------------------------------------------------------- HTTP response parsing

int on_headers_complete(llhttp_t* p) noexcept {
  return http_callback(p, "llhttp_on_headers_complete", [&](Conn& c) {
    c.status = llhttp_get_status_code(p);
    return c.head ? 1 : 0;  // a response to HEAD has no body
  });
}
int on_body(llhttp_t* p, const char* at, std::size_t len) noexcept {
  return http_callback(p, "llhttp_on_body", [&](Conn& c) {
    c.body_len += len;
    if (c.rs->need_body) {
      const std::size_t cap = c.st->expect.max_body ? *c.st->expect.max_body : kMaxBodyDefault;
      if (c.body.size() + len > cap)
        c.body_overflow = true;
      else
        c.body.append(at, len);
    }
    return 0;
  });
}
int on_message_complete(llhttp_t* p) noexcept {
  return http_callback(p, "llhttp_on_message_complete", [&](Conn& c) {
    c.msg_done = true;
    c.keep_alive = llhttp_should_keep_alive(p) != 0;
    return static_cast<int>(HPE_PAUSED);
  });
}
int on_header_field(llhttp_t* p, const char* at, std::size_t len) noexcept {
  return http_callback(p, "llhttp_on_header_field", [&](Conn& c) {
    if (c.in_value) {
      c.field.clear();
      c.in_value = false;
    }
    c.field.append(at, len);
    return 0;
  });
}
int on_header_value(llhttp_t* p, const char* at, std::size_t len) noexcept {
  return http_callback(p, "llhttp_on_header_value", [&](Conn& c) {
    if (!c.in_value) {
      c.value.clear();
      c.in_value = true;
    }
    c.value.append(at, len);
    return 0;
  });
}
int on_header_value_complete(llhttp_t* p) noexcept {
  return http_callback(p, "llhttp_on_header_value_complete", [&](Conn& c) {
    const std::string& want = !c.st->expect.header_name.empty() ? c.st->expect.header_name : c.field;
    bool match = strcasecmp(c.field.c_str(), want.c_str()) == 0;
    if (c.st->expect.header_name.empty()) {
      match = false;
      for (const auto& x : c.st->extract)
        if (x.from == Extract::From::header && strcasecmp(x.arg.c_str(), c.field.c_str()) == 0) match = true;
    }
    if (match) c.header_hit = c.value;
    return 0;
  });
}

const llhttp_settings_t* settings_plain() {
  static llhttp_settings_t s = [] {
    llhttp_settings_t x;
    llhttp_settings_init(&x);
    x.on_headers_complete = on_headers_complete;
    x.on_body = on_body;
    x.on_message_complete = on_message_complete;
    return x;
  }();
  return &s;
}
const llhttp_settings_t* settings_headers() {
  static llhttp_settings_t s = [] {
    llhttp_settings_t x = *settings_plain();
    x.on_header_field = on_header_field;
    x.on_header_value = on_header_value;
    x.on_header_value_complete = on_header_value_complete;
    return x;
  }();
  return &s;
}

// ---------------------------------------------------------------- expectations and extraction

bool check_and_extract(Conn& c, FailReason& why) {
  const Step& st = *c.st;
  Vu& vu = *c.vu;
  if (st.type == StepType::http) {
    const auto& rs = st.expect.status;
    bool ok_status = rs.empty() ? (c.status >= 200 && c.status <= 299) : false;
    for (const auto& r : rs) ok_status = ok_status || (c.status >= r.lo && c.status <= r.hi);
    if (!ok_status) {
      why = FailReason::unexpected_status;
      return false;
    }
    if (c.body_overflow || (st.expect.max_body && c.body_len > *st.expect.max_body)) {
      why = FailReason::expectation;
      return false;
    }
    if (!st.expect.body_contains.empty() && c.body.find(st.expect.body_contains) == std::string::npos) {
      why = FailReason::expectation;
      return false;
    }
    if (!st.expect.header_name.empty() && (c.header_hit.empty() && st.expect.header_contains.empty()
                                               ? true
                                               : c.header_hit.find(st.expect.header_contains) == std::string::npos)) {
      why = FailReason::expectation;
      return false;
    }
  } else {
    if (!st.expect.contains.empty() && c.reply.find(st.expect.contains) == std::string::npos) {
      why = FailReason::expectation;
      return false;
    }
    if (st.expect.equals && c.reply != *st.expect.equals) {
      why = FailReason::expectation;
      return false;
    }
  }
  const std::string& payload = st.type == StepType::http ? c.body : c.reply;
  for (const auto& x : st.extract) {
    std::string v;
    bool found = true;
    switch (x.from) {
      case Extract::From::body:
        v = payload;
        break;
      case Extract::From::header:
        v = c.header_hit;
        found = !v.empty();
        break;
      case Extract::From::regex: {
        try {
          std::smatch m;
          const std::regex re(x.arg);
          found = std::regex_search(payload, m, re) && static_cast<std::size_t>(x.group) < m.size();
          if (found) v = m[static_cast<std::size_t>(x.group)].str();
        } catch (const std::regex_error& e) {
          log::warn("load", "extract_regex_error", "step={} pattern={} error={}", log::quoted(st.name),
                    log::quoted(x.arg), log::quoted(e.what()));
          found = false;
        }
        break;
      }
      case Extract::From::json: {
        auto j = nlohmann::json::parse(payload, nullptr, false);
        found = false;
        if (!j.is_discarded()) {
          try {
            const auto& n = j.at(nlohmann::json::json_pointer(x.arg));
            v = n.is_string() ? n.get<std::string>() : n.dump();
            found = true;
          } catch (const nlohmann::json::exception& e) {
            log::debug("load", "extract_json_missing", "step={} path={} error={}", log::quoted(st.name),
                       log::quoted(x.arg), log::quoted(e.what()));
          }
        }
        break;
      }
    }
    if (!found) {
      why = FailReason::expectation;
      return false;
    }
    vu.extracted[st.name + "." + x.name] = std::move(v);
  }
  return true;
}

// ---------------------------------------------------------------- request sending

void on_timer(uv_timer_t* t) noexcept;

void arm_conn_timer(Conn& c, Instant now) {
  Instant dl = c.step_deadline;
  if (c.state == Conn::S::connecting) dl = std::min(dl, c.connect_deadline);
  const auto ms = dl > now ? (std::chrono::duration_cast<std::chrono::microseconds>(dl - now).count() + 999) / 1000 : 0;
  uv_timer_start(&c.timer, on_timer, static_cast<std::uint64_t>(ms), 0);
}

// Completes the step on the next loop turn: a step that finishes inside send_request (a send-only
// step, a synchronous error) must not complete re-entrantly, or a VU could loop without ever
// returning to the event loop.
void fail_async(Conn& c, FailReason why) {
  c.state = Conn::S::failing;
  c.fail_reason = why;
  uv_timer_start(&c.timer, on_timer, 0, 0);
}
void succeed_async(Conn& c) {
  c.state = Conn::S::succeeding;
  uv_timer_start(&c.timer, on_timer, 0, 0);
}

void on_write(uv_write_t* w, int status) noexcept {
  if (status == UV_ECANCELED) return;
  auto* c = static_cast<Conn*>(w->data);
  conn_callback(*c, "uv_write", [&] {
    if (status < 0 && c->state == Conn::S::receiving) step_finished(*c, false, FailReason::send_error);
  });
}

// Hands out the connection's own read buffer: nothing here can throw.
void on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) noexcept {
  auto* c = static_cast<Conn*>(h->data);
  buf->base = c->rbuf.get();
  buf->len = c->rbuf_size;
}

// ---- TLS

std::string tls_error() {
  char buf[256];
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "no OpenSSL error";
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

void tls_fail(Conn& c, const char* what) {
  log::debug("load", "tls_error", "step={} stage={} error={}", log::quoted(c.st->name), what, log::quoted(tls_error()));
  step_finished(c, false, FailReason::tls);
  close_sock(c);
}

void tls_flush(Conn& c);

void tls_on_write(uv_write_t* w, int status) noexcept {
  if (status == UV_ECANCELED) return;
  auto* c = static_cast<Conn*>(w->data);
  c->tls_write_inflight = false;
  c->tls_wbuf.clear();
  conn_callback(*c, "uv_write(tls)", [&] {
    if (status < 0) {
      if (c->state != Conn::S::idle) step_finished(*c, false, FailReason::send_error);
      close_sock(*c);
      return;
    }
    tls_flush(*c);
  });
}

// Moves what OpenSSL produced into the socket: try_write first, then one uv_write at a time.
void tls_flush(Conn& c) {
  if (!c.ssl || !c.sock_open || c.closing) return;
  BIO* wbio = SSL_get_wbio(c.ssl);
  char buf[16 * 1024];
  int n;
  while ((n = BIO_read(wbio, buf, sizeof buf)) > 0) c.tls_pending.append(buf, static_cast<std::size_t>(n));
  if (c.tls_write_inflight || c.tls_pending.empty()) return;
  uv_buf_t b = uv_buf_init(c.tls_pending.data(), static_cast<unsigned>(c.tls_pending.size()));
  const int w = uv_try_write(reinterpret_cast<uv_stream_t*>(&c.tcp), &b, 1);
  if (w < 0 && w != UV_EAGAIN) {
    if (c.state != Conn::S::idle) step_finished(c, false, FailReason::reset);
    close_sock(c);
    return;
  }
  c.tls_pending.erase(0, w < 0 ? 0 : static_cast<std::size_t>(w));
  if (c.tls_pending.empty()) return;
  c.tls_wbuf.swap(c.tls_pending);
  c.tls_pending.clear();
  c.tls_write_inflight = true;
  c.tls_wreq.data = &c;
  uv_buf_t rest = uv_buf_init(c.tls_wbuf.data(), static_cast<unsigned>(c.tls_wbuf.size()));
  if (uv_write(&c.tls_wreq, reinterpret_cast<uv_stream_t*>(&c.tcp), &rest, 1, tls_on_write) < 0) {
    c.tls_write_inflight = false;
    if (c.state != Conn::S::idle) step_finished(c, false, FailReason::send_error);
    close_sock(c);
  }
}

void send_request(Conn& c);

void tls_handshake(Conn& c) {
  const int r = SSL_do_handshake(c.ssl);
  tls_flush(c);
  if (r == 1) {
    c.handshaking = false;
    send_request(c);
    return;
  }
  const int e = SSL_get_error(c.ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
  tls_fail(c, "handshake");
}

void handle_tcp_bytes(Conn& c, const char* data, std::size_t n);

// Encrypted bytes from the socket.
void tls_on_bytes(Conn& c, const char* data, std::size_t n) {
  BIO_write(SSL_get_rbio(c.ssl), data, static_cast<int>(n));
  if (c.handshaking) {
    tls_handshake(c);
    return;
  }
  for (;;) {
    if (!c.ssl) return;  // closed by a completion below
    const int r = SSL_read(c.ssl, c.rbuf.get(), static_cast<int>(c.rbuf_size));
    if (r > 0) {
      if (c.state != Conn::S::receiving) {
        log::debug("load", "unexpected_bytes", "step={} bytes={}", log::quoted(c.st->name), r);
        close_sock(c);
        return;
      }
      handle_tcp_bytes(c, c.rbuf.get(), static_cast<std::size_t>(r));
      continue;
    }
    const int e = SSL_get_error(c.ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
    if (e == SSL_ERROR_ZERO_RETURN) {  // close_notify: like EOF
      if (c.state == Conn::S::receiving) step_finished(c, false, FailReason::reset);
      close_sock(c);
      return;
    }
    if (c.state == Conn::S::receiving)
      tls_fail(c, "read");
    else
      close_sock(c);
    return;
  }
  tls_flush(c);
}

void handle_tcp_bytes(Conn& c, const char* data, std::size_t n) {
  const Step& st = *c.st;
  if (st.type == StepType::http) {
    const llhttp_errno_t e = llhttp_execute(&c.parser, data, n);
    if (c.msg_done) {
      if (testing::on_response != nullptr) testing::on_response(st.name);
      FailReason why = FailReason::bad_response;
      const bool ok = check_and_extract(c, why);
      step_finished(c, ok, why);
      return;
    }
    if (e != HPE_OK) {
      log::debug("load", "bad_response", "step={} error={}", log::quoted(st.name), log::quoted(llhttp_errno_name(e)));
      step_finished(c, false, FailReason::bad_response);
    }
    return;
  }
  const std::size_t cap = st.expect.max_body ? *st.expect.max_body : kMaxBodyDefault;
  c.reply.append(data, n);
  if (st.read_bytes) {
    if (c.reply.size() >= st.read_bytes) {
      c.reply.resize(st.read_bytes);
      FailReason why = FailReason::expectation;
      step_finished(c, check_and_extract(c, why), why);
    }
  } else if (!st.read_until.empty()) {
    const auto p = c.reply.find(st.read_until);
    if (p != std::string::npos) {
      c.reply.resize(p + st.read_until.size());
      FailReason why = FailReason::expectation;
      step_finished(c, check_and_extract(c, why), why);
      return;
    }
  }
  if (c.state == Conn::S::receiving && c.reply.size() > cap) step_finished(c, false, FailReason::bad_response);
}

void read_bytes(Conn* c, ssize_t nread) {
  if (nread == 0) return;
  if (nread < 0) {
    if (c->state == Conn::S::receiving) {
      if (nread == UV_EOF && c->st->type == StepType::http) {
        // A response delimited by the connection's end completes here.
        llhttp_finish(&c->parser);
        if (c->msg_done) {
          c->keep_alive = false;
          FailReason why = FailReason::bad_response;
          const bool ok = check_and_extract(*c, why);
          step_finished(*c, ok, why);
          close_sock(*c);
          return;
        }
      }
      step_finished(*c, false, FailReason::reset);
    }
    close_sock(*c);
    return;
  }
  if (c->ssl) {
    tls_on_bytes(*c, c->rbuf.get(), static_cast<std::size_t>(nread));
    return;
  }
  if (c->state != Conn::S::receiving) {
    // Bytes nobody asked for: the connection is out of step; drop it.
    log::debug("load", "unexpected_bytes", "step={} bytes={}", log::quoted(c->st->name), nread);
    close_sock(*c);
    return;
  }
  handle_tcp_bytes(*c, c->rbuf.get(), static_cast<std::size_t>(nread));
}

void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t*) noexcept {
  auto* c = static_cast<Conn*>(s->data);
  conn_callback(*c, "uv_read", [&] { read_bytes(c, nread); });
}

void send_request(Conn& c) {
  const Step& st = *c.st;
  Vu& vu = *c.vu;
  const char* data;
  std::size_t len;
  if (!c.rs->dynamic) {
    data = c.rs->request.data();
    len = c.rs->request.size();
  } else {
    c.req.clear();
    vu.scope.steps = &vu.extracted;
    vu.scope.ctx = &vu.run->sh->ctx;
    if (st.type == StepType::http) {
      // Body first (Content-Length), then the head.
      c.reply.clear();
      render(st.body, vu.scope, c.reply);
      c.req.append(st.method).append(" ");
      render(st.path, vu.scope, c.req);
      c.req.append(" HTTP/1.1\r\nHost: ").append(st.host);
      if (st.port != (st.tls ? 443 : 80)) c.req.append(":").append(std::to_string(st.port));
      c.req.append("\r\n");
      for (const auto& [k, v] : st.headers) {
        c.req.append(k).append(": ");
        render(v, vu.scope, c.req);
        c.req.append("\r\n");
      }
      if (!c.reply.empty() || st.method == "POST" || st.method == "PUT" || st.method == "PATCH")
        c.req.append("Content-Length: ").append(std::to_string(c.reply.size())).append("\r\n");
      if (!st.keepalive) c.req.append("Connection: close\r\n");
      c.req.append("\r\n").append(c.reply);
      c.reply.clear();
    } else {
      render(st.send, vu.scope, c.req);
    }
    data = c.req.data();
    len = c.req.size();
  }
  if (st.type == StepType::http) {
    llhttp_init(&c.parser, HTTP_RESPONSE, c.rs->need_headers ? settings_headers() : settings_plain());
    c.parser.data = &c;
    c.msg_done = false;
    c.status = 0;
    c.body.clear();
    c.body_len = 0;
    c.body_overflow = false;
    c.header_hit.clear();
    c.field.clear();
    c.in_value = false;
    c.head = st.method == "HEAD";
  } else {
    c.reply.clear();
  }
  if (st.type == StepType::udp) {
    uv_buf_t b = uv_buf_init(const_cast<char*>(data), static_cast<unsigned>(len));
    const int r = uv_udp_try_send(&c.udp, &b, 1, nullptr);
    if (r < 0) {
      fail_async(c, r == UV_ECONNREFUSED ? FailReason::refused : FailReason::send_error);
      return;
    }
    if (!st.reply) {
      succeed_async(c);
      return;
    }
    c.state = Conn::S::receiving;
    return;
  }
  c.state = Conn::S::receiving;
  if (c.ssl) {
    if (SSL_write(c.ssl, data, static_cast<int>(len)) <= 0) {
      tls_fail(c, "write");
      return;
    }
    tls_flush(c);
    return;
  }
  uv_buf_t b = uv_buf_init(const_cast<char*>(data), static_cast<unsigned>(len));
  const int w = uv_try_write(reinterpret_cast<uv_stream_t*>(&c.tcp), &b, 1);
  if (w < 0 && w != UV_EAGAIN) {
    fail_async(c, w == UV_EPIPE || w == UV_ECONNRESET ? FailReason::reset : FailReason::send_error);
    return;
  }
  const std::size_t done = w < 0 ? 0 : static_cast<std::size_t>(w);
  if (done < len) {
    uv_buf_t rest = uv_buf_init(const_cast<char*>(data) + done, static_cast<unsigned>(len - done));
    c.wreq.data = &c;
    const int r = uv_write(&c.wreq, reinterpret_cast<uv_stream_t*>(&c.tcp), &rest, 1, on_write);
    if (r < 0) {
      fail_async(c, FailReason::send_error);
      return;
    }
  }
  if (st.type == StepType::tcp && st.read_none) succeed_async(c);
}

void on_udp_recv(uv_udp_t* h, ssize_t nread, const uv_buf_t* buf, const sockaddr*, unsigned) noexcept {
  auto* c = static_cast<Conn*>(h->data);
  if (nread == 0) return;
  if (c->state != Conn::S::receiving) return;  // a late reply to a step that already timed out
  conn_callback(*c, "uv_udp_recv", [&] {
    if (nread < 0) {
      step_finished(*c, false, nread == UV_ECONNREFUSED ? FailReason::refused : FailReason::reset);
      return;
    }
    c->reply.assign(buf->base, static_cast<std::size_t>(nread));
    FailReason why = FailReason::expectation;
    step_finished(*c, check_and_extract(*c, why), why);
  });
}

void connected(Conn* c, int status);
void on_connect(uv_connect_t* req, int status) noexcept {
  if (status == UV_ECANCELED) return;
  auto* c = static_cast<Conn*>(req->data);
  if (c->state != Conn::S::connecting) return;
  conn_callback(*c, "uv_tcp_connect", [&] { connected(c, status); });
}

void connected(Conn* c, int status) {
  if (status < 0) {
    step_finished(*c, false, status == UV_ETIMEDOUT ? FailReason::connect_timeout : FailReason::refused);
    close_sock(*c);
    return;
  }
  c->connected = true;
  uv_read_start(reinterpret_cast<uv_stream_t*>(&c->tcp), on_alloc, on_read);
  c->state = Conn::S::sending;
  arm_conn_timer(*c, now_of(*c->vu->run));
  if (c->st->tls) {
    const PreparedWorkflow& pw = *c->vu->run->prep;
    c->ssl = SSL_new(c->st->tls_verify ? pw.tls_verify : pw.tls_noverify);
    if (c->ssl == nullptr) {
      tls_fail(*c, "new");
      return;
    }
    SSL_set_bio(c->ssl, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
    SSL_set_connect_state(c->ssl);
    SSL_set_tlsext_host_name(c->ssl, c->st->host.c_str());
    if (c->st->tls_verify) SSL_set1_host(c->ssl, c->st->host.c_str());
    c->handshaking = true;
    tls_handshake(*c);
    return;
  }
  send_request(*c);
}

void do_connect(Conn& c) {
  uv_loop_t* loop = c.vu->run->ss->r->loop();
  const auto* addr = reinterpret_cast<const sockaddr*>(&c.rs->addr);
  if (c.st->type == StepType::udp) {
    uv_udp_init(loop, &c.udp);
    c.udp.data = &c;
    c.sock_open = true;
    int r = uv_udp_connect(&c.udp, addr);
    if (r == 0) r = uv_udp_recv_start(&c.udp, on_alloc, on_udp_recv);
    if (r < 0) {
      fail_async(c, FailReason::send_error);
      close_sock(c);
      return;
    }
    c.connected = true;
    c.state = Conn::S::sending;
    send_request(c);
    return;
  }
  uv_tcp_init(loop, &c.tcp);
  c.tcp.data = &c;
  c.sock_open = true;
  uv_tcp_nodelay(&c.tcp, 1);
  c.creq.data = &c;
  c.state = Conn::S::connecting;
  const int r = uv_tcp_connect(&c.creq, &c.tcp, addr, on_connect);
  if (r < 0) {
    fail_async(c, r == UV_ECONNREFUSED ? FailReason::refused : FailReason::send_error);
    close_sock(c);
  }
}

void conn_timer(Conn* c);
void on_timer(uv_timer_t* t) noexcept {
  auto* c = static_cast<Conn*>(t->data);
  conn_callback(*c, "uv_timer(conn)", [&] { conn_timer(c); });
}

void conn_timer(Conn* c) {
  if (c->state == Conn::S::connecting || c->state == Conn::S::sending || c->state == Conn::S::receiving) {
    // libuv timers run on the loop's cached millisecond clock and can fire a little early: a deadline
    // is only declared once it has really passed, so a timed-out request's latency is >= its timeout.
    const Instant now = now_of(*c->vu->run);
    const Instant dl =
        c->state == Conn::S::connecting ? std::min(c->step_deadline, c->connect_deadline) : c->step_deadline;
    if (now < dl) {
      arm_conn_timer(*c, now);
      return;
    }
  }
  switch (c->state) {
    case Conn::S::failing:
      step_finished(*c, false, c->fail_reason);
      return;
    case Conn::S::succeeding:
      step_finished(*c, true, FailReason::reset);
      return;
    case Conn::S::connecting: {
      const bool connect_expired =
          now_of(*c->vu->run) >= c->connect_deadline && c->connect_deadline <= c->step_deadline;
      step_finished(*c, false, connect_expired ? FailReason::connect_timeout : FailReason::timeout);
      close_sock(*c);
      return;
    }
    case Conn::S::sending:
    case Conn::S::receiving:
      step_finished(*c, false, FailReason::timeout);
      close_sock(*c);
      return;
    case Conn::S::idle:
      return;
  }
}

// ---------------------------------------------------------------- iteration over the step DAG

void start_step(Vu& vu, int i) {
  WfRun& run = *vu.run;
  auto& cp = vu.conns[static_cast<std::size_t>(i)];
  if (!cp) {
    cp = std::make_unique<Conn>();
    cp->vu = &vu;
    cp->step = i;
    cp->st = &run.wf->steps[static_cast<std::size_t>(i)];
    cp->rs = &run.prep->steps[static_cast<std::size_t>(i)];
    cp->rbuf_size = cp->st->type == StepType::udp ? std::max<std::size_t>(cp->st->max_reply, 1) : kReadBuf;
    cp->rbuf.reset(new char[cp->rbuf_size]);
    uv_timer_init(run.ss->r->loop(), &cp->timer);
    cp->timer.data = cp.get();
  }
  Conn& c = *cp;
  const Instant now = now_of(run);
  if (c.state == Conn::S::idle) {
    // New step (not a deferred reconnect): its clock starts at the intended time for a root step.
    c.t0 = c.st->after.empty() ? std::min(vu.intended, now) : now;
    c.step_deadline = now + c.st->timeout;
    c.connect_deadline = now + c.st->connect_timeout;
  }
  if (c.closing) {
    c.state = Conn::S::connecting;
    c.pending_connect = true;
    arm_conn_timer(c, now);
    return;
  }
  if (c.connected && !c.st->new_connection) {
    c.state = Conn::S::sending;
    arm_conn_timer(c, now);
    send_request(c);
    return;
  }
  c.state = Conn::S::connecting;
  arm_conn_timer(c, now);
  do_connect(c);
}

void iteration_done(Vu& vu);

void skip_children(Vu& vu, int i) {
  WfRun& run = *vu.run;
  for (int ch : run.prep->steps[static_cast<std::size_t>(i)].children) {
    if (vu.done[static_cast<std::size_t>(ch)]) continue;
    vu.done[static_cast<std::size_t>(ch)] = 1;
    vu.steps_left--;
    run.stats.steps[static_cast<std::size_t>(ch)].skipped++;
    skip_children(vu, ch);
  }
}

void step_finished(Conn& c, bool ok, FailReason why) {
  if (c.state == Conn::S::idle) return;
  Vu& vu = *c.vu;
  WfRun& run = *vu.run;
  uv_timer_stop(&c.timer);
  c.state = Conn::S::idle;
  c.pending_connect = false;
  const Instant now = now_of(run);
  const auto lat = static_cast<std::uint64_t>(std::max<std::int64_t>(0, (now - c.t0).count()));
  const bool measured = c.t0 >= run.warmup_end;
  const auto second =
      static_cast<std::size_t>(std::max<std::int64_t>(0, (now - run.driver.start()).count()) / 1'000'000'000);
  run.stats.steps[static_cast<std::size_t>(c.step)].record(ok, why, lat, measured, second);
  if (measured) run.window[static_cast<std::size_t>(c.step)].record(lat);
  if (!ok && run.ss->errors[static_cast<int>(why)]) run.ss->errors[static_cast<int>(why)]->inc();
  const bool close_after = (c.st->type == StepType::http && (!c.keep_alive || !c.msg_done)) ||
                           (c.st->type == StepType::tcp && c.st->new_connection) ||
                           (!ok && c.st->type != StepType::udp && !c.msg_done);
  if (close_after) close_sock(c);
  vu.done[static_cast<std::size_t>(c.step)] = 1;
  vu.steps_left--;
  if (!ok) {
    vu.iter_failed = true;
    skip_children(vu, c.step);
  } else {
    for (int ch : c.rs->children) {
      if (vu.done[static_cast<std::size_t>(ch)]) continue;
      if (--vu.deps_left[static_cast<std::size_t>(ch)] == 0) start_step(vu, ch);
    }
  }
  if (vu.steps_left == 0 && vu.active) iteration_done(vu);
}

void start_iteration(WfRun& run, const Driver::Start& s) {
  auto& vp = run.vus[static_cast<std::size_t>(s.vu)];
  const std::size_t n = run.wf->steps.size();
  if (!vp) {
    vp = std::make_unique<Vu>();
    vp->run = &run;
    vp->id = s.vu;
    vp->conns.resize(n);
    vp->deps_left.resize(n);
    vp->done.resize(n);
    vp->scope.worker = run.ss->r->shard_id();
    vp->scope.rng_state =
        0x9E3779B97F4A7C15ull ^ (s.vu * 0x100000001B3ull) ^ static_cast<std::uint64_t>(run.ss->r->shard_id());
  }
  Vu& vu = *vp;
  vu.active = true;
  vu.iter_failed = false;
  vu.intended = s.intended;
  vu.iteration = run.iteration_seq++;
  vu.scope.vu = static_cast<std::uint64_t>(run.ss->r->shard_id()) * 1'000'000 + s.vu;
  vu.scope.iteration = vu.iteration;
  if (!vu.extracted.empty()) vu.extracted.clear();
  vu.steps_left = static_cast<int>(n);
  for (std::size_t i = 0; i < n; ++i) {
    vu.deps_left[i] = static_cast<std::uint8_t>(run.wf->steps[i].after.size());
    vu.done[i] = 0;
  }
  for (std::size_t i = 0; i < n; ++i)
    if (run.wf->steps[i].after.empty()) start_step(vu, static_cast<int>(i));
}

void iteration_done(Vu& vu) {
  WfRun& run = *vu.run;
  vu.active = false;
  if (vu.iter_failed) run.stats.iterations_failed++;
  if (run.wf->kind == WorkflowKind::setup && !vu.iter_failed) {
    TemplateScope sc = vu.scope;
    sc.steps = &vu.extracted;
    sc.ctx = &run.sh->ctx;
    for (const auto& [k, t] : run.wf->provide) {
      std::string v;
      render(t, sc, v);
      run.provided[k] = std::move(v);
    }
  }
  run.driver.on_done(vu.id, now_of(run));
  pump(run);
}

void on_run_timer(uv_timer_t* t) noexcept {
  auto* run = static_cast<WfRun*>(t->data);
  run_callback(*run, "uv_timer(run)", [&] { pump(*run); });
}

void interrupt_all(WfRun& run) {
  for (auto& vp : run.vus) {
    if (!vp || !vp->active) continue;
    vp->active = false;
    for (auto& c : vp->conns) {
      if (!c) continue;
      uv_timer_stop(&c->timer);
      c->state = Conn::S::idle;
      c->pending_connect = false;
      close_sock(*c);
    }
    run.driver.on_interrupted(vp->id);
  }
}

void finish(WfRun& run);

void pump(WfRun& run) {
  if (run.finishing) return;
  if (run.in_pump) {
    run.pump_again = true;
    return;
  }
  run.in_pump = true;
  do {
    run.pump_again = false;
    const Instant now = now_of(run);
    run.starts.clear();
    run.driver.poll(now, run.starts);
    for (const auto& s : run.starts) start_iteration(run, s);
  } while (run.pump_again);
  run.in_pump = false;
  const Instant now = now_of(run);
  if (run.driver.graceful_expired(now) || run.ss->aborting) interrupt_all(run);
  if (run.driver.phase(now) == Driver::Phase::done || run.ss->aborting) {
    finish(run);
    return;
  }
  const Instant next = run.driver.next_wakeup(now);
  if (next == Driver::kNever) return;
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(next - now).count();
  // libuv timers have millisecond resolution; round up so an early wake-up never busy-loops.
  uv_timer_start(&run.timer, on_run_timer, static_cast<std::uint64_t>(std::max<std::int64_t>(0, (us + 999) / 1000)), 0);
}

void send_final(WfRun& run);

void maybe_finish(WfRun& run) {
  if (!run.finishing || run.finished || run.closing_handles > 0) return;
  run.finished = true;
  send_final(run);
}

void finish(WfRun& run) {
  if (run.finishing) return;
  run.finishing = true;
  const Instant now = now_of(run);
  run.stats.started = run.driver.started();
  run.stats.completed = run.driver.completed();
  run.stats.dropped = run.driver.dropped();
  run.stats.interrupted = run.driver.interrupted();
  run.stats.elapsed = now - run.driver.start();
  run.stats.measured = std::max(Duration{0}, run.stats.elapsed - run.wf->warmup);
  uv_timer_stop(&run.timer);
  run.closing_handles++;
  uv_close(reinterpret_cast<uv_handle_t*>(&run.timer), on_handle_closed);
  for (auto& vp : run.vus) {
    if (!vp) continue;
    for (auto& c : vp->conns) {
      if (!c) continue;
      c->state = Conn::S::idle;
      c->pending_connect = false;
      if (c->sock_open && !c->closing) close_sock(*c);
      c->timer.data = &run;
      run.closing_handles++;
      uv_close(reinterpret_cast<uv_handle_t*>(&c->timer), on_handle_closed);
    }
  }
  maybe_finish(run);
}

// ---------------------------------------------------------------- per-shard state

// The load state of the shard running on this thread (one reactor per thread).
thread_local std::unique_ptr<ShardState> tl_state;

ShardState* find_state(Reactor& r) { return tl_state && tl_state->r == &r ? tl_state.get() : nullptr; }

void send_live(ShardState& ss);

ShardState& state_of(Reactor& r) {
  if (ShardState* ss = find_state(r)) return *ss;
  if (tl_state) {
    log::warn("load", "shard_state_replaced", "shard={} runs={} note=a new reactor on this thread", r.shard_id(),
              tl_state->runs.size() + tl_state->controls.size());
  }
  tl_state = std::make_unique<ShardState>();
  ShardState& ss = *tl_state;
  ss.r = &r;
  for (int i = 0; i < static_cast<int>(FailReason::kCount); ++i)
    ss.errors[static_cast<std::size_t>(i)] =
        &r.metrics().counter("hs_load_step_failures_total", "Load steps that failed, by reason",
                             {{"reason", reason_name(static_cast<FailReason>(i))}});
  ss.msg_unsent = &r.metrics().counter(
      "hs_load_messages_lost_total", "Load engine messages that were not delivered, by reason", {{"reason", "unsent"}});
  ss.msg_orphan = &r.metrics().counter(
      "hs_load_messages_lost_total", "Load engine messages that were not delivered, by reason", {{"reason", "no_run"}});
  r.on_shutdown("load", [&ss](std::function<void()> done) {
    ss.aborting = true;
    for (auto& run : ss.runs) {
      if (run->finishing) continue;
      interrupt_all(*run);
      finish(*run);
    }
    if (ss.runs.empty())
      done();
    else
      ss.shutdown_done = std::move(done);
  });
  auto live = r.every("load-live", std::chrono::milliseconds(500), [&ss]() {
    send_live(ss);
    return ok_status();
  });
  if (!live.ok()) log::error("load", "task_failed", "task=load-live error={}", log::quoted(live.status().to_string()));
  return ss;
}

WfRun* find_run(ShardState& ss, int control, RunId id) {
  for (auto& p : ss.runs)
    if (p->sh->control == control && p->sh->id == id) return p.get();
  return nullptr;
}

// ---------------------------------------------------------------- control side (the control shard)

struct Control {
  RunId id = 0;
  Runner* owner = nullptr;
  RunCallbacks cb;
  std::shared_ptr<const RunShared> sh;
  int shards_left = 0;
  bool cancelled = false;
  Instant started_at{0};   // the schedule's start (RunSpec::start_at, or when start() ran)
  Duration start_late{0};  // how late start() ran after RunSpec::start_at
  WorkflowStats merged;
  std::map<std::string, std::string> provided;
  std::vector<std::unique_ptr<LiveDelta>> live;  // [pos]: the latest delta of each shard
  std::vector<Histogram> window;                 // [step]: measured latencies merged since the last sample
  std::optional<runtime::TaskId> progress;
};

Control* find_control(ShardState& cs, RunId id) {
  auto it = cs.controls.find(id);
  return it == cs.controls.end() ? nullptr : it->second.get();
}

}  // namespace

struct RunnerAccess {
  static void forget(Runner& r, RunId id) {
    auto it = std::find(r.ids_.begin(), r.ids_.end(), id);
    if (it != r.ids_.end()) r.ids_.erase(it);
  }
};

namespace {

void fill_live(Control& c, Instant now, WorkflowLive& out) {
  out = WorkflowLive{};
  out.elapsed = now > c.started_at ? now - c.started_at : Duration{0};  // 0 until a start_at
  out.steps.resize(c.sh->prep->wf->steps.size());
  out.measured.resize(out.steps.size());
  for (const auto& d : c.live) {
    if (!d) continue;
    out.started += d->started;
    out.completed += d->completed;
    out.iterations_failed += d->iterations_failed;
    out.dropped += d->dropped;
    out.inflight += d->inflight;
    for (std::size_t i = 0; i < out.steps.size() && i < d->totals.size(); ++i) out.steps[i].merge(d->totals[i]);
    for (std::size_t i = 0; i < out.measured.size() && i < d->measured.size(); ++i)
      out.measured[i].merge(d->measured[i]);
  }
  out.window.resize(out.steps.size());
  for (std::size_t i = 0; i < out.window.size() && i < c.window.size(); ++i) {
    out.window[i] = c.window[i];
    c.window[i].reset();
  }
}

void finish_control(ShardState& cs, Control& c0) {
  // The last progress: every shard's final counts and the windows no progress has given out yet, so
  // the windows of every progress add up to the final statistics exactly.
  const RunId id = c0.id;
  if (c0.cb.on_progress) {
    WorkflowLive live;
    fill_live(c0, cs.r->clock().now(), live);
    live.final = true;
    live.inflight = 0;
    auto fn = c0.cb.on_progress;  // the callback may cancel the run or destroy the Runner
    fn(live);
  }
  Control* cp = find_control(cs, id);  // only finish_control erases a control
  HS_ASSERT(cp != nullptr, "load: run {} lost its control state during its last progress", id);
  Control& c = *cp;
  const Workflow& wf = *c.sh->prep->wf;
  WorkflowResult res;
  res.stats = std::move(c.merged);
  WorkflowStats& ws = res.stats;
  if (c.cancelled) {
    ws.outcome = WorkflowOutcome::interrupted;
    ws.note = "cancelled";
    res.end = RunEnd::cancelled;
  } else if (wf.kind == WorkflowKind::setup && (ws.completed == 0 || ws.iterations_failed > 0)) {
    ws.outcome = WorkflowOutcome::failed;
    ws.note = ws.completed == 0 ? "setup did not complete" : "a setup step failed";
    res.end = RunEnd::failed;
    res.error = ws.note;
  } else {
    ws.outcome = WorkflowOutcome::completed;
  }
  res.published = std::move(c.provided);
  res.start_late = c.start_late;
  log::info("load", "workflow_done", "workflow={} outcome={} started={} completed={} dropped={} interrupted={}",
            log::quoted(ws.name), outcome_name(ws.outcome), ws.started, ws.completed, ws.dropped, ws.interrupted);
  if (c.progress) cs.r->cancel(*c.progress);
  auto done = std::move(c.cb.on_done);
  if (c.owner) RunnerAccess::forget(*c.owner, c.id);
  cs.controls.erase(c.id);  // frees the run's control state; `c` is gone from here on
  if (done) done(std::move(res));
}

void on_final(ShardState& cs, Control& c, std::unique_ptr<FinalResult> fr) {
  const WorkflowStats& s = fr->stats;
  // Keep the shard's final counts in the live view (a sample after it finished still adds up).
  auto d = std::make_unique<LiveDelta>();
  d->id = fr->id;
  d->pos = fr->pos;
  d->started = s.started;
  d->completed = s.completed;
  d->iterations_failed = s.iterations_failed;
  d->dropped = s.dropped;
  for (const auto& st : s.steps) {
    d->totals.push_back(st.total);
    d->measured.push_back(st.measured);
  }
  if (c.window.size() < fr->window.size()) c.window.resize(fr->window.size());
  for (std::size_t i = 0; i < fr->window.size(); ++i) c.window[i].merge(fr->window[i]);
  if (static_cast<std::size_t>(fr->pos) < c.live.size()) c.live[static_cast<std::size_t>(fr->pos)] = std::move(d);
  c.merged.merge(s);
  for (auto& [k, v] : fr->provided) c.provided[k] = std::move(v);
  if (--c.shards_left > 0) return;
  finish_control(cs, c);
}

// ---------------------------------------------------------------- shard side

void shard_start(Reactor& r, std::shared_ptr<const RunShared> sh, int pos, Instant start) {
  ShardState& ss = state_of(r);
  auto run = std::make_unique<WfRun>(std::move(sh), &ss, pos, start);
  const Workflow& w = *run->wf;
  run->warmup_end = start + w.warmup;
  run->stats.name = w.name;
  run->stats.steps.resize(w.steps.size());
  for (std::size_t i = 0; i < w.steps.size(); ++i) run->stats.steps[i].name = w.steps[i].name;
  run->window.resize(w.steps.size());
  run->vus.resize(share_at(*run->sh, pos).vus);
  uv_timer_init(r.loop(), &run->timer);
  run->timer.data = run.get();
  WfRun& ref = *run;
  ss.runs.push_back(std::move(run));
  if (ss.aborting || r.stopping()) {  // shutting down (its hook may have run already): end at once
    ss.aborting = true;
    finish(ref);
    return;
  }
  pump(ref);
}

void shard_cancel(Reactor& r, int control, RunId id, Duration grace) {
  ShardState* ss = find_state(r);
  WfRun* run = ss ? find_run(*ss, control, id) : nullptr;
  if (run == nullptr || run->finishing) return;  // already finished: its final result is on its way
  run->driver.stop(now_of(*run), grace);
  if (grace <= Duration{0}) {
    interrupt_all(*run);
    finish(*run);
    return;
  }
  pump(*run);
}

void send_final(WfRun& run) {
  ShardState& ss = *run.ss;
  auto fr = new FinalResult;
  fr->id = run.sh->id;
  fr->pos = run.pos;
  fr->stats = std::move(run.stats);
  fr->provided = std::move(run.provided);
  fr->window = std::move(run.window);  // what no live delta carried: the final window
  const int control = run.sh->control;
  WfRun* victim = &run;
  // Free the run after the current callback returns (its handles are all closed now).
  Status d = ss.r->defer([&ss, victim]() {
    auto it = std::find_if(ss.runs.begin(), ss.runs.end(), [&](auto& p) { return p.get() == victim; });
    if (it != ss.runs.end()) ss.runs.erase(it);
    if (ss.runs.empty() && ss.shutdown_done) {
      auto done = std::move(ss.shutdown_done);
      ss.shutdown_done = nullptr;
      done();
    }
  });
  if (!d.ok()) log::error("load", "defer_failed", "error={}", log::quoted(d.to_string()));
  Status st = ss.r->send(control, runtime::Message([fr](Reactor& r0) {
                           std::unique_ptr<FinalResult> own(fr);
                           ShardState* cs = find_state(r0);
                           Control* c = cs ? find_control(*cs, own->id) : nullptr;
                           if (c == nullptr) {
                             log::warn("load", "final_without_run", "run={} workflow={}", own->id,
                                       log::quoted(own->stats.name));
                             if (cs) cs->msg_orphan->inc();
                             return;
                           }
                           on_final(*cs, *c, std::move(own));
                         }));
  if (!st.ok()) {
    log::error("load", "final_send_failed", "workflow={} error={}", log::quoted(run.wf->name),
               log::quoted(st.to_string()));
    ss.msg_unsent->inc();
    delete fr;
  }
}

void send_live(ShardState& ss) {
  for (auto& rp : ss.runs) {
    WfRun& run = *rp;
    if (run.finishing) continue;
    auto* d = new LiveDelta;
    d->id = run.sh->id;
    d->pos = run.pos;
    d->started = run.driver.started();
    d->completed = run.driver.completed();
    d->iterations_failed = run.stats.iterations_failed;
    d->dropped = run.driver.dropped();
    d->inflight = run.driver.inflight();
    d->totals.reserve(run.stats.steps.size());
    d->measured.reserve(run.stats.steps.size());
    for (const auto& s : run.stats.steps) {
      d->totals.push_back(s.total);
      d->measured.push_back(s.measured);
    }
    d->window = run.window;  // reset once sent: a delta that could not be sent loses nothing
    Status st = ss.r->send(run.sh->control, runtime::Message([d](Reactor& r0) {
                             std::unique_ptr<LiveDelta> own(d);
                             ShardState* cs = find_state(r0);
                             Control* c = cs ? find_control(*cs, own->id) : nullptr;
                             if (c == nullptr || static_cast<std::size_t>(own->pos) >= c->live.size()) {
                               log::debug("load", "live_without_run", "run={}", own->id);
                               if (cs) cs->msg_orphan->inc();
                               return;
                             }
                             if (c->window.size() < own->window.size()) c->window.resize(own->window.size());
                             for (std::size_t i = 0; i < own->window.size(); ++i) c->window[i].merge(own->window[i]);
                             c->live[static_cast<std::size_t>(own->pos)] = std::move(own);
                           }));
    if (!st.ok()) {
      // Its latencies stay in run.window for the next delta (or the final result); its cumulative
      // counts are repeated by the next one.
      log::warn("load", "live_send_failed", "error={}", log::quoted(st.to_string()));
      ss.msg_unsent->inc();
      delete d;
      continue;
    }
    for (auto& h : run.window) h.reset();
  }
}

// ---------------------------------------------------------------- planning

Status resolve_steps(const Workflow& wf, std::vector<ResolvedStep>& out) {
  out.resize(wf.steps.size());
  for (std::size_t i = 0; i < wf.steps.size(); ++i) {
    const Step& st = wf.steps[i];
    ResolvedStep& rs = out[i];
    for (int a : st.after) out[static_cast<std::size_t>(a)].children.push_back(static_cast<int>(i));
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = st.type == StepType::udp ? SOCK_DGRAM : SOCK_STREAM;
    addrinfo* res = nullptr;
    const std::string port = std::to_string(st.port);
    const int rc = getaddrinfo(st.host.c_str(), port.c_str(), &hints, &res);
    if (rc != 0 || res == nullptr) {
      return make_error(Errc::unavailable, fmt::format("workflow '{}' step '{}': cannot resolve host '{}': {}", wf.name,
                                                       st.name, st.host, gai_strerror(rc)));
    }
    std::memcpy(&rs.addr, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    bool dynamic = !st.path.is_static() || !st.body.is_static() || !st.send.is_static();
    for (const auto& h : st.headers) dynamic = dynamic || !h.second.is_static();
    rs.dynamic = dynamic;
    rs.need_body = !st.expect.body_contains.empty() || st.expect.max_body.has_value() ||
                   std::any_of(st.extract.begin(), st.extract.end(),
                               [](const Extract& x) { return x.from != Extract::From::header; });
    rs.need_headers =
        !st.expect.header_name.empty() || std::any_of(st.extract.begin(), st.extract.end(),
                                                      [](const Extract& x) { return x.from == Extract::From::header; });
    if (!dynamic) {
      if (st.type == StepType::http) {
        const std::string body = st.body.literal();
        const bool default_port = st.port == (st.tls ? 443 : 80);
        std::string r = fmt::format("{} {} HTTP/1.1\r\nHost: {}{}\r\n", st.method, st.path.literal(), st.host,
                                    default_port ? "" : ":" + std::to_string(st.port));
        for (const auto& [k, v] : st.headers) r += fmt::format("{}: {}\r\n", k, v.literal());
        if (!body.empty() || st.method == "POST" || st.method == "PUT" || st.method == "PATCH")
          r += fmt::format("Content-Length: {}\r\n", body.size());
        if (!st.keepalive) r += "Connection: close\r\n";
        r += "\r\n" + body;
        rs.request = std::move(r);
      } else {
        rs.request = st.send.literal();
      }
    }
  }
  return ok_status();
}

}  // namespace

// ---------------------------------------------------------------- public API

namespace testing {
void (*on_response)(std::string_view step) = nullptr;
}  // namespace testing

constexpr EnumNames<RunEnd, 3> kRunEndNames{{"completed", "failed", "cancelled"}, "?"};
static_assert(kRunEndNames.covers(RunEnd::cancelled));

const char* run_end_name(RunEnd e) { return kRunEndNames(e); }

Result<std::shared_ptr<const PreparedWorkflow>> prepare_workflow(std::shared_ptr<const Plan> plan,
                                                                 const std::string& workflow) {
  if (!plan) return make_error(Errc::invalid_argument, "prepare_workflow: no plan");
  const auto it = std::find_if(plan->workflows.begin(), plan->workflows.end(),
                               [&](const Workflow& w) { return w.name == workflow; });
  if (it == plan->workflows.end())
    return make_error(Errc::not_found, fmt::format("the plan has no workflow named '{}'", workflow));
  auto p = std::make_shared<PreparedWorkflow>();
  p->wf = &*it;
  p->plan = std::move(plan);
  HS_TRY(resolve_steps(*p->wf, p->steps));
  const bool any_tls = std::any_of(p->wf->steps.begin(), p->wf->steps.end(), [](const Step& s) { return s.tls; });
  if (any_tls) {
    p->tls_verify = SSL_CTX_new(TLS_client_method());
    p->tls_noverify = SSL_CTX_new(TLS_client_method());
    if (!p->tls_verify || !p->tls_noverify)
      return make_error(Errc::internal, "OpenSSL: cannot create a TLS context: " + tls_error());
    SSL_CTX_set_verify(p->tls_verify, SSL_VERIFY_PEER, nullptr);
    if (SSL_CTX_set_default_verify_paths(p->tls_verify) != 1)
      log::warn("load", "tls_ca_paths", "error={}", log::quoted(tls_error()));
    SSL_CTX_set_verify(p->tls_noverify, SSL_VERIFY_NONE, nullptr);
  }
  return std::shared_ptr<const PreparedWorkflow>(std::move(p));
}

const Workflow& workflow_of(const PreparedWorkflow& p) { return *p.wf; }

Runner::Runner(runtime::Reactor& control) : r_(control) {}

Runner::~Runner() {
  ShardState* cs = find_state(r_);
  if (cs == nullptr) return;
  const std::vector<RunId> ids = ids_;
  for (RunId id : ids) {
    Control* c = find_control(*cs, id);
    if (c == nullptr) continue;
    c->owner = nullptr;
    c->cb = RunCallbacks{};
    if (c->progress) r_.cancel(*c->progress);
    c->progress.reset();
    cancel(id, Duration{0});
  }
  ids_.clear();
}

Result<RunId> Runner::start(RunSpec spec, RunCallbacks cb) {
  if (!spec.workflow) return make_error(Errc::invalid_argument, "run: no workflow");
  if (spec.shards.empty()) return make_error(Errc::invalid_argument, "run: no shards");
  const int nset = r_.shards() ? r_.shards()->size() : 1;
  std::vector<int> sorted = spec.shards;
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
    return make_error(Errc::invalid_argument, "run: a shard is listed twice");
  for (int s : sorted)
    if (s < 0 || s >= nset || (!r_.shards() && s != r_.shard_id()))
      return make_error(Errc::invalid_argument, fmt::format("run: shard {} is not in this set of {}", s, nset));
  const Workflow& wf = *spec.workflow->wf;
  const std::uint64_t n = spec.shards.size();
  RunPart part{0, static_cast<std::uint32_t>(n)};
  if (spec.part) {
    part = *spec.part;
    if (part.total == 0) return make_error(Errc::invalid_argument, "run: part of a workflow of 0 shards in total");
    if (part.total > kMaxGlobalShards)
      return make_error(Errc::invalid_argument,
                        fmt::format("run: part of a workflow of {} shards (at most {})", part.total, kMaxGlobalShards));
    if (std::uint64_t{part.first} + n > part.total)
      return make_error(Errc::invalid_argument, fmt::format("run: part [{}, {}) is beyond the workflow's {} shards",
                                                            part.first, std::uint64_t{part.first} + n, part.total));
    if (wf.kind == WorkflowKind::setup && part.first != 0)
      return make_error(
          Errc::invalid_argument,
          fmt::format("run: setup workflow '{}' runs as one part, from global shard 0 (not {})", wf.name, part.first));
  }
  const Instant now = r_.clock().now();
  if (spec.start_at && *spec.start_at > now + kMaxStartAhead)
    return make_error(Errc::invalid_argument,
                      fmt::format("run: start time {} ms ahead (at most {} ms)",
                                  std::chrono::duration_cast<std::chrono::milliseconds>(*spec.start_at - now).count(),
                                  std::chrono::duration_cast<std::chrono::milliseconds>(kMaxStartAhead).count()));
  if (ids_.size() >= kMaxRuns)
    return make_error(Errc::backpressure, fmt::format("run: {} runs are live already", ids_.size()));
  if (spec.context.size() > kMaxContext)
    return make_error(Errc::invalid_argument,
                      fmt::format("run: {} context values (at most {})", spec.context.size(), kMaxContext));
  ShardState& cs = state_of(r_);
  const RunId id = cs.next_id++;
  auto sh = std::make_shared<RunShared>();
  sh->prep = std::move(spec.workflow);
  sh->ctx = std::move(spec.context);
  sh->shards = std::move(spec.shards);
  sh->first = static_cast<int>(part.first);
  sh->total = static_cast<int>(part.total);
  sh->control = r_.shard_id();
  sh->id = id;
  sh->shares =
      part_shares(wf, part.first, static_cast<std::uint32_t>(sh->shards.size()), part.total, spec.skip_iterations);
  std::uint64_t budget = 0;  // iterations this run may still start (with an `iterations` budget)
  for (const ShardShare& s : sh->shares) budget += s.iterations.value_or(0);
  auto c = std::make_unique<Control>();
  c->id = id;
  c->owner = this;
  c->cb = std::move(cb);
  c->sh = sh;
  c->started_at = spec.start_at.value_or(now);
  if (c->started_at < now) c->start_late = now - c->started_at;
  c->merged.name = wf.name;
  c->merged.steps.resize(wf.steps.size());
  for (std::size_t i = 0; i < wf.steps.size(); ++i) c->merged.steps[i].name = wf.steps[i].name;
  c->live.resize(sh->shards.size());
  c->window.resize(wf.steps.size());
  c->shards_left = static_cast<int>(sh->shards.size());
  Control& ref = *c;
  cs.controls.emplace(id, std::move(c));
  ids_.push_back(id);
  log::info("load", "workflow_start",
            "workflow={} run={} shards={} global_first={} global_total={} start_in_ms={} skip_iterations={} "
            "iterations={}",
            log::quoted(wf.name), id, sh->shards.size(), sh->first, sh->total,
            std::chrono::duration_cast<std::chrono::milliseconds>(ref.started_at - now).count(), spec.skip_iterations,
            wf.iterations || wf.kind == WorkflowKind::setup ? fmt::format("{}", budget) : std::string("none"));
  if (ref.start_late > Duration{0})
    log::warn("load", "workflow_start_late", "workflow={} run={} late_ms={} (the schedule keeps its start)",
              log::quoted(wf.name), id, std::chrono::duration_cast<std::chrono::milliseconds>(ref.start_late).count());
  const std::int64_t t = ref.started_at.count();
  std::shared_ptr<const RunShared> shc = sh;
  for (std::size_t pos = 0; pos < sh->shards.size(); ++pos) {
    const int p = static_cast<int>(pos);
    Status st =
        r_.send(sh->shards[pos], runtime::Message([shc, p, t](Reactor& r) { shard_start(r, shc, p, Instant(t)); }));
    if (!st.ok()) {
      // The ring to that shard is full (it cannot be at this rate); count the shard as finished empty.
      log::error("load", "start_send_failed", "shard={} error={}", sh->shards[pos], log::quoted(st.to_string()));
      cs.msg_unsent->inc();
      ref.shards_left--;
    }
  }
  if (ref.shards_left == 0) {
    ids_.pop_back();
    cs.controls.erase(id);
    return make_error(Errc::unavailable, "run: no shard could be reached");
  }
  if (ref.cb.on_progress) {
    ShardState* csp = &cs;
    Reactor* rp = &r_;
    auto task = r_.every("load-progress", std::chrono::seconds(1), [csp, rp, id]() {
      Control* c = find_control(*csp, id);
      if (c == nullptr || !c->cb.on_progress) return ok_status();
      WorkflowLive live;
      fill_live(*c, rp->clock().now(), live);
      auto fn = c->cb.on_progress;  // the callback may cancel or end the run
      fn(live);
      return ok_status();
    });
    if (task.ok())
      ref.progress = *task;
    else
      log::error("load", "task_failed", "task=load-progress error={}", log::quoted(task.status().to_string()));
  }
  return id;
}

bool Runner::cancel(RunId id, Duration grace) {
  if (std::find(ids_.begin(), ids_.end(), id) == ids_.end()) return false;
  ShardState* cs = find_state(r_);
  Control* c = cs ? find_control(*cs, id) : nullptr;
  if (c == nullptr) return false;
  c->cancelled = true;
  log::info("load", "workflow_cancel", "workflow={} run={} grace_ms={:.0f}", log::quoted(c->merged.name), id,
            to_millis(grace));
  const int control = r_.shard_id();
  const std::int64_t g = grace.count();
  for (int s : c->sh->shards) {
    Status st =
        r_.send(s, runtime::Message([control, id, g](Reactor& r) { shard_cancel(r, control, id, Duration(g)); }));
    if (!st.ok()) {
      log::error("load", "cancel_send_failed", "shard={} run={} error={}", s, id, log::quoted(st.to_string()));
      cs->msg_unsent->inc();
    }
  }
  return true;
}

bool Runner::sample(RunId id, WorkflowLive& out) {
  if (std::find(ids_.begin(), ids_.end(), id) == ids_.end()) return false;
  ShardState* cs = find_state(r_);
  Control* c = cs ? find_control(*cs, id) : nullptr;
  if (c == nullptr) return false;
  fill_live(*c, r_.clock().now(), out);
  return true;
}

std::size_t shard_run_states() { return tl_state ? tl_state->runs.size() + tl_state->controls.size() : 0; }

}  // namespace hs::load
