#include "hyperscale/host/net_host.hpp"

#include <arpa/inet.h>

#include <exception>

#include "hyperscale/base/host_port.hpp"
#include "hyperscale/base/log.hpp"
#include "hyperscale/wire/messages.hpp"

namespace hs::host {

// ---------------- addressing ----------------

Result<NodeId> parse_node_addr(std::string_view text) {
  auto hp = parse_host_port(text, HostPortRules{.form = "IPv4:port"});
  if (!hp.ok()) return hp.status();
  in_addr a{};
  if (::inet_pton(AF_INET, hp->host.c_str(), &a) != 1)
    return make_error(Errc::invalid_argument, fmt::format("address '{}': bad IPv4 address '{}'", text, hp->host));
  if (a.s_addr == 0)
    return make_error(Errc::invalid_argument,
                      fmt::format("address '{}': 0.0.0.0 is not a node address; listen on a concrete IPv4", text));
  return (static_cast<NodeId>(ntohl(a.s_addr)) << 16) | hp->port;
}

Result<net::Endpoint> parse_listen_addr(std::string_view text) {
  auto hp = parse_host_port(text, HostPortRules{.allow_port_zero = true, .form = "IPv4:port"});
  if (!hp.ok()) return hp.status();
  in_addr a{};
  if (::inet_pton(AF_INET, hp->host.c_str(), &a) != 1)
    return make_error(Errc::invalid_argument, fmt::format("address '{}': bad IPv4 address '{}'", text, hp->host));
  return net::Endpoint{std::move(hp->host), hp->port};
}

Result<NodeId> node_id(const net::Endpoint& ep) { return parse_node_addr(ep.to_string()); }

std::string node_addr_string(NodeId id) {
  const auto ip = static_cast<std::uint32_t>(id >> 16);
  return fmt::format("{}.{}.{}.{}:{}", (ip >> 24) & 0xff, (ip >> 16) & 0xff, (ip >> 8) & 0xff, ip & 0xff, id & 0xffff);
}

net::Endpoint endpoint(NodeId id) {
  const auto ip = static_cast<std::uint32_t>(id >> 16);
  net::Endpoint ep;
  ep.host = fmt::format("{}.{}.{}.{}", (ip >> 24) & 0xff, (ip >> 16) & 0xff, (ip >> 8) & 0xff, ip & 0xff);
  ep.port = static_cast<std::uint16_t>(id & 0xffff);
  return ep;
}

// ---------------- NetHost ----------------

namespace {
metrics::Counter& ctr(runtime::Reactor& r, std::string_view name, std::string_view help, std::string_view key,
                      std::string_view value) {
  return r.metrics().counter(name, help, {{std::string(key), std::string(value)}});
}
constexpr std::string_view kSendErr = "Role messages the transport refused, by reason";
constexpr std::string_view kDropped = "Role messages received and not delivered, by reason";
constexpr std::string_view kSent = "Role messages sent, by channel";
}  // namespace

NetHost::NetHost(runtime::Reactor& reactor, node::Node& node, NetHostOptions opts, DurableDisk* disk)
    : reactor_(reactor),
      node_(node),
      opts_(std::move(opts)),
      disk_(disk),
      rng_(opts_.seed),
      alive_(std::make_shared<NetHost*>(this)),
      sent_tcp_(ctr(reactor, "hs_host_messages_sent_total", kSent, "channel", "tcp")),
      sent_udp_(ctr(reactor, "hs_host_messages_sent_total", kSent, "channel", "udp")),
      received_(reactor.metrics().counter("hs_host_messages_received_total", "Role messages delivered to the node")),
      err_backpressure_(ctr(reactor, "hs_host_send_errors_total", kSendErr, "reason", "backpressure")),
      err_unavailable_(ctr(reactor, "hs_host_send_errors_total", kSendErr, "reason", "unavailable")),
      err_too_large_(ctr(reactor, "hs_host_send_errors_total", kSendErr, "reason", "too_large")),
      err_other_(ctr(reactor, "hs_host_send_errors_total", kSendErr, "reason", "other")),
      drop_stopped_(ctr(reactor, "hs_host_dropped_total", kDropped, "reason", "stopped")),
      drop_empty_(ctr(reactor, "hs_host_dropped_total", kDropped, "reason", "empty")),
      drop_from_mismatch_(ctr(reactor, "hs_host_dropped_total", kDropped, "reason", "from_mismatch")),
      timer_refused_(reactor.metrics().counter("hs_host_timer_refused_total", "Node timers or syncs the host refused")),
      node_errors_(reactor.metrics().counter("hs_host_node_errors_total", "Exceptions out of node events")),
      stops_(reactor.metrics().counter("hs_host_stops_total", "Nodes stopped by a failure (fail-stop)")),
      running_gauge_(reactor.metrics().gauge("hs_host_running", "1 while the node runs")),
      timers_gauge_(reactor.metrics().gauge("hs_host_timers", "Live node timers and sync barriers")) {
  if (opts_.seed == 0) {
    std::uint64_t s = static_cast<std::uint64_t>(wall_time_us()) ^ (reinterpret_cast<std::uintptr_t>(this) << 16);
    rng_.reseed(s);
  }
}

NetHost::~NetHost() {
  *alive_ = nullptr;
  cancel_all_timers();
}

Status NetHost::start() {
  if (started_) return make_error(Errc::already_exists, "host: already started");
  auto id = node_id(opts_.listen);
  if (!id.ok()) return id.status().with_context("host listen address");
  if (opts_.role == wire::fb::Role::Unknown) return make_error(Errc::invalid_argument, "host: role is not set");
  self_ = *id;
  wire::Identity ident;
  ident.cluster_id = opts_.cluster_id;
  ident.node_id = node_addr_string(self_);
  ident.role = opts_.role;
  net::TransportConfig tc = opts_.transport;
  tc.listen_host = opts_.listen.host;
  tc.tcp_port = opts_.listen.port;
  tc.udp_port = opts_.listen.port;
  tc.enable_tcp_listen = true;
  tc.enable_udp = true;
  if (tc.seed == 0) tc.seed = rng_.next_u64() | 1;
  transport_ = std::make_unique<net::UvTransport>(reactor_, tc, ident, opts_.keys, opts_.limits);
  transport_->on(wire::MsgType::RoleMessage,
                 [this](const net::Inbound& in, const net::Responder&) { on_role_message(in); });
  started_ = true;
  if (Status st = transport_->start(); !st.ok()) {
    log::error("host", "start_failed", "self={} error={}", node_addr_string(self_), log::quoted(st.to_string()));
    return st.with_context("host start");
  }
  {
    // Measure the datagram overhead of this identity: seal a RoleMessage with a known payload, for
    // the longest receiver id a peer can have (every datagram is sealed for its destination's
    // "ip:port"). (Uses up one sequence number; the replay guard accepts gaps.)
    constexpr std::size_t kProbe = 512;
    constexpr std::string_view kLongestNodeAddr = "255.255.255.255:65535";
    fbb_.Clear();
    auto data = fbb_.CreateVector(std::vector<std::uint8_t>(kProbe, 0));
    fbb_.Finish(wire::fb::CreateRoleMessage(fbb_, self_, data));
    std::vector<std::uint8_t> frame;
    Status st = transport_->codec().seal(wire::MsgType::RoleMessage, wire::finished(fbb_), 0, false, wire::Channel::udp,
                                         kLongestNodeAddr, frame, wall_time_us() / 1000);
    if (!st.ok()) return st.with_context("host start: measuring the datagram overhead");
    const std::size_t overhead = frame.size() - kProbe + 8;  // + flatbuffers alignment padding
    datagram_budget_ = opts_.limits.max_udp_datagram > overhead ? opts_.limits.max_udp_datagram - overhead : 0;
  }
  if (disk_ != nullptr) {
    std::weak_ptr<NetHost*> weak = alive_;
    disk_->set_failure_callback([weak](const Status& st) {
      if (auto p = weak.lock(); p && *p) (*p)->stop(st.with_context("disk failed"));
    });
    if (!disk_->health().ok()) return disk_->health().with_context("host start: disk");
  }
  running_ = true;
  running_gauge_.set(1);
  log::info("host", "started", "self={} role={} cluster={} disk={} datagram_budget={}", node_addr_string(self_),
            wire::fb::EnumNameRole(opts_.role), log::quoted(opts_.cluster_id), disk_ ? "wal" : "memory",
            datagram_budget_);
  deliver("start", [&] { node_.on_start(*this); });
  return running_ ? ok_status() : stop_reason_;
}

template <typename F>
void NetHost::deliver(std::string_view event, F&& f) {
  if (!running_) return;
  try {
    f();
  } catch (const std::exception& e) {
    node_errors_.inc();
    log::error("host", "node_error", "self={} event={} error={} action={}", node_addr_string(self_), event,
               log::quoted(e.what()), opts_.stop_on_node_error ? "stop" : "continue");
    if (opts_.stop_on_node_error)
      stop(make_error(Errc::internal, fmt::format("node threw in {}: {}", event, e.what())));
  }
}

void NetHost::cancel_all_timers() {
  for (auto& [id, task] : timers_) reactor_.cancel(task);
  timers_.clear();
  syncs_.clear();
  timers_gauge_.set(0);
}

void NetHost::stop(const Status& why) {
  if (!running_ && !stop_reason_.ok()) return;
  const bool was_running = running_;
  running_ = false;
  running_gauge_.set(0);
  stop_reason_ = why.ok() ? make_error(Errc::internal, "stopped") : why;
  cancel_all_timers();
  if (!was_running && !started_) return;
  stops_.inc();
  log::error("host", "node_stopped", "self={} reason={} note=fail-stop", node_addr_string(self_),
             log::quoted(stop_reason_.to_string()));
  // Close the sockets outside whatever callback we are in (peers then see this node as gone).
  std::weak_ptr<NetHost*> weak = alive_;
  Status st = reactor_.defer([weak]() {
    if (auto p = weak.lock(); p && *p && (*p)->transport_) (*p)->transport_->close();
  });
  if (!st.ok()) log::error("host", "close_deferred_failed", "error={}", log::quoted(st.to_string()));
  if (on_stop_) on_stop_(stop_reason_);
}

void NetHost::close(std::function<void()> done) {
  running_ = false;
  running_gauge_.set(0);
  cancel_all_timers();
  if (transport_) {
    transport_->close(std::move(done));
  } else if (done) {
    done();
  }
}

Status NetHost::run(const std::function<void(node::Context&)>& fn) {
  if (!running_) {
    return make_error(Errc::unavailable, fmt::format("host {}: node is not running{}", node_addr_string(self_),
                                                     stop_reason_.ok() ? "" : " (" + stop_reason_.to_string() + ")"));
  }
  deliver("run", [&] { fn(*this); });
  return running_ ? ok_status() : stop_reason_;
}

// ---- receive ----

void NetHost::on_role_message(const net::Inbound& in) {
  const auto* m = wire::body_as<wire::fb::RoleMessage>(in.body);
  if (!running_) {
    drop_stopped_.inc();
    ++stats_.dropped;
    return;
  }
  const NodeId from = m->from_node();
  // The envelope's sender id is the sender's listen address (authenticated); from_node must match.
  auto claimed = parse_node_addr(in.sender_id);
  if (!claimed.ok() || *claimed != from) {
    drop_from_mismatch_.inc();
    ++stats_.dropped;
    log::warn("host", "message_dropped", "self={} reason=from_mismatch sender={} from_node={} peer={}",
              node_addr_string(self_), log::quoted(in.sender_id), node_addr_string(from), in.from.to_string());
    return;
  }
  if (m->data() == nullptr || m->data()->size() == 0) {
    drop_empty_.inc();
    ++stats_.dropped;
    log::warn("host", "message_dropped", "self={} reason=empty from={}", node_addr_string(self_),
              node_addr_string(from));
    return;
  }
  received_.inc();
  ++stats_.received;
  std::span<const std::uint8_t> data(m->data()->data(), m->data()->size());
  deliver("message", [&] { node_.on_message(*this, from, data); });
}

// ---- send ----

void NetHost::send(NodeId to, node::Bytes msg) {
  if (!running_) {
    err_unavailable_.inc();
    ++stats_.send_errors;
    log::debug("host", "send_dropped", "self={} to={} reason=stopped", node_addr_string(self_), node_addr_string(to));
    return;
  }
  if (msg.empty()) {
    err_other_.inc();
    ++stats_.send_errors;
    log::warn("host", "send_refused", "self={} to={} reason=empty", node_addr_string(self_), node_addr_string(to));
    return;
  }
  const bool datagram = msg[0] == opts_.datagram_channel;
  fbb_.Clear();
  auto data = fbb_.CreateVector(msg);
  fbb_.Finish(wire::fb::CreateRoleMessage(fbb_, self_, data));
  const net::Endpoint ep = endpoint(to);
  Status st = datagram ? transport_->send_datagram(ep, wire::MsgType::RoleMessage, wire::finished(fbb_))
                       : transport_->send(ep, wire::MsgType::RoleMessage, wire::finished(fbb_));
  if (!st.ok()) {
    count_send_error(st, to, datagram);
    return;
  }
  if (datagram) {
    sent_udp_.inc();
    ++stats_.sent_udp;
  } else {
    sent_tcp_.inc();
    ++stats_.sent_tcp;
  }
}

void NetHost::count_send_error(const Status& st, NodeId to, bool datagram) {
  ++stats_.send_errors;
  std::string_view reason = "other";
  switch (st.code()) {
    case Errc::backpressure:
      err_backpressure_.inc();
      reason = "backpressure";
      break;
    case Errc::unavailable:
      err_unavailable_.inc();
      reason = "unavailable";
      break;
    case Errc::invalid_argument:
      err_too_large_.inc();
      reason = "too_large";
      break;
    default:
      err_other_.inc();
      break;
  }
  // At most 5 lines a second; the rest are summarised when the next second starts.
  const std::int64_t sec = reactor_.clock().now().count() / 1'000'000'000;
  if (sec != log_second_) {
    if (suppressed_ > 0)
      log::warn("host", "send_errors_suppressed", "self={} count={}", node_addr_string(self_), suppressed_);
    log_second_ = sec;
    logged_this_second_ = 0;
    suppressed_ = 0;
  }
  if (logged_this_second_ < 5) {
    ++logged_this_second_;
    log::warn("host", "send_failed", "self={} to={} channel={} reason={} error={}", node_addr_string(self_),
              node_addr_string(to), datagram ? "udp" : "tcp", reason, log::quoted(st.to_string()));
  } else {
    ++suppressed_;
  }
}

// ---- timers, sync, disk ----

node::TimerId NetHost::set_timer(Duration after, std::uint64_t tag) {
  if (!running_) return 0;
  const node::TimerId id = next_timer_++;
  std::weak_ptr<NetHost*> weak = alive_;
  auto t = reactor_.after("host.timer", after < Duration{0} ? Duration{0} : after, [weak, id, tag]() -> Status {
    if (auto p = weak.lock(); p && *p) {
      NetHost& h = **p;
      if (h.timers_.erase(id) == 0) return ok_status();
      h.fire_timer(id, tag);
    }
    return ok_status();
  });
  if (!t.ok()) {
    timer_refused_.inc();
    log::error("host", "timer_refused", "self={} tag={} error={}", node_addr_string(self_), tag,
               log::quoted(t.status().to_string()));
    return 0;
  }
  timers_[id] = *t;
  timers_gauge_.set(static_cast<double>(timers_.size() + syncs_.size()));
  return id;
}

void NetHost::fire_timer(node::TimerId id, std::uint64_t tag) {
  timers_gauge_.set(static_cast<double>(timers_.size() + syncs_.size()));
  deliver("timer", [&] { node_.on_timer(*this, id, tag); });
}

void NetHost::cancel_timer(node::TimerId id) {
  if (auto it = timers_.find(id); it != timers_.end()) {
    reactor_.cancel(it->second);
    timers_.erase(it);
  }
  syncs_.erase(id);
  timers_gauge_.set(static_cast<double>(timers_.size() + syncs_.size()));
}

node::Disk& NetHost::disk() { return disk_ != nullptr ? static_cast<node::Disk&>(*disk_) : mem_disk_; }

node::TimerId NetHost::sync(std::uint64_t tag) {
  if (disk_ == nullptr) return set_timer(Duration{0}, tag);
  if (!running_) return 0;
  if (syncs_.size() >= opts_.max_pending_syncs) {
    timer_refused_.inc();
    log::error("host", "sync_refused", "self={} tag={} reason=too_many_pending limit={}", node_addr_string(self_), tag,
               opts_.max_pending_syncs);
    return 0;
  }
  const node::TimerId id = next_timer_++;
  std::weak_ptr<NetHost*> weak = alive_;
  Status st = disk_->when_durable([weak, id, tag]() {
    if (auto p = weak.lock(); p && *p) {
      NetHost& h = **p;
      if (h.syncs_.erase(id) == 0) return;  // cancelled, or the node stopped
      h.fire_timer(id, tag);
    }
  });
  if (!st.ok()) {
    timer_refused_.inc();
    log::error("host", "sync_refused", "self={} tag={} error={}", node_addr_string(self_), tag,
               log::quoted(st.to_string()));
    return 0;
  }
  syncs_.insert(id);
  timers_gauge_.set(static_cast<double>(timers_.size() + syncs_.size()));
  return id;
}

NetHostStats NetHost::stats() const {
  NetHostStats s = stats_;
  s.live_timers = timers_.size();
  s.pending_syncs = syncs_.size();
  return s;
}

}  // namespace hs::host
