// Scripted faults shared by the cluster simulations: from `from` until `end`, one fault every
// `min_gap` + up to `jitter`, on a member drawn at random: crash (or restart if down), partition it
// from the others, heal every link, or (with with_skew) offset its clock by up to 200 ms.
#pragma once

#include <chrono>
#include <vector>

#include "hyperscale/sim/simulator.hpp"

namespace hs::simtest {

inline void schedule_faults(sim::Simulator& sim, const std::vector<node::NodeId>& ids, Rng& rng, Instant from,
                            Instant end, std::chrono::milliseconds min_gap, std::uint64_t jitter_ms, bool with_skew) {
  const std::uint64_t kinds = with_skew ? 4 : 3;
  for (Instant t = from; t < end; t += min_gap + std::chrono::milliseconds(rng.below(jitter_ms))) {
    const node::NodeId victim = ids[rng.below(ids.size())];
    const int kind = static_cast<int>(rng.below(kinds));
    sim.at(t, [ids, victim, kind](sim::Simulator& s) {
      if (kind == 0) {
        if (s.is_up(victim)) {
          (void)s.crash(victim);  // refused only for an unknown id: the ids are the simulation's own
        } else {
          (void)s.restart(victim);
        }
      } else if (kind == 1) {
        std::vector<node::NodeId> rest;
        for (auto id : ids) {
          if (id != victim) rest.push_back(id);
        }
        s.partition({victim}, rest);
      } else if (kind == 2) {
        s.heal();
      } else {
        (void)s.set_clock_skew(victim, std::chrono::milliseconds(static_cast<int>(s.rng().below(200))), 1.0);
      }
    });
  }
}

}  // namespace hs::simtest
