// One process = one node::Node built from components (SWIM, election, manager role, worker role,
// executor, ...). The Mux is that node: it gives each component its own node::Context whose sends
// carry a one-byte channel prefix and whose timers are routed back to the component that set them.
// Components are ordinary node::Nodes, so each one runs alone in tests too.
//
// Channel bytes on the wire: kSwim = 1 (UDP on real hosts), everything else goes over the reliable
// channel (TCP). A message for a channel with no component is counted (unrouted()) and dropped.
//
// Stable contexts: the per-component Context objects live as long as the Mux, so a component may
// keep a pointer to its Context and use it from a call made during any event of this node (for
// example when the host reports an execution result through Mux::run).
//
// Traffic counters: per channel, the messages and bytes the components sent and the messages and
// bytes routed to them (bytes as the host carries them: the channel byte included, the transport's
// framing not). A fixed array of kMaxChannel entries; a message for no component counts only in
// unrouted().
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "hyperscale/node/node.hpp"

namespace hs::cluster {

using node::Bytes;
using node::NodeId;

enum Channel : std::uint8_t { kSwim = 1, kRaft = 2, kRole = 3, kExec = 4, kMaxChannel = 8 };
// "swim", "raft", "role", "exec", or "chN" for another channel number (a metrics label).
std::string channel_name(Channel ch);

struct ChannelTraffic {
  std::uint64_t msgs_sent = 0, bytes_sent = 0;
  std::uint64_t msgs_received = 0, bytes_received = 0;
};

class Mux final : public node::Node {
 public:
  Mux();
  ~Mux() override;
  Mux(const Mux&) = delete;
  Mux& operator=(const Mux&) = delete;

  // Registers a component (not owned) on a channel. Components start in registration order.
  void add(Channel ch, node::Node* component);
  // Runs fn inside an event of this node that did not come through on_* (host callbacks): the
  // components' contexts are bound to `outer` for the duration of the call.
  void run(node::Context& outer, const std::function<void()>& fn);
  // The context a component on `ch` sees (valid for the Mux's lifetime; usable during an event).
  node::Context& context(Channel ch);

  void on_start(node::Context& ctx) override;
  void on_message(node::Context& ctx, NodeId from, std::span<const std::uint8_t> msg) override;
  void on_timer(node::Context& ctx, node::TimerId id, std::uint64_t tag) override;

  std::uint64_t unrouted() const noexcept { return unrouted_; }
  std::size_t live_timers() const noexcept { return timers_.size(); }
  std::size_t live_timers(Channel ch) const noexcept {
    std::size_t n = 0;
    for (const auto& [id, c] : timers_) n += c == ch ? 1 : 0;
    return n;
  }
  // Channels with a component, in registration order, and each one's traffic since construction.
  const std::vector<Channel>& channels() const noexcept { return order_; }
  const ChannelTraffic& traffic(Channel ch) const;

 private:
  class Port;
  struct Bind;
  std::array<node::Node*, kMaxChannel> nodes_{};
  std::array<std::unique_ptr<Port>, kMaxChannel> ports_{};
  std::vector<Channel> order_;
  std::unordered_map<node::TimerId, Channel> timers_;  // live timers only: erased on fire and cancel
  node::Context* outer_ = nullptr;
  std::uint64_t unrouted_ = 0;
  std::array<ChannelTraffic, kMaxChannel> traffic_{};
};

}  // namespace hs::cluster
