// In-process transport between the shards of one process (`hyperscale run` hosts a manager and a
// worker on its shards). Messages travel as cross-shard mailbox messages (runtime::Reactor::send):
// no sockets, no encryption (same process, same trust), but every body still passes the FlatBuffers
// verifier and the role matrix, and rejections are counted in hs_wire_rejected_total{reason} like
// on the network. A full mailbox ring is backpressure returned to the caller.
//
// Addressing: shard i is Endpoint{"inproc", i + 1}. The InprocNetwork must outlive the ShardSet;
// each shard creates its own InprocTransport on its own thread.
#pragma once

#include <memory>
#include <unordered_map>
#include <vector>

#include "hyperscale/net/transport.hpp"
#include "hyperscale/runtime/reactor.hpp"

namespace hs::net {

class InprocTransport;

class InprocNetwork {
 public:
  explicit InprocNetwork(int shards) : slots_(static_cast<std::size_t>(shards), nullptr) {}
  static Endpoint endpoint(int shard) { return Endpoint{"inproc", static_cast<std::uint16_t>(shard + 1)}; }
  int size() const noexcept { return static_cast<int>(slots_.size()); }

 private:
  friend class InprocTransport;
  // Slot i is read and written only on shard i's thread.
  std::vector<InprocTransport*> slots_;
};

class InprocTransport final : public Transport {
 public:
  InprocTransport(runtime::Reactor& reactor, InprocNetwork& net, wire::Identity self, wire::Limits limits = {},
                  std::size_t max_pending = 65'536);
  ~InprocTransport() override;
  InprocTransport(const InprocTransport&) = delete;
  InprocTransport& operator=(const InprocTransport&) = delete;

  void on(wire::MsgType type, Handler h) override;
  Status send_datagram(const Endpoint& to, wire::MsgType type, std::span<const std::uint8_t> body) override;
  Status send(const Endpoint& to, wire::MsgType type, std::span<const std::uint8_t> body) override;
  Status request(const Endpoint& to, wire::MsgType type, std::span<const std::uint8_t> body, Duration deadline,
                 ReplyFn done) override;
  Endpoint tcp_endpoint() const override { return InprocNetwork::endpoint(reactor_.shard_id()); }
  Endpoint udp_endpoint() const override { return tcp_endpoint(); }
  std::size_t pending() const noexcept { return pending_.size(); }

  struct Packet {
    wire::MsgType type = wire::MsgType::NONE;
    std::vector<std::uint8_t> body;
    std::string sender_id;
    wire::fb::Role sender_role = wire::fb::Role::Unknown;
    int from_shard = 0;
    std::uint64_t correlation = 0;
    bool is_reply = false;
  };

 private:
  Status post(const Endpoint& to, wire::MsgType type, std::span<const std::uint8_t> body, std::uint64_t corr,
              bool is_reply, std::size_t limit);
  void deliver(std::unique_ptr<Packet> p);
  void reject(wire::Reject r, int from, std::string_view detail);

  runtime::Reactor& reactor_;
  InprocNetwork& net_;
  wire::Identity self_;
  wire::Limits limits_;
  std::size_t max_pending_;
  std::unordered_map<std::uint8_t, Handler> handlers_;
  struct Pending {
    ReplyFn done;
    runtime::TaskId timer;
  };
  std::unordered_map<std::uint64_t, Pending> pending_;
  std::uint64_t next_corr_ = 1;
  wire::RejectLog log_;
  std::shared_ptr<InprocTransport*> alive_ = std::make_shared<InprocTransport*>(this);
  std::array<metrics::Counter*, static_cast<std::size_t>(wire::Reject::kCount)> rejected_{};
  metrics::Counter& timeouts_;
  metrics::Counter& late_;
};

}  // namespace hs::net
