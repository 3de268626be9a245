// UdpHost: runs a swim::Swim state machine over plain UDP on a libuv reactor (the stand-alone
// `hyperscale swim-agent`). This is the adapter between the
// sans-IO protocol and real I/O: it implements node::Context (clock, rng, send, timers, disk) with
// a uv_udp_t socket and reactor timers. It is deliberately small so that it can be swapped for
// the FlatBuffers + AES-GCM wire transport (src/wire, src/net) without touching Swim.
//
// Addressing: a NodeId over UDP is an IPv4 address and port, (ip << 16) | port (host/address.hpp:
// parse_node_addr, node_addr_string), so every member id is directly routable and gossip needs no
// separate address table.
#pragma once

#include <uv.h>

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "hyperscale/base/metrics.hpp"
#include "hyperscale/host/address.hpp"
#include "hyperscale/node/node.hpp"
#include "hyperscale/runtime/reactor.hpp"
#include "hyperscale/sim/mem_disk.hpp"
#include "hyperscale/swim/swim.hpp"

namespace hs::host {

class UdpHost final : public node::Context {
 public:
  // `seed` feeds the host's Rng (probe order, jitter).
  UdpHost(runtime::Reactor& reactor, NodeId self, swim::SwimConfig cfg, std::uint64_t seed);
  ~UdpHost() override;
  UdpHost(const UdpHost&) = delete;
  UdpHost& operator=(const UdpHost&) = delete;

  // Binds the socket, starts receiving and starts the protocol. Call on the reactor's thread.
  Status start();
  // Cancels timers and closes the socket; `done` runs once the handle is closed.
  void close(std::function<void()> done = {});
  swim::Swim& swim() noexcept { return swim_; }

  // ---- node::Context ----
  NodeId self() const override { return self_; }
  const Clock& clock() const override { return reactor_.clock(); }
  std::uint64_t wall_ms() const override { return static_cast<std::uint64_t>(wall_time_us() / 1000); }
  Rng& rng() override { return rng_; }
  void send(NodeId to, node::Bytes msg) override;
  node::TimerId set_timer(Duration after, std::uint64_t tag) override;
  void cancel_timer(node::TimerId id) override;
  node::Disk& disk() override { return disk_; }

 private:
  void on_recv(ssize_t nread, const uv_buf_t* buf, const struct sockaddr* addr);
  void export_metrics();

  runtime::Reactor& reactor_;
  NodeId self_;
  swim::Swim swim_;
  Rng rng_;
  sim::MemDisk disk_;
  uv_udp_t udp_{};
  bool open_ = false;
  bool closing_ = false;
  std::function<void()> on_closed_;
  std::map<node::TimerId, runtime::TaskId> timers_;
  node::TimerId next_timer_ = 1;
  runtime::TaskId metrics_task_{};
  alignas(16) char recv_buf_[64 * 1024];
  swim::SwimStats exported_{};
  metrics::Counter& send_errors_;
  metrics::Counter& recv_errors_;
  metrics::Counter& not_ipv4_;
  metrics::Counter& timer_errors_;
};

}  // namespace hs::host
