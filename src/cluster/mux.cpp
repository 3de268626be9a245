#include "hyperscale/cluster/mux.hpp"

#include <stdexcept>

#include "hyperscale/base/log.hpp"

namespace hs::cluster {

class Mux::Port final : public node::Context {
 public:
  Port(Mux& mux, Channel ch) : mux_(mux), ch_(ch) {}
  NodeId self() const override { return outer().self(); }
  const Clock& clock() const override { return outer().clock(); }
  std::uint64_t wall_ms() const override { return outer().wall_ms(); }
  Rng& rng() override { return outer().rng(); }
  void send(NodeId to, Bytes msg) override {
    msg.insert(msg.begin(), static_cast<std::uint8_t>(ch_));
    node::Context& out = outer();
    auto& t = mux_.traffic_[ch_];
    ++t.msgs_sent;
    t.bytes_sent += msg.size();
    out.send(to, std::move(msg));
  }
  node::TimerId set_timer(Duration after, std::uint64_t tag) override {
    const node::TimerId id = outer().set_timer(after, tag);
    if (id != 0) mux_.timers_[id] = ch_;
    return id;
  }
  void cancel_timer(node::TimerId id) override {
    mux_.timers_.erase(id);
    outer().cancel_timer(id);
  }
  node::Disk& disk() override { return outer().disk(); }
  node::TimerId sync(std::uint64_t tag) override {
    const node::TimerId id = outer().sync(tag);
    if (id != 0) mux_.timers_[id] = ch_;
    return id;
  }

 private:
  node::Context& outer() const {
    if (mux_.outer_ == nullptr) throw std::logic_error("cluster::Mux: context used outside an event of its node");
    return *mux_.outer_;
  }
  Mux& mux_;
  Channel ch_;
};

// Binds the outer context for one event; restores the previous binding (events may nest through run()).
struct Mux::Bind {
  Bind(Mux& m, node::Context& ctx) : m_(m), prev_(m.outer_) { m.outer_ = &ctx; }
  ~Bind() { m_.outer_ = prev_; }
  Mux& m_;
  node::Context* prev_;
};

std::string channel_name(Channel ch) {
  switch (ch) {
    case kSwim:
      return "swim";
    case kRaft:
      return "raft";
    case kRole:
      return "role";
    case kExec:
      return "exec";
    default:
      return "ch" + std::to_string(static_cast<int>(ch));
  }
}

Mux::Mux() = default;
Mux::~Mux() = default;

void Mux::add(Channel ch, node::Node* component) {
  if (ch == 0 || ch >= kMaxChannel || component == nullptr || nodes_[ch] != nullptr)
    throw std::invalid_argument("cluster::Mux::add: bad or duplicate channel");
  nodes_[ch] = component;
  ports_[ch] = std::make_unique<Port>(*this, ch);
  order_.push_back(ch);
}

const ChannelTraffic& Mux::traffic(Channel ch) const {
  if (ch >= kMaxChannel) throw std::invalid_argument("cluster::Mux::traffic: no such channel");
  return traffic_[ch];
}

node::Context& Mux::context(Channel ch) {
  if (ch >= kMaxChannel || !ports_[ch]) throw std::invalid_argument("cluster::Mux::context: no such channel");
  return *ports_[ch];
}

void Mux::run(node::Context& outer, const std::function<void()>& fn) {
  Bind b(*this, outer);
  fn();
}

void Mux::on_start(node::Context& ctx) {
  Bind b(*this, ctx);
  for (Channel ch : order_) nodes_[ch]->on_start(*ports_[ch]);
}

void Mux::on_message(node::Context& ctx, NodeId from, std::span<const std::uint8_t> msg) {
  if (msg.empty() || msg[0] >= kMaxChannel || nodes_[msg[0]] == nullptr) {
    ++unrouted_;
    log::warn("mux", "unrouted_message", "from={} channel={} bytes={}", from, msg.empty() ? -1 : int(msg[0]),
              msg.size());
    return;
  }
  Bind b(*this, ctx);
  const Channel ch = static_cast<Channel>(msg[0]);
  ++traffic_[ch].msgs_received;
  traffic_[ch].bytes_received += msg.size();
  nodes_[ch]->on_message(*ports_[ch], from, msg.subspan(1));
}

void Mux::on_timer(node::Context& ctx, node::TimerId id, std::uint64_t tag) {
  auto it = timers_.find(id);
  if (it == timers_.end()) return;  // cancelled after it was queued
  const Channel ch = it->second;
  timers_.erase(it);
  Bind b(*this, ctx);
  nodes_[ch]->on_timer(*ports_[ch], id, tag);
}

}  // namespace hs::cluster
