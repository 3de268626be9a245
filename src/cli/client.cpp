// Client commands of a cluster: `hyperscale submit | status | cancel` (docs/daemons.md).
//
// The client is a small sim::Node run by a NetHost on a free loopback port (wire role Client) with
// the cluster's secret, loaded like a daemon's (--config FILE and/or the HS_* environment: the
// secret from wire.secret_file or the variable named by wire.secret_env). It speaks the role
// protocol (cluster/messages.hpp) on channel kRole: Submit, StatusQuery, CancelJob, NodeQuery.
//
// Exit codes: 0 ok (job completed); 2 invalid input (bad workflow file, rejected job, unknown job);
// 3 the job failed or ended partial; 4 the job was cancelled or timed out; 5 no manager answered
// (unreachable, no leader in time).
#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli/cluster_config.hpp"
#include "cli/commands.hpp"
#include "hyperscale/base/log.hpp"
#include "hyperscale/cluster/messages.hpp"
#include "hyperscale/cluster/mux.hpp"
#include "hyperscale/host/daemon.hpp"
#include "hyperscale/load/plan.hpp"
#include "hyperscale/load/stats_codec.hpp"

extern char** environ;

namespace hs::cli {

namespace {

using cluster::MsgType;
using cluster::NodeId;
using Clk = std::chrono::steady_clock;

struct ClientArgs {
  std::vector<std::string> managers;  // --manager (repeatable, comma-separated)
  std::string config;
  std::string file;
  std::string job;
  std::string job_id, idem_key;
  bool wait = false, json = false;
  double timeout_s = 0;          // job timeout sent with the job (0: none)
  double request_timeout_s = 5;  // one manager's reply
  double wait_timeout_s = 0;     // --wait gives up after this (0: never)
};

// Receives replies and keeps them by request id.
struct ClientNode final : sim::Node {
  std::map<std::uint64_t, std::pair<MsgType, std::vector<std::uint8_t>>> replies;
  std::uint64_t malformed = 0;
  void on_start(sim::Context&) override {}
  void on_timer(sim::Context&, sim::TimerId, std::uint64_t) override {}
  void on_message(sim::Context&, NodeId from, std::span<const std::uint8_t> msg) override {
    if (msg.size() < 2 || msg[0] != cluster::kRole) return;  // SWIM etc. are not for a client
    const auto type = static_cast<MsgType>(msg[1]);
    const auto body = msg.subspan(2);
    std::uint64_t req = 0;
    bool ok = false;
    auto take = [&](auto m) {
      ok = cluster::decode(body, m);
      req = m.req;
    };
    switch (type) {
      case MsgType::submit_ack: take(cluster::SubmitAck{}); break;
      case MsgType::status_reply: take(cluster::StatusReply{}); break;
      case MsgType::cancel_reply: take(cluster::CancelReply{}); break;
      case MsgType::node_status: take(cluster::NodeStatus{}); break;
      default: return;
    }
    if (!ok) {
      ++malformed;
      log::warn("client", "malformed_reply", "from={} type={}", host::node_addr_string(from), static_cast<int>(type));
      return;
    }
    if (replies.size() < 1024) replies[req] = {type, std::vector<std::uint8_t>(body.begin(), body.end())};
  }
};

std::uint16_t pick_free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  std::uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

class Client {
 public:
  explicit Client(const char* name) : name_(name) {}
  ~Client() {
    if (host_) {
      bool closed = false;
      host_->close([&] { closed = true; });
      pump([&] { return closed; }, std::chrono::seconds(2));
      host_.reset();
    }
  }

  // Loads the config (file + environment) and starts the client's host. Returns an exit code (0 ok).
  int start(const ClientArgs& a) {
    host::Config::Env env;
    for (char** e = environ; e && *e; ++e) {
      std::string kv(*e);
      auto eq = kv.find('=');
      if (eq != std::string::npos && kv.rfind("HS_", 0) == 0) env[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    std::string managers;
    for (const auto& m : a.managers) {
      std::stringstream ss(m);
      for (std::string item; std::getline(ss, item, ',');)
        if (!item.empty()) managers += (managers.empty() ? "" : ",") + item;
    }
    if (!managers.empty()) env["HS_CLUSTER_MANAGERS"] = managers;
    env["HS_NODE_DATA_DIR"] = "/nonexistent/hyperscale-client";  // the client keeps nothing on disk
    env["HS_ADMIN_LISTEN"] = "";
    std::string text;
    if (!a.config.empty()) {
      std::ifstream f(a.config);
      if (!f) {
        std::fprintf(stderr, "%s: --config %s: cannot read the file\n", name_, a.config.c_str());
        return kExitUsage;
      }
      std::stringstream ss;
      ss << f.rdbuf();
      text = ss.str();
    }
    for (int attempt = 0; attempt < 5; ++attempt) {
      const std::uint16_t port = pick_free_port();
      env["HS_NODE_LISTEN"] = fmt::format("127.0.0.1:{}", port);
      auto cfg = host::Config::parse(cluster_schema(), text, a.config, env);
      if (!cfg.ok()) {
        std::fprintf(stderr, "%s: %s\n", name_, cfg.status().message().c_str());
        if (a.managers.empty()) std::fprintf(stderr, "%s: give the managers with --manager HOST:PORT\n", name_);
        return kExitUsage;
      }
      auto ids = parse_managers(cfg->list("cluster.managers"));
      if (!ids.ok()) {
        std::fprintf(stderr, "%s: --manager: %s\n", name_, ids.status().message().c_str());
        return kExitUsage;
      }
      managers_ = *ids;
      auto s = host::host_settings(*cfg, wire::fb::Role::Client);
      if (!s.ok()) {
        std::fprintf(stderr, "%s: %s\n", name_, s.status().to_string().c_str());
        return kExitUsage;
      }
      host_ = std::make_unique<host::NetHost>(reactor_, node_, s->net);
      Status st = host_->start();
      if (st.ok()) return kExitOk;
      host_.reset();
      if (attempt == 4) {
        std::fprintf(stderr, "%s: cannot open a client port: %s\n", name_, st.to_string().c_str());
        return kExitInfrastructure;
      }
    }
    return kExitInfrastructure;
  }

  const std::vector<NodeId>& managers() const { return managers_; }

  // Sends one request and waits for its reply (nullopt: none within `timeout`).
  template <typename Reply, typename Msg>
  std::optional<Reply> call(NodeId to, MsgType t, Msg& m, Duration timeout) {
    m.req = next_req_++;
    auto bytes = cluster::encode(t, m);
    bytes.insert(bytes.begin(), static_cast<std::uint8_t>(cluster::kRole));
    Status st = host_->run([&](sim::Context& ctx) { ctx.send(to, std::move(bytes)); });
    if (!st.ok()) {
      log::warn("client", "send_failed", "to={} error={}", host::node_addr_string(to), log::quoted(st.to_string()));
      return std::nullopt;
    }
    const std::uint64_t req = m.req;
    pump([&] { return node_.replies.count(req) > 0; }, timeout);
    auto it = node_.replies.find(req);
    if (it == node_.replies.end()) return std::nullopt;
    Reply r;
    const bool ok = cluster::decode(it->second.second, r);
    node_.replies.erase(it);
    if (!ok) return std::nullopt;
    return r;
  }

  void sleep_for(Duration d) {
    pump([] { return false; }, d);
  }

 private:
  void pump(const std::function<bool()>& done, Duration timeout) {
    const auto end = Clk::now() + timeout;
    reactor_.run_nowait();
    while (!done() && Clk::now() < end) {
      uv_run(reactor_.loop(), UV_RUN_NOWAIT);
      ::usleep(500);
    }
  }

  const char* name_;
  runtime::Reactor reactor_;
  ClientNode node_;
  std::unique_ptr<host::NetHost> host_;
  std::vector<NodeId> managers_;
  std::uint64_t next_req_ = 1;
};

Duration secs(double s) { return std::chrono::duration_cast<Duration>(std::chrono::duration<double>(s)); }

const char* job_state_name(cluster::JobState s) {
  switch (s) {
    case cluster::JobState::submitted: return "submitted";
    case cluster::JobState::running: return "running";
    case cluster::JobState::completed: return "completed";
    case cluster::JobState::failed: return "failed";
    case cluster::JobState::cancelled: return "cancelled";
    case cluster::JobState::timeout: return "timeout";
    case cluster::JobState::partial: return "partial";
  }
  return "unknown";
}
const char* wf_state_name(cluster::WfState s) {
  switch (s) {
    case cluster::WfState::pending: return "pending";
    case cluster::WfState::dispatched: return "dispatched";
    case cluster::WfState::running: return "running";
    case cluster::WfState::completed: return "completed";
    case cluster::WfState::failed: return "failed";
    case cluster::WfState::cancelled: return "cancelled";
  }
  return "unknown";
}
bool job_done(cluster::JobState s) {
  return s != cluster::JobState::submitted && s != cluster::JobState::running;
}
int exit_for(cluster::JobState s) {
  switch (s) {
    case cluster::JobState::completed: return kExitOk;
    case cluster::JobState::failed:
    case cluster::JobState::partial: return kExitThresholds;
    case cluster::JobState::cancelled:
    case cluster::JobState::timeout: return kExitAborted;
    default: return kExitOk;
  }
}
std::string addr_or_null(NodeId n) { return n ? json_str(host::node_addr_string(n)) : std::string("null"); }

std::string job_json(const cluster::JobView& v) {
  std::string wfs;
  for (const auto& w : v.workflows) {
    std::string stats = "null";
    if (!w.stats.empty()) {
      auto s = load::decode_stats(w.stats);
      if (s.ok()) {
        auto c = s->measured_counts();
        stats = fmt::format(
            "{{\"started\":{},\"completed\":{},\"iterations_failed\":{},\"dropped\":{},\"requests\":{},"
            "\"requests_ok\":{},\"requests_failed\":{}}}",
            s->started, s->completed, s->iterations_failed, s->dropped, c.executed, c.ok, c.failed);
      } else {
        stats = fmt::format("{{\"error\":{}}}", json_str(s.status().to_string()));
      }
    }
    std::string published;
    for (const auto& [k, val] : w.published) {
      // Appended piece by piece: GCC 12 at -O3 warns (-Wrestrict, a false positive) on a chained `+`.
      if (!published.empty()) published += ',';
      published += json_str(k);
      published += ':';
      published += json_str(val);
    }
    wfs += fmt::format(
        "{}{{\"name\":{},\"state\":\"{}\",\"completed\":{},\"failed\":{},\"attempts\":{},\"cores\":{},\"worker\":{},"
        "\"token\":{},\"error\":{},\"published\":{{{}}},\"stats\":{}}}",
        wfs.empty() ? "" : ",", json_str(w.name), wf_state_name(w.state), w.completed, w.failed, w.attempts, w.cores,
        addr_or_null(w.worker), w.token, json_str(w.error), published, stats);
  }
  std::string cerr;
  for (const auto& e : v.cancel_errors) cerr += (cerr.empty() ? "" : ",") + json_str(e);
  return fmt::format(
      "{{\"job_id\":{},\"state\":\"{}\",\"leader\":{},\"completed\":{},\"failed\":{},\"retries_used\":{},"
      "\"retry_budget\":{},\"error\":{},\"workflows\":[{}],\"cancel_errors\":[{}]}}",
      json_str(v.job_id), job_state_name(v.state), addr_or_null(v.leader), v.completed, v.failed, v.retries_used,
      v.retry_budget, json_str(v.error), wfs, cerr);
}

void print_job(const cluster::JobView& v) {
  std::printf("job %s: %s (leader %s) iterations completed=%llu failed=%llu retries=%u/%u\n", v.job_id.c_str(),
              job_state_name(v.state), v.leader ? host::node_addr_string(v.leader).c_str() : "none",
              static_cast<unsigned long long>(v.completed), static_cast<unsigned long long>(v.failed), v.retries_used,
              v.retry_budget);
  if (!v.error.empty()) std::printf("  error: %s\n", v.error.c_str());
  for (const auto& w : v.workflows) {
    std::printf("  workflow %s: %s completed=%llu failed=%llu attempts=%u worker=%s", w.name.c_str(),
                wf_state_name(w.state), static_cast<unsigned long long>(w.completed),
                static_cast<unsigned long long>(w.failed), w.attempts,
                w.worker ? host::node_addr_string(w.worker).c_str() : "-");
    if (!w.stats.empty()) {
      auto s = load::decode_stats(w.stats);
      if (s.ok()) {
        auto c = s->measured_counts();
        std::printf(" requests=%llu ok=%llu failed=%llu", static_cast<unsigned long long>(c.executed),
                    static_cast<unsigned long long>(c.ok), static_cast<unsigned long long>(c.failed));
      } else {
        std::printf(" (stats unreadable: %s)", s.status().to_string().c_str());
      }
    }
    std::printf("\n");
    if (!w.error.empty()) std::printf("    error: %s\n", w.error.c_str());
  }
}

// Polls the job until it is terminal, following the leader and moving to another manager when one
// does not answer. Returns the final view, or nullopt when no manager answered for `give_up`.
std::optional<cluster::JobView> wait_job(Client& c, const ClientArgs& a, const std::string& job, NodeId first) {
  NodeId target = first;
  std::size_t rr = 0;
  auto last_answer = Clk::now();
  const auto give_up = std::max(secs(a.request_timeout_s) * 6, secs(30));
  const auto deadline = a.wait_timeout_s > 0 ? Clk::now() + secs(a.wait_timeout_s) : Clk::time_point::max();
  while (Clk::now() < deadline) {
    cluster::StatusQuery q{0, job};
    auto r = c.call<cluster::StatusReply>(target, MsgType::status_query, q, secs(std::min(a.request_timeout_s, 2.0)));
    if (r && r->found) {
      last_answer = Clk::now();
      if (job_done(r->job.state)) return r->job;
      if (r->job.leader != 0 && r->job.leader != target) target = r->job.leader;
    } else {
      if (Clk::now() - last_answer > give_up) return std::nullopt;
      target = c.managers()[rr++ % c.managers().size()];
    }
    c.sleep_for(std::chrono::milliseconds(250));
  }
  std::fprintf(stderr, "hyperscale submit: --wait-timeout reached before the job finished\n");
  return std::nullopt;
}

int cmd_submit(const ClientArgs& a) {
  const char* name = "hyperscale submit";
  if (a.file.size() >= 5 && a.file.substr(a.file.size() - 5) == ".json") {
    std::fprintf(stderr, "%s: %s: a cluster job needs a TOML workflow file\n", name, a.file.c_str());
    return kExitUsage;
  }
  auto plan = load::load_plan_file(a.file);
  if (!plan.ok()) {
    std::fprintf(stderr, "%s\n", plan.status().message().c_str());
    return kExitUsage;
  }
  std::string text;
  {
    std::ifstream f(a.file);
    std::stringstream ss;
    ss << f.rdbuf();
    text = ss.str();
  }
  cluster::JobSpec spec;
  if (a.job_id.empty()) {
    std::random_device rd;
    spec.job_id = fmt::format("job-{:08x}{:08x}", rd(), rd());
  } else {
    spec.job_id = a.job_id;
  }
  spec.idempotency_key = a.idem_key.empty() ? spec.job_id : a.idem_key;
  spec.timeout_ms = static_cast<std::uint64_t>(a.timeout_s * 1000);
  for (const auto& w : plan->workflows) {
    cluster::WorkflowSpec ws;
    ws.name = w.name;
    ws.deps = w.depends_on;
    ws.vus = static_cast<std::uint32_t>(std::min<std::uint64_t>(w.vus, UINT32_MAX));
    ws.cores = 0;
    ws.priority = static_cast<cluster::Priority>(static_cast<int>(w.priority));
    ws.plan.assign(text.begin(), text.end());
    spec.workflows.push_back(std::move(ws));
  }
  Client c(name);
  if (int rc = c.start(a); rc != kExitOk) return rc;

  // Submit: follow not_leader redirects, retry retryable errors with the same key, move to another
  // manager when one does not answer.
  const auto deadline = Clk::now() + std::max(secs(a.request_timeout_s) * 4, secs(20));
  NodeId target = c.managers()[0];
  std::size_t rr = 1;
  int redirects = 0;
  std::optional<cluster::SubmitAck> accepted;
  std::string last_error = "no manager answered";
  while (Clk::now() < deadline) {
    cluster::Submit m{0, spec};
    auto ack = c.call<cluster::SubmitAck>(target, MsgType::submit, m, secs(a.request_timeout_s));
    if (!ack) {
      last_error = fmt::format("no reply from {}", host::node_addr_string(target));
      log::warn("client", "no_reply", "manager={}", host::node_addr_string(target));
      target = c.managers()[rr++ % c.managers().size()];
      redirects = 0;
      continue;
    }
    if (ack->accepted) {
      accepted = ack;
      break;
    }
    last_error = fmt::format("{} ({})", ack->error, cluster::name(ack->code));
    if (ack->code == cluster::Err::not_leader && ack->leader != 0 && redirects < 3) {
      ++redirects;
      target = ack->leader;
      continue;
    }
    if (!cluster::retryable(ack->code)) {
      std::fprintf(stderr, "%s: job rejected: %s\n", name, ack->error.c_str());
      return kExitUsage;
    }
    redirects = 0;
    if (ack->code == cluster::Err::not_leader) target = c.managers()[rr++ % c.managers().size()];
    c.sleep_for(std::chrono::milliseconds(std::clamp<std::uint32_t>(ack->retry_after_ms, 100, 2000)));
  }
  if (!accepted) {
    std::fprintf(stderr, "%s: could not submit the job: %s\n", name, last_error.c_str());
    return kExitInfrastructure;
  }
  const NodeId leader = accepted->leader != 0 ? accepted->leader : target;
  if (!a.wait) {
    if (a.json)
      std::printf("{\"job_id\":%s,\"leader\":%s}\n", json_str(accepted->job_id).c_str(), addr_or_null(leader).c_str());
    else
      std::printf("submitted job %s (leader %s)\n", accepted->job_id.c_str(), host::node_addr_string(leader).c_str());
    return kExitOk;
  }
  if (!a.json) std::printf("submitted job %s; waiting\n", accepted->job_id.c_str());
  std::fflush(stdout);
  auto v = wait_job(c, a, accepted->job_id, target);
  if (!v) {
    std::fprintf(stderr, "%s: lost contact with every manager while waiting for job %s\n", name,
                 accepted->job_id.c_str());
    return kExitInfrastructure;
  }
  if (a.json)
    std::printf("%s\n", job_json(*v).c_str());
  else
    print_job(*v);
  return exit_for(v->state);
}

int cmd_status(const ClientArgs& a) {
  const char* name = "hyperscale status";
  Client c(name);
  if (int rc = c.start(a); rc != kExitOk) return rc;
  for (std::size_t i = 0; i < c.managers().size(); ++i) {
    const NodeId to = c.managers()[i];
    if (a.job.empty()) {
      cluster::NodeQuery q{0};
      auto r = c.call<cluster::NodeStatus>(to, MsgType::node_query, q, secs(a.request_timeout_s));
      if (!r) continue;
      std::string workers;
      for (auto& w : r->workers)
        workers += fmt::format("{}{{\"node\":{},\"healthy\":{},\"total_cores\":{},\"available_cores\":{}}}",
                               workers.empty() ? "" : ",", json_str(host::node_addr_string(w.node)), w.healthy,
                               w.total_cores, w.available_cores);
      std::string jobs;
      for (auto& j : r->active_job_ids) jobs += (jobs.empty() ? "" : ",") + json_str(j);
      if (a.json)
        std::printf(
            "{\"node\":%s,\"is_leader\":%s,\"term\":%llu,\"leader\":%s,\"worker_count\":%u,\"healthy_worker_count\":%u,"
            "\"total_cores\":%u,\"available_cores\":%u,\"active_job_ids\":[%s],\"active_workflow_count\":%u,"
            "\"workers\":[%s]}\n",
            json_str(host::node_addr_string(r->node)).c_str(), r->is_leader ? "true" : "false",
            static_cast<unsigned long long>(r->term), addr_or_null(r->leader).c_str(), r->worker_count,
            r->healthy_worker_count, r->total_cores, r->available_cores, jobs.c_str(), r->active_workflow_count,
            workers.c_str());
      else
        std::printf("manager %s: leader=%s term=%llu (this node leads: %s) workers=%u healthy=%u cores=%u/%u free, "
                    "active jobs=%zu workflows=%u\n",
                    host::node_addr_string(r->node).c_str(),
                    r->leader ? host::node_addr_string(r->leader).c_str() : "none",
                    static_cast<unsigned long long>(r->term), r->is_leader ? "yes" : "no", r->worker_count,
                    r->healthy_worker_count, r->available_cores, r->total_cores, r->active_job_ids.size(),
                    r->active_workflow_count);
      return kExitOk;
    }
    cluster::StatusQuery q{0, a.job};
    auto r = c.call<cluster::StatusReply>(to, MsgType::status_query, q, secs(a.request_timeout_s));
    if (!r) continue;
    if (!r->found) {
      if (i + 1 < c.managers().size()) continue;  // another manager may hold it
      std::fprintf(stderr, "%s: job %s not found\n", name, a.job.c_str());
      return kExitUsage;
    }
    if (a.json)
      std::printf("%s\n", job_json(r->job).c_str());
    else
      print_job(r->job);
    return kExitOk;
  }
  std::fprintf(stderr, "%s: no manager answered within %.1fs\n", name, a.request_timeout_s);
  return kExitInfrastructure;
}

int cmd_cancel(const ClientArgs& a) {
  const char* name = "hyperscale cancel";
  Client c(name);
  if (int rc = c.start(a); rc != kExitOk) return rc;
  const auto deadline = Clk::now() + std::max(secs(a.request_timeout_s) * 4, secs(20));
  NodeId target = c.managers()[0];
  std::size_t rr = 1;
  int redirects = 0;
  std::string last_error = "no manager answered";
  while (Clk::now() < deadline) {
    cluster::CancelJob m{0, a.job, 0, "hyperscale cancel"};
    auto r = c.call<cluster::CancelReply>(target, MsgType::cancel_job, m, secs(a.request_timeout_s));
    if (!r) {
      last_error = fmt::format("no reply from {}", host::node_addr_string(target));
      target = c.managers()[rr++ % c.managers().size()];
      redirects = 0;
      continue;
    }
    if (r->success || r->already_cancelled || r->already_completed) {
      if (r->already_completed)
        std::printf("job %s had already finished\n", a.job.c_str());
      else if (r->already_cancelled)
        std::printf("job %s was already cancelled\n", a.job.c_str());
      else
        std::printf("job %s cancelled (%u workflows stopped)\n", a.job.c_str(), r->cancelled_workflow_count);
      return kExitOk;
    }
    last_error = r->error;
    if (r->code == cluster::Err::not_leader && r->leader != 0 && redirects < 3) {
      ++redirects;
      target = r->leader;
      continue;
    }
    if (!cluster::retryable(r->code)) {
      std::fprintf(stderr, "%s: %s\n", name, r->error.c_str());
      return kExitUsage;
    }
    redirects = 0;
    if (r->code == cluster::Err::not_leader) target = c.managers()[rr++ % c.managers().size()];
    c.sleep_for(std::chrono::milliseconds(250));
  }
  std::fprintf(stderr, "%s: could not cancel job %s: %s\n", name, a.job.c_str(), last_error.c_str());
  return kExitInfrastructure;
}

void common_opts(CLI::App* sub, ClientArgs& a) {
  sub->add_option("--manager", a.managers, "Manager HOST:PORT (repeat or comma-separate; default: cluster.managers)");
  sub->add_option("--config", a.config, "Cluster config file (the secret and cluster.managers; docs/daemons.md)");
  sub->add_option("--request-timeout", a.request_timeout_s, "Seconds to wait for one manager's reply")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
}

}  // namespace

void register_client(CLI::App& app, Command& cmd) {
  {
    auto a = std::make_shared<ClientArgs>();
    auto* sub = app.add_subcommand("submit", "Submit a workflow file as a job to a cluster's managers");
    common_opts(sub, *a);
    sub->add_option("file", a->file, "TOML workflow file")->required();
    sub->add_flag("--wait", a->wait, "Wait until the job finishes and print its result");
    sub->add_flag("--json", a->json, "Print JSON");
    sub->add_option("--job-id", a->job_id, "Job id (default: random)");
    sub->add_option("--idempotency-key", a->idem_key, "Idempotency key (default: the job id)");
    sub->add_option("--timeout", a->timeout_s, "Job timeout in seconds, enforced by the manager (0: none)")
        ->check(CLI::Range(0.0, 1e7));
    sub->add_option("--wait-timeout", a->wait_timeout_s, "With --wait: give up after this many seconds (0: never)")
        ->check(CLI::Range(0.0, 1e7));
    sub->callback([&cmd, a]() { cmd.run = [a]() { return cmd_submit(*a); }; });
  }
  {
    auto a = std::make_shared<ClientArgs>();
    auto* sub = app.add_subcommand("status", "Show a job's status, or (without JOB) a manager's node status");
    common_opts(sub, *a);
    sub->add_option("job", a->job, "Job id");
    sub->add_flag("--json", a->json, "Print JSON");
    sub->callback([&cmd, a]() { cmd.run = [a]() { return cmd_status(*a); }; });
  }
  {
    auto a = std::make_shared<ClientArgs>();
    auto* sub = app.add_subcommand("cancel", "Cancel a job");
    common_opts(sub, *a);
    sub->add_option("job", a->job, "Job id")->required();
    sub->callback([&cmd, a]() { cmd.run = [a]() { return cmd_cancel(*a); }; });
  }
}

}  // namespace hs::cli
