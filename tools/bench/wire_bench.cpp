// Wire/transport benchmark: request/response round trips per second over loopback TCP.
//   shard 0: server (UvTransport, Ping -> Pong)
//   shard 1: client (UvTransport) keeping C requests outstanding over C pooled connections
//            (closed loop: each reply immediately issues the next request on the freed slot)
// Rounds for C = 1 and C = 64; prints each round, then the medians and the bytes a frame adds to a
// message body, and the codec's CPU per frame (seal, open; 100 000 Ping frames per round), ending with:
//   wire rtt_per_s_1=<median> rtt_per_s_64=<median> overhead_bytes=<n> seal_ns=<median> open_ns=<median>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "hyperscale/base/log.hpp"
#include "hyperscale/net/uv_transport.hpp"
#include "hyperscale/runtime/shard_set.hpp"

using namespace hs;
using namespace hs::net;
using namespace hs::runtime;
using namespace std::chrono_literals;
namespace fb = hs::wire::fb;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

wire::Keyring bench_keys() { return wire::Keyring{wire::Key::derive("benchmark-cluster-secret-01").value(), {}}; }

wire::Identity ident(const char* node, fb::Role role) {
  wire::Identity i;
  i.node_id = node;
  i.role = role;
  return i;
}

std::vector<std::uint8_t> ping_body() {
  flatbuffers::FlatBufferBuilder b;
  b.Finish(fb::CreatePing(b, 1));
  auto s = wire::finished(b);
  return {s.begin(), s.end()};
}

double round_trip_round(int conns, double seconds) {
  ShardSetOptions o;
  o.shards = 2;
  o.shutdown_bound = 3s;
  ShardSet set(o);
  std::unique_ptr<UvTransport> server, client;
  std::atomic<bool> ready{false}, stop{false};
  std::atomic<std::uint64_t> done{0}, errors{0};
  Endpoint server_ep;
  const auto body = ping_body();
  std::function<void()> issue;
  Status st = set.start([&](Reactor& r) {
    if (r.shard_id() == 0) {
      TransportConfig c;
      c.enable_udp = false;
      server = std::make_unique<UvTransport>(r, c, ident("mgr-bench", fb::Role::Manager), bench_keys());
      if (!server->start().ok()) std::abort();
      server->on(fb::Body::Ping, [](const Inbound&, const Responder& resp) {
        flatbuffers::FlatBufferBuilder b(64);
        b.Finish(fb::CreatePong(b, 1));
        Status s = resp.reply(fb::Body::Pong, wire::finished(b));
        if (!s.ok()) log::warn("bench", "reply_failed", "error={}", s.to_string());
      });
      server_ep = server->tcp_endpoint();
      ready = true;
    }
  });
  if (!st.ok()) std::abort();
  while (!ready) std::this_thread::sleep_for(1ms);
  st = set.post(1, [&](Reactor& r) {
    TransportConfig c;
    c.enable_tcp_listen = false;
    c.enable_udp = false;
    c.max_conns_per_peer = static_cast<std::size_t>(conns);
    c.open_new_at_inflight = 1;
    client = std::make_unique<UvTransport>(r, c, ident("gate-bench", fb::Role::Gate), bench_keys());
    if (!client->start().ok()) std::abort();
    issue = [&] {
      if (stop.load(std::memory_order_relaxed)) return;
      Status s = client->request(server_ep, fb::Body::Ping, body, 5s, [&](Result<wire::Decoded> res) {
        if (res.ok())
          done.fetch_add(1, std::memory_order_relaxed);
        else if (!stop.load(std::memory_order_relaxed))
          errors.fetch_add(1, std::memory_order_relaxed);
        issue();
      });
      if (!s.ok()) errors.fetch_add(1, std::memory_order_relaxed);
    };
    for (int i = 0; i < conns; ++i) issue();
  });
  if (!st.ok()) std::abort();
  std::this_thread::sleep_for(300ms);  // warm-up: connections open
  const auto t0 = std::chrono::steady_clock::now();
  const std::uint64_t d0 = done.load();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  const std::uint64_t d1 = done.load();
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  stop = true;
  std::atomic<int> closed{0};
  (void)set.post(1, [&](Reactor&) { client->close([&] { ++closed; }); });
  (void)set.post(0, [&](Reactor&) { server->close([&] { ++closed; }); });
  while (closed < 2) std::this_thread::sleep_for(1ms);
  set.stop();
  client.reset();  // every handle is closed: safe off the loop
  server.reset();
  if (errors.load() > 0)
    std::fprintf(stderr, "  (%llu request errors)\n", static_cast<unsigned long long>(errors.load()));
  return static_cast<double>(d1 - d0) / elapsed;
}

std::size_t overhead_bytes() {
  metrics::Registry reg;
  wire::FrameCodec c(ident("gate-bench", fb::Role::Gate), bench_keys(), wire::Limits{}, reg);
  auto body = ping_body();
  std::vector<std::uint8_t> out;
  if (!c.seal(fb::Body::Ping, body, 1, false, wire::Channel::tcp, "mgr-bench", out, wall_time_us() / 1000).ok())
    std::abort();
  return out.size() - body.size();
}

// CPU per frame of the codec alone: nanoseconds to seal one Ping frame, and to open (decrypt,
// verify, replay-check) one, averaged over n frames on this thread.
std::pair<double, double> codec_ns(int n) {
  metrics::Registry reg;
  wire::FrameCodec tx(ident("gate-bench", fb::Role::Gate), bench_keys(), wire::Limits{}, reg);
  wire::FrameCodec rx(ident("mgr-bench", fb::Role::Manager), bench_keys(), wire::Limits{}, reg);
  auto body = ping_body();
  std::vector<std::vector<std::uint8_t>> frames(static_cast<std::size_t>(n));
  const std::int64_t now_ms = wall_time_us() / 1000;
  const std::int64_t t0 = wall_time_us();
  for (auto& f : frames)
    if (!tx.seal(fb::Body::Ping, body, 1, false, wire::Channel::tcp, "mgr-bench", f, now_ms).ok()) std::abort();
  const std::int64_t t1 = wall_time_us();
  for (auto& f : frames)
    if (rx.decode(f, wire::Channel::tcp, now_ms).reason != wire::Reject::none) std::abort();
  const std::int64_t t2 = wall_time_us();
  return {1000.0 * static_cast<double>(t1 - t0) / n, 1000.0 * static_cast<double>(t2 - t1) / n};
}

}  // namespace

int main(int argc, char** argv) {
  log::set_level(log::Level::error);
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 5;
  const double seconds = argc > 2 ? std::atof(argv[2]) : 2.0;
  std::vector<double> r1, r64, seal, open;
  for (int i = 0; i < rounds; ++i) {
    r1.push_back(round_trip_round(1, seconds));
    r64.push_back(round_trip_round(64, seconds));
    auto [s, o] = codec_ns(100'000);
    seal.push_back(s);
    open.push_back(o);
    std::printf("round %d: conns=1 rtt_per_s=%.0f  conns=64 rtt_per_s=%.0f  seal_ns=%.0f open_ns=%.0f\n", i + 1,
                r1.back(), r64.back(), s, o);
    std::fflush(stdout);
  }
  const std::size_t ovh = overhead_bytes();
  std::printf(
      "frame overhead: %zu bytes per message (24 header + 16 GCM tag + envelope with ids \"hyperscale\", "
      "\"gate-bench\")\n",
      ovh);
  std::printf("wire rtt_per_s_1=%.0f rtt_per_s_64=%.0f overhead_bytes=%zu seal_ns=%.0f open_ns=%.0f\n", median(r1),
              median(r64), ovh, median(seal), median(open));
  return 0;
}
