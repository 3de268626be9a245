// Client commands of a cluster: `hyperscale submit | status | watch | results | cancel` (docs/daemons.md).
//
// The client is a small node::Node run by a NetHost on a free loopback port (wire role Client) with
// the cluster's secret, loaded like a daemon's (--config FILE and/or the HS_* environment: the
// secret from wire.secret_file or the variable named by wire.secret_env). It speaks the role
// protocol (cluster/messages.hpp) on channel kRole: Submit, StatusQuery, WatchQuery, CancelJob, NodeQuery.
//
// Exit codes (`submit --wait` and `results` as `hyperscale run` for the job's merged statistics,
// job_results.hpp): 0 ok (job completed, thresholds passed); 2 invalid input (bad workflow file,
// rejected job, unknown job); 3 a threshold failed, or the job failed or ended partial; 4 the job was
// cancelled or timed out; 5 no manager answered (unreachable, no leader in time), or every request of
// the job failed to connect to its target; 6 (`results`) the job has not ended yet.
//
// Reaching the cluster (every command): one request waits at most --request-timeout for its reply;
// a manager that refuses the connection, or closes it on our frames, is left at once for the next
// one and not tried again for a while (Targets); not_leader replies are followed unless they name a
// manager that just failed; the whole command gives up after --deadline, or earlier when every
// manager refused us twice in a row. Failures are summarised once per command, not logged per try.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "hyperscale/base/enum_names.hpp"
#include "cli/cluster_config.hpp"
#include "cli/commands.hpp"
#include "cli/gate_view.hpp"
#include "cli/job_results.hpp"
#include "cli/job_windows.hpp"
#include "hyperscale/base/log.hpp"
#include "hyperscale/cluster/messages.hpp"
#include "hyperscale/cluster/mux.hpp"
#include "hyperscale/host/address.hpp"
#include "hyperscale/host/daemon.hpp"
#include "hyperscale/load/plan.hpp"
#include "hyperscale/load/report.hpp"
#include "hyperscale/load/stats_codec.hpp"

extern char** environ;

namespace hs::cli {

namespace {

using cluster::MsgType;
using cluster::NodeId;
using Clk = std::chrono::steady_clock;

struct ClientArgs {
  std::vector<std::string> managers;     // --manager (repeatable, comma-separated)
  std::vector<std::string> gates;        // --gate: talk to a gate tier instead (docs/gates.md)
  std::vector<std::string> datacenters;  // submit --datacenters (gates only)
  std::uint32_t datacenter_count = 0, min_datacenters = 0;
  double best_effort_s = 0;
  std::string config;
  std::string file;
  std::string job;
  std::string job_id, idem_key;
  std::string out;  // results --out
  bool wait = false, json = false;
  double timeout_s = 0;          // job timeout sent with the job (0: none)
  double request_timeout_s = 5;  // one manager's reply
  double deadline_s = 20;        // the whole attempt to reach the cluster
  double wait_timeout_s = 0;     // --wait gives up after this (0: never)
};

// Receives replies and keeps them by request id.
struct ClientNode final : node::Node {
  std::map<std::uint64_t, std::pair<MsgType, std::vector<std::uint8_t>>> replies;
  std::uint64_t malformed = 0;
  void on_start(node::Context&) override {}
  void on_timer(node::Context&, node::TimerId, std::uint64_t) override {}
  void on_message(node::Context&, NodeId from, std::span<const std::uint8_t> msg) override {
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
      case MsgType::submit_ack:
        take(cluster::SubmitAck{});
        break;
      case MsgType::status_reply:
        take(cluster::StatusReply{});
        break;
      case MsgType::cancel_reply:
        take(cluster::CancelReply{});
        break;
      case MsgType::node_status:
        take(cluster::NodeStatus{});
        break;
      case MsgType::watch_reply:
        take(cluster::WatchReply{});
        break;
      default:
        return;
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

// Why a request got no usable reply.
enum class Fail : std::uint8_t { none, refused, closed, no_reply, send_failed, malformed };
constexpr EnumNames<Fail, 6> kFailNames{{"ok", "unreachable", "closed", "no_reply", "send_failed", "malformed"}};
static_assert(kFailNames.covers(Fail::malformed));

const char* fail_name(Fail f) { return kFailNames(f); }
template <typename Reply>
struct Outcome {
  std::optional<Reply> reply;
  Fail fail = Fail::none;
  std::string detail;
};

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
    // --manager wins over cluster.managers of --config and HS_CLUSTER_MANAGERS; its values are checked
    // here so that an error names the option the user typed.
    if (!a.managers.empty() && !a.gates.empty()) {
      std::fprintf(stderr, "%s: --manager and --gate name two tiers; give one of them\n", name_);
      return kExitUsage;
    }
    // --gate: the gates take the client protocol exactly as managers do (docs/gates.md); they are
    // the targets, and the checks below name the option the user typed.
    const bool to_gates = !a.gates.empty();
    const char* opt = to_gates ? "--gate" : "--manager";
    std::string managers;
    for (const auto& m : to_gates ? a.gates : a.managers) {
      if (m.empty()) continue;
      if (auto id = host::parse_node_addr(m); !id.ok()) {
        std::fprintf(stderr, "%s: %s %s: %s\n", name_, opt, m.c_str(), id.status().message().c_str());
        return kExitUsage;
      }
      managers += (managers.empty() ? "" : ",") + m;
    }
    if (!managers.empty()) env[to_gates ? "HS_CLUSTER_GATES" : "HS_CLUSTER_MANAGERS"] = managers;
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
      // Targets: --gate, else --manager / cluster.managers, else a config's cluster.gates.
      const bool gates = to_gates || cfg->list("cluster.managers").empty();
      const char* key = gates ? "cluster.gates" : "cluster.managers";
      auto ids = parse_managers(cfg->list(key));
      if (!ids.ok()) {
        std::fprintf(stderr, "%s: %s: %s\n", name_,
                     to_gates             ? "--gate"
                     : a.managers.empty() ? key
                                          : "--manager",
                     ids.status().message().c_str());
        return kExitUsage;
      }
      if (ids->empty()) {
        std::fprintf(stderr,
                     "%s: no cluster to ask: give the managers with --manager HOST:PORT or the gates with "
                     "--gate HOST:PORT (or cluster.managers / cluster.gates in --config)\n",
                     name_);
        return kExitUsage;
      }
      managers_ = *ids;
      gates_ = gates;
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
  bool gates() const { return gates_; }  // the targets are gates

  // Sends one request and waits for its reply, or until the transport shows that this request
  // cannot be answered: the connection was refused (or timed out), or the manager closed it after
  // our frames went out (what a node does with frames it cannot authenticate).
  template <typename Reply, typename Msg>
  Outcome<Reply> call(NodeId to, MsgType t, Msg& m, Duration timeout) {
    Outcome<Reply> out;
    m.req = next_req_++;
    auto bytes = cluster::encode(t, m);
    bytes.insert(bytes.begin(), static_cast<std::uint8_t>(cluster::kRole));
    const net::Endpoint ep = host::endpoint(to);
    const net::PeerLink before = host_->transport().peer_link(ep);
    Status st = host_->run([&](node::Context& ctx) { ctx.send(to, std::move(bytes)); });
    if (!st.ok()) {
      out.fail = Fail::send_failed;
      out.detail = st.to_string();
      return out;
    }
    const std::uint64_t req = m.req;
    net::PeerLink now;
    auto link_failed = [&] {
      now = host_->transport().peer_link(ep);
      return now.connect_failures_total > before.connect_failures_total ||
             now.closed_after_send > before.closed_after_send;
    };
    pump([&] { return node_.replies.count(req) > 0 || link_failed(); }, timeout);
    auto it = node_.replies.find(req);
    if (it == node_.replies.end()) {
      if (now.closed_after_send > before.closed_after_send) {
        out.fail = Fail::closed;
        out.detail = "closed the connection on our frames without answering";
      } else if (now.connect_failures_total > before.connect_failures_total || now.connect_failures > 0) {
        // Failed to connect during this request, or still in the backoff after failed connects
        // (no connection since): unreachable either way, not a manager that is slow to answer.
        out.fail = Fail::refused;
        out.detail = now.last_connect_error.empty() ? "cannot connect" : now.last_connect_error;
      } else {
        out.fail = Fail::no_reply;
        out.detail = fmt::format("no reply within {:.1f}s", std::chrono::duration<double>(timeout).count());
      }
      return out;
    }
    Reply r;
    const bool ok = cluster::decode(it->second.second, r);
    node_.replies.erase(it);
    if (!ok) {
      out.fail = Fail::malformed;
      out.detail = "malformed reply";
      return out;
    }
    out.reply = std::move(r);
    return out;
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
  bool gates_ = false;
  std::uint64_t next_req_ = 1;
};

Duration secs(double s) { return std::chrono::duration_cast<Duration>(std::chrono::duration<double>(s)); }

bool job_done(cluster::JobState s) { return s != cluster::JobState::submitted && s != cluster::JobState::running; }
std::string addr_or_null(NodeId n) { return n ? json_str(host::node_addr_string(n)) : std::string("null"); }

std::string parts_json(const cluster::WorkflowView& w) {
  std::string out;
  for (std::size_t k = 0; k < w.parts.size(); ++k) {
    const auto& p = w.parts[k];
    out += fmt::format(
        "{}{{\"part\":{},\"state\":\"{}\",\"worker\":{},\"token\":{},\"attempts\":{},\"shard_first\":{},"
        "\"cores\":{},\"completed\":{},\"failed\":{},\"lost\":{},\"error\":{}}}",
        out.empty() ? "" : ",", k, cluster::name(p.state), addr_or_null(p.worker), p.token, p.attempts, p.shard_first,
        p.cores, p.completed, p.failed, p.lost, json_str(p.error));
  }
  return out;
}

std::string job_json(const cluster::JobView& v) {
  std::string wfs;
  for (const auto& w : v.workflows) {
    std::string stats = "null";
    auto got = workflow_stats(w);
    if (!got.ok()) {
      stats = fmt::format("{{\"error\":{}}}", json_str(got.status().to_string()));
    } else if (got->has_value()) {
      const load::WorkflowStats& s = **got;
      auto c = s.measured_counts();
      stats = fmt::format(
          "{{\"started\":{},\"completed\":{},\"iterations_failed\":{},\"dropped\":{},\"requests\":{},"
          "\"requests_ok\":{},\"requests_failed\":{},\"elapsed_s\":{:.3f},\"measured_s\":{:.3f}}}",
          s.started, s.completed, s.iterations_failed, s.dropped, c.executed, c.ok, c.failed, to_seconds(s.elapsed),
          to_seconds(s.measured));
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
        "{}{{\"name\":{},\"state\":\"{}\",\"completed\":{},\"failed\":{},\"lost\":{},\"attempts\":{},\"cores\":{},"
        "\"worker\":{},\"token\":{},\"error\":{},\"published\":{{{}}},\"stats\":{},\"shard_total\":{},\"parts\":[{}]}}",
        wfs.empty() ? "" : ",", json_str(w.name), cluster::name(w.state), w.completed, w.failed, w.lost, w.attempts,
        w.cores, addr_or_null(w.worker), w.token, json_str(w.error), published, stats, w.shard_total, parts_json(w));
  }
  std::string cerr;
  for (const auto& e : v.cancel_errors) cerr += (cerr.empty() ? "" : ",") + json_str(e);
  std::string out = fmt::format(
      "{{\"job_id\":{},\"state\":\"{}\",\"leader\":{},\"completed\":{},\"failed\":{},\"retries_used\":{},"
      "\"retry_budget\":{},\"error\":{},\"workflows\":[{}],\"cancel_errors\":[{}]",
      json_str(v.job_id), cluster::name(v.state), addr_or_null(v.leader), v.completed, v.failed, v.retries_used,
      v.retry_budget, json_str(v.error), wfs, cerr);
  if (!v.datacenters.empty())
    out += fmt::format(",\"fence\":{},\"owner\":{},\"cancel_complete\":{},\"datacenters\":{}", v.fence,
                       addr_or_null(v.owner), v.cancel_complete, datacenters_json(v));
  return out + "}";
}

void print_job(const cluster::JobView& v) {
  std::printf("job %s: %s (leader %s) iterations completed=%llu failed=%llu retries=%u/%u\n", v.job_id.c_str(),
              cluster::name(v.state), v.leader ? host::node_addr_string(v.leader).c_str() : "none",
              static_cast<unsigned long long>(v.completed), static_cast<unsigned long long>(v.failed), v.retries_used,
              v.retry_budget);
  if (!v.error.empty()) std::printf("  error: %s\n", v.error.c_str());
  for (const auto& w : v.workflows) {
    std::printf("  workflow %s: %s completed=%llu failed=%llu attempts=%u worker=%s", w.name.c_str(),
                cluster::name(w.state), static_cast<unsigned long long>(w.completed),
                static_cast<unsigned long long>(w.failed), w.attempts,
                w.worker ? host::node_addr_string(w.worker).c_str() : "-");
    if (auto got = workflow_stats(w); !got.ok()) {
      std::printf(" (stats unreadable: %s)", got.status().to_string().c_str());
    } else if (got->has_value()) {
      auto c = (*got)->measured_counts();
      std::printf(" requests=%llu ok=%llu failed=%llu", static_cast<unsigned long long>(c.executed),
                  static_cast<unsigned long long>(c.ok), static_cast<unsigned long long>(c.failed));
    }
    if (w.lost > 0) std::printf(" lost=%llu", static_cast<unsigned long long>(w.lost));
    std::printf("\n");
    for (std::size_t k = 0; w.parts.size() > 1 && k < w.parts.size(); ++k) {
      const auto& p = w.parts[k];
      std::printf("    part %zu: %s shards %u-%u worker=%s completed=%llu failed=%llu lost=%llu attempts=%u\n", k,
                  cluster::name(p.state), p.shard_first, p.shard_first + p.cores - 1,
                  p.worker ? host::node_addr_string(p.worker).c_str() : "-",
                  static_cast<unsigned long long>(p.completed), static_cast<unsigned long long>(p.failed),
                  static_cast<unsigned long long>(p.lost), p.attempts);
    }
    if (!w.error.empty()) std::printf("    error: %s\n", w.error.c_str());
  }
  print_datacenters(v);
}

// The managers a command may ask, and what each did the last time. A manager that failed at the
// connection level (refused, closed on us) or did not reply is "down" for a short while: it is not
// picked again, and a not_leader redirect naming it is not followed, until every other manager has
// had its turn. Bounded: the configured managers plus at most kMaxExtra leaders learned from replies.
class Targets {
 public:
  explicit Targets(const std::vector<NodeId>& managers) : order_(managers), configured_(managers.size()) {
    for (NodeId m : managers) seen_[m];
  }

  // Adds the peers a node named (NodeStatus::peers) after the configured targets, at most kMaxExtra
  // of them: a client given one address still reaches the others once that one is gone (GTE-04).
  // Returns how many were new.
  std::size_t learn(const std::vector<NodeId>& peers) {
    std::size_t added = 0;
    for (NodeId p : peers) {
      if (p == 0 || std::find(order_.begin(), order_.end(), p) != order_.end()) continue;
      if (order_.size() >= configured_ + kMaxExtra) break;
      order_.push_back(p);
      seen_[p];
      ++added;
    }
    return added;
  }

  NodeId first() const { return order_.front(); }
  // The next configured manager after `after` that is not down; when all are down, the one whose
  // down time ends first (so a restarted manager is found again).
  NodeId next(NodeId after) const {
    const auto now = Clk::now();
    std::size_t start = 0;
    for (std::size_t i = 0; i < order_.size(); ++i)
      if (order_[i] == after) start = i + 1;
    NodeId best = order_[start % order_.size()];
    for (std::size_t k = 0; k < order_.size(); ++k) {
      const NodeId m = order_[(start + k) % order_.size()];
      if (!down(m, now)) return m;
      if (seen_.at(m).down_until < seen_.at(best).down_until) best = m;
    }
    return best;
  }
  bool down(NodeId m, Clk::time_point now = Clk::now()) const {
    auto it = seen_.find(m);
    return it != seen_.end() && it->second.down_until > now;
  }
  void failed(NodeId m, Fail f, const std::string& detail) {
    State* st = state(m);
    if (st == nullptr) return;
    st->last = f;
    st->detail = detail;
    ++st->fails[static_cast<std::size_t>(f)];
    st->streak = f == Fail::refused || f == Fail::closed ? st->streak + 1 : 0;
    if (st->streak == 1) st->streak_since = Clk::now();
    // Long enough that the other managers get their turn first; short enough for a restart.
    st->down_until = Clk::now() + std::chrono::milliseconds(f == Fail::no_reply ? 2000 : 500);
  }
  void answered(NodeId m) {
    if (State* st = state(m)) {
      st->last = Fail::none;
      st->streak = 0;
      st->down_until = {};
      st->answered = true;
    }
  }
  // Every configured manager refused us, or closed the connection on us, at least twice in a row
  // and for kGiveUpAfter (long enough for daemons started just before the command to listen):
  // nothing is listening, or nobody accepts our frames. Waiting out the deadline would not help.
  bool hopeless() const {
    for (NodeId m : order_)
      if (!gone(m)) return false;
    return true;
  }
  bool gone(NodeId m) const {
    auto it = seen_.find(m);
    return it != seen_.end() && it->second.streak >= 2 && Clk::now() - it->second.streak_since >= kGiveUpAfter;
  }
  // No manager answered, and some closed the connection on our frames.
  bool closed_on_us() const {
    bool closed = false;
    for (NodeId m : order_) {
      if (seen_.at(m).answered) return false;
      closed = closed || seen_.at(m).last == Fail::closed;
    }
    return closed;
  }
  // One line: what each manager did ("127.0.0.1:7101 unreachable: connection refused (x3)").
  std::string summary() const {
    std::string out;
    for (NodeId m : order_) {
      const State& st = seen_.at(m);
      std::uint32_t n = 0;
      for (auto c : st.fails) n += c;
      if (n == 0 && !st.answered) continue;
      out += out.empty() ? "" : "; ";
      out += host::node_addr_string(m);
      if (st.last == Fail::none) {
        out += " answered";
      } else {
        out += fmt::format(" {}: {}", fail_name(st.last), st.detail);
        if (n > 1) out += fmt::format(" (x{})", n);
      }
    }
    return out.empty() ? std::string("no manager was tried") : out;
  }
  // Advice for the user when the failures say something specific.
  std::string hint() const {
    if (closed_on_us())
      return "managers closed the connection on our frames without answering: they were most likely "
             "rejected as unauthenticated (the cluster secret -- wire.secret_file / wire.secret_env -- or "
             "wire.cluster_id differs from the managers'; see the managers' hs_wire_rejected_total)";
    bool refused = true;
    for (NodeId m : order_) refused = refused && seen_.at(m).last == Fail::refused;
    if (refused)
      return "nothing accepts connections at these addresses: are the managers running, and is --manager right?";
    return "";
  }

 private:
  static constexpr std::size_t kMaxExtra = 16;
  static constexpr auto kGiveUpAfter = std::chrono::seconds(3);
  struct State {
    Fail last = Fail::none;
    std::string detail;
    std::array<std::uint32_t, 6> fails{};
    std::uint32_t streak = 0;
    Clk::time_point streak_since{};
    Clk::time_point down_until{};
    bool answered = false;
  };
  State* state(NodeId m) {
    auto it = seen_.find(m);
    if (it != seen_.end()) return &it->second;
    if (seen_.size() >= order_.size() + kMaxExtra) return nullptr;  // a leader learned from a reply
    return &seen_[m];
  }
  std::vector<NodeId> order_;
  std::size_t configured_ = 0;
  std::map<NodeId, State> seen_;
};

// How a command ended when it could not reach the cluster.
int unreachable(const char* name, const std::string& what, const Targets& t, const ClientArgs& a) {
  std::fprintf(stderr, "%s: %s: %s\n", name, what.c_str(), t.summary().c_str());
  const std::string h = t.hint();
  if (!h.empty())
    std::fprintf(stderr, "%s: %s\n", name, h.c_str());
  else
    std::fprintf(stderr, "%s: gave up after %.1fs (--deadline; --request-timeout %.1fs per reply)\n", name,
                 a.deadline_s, a.request_timeout_s);
  return kExitInfrastructure;
}

// The next step of the client's retry loop: stop (the attempt has its answer), or ask `target`
// after waiting `wait` (zero: at once).
struct Next {
  bool done = false;
  NodeId target = 0;
  Duration wait{};
};
Next finish() { return Next{true, 0, Duration::zero()}; }

// Ask `next` at once, or after a little wait when it is down too (no spinning on refusals).
Next ask_next(const Targets& t, NodeId next) {
  return Next{false, next, t.down(next) ? Duration(std::chrono::milliseconds(200)) : Duration::zero()};
}

// The client's one retry loop: asks managers, starting with the first, one attempt at a time, until an
// attempt finishes, --deadline passes, or every manager is hopeless. `attempt(target, timeout)` sends one
// request (timeout: --request-timeout, cut to what is left of the deadline) and says what to do next.
// Returns false when the cluster could not be reached in time (`t` says why).
bool retry_managers(Client& c, Targets& t, const ClientArgs& a,
                    const std::function<Next(NodeId target, Duration timeout)>& attempt) {
  const auto deadline = Clk::now() + secs(a.deadline_s);
  NodeId target = t.first();
  while (Clk::now() < deadline && !t.hopeless()) {
    const auto left = std::chrono::duration_cast<Duration>(deadline - Clk::now());
    const Next n = attempt(target, std::min(secs(a.request_timeout_s), left));
    if (n.done) return true;
    target = n.target;
    if (n.wait > Duration::zero()) c.sleep_for(n.wait);
  }
  return false;
}

// Sends a request that only the datacenter leader (or the job's leader) answers with success:
// follows not_leader redirects (at most 3 in a row, never to a manager that just failed), retries
// retryable errors with the same request, moves on at once from a manager that failed. Returns the
// final reply (accepted, or rejected for good), or nullopt when the cluster could not be reached
// before the deadline (`t` says why).
template <typename Reply, typename Msg>
std::optional<std::pair<Reply, NodeId>> ask_leader(Client& c, Targets& t, const ClientArgs& a, MsgType type,
                                                   const Msg& msg, const std::function<bool(const Reply&)>& final) {
  std::optional<std::pair<Reply, NodeId>> out;
  int redirects = 0;
  retry_managers(c, t, a, [&](NodeId target, Duration timeout) {
    Msg m = msg;
    auto r = c.call<Reply>(target, type, m, timeout);
    if (!r.reply) {
      t.failed(target, r.fail, r.detail);
      redirects = 0;
      return ask_next(t, t.next(target));
    }
    t.answered(target);
    const Reply& rep = *r.reply;
    if (final(rep) || !cluster::retryable(rep.code)) {
      out.emplace(rep, target);
      return finish();
    }
    if (rep.code == cluster::Err::not_leader && rep.leader != 0 && rep.leader != target && !t.down(rep.leader) &&
        redirects < 3) {
      ++redirects;
      return Next{false, rep.leader, Duration::zero()};
    }
    redirects = 0;
    std::uint32_t wait_ms = 250;
    if constexpr (requires { rep.retry_after_ms; }) wait_ms = std::clamp<std::uint32_t>(rep.retry_after_ms, 100, 2000);
    return Next{false, rep.code == cluster::Err::not_leader ? t.next(target) : target,
                std::chrono::duration_cast<Duration>(std::chrono::milliseconds(wait_ms))};
  });
  return out;
}

// Asks `target` (the leader, or a manager that names it) for the job's live windows from where `jw`
// is, page after page while the leader has more. Returns the job's state from the last reply, or
// nullopt when no reply came (the caller polls again later); `target` follows the leader.
std::optional<cluster::JobState> fetch_windows(Client& c, const ClientArgs& a, const std::string& job, NodeId& target,
                                               JobWindows& jw, std::string* job_error = nullptr) {
  std::optional<cluster::JobState> state;
  for (int page = 0; page < 50; ++page) {
    cluster::WatchQuery q{0, job, jw.next_from(), 0};
    auto r = c.call<cluster::WatchReply>(target, MsgType::watch_query, q, secs(std::min(a.request_timeout_s, 2.0)));
    if (!r.reply) return state;
    if (r.reply->code == cluster::Err::not_leader && r.reply->leader != 0 && r.reply->leader != target) {
      target = r.reply->leader;
      continue;
    }
    if (r.reply->code == cluster::Err::invalid) {
      // The node serves no live windows (a gate without a merger): said once; the job goes on.
      if (jw.first_report(r.reply->error))
        std::fprintf(stderr, "hyperscale: job %s: no live view: %s\n", job.c_str(), r.reply->error.c_str());
      return r.reply->state;
    }
    if (r.reply->code != cluster::Err::none) return state;
    state = r.reply->state;
    if (job_error) *job_error = r.reply->job_error;
    if (Status st = jw.add(*r.reply); !st.ok())
      std::fprintf(stderr, "hyperscale: job %s: live windows: %s\n", job.c_str(), st.message().c_str());
    if (!jw.more()) break;
  }
  return state;
}

// Prints the live view when a new window has closed since the last print.
void print_live(const JobWindows& jw, const load::Plan& plan, std::uint64_t& printed) {
  if (jw.series().empty() || jw.newest() + 1 <= printed) return;
  printed = jw.newest() + 1;
  for (const auto& l : jw.lines(plan)) std::printf("%s\n", l.c_str());
  std::fflush(stdout);
}

// Asks `at` for its tier's peers (NodeStatus::peers) and adds them to the targets; false when it did
// not answer (the caller asks again later).
bool discover(Client& c, Targets& t, const ClientArgs& a, NodeId at) {
  cluster::NodeQuery q{0};
  auto r = c.call<cluster::NodeStatus>(at, MsgType::node_query, q, secs(std::min(a.request_timeout_s, 2.0)));
  if (!r.reply) return false;
  t.learn(r.reply->peers);
  return true;
}

// Polls the job until it is terminal, following the job's leader and moving to another manager
// when one does not answer. Returns the final view, or nullopt when no manager answered for
// --deadline, or --wait-timeout passed.
std::optional<cluster::JobView> wait_job(Client& c, Targets& t, const ClientArgs& a, const std::string& job,
                                         NodeId first, const load::Plan* live_plan = nullptr) {
  NodeId target = first;
  auto last_answer = Clk::now();
  JobWindows jw;
  jw.set_worker_names([](std::uint64_t n) { return host::node_addr_string(n); });
  std::uint64_t printed = 0;
  auto next_watch = Clk::now();
  bool discovered = false;
  const auto deadline = a.wait_timeout_s > 0 ? Clk::now() + secs(a.wait_timeout_s) : Clk::time_point::max();
  while (Clk::now() < deadline) {
    cluster::StatusQuery q{0, job};
    auto r = c.call<cluster::StatusReply>(target, MsgType::status_query, q, secs(std::min(a.request_timeout_s, 2.0)));
    if (r.reply && r.reply->found) {
      t.answered(target);
      last_answer = Clk::now();
      // Once: the other nodes of the tier, so that losing every node given on the command line
      // does not lose the job (GTE-04).
      if (!discovered) discovered = discover(c, t, a, target);
      // A gate's job is final once every datacenter share ended too (a cancel's stops confirmed).
      const auto& dcs = r.reply->job.datacenters;
      const bool shares_done = r.reply->job.cancel_complete ||
                               std::all_of(dcs.begin(), dcs.end(), [](const auto& d) { return job_done(d.state); });
      if (job_done(r.reply->job.state) && shares_done) return r.reply->job;
      const NodeId leader = r.reply->job.leader;
      if (leader != 0 && leader != target && !t.down(leader)) target = leader;
      if (live_plan != nullptr && Clk::now() >= next_watch && leader != 0) {
        // The live view once a second: the windows the leader merged since the last look.
        next_watch = Clk::now() + std::chrono::seconds(1);
        NodeId wt = leader;
        fetch_windows(c, a, job, wt, jw);
        print_live(jw, *live_plan, printed);
      }
    } else if (r.reply && r.reply->code == cluster::Err::not_leader && r.reply->leader != 0 &&
               !t.down(r.reply->leader)) {
      t.answered(target);  // a gate whose copy may lag names its leader
      last_answer = Clk::now();
      target = r.reply->leader;
    } else {
      if (r.reply)
        t.answered(target);  // answered, but holds no copy of the job: ask another
      else
        t.failed(target, r.fail, r.detail);
      if (Clk::now() - last_answer > secs(a.deadline_s)) {
        std::fprintf(stderr, "hyperscale submit: no manager answered about job %s for %.1fs (--deadline): %s\n",
                     job.c_str(), a.deadline_s, t.summary().c_str());
        return std::nullopt;
      }
      target = t.next(target);
    }
    c.sleep_for(std::chrono::milliseconds(250));
  }
  std::fprintf(stderr, "hyperscale submit: --wait-timeout reached before job %s finished\n", job.c_str());
  return std::nullopt;
}

std::string leader_text(NodeId leader) {
  return leader != 0 ? host::node_addr_string(leader) : std::string("none yet");
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
  spec.datacenters = a.datacenters;
  spec.datacenter_count = a.datacenter_count;
  spec.min_datacenters = a.min_datacenters;
  spec.best_effort_ms = static_cast<std::uint64_t>(a.best_effort_s * 1000);
  const bool gate_only =
      !a.datacenters.empty() || a.datacenter_count != 0 || a.min_datacenters != 0 || a.best_effort_s != 0;
  for (const auto& w : plan->workflows) {
    cluster::WorkflowSpec ws;
    ws.name = w.name;
    ws.deps = w.depends_on;
    ws.vus = static_cast<std::uint32_t>(std::min<std::uint64_t>(w.vus, UINT32_MAX));
    ws.cores = w.cores;  // 0: the manager's share of the free cores
    ws.priority = static_cast<cluster::Priority>(static_cast<int>(w.priority));
    ws.plan.assign(text.begin(), text.end());
    ws.one_part = w.kind == load::WorkflowKind::setup;  // a setup workflow runs once, on one worker
    spec.workflows.push_back(std::move(ws));
  }
  Client c(name);
  if (int rc = c.start(a); rc != kExitOk) return rc;
  if (gate_only && !c.gates()) {
    std::fprintf(stderr,
                 "%s: --datacenters, --datacenter-count, --min-datacenters and --best-effort choose "
                 "datacenters: they need a gate tier (--gate HOST:PORT)\n",
                 name);
    return kExitUsage;
  }
  Targets t(c.managers());
  auto got = ask_leader<cluster::SubmitAck>(c, t, a, MsgType::submit, cluster::Submit{0, spec, 0},
                                            [](const cluster::SubmitAck& r) { return r.accepted; });
  if (!got) return unreachable(name, "could not submit the job", t, a);
  const cluster::SubmitAck& ack = got->first;
  if (!ack.accepted) {
    std::fprintf(stderr, "%s: job rejected: %s (%s)\n", name, ack.error.c_str(), cluster::name(ack.code));
    return kExitUsage;
  }
  // The manager names the job's leader (a replica answering a repeat submit names the leader it
  // knows, not itself); "none yet" while a takeover is in progress.
  if (!a.wait) {
    if (a.json)
      std::printf("{\"job_id\":%s,\"leader\":%s}\n", json_str(ack.job_id).c_str(), addr_or_null(ack.leader).c_str());
    else
      std::printf("submitted job %s (leader %s)\n", ack.job_id.c_str(), leader_text(ack.leader).c_str());
    return kExitOk;
  }
  if (!a.json)
    std::printf("submitted job %s (leader %s); waiting\n", ack.job_id.c_str(), leader_text(ack.leader).c_str());
  std::fflush(stdout);
  auto v = wait_job(c, t, a, ack.job_id, ack.leader != 0 ? ack.leader : got->second, a.json ? nullptr : &*plan);
  if (!v) return kExitInfrastructure;
  // Exit code and summary as `hyperscale run` gives them: the plan's thresholds judged on the job's
  // merged statistics.
  auto stats = job_run_stats(*plan, *v);
  if (!stats.ok()) {
    if (a.json) std::printf("%s\n", job_json(*v).c_str());
    std::fprintf(stderr, "%s: job %s: %s\n", name, v->job_id.c_str(), stats.status().message().c_str());
    return kExitInternal;
  }
  const int code = job_exit_code(*v, *stats);
  if (a.json) {
    std::printf("%s\n", job_json(*v).c_str());
  } else {
    print_job(*v);
    std::fputs(load::summary_text(*plan, *stats, code).c_str(), stdout);
  }
  return code;
}

void print_node_status(const cluster::NodeStatus& r, bool json) {
  if (r.role == "gate") return print_gate_status(r, json);
  if (!json) {
    std::printf(
        "manager %s: leader=%s term=%llu (this node leads: %s) workers=%u healthy=%u cores=%u/%u free, "
        "active jobs=%zu workflows=%u\n",
        host::node_addr_string(r.node).c_str(), r.leader ? host::node_addr_string(r.leader).c_str() : "none",
        static_cast<unsigned long long>(r.term), r.is_leader ? "yes" : "no", r.worker_count, r.healthy_worker_count,
        r.available_cores, r.total_cores, r.active_job_ids.size(), r.active_workflow_count);
    return;
  }
  std::string workers;
  for (auto& w : r.workers)
    workers += fmt::format("{}{{\"node\":{},\"healthy\":{},\"total_cores\":{},\"available_cores\":{}}}",
                           workers.empty() ? "" : ",", json_str(host::node_addr_string(w.node)), w.healthy,
                           w.total_cores, w.available_cores);
  std::string jobs;
  for (auto& j : r.active_job_ids) {
    if (!jobs.empty()) jobs += ',';
    jobs += json_str(j);
  }
  std::printf(
      "{\"node\":%s,\"is_leader\":%s,\"term\":%llu,\"leader\":%s,\"worker_count\":%u,\"healthy_worker_count\":%u,"
      "\"total_cores\":%u,\"available_cores\":%u,\"active_job_ids\":[%s],\"active_workflow_count\":%u,"
      "\"workers\":[%s]}\n",
      json_str(host::node_addr_string(r.node)).c_str(), r.is_leader ? "true" : "false",
      static_cast<unsigned long long>(r.term), addr_or_null(r.leader).c_str(), r.worker_count, r.healthy_worker_count,
      r.total_cores, r.available_cores, jobs.c_str(), r.active_workflow_count, workers.c_str());
}

// Finds a job: asks each manager in turn (any copy of the job will do) until one has the job (then
// the job's leader, whose view a replica's can lag), every manager said it has none, or the deadline
// passes. Returns kExitOk with the view in `out`, or the exit code after saying why on stderr (2: not
// found, 5: no manager answered). with_plan: the view carries the job's workflow file (WorkflowView.plan).
int lookup_job(Client& c, Targets& t, const ClientArgs& a, const char* name, bool with_plan, cluster::JobView& out) {
  std::map<NodeId, bool> said_not_found;
  // The next manager to ask: one that has not said it has no copy, if there is one.
  auto next_asked = [&](NodeId target) {
    NodeId n = t.next(target);
    for (std::size_t k = 0; k < c.managers().size() && said_not_found.count(n); ++k) n = t.next(n);
    return n;
  };
  int rc = kExitOk;
  const bool done = retry_managers(c, t, a, [&](NodeId target, Duration timeout) {
    cluster::StatusQuery q{0, a.job, with_plan};
    auto r = c.call<cluster::StatusReply>(target, MsgType::status_query, q, timeout);
    if (r.reply && r.reply->found) {
      // A replica's copy can lag the job's leader: take the leader's own view when it answers.
      out = r.reply->job;
      const NodeId leader = out.leader;
      if (leader != 0 && leader != target && !t.down(leader)) {
        cluster::StatusQuery lq{0, a.job, with_plan};
        auto lr = c.call<cluster::StatusReply>(leader, MsgType::status_query, lq, timeout);
        if (lr.reply && lr.reply->found) out = lr.reply->job;
      }
      return finish();
    }
    if (r.reply && r.reply->code != cluster::Err::none) {
      // Not sure (a gate whose copy may lag): ask its leader, or another node, until the deadline.
      t.answered(target);
      const NodeId l = r.reply->leader;
      return ask_next(t, l != 0 && l != target && !t.down(l) ? l : next_asked(target));
    }
    if (r.reply) {
      t.answered(target);
      said_not_found[target] = true;
    } else {
      t.failed(target, r.fail, r.detail);
    }
    // Settled: every manager said it has no copy, or refused us twice in a row.
    bool settled = !said_not_found.empty();
    for (NodeId m : c.managers()) settled = settled && (said_not_found.count(m) > 0 || t.gone(m));
    if (!settled) return ask_next(t, next_asked(target));
    std::fprintf(stderr,
                 "%s: job %s not found: it was never submitted to this cluster, or it ended longer ago than "
                 "the managers keep jobs (manager.retention_ok, default 300s, for completed jobs; "
                 "manager.retention_failed, default 3600s, for the others)\n",
                 name, a.job.c_str());
    if (said_not_found.size() < c.managers().size())
      std::fprintf(stderr, "%s: not every manager could be asked: %s\n", name, t.summary().c_str());
    rc = kExitUsage;
    return finish();
  });
  return done ? rc : unreachable(name, "no manager answered", t, a);
}

// `status` shows a job's view, or without JOB the node status of the first manager that answers.
int cmd_status(const ClientArgs& a) {
  const char* name = "hyperscale status";
  Client c(name);
  if (int rc = c.start(a); rc != kExitOk) return rc;
  Targets t(c.managers());
  if (!a.job.empty()) {
    cluster::JobView view;
    if (int rc = lookup_job(c, t, a, name, false, view); rc != kExitOk) return rc;
    if (a.json)
      std::printf("%s\n", job_json(view).c_str());
    else
      print_job(view);
    return kExitOk;
  }
  const bool done = retry_managers(c, t, a, [&](NodeId target, Duration timeout) {
    cluster::NodeQuery q{0};
    auto r = c.call<cluster::NodeStatus>(target, MsgType::node_query, q, timeout);
    if (!r.reply) {
      t.failed(target, r.fail, r.detail);
      return ask_next(t, t.next(target));
    }
    print_node_status(*r.reply, a.json);
    return finish();
  });
  return done ? kExitOk : unreachable(name, "no manager answered", t, a);
}

// Adds the job's per-window series (every closed window the leader keeps) to results.json ("windows")
// and writes windows.csv next to it. Nothing to add (no leader answered, or the job has no windows:
// its leader changed or it ended long ago) is said on stderr, not an error.
Status write_windows(Client& c, const ClientArgs& a, const std::string& job, NodeId leader, const std::string& dir,
                     std::vector<std::string>& paths) {
  JobWindows jw;
  NodeId target = leader != 0 ? leader : c.managers().front();
  for (int round = 0; round < 200; ++round) {
    if (!fetch_windows(c, a, job, target, jw) || !jw.more()) break;
  }
  if (jw.series().empty()) {
    std::fprintf(stderr,
                 "hyperscale results: job %s: no per-window series (its leader keeps none: it changed since, or "
                 "the windows were evicted)\n",
                 job.c_str());
    return ok_status();
  }
  const std::string json_path = dir + "/results.json";
  auto it = std::find(paths.begin(), paths.end(), json_path);
  if (it != paths.end()) {
    std::ifstream in(json_path);
    std::stringstream ss;
    ss << in.rdbuf();
    auto merged = add_windows_json(ss.str(), jw.json());
    if (!merged.ok()) return merged.status();
    std::ofstream out(json_path, std::ios::trunc);
    out << *merged;
    if (!out) return make_error(Errc::io_error, fmt::format("{}: cannot write", json_path));
  }
  const std::string csv_path = dir + "/windows.csv";
  std::ofstream csv(csv_path, std::ios::trunc);
  csv << jw.csv();
  if (!csv) return make_error(Errc::io_error, fmt::format("{}: cannot write", csv_path));
  paths.push_back(csv_path);
  return ok_status();
}

// `results` writes a finished job's results.json / results.csv as `run` does, from the job's final
// merged statistics and its plan (fetched from the managers), and exits as `run` would.
int cmd_results(const ClientArgs& a) {
  const char* name = "hyperscale results";
  Client c(name);
  if (int rc = c.start(a); rc != kExitOk) return rc;
  Targets t(c.managers());
  cluster::JobView view;
  if (int rc = lookup_job(c, t, a, name, true, view); rc != kExitOk) return rc;
  if (!job_done(view.state)) {
    std::fprintf(stderr,
                 "%s: job %s is still running (state %s): nothing written; wait for it to end "
                 "(hyperscale status %s) and run this again (exit %d)\n",
                 name, a.job.c_str(), cluster::name(view.state), a.job.c_str(), kExitNotFinished);
    return kExitNotFinished;
  }
  auto plan = job_plan(view);
  if (!plan.ok()) {
    std::fprintf(stderr, "%s: %s: nothing written\n", name, plan.status().message().c_str());
    return kExitInternal;
  }
  auto stats = job_run_stats(*plan, view);
  if (!stats.ok()) {
    std::fprintf(stderr, "%s: job %s: %s: nothing written\n", name, a.job.c_str(), stats.status().message().c_str());
    return kExitInternal;
  }
  const int code = job_exit_code(view, *stats);
  std::fputs(load::summary_text(*plan, *stats, code).c_str(), stdout);
  const std::string dir = !a.out.empty() ? a.out : (!plan->out_dir.empty() ? plan->out_dir : "hs-results");
  auto written = load::write_results(*plan, *stats, code, dir);
  if (!written.ok()) {
    std::fprintf(stderr, "%s: writing results: %s\n", name, written.status().to_string().c_str());
    return kExitInternal;
  }
  std::vector<std::string> paths = *written;
  if (auto w = write_windows(c, a, a.job, view.leader, dir, paths); !w.ok()) {
    std::fprintf(stderr, "%s: writing the per-window series: %s\n", name, w.to_string().c_str());
    return kExitInternal;
  }
  std::string files;
  for (const auto& f : paths) files += (files.empty() ? "" : ", ") + f;
  std::printf("\nresults: %s\n", files.c_str());
  return code;
}

// `watch` shows a job's live view (the leader's merged windows) once a second until the job ends,
// then its summary, and exits as `run` would (as `submit --wait`).
int cmd_watch(const ClientArgs& a) {
  const char* name = "hyperscale watch";
  Client c(name);
  if (int rc = c.start(a); rc != kExitOk) return rc;
  Targets t(c.managers());
  cluster::JobView view;
  if (int rc = lookup_job(c, t, a, name, true, view); rc != kExitOk) return rc;
  auto plan = job_plan(view);
  if (!plan.ok()) {
    std::fprintf(stderr, "%s: %s\n", name, plan.status().message().c_str());
    return kExitInternal;
  }
  NodeId target = view.leader != 0 ? view.leader : c.managers().front();
  discover(c, t, a, target);  // the tier's other nodes, should every node given here go (GTE-04)
  JobWindows jw;
  jw.set_worker_names([](std::uint64_t n) { return host::node_addr_string(n); });
  std::uint64_t printed = 0;
  auto last_answer = Clk::now();
  const auto deadline = a.wait_timeout_s > 0 ? Clk::now() + secs(a.wait_timeout_s) : Clk::time_point::max();
  while (!job_done(view.state)) {
    if (Clk::now() >= deadline) {
      std::fprintf(stderr, "%s: --wait-timeout reached before job %s finished\n", name, a.job.c_str());
      return kExitInfrastructure;
    }
    if (auto st = fetch_windows(c, a, a.job, target, jw)) {
      last_answer = Clk::now();
      print_live(jw, *plan, printed);
      if (job_done(*st)) break;
    } else {
      if (Clk::now() - last_answer > secs(a.deadline_s))
        return unreachable(name, "no leader answered about the job", t, a);
      target = t.next(target);
    }
    c.sleep_for(std::chrono::seconds(1));
  }
  // The final view (statistics merged from the parts): the summary and exit code of `run`.
  if (int rc = lookup_job(c, t, a, name, false, view); rc != kExitOk) return rc;
  fetch_windows(c, a, a.job, target, jw);
  // A gate merges a job's windows while it is watched: asked first after the job ended, it has
  // just started to fetch them from the datacenters. More looks (at most 5 s) until every
  // datacenter's share gave its last windows, and one more for the gate to close them all.
  auto all_in = [&] {
    if (jw.series().empty()) return false;
    for (const auto& [wf, s] : jw.series()) {
      if (s.datacenters.size() < view.datacenters.size()) return false;
      for (const auto& d : s.datacenters)
        if (!job_done(d.state)) return false;
    }
    return true;
  };
  for (int i = 0; i < 10 && c.gates() && !all_in(); ++i) {
    c.sleep_for(std::chrono::milliseconds(500));
    fetch_windows(c, a, a.job, target, jw);
    if (all_in()) {
      c.sleep_for(std::chrono::milliseconds(500));
      fetch_windows(c, a, a.job, target, jw);
    }
  }
  print_live(jw, *plan, printed);
  auto stats = job_run_stats(*plan, view);
  if (!stats.ok()) {
    std::fprintf(stderr, "%s: job %s: %s\n", name, a.job.c_str(), stats.status().message().c_str());
    return kExitInternal;
  }
  const int code = job_exit_code(view, *stats);
  print_job(view);
  std::fputs(load::summary_text(*plan, *stats, code).c_str(), stdout);
  return code;
}

int cmd_cancel(const ClientArgs& a) {
  const char* name = "hyperscale cancel";
  Client c(name);
  if (int rc = c.start(a); rc != kExitOk) return rc;
  Targets t(c.managers());
  auto got = ask_leader<cluster::CancelReply>(
      c, t, a, MsgType::cancel_job, cluster::CancelJob{0, a.job, 0, "hyperscale cancel"},
      [](const cluster::CancelReply& r) { return r.success || r.already_cancelled || r.already_completed; });
  if (!got) return unreachable(name, fmt::format("could not cancel job {}", a.job), t, a);
  const cluster::CancelReply& r = got->first;
  if (r.already_completed) {
    std::printf("job %s had already finished\n", a.job.c_str());
  } else if (r.already_cancelled) {
    std::printf("job %s was already cancelled\n", a.job.c_str());
  } else if (r.success) {
    std::printf("job %s cancelled (%u workflows stopped)\n", a.job.c_str(), r.cancelled_workflow_count);
  } else {
    std::fprintf(stderr, "%s: %s (%s)\n", name, r.error.c_str(), cluster::name(r.code));
    return kExitUsage;
  }
  return kExitOk;
}

void common_opts(CLI::App* sub, ClientArgs& a) {
  // One value per use (repeat the option, or comma-separate): a positional argument after it is
  // never taken for an address.
  sub->add_option("--manager", a.managers, "Manager HOST:PORT (repeat or comma-separate; default: cluster.managers)")
      ->allow_extra_args(false)
      ->delimiter(',');
  sub->add_option("--gate", a.gates,
                  "Gate HOST:PORT: talk to a gate tier instead of one datacenter's managers (repeat or "
                  "comma-separate; docs/gates.md)")
      ->allow_extra_args(false)
      ->delimiter(',');
  sub->add_option("--config", a.config,
                  "Cluster config file (the secret and cluster.managers or cluster.gates; docs/daemons.md)");
  sub->add_option("--request-timeout", a.request_timeout_s, "Seconds to wait for one manager's reply")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  sub->add_option("--deadline", a.deadline_s,
                  "Seconds to keep trying to reach the cluster (leader changes included) before exit 5")
      ->check(CLI::Range(0.1, 86400.0))
      ->capture_default_str();
}

}  // namespace

void register_client(CLI::App& app, Command& cmd) {
  {
    auto a = std::make_shared<ClientArgs>();
    auto* sub = app.add_subcommand(
        "submit", "Submit a workflow file as a job to a cluster's managers (or, with --gate, to its gates)");
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
    sub->add_option("--datacenters", a->datacenters, "With --gate: run in these datacenters (comma-separated names)")
        ->allow_extra_args(false)
        ->delimiter(',');
    sub->add_option("--datacenter-count", a->datacenter_count,
                    "With --gate: run in this many datacenters, chosen by the gate (default 1)")
        ->check(CLI::Range(1, 64));
    sub->add_option("--min-datacenters", a->min_datacenters,
                    "With --gate: best effort: the job ends partial once this many datacenters completed and "
                    "the others ended (or --best-effort passed)")
        ->check(CLI::Range(1, 64));
    sub->add_option("--best-effort", a->best_effort_s,
                    "With --min-datacenters: seconds after the start at which the job ends once enough "
                    "datacenters completed (0: wait for every datacenter)")
        ->check(CLI::Range(0.0, 1e7));
    sub->callback([&cmd, a]() {
      cmd.run = [a]() { return cmd_submit(*a); };
      cmd.default_log_level = log::Level::warn;
    });
  }
  {
    auto a = std::make_shared<ClientArgs>();
    auto* sub =
        app.add_subcommand("status", "Show a job's status, or (without JOB) a manager's or a gate's node status");
    common_opts(sub, *a);
    sub->add_option("job", a->job, "Job id");
    sub->add_flag("--json", a->json, "Print JSON");
    sub->callback([&cmd, a]() {
      cmd.run = [a]() { return cmd_status(*a); };
      cmd.default_log_level = log::Level::warn;
    });
  }
  {
    auto a = std::make_shared<ClientArgs>();
    auto* sub = app.add_subcommand(
        "results", "Write a finished job's results.json / results.csv (as `run` does) and exit as `run` would");
    common_opts(sub, *a);
    sub->add_option("job", a->job, "Job id")->required();
    sub->add_option("--out", a->out, "Directory for the results (default: the plan's [output] dir, else hs-results)");
    sub->callback([&cmd, a]() {
      cmd.run = [a]() { return cmd_results(*a); };
      cmd.default_log_level = log::Level::warn;
    });
  }
  {
    auto a = std::make_shared<ClientArgs>();
    auto* sub = app.add_subcommand(
        "watch", "Show a job's live view (per-step rps, percentiles, errors, thresholds, parts) until it ends");
    common_opts(sub, *a);
    sub->add_option("job", a->job, "Job id")->required();
    sub->add_option("--wait-timeout", a->wait_timeout_s, "Give up after this many seconds (0: never)")
        ->check(CLI::Range(0.0, 1e7));
    sub->callback([&cmd, a]() {
      cmd.run = [a]() { return cmd_watch(*a); };
      cmd.default_log_level = log::Level::warn;
    });
  }
  {
    auto a = std::make_shared<ClientArgs>();
    auto* sub = app.add_subcommand("cancel", "Cancel a job");
    common_opts(sub, *a);
    sub->add_option("job", a->job, "Job id")->required();
    sub->callback([&cmd, a]() {
      cmd.run = [a]() { return cmd_cancel(*a); };
      cmd.default_log_level = log::Level::warn;
    });
  }
}

}  // namespace hs::cli
