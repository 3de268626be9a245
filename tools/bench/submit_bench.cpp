// hs-bench-submit: submit -> ack latency through a gate tier (tools/bench/submit runs it against 3
// gate daemons with fsync durability). A client node on the sealed transport sends Submit messages
// at a fixed rate to the gate leader (found by following not_leader answers) and measures, per job,
// the time from its first send to its accepted ack (durable on a quorum of gates).
//
//   hs-bench-submit --gates IP:PORT,IP:PORT,... --secret-file F --plan FILE --rate R --seconds S
//
// Prints one line: `submit_bench sent=N acked=N errors=N p50_ms=X p99_ms=Y max_ms=Z acked_per_s=W`.
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "hyperscale/base/log.hpp"
#include "hyperscale/cluster/messages.hpp"
#include "hyperscale/cluster/mux.hpp"
#include "hyperscale/host/address.hpp"
#include "hyperscale/host/net_host.hpp"
#include "hyperscale/runtime/reactor.hpp"

using namespace hs;
using cluster::MsgType;
using node::NodeId;

namespace {

struct Bench final : node::Node {
  std::vector<NodeId> gates;
  std::vector<std::uint8_t> plan;
  double rate = 100;
  Duration length = std::chrono::seconds(5);
  runtime::Reactor* reactor = nullptr;
  std::string run_id;

  NodeId target = 0;
  Instant started{0};
  std::uint64_t sent = 0, acked = 0, errors = 0, redirects = 0;
  std::map<std::uint64_t, std::pair<Instant, std::uint64_t>> pending;  // req -> (first send, job number)
  std::vector<double> lat_ms;
  std::vector<std::pair<double, double>> series;  // (send offset ms, latency ms), for --dump
  std::uint64_t next_req = 1;
  node::Context* ctx = nullptr;

  void send_job(std::uint64_t n, Instant first) {
    cluster::Submit m;
    m.req = next_req++;
    m.spec.job_id = fmt::format("bench-{}-{}", run_id, n);
    m.spec.idempotency_key = m.spec.job_id;
    cluster::WorkflowSpec w;
    w.name = "noop";
    w.plan = plan;
    m.spec.workflows.push_back(std::move(w));
    auto bytes = cluster::encode(MsgType::submit, m);
    bytes.insert(bytes.begin(), static_cast<std::uint8_t>(cluster::kRole));
    pending[m.req] = {first, n};
    ctx->send(target, std::move(bytes));
  }

  void on_start(node::Context& c) override {
    ctx = &c;
    target = gates.front();
    started = c.now();
    c.set_timer(std::chrono::milliseconds(1), 1);
  }
  void on_timer(node::Context& c, node::TimerId, std::uint64_t) override {
    ctx = &c;
    const Instant now = c.now();
    const double secs = std::chrono::duration<double>(now - started).count();
    if (now - started < length) {
      const auto due = static_cast<std::uint64_t>(secs * rate);
      while (sent < due) send_job(sent++, now);
    }
    const bool drained = now - started >= length && pending.empty();
    if (drained || now - started >= length + std::chrono::seconds(10)) {
      errors += pending.size();  // never answered
      pending.clear();
      reactor->request_node_stop("bench done");
      return;
    }
    c.set_timer(std::chrono::milliseconds(1), 1);
  }
  void on_message(node::Context& c, NodeId, std::span<const std::uint8_t> msg) override {
    ctx = &c;
    if (msg.size() < 2 || msg[0] != cluster::kRole || static_cast<MsgType>(msg[1]) != MsgType::submit_ack) return;
    cluster::SubmitAck a;
    if (!cluster::decode(msg.subspan(2), a)) {
      ++errors;
      return;
    }
    auto it = pending.find(a.req);
    if (it == pending.end()) return;
    const auto [first, n] = it->second;
    pending.erase(it);
    if (a.accepted) {
      ++acked;
      lat_ms.push_back(std::chrono::duration<double, std::milli>(c.now() - first).count());
      series.emplace_back(std::chrono::duration<double, std::milli>(first - started).count(), lat_ms.back());
    } else if (a.code == cluster::Err::not_leader && a.leader != 0 && redirects < 1000) {
      ++redirects;
      target = a.leader;
      send_job(n, first);
    } else {
      ++errors;
      if (errors <= 5) std::fprintf(stderr, "submit_bench: refused: %s (%s)\n", a.error.c_str(), cluster::name(a.code));
    }
  }
};

double pct(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  std::string gates, secret, plan_file, dump;
  double rate = 100, seconds = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--gates")
      gates = v;
    else if (k == "--secret-file")
      secret = v;
    else if (k == "--plan")
      plan_file = v;
    else if (k == "--rate")
      rate = std::stod(v);
    else if (k == "--dump")
      dump = v;
    else if (k == "--seconds")
      seconds = std::stod(v);
    else {
      std::fprintf(stderr, "hs-bench-submit: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (gates.empty() || secret.empty() || plan_file.empty() || rate <= 0 || seconds <= 0) {
    std::fprintf(stderr,
                 "usage: hs-bench-submit --gates IP:PORT,... --secret-file F --plan FILE --rate R --seconds S\n");
    return 2;
  }
  log::set_level(log::Level::error);
  Bench b;
  b.rate = rate;
  b.length = std::chrono::duration_cast<Duration>(std::chrono::duration<double>(seconds));
  std::random_device rd;
  b.run_id = fmt::format("{:08x}", rd());
  {
    std::ifstream f(plan_file);
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string t = ss.str();
    b.plan.assign(t.begin(), t.end());
  }
  std::stringstream gs(gates);
  for (std::string g; std::getline(gs, g, ',');) {
    auto id = host::parse_node_addr(g);
    if (!id.ok()) {
      std::fprintf(stderr, "hs-bench-submit: --gates %s: %s\n", g.c_str(), id.status().to_string().c_str());
      return 2;
    }
    b.gates.push_back(*id);
  }
  auto keys = wire::load_keyring({secret, ""}, {});
  if (!keys.ok()) {
    std::fprintf(stderr, "hs-bench-submit: %s\n", keys.status().to_string().c_str());
    return 2;
  }
  runtime::Reactor r;
  b.reactor = &r;
  host::NetHostOptions o;
  o.role = wire::fb::Role::Client;
  o.keys = std::move(keys).value();
  Status st = make_error(Errc::unavailable, "no port");
  std::unique_ptr<host::NetHost> h;
  for (int attempt = 0; attempt < 20 && !st.ok(); ++attempt) {
    o.listen = net::Endpoint{"127.0.0.1", static_cast<std::uint16_t>(20000 + (rd() % 40000))};
    h = std::make_unique<host::NetHost>(r, b, o);
    st = h->start();
  }
  if (!st.ok()) {
    std::fprintf(stderr, "hs-bench-submit: %s\n", st.to_string().c_str());
    return 5;
  }
  r.run();
  if (!dump.empty()) {
    std::FILE* f = std::fopen(dump.c_str(), "w");
    if (f == nullptr) {
      std::fprintf(stderr, "hs-bench-submit: --dump %s: %s\n", dump.c_str(), std::strerror(errno));
      return 2;
    }
    for (const auto& [at, ms] : b.series) std::fprintf(f, "%.3f %.3f\n", at, ms);
    std::fclose(f);
  }
  const double p50 = pct(b.lat_ms, 0.50), p99 = pct(b.lat_ms, 0.99), mx = pct(b.lat_ms, 1.0);
  std::printf("submit_bench sent=%llu acked=%llu errors=%llu p50_ms=%.3f p99_ms=%.3f max_ms=%.3f acked_per_s=%.1f\n",
              static_cast<unsigned long long>(b.sent), static_cast<unsigned long long>(b.acked),
              static_cast<unsigned long long>(b.errors), p50, p99, mx, static_cast<double>(b.acked) / seconds);
  return b.errors == 0 ? 0 : 1;
}
