// The simulator's newer faults: pause, channels (per-channel options and blocks, ordered links),
// several filters, disk faults (refused, full, stall, fsync error returned, unsynced writes lost or
// torn at a crash), rogue nodes, several invariants and HS_ASSERT inside a node. Each test shows the
// fault's effect next to the same run without it.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "hyperscale/base/assert.hpp"
#include "hyperscale/sim/rogue.hpp"
#include "hyperscale/sim/simulator.hpp"

using namespace hs;
using namespace hs::sim;
using namespace std::chrono_literals;

namespace {

// What the test observes of a node; outlives the node (crash) so a test can read it afterwards.
struct Seen {
  std::vector<std::pair<NodeId, Bytes>> got;
  std::vector<std::pair<Instant, std::uint64_t>> timers;
  std::vector<Status> writes;
  std::uint64_t sent = 0;
};

// A node made of lambdas, for tests that need one behaviour each.
struct FnNode final : Node {
  std::function<void(Context&)> start;
  std::function<void(Context&, NodeId, const Bytes&)> message;
  std::function<void(Context&, TimerId, std::uint64_t)> timer;
  std::uint64_t memory = 0;  // lost on crash, kept across a pause
  void on_start(Context& ctx) override {
    if (start) start(ctx);
  }
  void on_message(Context& ctx, NodeId from, std::span<const std::uint8_t> m) override {
    memory++;
    if (message) message(ctx, from, Bytes(m.begin(), m.end()));
  }
  void on_timer(Context& ctx, TimerId id, std::uint64_t tag) override {
    if (timer) timer(ctx, id, tag);
  }
};

// Records messages and timers into `seen`.
Simulator::Factory recorder(Seen* seen) {
  return [seen](NodeId) {
    auto n = std::make_unique<FnNode>();
    n->message = [seen](Context&, NodeId from, const Bytes& m) { seen->got.emplace_back(from, m); };
    n->timer = [seen](Context& ctx, TimerId, std::uint64_t tag) { seen->timers.emplace_back(ctx.now(), tag); };
    return n;
  };
}

// Every `every` sends message {channel, i} to `to` (i counts up), and records its ticks.
Simulator::Factory ticker(Seen* seen, NodeId to, Duration every, std::uint8_t channel = 0) {
  return [=](NodeId) {
    auto n = std::make_unique<FnNode>();
    n->start = [=](Context& ctx) { ctx.set_timer(every, 1); };
    n->message = [seen](Context&, NodeId from, const Bytes& m) { seen->got.emplace_back(from, m); };
    n->timer = [=](Context& ctx, TimerId, std::uint64_t tag) {
      seen->timers.emplace_back(ctx.now(), tag);
      ctx.send(to, Bytes{channel, static_cast<std::uint8_t>(seen->sent++)});
      ctx.set_timer(every, 1);
    };
    return n;
  };
}

FnNode* fn(Simulator& s, NodeId id) { return static_cast<FnNode*>(s.node(id)); }

std::size_t count_from(const Seen& s, NodeId from) {
  return static_cast<std::size_t>(
      std::count_if(s.got.begin(), s.got.end(), [&](const auto& m) { return m.first == from; }));
}

// Sends `n` messages on each of `channels` to node 2 at start: message {channel, i}.
Simulator::Factory burst(std::vector<std::uint8_t> channels, int n) {
  return [=](NodeId) {
    auto node = std::make_unique<FnNode>();
    node->start = [=](Context& ctx) {
      for (int i = 0; i < n; ++i)
        for (std::uint8_t ch : channels) ctx.send(2, Bytes{ch, static_cast<std::uint8_t>(i)});
    };
    return node;
  };
}

bool in_order(const Seen& s, std::uint8_t channel) {
  int last = -1;
  for (const auto& [from, m] : s.got) {
    if (m[0] != channel) continue;
    if (m[1] < last) return false;
    last = m[1];
  }
  return true;
}

std::size_t on_channel(const Seen& s, std::uint8_t channel) {
  return static_cast<std::size_t>(
      std::count_if(s.got.begin(), s.got.end(), [&](const auto& m) { return m.second[0] == channel; }));
}

Bytes b(std::initializer_list<std::uint8_t> v) { return Bytes(v); }

SimOptions seeded(std::uint64_t seed) {
  SimOptions o;
  o.seed = seed;
  return o;
}

}  // namespace

// ---------------------------------------------------------------- pause

TEST_CASE("pause: timers stop, messages wait and arrive after resume, memory is kept, nothing is sent") {
  for (const bool paused : {false, true}) {
    DYNAMIC_SECTION((paused ? "paused" : "not paused")) {
      Simulator s(seeded(3));
      Seen a, b2;
      REQUIRE(s.add_node(1, ticker(&a, 2, 100ms)).ok());
      REQUIRE(s.add_node(2, ticker(&b2, 1, 100ms)).ok());
      s.start_all();
      REQUIRE(s.run_until(Instant{1050ms}).ok());
      const std::size_t got_before = b2.got.size(), ticks_before = b2.timers.size();
      const std::uint64_t sent_before = s.sent_by(2), memory_before = fn(s, 2)->memory;
      CHECK(memory_before == got_before);
      if (paused) {
        REQUIRE(s.pause(2).ok());
        CHECK(s.is_paused(2));
        CHECK_FALSE(s.pause(2).ok());  // already paused: clear error, nothing changes
      }
      REQUIRE(s.run_until(Instant{3050ms}).ok());
      if (paused) {
        CHECK(b2.got.size() == got_before);        // nothing delivered
        CHECK(b2.timers.size() == ticks_before);   // no timer fired
        CHECK(s.sent_by(2) == sent_before);        // it sent nothing
        CHECK(fn(s, 2)->memory == memory_before);  // the same process, memory intact
        CHECK(s.counters().held_paused >= 20);
        REQUIRE(s.resume(2).ok());
        CHECK_FALSE(s.resume(2).ok());
        REQUIRE(s.run_until(Instant{3050ms}).ok());  // the held events run at the resume time
        // The 20 messages node 1 sent meanwhile arrive at once, in order; the overdue timer fires once.
        CHECK(b2.got.size() == got_before + 20);
        CHECK(b2.timers.size() == ticks_before + 1);
        CHECK(b2.timers.back().first == Instant{3050ms});
        CHECK(fn(s, 2)->memory == memory_before + 20);
      } else {
        CHECK(b2.got.size() == got_before + 20);
        CHECK(b2.timers.size() == ticks_before + 20);
        CHECK(s.sent_by(2) == sent_before + 20);
      }
    }
  }
}

TEST_CASE("pause: the held-message queue is bounded, drops are counted; a crash ends the pause") {
  SimOptions o;
  o.seed = 4;
  o.max_paused_messages = 5;
  Simulator s(o);
  Seen a, b2;
  REQUIRE(s.add_node(1, ticker(&a, 2, 100ms)).ok());
  REQUIRE(s.add_node(2, recorder(&b2)).ok());
  CHECK_FALSE(s.pause(2).ok());  // not up
  s.start_all();
  REQUIRE(s.pause(2).ok());
  REQUIRE(s.run_for(2050ms).ok());
  CHECK(s.counters().dropped_paused == 15);
  REQUIRE(s.resume(2).ok());
  REQUIRE(s.run_for(1ms).ok());
  CHECK(b2.got.size() == 5);
  REQUIRE(s.pause(2).ok());
  REQUIRE(s.run_for(300ms).ok());
  REQUIRE(s.crash(2).ok());
  CHECK_FALSE(s.is_paused(2));
  REQUIRE(s.restart(2).ok());
  REQUIRE(s.run_for(1s).ok());
  CHECK(b2.got.size() == 5 + 10);  // the 3 held at the crash are gone; the new process gets the rest
}

// ---------------------------------------------------------------- channels and filters

TEST_CASE("channels: a per-channel block cuts role traffic while SWIM passes") {
  for (const bool cut : {false, true}) {
    DYNAMIC_SECTION((cut ? "role channel blocked" : "no block")) {
      Simulator s(seeded(5));
      s.set_channel_of(Simulator::mux_channel);
      Seen b2;
      REQUIRE(s.add_node(1, burst({1, 3}, 10)).ok());
      REQUIRE(s.add_node(2, recorder(&b2)).ok());
      if (cut) s.partition_channel({1}, {2}, 3);
      CHECK(s.blocked(1, 2, 3) == cut);
      CHECK_FALSE(s.blocked(1, 2, 1));
      CHECK_FALSE(s.blocked(1, 2));
      s.start_all();
      REQUIRE(s.run_for(1s).ok());
      CHECK(on_channel(b2, 1) == 10);
      CHECK(on_channel(b2, 3) == (cut ? 0u : 10u));
      CHECK(s.counters().dropped_partition == (cut ? 10u : 0u));
      s.heal();
      CHECK_FALSE(s.blocked(1, 2, 3));
    }
  }
}

TEST_CASE("channels: loss, duplication and delay apply per channel") {
  Simulator s(seeded(6));
  s.set_channel_of(Simulator::mux_channel);
  ChannelOptions lossy;
  lossy.net.loss = 1.0;
  REQUIRE(s.set_channel(3, lossy).ok());
  ChannelOptions slow_dup;
  slow_dup.net.min_latency = 2s;
  slow_dup.net.duplicate = 1.0;
  REQUIRE(s.set_channel(4, slow_dup).ok());
  ChannelOptions bad;
  bad.net.loss = 2.0;
  CHECK(s.set_channel(5, bad).code() == Errc::invalid_argument);
  Seen b2;
  REQUIRE(s.add_node(1, burst({1, 3, 4}, 10)).ok());
  REQUIRE(s.add_node(2, recorder(&b2)).ok());
  s.start_all();
  REQUIRE(s.run_for(1s).ok());
  CHECK(on_channel(b2, 1) == 10);  // channel 1: the default net()
  CHECK(on_channel(b2, 3) == 0);   // all lost
  CHECK(on_channel(b2, 4) == 0);   // not yet: 2 s minimum latency
  REQUIRE(s.run_for(2s).ok());
  CHECK(on_channel(b2, 4) == 20);  // every one duplicated
  s.clear_channel(3);
  CHECK(s.counters().dropped_loss == 10);
}

TEST_CASE("filters: several at once, next to set_filter; removing one lets its messages through") {
  Simulator s(seeded(7));
  Seen b2;
  REQUIRE(s.add_node(1, burst({1, 2, 3, 4}, 5)).ok());
  REQUIRE(s.add_node(2, recorder(&b2)).ok());
  s.set_filter([](NodeId, NodeId, const Bytes& m) { return m[0] == 1; });
  auto f2 = s.add_filter([](NodeId, NodeId, const Bytes& m) { return m[0] == 2; });
  auto f3 = s.add_filter([](NodeId, NodeId, const Bytes& m) { return m[0] == 3; });
  REQUIRE(f2.ok());
  REQUIRE(f3.ok());
  CHECK_FALSE(s.add_filter(nullptr).ok());
  REQUIRE(s.remove_filter(f3.value()).ok());
  CHECK(s.remove_filter(f3.value()).code() == Errc::not_found);
  s.start_all();
  REQUIRE(s.run_for(1s).ok());
  CHECK(on_channel(b2, 1) == 0);
  CHECK(on_channel(b2, 2) == 0);
  CHECK(on_channel(b2, 3) == 5);
  CHECK(on_channel(b2, 4) == 5);
  CHECK(s.counters().dropped_filter == 10);
}

TEST_CASE("filters: the bound is enforced") {
  SimOptions o;
  o.max_filters = 2;
  Simulator s(o);
  auto never = [](NodeId, NodeId, const Bytes&) { return false; };
  REQUIRE(s.add_filter(never).ok());
  REQUIRE(s.add_filter(never).ok());
  auto third = s.add_filter(never);
  REQUIRE_FALSE(third.ok());
  CHECK(third.status().code() == Errc::backpressure);
}

// ---------------------------------------------------------------- ordered links

TEST_CASE("ordered channel: one link's messages arrive in send order; the UDP-like channel reorders") {
  for (const bool ordered : {false, true}) {
    DYNAMIC_SECTION((ordered ? "channel 3 ordered" : "channel 3 unordered")) {
      Simulator s(seeded(8));
      s.set_channel_of(Simulator::mux_channel);
      s.net().reorder = 0.5;
      ChannelOptions tcp;
      tcp.net.reorder = 0.5;
      tcp.ordered = ordered;
      REQUIRE(s.set_channel(3, tcp).ok());
      Seen b2;
      REQUIRE(s.add_node(1, burst({1, 3}, 200)).ok());
      REQUIRE(s.add_node(2, recorder(&b2)).ok());
      s.start_all();
      REQUIRE(s.run_for(2s).ok());
      CHECK(on_channel(b2, 1) == 200);
      CHECK(on_channel(b2, 3) == 200);
      CHECK_FALSE(in_order(b2, 1));
      CHECK(in_order(b2, 3) == ordered);
    }
  }
}

TEST_CASE("ordered channel: a link cut drops what is in flight on it; the UDP-like channel keeps it") {
  for (const bool cut : {false, true}) {
    DYNAMIC_SECTION((cut ? "cut" : "no cut")) {
      Simulator s(seeded(9));
      s.set_channel_of(Simulator::mux_channel);
      s.net().min_latency = 100ms;
      ChannelOptions tcp;
      tcp.net.min_latency = 100ms;
      tcp.ordered = true;
      REQUIRE(s.set_channel(3, tcp).ok());
      Seen b2;
      REQUIRE(s.add_node(1, burst({1, 3}, 10)).ok());
      REQUIRE(s.add_node(2, recorder(&b2)).ok());
      s.start_all();
      REQUIRE(s.run_for(50ms).ok());  // in flight now
      if (cut) {
        s.block(1, 2);
        s.unblock(1, 2);  // a short cut is enough to reset the connection
      }
      REQUIRE(s.run_for(1s).ok());
      CHECK(on_channel(b2, 1) == 10);
      CHECK(on_channel(b2, 3) == (cut ? 0u : 10u));
      CHECK(s.counters().dropped_cut == (cut ? 10u : 0u));
    }
  }
}

TEST_CASE("ordered channel: a per-channel cut and a receiver restart drop in-flight messages") {
  Simulator s(seeded(10));
  s.set_channel_of(Simulator::mux_channel);
  ChannelOptions tcp;
  tcp.net.min_latency = 100ms;
  tcp.ordered = true;
  REQUIRE(s.set_channel(3, tcp).ok());
  REQUIRE(s.set_channel(4, tcp).ok());
  Seen b2;
  REQUIRE(s.add_node(1, burst({3, 4}, 5)).ok());
  REQUIRE(s.add_node(2, recorder(&b2)).ok());
  s.start_all();
  REQUIRE(s.run_for(50ms).ok());
  s.block_channel(1, 2, 4);
  s.unblock_channel(1, 2, 4);
  REQUIRE(s.run_for(1s).ok());
  CHECK(on_channel(b2, 3) == 5);
  CHECK(on_channel(b2, 4) == 0);
  // Receiver restarted while messages are in flight: the new process never sees them.
  REQUIRE(s.crash(1).ok());
  REQUIRE(s.restart(1).ok());  // sends 5 + 5 again
  REQUIRE(s.run_for(50ms).ok());
  REQUIRE(s.crash(2).ok());
  REQUIRE(s.restart(2).ok());
  REQUIRE(s.run_for(1s).ok());
  CHECK(b2.got.size() == 5);
  CHECK(s.counters().dropped_cut == 15);
}

// ---------------------------------------------------------------- disk faults

TEST_CASE("disk: a refused write returns an error and changes nothing") {
  MemDisk m;
  FaultyDisk d(m, 1);
  REQUIRE(d.put("k", b({1})).ok());
  REQUIRE(d.append("log", b({1})).ok());
  d.refuse_next(4);
  CHECK(d.put("k", b({2})).code() == Errc::io_error);
  CHECK(d.append("log", b({2})).code() == Errc::io_error);
  CHECK(d.erase("k").code() == Errc::io_error);
  CHECK(d.truncate_log("log").code() == Errc::io_error);
  CHECK(d.get("k") == std::optional<Bytes>(b({1})));
  CHECK(d.read_log("log") == std::vector<Bytes>{b({1})});
  CHECK(d.counters().refused == 4);
  REQUIRE(d.put("k", b({3})).ok());  // the fault was for 4 writes
  CHECK(d.get("k") == std::optional<Bytes>(b({3})));
  CHECK_FALSE(d.set_refuse_probability(1.5).ok());
  REQUIRE(d.set_refuse_probability(0.5).ok());
  int refused = 0;
  for (int i = 0; i < 200; ++i) refused += d.put("p", b({1})).ok() ? 0 : 1;
  CHECK(refused > 60);
  CHECK(refused < 140);
}

TEST_CASE("disk: full refuses writes that need room until room is freed or the fault ends") {
  MemDisk m;
  FaultyDisk d(m, 1);
  REQUIRE(d.put("a", Bytes(10, 1)).ok());
  REQUIRE(d.put("b", Bytes(10, 2)).ok());
  d.set_full(true);
  CHECK(d.full());
  CHECK(d.put("c", b({1})).code() == Errc::backpressure);
  CHECK(d.append("log", b({1})).code() == Errc::backpressure);
  CHECK(d.put("a", Bytes(11, 1)).code() == Errc::backpressure);
  CHECK_FALSE(d.get("c"));
  CHECK(d.counters().refused_full == 3);
  REQUIRE(d.put("a", Bytes(5, 1)).ok());   // shrinking needs no room
  REQUIRE(d.erase("b").ok());              // frees 11 bytes
  REQUIRE(d.put("c", Bytes(10, 3)).ok());  // fits in the freed room
  CHECK(d.put("d", Bytes(10, 3)).code() == Errc::backpressure);
  d.set_full(false);
  REQUIRE(d.put("d", Bytes(10, 3)).ok());
}

namespace {
// A node that, on start, writes `writes` (key w<i> = {i}) with a sync after the first `synced` of
// them; reports sync completions (tag) into seen->timers.
Simulator::Factory writer(Seen* seen, int synced, int writes) {
  return [=](NodeId) {
    auto n = std::make_unique<FnNode>();
    n->start = [=](Context& ctx) {
      for (int i = 0; i < writes; ++i) {
        seen->writes.push_back(ctx.disk().put(fmt::format("w{}", i), Bytes{static_cast<std::uint8_t>(i)}));
        if (i + 1 == synced) ctx.sync(100 + static_cast<std::uint64_t>(i));
      }
    };
    n->timer = [seen](Context& ctx, TimerId, std::uint64_t tag) { seen->timers.emplace_back(ctx.now(), tag); };
    return n;
  };
}
}  // namespace

TEST_CASE("disk: a stalled disk accepts writes but the sync barrier fires only when the stall ends") {
  for (const bool stall : {false, true}) {
    DYNAMIC_SECTION((stall ? "stalled" : "not stalled")) {
      Simulator s(seeded(11));
      Seen w;
      REQUIRE(s.add_node(1, writer(&w, 1, 1)).ok());
      REQUIRE(s.set_disk_fault(1, 5ms, false).ok());
      if (stall) {
        REQUIRE(s.stall_disk(1, true).ok());
        s.at(Instant{2s}, [](Simulator& sm) { REQUIRE(sm.stall_disk(1, false).ok()); });
      }
      s.start_all();
      REQUIRE(s.run_for(1s).ok());
      CHECK(w.writes.size() == 1);
      CHECK(w.writes[0].ok());  // the write was accepted either way
      CHECK(w.timers.size() == (stall ? 0u : 1u));
      CHECK(s.counters().syncs_stalled == (stall ? 1u : 0u));
      REQUIRE(s.run_for(2s).ok());
      REQUIRE(w.timers.size() == 1);
      CHECK(w.timers[0].first == (stall ? Instant{2s} : Instant{5ms}));
      CHECK(w.timers[0].second == 100);
    }
  }
}

TEST_CASE("disk: an fsync error is returned to the node in the sync timer's tag; the node lives on") {
  for (const bool fail : {false, true}) {
    DYNAMIC_SECTION((fail ? "fsync fails once" : "fsync succeeds")) {
      Simulator s(seeded(12));
      Seen w;
      REQUIRE(s.add_node(1, [&w](NodeId) {
                 auto n = std::make_unique<FnNode>();
                 n->start = [](Context& ctx) {
                   REQUIRE(ctx.disk().put("a", Bytes{1}).ok());
                   ctx.sync(7);
                   REQUIRE(ctx.disk().put("b", Bytes{2}).ok());
                   ctx.sync(8);
                 };
                 n->timer = [&w](Context& ctx, TimerId, std::uint64_t tag) { w.timers.emplace_back(ctx.now(), tag); };
                 return n;
               }).ok());
      REQUIRE(s.disk_faults(1) != nullptr);
      s.disk_faults(1)->set_crash_loss(CrashLoss::kAll);
      if (fail) s.disk_faults(1)->fail_next_syncs(1);
      s.start_all();
      REQUIRE(s.run_for(1s).ok());
      CHECK(s.is_up(1));
      REQUIRE(w.timers.size() == 2);
      CHECK(w.timers[0].second == (fail ? (7 | kSyncFailed) : 7));
      CHECK(w.timers[1].second == 8);
      CHECK(s.disk_faults(1)->counters().syncs_failed == (fail ? 1u : 0u));
    }
  }
}

TEST_CASE("disk: a failed sync leaves its writes unsynced: a crash loses them") {
  Simulator s(seeded(13));
  Seen w;
  REQUIRE(s.add_node(1, writer(&w, 2, 2)).ok());
  s.disk_faults(1)->set_crash_loss(CrashLoss::kAll);
  s.disk_faults(1)->fail_next_syncs(1);
  s.start_all();
  REQUIRE(s.run_for(1s).ok());
  REQUIRE(w.timers.size() == 1);
  CHECK((w.timers[0].second & kSyncFailed) != 0);
  CHECK(s.disk_faults(1)->unsynced_writes() == 2);
  REQUIRE(s.crash(1).ok());
  CHECK_FALSE(s.disk(1)->get("w0"));
  CHECK_FALSE(s.disk(1)->get("w1"));
}

TEST_CASE("disk: writes after the last completed sync are lost at a crash (kAll), kept with kNone") {
  for (const CrashLoss mode : {CrashLoss::kNone, CrashLoss::kAll}) {
    DYNAMIC_SECTION("mode " << static_cast<int>(mode)) {
      Simulator s(seeded(14));
      Seen w;
      REQUIRE(s.add_node(1, writer(&w, 2, 5)).ok());
      s.disk_faults(1)->set_crash_loss(mode);
      s.start_all();
      REQUIRE(s.run_for(1s).ok());  // the sync after w1 has completed; w2..w4 are unsynced
      REQUIRE(w.timers.size() == 1);
      REQUIRE(s.crash(1).ok());
      CHECK(s.disk(1)->get("w0"));
      CHECK(s.disk(1)->get("w1"));
      for (int i = 2; i < 5; ++i)
        CHECK(s.disk(1)->get(fmt::format("w{}", i)).has_value() == (mode == CrashLoss::kNone));
      CHECK(s.disk_faults(1)->counters().lost_at_crash == (mode == CrashLoss::kAll ? 3u : 0u));
    }
  }
}

TEST_CASE("disk: durable_log is what a crash losing every unsynced write would leave, in every mode") {
  for (const CrashLoss mode : {CrashLoss::kNone, CrashLoss::kAll, CrashLoss::kTornLast}) {
    DYNAMIC_SECTION("mode " << static_cast<int>(mode)) {
      MemDisk m;
      FaultyDisk d(m, 3);
      d.set_crash_loss(mode);
      d.track_durable(true);
      REQUIRE(d.append("log", b({0})).ok());
      REQUIRE(d.append("log", b({1})).ok());
      REQUIRE(d.sync_end(d.sync_begin()).ok());
      REQUIRE(d.append("log", b({2})).ok());  // unsynced
      REQUIRE(d.put("log", b({9})).ok());     // a key of the same name is not the log
      CHECK(d.read_log("log").size() == 3);
      CHECK(d.durable_log("log") == std::vector<Bytes>{b({0}), b({1})});
      // An unsynced compaction: the durable log is still the old one.
      const std::vector<Bytes> compacted{b({7})};
      REQUIRE(d.replace_log("log", compacted).ok());
      REQUIRE(d.append("log", b({8})).ok());
      CHECK(d.durable_log("log") == std::vector<Bytes>{b({0}), b({1})});
      REQUIRE(d.sync_end(d.sync_begin()).ok());
      CHECK(d.durable_log("log") == std::vector<Bytes>{b({7}), b({8})});
      REQUIRE(d.truncate_log("log").ok());
      CHECK(d.durable_log("log") == std::vector<Bytes>{b({7}), b({8})});
      CHECK(d.read_log("log").empty());
    }
  }
  SECTION("without tracking, kNone keeps no journal: every write counts as durable") {
    MemDisk m;
    FaultyDisk d(m, 3);
    REQUIRE(d.append("log", b({0})).ok());
    CHECK(d.durable_log("log").size() == 1);
    CHECK(d.unsynced_writes() == 0);
  }
}

TEST_CASE("disk: unsynced writes lost as a suffix (kSuffix): what survives is a prefix in write order") {
  std::map<std::size_t, int> kept_counts;
  for (std::uint64_t seed = 1; seed <= 60; ++seed) {
    MemDisk m;
    FaultyDisk d(m, seed);
    REQUIRE(d.append("log", b({0})).ok());
    REQUIRE(d.sync_end(d.sync_begin()).ok());
    d.set_crash_loss(CrashLoss::kSuffix);
    REQUIRE(d.put("k", b({1})).ok());
    for (std::uint8_t i = 1; i <= 4; ++i) REQUIRE(d.append("log", b({i})).ok());
    REQUIRE(d.erase("k").ok());
    REQUIRE(d.unsynced_writes() == 6);
    d.crash();
    const auto log = d.read_log("log");
    REQUIRE(!log.empty());
    for (std::size_t i = 0; i < log.size(); ++i) CHECK(log[i] == b({static_cast<std::uint8_t>(i)}));
    // The six writes were: put k, append 1..4, erase k. Survivors are a prefix of them.
    std::size_t kept = log.size();  // k present: the put and log.size() - 1 appends
    if (!d.get("k")) {
      CHECK((log.size() == 1 || log.size() == 5));  // nothing kept, or everything (k erased)
      kept = log.size() == 1 ? 0 : 6;
    }
    kept_counts[kept]++;
    CHECK(d.unsynced_writes() == 0);
  }
  CHECK(kept_counts.size() >= 5);  // different seeds keep different prefixes
}

TEST_CASE("disk: a torn write (kTornLast): the last unsynced append is a short record, a put a partial overwrite") {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    MemDisk m;
    FaultyDisk d(m, seed);
    REQUIRE(d.put("k", Bytes{10, 11, 12, 13, 14, 15}).ok());
    REQUIRE(d.append("log", b({1, 1})).ok());
    REQUIRE(d.sync_end(d.sync_begin()).ok());
    d.set_crash_loss(CrashLoss::kTornLast);
    REQUIRE(d.append("log", b({2, 2})).ok());
    REQUIRE(d.append("log", Bytes{3, 4, 5, 6, 7, 8, 9, 10}).ok());
    d.crash();
    auto log = d.read_log("log");
    REQUIRE(log.size() == 3);
    CHECK(log[1] == b({2, 2}));  // earlier unsynced writes survive
    const Bytes full{3, 4, 5, 6, 7, 8, 9, 10};
    CHECK(log[2].size() >= 1);
    CHECK(log[2].size() < full.size());
    CHECK(std::equal(log[2].begin(), log[2].end(), full.begin()));
    CHECK(d.counters().torn_at_crash == 1);

    REQUIRE(d.put("k", Bytes{20, 21, 22, 23}).ok());
    d.crash();
    const Bytes k = d.get("k").value_or(Bytes{});
    // v[0, n) then the old value's bytes at [n, 4): a 4-byte value mixing new and old, never all new.
    REQUIRE(k.size() == 4);
    CHECK(k[0] == 20);
    CHECK(k[3] == 13);
    for (std::size_t i = 1; i < 4; ++i) CHECK((k[i] == 20 + i || k[i] == 10 + i));
  }
  // Without the mode the same crash keeps the whole write.
  MemDisk m;
  FaultyDisk d(m, 1);
  REQUIRE(d.append("log", Bytes{3, 4, 5, 6}).ok());
  d.crash();
  CHECK(d.read_log("log") == std::vector<Bytes>{Bytes{3, 4, 5, 6}});
}

TEST_CASE("disk: a torn erase or 1-byte write is undone; the journal is bounded") {
  MemDisk m;
  FaultyDisk d(m, 1, FaultyDisk::Limits{3, 1 << 20});
  REQUIRE(d.put("k", b({1, 2})).ok());
  d.set_crash_loss(CrashLoss::kTornLast);
  REQUIRE(d.erase("k").ok());
  d.crash();
  CHECK(d.get("k") == std::optional<Bytes>(b({1, 2})));
  REQUIRE(d.append("log", b({9})).ok());
  d.crash();
  CHECK(d.read_log("log").empty());
  d.set_crash_loss(CrashLoss::kAll);
  for (std::uint8_t i = 0; i < 5; ++i) REQUIRE(d.append("log", b({i})).ok());
  CHECK(d.unsynced_writes() == 3);
  CHECK(d.counters().journal_evicted == 2);
  d.crash();
  CHECK(d.read_log("log") == std::vector<Bytes>{b({0}), b({1})});  // the two evicted became durable
}

TEST_CASE("disk faults on a schedule in the simulator: refused and full on one node only") {
  Simulator s(seeded(15));
  Seen w1, w2;
  auto periodic_writer = [](Seen* seen) {
    return [seen](NodeId) {
      auto n = std::make_unique<FnNode>();
      n->start = [](Context& ctx) { ctx.set_timer(100ms, 0); };
      n->timer = [seen](Context& ctx, TimerId, std::uint64_t) {
        seen->writes.push_back(ctx.disk().append("log", Bytes(8, 1)));
        ctx.set_timer(100ms, 0);
      };
      return n;
    };
  };
  REQUIRE(s.add_node(1, periodic_writer(&w1)).ok());
  REQUIRE(s.add_node(2, periodic_writer(&w2)).ok());
  s.at(Instant{1s}, [](Simulator& sm) { sm.disk_faults(1)->refuse_next(2); });
  s.at(Instant{2s}, [](Simulator& sm) { sm.disk_faults(1)->set_full(true); });
  s.at(Instant{3s}, [](Simulator& sm) { sm.disk_faults(1)->set_full(false); });
  s.start_all();
  REQUIRE(s.run_for(Duration{3950ms}).ok());
  auto failures = [](const Seen& s) {
    return std::count_if(s.writes.begin(), s.writes.end(), [](const Status& st) { return !st.ok(); });
  };
  CHECK(w1.writes.size() == 39);
  CHECK(failures(w1) == 2 + 10);
  CHECK(failures(w2) == 0);
  CHECK(s.disk(1)->read_log("log").size() == 39 - 12);
}

// ---------------------------------------------------------------- rogue nodes

TEST_CASE("rogue: random forged messages on a schedule, sent as itself") {
  Simulator s(seeded(16));
  Seen b2, b3;
  REQUIRE(s.add_node(2, recorder(&b2)).ok());
  REQUIRE(s.add_node(3, recorder(&b3)).ok());
  RogueOptions o;
  o.every = 100ms;
  o.until = Instant{1s};
  o.prefix = 1;
  o.max_bytes = 32;
  REQUIRE(add_rogue(s, 99, o).ok());
  RogueOptions bad;
  bad.every = 0ms;
  CHECK(add_rogue(s, 98, bad).code() == Errc::invalid_argument);
  s.start_all();
  REQUIRE(s.run_for(2s).ok());
  CHECK(count_from(b2, 99) == 10);
  CHECK(count_from(b3, 99) == 10);
  for (const auto& [from, m] : b2.got) {
    CHECK(from == 99);
    CHECK(m[0] == 1);
    CHECK(m.size() >= 2);
    CHECK(m.size() <= 33);
  }
  CHECK(static_cast<RogueNode*>(s.node(99))->sent() == 20);
}

TEST_CASE("rogue: a test-built forge replays what the rogue heard to a chosen target") {
  Simulator s(seeded(17));
  Seen a, b2;
  REQUIRE(s.add_node(1, ticker(&a, 99, 100ms, 3)).ok());  // talks to the rogue
  REQUIRE(s.add_node(2, recorder(&b2)).ok());
  RogueOptions o;
  o.targets = {2};
  o.every = 100ms;
  o.forge = [](Rng&, NodeId, std::uint64_t, const std::deque<Bytes>& heard) -> std::optional<Bytes> {
    if (heard.empty()) return std::nullopt;
    return heard.back();
  };
  REQUIRE(add_rogue(s, 99, o).ok());
  s.start_all();
  REQUIRE(s.run_for(Duration{1050ms}).ok());
  REQUIRE(!b2.got.empty());
  for (const auto& [from, m] : b2.got) {
    CHECK(from == 99);
    CHECK(m[0] == 3);  // node 1's own message, replayed by the rogue
  }
  CHECK(static_cast<RogueNode*>(s.node(99))->heard() >= 9);
}

// ---------------------------------------------------------------- invariants and HS_ASSERT

TEST_CASE("invariants: several named checks run after every event; the failing one is named with seed and time") {
  Simulator s(seeded(18));
  Seen b2;
  REQUIRE(s.add_node(1, burst({1}, 10)).ok());
  REQUIRE(s.add_node(2, recorder(&b2)).ok());
  int first = 0, second = 0;
  REQUIRE(s.add_invariant("always ok", [&](Simulator&) {
             ++first;
             return ok_status();
           }).ok());
  REQUIRE(s.add_invariant("fewer than 4", [&](Simulator&) -> Status {
             ++second;
             if (b2.got.size() >= 4) return make_error(Errc::internal, "got 4");
             return ok_status();
           }).ok());
  CHECK_FALSE(s.add_invariant("empty", nullptr).ok());
  s.start_all();
  Status st = s.run_for(1s);
  REQUIRE_FALSE(st.ok());
  CHECK(b2.got.size() == 4);
  CHECK(first == second);
  CHECK(first >= 5);
  CHECK(st.message().find("seed 18 at t=") == 0);
  CHECK(st.message().find("invariant 'fewer than 4': got 4") != std::string::npos);
  CHECK(s.failure() == st.message());
}

namespace {
void fake_handler(std::string_view, int, std::string_view, std::string_view) { std::abort(); }
}  // namespace

TEST_CASE("HS_ASSERT inside a node stops the run with the seed and time; the handler is restored") {
  set_assert_handler(&fake_handler);
  Simulator s(seeded(19));
  REQUIRE(s.add_node(1, burst({1}, 3)).ok());
  REQUIRE(s.add_node(2, [](NodeId) {
             auto n = std::make_unique<FnNode>();
             n->message = [](Context&, NodeId from, const Bytes& m) {
               HS_ASSERT(m[1] < 2, "message {} from {} too big", m[1], from);
             };
             return n;
           }).ok());
  s.start_all();
  Status st = s.run_for(1s);
  REQUIRE_FALSE(st.ok());
  CHECK(st.code() == Errc::internal);
  CHECK(st.message().find("seed 19 at t=") == 0);
  CHECK(st.message().find("assertion failed") != std::string::npos);
  CHECK(st.message().find("m[1] < 2") != std::string::npos);
  CHECK(st.message().find("message 2 from 1 too big") != std::string::npos);
  CHECK(fn(s, 2)->memory >= 1);  // the node stays as the assertion left it (not crashed)
  // The run cannot go on: the node stopped half-way through an event.
  CHECK(s.run_for(1s) == st);
  CHECK(assert_handler() == &fake_handler);
  set_assert_handler(nullptr);
}

// ---------------------------------------------------------------- determinism

namespace {
std::uint64_t all_faults_run(std::uint64_t seed) {
  Simulator s(seeded(seed));
  s.set_channel_of(Simulator::mux_channel);
  s.net().loss = 0.1;
  s.net().duplicate = 0.1;
  s.net().reorder = 0.3;
  ChannelOptions tcp;
  tcp.ordered = true;
  tcp.net.reorder = 0.5;
  tcp.net.duplicate = 0.1;
  REQUIRE(s.set_channel(3, tcp).ok());
  std::vector<Seen> seen(4);
  for (NodeId id = 1; id <= 3; ++id) {
    REQUIRE(s.add_node(id, [&seen, id](NodeId) {
               auto n = std::make_unique<FnNode>();
               n->start = [](Context& ctx) { ctx.set_timer(50ms, 1); };
               n->message = [&seen, id](Context&, NodeId from, const Bytes& m) { seen[id].got.emplace_back(from, m); };
               n->timer = [id](Context& ctx, TimerId, std::uint64_t tag) {
                 if ((tag & 1) == 0) return;  // sync completions
                 const Status st = ctx.disk().append("log", Bytes(1 + ctx.rng().below(16), 7));
                 if (st.ok()) ctx.sync(2);
                 for (NodeId to = 1; to <= 3; ++to)
                   if (to != id) {
                     ctx.send(to, Bytes{1, static_cast<std::uint8_t>(ctx.rng().next_u32())});
                     ctx.send(to, Bytes{3, static_cast<std::uint8_t>(ctx.rng().next_u32())});
                   }
                 ctx.set_timer(Duration{std::chrono::milliseconds(20 + ctx.rng().below(60))}, 1);
               };
               return n;
             }).ok());
    s.disk_faults(id)->set_crash_loss(id == 1 ? CrashLoss::kSuffix : CrashLoss::kTornLast);
    REQUIRE(s.disk_faults(id)->set_refuse_probability(0.05).ok());
  }
  RogueOptions o;
  o.every = 70ms;
  o.prefix = 3;
  REQUIRE(add_rogue(s, 9, o).ok());
  REQUIRE(
      s.add_filter([](NodeId, NodeId to, const Bytes& m) { return to == 3 && m.size() > 1 && m[1] % 7 == 0; }).ok());
  REQUIRE(s.add_invariant("true", [](Simulator&) { return ok_status(); }).ok());
  REQUIRE(s.set_disk_fault(2, 3ms, false).ok());
  s.at(Instant{1s}, [](Simulator& sm) { REQUIRE(sm.pause(1).ok()); });
  s.at(Instant{2s}, [](Simulator& sm) { REQUIRE(sm.resume(1).ok()); });
  s.at(Instant{1500ms}, [](Simulator& sm) { sm.partition_channel({2}, {3}, 3); });
  s.at(Instant{2500ms}, [](Simulator& sm) { sm.heal(); });
  s.at(Instant{1200ms}, [](Simulator& sm) { REQUIRE(sm.stall_disk(2, true).ok()); });
  s.at(Instant{1800ms}, [](Simulator& sm) { REQUIRE(sm.stall_disk(2, false).ok()); });
  s.at(Instant{2200ms}, [](Simulator& sm) { sm.disk_faults(3)->fail_next_syncs(2); });
  s.at(Instant{2600ms}, [](Simulator& sm) { sm.disk_faults(2)->set_full(true); });
  s.at(Instant{3s}, [](Simulator& sm) {
    REQUIRE(sm.crash(2).ok());
    REQUIRE(sm.crash(3).ok());
  });
  s.at(Instant{3100ms}, [](Simulator& sm) {
    sm.disk_faults(2)->set_full(false);
    REQUIRE(sm.restart(2).ok());
    REQUIRE(sm.restart(3).ok());
  });
  s.start_all();
  REQUIRE(s.run_for(5s).ok());
  CHECK(s.counters().held_paused > 0);
  CHECK(s.counters().syncs_stalled > 0);
  CHECK(s.counters().dropped_filter > 0);
  CHECK(s.disk_faults(3)->counters().syncs_failed == 2);
  return s.trace_hash() ^ s.disk(1)->read_log("log").size() ^ (s.disk(3)->read_log("log").size() << 20);
}
}  // namespace

TEST_CASE("the same seed replays the same trace with every new fault enabled; another seed does not") {
  const std::uint64_t a = all_faults_run(21), b2 = all_faults_run(21), c = all_faults_run(22);
  CHECK(a == b2);
  CHECK(a != c);
}
