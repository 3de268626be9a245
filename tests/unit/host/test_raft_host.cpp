// The replicated ledger on the real stack: three RaftNodes + JobLedgers, each in a Mux on a NetHost
// (sealed TCP on loopback) with a WalDisk (the WAL on io_uring, fsync), in one reactor. The same
// code the simulator drives, on real sockets, a real disk and the real clock: a leader is elected,
// proposals commit on all three, a member closed and reopened from its WAL directory recovers the
// ledger, and the cluster keeps committing. Waits are on observed states only.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include "helpers.hpp"
#include "hyperscale/cluster/ledger.hpp"
#include "hyperscale/cluster/mux.hpp"
#include "hyperscale/host/net_host.hpp"

using namespace hs;
using namespace hs::host;
using namespace std::chrono_literals;
namespace fb = hs::wire::fb;

namespace {

const char* kSecret = "raft-host-test-secret-0123456789";

struct Member {
  cluster::JobLedger ledger;
  std::unique_ptr<cluster::RaftNode> raft;
  cluster::Mux mux;
  std::unique_ptr<WalDisk> disk;
  std::unique_ptr<NetHost> host;

  Member(runtime::Reactor& r, const std::string& dir, net::Endpoint listen, const std::vector<node::NodeId>& voters) {
    cluster::RaftConfig cfg;
    cfg.voters = voters;
    cfg.heartbeat = 50ms;
    cfg.election = 400ms;
    cfg.snapshot_threshold = 16;
    cfg.snapshot_trailing = 4;
    raft = std::make_unique<cluster::RaftNode>(cfg, ledger);
    mux.add(cluster::kRole, raft.get());
    WalDiskOptions d;
    d.dir = dir;
    auto opened = WalDisk::open(r, d);
    REQUIRE(opened.ok());
    disk = std::move(*opened);
    NetHostOptions o;
    o.listen = listen;
    o.role = fb::Role::Manager;
    o.keys = wire::Keyring{wire::Key::derive(kSecret).value(), {}};
    o.transport.sweep_period = 25ms;
    host = std::make_unique<NetHost>(r, mux, o, disk.get());
    REQUIRE(host->start().ok());
  }
};

cluster::LedgerEntry accept_entry(const std::string& id) {
  cluster::LedgerEntry e;
  e.op = cluster::LedgerOp::accept;
  e.job_id = id;
  e.spec.job_id = id;
  e.spec.idempotency_key = fmt::format("key-{}", id);
  e.spec.workflows.resize(1);
  e.digest = 1;
  return e;
}

}  // namespace

TEST_CASE("RaftNode on NetHost + WalDisk: elect, commit on all, recover a member from its WAL", "[host][raft]") {
  runtime::Reactor r;
  std::vector<test::TempDir> dirs(3);
  std::vector<net::Endpoint> eps;
  std::vector<node::NodeId> ids;
  for (int i = 0; i < 3; ++i) {
    eps.push_back(net::Endpoint{"127.0.0.1", test::free_port()});
    ids.push_back(node_id(eps.back()).value());
  }
  std::vector<std::unique_ptr<Member>> m;
  for (int i = 0; i < 3; ++i) m.push_back(std::make_unique<Member>(r, dirs[i].path, eps[i], ids));

  auto leader = [&]() -> int {
    for (int i = 0; i < 3; ++i) {
      if (m[i] && m[i]->raft->is_ready_leader()) return i;
    }
    return -1;
  };
  auto propose = [&](int at, const std::string& id, int* acked) {
    REQUIRE(m[at]
                ->host
                ->run_in(m[at]->mux,
                         [&, id] {
                           auto e = accept_entry(id);
                           REQUIRE(m[at]
                                       ->raft
                                       ->propose(cluster::encode_entry(e),
                                                 [acked](const Status& s, std::uint64_t, std::uint64_t out) {
                                                   if (s.ok() && out == 0) ++*acked;
                                                 })
                                       .ok());
                         })
                .ok());
  };
  auto all_have = [&](std::size_t n) {
    for (auto& x : m) {
      if (!x || x->ledger.size() < n) return false;
    }
    return true;
  };

  REQUIRE(test::run_until(
      r, [&] { return leader() >= 0; }, 20000ms));
  int acked = 0;
  const int l = leader();
  for (int i = 0; i < 20; ++i) propose(l, fmt::format("job-{}", i), &acked);
  REQUIRE(test::run_until(
      r, [&] { return acked == 20 && all_have(20); }, 20000ms));
  for (auto& x : m) CHECK(x->ledger.snapshot() == m[l]->ledger.snapshot());
  CHECK(m[l]->raft->counters().syncs > 0);

  // Close a follower, reopen it from its WAL directory: it recovers the ledger (its own log and
  // snapshot, then the commit index from the leader) and follows new entries.
  const int f = (l + 1) % 3;
  bool closed = false;
  m[f]->host->close([&] { closed = true; });
  REQUIRE(test::run_until(
      r, [&] { return closed; }, 10000ms));
  m[f].reset();
  for (int i = 20; i < 30; ++i) propose(l, fmt::format("job-{}", i), &acked);
  REQUIRE(test::run_until(
      r, [&] { return acked == 30; }, 20000ms));
  m[f] = std::make_unique<Member>(r, dirs[f].path, eps[f], ids);
  REQUIRE(test::run_until(
      r, [&] { return all_have(30); }, 20000ms));
  for (auto& x : m) CHECK(x->ledger.snapshot() == m[l]->ledger.snapshot());
  for (auto& x : m) {
    bool c = false;
    x->host->close([&] { c = true; });
    REQUIRE(test::run_until(
        r, [&] { return c; }, 10000ms));
  }
}
