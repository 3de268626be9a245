#include "world.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>

#include "hyperscale/base/assert.hpp"

namespace hs::simgate {

using namespace cluster;

gate::GateConfig test_gate_config() {
  gate::GateConfig c;
  c.tick = 100ms;
  c.dc_stale = 2s;
  c.dc_grace = 4s;
  c.poll = 300ms;
  c.request_timeout = 500ms;
  c.cancel_timeout = 4s;
  c.checkpoint_every = 1s;
  c.timeout_slack = 2s;
  c.member_grace = 3s;
  return c;
}

namespace {
swim::SwimConfig gate_swim(const std::vector<NodeId>& gates) {
  swim::SwimConfig c;
  c.seeds = gates;  // Swim skips itself among its seeds
  return c;
}
}  // namespace

GateNode::GateNode(gate::GateConfig cfg, RaftConfig raft) : swim(gate_swim(cfg.gates)), gate(cfg, std::move(raft)) {
  gate.set_member_view([this](NodeId n) {
    auto m = swim.member(n);
    return m && m->state == swim::State::alive && m->confirmed;
  });
  mux.add(kSwim, &swim);
  mux.add(kRole, &gate);
  mux.add(kRaft, &gate.raft());
}

void GateNode::after_event(node::Context& ctx) {
  for (auto& [to, msg] : outbox) ctx.send(to, std::move(msg));
  outbox.clear();
  if (!hand_off_requested || handed_off) return;
  if (last_hand_off_.count() >= 0 && ctx.now() - last_hand_off_ < 200ms) return;
  last_hand_off_ = ctx.now();
  mux.run(ctx, [this] { handed_off = gate.hand_off(); });
}

World::World(WorldOptions o) : o_(std::move(o)) {
  sim::SimOptions so;
  so.seed = o_.seed;
  so.net = o_.net;
  sim_ = std::make_unique<sim::Simulator>(so);
  sim_->set_channel_of(sim::Simulator::mux_channel);
  for (int g = 0; g < o_.gates; ++g) gates_.push_back(static_cast<NodeId>(g + 1));
  for (int d = 0; d < o_.dcs; ++d) {
    DcNodes dc;
    dc.name = fmt::format("dc-{}", static_cast<char>('a' + d));
    const NodeId base = static_cast<NodeId>(100 * (d + 1));
    for (int m = 0; m < o_.managers; ++m) dc.managers.push_back(base + static_cast<NodeId>(m + 1));
    for (int w = 0; w < o_.workers; ++w) dc.workers.push_back(base + static_cast<NodeId>(w + 50));
    dc.all = dc.managers;
    dc.all.insert(dc.all.end(), dc.workers.begin(), dc.workers.end());
    dc.opts = std::make_unique<simdc::DcOptions>();
    auto& opts = *dc.opts;
    opts.seed = o_.seed;
    opts.managers = o_.managers;
    opts.workers = o_.workers;
    opts.cores = o_.cores;
    opts.check_each_event = false;
    opts.net = o_.net;
    opts.tune_manager = [name = dc.name, gates = gates_, tune = o_.tune_manager](manager::ManagerConfig& c) {
      c.datacenter = name;
      c.gates = gates;
      if (tune) tune(c);
    };
    opts.tune_worker = o_.tune_worker;
    dcs_.push_back(std::move(dc));
  }
  const gate::GateConfig gc = gate_cfg();
  for (NodeId g : gates_)
    (void)sim_->add_node(g, [gc, gates = gates_](NodeId) {
      RaftConfig r;
      r.voters = gates;
      r.storage_name = "gate-raft";
      return std::make_unique<GateNode>(gc, std::move(r));
    });
  for (auto& dc : dcs_) {
    const simdc::DcOptions* opts = dc.opts.get();
    for (NodeId m : dc.managers)
      (void)sim_->add_node(m, [opts, ms = dc.managers, all = dc.all](NodeId id) {
        return std::make_unique<simdc::ManagerNode>(*opts, id, ms, all);
      });
    const std::size_t index = static_cast<std::size_t>(&dc - dcs_.data());
    for (NodeId w : dc.workers)
      (void)sim_->add_node(w, [opts, ms = dc.managers, all = dc.all, index, plan = o_.plan_in_dc](NodeId id) {
        auto n = std::make_unique<simdc::WorkerNode>(*opts, id, ms, all);
        if (plan)
          n->exec.plan_override = [index, plan](const worker::ExecSpec& spec) {
            std::string p = plan(index, spec);
            return p.empty() ? std::string(spec.plan.begin(), spec.plan.end()) : p;
          };
        return n;
      });
  }
  client_ = 9000;
  (void)sim_->add_node(client_, [](NodeId) { return std::make_unique<simdc::SimClient>(); });
  auto watch = sim_->add_filter([this](NodeId from, NodeId to, const node::Bytes& msg) {
    observe(from, to, msg);
    return false;
  });
  HS_ASSERT(watch.ok(), "world: cannot install the reply watch: {}", watch.status().to_string());
  if (o_.check_each_event) {
    const Status st = sim_->add_invariant("gate tier", [this](sim::Simulator&) { return check_now(); });
    HS_ASSERT(st.ok(), "world: cannot add the invariant: {}", st.to_string());
  }
  sim_->start_all();
}

gate::GateConfig World::gate_cfg() const {
  gate::GateConfig c = test_gate_config();
  c.gates = gates_;
  for (const auto& d : dcs_) c.datacenters.push_back(gate::DatacenterConfig{d.name, d.managers});
  if (o_.tune_gate) o_.tune_gate(c);
  return c;
}

std::size_t World::dc_index(const std::string& name) const {
  for (std::size_t d = 0; d < dcs_.size(); ++d)
    if (dcs_[d].name == name) return d;
  HS_ASSERT(false, "world: no datacenter {}", name);
  return 0;
}

std::vector<NodeId> World::dc_nodes(std::size_t d) const { return dcs_.at(d).all; }

simdc::SimClient& World::client() { return *static_cast<simdc::SimClient*>(sim_->node(client_)); }
GateNode* World::gate(NodeId id) { return static_cast<GateNode*>(sim_->node(id)); }
simdc::ManagerNode* World::mgr(NodeId id) { return static_cast<simdc::ManagerNode*>(sim_->node(id)); }
simdc::WorkerNode* World::wrk(NodeId id) { return static_cast<simdc::WorkerNode*>(sim_->node(id)); }

std::optional<NodeId> World::gate_leader() {
  std::optional<NodeId> found;
  for (NodeId g : gates_) {
    auto* n = gate(g);
    if (n == nullptr || !n->gate.is_leader()) continue;
    if (found) return std::nullopt;
    found = g;
  }
  return found;
}

std::optional<NodeId> World::dc_leader(std::size_t d) {
  std::optional<NodeId> found;
  for (NodeId m : dcs_.at(d).managers) {
    auto* n = mgr(m);
    if (n == nullptr || !n->mgr.is_leader()) continue;
    if (found) return std::nullopt;
    found = m;
  }
  return found;
}

bool World::ready() {
  if (!gate_leader()) return false;
  for (std::size_t d = 0; d < dcs_.size(); ++d) {
    const auto l = dc_leader(d);
    if (!l) return false;
    if (mgr(*l)->mgr.node_status().healthy_worker_count != dcs_[d].workers.size()) return false;
  }
  for (NodeId g : gates_) {
    auto* n = gate(g);
    if (n == nullptr) continue;
    for (const auto& st : n->gate.datacenters())
      if (st.state != DcState::ready || st.health != DcHealth::healthy ||
          st.healthy_worker_count != dcs_[dc_index(st.name)].workers.size())
        return false;
  }
  return true;
}

bool World::boot(Duration limit) {
  return run_until([&] { return ready(); }, limit);
}

bool World::run_until(const std::function<bool()>& pred, Duration limit) {
  const Instant end = sim_->now() + limit;
  while (sim_->now() < end) {
    if (!failure_.ok()) return false;
    if (pred()) return true;
    Status st = sim_->run_for(50ms);
    if (!st.ok()) {
      failure_ = st;
      return false;
    }
  }
  return failure_.ok() && pred();
}

void World::run_for(Duration d) {
  if (!failure_.ok()) return;
  Status st = sim_->run_for(d);
  if (!st.ok()) failure_ = st;
}

// ---------------------------------------------------------------- client helpers

SubmitResult World::submit(JobSpec spec, NodeId first, Duration limit) {
  SubmitResult res;
  const Instant end = sim_->now() + limit;
  auto any_gate = [&](NodeId after) {
    const auto it = std::find(gates_.begin(), gates_.end(), after);
    std::size_t i = it == gates_.end() ? 0 : static_cast<std::size_t>(it - gates_.begin()) + 1;
    for (std::size_t k = 0; k < gates_.size(); ++k, ++i)
      if (up(gates_[i % gates_.size()])) return gates_[i % gates_.size()];
    return gates_.front();
  };
  NodeId target = first != 0 ? first : gate_leader().value_or(any_gate(0));
  int hops = 0;
  while (sim_->now() < end && res.attempts < 40 && failure_.ok()) {
    ++res.attempts;
    const std::uint64_t req = client().submit(target, spec);
    const simdc::SimClient::Reply* r = nullptr;
    run_until([&] { return (r = client().reply(req)) != nullptr; }, std::min<Duration>(2s, end - sim_->now()));
    if (r == nullptr) {  // lost (or the gate is down): again with the same key, to another gate
      target = gate_leader().value_or(any_gate(target));
      hops = 0;
      continue;
    }
    res.ack = r->submit;
    if (r->submit.accepted || !retryable(r->submit.code)) return res;
    if (r->submit.code == Err::not_leader && r->submit.leader != 0 && hops < 3) {
      target = r->submit.leader;
      ++hops;
      ++res.redirects;
      continue;
    }
    run_for(std::chrono::milliseconds(std::max<std::uint32_t>(r->submit.retry_after_ms, 200)));
    target = gate_leader().value_or(any_gate(target));
    hops = 0;
  }
  return res;
}

std::optional<StatusReply> World::status_of(const std::string& job, NodeId at, Duration limit) {
  NodeId target = at;
  if (target == 0) target = gate_leader().value_or(0);
  for (NodeId g : gates_)
    if (target == 0 && up(g)) target = g;
  if (target == 0) return std::nullopt;
  const std::uint64_t req = client().status(target, job);
  const simdc::SimClient::Reply* r = nullptr;
  if (!run_until([&] { return (r = client().reply(req)) != nullptr; }, limit)) return std::nullopt;
  return r->status;
}

std::optional<CancelReply> World::cancel(const std::string& job, std::uint64_t fence, NodeId at, Duration limit) {
  NodeId target = at;
  if (target == 0) target = gate_leader().value_or(gates_.front());
  for (int hop = 0; hop < 2; ++hop) {
    const std::uint64_t req = client().cancel(target, job, fence);
    const simdc::SimClient::Reply* r = nullptr;
    if (!run_until([&] { return (r = client().reply(req)) != nullptr; }, limit)) return std::nullopt;
    if (r->cancel.code == Err::not_leader && r->cancel.leader != 0 && hop == 0) {
      target = r->cancel.leader;
      continue;
    }
    return r->cancel;
  }
  return std::nullopt;
}

std::optional<JobView> World::view(const std::string& job) {
  if (auto l = gate_leader())
    if (auto v = gate(*l)->gate.job(job)) return v;
  for (NodeId g : gates_)
    if (auto* n = gate(g))
      if (auto v = n->gate.job(job)) return v;
  return std::nullopt;
}

std::optional<JobView> World::finish(const std::string& job, Duration limit) {
  const bool ok = run_until(
      [&] {
        bool any = false;
        for (NodeId g : gates_) {
          auto* n = gate(g);
          if (n == nullptr) continue;
          auto v = n->gate.job(job);
          if (!v || !terminal(v->state)) return false;
          for (const auto& d : v->datacenters)
            if (!terminal(d.state)) return false;
          any = true;
        }
        return any;
      },
      limit);
  if (!ok) return std::nullopt;
  return view(job);
}

std::optional<JobView> World::dc_view(std::size_t d, const std::string& job) {
  for (NodeId m : dcs_.at(d).managers)
    if (auto* n = mgr(m); n != nullptr && n->mgr.leads(job)) return n->mgr.job(job);
  for (NodeId m : dcs_.at(d).managers)
    if (auto* n = mgr(m))
      if (auto v = n->mgr.job(job)) return v;
  return std::nullopt;
}

std::size_t World::running_in(std::size_t d, const std::string& job) {
  std::size_t n = 0;
  for (NodeId w : dcs_.at(d).workers)
    if (auto* node = wrk(w))
      for (const auto& e : node->wrk.live()) n += e.job_id == job ? 1 : 0;
  return n;
}

std::size_t World::starts(std::size_t d, const std::string& job, const std::string& w) {
  std::size_t n = 0;
  for (NodeId id : dcs_.at(d).workers)
    if (auto* node = wrk(id))
      for (const auto& e : node->wrk.log())
        if (e.kind == worker::ExecEvent::started && e.job_id == job && e.workflow == w) ++n;
  return n;
}

// ---------------------------------------------------------------- faults

void World::kill(NodeId id) {
  if (!sim_->is_up(id)) return;
  (void)sim_->crash(id);
  applied_seen_.erase(id);
  for (auto it = fence_seen_.begin(); it != fence_seen_.end();)  // replayed from its WAL on restart
    it = it->first.first == id ? fence_seen_.erase(it) : std::next(it);
}

void World::restart(NodeId id) {
  if (sim_->is_up(id)) return;
  (void)sim_->restart(id);
}

void World::kill_dc_managers(std::size_t d) {
  for (NodeId m : dcs_.at(d).managers) kill(m);
}
void World::restart_dc_managers(std::size_t d) {
  for (NodeId m : dcs_.at(d).managers) restart(m);
}

void World::partition_gates(const std::vector<NodeId>& side) {
  std::vector<NodeId> rest;
  for (NodeId g : gates_)
    if (std::find(side.begin(), side.end(), g) == side.end()) rest.push_back(g);
  sim_->partition(side, rest);
}

void World::isolate_dc(std::size_t d) {
  std::vector<NodeId> others = gates_;
  for (std::size_t x = 0; x < dcs_.size(); ++x)
    if (x != d) others.insert(others.end(), dcs_[x].all.begin(), dcs_[x].all.end());
  sim_->partition(dcs_.at(d).all, others);
}

void World::delay_dc(std::size_t d, Duration extra) {
  const Status st = sim_->set_group_delay(dcs_.at(d).all, gates_, extra);
  HS_ASSERT(st.ok(), "world: delay_dc: {}", st.to_string());
}

// ---------------------------------------------------------------- invariants

void World::observe(NodeId from, NodeId to, const node::Bytes& msg) {
  if (to != client_ || msg.size() < 2 || msg[0] != kRole) return;
  if (std::find(gates_.begin(), gates_.end(), from) == gates_.end()) return;
  if (msg[1] != static_cast<std::uint8_t>(MsgType::status_reply)) return;
  StatusReply r;
  if (!decode(std::span<const std::uint8_t>(msg).subspan(2), r) || !r.found) return;
  const std::string& id = r.job.job_id;
  // A follower answers from its applied ledger, whose counts are the owner's last checkpoint: it
  // may show less than the leader showed (see the report). The leader's answers, across leaders,
  // never go down; the final totals are at least anything any gate showed.
  auto* g = gate(from);
  const bool leader = g != nullptr && g->gate.is_leader();
  auto& led = shown_[id];
  auto& any = shown_max_[id];
  const bool strict = std::getenv("HS_GATE_STRICT") != nullptr;
  if ((leader || strict) && r.job.completed < (strict ? any : led))
    violations_.push_back(fmt::format("invariant 2: gate {} ({}) showed job {} {} with {} completed after {} was shown",
                                      from, leader ? "leader" : "follower", id, name(r.job.state), r.job.completed,
                                      strict ? any : led));
  if (terminal(r.job.state) && r.job.completed < any)
    violations_.push_back(fmt::format("invariant 2: gate {} showed job {} {} with {} completed; {} was shown before",
                                      from, id, name(r.job.state), r.job.completed, any));
  if (leader) led = std::max(led, r.job.completed);
  any = std::max(any, r.job.completed);
}

Status World::check_now() {
  if (!violations_.empty()) return make_error(Errc::internal, violations_.front());
  // Invariant 8: at most one ready gate leader per term.
  for (NodeId g : gates_) {
    auto* n = gate(g);
    if (n == nullptr || !n->gate.is_leader()) continue;
    auto [it, fresh] = term_leader_.emplace(n->gate.raft().term(), g);
    if (!fresh && it->second != g)
      return make_error(Errc::internal, fmt::format("invariant 8: gates {} and {} both led term {}", it->second, g,
                                                    n->gate.raft().term()));
    if (last_leader_ != g) {
      last_leader_ = g;
      ++gate_leader_changes;
    }
  }
  // Invariants 2 and 9 on every gate's ledger, whenever it applied something.
  auto* c = static_cast<simdc::SimClient*>(sim_->node(client_));
  for (NodeId g : gates_) {
    auto* n = gate(g);
    if (n == nullptr) continue;
    const std::uint64_t applied = n->gate.raft().last_applied();
    auto& seen = applied_seen_[g];
    if (applied == seen) continue;
    seen = applied;
    for (const auto& [id, j] : n->gate.ledger().jobs()) {
      auto [fo, first] = fence_owner_.emplace(std::make_pair(id, j.fence), j.owner);
      if (!first && fo->second != j.owner)
        return make_error(Errc::internal, fmt::format("ownership: job {} has owners {} and {} at fence {} (gate {})",
                                                      id, fo->second, j.owner, j.fence, g));
      auto& highest = fence_seen_[{g, id}];
      if (j.fence < highest)
        return make_error(Errc::internal, fmt::format("ownership: job {}'s fence went down on gate {}: {} after {}", id,
                                                      g, j.fence, highest));
      highest = j.fence;
      if (!terminal(j.state)) continue;
      auto [it, fresh] = terminal_.emplace(id, j.state);
      if (!fresh && it->second != j.state)
        return make_error(Errc::internal, fmt::format("invariant 2: job {} ended {} and is {} on gate {}", id,
                                                      name(it->second), name(j.state), g));
      if (j.state == JobState::completed && c != nullptr && c->cancel_acks.count(id) != 0)
        return make_error(
            Errc::internal,
            fmt::format("invariant 9: job {} completed on gate {} after its cancel was acknowledged", id, g));
    }
  }
  // Invariant 3: one job per idempotency key over every submit ack.
  if (c != nullptr) {
    for (; acks_seen_ < c->acks.size(); ++acks_seen_) {
      const auto& [key, ack] = c->acks[acks_seen_];
      if (!ack.accepted || key.empty()) continue;
      auto [it, fresh] = key_job_.emplace(key, ack.job_id);
      if (!fresh && it->second != ack.job_id)
        return make_error(Errc::internal,
                          fmt::format("invariant 3: key {} named jobs {} and {}", key, it->second, ack.job_id));
    }
  }
  return ok_status();
}

Status World::end_checks(Duration limit, bool retired_ok) {
  if (!failure_.ok()) return failure_;
  std::set<std::string> acked;
  for (const auto& [key, ack] : client().acks)
    if (ack.accepted) acked.insert(ack.job_id);
  std::string missing;
  const bool all_terminal = run_until(
      [&] {
        for (const auto& id : acked)
          for (NodeId g : gates_) {
            auto* n = gate(g);
            if (n == nullptr) continue;
            const gate::GateJob* j = n->gate.ledger().job(id);
            if (j == nullptr && retired_ok && terminal_.count(id) != 0) continue;  // retired after it ended
            if (j == nullptr || !terminal(j->state)) {
              missing = fmt::format("job {} on gate {}: {}", id, g, j == nullptr ? "missing" : name(j->state));
              return false;
            }
          }
        return true;
      },
      limit);
  if (!failure_.ok()) return failure_;
  if (!all_terminal)
    return make_error(Errc::internal, fmt::format("invariant 1: not every acked job ended: {}", missing));
  std::string busy;
  const bool idle = run_until(
      [&] {
        for (const auto& d : dcs_)
          for (NodeId w : d.workers) {
            auto* n = wrk(w);
            if (n == nullptr) continue;
            if (!n->wrk.live().empty() || n->wrk.used_cores() != 0) {
              busy = fmt::format("worker {} of {}: {} executions, {} cores used", w, d.name, n->wrk.live().size(),
                                 n->wrk.used_cores());
              return false;
            }
          }
        return true;
      },
      30s);
  if (!failure_.ok()) return failure_;
  if (!idle) return make_error(Errc::internal, fmt::format("invariant 7: a worker is still busy: {}", busy));
  return ok_status();
}

}  // namespace hs::simgate
