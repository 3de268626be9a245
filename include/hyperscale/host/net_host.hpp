// NetHost: runs one sans-IO node::Node (in a daemon, a cluster::Mux of components) on a
// runtime::Reactor over real sockets (net::UvTransport) and a real disk (host::WalDisk).
//
//   NodeId   = (IPv4 << 16) | port of the listen address; TCP and UDP listen on that one port
//              (host/address.hpp).
//   send     = a wire RoleMessage{from_node = self, data = the node's bytes}. When data[0] is the
//              datagram channel (cluster::kSwim = 1) it goes as one sealed UDP datagram (at most
//              wire::Limits::max_udp_datagram bytes, best effort), else over the reliable TCP channel.
//              Refusals from the transport (backpressure, unavailable, too large) are counted in
//              hs_host_send_errors_total{reason} and logged (rate-limited); the roles retry.
//   receive  = RoleMessage -> node.on_message(ctx, from_node, data). A message whose from_node is
//              not the address in the sender's authenticated envelope is dropped and counted.
//   timers   = reactor tasks named "host.timer" (cancel works; a refused timer returns id 0).
//   sync     = the disk's durability barrier (WalDisk::when_durable): on_timer(tag) runs once every
//              earlier write is fsynced.
//   failure  = a disk failure or an exception out of the node stops the node (fail-stop): no more
//              events are delivered, nothing more is sent, timers are cancelled, the transport is
//              closed and the stop callback runs once with the reason (the daemon exits non-zero).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "hyperscale/base/metrics.hpp"
#include "hyperscale/base/random.hpp"
#include "hyperscale/host/address.hpp"
#include "hyperscale/host/wal_disk.hpp"
#include "hyperscale/net/uv_transport.hpp"
#include "hyperscale/runtime/reactor.hpp"
#include "hyperscale/node/node.hpp"
#include "hyperscale/sim/mem_disk.hpp"

namespace hs::host {

// The channel byte whose messages go as UDP datagrams (equals cluster::kSwim; a test checks it).
inline constexpr std::uint8_t kDatagramChannel = 1;

struct NetHostOptions {
  net::Endpoint listen;  // TCP and UDP; must be a concrete IPv4 address and a non-zero port
  std::string cluster_id = "hyperscale";
  wire::fb::Role role = wire::fb::Role::Unknown;
  wire::Keyring keys;
  wire::Limits limits;
  net::TransportConfig transport;  // listen_host / ports / enable_* are overwritten from `listen`
  std::uint8_t datagram_channel = kDatagramChannel;
  std::uint64_t seed = 0;  // the node's Rng; 0: random
  std::size_t max_pending_syncs = 65'536;
  bool stop_on_node_error = true;  // an exception out of the node stops it (fail-stop)
};

struct NetHostStats {
  std::uint64_t sent_tcp = 0, sent_udp = 0;
  std::uint64_t received = 0;
  std::uint64_t send_errors = 0;
  std::uint64_t dropped = 0;  // received but not delivered (stopped, empty, from mismatch)
  std::size_t live_timers = 0;
  std::size_t pending_syncs = 0;
};

class NetHost final : public node::Context {
 public:
  // `node` and `disk` are not owned and must outlive the host. Without a disk the node gets an
  // in-memory sim::MemDisk (writes durable on return; sync = a zero-delay timer).
  NetHost(runtime::Reactor& reactor, node::Node& node, NetHostOptions opts, DurableDisk* disk = nullptr);
  ~NetHost() override;
  NetHost(const NetHost&) = delete;
  NetHost& operator=(const NetHost&) = delete;

  // Validates the options, binds TCP + UDP and calls node.on_start. Call on the reactor's thread.
  // Installs the disk's failure callback (a disk failure stops the node); use set_stop_callback.
  Status start();
  // Orderly: stops delivering events, cancels timers, closes the transport; `done` once closed.
  void close(std::function<void()> done = {});
  // Fail-stop (see the file comment). Idempotent; the first reason wins.
  void stop(const Status& why);
  // Called once when the node is stopped by a failure (not by close()).
  void set_stop_callback(std::function<void(const Status&)> cb) { on_stop_ = std::move(cb); }
  bool running() const noexcept { return running_; }
  const Status& stop_reason() const noexcept { return stop_reason_; }

  // Runs a host-originated call (an executor result, an admin command) inside an event of the node.
  // Fails with `unavailable` once the node is stopped. With a cluster::Mux node use run_in().
  Status run(const std::function<void(node::Context&)>& fn);
  // mux.run(*this, fn): the Mux binds its components' contexts to this host for the call.
  template <typename MuxT>
  Status run_in(MuxT& mux, const std::function<void()>& fn) {
    return run([&](node::Context& ctx) { mux.run(ctx, fn); });
  }

  net::UvTransport& transport() noexcept { return *transport_; }
  // The largest message (Mux bytes, channel byte included) that fits in one sealed datagram with
  // this host's identity and limits (measured at start(); 0 before). A SWIM component must fit
  // its datagrams to this, not to the raw UDP budget: the frame, envelope and RoleMessage take the rest.
  std::size_t datagram_budget() const noexcept { return datagram_budget_; }
  NetHostStats stats() const;

  // ---- node::Context ----
  NodeId self() const override { return self_; }
  const Clock& clock() const override { return reactor_.clock(); }
  std::uint64_t wall_ms() const override { return static_cast<std::uint64_t>(wall_time_us() / 1000); }
  Rng& rng() override { return rng_; }
  void send(NodeId to, node::Bytes msg) override;
  node::TimerId set_timer(Duration after, std::uint64_t tag) override;
  void cancel_timer(node::TimerId id) override;
  node::Disk& disk() override;
  node::TimerId sync(std::uint64_t tag) override;

 private:
  void on_role_message(const net::Inbound& in);
  void fire_timer(node::TimerId id, std::uint64_t tag);
  // Runs one node event; an exception is logged, counted and (by default) stops the node.
  template <typename F>
  void deliver(std::string_view event, F&& f);
  void count_send_error(const Status& st, NodeId to, bool datagram);
  void cancel_all_timers();

  runtime::Reactor& reactor_;
  node::Node& node_;
  NetHostOptions opts_;
  DurableDisk* disk_;
  sim::MemDisk mem_disk_;
  NodeId self_ = 0;
  Rng rng_;
  std::unique_ptr<net::UvTransport> transport_;
  bool started_ = false;
  bool running_ = false;
  Status stop_reason_;
  std::function<void(const Status&)> on_stop_;
  std::shared_ptr<NetHost*> alive_;
  std::unordered_map<node::TimerId, runtime::TaskId> timers_;
  std::unordered_set<node::TimerId> syncs_;  // sync barriers not yet fired
  node::TimerId next_timer_ = 1;
  std::size_t datagram_budget_ = 0;
  flatbuffers::FlatBufferBuilder fbb_{256};
  std::int64_t log_second_ = -1;
  std::uint32_t logged_this_second_ = 0;
  std::uint64_t suppressed_ = 0;
  NetHostStats stats_;
  metrics::Counter& sent_tcp_;
  metrics::Counter& sent_udp_;
  metrics::Counter& received_;
  metrics::Counter& err_backpressure_;
  metrics::Counter& err_unavailable_;
  metrics::Counter& err_too_large_;
  metrics::Counter& err_other_;
  metrics::Counter& drop_stopped_;
  metrics::Counter& drop_empty_;
  metrics::Counter& drop_from_mismatch_;
  metrics::Counter& timer_refused_;
  metrics::Counter& node_errors_;
  metrics::Counter& stops_;
  metrics::Gauge& running_gauge_;
  metrics::Gauge& timers_gauge_;
};

}  // namespace hs::host
