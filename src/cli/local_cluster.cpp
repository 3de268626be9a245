// In-process cluster for `hyperscale run` (local_cluster.hpp).
#include "cli/local_cluster.hpp"

#include <fmt/format.h>
#include <uv.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>

#include "hyperscale/base/log.hpp"
#include "hyperscale/base/metrics.hpp"
#include "hyperscale/cluster/messages.hpp"
#include "hyperscale/cluster/mux.hpp"
#include "hyperscale/host/load_executor.hpp"
#include "hyperscale/host/load_windows.hpp"
#include "cli/job_windows.hpp"
#include "hyperscale/load/runner.hpp"
#include "hyperscale/load/stats_codec.hpp"
#include "hyperscale/manager/manager.hpp"
#include "hyperscale/runtime/reactor.hpp"
#include "hyperscale/runtime/shard_set.hpp"
#include "hyperscale/sim/mem_disk.hpp"
#include "hyperscale/worker/worker.hpp"

namespace hs::cli {
namespace {

using node::NodeId;
using runtime::Reactor;
using namespace std::chrono_literals;

constexpr NodeId kManagerId = 1, kWorkerId = 2, kClientId = 3;
constexpr std::size_t kMaxInFlight = 1 << 16;  // undelivered in-process messages; over it: dropped (roles resend)

metrics::Counter& dropped_counter(Reactor& r, const char* reason) {
  return r.metrics().counter("hs_local_messages_dropped_total", "In-process cluster messages or timers dropped",
                             {{"reason", reason}});
}

class Cluster;

// One hosted node: its node::Context on shard 0's reactor.
class HostedNode final : public node::Context {
 public:
  HostedNode(Cluster& c, NodeId id, node::Node& node, std::uint64_t seed);
  ~HostedNode() override { cancel_all(); }
  NodeId self() const override { return id_; }
  const Clock& clock() const override;
  std::uint64_t wall_ms() const override { return static_cast<std::uint64_t>(wall_time_us() / 1000); }
  Rng& rng() override { return rng_; }
  void send(NodeId to, node::Bytes msg) override;
  node::TimerId set_timer(Duration after, std::uint64_t tag) override;
  void cancel_timer(node::TimerId id) override;
  node::Disk& disk() override { return disk_; }
  void cancel_all();
  node::Node& node() { return node_; }

 private:
  Cluster& c_;
  NodeId id_;
  node::Node& node_;
  Rng rng_;
  sim::MemDisk disk_{sim::MemDisk::Limits{1u << 30, 1'000'000, 1'000}};
  node::TimerId next_timer_ = 1;
  std::unordered_map<node::TimerId, runtime::TaskId> timers_;  // live timers only
};

class Cluster {
 public:
  Cluster(Reactor& r, const load::Plan& plan, const LocalRunOptions& opts, std::vector<int> shards);
  ~Cluster();
  void start();
  void deliver(NodeId from, NodeId to, node::Bytes msg);
  void abort(const std::string& why);
  Reactor& reactor() { return r_; }
  bool finished() const { return finished_; }
  load::RunStats take_result() { return std::move(result_); }
  std::string failure;  // the job was refused (nothing ran)

 private:
  struct Pending {
    NodeId from, to;
    node::Bytes bytes;
  };
  void on_client_message(std::span<const std::uint8_t> msg);
  void watch();
  void finish(const cluster::JobView& v);
  void report_live(const cluster::JobView* v);
  void live_steps(const std::string& workflow, load::LiveWorkflow& lw) const;
  void send_submit();

  Reactor& r_;
  const load::Plan& plan_;
  const LocalRunOptions& opts_;
  std::string job_id_;
  cluster::JobSpec spec_;
  manager::Manager mgr_;
  std::unique_ptr<host::LoadExecutor> exec_;
  std::unique_ptr<worker::Worker> wrk_;
  cluster::Mux mgr_mux_, wrk_mux_;
  std::unique_ptr<HostedNode> mgr_node_, wrk_node_;
  std::deque<Pending> pending_;
  std::uint64_t next_req_ = 1;
  bool accepted_ = false, aborted_ = false, finished_ = false;
  std::string abort_reason_;
  Instant run_start_{0}, abort_at_{0};
  std::vector<Instant> first_running_;
  JobWindows windows_;  // the leader's merged windows: the live view's rps and percentiles
  std::optional<runtime::TaskId> watch_task_, live_task_;
  load::RunStats result_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // deferred deliveries check it
};

HostedNode::HostedNode(Cluster& c, NodeId id, node::Node& node, std::uint64_t seed)
    : c_(c), id_(id), node_(node), rng_(seed) {}
const Clock& HostedNode::clock() const { return c_.reactor().clock(); }
void HostedNode::send(NodeId to, node::Bytes msg) { c_.deliver(id_, to, std::move(msg)); }
node::TimerId HostedNode::set_timer(Duration after, std::uint64_t tag) {
  const node::TimerId t = next_timer_++;
  auto task = c_.reactor().after("local-node-timer", after, [this, t, tag]() {
    timers_.erase(t);
    node_.on_timer(*this, t, tag);
    return ok_status();
  });
  if (!task.ok()) {
    // The role re-arms its timers from its own state; a lost timer is logged and counted.
    log::error("local", "timer_failed", "node={} error={}", id_, log::quoted(task.status().to_string()));
    dropped_counter(c_.reactor(), "timer").inc();
    return t;
  }
  timers_[t] = *task;
  return t;
}
void HostedNode::cancel_timer(node::TimerId id) {
  auto it = timers_.find(id);
  if (it == timers_.end()) return;
  c_.reactor().cancel(it->second);
  timers_.erase(it);
}
void HostedNode::cancel_all() {
  for (auto& [t, task] : timers_) c_.reactor().cancel(task);
  timers_.clear();
}

manager::ManagerConfig manager_config() {
  manager::ManagerConfig c;
  c.managers = {kManagerId};
  c.tick = 5ms;  // dispatch happens in the tick: keep startup and dependency latency small
  c.max_plan_bytes = 4u << 20;
  // A window closes 3 windows after it ends (a part sends it within about a second): the live view
  // lags by that much; later windows still count in the totals (as `late`).
  load::WindowMergerConfig wc;
  wc.lateness = 3;
  c.windows = host::load_windows_factory(wc);
  return c;
}

// One voter: Raft elects it at start and commits each entry on the local sync.
cluster::RaftConfig raft_config() {
  cluster::RaftConfig c;
  c.voters = {kManagerId};
  c.heartbeat = 10ms;
  c.election = 100ms;
  c.max_message_bytes = 8u << 20;  // plans are up to 4 MiB (max_plan_bytes)
  return c;
}

worker::WorkerConfig worker_config(int cores) {
  worker::WorkerConfig c;
  c.managers = {kManagerId};
  c.cores = static_cast<std::uint32_t>(cores);
  c.tick = 5ms;
  c.heartbeat = 20ms;  // the manager learns free cores from heartbeats
  c.progress = 500ms;
  return c;
}

Cluster::Cluster(Reactor& r, const load::Plan& plan, const LocalRunOptions& opts, std::vector<int> shards)
    : r_(r), plan_(plan), opts_(opts), mgr_(manager_config(), raft_config(), [](NodeId) { return true; }) {
  const int cores = static_cast<int>(shards.size());
  host::LoadExecutorOptions eo;
  eo.cancel_grace = Duration{0};  // as before: an abort abandons iterations in flight at once
  exec_ = std::make_unique<host::LoadExecutor>(
      r_, std::move(shards),
      [this](std::uint64_t exec, worker::ExecProgress p) {
        wrk_mux_.run(*wrk_node_, [&] { wrk_->on_exec_progress(exec, p); });
      },
      [this](std::uint64_t exec, worker::ExecResult res) {
        wrk_mux_.run(*wrk_node_, [&] { wrk_->on_exec_done(exec, std::move(res)); });
      },
      eo);
  wrk_ = std::make_unique<worker::Worker>(worker_config(cores), *exec_);
  mgr_mux_.add(cluster::kRole, &mgr_);
  mgr_mux_.add(cluster::kRaft, &mgr_.raft());
  wrk_mux_.add(cluster::kRole, wrk_.get());
  mgr_node_ = std::make_unique<HostedNode>(*this, kManagerId, mgr_mux_, 1);
  wrk_node_ = std::make_unique<HostedNode>(*this, kWorkerId, wrk_mux_, 2);

  job_id_ = "run-" + plan.hash.substr(0, std::min<std::size_t>(plan.hash.size(), 16));
  spec_.job_id = job_id_;
  spec_.idempotency_key = job_id_;
  spec_.retry_budget = 0;  // as before: a failed workflow is not run again
  spec_.workflow_retries = 0;
  for (const auto& w : plan.workflows) {
    cluster::WorkflowSpec ws;
    ws.name = w.name;
    ws.deps = w.depends_on;
    ws.vus = static_cast<std::uint32_t>(std::max<std::uint64_t>(1, w.vus));
    // The file's `cores`, at most this machine's (more could never be placed); 0: the manager
    // splits the free cores evenly among workflows ready together.
    ws.cores = std::min<std::uint32_t>(w.cores, static_cast<std::uint32_t>(cores));
    ws.priority = static_cast<cluster::Priority>(static_cast<std::uint8_t>(w.priority));
    ws.plan.assign(opts.plan_text.begin(), opts.plan_text.end());
    ws.one_part = w.kind == load::WorkflowKind::setup;  // a setup workflow runs once, on one worker
    spec_.workflows.push_back(std::move(ws));
  }
  result_.test_name = plan.test_name;
  result_.plan_hash = plan.hash;
  first_running_.assign(plan.workflows.size(), Instant{-1});
}

Cluster::~Cluster() {
  if (watch_task_) r_.cancel(*watch_task_);
  if (live_task_) r_.cancel(*live_task_);
  mgr_node_->cancel_all();
  wrk_node_->cancel_all();
  exec_.reset();  // its live runs are cancelled; no callback after this
}

void Cluster::start() {
  run_start_ = r_.clock().now();
  mgr_mux_.on_start(*mgr_node_);
  wrk_mux_.on_start(*wrk_node_);
  send_submit();
  auto w = r_.every("local-run-watch", 10ms, [this]() {
    watch();
    return ok_status();
  });
  if (w.ok())
    watch_task_ = *w;
  else
    log::error("local", "task_failed", "task=local-run-watch error={}", log::quoted(w.status().to_string()));
  if (opts_.on_progress) {
    auto l = r_.every("local-run-live", 1s, [this]() {
      auto v = mgr_.job(job_id_);
      report_live(v ? &*v : nullptr);
      return ok_status();
    });
    if (l.ok())
      live_task_ = *l;
    else
      log::error("local", "task_failed", "task=local-run-live error={}", log::quoted(l.status().to_string()));
  }
}

void Cluster::send_submit() {
  cluster::Submit m{next_req_++, spec_};
  auto bytes = cluster::encode(cluster::MsgType::submit, m);
  bytes.insert(bytes.begin(), static_cast<std::uint8_t>(cluster::kRole));
  deliver(kClientId, kManagerId, std::move(bytes));
}

void Cluster::deliver(NodeId from, NodeId to, node::Bytes msg) {
  if (pending_.size() >= kMaxInFlight) {
    log::warn("local", "message_dropped", "from={} to={} reason=queue_full", from, to);
    dropped_counter(r_, "queue_full").inc();
    return;
  }
  pending_.push_back(Pending{from, to, std::move(msg)});
  Status st = r_.defer([this, alive = std::weak_ptr<int>(alive_)]() {
    if (alive.expired()) return;  // deferred past the cluster's end (shutdown): nothing to deliver to
    Pending p = std::move(pending_.front());
    pending_.pop_front();
    if (p.to == kClientId) return on_client_message(p.bytes);
    HostedNode* n = p.to == kManagerId ? mgr_node_.get() : p.to == kWorkerId ? wrk_node_.get() : nullptr;
    if (n == nullptr) {
      log::warn("local", "message_dropped", "from={} to={} reason=unknown_node", p.from, p.to);
      dropped_counter(r_, "unknown_node").inc();
      return;
    }
    n->node().on_message(*n, p.from, p.bytes);
  });
  if (!st.ok()) {
    pending_.pop_back();
    log::warn("local", "message_dropped", "from={} to={} reason=defer error={}", from, to, log::quoted(st.to_string()));
    dropped_counter(r_, "defer").inc();
  }
}

void Cluster::on_client_message(std::span<const std::uint8_t> msg) {
  if (msg.size() < 2 || msg[0] != cluster::kRole) return;
  const auto type = static_cast<cluster::MsgType>(msg[1]);
  const auto body = msg.subspan(2);
  if (type == cluster::MsgType::submit_ack) {
    cluster::SubmitAck a;
    if (!cluster::decode(body, a)) {
      log::error("local", "decode_failed", "type=submit_ack");
      return;
    }
    if (a.accepted) {
      accepted_ = true;
      return;
    }
    if (cluster::retryable(a.code)) {
      log::warn("local", "submit_retry", "code={} error={}", cluster::name(a.code), log::quoted(a.error));
      auto t = r_.after("local-submit-retry", 50ms, [this]() {
        send_submit();
        return ok_status();
      });
      if (!t.ok()) log::error("local", "task_failed", "task=local-submit-retry");
      return;
    }
    log::error("local", "submit_refused", "code={} error={}", cluster::name(a.code), log::quoted(a.error));
    failure = fmt::format("the job was refused ({}): {}", cluster::name(a.code), a.error);
    finished_ = true;
    r_.request_node_stop("refused");
  } else if (type == cluster::MsgType::cancel_reply) {
    cluster::CancelReply a;
    if (!cluster::decode(body, a)) return;
    if (a.code != cluster::Err::none) log::warn("local", "cancel_failed", "error={}", log::quoted(a.error));
  }
}

void Cluster::abort(const std::string& why) {
  if (aborted_ || finished_) return;
  aborted_ = true;
  abort_at_ = r_.clock().now();
  abort_reason_ = why;
  log::warn("load", "run_abort", "reason={}", log::quoted(why));
  cluster::CancelJob m{next_req_++, job_id_, 0, why};
  auto bytes = cluster::encode(cluster::MsgType::cancel_job, m);
  bytes.insert(bytes.begin(), static_cast<std::uint8_t>(cluster::kRole));
  deliver(kClientId, kManagerId, std::move(bytes));
}

void Cluster::watch() {
  if (finished_ || !accepted_) return;
  auto v = mgr_.job(job_id_);
  if (!v) return;
  const Instant now = r_.clock().now();
  for (std::size_t i = 0; i < v->workflows.size() && i < first_running_.size(); ++i)
    if (first_running_[i] == Instant{-1} && v->workflows[i].state != cluster::WfState::pending &&
        !cluster::terminal(v->workflows[i].state))
      first_running_[i] = now;
  if (!cluster::terminal(v->state)) return;
  // A cancelled job: wait for the results of executions still stopping (their partial statistics).
  for (const auto& w : v->workflows)
    if (!cluster::terminal(w.state)) return;
  if (aborted_ && now < abort_at_ + 3s) {
    // Stopped workflows report their partial statistics after the stop was acknowledged: wait for them.
    if (exec_->live() > 0) return;
    for (std::size_t i = 0; i < v->workflows.size() && i < first_running_.size(); ++i)
      if (first_running_[i] != Instant{-1} && v->workflows[i].stats.empty()) return;
  }
  finish(*v);
}

void Cluster::finish(const cluster::JobView& v) {
  finished_ = true;
  result_.elapsed = r_.clock().now() - run_start_;
  result_.aborted = aborted_;
  result_.abort_reason = abort_reason_;
  result_.workflows.resize(plan_.workflows.size());
  for (std::size_t w = 0; w < plan_.workflows.size(); ++w) {
    const auto& pw = plan_.workflows[w];
    auto& ws = result_.workflows[w];
    ws.name = pw.name;
    ws.steps.resize(pw.steps.size());
    for (std::size_t i = 0; i < pw.steps.size(); ++i) ws.steps[i].name = pw.steps[i].name;
    const auto it = std::find_if(v.workflows.begin(), v.workflows.end(),
                                 [&](const cluster::WorkflowView& x) { return x.name == pw.name; });
    if (it == v.workflows.end()) {
      ws.outcome = load::WorkflowOutcome::failed;
      ws.note = "missing from the job";
      continue;
    }
    if (!it->stats.empty()) {
      auto st = load::decode_stats(it->stats);
      if (st.ok()) {
        ws = std::move(st).value();
        if (aborted_) {
          ws.outcome = load::WorkflowOutcome::interrupted;
          ws.note = "run aborted";
        }
        continue;
      }
      log::error("local", "stats_decode_failed", "workflow={} error={}", log::quoted(pw.name),
                 log::quoted(st.status().to_string()));
      ws.outcome = load::WorkflowOutcome::failed;
      ws.note = "statistics unreadable: " + st.status().to_string();
      continue;
    }
    // No statistics: it never ran (a dependency did not complete, the run was aborted) or it failed to start.
    if (aborted_) {
      ws.outcome = load::WorkflowOutcome::skipped;
      ws.note = "run aborted";
    } else if (it->error.rfind("dependency '", 0) == 0) {
      const auto q = it->error.find('\'', 12);
      ws.outcome = load::WorkflowOutcome::skipped;
      ws.note =
          fmt::format("dependency '{}' did not complete", it->error.substr(12, q == std::string::npos ? 0 : q - 12));
    } else {
      ws.outcome = load::WorkflowOutcome::failed;
      ws.note = it->error.empty() ? std::string(cluster::name(it->state)) : it->error;
    }
    if (ws.outcome == load::WorkflowOutcome::skipped)
      log::warn("load", "workflow_skipped", "workflow={} reason={}", log::quoted(ws.name), log::quoted(ws.note));
  }
  report_live(&v);
  r_.request_node_stop(aborted_ ? "aborted" : "done");
}

// A workflow's steps in the live view: cumulative counts from the merged totals, rps and percentiles
// from the last closed window (docs/windows.md).
void Cluster::live_steps(const std::string& workflow, load::LiveWorkflow& lw) const {
  auto it = windows_.series().find(workflow);
  if (it == windows_.series().end()) return;
  const auto& s = it->second;
  const double len = s.window_ms > 0 ? static_cast<double>(s.window_ms) / 1000.0 : 1.0;
  const load::Window* last = s.closed.empty() ? nullptr : &s.closed.rbegin()->second.merged;
  for (const auto& t : s.totals.steps) {
    load::LiveStep st;
    st.name = t.name;
    st.total = t.total;
    if (last != nullptr) {
      for (const auto& l : last->steps) {
        if (l.name != t.name) continue;
        st.rps = static_cast<double>(l.total.executed) / len;
        st.p50 = l.latency.count() ? l.latency.quantile(0.50) : 0;
        st.p95 = l.latency.count() ? l.latency.quantile(0.95) : 0;
        st.p99 = l.latency.count() ? l.latency.quantile(0.99) : 0;
      }
    }
    lw.steps.push_back(std::move(st));
  }
}

void Cluster::report_live(const cluster::JobView* v) {
  if (!opts_.on_progress) return;
  for (int page = 0; page < 10; ++page) {
    auto w = mgr_.watch(job_id_, windows_.next_from(), 0);
    if (!w) break;
    if (Status st = windows_.add(*w); !st.ok())
      log::warn("local", "live_windows", "error={}", log::quoted(st.to_string()));
    if (!windows_.more()) break;
  }
  load::LiveSnapshot snap;
  const Instant now = r_.clock().now();
  snap.elapsed = now - run_start_;
  for (std::size_t w = 0; w < plan_.workflows.size(); ++w) {
    const auto& pw = plan_.workflows[w];
    load::LiveWorkflow lw;
    lw.name = pw.name;
    lw.duration = pw.duration;
    if (finished_ && w < result_.workflows.size()) {
      const auto& ws = result_.workflows[w];
      lw.outcome = ws.outcome;
      lw.started = ws.started;
      lw.completed = ws.completed;
      lw.dropped = ws.dropped;
      lw.elapsed = ws.elapsed;
    } else if (v != nullptr && w < v->workflows.size()) {
      const auto& wv = v->workflows[w];
      lw.running = wv.state == cluster::WfState::dispatched || wv.state == cluster::WfState::running;
      if (wv.state == cluster::WfState::completed) lw.outcome = load::WorkflowOutcome::completed;
      if (wv.state == cluster::WfState::failed) lw.outcome = load::WorkflowOutcome::failed;
      if (wv.state == cluster::WfState::cancelled) lw.outcome = load::WorkflowOutcome::interrupted;
      lw.completed = wv.completed + wv.failed;
      lw.started = lw.completed;
      if (first_running_[w] != Instant{-1}) lw.elapsed = now - first_running_[w];
    }
    live_steps(pw.name, lw);
    snap.workflows.push_back(std::move(lw));
  }
  opts_.on_progress(snap);
}

struct Signals {
  uv_signal_t sigint{}, sigterm{};
  bool open = false;
  int count = 0;
  Cluster* cluster = nullptr;
  void close() {
    if (!open) return;
    uv_close(reinterpret_cast<uv_handle_t*>(&sigint), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&sigterm), nullptr);
    open = false;
  }
};

}  // namespace

Result<load::RunStats> run_local(const load::Plan& plan, const LocalRunOptions& opts) {
  // Every host is resolved before any load starts: a bad one fails the run here, as before.
  const std::shared_ptr<const load::Plan> shared(&plan, [](const load::Plan*) {});
  for (const auto& w : plan.workflows) {
    auto p = load::prepare_workflow(shared, w.name);
    if (!p.ok()) return p.status();
  }
  runtime::ShardSetOptions so;
  so.shards = opts.shards;
  so.handle_signals = false;  // SIGINT/SIGTERM cancel the job cleanly (below)
  so.shutdown_bound = std::chrono::seconds(5);
  runtime::ShardSet set(so);
  std::vector<int> shards;
  for (int i = 0; i < set.size(); ++i) shards.push_back(i);

  std::unique_ptr<Cluster> cluster;
  Signals sig;
  load::RunStats out;
  std::string failure;
  bool finished = false;
  Status st = set.start([&](Reactor& r) {
    if (r.shard_id() != 0) return;
    cluster = std::make_unique<Cluster>(r, plan, opts, shards);
    // The roles and the executor belong to shard 0's thread: they go away there.
    r.on_shutdown("local-cluster", [&](std::function<void()> done) {
      sig.close();
      sig.cluster = nullptr;
      if (cluster) {
        finished = cluster->finished();
        failure = cluster->failure;
        out = cluster->take_result();
      }
      cluster.reset();
      done();
    });
    if (opts.handle_signals) {
      sig.cluster = cluster.get();
      for (auto* h : {&sig.sigint, &sig.sigterm}) {
        uv_signal_init(r.loop(), h);
        h->data = &sig;
        uv_signal_start(
            h,
            [](uv_signal_t* hh, int signum) {
              auto* s = static_cast<Signals*>(hh->data);
              if (++s->count > 1) {
                log::error("load", "signal_forced_exit", "signal={}", strsignal(signum));
                std::_Exit(128 + signum);
              }
              if (s->cluster) s->cluster->abort(std::string("signal ") + strsignal(signum));
            },
            h == &sig.sigint ? SIGINT : SIGTERM);
      }
      sig.open = true;
    }
    cluster->start();
  });
  if (!st.ok()) return st.with_context("start shards");
  const auto reason = set.wait_for_stop_request(load::worst_case_run_time(plan));
  const bool hung = !reason.has_value();
  if (hung) log::error("load", "run_overdue", "note=the run did not finish within its worst-case bound; stopping");
  auto report = set.stop();
  if (!report.clean) log::warn("load", "shutdown_unclean", "took_ms={:.1f}", to_millis(report.took));
  if (hung) return make_error(Errc::internal, "the run did not finish within its worst-case time bound (see the log)");
  if (!failure.empty()) return make_error(Errc::internal, failure);
  if (!finished) return make_error(Errc::internal, "the run stopped before its job finished (see the log)");
  load::evaluate_thresholds(plan, out);
  return out;
}

}  // namespace hs::cli
