#include "hyperscale/net/inproc_transport.hpp"

#include "hyperscale/base/log.hpp"

namespace hs::net {

using wire::Reject;

InprocTransport::InprocTransport(runtime::Reactor& reactor, InprocNetwork& net, wire::Identity self,
                                 wire::Limits limits, std::size_t max_pending)
    : reactor_(reactor),
      net_(net),
      self_(std::move(self)),
      limits_(limits),
      max_pending_(max_pending),
      timeouts_(reactor.metrics().counter("hs_net_request_timeouts_total", "Requests that hit their deadline")),
      late_(reactor.metrics().counter("hs_net_late_replies_total",
                                      "Replies that arrived after their request completed (dropped)")) {
  for (std::size_t i = 1; i < rejected_.size(); ++i)
    rejected_[i] = &reactor.metrics().counter("hs_wire_rejected_total", "Frames dropped, by reason",
                                              {{"reason", std::string(wire::reject_name(static_cast<Reject>(i)))}});
  const auto id = static_cast<std::size_t>(reactor_.shard_id());
  if (id < net_.slots_.size()) net_.slots_[id] = this;
}

InprocTransport::~InprocTransport() {
  *alive_ = nullptr;
  const auto id = static_cast<std::size_t>(reactor_.shard_id());
  if (id < net_.slots_.size() && net_.slots_[id] == this) net_.slots_[id] = nullptr;
  for (auto& [corr, p] : pending_) reactor_.cancel(p.timer);
}

void InprocTransport::on(wire::MsgType type, Handler h) { handlers_[static_cast<std::uint8_t>(type)] = std::move(h); }

void InprocTransport::reject(Reject r, int from, std::string_view detail) {
  rejected_[static_cast<std::size_t>(r)]->inc();
  log_.log(r, wire::Channel::tcp, fmt::format("inproc:{}", from), detail, reactor_.clock().now());
}

Status InprocTransport::post(const Endpoint& to, wire::MsgType type, std::span<const std::uint8_t> body,
                             std::uint64_t corr, bool is_reply, std::size_t limit) {
  if (to.host != "inproc" || to.port == 0 || to.port > net_.size())
    return make_error(Errc::invalid_argument, fmt::format("{} is not an in-process endpoint", to.to_string()));
  if (body.size() + wire::FrameCodec::overhead() > limit)
    return make_error(Errc::invalid_argument, fmt::format("{} body of {} bytes exceeds the limit of {}",
                                                          wire::type_name(type), body.size(), limit));
  auto p = std::make_unique<Packet>();
  p->type = type;
  p->body.assign(body.begin(), body.end());
  p->sender_id = self_.node_id;
  p->sender_role = self_.role;
  p->from_shard = reactor_.shard_id();
  p->correlation = corr;
  p->is_reply = is_reply;
  runtime::Message m = [net = &net_, pk = std::move(p)](runtime::Reactor& r) mutable {
    const auto id = static_cast<std::size_t>(r.shard_id());
    // Only the destination shard's thread touches its slot.
    InprocTransport* t = id < net->slots_.size() ? net->slots_[id] : nullptr;
    if (t == nullptr) {
      log::warn("net", "inproc_no_transport", "shard={} type={}", id, wire::type_name(pk->type));
      return;
    }
    t->deliver(std::move(pk));
  };
  Status st = reactor_.try_send(static_cast<int>(to.port) - 1, m);
  if (!st.ok() && st.code() == Errc::backpressure) return st.with_context(fmt::format("inproc to {}", to.to_string()));
  return st;
}

Status InprocTransport::send_datagram(const Endpoint& to, wire::MsgType type, std::span<const std::uint8_t> body) {
  return post(to, type, body, 0, false, limits_.max_udp_datagram);
}

Status InprocTransport::send(const Endpoint& to, wire::MsgType type, std::span<const std::uint8_t> body) {
  return post(to, type, body, 0, false, limits_.max_tcp_frame);
}

Status InprocTransport::request(const Endpoint& to, wire::MsgType type, std::span<const std::uint8_t> body,
                                Duration deadline, ReplyFn done) {
  if (pending_.size() >= max_pending_)
    return make_error(Errc::backpressure, fmt::format("{} in-process requests pending", pending_.size()));
  const std::uint64_t corr = next_corr_++;
  HS_TRY(post(to, type, body, corr, false, limits_.max_tcp_frame));
  auto timer = reactor_.after("net.inproc_request_deadline", deadline, [this, corr, peer = to.to_string()]() -> Status {
    auto it = pending_.find(corr);
    if (it == pending_.end()) return ok_status();
    auto fn = std::move(it->second.done);
    pending_.erase(it);
    timeouts_.inc();
    fn(make_error(Errc::timeout, fmt::format("in-process request to {} timed out", peer)));
    return ok_status();
  });
  if (!timer.ok()) {
    // The request is already posted; its reply will be counted as late. Tell the caller now.
    return timer.status().with_context("request deadline timer");
  }
  pending_.emplace(corr, Pending{std::move(done), timer.value()});
  return ok_status();
}

void InprocTransport::deliver(std::unique_ptr<Packet> p) {
  if (!wire::verify_body(p->type, p->body, limits_.verifier_max_depth, limits_.verifier_max_tables)) {
    reject(Reject::verify_failed, p->from_shard, fmt::format("type={}", wire::type_name(p->type)));
    return;
  }
  if (p->is_reply) {
    auto it = pending_.find(p->correlation);
    if (it == pending_.end()) {
      late_.inc();
      log::debug("net", "late_reply", "correlation={} transport=inproc", p->correlation);
      return;
    }
    auto fn = std::move(it->second.done);
    reactor_.cancel(it->second.timer);
    pending_.erase(it);
    wire::Decoded d;
    d.type = p->type;
    d.peer_minor = wire::kMinor;
    d.plaintext = std::move(p->body);
    d.body = {d.plaintext.data(), d.plaintext.size()};
    d.sender_id = std::move(p->sender_id);
    d.sender_role = p->sender_role;
    d.correlation = p->correlation;
    d.is_reply = true;
    fn(std::move(d));
    return;
  }
  if (!wire::role_allowed(p->type, p->sender_role, self_.role)) {
    reject(Reject::role_not_allowed, p->from_shard,
           fmt::format("type={} sender_role={}", wire::type_name(p->type), wire::fb::EnumNameRole(p->sender_role)));
    return;
  }
  auto h = handlers_.find(static_cast<std::uint8_t>(p->type));
  if (h == handlers_.end() || !h->second) {
    log::debug("net", "no_handler", "type={} transport=inproc", wire::type_name(p->type));
    return;
  }
  Inbound in;
  in.type = p->type;
  in.sender_id = p->sender_id;
  in.sender_role = p->sender_role;
  in.peer_minor = wire::kMinor;
  in.body = p->body;
  in.from = InprocNetwork::endpoint(p->from_shard);
  in.expects_reply = p->correlation != 0;
  Responder resp;
  if (in.expects_reply) {
    std::weak_ptr<InprocTransport*> weak = alive_;
    resp = Responder(
        [weak, to = in.from, corr = p->correlation](wire::MsgType type, std::span<const std::uint8_t> body) -> Status {
          auto t = weak.lock();
          if (!t || !*t) return make_error(Errc::unavailable, "in-process transport gone");
          return (*t)->post(to, type, body, corr, true, (*t)->limits_.max_tcp_frame);
        });
  }
  try {
    h->second(in, resp);
  } catch (const std::exception& e) {
    log::error("net", "handler_threw", "type={} transport=inproc error={}", wire::type_name(p->type),
               log::quoted(e.what()));
  }
}

}  // namespace hs::net
