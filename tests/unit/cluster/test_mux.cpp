// cluster::Mux traffic counters: per channel, the messages and bytes its components send and the
// messages and bytes routed to them (channel byte included); a message for no component counts
// only as unrouted. The daemons export them as hs_mux_messages_total / hs_mux_bytes_total
// (docs/daemons.md), which tools/bench/cluster-overhead reads.
#include <catch2/catch.hpp>

#include <stdexcept>

#include "hyperscale/cluster/mux.hpp"

using namespace hs;
using namespace hs::cluster;

namespace {

class NoDisk final : public node::Disk {
 public:
  Status put(const std::string&, std::span<const std::uint8_t>) override { return refuse(); }
  std::optional<Bytes> get(const std::string&) const override { return std::nullopt; }
  Status erase(const std::string&) override { return refuse(); }
  Status append(const std::string&, std::span<const std::uint8_t>) override { return refuse(); }
  std::vector<Bytes> read_log(const std::string&) const override { return {}; }
  Status truncate_log(const std::string&) override { return refuse(); }
  Status replace_log(const std::string&, std::span<const Bytes>) override { return refuse(); }

 private:
  static Status refuse() { return Status(Errc::unavailable, "test_mux: no disk"); }
};

// The host side: records what the Mux hands it.
class Outer final : public node::Context {
 public:
  NodeId self() const override { return 1; }
  const Clock& clock() const override { return clock_; }
  std::uint64_t wall_ms() const override { return 0; }
  Rng& rng() override { return rng_; }
  void send(NodeId to, Bytes msg) override { sent.emplace_back(to, std::move(msg)); }
  node::TimerId set_timer(Duration, std::uint64_t) override { return ++next_timer_; }
  void cancel_timer(node::TimerId) override {}
  node::Disk& disk() override { return disk_; }

  std::vector<std::pair<NodeId, Bytes>> sent;

 private:
  ManualClock clock_;
  Rng rng_{7};
  NoDisk disk_;
  node::TimerId next_timer_ = 0;
};

// Sends `reply_size` bytes back to every sender; sends `start_size` bytes to node 2 at start.
class Echo final : public node::Node {
 public:
  Echo(std::size_t start_size, std::size_t reply_size) : start_size_(start_size), reply_size_(reply_size) {}
  void on_start(node::Context& ctx) override {
    if (start_size_ > 0) ctx.send(2, Bytes(start_size_, 0xab));
  }
  void on_message(node::Context& ctx, NodeId from, std::span<const std::uint8_t> msg) override {
    received.emplace_back(msg.begin(), msg.end());
    ctx.send(from, Bytes(reply_size_, 0xcd));
  }
  void on_timer(node::Context&, node::TimerId, std::uint64_t) override {}
  std::vector<Bytes> received;

 private:
  std::size_t start_size_, reply_size_;
};

Bytes on_channel(std::uint8_t ch, std::size_t payload) {
  Bytes b(payload + 1, 0x11);
  b[0] = ch;
  return b;
}

}  // namespace

TEST_CASE("mux: per-channel messages and bytes sent and received, channel byte included") {
  Mux mux;
  Echo swim(10, 4), role(0, 100);
  mux.add(kSwim, &swim);
  mux.add(kRole, &role);
  Outer host;
  CHECK(mux.channels() == std::vector<Channel>{kSwim, kRole});

  mux.on_start(host);
  REQUIRE(host.sent.size() == 1);
  CHECK(host.sent[0].second.size() == 11);
  CHECK(mux.traffic(kSwim).msgs_sent == 1);
  CHECK(mux.traffic(kSwim).bytes_sent == 11);

  mux.on_message(host, 5, on_channel(kRole, 20));
  mux.on_message(host, 6, on_channel(kRole, 30));
  mux.on_message(host, 5, on_channel(kSwim, 7));
  REQUIRE(role.received.size() == 2);
  CHECK(role.received[0].size() == 20);  // the component sees the payload without the channel byte

  const ChannelTraffic& r = mux.traffic(kRole);
  CHECK(r.msgs_received == 2);
  CHECK(r.bytes_received == 21 + 31);
  CHECK(r.msgs_sent == 2);
  CHECK(r.bytes_sent == 2 * 101);
  const ChannelTraffic& s = mux.traffic(kSwim);
  CHECK(s.msgs_received == 1);
  CHECK(s.bytes_received == 8);
  CHECK(s.msgs_sent == 2);
  CHECK(s.bytes_sent == 11 + 5);

  // Every byte handed to the host is counted on exactly one channel.
  std::uint64_t total = 0;
  for (const auto& [to, b] : host.sent) total += b.size();
  CHECK(total == r.bytes_sent + s.bytes_sent);
  // A channel without a component has no traffic.
  CHECK(mux.traffic(kRaft).msgs_sent == 0);
  CHECK(mux.traffic(kRaft).bytes_received == 0);
}

TEST_CASE("mux: unrouted messages count only as unrouted; a bad channel is refused") {
  Mux mux;
  Echo role(0, 3);
  mux.add(kRole, &role);
  Outer host;
  mux.on_start(host);
  mux.on_message(host, 5, on_channel(kRaft, 9));  // no component on kRaft
  mux.on_message(host, 5, on_channel(200, 9));    // no such channel
  mux.on_message(host, 5, Bytes{});               // empty
  CHECK(mux.unrouted() == 3);
  CHECK(mux.traffic(kRaft).msgs_received == 0);
  CHECK(mux.traffic(kRole).msgs_received == 0);
  CHECK(host.sent.empty());
  CHECK_THROWS_AS(mux.traffic(kMaxChannel), std::invalid_argument);
  CHECK(channel_name(kRole) == "role");
  CHECK(channel_name(static_cast<Channel>(6)) == "ch6");
}

TEST_CASE("mux: a send outside an event of the node is refused and not counted") {
  Mux mux;
  Echo role(0, 3);
  mux.add(kRole, &role);
  CHECK_THROWS_AS(mux.context(kRole).send(2, Bytes(5, 1)), std::logic_error);
  CHECK(mux.traffic(kRole).msgs_sent == 0);
  CHECK(mux.traffic(kRole).bytes_sent == 0);
}
