#include "hyperscale/sim/rogue.hpp"

#include <fmt/format.h>

namespace hs::sim {

void RogueNode::on_start(Context& ctx) { ctx.set_timer(o_.every, 0); }

void RogueNode::on_message(Context&, NodeId, std::span<const std::uint8_t> msg) {
  heard_total_++;
  if (o_.max_heard == 0) return;
  if (heard_.size() >= o_.max_heard) heard_.pop_front();
  heard_.emplace_back(msg.begin(), msg.end());
}

Bytes RogueNode::random_message(Rng& rng) const {
  Bytes m;
  if (o_.prefix) m.push_back(*o_.prefix);
  const std::size_t len = static_cast<std::size_t>(rng.range(1, static_cast<std::int64_t>(o_.max_bytes)));
  for (std::size_t i = 0; i < len; ++i) m.push_back(static_cast<std::uint8_t>(rng.next_u32()));
  return m;
}

void RogueNode::on_timer(Context& ctx, TimerId, std::uint64_t) {
  if (ctx.now() > o_.until) return;
  const std::vector<NodeId> targets = o_.targets.empty() ? everyone_() : o_.targets;
  for (NodeId to : targets) {
    if (to == ctx.self()) continue;
    for (std::uint32_t i = 0; i < o_.per_tick; ++i) {
      std::optional<Bytes> m = o_.forge ? o_.forge(ctx.rng(), to, n_, heard_) : random_message(ctx.rng());
      n_++;
      if (m) ctx.send(to, std::move(*m));
    }
  }
  ctx.set_timer(o_.every, 0);
}

Status add_rogue(Simulator& sim, NodeId id, RogueOptions o) {
  if (o.every <= Duration{0})
    return make_error(Errc::invalid_argument, fmt::format("sim: rogue {}: every must be > 0", id));
  if (!o.forge && o.max_bytes == 0)
    return make_error(Errc::invalid_argument, fmt::format("sim: rogue {}: max_bytes must be > 0", id));
  Simulator* s = &sim;
  return sim.add_node(
      id, [o = std::move(o), s](NodeId) { return std::make_unique<RogueNode>(o, [s] { return s->node_ids(); }); });
}

}  // namespace hs::sim
