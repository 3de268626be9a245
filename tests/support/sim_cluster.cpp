#include "support/sim_cluster.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace hs::swim {

SimCluster::SimCluster(ClusterOptions opts) : opts_(std::move(opts)) {
  sim_ = std::make_unique<sim::Simulator>(opts_.sim);
  std::vector<NodeId> all;
  for (NodeId i = 1; i <= opts_.n; ++i) all.push_back(i);
  std::vector<NodeId> swims = all;
  for (const auto& [id, factory] : opts_.extra_nodes) all.push_back(id);
  for (NodeId id : swims) {
    Status st = sim_->add_node(id, [this, id, all](NodeId) {
      SwimConfig cfg = opts_.cfg;
      if (!opts_.bootstrap_full && cfg.seeds.empty()) cfg.seeds = {1, 2};
      auto s = std::make_unique<Swim>(cfg);
      if (opts_.bootstrap_full) s->bootstrap_confirmed(all);
      Swim* raw = s.get();
      s->on_change = [this, id, raw](const MemberEvent& e) {
        log_.push_back(Observation{sim_->now(), id, e.node, e.incarnation, e.to});
        if (e.to == State::alive || e.to == State::suspect) dead_flag_[{id, e.node}] = false;
        auto& m = max_inc_[id];
        m = std::max(m, raw->incarnation());
      };
      s->on_dead = [this, id](NodeId node, std::uint32_t inc, bool left) {
        deaths_.push_back(Observation{sim_->now(), id, node, inc, left ? State::left : State::dead});
        bool& flag = dead_flag_[{id, node}];
        if (flag && failure_.ok())
          failure_ = make_error(Errc::internal,
                                fmt::format("node {} reported {} dead twice without it coming back", id, node));
        flag = true;
      };
      return s;
    });
    if (!st.ok() && failure_.ok()) failure_ = st;
  }
  for (const auto& [id, factory] : opts_.extra_nodes) {
    Status st = sim_->add_node(id, factory);
    if (!st.ok() && failure_.ok()) failure_ = st;
  }
  if (opts_.check_invariants) sim_->set_invariant([this](sim::Simulator&) { return check(); });
  sim_->start_all();
}

bool SimCluster::is_extra(NodeId id) const {
  return std::any_of(opts_.extra_nodes.begin(), opts_.extra_nodes.end(), [id](const auto& e) { return e.first == id; });
}

Swim* SimCluster::swim(NodeId id) { return is_extra(id) ? nullptr : static_cast<Swim*>(sim_->node(id)); }

std::vector<NodeId> SimCluster::ids() const {
  std::vector<NodeId> out = sim_->node_ids();
  std::erase_if(out, [this](NodeId id) { return is_extra(id); });
  return out;
}

std::uint32_t SimCluster::max_incarnation(NodeId id) const {
  auto it = max_inc_.find(id);
  return it == max_inc_.end() ? 0 : it->second;
}

Status SimCluster::check() {
  if (!failure_.ok()) return failure_;
  for (NodeId id : ids()) {
    Swim* s = swim(id);
    if (!s) continue;
    auto& m = max_inc_[id];
    if (s->incarnation() < m)  // the incarnation survives restarts on the node's disk
      return make_error(Errc::internal,
                        fmt::format("node {} incarnation went back from {} to {}", id, m, s->incarnation()));
    m = std::max(m, s->incarnation());
    const SwimConfig& c = s->config();
    if (s->gossip_buffer_size() > c.max_gossip_buffer)
      return make_error(Errc::internal,
                        fmt::format("node {} gossip buffer {} > {}", id, s->gossip_buffer_size(), c.max_gossip_buffer));
    if (s->relay_count() > c.max_relays)
      return make_error(Errc::internal, fmt::format("node {} relays {} > {}", id, s->relay_count(), c.max_relays));
    std::size_t live = 0;
    for (const MemberInfo& mi : s->members()) live += (mi.state == State::alive || mi.state == State::suspect) ? 1 : 0;
    if (live != s->alive_count())
      return make_error(Errc::internal, fmt::format("node {} live count {} != {}", id, s->alive_count(), live));
    if (s->lhm_score() < 0 || s->lhm_score() > c.lhm_max)
      return make_error(Errc::internal, fmt::format("node {} lhm {} out of range", id, s->lhm_score()));
  }
  // Nobody believes an incarnation that its owner never announced.
  for (NodeId id : ids()) {
    Swim* s = swim(id);
    if (!s) continue;
    for (const MemberInfo& mi : s->members()) {
      auto it = max_inc_.find(mi.node);
      const std::uint32_t real = it == max_inc_.end() ? 0 : it->second;
      if (mi.incarnation > real)
        return make_error(Errc::internal, fmt::format("node {} holds {} at incarnation {} but it never went past {}",
                                                      id, mi.node, mi.incarnation, real));
    }
  }
  return ok_status();
}

bool SimCluster::all_see(NodeId node, State s, const std::vector<NodeId>& except) {
  for (NodeId id : ids()) {
    if (id == node || std::find(except.begin(), except.end(), id) != except.end()) continue;
    Swim* sw = swim(id);
    if (!sw) continue;
    auto m = sw->member(node);
    const bool gone_state = s == State::dead || s == State::left;
    if (!m) {
      if (!gone_state) return false;
      continue;
    }
    if (m->state != s) return false;
  }
  return true;
}

bool SimCluster::converged() {
  for (NodeId a : ids()) {
    Swim* s = swim(a);
    if (!s) continue;
    for (NodeId b : ids()) {
      if (a == b || !sim_->is_up(b)) continue;
      auto m = s->member(b);
      if (!m || m->state != State::alive || !m->confirmed) return false;
    }
  }
  return true;
}

bool SimCluster::run_until(const std::function<bool()>& pred, Duration limit, Duration step) {
  const Instant end = sim_->now() + limit;
  while (sim_->now() < end) {
    if (pred()) return true;
    Status st = sim_->run_for(step);
    if (!st.ok()) {
      if (failure_.ok()) failure_ = st;
      return false;
    }
  }
  return pred();
}

}  // namespace hs::swim
