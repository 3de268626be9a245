// One process = one sim::Node built from components (SWIM, election, manager role, worker role,
// executor, ...). The Mux is that node: it gives each component its own sim::Context whose sends
// carry a one-byte channel prefix and whose timers are routed back to the component that set them.
// Components are ordinary sim::Nodes, so each one runs alone in tests too.
//
// Channel bytes on the wire: kSwim = 1 (UDP on real hosts), everything else goes over the reliable
// channel (TCP). A message for a channel with no component is counted (unrouted()) and dropped.
//
// Stable contexts: the per-component Context objects live as long as the Mux, so a component may
// keep a pointer to its Context and use it from a call made during any event of this node (for
// example when the host reports an execution result through Mux::run).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>

#include "hyperscale/sim/node.hpp"

namespace hs::cluster {

using sim::Bytes;
using sim::NodeId;

enum Channel : std::uint8_t { kSwim = 1, kElection = 2, kRole = 3, kExec = 4, kMaxChannel = 8 };

class Mux final : public sim::Node {
 public:
  Mux();
  ~Mux() override;
  Mux(const Mux&) = delete;
  Mux& operator=(const Mux&) = delete;

  // Registers a component (not owned) on a channel. Components start in registration order.
  void add(Channel ch, sim::Node* component);
  // Runs fn inside an event of this node that did not come through on_* (host callbacks): the
  // components' contexts are bound to `outer` for the duration of the call.
  void run(sim::Context& outer, const std::function<void()>& fn);
  // The context a component on `ch` sees (valid for the Mux's lifetime; usable during an event).
  sim::Context& context(Channel ch);

  void on_start(sim::Context& ctx) override;
  void on_message(sim::Context& ctx, NodeId from, std::span<const std::uint8_t> msg) override;
  void on_timer(sim::Context& ctx, sim::TimerId id, std::uint64_t tag) override;

  std::uint64_t unrouted() const noexcept { return unrouted_; }
  std::size_t live_timers() const noexcept { return timers_.size(); }

 private:
  class Port;
  struct Bind;
  std::array<sim::Node*, kMaxChannel> nodes_{};
  std::array<std::unique_ptr<Port>, kMaxChannel> ports_{};
  std::vector<Channel> order_;
  std::unordered_map<sim::TimerId, Channel> timers_;  // live timers only: erased on fire and cancel
  sim::Context* outer_ = nullptr;
  std::uint64_t unrouted_ = 0;
};

}  // namespace hs::cluster
