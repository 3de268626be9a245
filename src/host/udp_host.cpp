#include "hyperscale/host/udp_host.hpp"

#include <arpa/inet.h>

#include <charconv>

#include "hyperscale/base/log.hpp"
#include "hyperscale/runtime/c_boundary.hpp"

namespace hs::host {

namespace {
sockaddr_in to_sockaddr(NodeId id) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(id & 0xffff));
  sa.sin_addr.s_addr = htonl(static_cast<std::uint32_t>(id >> 16));
  return sa;
}
}  // namespace

UdpHost::UdpHost(runtime::Reactor& reactor, NodeId self, swim::SwimConfig cfg, std::uint64_t seed)
    : reactor_(reactor),
      self_(self),
      swim_(std::move(cfg)),
      rng_(seed),
      send_errors_(reactor.metrics().counter("hs_swim_udp_errors_total", "SWIM UDP errors by reason",
                                             {{"reason", "send_failed"}})),
      recv_errors_(reactor.metrics().counter("hs_swim_udp_errors_total", "SWIM UDP errors by reason",
                                             {{"reason", "recv_failed"}})),
      not_ipv4_(
          reactor.metrics().counter("hs_swim_udp_errors_total", "SWIM UDP errors by reason", {{"reason", "not_ipv4"}})),
      timer_errors_(reactor.metrics().counter("hs_swim_udp_errors_total", "SWIM UDP errors by reason",
                                              {{"reason", "timer_refused"}})) {
  udp_.data = this;
}

UdpHost::~UdpHost() {
  for (auto& [id, task] : timers_) reactor_.cancel(task);
  if (metrics_task_.valid()) reactor_.cancel(metrics_task_);
}

Status UdpHost::start() {
  int rc = uv_udp_init(reactor_.loop(), &udp_);
  if (rc != 0) return errno_status("swim udp init", -rc);
  open_ = true;
  sockaddr_in sa = to_sockaddr(self_);
  rc = uv_udp_bind(&udp_, reinterpret_cast<const sockaddr*>(&sa), 0);
  if (rc != 0) return errno_status(fmt::format("swim udp bind {}", node_addr_string(self_)), -rc);
  rc = uv_udp_recv_start(
      &udp_,
      [](uv_handle_t* h, size_t, uv_buf_t* buf) noexcept {
        auto* self = static_cast<UdpHost*>(h->data);
        *buf = uv_buf_init(self->recv_buf_, sizeof(self->recv_buf_));
      },
      [](uv_udp_t* h, ssize_t nread, const uv_buf_t* buf, const sockaddr* addr, unsigned) noexcept {
        // A datagram whose handling throws is dropped (logged and counted); the socket keeps reading.
        auto* self = static_cast<UdpHost*>(h->data);
        runtime::at_c_boundary(&self->reactor_.metrics(), "swim_udp_recv", "",
                               [&] { self->on_recv(nread, buf, addr); });
      });
  if (rc != 0) return errno_status("swim udp recv_start", -rc);
  auto t = reactor_.every("swim-metrics", std::chrono::seconds(1), [this]() {
    export_metrics();
    return ok_status();
  });
  if (!t.ok()) return t.status().with_context("swim metrics task");
  metrics_task_ = *t;
  swim_.on_start(*this);
  return ok_status();
}

void UdpHost::close(std::function<void()> done) {
  for (auto& [id, task] : timers_) reactor_.cancel(task);
  timers_.clear();
  if (metrics_task_.valid()) reactor_.cancel(metrics_task_);
  metrics_task_ = {};
  if (!open_ || closing_) {
    if (done) done();
    return;
  }
  closing_ = true;
  on_closed_ = std::move(done);
  uv_close(reinterpret_cast<uv_handle_t*>(&udp_), [](uv_handle_t* h) noexcept {
    auto* self = static_cast<UdpHost*>(h->data);
    self->open_ = false;
    runtime::at_c_boundary(&self->reactor_.metrics(), "swim_udp_close", "", [&] {
      if (self->on_closed_) self->on_closed_();
    });
  });
}

void UdpHost::on_recv(ssize_t nread, const uv_buf_t* buf, const sockaddr* addr) {
  if (nread == 0 && addr == nullptr) return;  // libuv: nothing more to read
  if (nread < 0) {
    recv_errors_.inc();
    log::warn("swim", "udp_recv_failed", "self={} error={}", node_addr_string(self_),
              log::quoted(uv_strerror(static_cast<int>(nread))));
    return;
  }
  if (addr == nullptr || addr->sa_family != AF_INET) {
    not_ipv4_.inc();
    log::warn("swim", "udp_dropped", "self={} reason=not_ipv4", node_addr_string(self_));
    return;
  }
  const auto* sin = reinterpret_cast<const sockaddr_in*>(addr);
  const NodeId from = (static_cast<NodeId>(ntohl(sin->sin_addr.s_addr)) << 16) | ntohs(sin->sin_port);
  swim_.on_message(
      *this, from,
      std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(buf->base), static_cast<std::size_t>(nread)));
}

void UdpHost::send(NodeId to, node::Bytes msg) {
  if (!open_ || closing_) return;
  sockaddr_in sa = to_sockaddr(to);
  uv_buf_t b = uv_buf_init(reinterpret_cast<char*>(msg.data()), static_cast<unsigned>(msg.size()));
  const int rc = uv_udp_try_send(&udp_, &b, 1, reinterpret_cast<const sockaddr*>(&sa));
  if (rc < 0) {
    send_errors_.inc();
    log::warn("swim", "udp_send_failed", "self={} to={} error={}", node_addr_string(self_), node_addr_string(to),
              log::quoted(uv_strerror(rc)));
  }
}

node::TimerId UdpHost::set_timer(Duration after, std::uint64_t tag) {
  const node::TimerId id = next_timer_++;
  auto t = reactor_.after("swim-timer", after, [this, id, tag]() {
    timers_.erase(id);
    swim_.on_timer(*this, id, tag);
    return ok_status();
  });
  if (!t.ok()) {
    timer_errors_.inc();
    log::error("swim", "timer_refused", "self={} error={}", node_addr_string(self_),
               log::quoted(t.status().to_string()));
    return id;
  }
  timers_[id] = *t;
  return id;
}

void UdpHost::cancel_timer(node::TimerId id) {
  auto it = timers_.find(id);
  if (it == timers_.end()) return;
  reactor_.cancel(it->second);
  timers_.erase(it);
}

void UdpHost::export_metrics() {
  const swim::SwimStats& s = swim_.stats();
  auto& reg = reactor_.metrics();
  auto bump = [&](std::string_view name, std::string_view help, std::uint64_t now, std::uint64_t& last,
                  metrics::Labels labels = {}) {
    if (now > last) reg.counter(name, help, std::move(labels)).inc(now - last);
    last = now;
  };
  for (std::size_t i = 1; i < static_cast<std::size_t>(swim::DecodeError::kCount); ++i) {
    const auto reason = swim::decode_error_name(static_cast<swim::DecodeError>(i));
    bump("hs_swim_decode_errors_total", "SWIM datagrams rejected by the decoder, by reason", s.decode_errors[i],
         exported_.decode_errors[i], {{"reason", std::string(reason)}});
  }
  bump("hs_swim_messages_sent_total", "SWIM datagrams sent", s.sent, exported_.sent);
  bump("hs_swim_messages_received_total", "SWIM datagrams accepted", s.received, exported_.received);
  bump("hs_swim_suspicions_total", "members suspected", s.suspicions, exported_.suspicions);
  bump("hs_swim_deaths_total", "members declared dead or left", s.deaths, exported_.deaths);
  bump("hs_swim_refutations_total", "suspicions of self refuted", s.refutations, exported_.refutations);
  bump("hs_swim_dropped_total", "SWIM datagrams dropped", s.wrong_target, exported_.wrong_target,
       {{"reason", "wrong_target"}});
  bump("hs_swim_dropped_total", "SWIM datagrams dropped", s.sender_mismatch, exported_.sender_mismatch,
       {{"reason", "sender_mismatch"}});
  reg.gauge("hs_swim_lhm_score", "Lifeguard local health score").set(swim_.lhm_score());
  reg.gauge("hs_swim_members", "members alive or suspect").set(static_cast<double>(swim_.alive_count()));
}

}  // namespace hs::host
