#include "dc.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "hyperscale/base/assert.hpp"
#include "hyperscale/cluster/ledger.hpp"
#include "hyperscale/sim/faulty_disk.hpp"

namespace hs::simdc {

using namespace cluster;

cluster::JobSpec job(const std::string& id, std::vector<cluster::WorkflowSpec> wfs) {
  JobSpec s;
  s.job_id = id;
  s.idempotency_key = "key-" + id;
  s.workflows = std::move(wfs);
  return s;
}

cluster::WorkflowSpec wf(const std::string& name, const std::string& plan, std::uint32_t vus, std::uint32_t cores,
                         std::vector<std::string> deps) {
  WorkflowSpec w;
  w.name = name;
  w.plan.assign(plan.begin(), plan.end());
  w.vus = vus;
  w.cores = cores;
  w.deps = std::move(deps);
  return w;
}

// ---------------------------------------------------------------- client

std::uint64_t SimClient::submit(NodeId to, JobSpec spec) {
  Submit m{next_++, std::move(spec)};
  req_key[m.req] = m.spec.idempotency_key;
  out_.emplace_back(to, encode(MsgType::submit, m));
  return m.req;
}
std::uint64_t SimClient::status(NodeId to, const std::string& job) {
  StatusQuery m{next_++, job};
  out_.emplace_back(to, encode(MsgType::status_query, m));
  return m.req;
}
std::uint64_t SimClient::watch(NodeId to, const std::string& job, std::uint64_t from_index, std::uint32_t max) {
  WatchQuery m{next_++, job, from_index, max};
  out_.emplace_back(to, encode(MsgType::watch_query, m));
  return m.req;
}
std::uint64_t SimClient::cancel(NodeId to, const std::string& job, std::uint64_t fence) {
  CancelJob m{next_++, job, fence, ""};
  req_cancel[m.req] = job;
  out_.emplace_back(to, encode(MsgType::cancel_job, m));
  return m.req;
}
std::uint64_t SimClient::cancel_workflow(NodeId to, const std::string& job, const std::string& w) {
  CancelWorkflow m{next_++, job, w};
  out_.emplace_back(to, encode(MsgType::cancel_workflow, m));
  return m.req;
}
std::uint64_t SimClient::node_query(NodeId to) {
  NodeQuery m{next_++};
  out_.emplace_back(to, encode(MsgType::node_query, m));
  return m.req;
}
std::uint64_t SimClient::gate_submit(NodeId to, JobSpec spec, std::uint64_t gate_fence) {
  Submit m{next_++, std::move(spec), gate_fence};
  req_key[m.req] = m.spec.idempotency_key;
  out_.emplace_back(to, encode(MsgType::submit, m));
  return m.req;
}
std::uint64_t SimClient::gate_cancel(NodeId to, const std::string& job, std::uint64_t gate_fence) {
  CancelJob m{next_++, job, 0, "cancelled by the gate", gate_fence};
  req_cancel[m.req] = job;
  out_.emplace_back(to, encode(MsgType::cancel_job, m));
  return m.req;
}
std::uint64_t SimClient::job_fence(NodeId to, const std::string& job, std::uint64_t gate_fence) {
  JobFence m{next_++, job, gate_fence};
  out_.emplace_back(to, encode(MsgType::job_fence, m));
  return m.req;
}
const SimClient::Reply* SimClient::reply(std::uint64_t req) const {
  auto it = replies_.find(req);
  return it == replies_.end() || !it->second.done ? nullptr : &it->second;
}
void SimClient::on_start(node::Context& ctx) { ctx.set_timer(10ms, 0); }
void SimClient::on_timer(node::Context& ctx, node::TimerId, std::uint64_t) {
  while (!out_.empty()) {
    auto& bytes = out_.front().second;
    bytes.insert(bytes.begin(), static_cast<std::uint8_t>(kRole));
    ctx.send(out_.front().first, std::move(bytes));
    out_.pop_front();
  }
  ctx.set_timer(10ms, 0);
}
void SimClient::on_message(node::Context& ctx, NodeId from, std::span<const std::uint8_t> msg) {
  if (msg.size() < 2 || msg[0] != kRole) return;
  const auto type = static_cast<MsgType>(msg[1]);
  const auto body = msg.subspan(2);
  switch (type) {
    case MsgType::submit_ack: {
      SubmitAck a;
      if (!decode(body, a)) return;
      if (drop_submit_acks > 0) {
        --drop_submit_acks;
        return;
      }
      acks.emplace_back(req_key[a.req], a);
      ack_times.push_back(ctx.now());
      auto& r = replies_[a.req];
      r.done = true;
      r.submit = a;
      r.at = ctx.now();
      break;
    }
    case MsgType::watch_reply: {
      WatchReply a;
      if (!decode(body, a)) return;
      auto& r = replies_[a.req];
      r.done = true;
      r.watch = a;
      r.at = ctx.now();
      break;
    }
    case MsgType::status_reply: {
      StatusReply a;
      if (!decode(body, a)) return;
      auto& r = replies_[a.req];
      r.done = true;
      r.status = a;
      r.at = ctx.now();
      break;
    }
    case MsgType::cancel_reply: {
      CancelReply a;
      if (!decode(body, a)) return;
      if (a.success && req_cancel.count(a.req) != 0) cancel_acks.emplace(req_cancel[a.req], ctx.now());
      auto& r = replies_[a.req];
      r.done = true;
      r.cancel = a;
      r.at = ctx.now();
      break;
    }
    case MsgType::node_status: {
      NodeStatus a;
      if (!decode(body, a)) return;
      auto& r = replies_[a.req];
      r.done = true;
      r.node = a;
      r.at = ctx.now();
      break;
    }
    case MsgType::job_fence_ack: {
      JobFenceAck a;
      if (!decode(body, a)) return;
      auto& r = replies_[a.req];
      r.done = true;
      r.fence = a;
      r.at = ctx.now();
      break;
    }
    case MsgType::dc_heartbeat: {
      DcHeartbeat hb;
      if (!decode(body, hb)) return;
      heartbeats[from] = hb;
      heartbeat_at[from] = ctx.now();
      ++heartbeats_received;
      DcHeartbeatAck ack;
      ack.registered = !refuse_heartbeats.has_value();
      ack.error = refuse_heartbeats.value_or("");
      auto bytes = encode(MsgType::dc_heartbeat_ack, ack);
      bytes.insert(bytes.begin(), static_cast<std::uint8_t>(kRole));
      ctx.send(from, std::move(bytes));
      break;
    }
    default:
      break;
  }
}

// ---------------------------------------------------------------- nodes

namespace {
swim::SwimConfig swim_cfg(NodeId self, const std::vector<NodeId>& all) {
  swim::SwimConfig c;
  for (NodeId n : all)
    if (n != self) c.seeds.push_back(n);
  return c;
}
}  // namespace

static RaftConfig raft_cfg(const DcOptions& o, const std::vector<NodeId>& managers) {
  RaftConfig c;
  c.voters = managers;
  if (o.tune_raft) o.tune_raft(c);
  return c;
}

static manager::ManagerConfig manager_cfg(const DcOptions& o, const std::vector<NodeId>& managers) {
  manager::ManagerConfig c;
  c.managers = managers;
  if (o.tune_manager) o.tune_manager(c);
  return c;
}

ManagerNode::ManagerNode(const DcOptions& o, NodeId s, const std::vector<NodeId>& managers,
                         const std::vector<NodeId>& all)
    : swim(swim_cfg(s, all)),
      mgr(manager_cfg(o, managers), raft_cfg(o, managers), [this](NodeId n) { return alive(n); }),
      self(s) {
  mux.add(kSwim, &swim);
  mux.add(kRole, &mgr);
  mux.add(kRaft, &mgr.raft());
  if (o.on_swim) swim.on_change = [this, f = o.on_swim](const swim::MemberEvent& e) { f(self, e); };
  swim.on_dead = [this](NodeId n, std::uint32_t, bool) { mgr.on_member_dead(n); };
}

bool ManagerNode::alive(NodeId n) const {
  if (n == self) return true;
  auto m = swim.member(n);
  return m && (m->state == swim::State::alive || m->state == swim::State::suspect);
}

static worker::WorkerConfig worker_cfg(const DcOptions& o, NodeId self, const std::vector<NodeId>& managers) {
  worker::WorkerConfig c;
  c.managers = managers;
  c.cores = o.cores;
  const auto index =
      static_cast<std::size_t>(self) - static_cast<std::size_t>(o.managers) - 1;  // ids: managers, then workers
  if (self > static_cast<NodeId>(o.managers) && index < o.worker_cores.size()) c.cores = o.worker_cores[index];
  if (o.tune_worker) o.tune_worker(c);
  return c;
}

WorkerNode::WorkerNode(const DcOptions& o, NodeId s, const std::vector<NodeId>& managers,
                       const std::vector<NodeId>& all)
    : swim(swim_cfg(s, all)), wrk(worker_cfg(o, s, managers), exec) {
  mux.add(kSwim, &swim);
  mux.add(kRole, &wrk);
  mux.add(kExec, &exec);
  if (o.on_swim) swim.on_change = [s, f = o.on_swim](const swim::MemberEvent& e) { f(s, e); };
  swim.on_dead = [this](NodeId n, std::uint32_t, bool) { wrk.on_member_dead(n); };
}

void WorkerNode::on_start(node::Context& ctx) {
  exec.attach(&wrk, &mux.context(kExec));
  mux.on_start(ctx);
}

// ---------------------------------------------------------------- datacenter

Dc::Dc(DcOptions o) : o_(std::move(o)) {
  sim::SimOptions so;
  so.seed = o_.seed;
  so.net = o_.net;
  sim_ = std::make_unique<sim::Simulator>(so);
  sim_->set_channel_of(sim::Simulator::mux_channel);  // per-channel faults: SWIM, Raft, role traffic
  o_.on_swim = [this](NodeId observer, const swim::MemberEvent& e) { swim_events.emplace_back(observer, e); };
  NodeId next = 1;
  for (int i = 0; i < o_.managers; ++i) managers_.push_back(next++);
  for (int i = 0; i < o_.workers; ++i) workers_.push_back(next++);
  client_ = kClient;
  all_ = managers_;
  all_.insert(all_.end(), workers_.begin(), workers_.end());
  for (NodeId m : managers_)
    (void)sim_->add_node(m, [this](NodeId id) { return std::make_unique<ManagerNode>(o_, id, managers_, all_); });
  for (NodeId w : workers_) add_worker_node(w);
  (void)sim_->add_node(client_, [](NodeId) { return std::make_unique<SimClient>(); });
  storage_name_ = raft_cfg(o_, managers_).storage_name;
  if (o_.check_each_event) {
    for (NodeId m : managers_)
      if (auto* d = sim_->disk_faults(m)) d->track_durable(true);
    // Watches every reply a manager sends to the client, and lets it through.
    auto watch = sim_->add_filter([this](NodeId from, NodeId to, const node::Bytes& msg) {
      observe_reply(from, to, msg);
      return false;
    });
    HS_ASSERT(watch.ok(), "dc: cannot install the acknowledgement watch: {}", watch.status().to_string());
    sim_->set_invariant([this](sim::Simulator&) { return check_now(); });
  }
  sim_->start_all();
}

NodeId Dc::add_worker() {
  NodeId id = 1000 + static_cast<NodeId>(workers_.size());
  while (sim_->is_up(id) || std::find(workers_.begin(), workers_.end(), id) != workers_.end()) ++id;
  workers_.push_back(id);
  add_worker_node(id);
  (void)sim_->start(id);
  return id;
}

void Dc::add_worker_node(NodeId w) {
  (void)sim_->add_node(w, [this](NodeId id) {
    auto n = std::make_unique<WorkerNode>(o_, id, managers_, all_);
    n->exec.on_crash = [this, id] {
      sim_->at(sim_->now(), [id](sim::Simulator& s) { (void)s.crash(id); });
      sim_->at(sim_->now() + crash_restart_after, [id](sim::Simulator& s) {
        if (!s.is_up(id)) (void)s.restart(id);
      });
    };
    return n;
  });
}

SimClient& Dc::client() { return *static_cast<SimClient*>(sim_->node(client_)); }
ManagerNode* Dc::mgr(NodeId id) { return static_cast<ManagerNode*>(sim_->node(id)); }
WorkerNode* Dc::wrk(NodeId id) { return static_cast<WorkerNode*>(sim_->node(id)); }

std::optional<NodeId> Dc::leader() {
  std::optional<NodeId> found;
  for (NodeId m : managers_) {
    auto* n = mgr(m);
    if (n == nullptr || !n->mgr.is_leader()) continue;
    if (found) return std::nullopt;
    found = m;
  }
  return found;
}

// Every ledger, whenever it applied something: a job seen terminal on a manager stays terminal in
// the same state there (issue 21: a lagging leader must never revert committed state); every token
// a ledger ever held is recorded as committed (end_checks: no worker ran anything else).
Status Dc::check_ledger(NodeId m) {
  auto* n = mgr(m);
  if (n == nullptr) return ok_status();
  const std::uint64_t applied = n->mgr.raft().last_applied();
  auto& seen = applied_seen_[m];
  if (applied == seen) return ok_status();
  seen = applied;
  const auto& jobs = n->mgr.ledger().jobs();
  for (auto it = terminal_on_.lower_bound({m, std::string()}); it != terminal_on_.end() && it->first.first == m;) {
    if (jobs.count(it->first.second) == 0)
      it = terminal_on_.erase(it);  // retired (or not loaded yet after a restart)
    else
      ++it;
  }
  for (const auto& [id, j] : jobs) {
    for (std::size_t i = 0; i < j.workflows.size(); ++i)
      for (const auto& p : j.workflows[i].parts) committed_.emplace(id, j.spec.workflows[i].name, p.token);
    auto t = terminal_on_.find({m, id});
    if (t != terminal_on_.end() && t->second != j.state)
      return make_error(Errc::internal, fmt::format("invariant 11: job {} was {} on manager {} and is now {}", id,
                                                    name(t->second), m, name(j.state)));
    if (terminal(j.state)) terminal_on_.emplace(std::make_pair(m, id), j.state);
  }
  return ok_status();
}

void Dc::observe_reply(NodeId from, NodeId to, const node::Bytes& msg) {
  if (to != client_ || msg.size() < 2 || msg[0] != kRole) return;
  const auto body = std::span<const std::uint8_t>(msg).subspan(2);
  if (msg[1] == static_cast<std::uint8_t>(MsgType::submit_ack)) {
    SubmitAck a;
    if (decode(body, a) && a.accepted) acks_sent_.push_back({from, a.job_id, false});
  } else if (msg[1] == static_cast<std::uint8_t>(MsgType::cancel_reply)) {
    CancelReply a;
    if (!decode(body, a) || !a.success) return;
    auto it = client().req_cancel.find(a.req);
    if (it != client().req_cancel.end()) acks_sent_.push_back({from, it->second, true});
  }
}

// WAL-03: nothing is acknowledged that a quorum did not store. For every acknowledgement sent in
// this event, the managers' durable Raft logs (what a crash losing every unsynced write would leave,
// crashed managers included) are replayed into scratch ledgers: a quorum of them must hold the job
// (a submit) or hold it terminal (a cancel).
Status Dc::check_stored() {
  std::vector<Ack> acks;
  acks.swap(acks_sent_);
  std::vector<std::unique_ptr<JobLedger>> stored;
  for (NodeId m : managers_) {
    auto* disk = sim_->disk_faults(m);
    if (disk == nullptr) continue;
    auto read = read_stored_commands(disk->durable_log(storage_name_));
    if (!read.ok())
      return make_error(Errc::internal, fmt::format("WAL-03: manager {}'s durable log does not read: {}", m,
                                                    read.status().to_string()));
    auto l = std::make_unique<JobLedger>();
    if (read->snapshot) HS_TRY(l->restore(*read->snapshot));
    for (const auto& [index, cmd] : read->commands) l->apply(index, cmd);
    stored.push_back(std::move(l));
  }
  const std::size_t quorum = managers_.size() / 2 + 1;
  for (const auto& a : acks) {
    std::size_t holders = 0;
    for (const auto& l : stored) {
      const LedgerJob* j = l->job(a.job);
      holders += j != nullptr && (!a.cancel || terminal(j->state)) ? 1 : 0;
    }
    ++acks_checked;
    if (holders < quorum)
      return make_error(Errc::internal,
                        fmt::format("WAL-03: manager {} acknowledged the {} of job {} stored durably on {} of {} "
                                    "managers (quorum {})",
                                    a.by, a.cancel ? "cancel" : "submit", a.job, holders, managers_.size(), quorum));
  }
  return ok_status();
}

Status Dc::check_now() {
  if (!acks_sent_.empty()) HS_TRY(check_stored());
  for (NodeId m : managers_)
    if (Status st = check_ledger(m); !st.ok()) return st;
  // Invariant 8: one leader per term.
  for (NodeId m : managers_) {
    auto* n = mgr(m);
    if (n == nullptr || !n->mgr.raft().is_leader()) continue;
    auto [it, fresh] = term_leader_.emplace(n->mgr.raft().term(), m);
    if (!fresh && it->second != m)
      return make_error(Errc::internal, fmt::format("invariant 8: managers {} and {} both led term {}", it->second, m,
                                                    n->mgr.raft().term()));
    if (last_leader_ != m) {
      last_leader_ = m;
      ++leader_changes;
    }
  }
  // Invariant 7: cores never overcommitted.
  std::map<std::tuple<std::string, std::string, std::uint32_t>, std::vector<std::pair<NodeId, std::uint64_t>>> copies;
  for (NodeId w : workers_) {
    auto* n = wrk(w);
    if (n == nullptr) continue;
    if (n->wrk.used_cores() > n->wrk.total_cores())
      return make_error(Errc::internal, fmt::format("invariant 7: worker {} uses {} of {} cores", w,
                                                    n->wrk.used_cores(), n->wrk.total_cores()));
    for (const auto& e : n->wrk.live()) copies[{e.job_id, e.workflow, e.part}].emplace_back(w, e.token);
  }
  // Invariant 5: at most one live attempt of a part, unless the older copy's worker was declared
  // dead by the job's leader or that copy is being stopped (orphaned, cancelled or superseded).
  for (auto& [key, list] : copies) {
    const auto& [job_id, wf_name, part] = key;
    if (list.size() < 2) continue;
    std::sort(list.begin(), list.end(), [](auto& a, auto& b) { return a.second < b.second; });
    for (std::size_t i = 0; i + 1 < list.size(); ++i) {
      const NodeId old_worker = list[i].first;
      bool excused = false;
      for (NodeId m : managers_) {
        auto* n = mgr(m);
        if (n == nullptr || !n->mgr.leads(job_id)) continue;
        if (!n->alive(old_worker)) excused = true;
        auto v = n->mgr.job(job_id);
        if (v)
          for (const auto& w : v->workflows)
            if (w.name == wf_name && part < w.parts.size() && w.parts[part].token != list[i].second)
              excused = true;  // superseded: told to stop
      }
      if (!excused)
        return make_error(
            Errc::internal,
            fmt::format("invariant 5: job {} workflow {} part {} runs on workers {} (token {}) and {} (token {})",
                        job_id, wf_name, part, old_worker, list[i].second, list[i + 1].first, list[i + 1].second));
    }
  }
  return ok_status();
}

bool Dc::run_until(const std::function<bool()>& pred, Duration limit) {
  const Instant end = sim_->now() + limit;
  while (sim_->now() < end) {
    if (pred()) return true;
    Status st = sim_->run_for(50ms);
    if (!st.ok()) {
      failure_ = st;
      return false;
    }
  }
  return pred();
}

void Dc::run_for(Duration d) {
  Status st = sim_->run_for(d);
  if (!st.ok()) failure_ = st;
}

std::optional<SubmitAck> Dc::submit_and_wait(JobSpec spec, Duration limit) {
  const Instant end = sim_->now() + limit;
  NodeId target = leader().value_or(managers_.front());
  for (int attempt = 0; attempt < 20 && sim_->now() < end; ++attempt) {
    const std::uint64_t req = client().submit(target, spec);
    const SimClient::Reply* r = nullptr;
    run_until([&] { return (r = client().reply(req)) != nullptr; }, std::min<Duration>(3s, end - sim_->now()));
    if (r == nullptr) continue;  // lost: retry with the same key
    if (r->submit.accepted || !retryable(r->submit.code)) return r->submit;
    if (r->submit.code == Err::not_leader && r->submit.leader != 0) {
      target = r->submit.leader;
    } else {
      run_for(std::chrono::milliseconds(std::max<std::uint32_t>(r->submit.retry_after_ms, 200)));
      target = leader().value_or(target);
    }
  }
  return std::nullopt;
}

std::optional<JobView> Dc::job_view(const std::string& id) {
  for (NodeId m : managers_) {
    auto* n = mgr(m);
    if (n != nullptr && n->mgr.leads(id)) return n->mgr.job(id);
  }
  for (NodeId m : managers_) {
    auto* n = mgr(m);
    if (n != nullptr)
      if (auto v = n->mgr.job(id)) return v;
  }
  return std::nullopt;
}

std::optional<JobState> Dc::final_state(const std::string& id, Duration limit) {
  std::optional<JobState> st;
  run_until(
      [&] {
        auto v = job_view(id);
        if (!v) return false;
        bool all = terminal(v->state);
        for (const auto& w : v->workflows) all = all && terminal(w.state);
        if (all) st = v->state;
        return all;
      },
      limit);
  return st;
}

Status Dc::end_checks() {
  run_for(3s);  // recovery slack: replicas catch up with the job leaders' last records
  if (!failure_.ok()) return failure_;
  // Invariant 3: one job per idempotency key.
  // While the job is held (a key may name a new job once its job was retired).
  manager::ManagerConfig mc;
  if (o_.tune_manager) o_.tune_manager(mc);
  std::map<std::string, std::string> key_job;
  std::map<std::string, Instant> key_first;
  const auto& acks = client().acks;
  for (std::size_t i = 0; i < acks.size(); ++i) {
    const auto& [key, ack] = acks[i];
    if (!ack.accepted || key.empty()) continue;
    const Instant at = client().ack_times[i];
    auto [it, fresh] = key_job.emplace(key, ack.job_id);
    auto ft = key_first.emplace(key, at).first;
    if (fresh || it->second == ack.job_id) continue;
    if (at - ft->second > mc.retention_ok) {  // the job was retired with its key: a new job is allowed
      it->second = ack.job_id;
      ft->second = at;
      continue;
    }
    return make_error(Errc::internal,
                      fmt::format("invariant 3: key {} named jobs {} and {}", key, it->second, ack.job_id));
  }
  // Invariants 1, 2, 9, 10 over every acked job still held.
  for (const auto& [key, job_id] : key_job) {
    (void)key;
    std::optional<JobState> agreed;
    for (NodeId m : managers_) {
      auto* n = mgr(m);
      if (n == nullptr) continue;
      auto v = n->mgr.job(job_id);
      if (!v) continue;
      if (!terminal(v->state))
        return make_error(Errc::internal,
                          fmt::format("invariant 1: job {} is {} on manager {}", job_id, name(v->state), m));
      if (agreed && *agreed != v->state)
        return make_error(Errc::internal, fmt::format("invariant 2: job {} is {} on one manager and {} on manager {}",
                                                      job_id, name(*agreed), name(v->state), m));
      agreed = v->state;
      if (cancel_acked.count(job_id) != 0 && v->state == JobState::completed)
        return make_error(Errc::internal, fmt::format("invariant 9: job {} completed after an acked cancel", job_id));
      if (v->retries_used > v->retry_budget)
        return make_error(Errc::internal, fmt::format("invariant 10: job {} used {} retries of {}", job_id,
                                                      v->retries_used, v->retry_budget));
      for (const auto& w : v->workflows)
        if (w.attempts > 1 + v->workflow_retries)
          return make_error(Errc::internal,
                            fmt::format("invariant 10: workflow {}/{} made {} attempts", job_id, w.name, w.attempts));
    }
  }
  // Invariant 12: nothing starts after a cancel was acknowledged; invariant 13: a worker starts only
  // attempts a ledger committed (no command of a deposed leader takes effect).
  for (NodeId w : workers_) {
    auto* n = wrk(w);
    if (n == nullptr) continue;
    for (const auto& e : n->wrk.log()) {
      if (e.kind != worker::ExecEvent::started) continue;
      auto c = client().cancel_acks.find(e.job_id);
      if (c != client().cancel_acks.end() && e.at > c->second)
        return make_error(Errc::internal, fmt::format("invariant 12: {}/{} started on worker {} at {} ms, after its "
                                                      "cancel was acknowledged at {} ms",
                                                      e.job_id, e.workflow, w, e.at.count() / 1'000'000,
                                                      c->second.count() / 1'000'000));
      if (o_.check_each_event && committed_.count({e.job_id, e.workflow, e.token}) == 0)
        return make_error(Errc::internal,
                          fmt::format("invariant 13: worker {} started {}/{} with token {}, which no ledger committed",
                                      w, e.job_id, e.workflow, e.token));
    }
  }
  // Invariant 4 (scenarios.md §4): a worker never accepts a token lower than the highest it has seen
  // for the workflow, and a (workflow, token) pair is accepted at most once. (Across workers a late
  // dispatch may still start an attempt the ledger has since superseded: the leader's next
  // heartbeat reply stops it, and invariant 5 allows such a copy.)
  std::map<std::tuple<NodeId, std::string, std::string, std::uint32_t>, std::vector<std::pair<Instant, std::uint64_t>>>
      starts;
  std::map<std::tuple<std::string, std::string, std::uint64_t>, NodeId> accepted_by;
  for (NodeId w : workers_) {
    auto* n = wrk(w);
    if (n == nullptr) continue;
    for (const auto& e : n->wrk.log()) {
      if (e.kind != worker::ExecEvent::started) continue;
      starts[{w, e.job_id, e.workflow, e.part}].emplace_back(e.at, e.token);
      auto [it, fresh] = accepted_by.emplace(std::make_tuple(e.job_id, e.workflow, e.token), w);
      if (!fresh)
        return make_error(Errc::internal, fmt::format("invariant 4: {}/{} token {} accepted twice (workers {} and {})",
                                                      e.job_id, e.workflow, e.token, it->second, w));
    }
  }
  for (auto& [key, list] : starts) {
    std::sort(list.begin(), list.end());
    for (std::size_t i = 1; i < list.size(); ++i)
      if (list[i].second <= list[i - 1].second)
        return make_error(Errc::internal,
                          fmt::format("invariant 4: worker {} accepted {}/{} token {} after {}", std::get<0>(key),
                                      std::get<1>(key), std::get<2>(key), list[i].second, list[i - 1].second));
  }
  return ok_status();
}

}  // namespace hs::simdc
