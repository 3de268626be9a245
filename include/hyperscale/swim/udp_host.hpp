// Runs a Swim state machine over plain UDP on a libuv reactor. This is the adapter between the
// sans-IO protocol and real I/O: it implements sim::Context (clock, rng, send, timers, disk) with
// a uv_udp_t socket and reactor timers. It is deliberately small so that it can be swapped for
// the FlatBuffers + AES-GCM wire transport (src/wire, src/net) without touching Swim.
//
// Addressing: a NodeId over UDP is an IPv4 address and port, (ip << 16) | port, so every member
// id is directly routable and gossip needs no separate address table.
#pragma once

#include <uv.h>

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "hyperscale/base/metrics.hpp"
#include "hyperscale/runtime/reactor.hpp"
#include "hyperscale/sim/node.hpp"
#include "hyperscale/swim/swim.hpp"

namespace hs::swim {

// "127.0.0.1:7000" -> id. Only IPv4 dotted quads with a port in 1..65535.
Result<NodeId> parse_udp_addr(std::string_view text);
std::string udp_addr_string(NodeId id);

class UdpHost final : public sim::Context {
 public:
  // `seed` feeds the host's Rng (probe order, jitter).
  UdpHost(runtime::Reactor& reactor, NodeId self, SwimConfig cfg, std::uint64_t seed);
  ~UdpHost() override;
  UdpHost(const UdpHost&) = delete;
  UdpHost& operator=(const UdpHost&) = delete;

  // Binds the socket, starts receiving and starts the protocol. Call on the reactor's thread.
  Status start();
  // Cancels timers and closes the socket; `done` runs once the handle is closed.
  void close(std::function<void()> done = {});
  Swim& swim() noexcept { return swim_; }

  // ---- sim::Context ----
  NodeId self() const override { return self_; }
  const Clock& clock() const override { return reactor_.clock(); }
  Rng& rng() override { return rng_; }
  void send(NodeId to, Bytes msg) override;
  sim::TimerId set_timer(Duration after, std::uint64_t tag) override;
  void cancel_timer(sim::TimerId id) override;
  sim::Disk& disk() override { return disk_; }

 private:
  void on_recv(ssize_t nread, const uv_buf_t* buf, const struct sockaddr* addr);
  void export_metrics();

  runtime::Reactor& reactor_;
  NodeId self_;
  Swim swim_;
  Rng rng_;
  sim::MemDisk disk_;
  uv_udp_t udp_{};
  bool open_ = false;
  bool closing_ = false;
  std::function<void()> on_closed_;
  std::map<sim::TimerId, runtime::TaskId> timers_;
  sim::TimerId next_timer_ = 1;
  runtime::TaskId metrics_task_{};
  alignas(16) char recv_buf_[64 * 1024];
  SwimStats exported_{};
  metrics::Counter& send_errors_;
  metrics::Counter& recv_errors_;
  metrics::Counter& not_ipv4_;
  metrics::Counter& timer_errors_;
};

}  // namespace hs::swim
