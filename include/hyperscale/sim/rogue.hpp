// Rogue nodes: a simulated node that sends forged messages on a schedule (random bytes, or messages
// a test builds, including replays of what it heard). On a sealed transport a node cannot claim
// another node's id, so a rogue sends as itself: the receiver sees `from` = the rogue's id.
//
//   sim::RogueOptions o;
//   o.every = 50ms;
//   o.prefix = cluster::kSwim;  // default forge: the channel byte, then 1..max_bytes random bytes
//   REQUIRE(sim::add_rogue(sim, 99, o).ok());
//   sim.at(Instant{5s}, [](sim::Simulator& s) { (void)s.start(99); });
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <vector>

#include "hyperscale/sim/simulator.hpp"

namespace hs::sim {

struct RogueOptions {
  std::vector<NodeId> targets;                      // empty: every other node of the simulator, at each tick
  Duration every = std::chrono::milliseconds(100);  // one tick per interval, the first `every` after start
  std::uint32_t per_tick = 1;                       // messages per target per tick
  Instant until = Instant::max();                   // no tick after this time (the rogue's clock)
  std::size_t max_bytes = 256;                      // default forge: 1..max_bytes random bytes
  std::optional<std::uint8_t> prefix;               // default forge: this byte first (e.g. a cluster::Mux channel)
  std::size_t max_heard = 64;                       // received messages kept for replays (oldest dropped)
  // Builds the n-th message (n counts from 0 over the rogue's life) for `to`; `heard` holds the last
  // messages the rogue received, newest last. nullopt: nothing is sent this time. Empty: the default.
  using Forge =
      std::function<std::optional<Bytes>(Rng& rng, NodeId to, std::uint64_t n, const std::deque<Bytes>& heard)>;
  Forge forge;
};

class RogueNode final : public Node {
 public:
  RogueNode(RogueOptions o, std::function<std::vector<NodeId>()> everyone)
      : o_(std::move(o)), everyone_(std::move(everyone)) {}
  void on_start(Context& ctx) override;
  void on_message(Context& ctx, NodeId from, std::span<const std::uint8_t> msg) override;
  void on_timer(Context& ctx, TimerId id, std::uint64_t tag) override;
  std::uint64_t sent() const noexcept { return n_; }
  std::uint64_t heard() const noexcept { return heard_total_; }

 private:
  Bytes random_message(Rng& rng) const;
  RogueOptions o_;
  std::function<std::vector<NodeId>()> everyone_;
  std::deque<Bytes> heard_;
  std::uint64_t heard_total_ = 0;
  std::uint64_t n_ = 0;
};

// Adds a rogue node `id` to `sim` (not started: start it with start / start_all / at). Bad options
// (every <= 0, max_bytes == 0 with the default forge) get Errc::invalid_argument and add nothing.
Status add_rogue(Simulator& sim, NodeId id, RogueOptions o);

}  // namespace hs::sim
