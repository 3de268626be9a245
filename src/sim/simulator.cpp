#include "hyperscale/sim/simulator.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

#include <fmt/format.h>

#include "hyperscale/base/assert.hpp"
#include "hyperscale/base/log.hpp"

namespace hs::sim {

namespace {
// The virtual wall clock of every simulated node starts here (2027-01-15, Unix ms) and follows the
// node's clock, skew included.
constexpr std::uint64_t kSimWallEpochMs = 1'800'000'000'000;
// Thrown by the assertion handler the simulator installs during run_until: it unwinds out of the
// node's event back to run_until, which stops the run (assert handlers must not return).
struct AssertionFailed {
  std::string what;
};

void throw_on_assert(std::string_view file, int line, std::string_view condition, std::string_view values) {
  throw AssertionFailed{fmt::format("{}:{}: {}{}{}{}", file, line, condition, values.empty() ? "" : " (", values,
                                    values.empty() ? "" : ")")};
}

// Installs throw_on_assert for one run_until and restores the previous handler after it.
class AssertScope {
 public:
  AssertScope() : prev_(assert_handler()) { set_assert_handler(&throw_on_assert); }
  ~AssertScope() { set_assert_handler(prev_); }
  AssertScope(const AssertScope&) = delete;
  AssertScope& operator=(const AssertScope&) = delete;

 private:
  AssertHandler prev_;
};

// The disk's random stream: a function of the seed and the node id only, so it does not take draws
// from the simulator's stream (adding disk faults does not shift network draws).
std::uint64_t disk_seed(std::uint64_t seed, NodeId id) { return seed ^ (id * 0x9E3779B97F4A7C15ull) ^ 0xD15C0000ull; }
}  // namespace

// ---------------- clock ----------------

Instant NodeClock::now() const noexcept {
  if (rate == 1.0) return global + offset;
  return Instant{static_cast<std::int64_t>(static_cast<double>(global.count()) * rate)} + offset;
}

// ---------------- simulator ----------------

struct Simulator::NodeSlot {
  explicit NodeSlot(std::uint64_t dseed) : fdisk(disk, dseed) {}
  NodeId id = 0;
  Factory factory;
  std::unique_ptr<node::Node> node;
  MemDisk disk;
  FaultyDisk fdisk;  // what the node and the test see; wraps `disk`
  NodeClock clock;
  Rng rng{0};
  std::uint64_t epoch = 0;  // bumped on crash: stale timers/messages are dropped
  bool up = false;
  bool ever_started = false;
  std::unordered_map<node::TimerId, bool> live_timers;  // set on creation, erased on fire/cancel
  node::TimerId next_timer = 1;
  double slow_factor = 1.0;
  Duration slow_unit{0};
  Duration fsync_delay{0};
  bool fail_sync = false;
  std::uint64_t sent = 0;
  std::unique_ptr<node::Context> ctx;                // created at the first event; outlives every Node of the slot
  std::unordered_map<TimerId, std::uint64_t> syncs;  // sync timer -> barrier position (erased on completion)
  bool disk_stalled = false;
  std::vector<Event> stalled_syncs;  // completions held by a stall, in arrival order
  bool paused = false;
  std::deque<Event> held;  // events held while paused, in arrival order
  std::size_t held_messages = 0;
  Instant slow_fifo{0};  // a slow node reads each ordered link's messages in order
};

class Simulator::Ctx final : public node::Context {
 public:
  Ctx(Simulator& s, NodeSlot& n) : sim_(s), n_(n) {}
  node::NodeId self() const override { return n_.id; }
  const Clock& clock() const override { return n_.clock; }
  std::uint64_t wall_ms() const override {
    return kSimWallEpochMs + static_cast<std::uint64_t>(std::max<std::int64_t>(0, n_.clock.now().count() / 1'000'000));
  }
  Rng& rng() override { return n_.rng; }
  void send(node::NodeId to, node::Bytes msg) override { sim_.send_from(n_.id, to, std::move(msg)); }
  node::TimerId set_timer(Duration after, std::uint64_t tag) override { return sim_.set_timer_for(n_.id, after, tag); }
  void cancel_timer(node::TimerId id) override { n_.live_timers.erase(id); }
  node::TimerId sync(std::uint64_t tag) override {
    if (n_.fail_sync) {
      n_.fail_sync = false;
      const node::NodeId id = n_.id;
      sim_.at(sim_.now(), [id](Simulator& s) { (void)s.crash(id); });
      return 0;
    }
    const std::uint64_t pos = n_.fdisk.sync_begin();
    const TimerId tid = sim_.set_timer_for(n_.id, n_.fsync_delay, tag);
    if (n_.live_timers.count(tid) != 0) n_.syncs.emplace(tid, pos);
    return tid;
  }
  Disk& disk() override { return n_.fdisk; }

 private:
  Simulator& sim_;
  NodeSlot& n_;
};

Simulator::Simulator(SimOptions opts) : opts_(std::move(opts)), rng_(opts_.seed) { tail_.resize(opts_.trace_tail); }
Simulator::~Simulator() = default;

void Simulator::mix(std::uint64_t v) noexcept {
  // FNV-1a over the 8 bytes of v.
  for (int i = 0; i < 8; ++i) {
    hash_ ^= (v >> (i * 8)) & 0xff;
    hash_ *= 1099511628211ull;
  }
}

void Simulator::note(const Event& e, const char* what) {
  if (tail_.empty()) return;
  tail_[tail_pos_ % tail_.size()] = fmt::format("t={:.6f}s {} to={} from={} tag={} bytes={}", to_seconds(e.t), what,
                                                e.to, e.from, e.tag, e.payload ? e.payload->size() : 0);
  ++tail_pos_;
}

std::vector<std::string> Simulator::trace_tail() const {
  std::vector<std::string> out;
  const std::size_t n = std::min(tail_pos_, tail_.size());
  for (std::size_t i = tail_pos_ - n; i < tail_pos_; ++i) out.push_back(tail_[i % tail_.size()]);
  return out;
}

bool Simulator::push(Event e) {
  if (queue_.size() >= opts_.max_pending_events) {
    counters_.refused_events++;
    log::warn("sim", "event_refused", "reason=queue_full pending={}", queue_.size());
    return false;
  }
  e.seq = ++seq_;
  queue_.push(std::move(e));
  return true;
}

Status Simulator::add_node(node::NodeId id, Factory factory) {
  if (nodes_.count(id)) return make_error(Errc::already_exists, fmt::format("sim: node {} exists", id));
  if (nodes_.size() >= opts_.max_nodes)
    return make_error(Errc::backpressure, fmt::format("sim: node limit {} reached", opts_.max_nodes));
  auto slot = std::make_unique<NodeSlot>(disk_seed(opts_.seed, id));
  slot->id = id;
  slot->factory = std::move(factory);
  slot->rng = rng_.fork();
  nodes_.emplace(id, std::move(slot));
  order_.push_back(id);
  return ok_status();
}

Status Simulator::start(node::NodeId id) {
  auto it = nodes_.find(id);
  if (it == nodes_.end()) return make_error(Errc::not_found, fmt::format("sim: no node {}", id));
  NodeSlot& s = *it->second;
  if (s.up) return make_error(Errc::already_exists, fmt::format("sim: node {} already up", id));
  s.node = s.factory(id);
  if (!s.node) return make_error(Errc::internal, fmt::format("sim: factory returned null for node {}", id));
  s.up = true;
  s.ever_started = true;
  Event e{};
  e.t = now_;
  e.kind = Event::kStart;
  e.to = id;
  e.epoch = s.epoch;
  if (!push(std::move(e))) return make_error(Errc::backpressure, "sim: event queue full");
  return ok_status();
}

void Simulator::start_all() {
  for (node::NodeId id : order_) {
    if (!nodes_[id]->up) {
      Status st = start(id);
      if (!st.ok()) log::error("sim", "start_failed", "node={} error={}", id, log::quoted(st.to_string()));
    }
  }
}

Status Simulator::crash(node::NodeId id) {
  auto it = nodes_.find(id);
  if (it == nodes_.end()) return make_error(Errc::not_found, fmt::format("sim: no node {}", id));
  NodeSlot& s = *it->second;
  if (!s.up) return make_error(Errc::invalid_argument, fmt::format("sim: node {} is not up", id));
  s.node.reset();
  s.up = false;
  s.epoch++;
  s.live_timers.clear();
  s.syncs.clear();
  s.stalled_syncs.clear();
  counters_.dropped_down += s.held_messages;
  s.held.clear();
  s.held_messages = 0;
  s.paused = false;
  s.fdisk.crash();
  mix(0xC4A5u);
  mix(id);
  return ok_status();
}

Status Simulator::restart(node::NodeId id) {
  auto it = nodes_.find(id);
  if (it == nodes_.end()) return make_error(Errc::not_found, fmt::format("sim: no node {}", id));
  if (it->second->up) return make_error(Errc::invalid_argument, fmt::format("sim: node {} is up", id));
  return start(id);
}

bool Simulator::is_up(node::NodeId id) const {
  auto it = nodes_.find(id);
  return it != nodes_.end() && it->second->up;
}

node::Node* Simulator::node(node::NodeId id) {
  auto it = nodes_.find(id);
  return it == nodes_.end() || !it->second->up ? nullptr : it->second->node.get();
}

node::Disk* Simulator::disk(node::NodeId id) {
  auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : &it->second->fdisk;
}

FaultyDisk* Simulator::disk_faults(NodeId id) {
  auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : &it->second->fdisk;
}

Status Simulator::stall_disk(NodeId id, bool stalled) {
  auto it = nodes_.find(id);
  if (it == nodes_.end()) return make_error(Errc::not_found, fmt::format("sim: no node {}", id));
  NodeSlot& s = *it->second;
  s.disk_stalled = stalled;
  mix(0x57A11u);
  mix(id);
  mix(stalled ? 1 : 0);
  if (!stalled) {
    std::vector<Event> held = std::move(s.stalled_syncs);
    s.stalled_syncs.clear();
    for (Event& e : held) {
      e.t = now_;
      push(std::move(e));
    }
  }
  return ok_status();
}

Status Simulator::pause(NodeId id) {
  auto it = nodes_.find(id);
  if (it == nodes_.end()) return make_error(Errc::not_found, fmt::format("sim: no node {}", id));
  NodeSlot& s = *it->second;
  if (!s.up) return make_error(Errc::invalid_argument, fmt::format("sim: node {} is not up", id));
  if (s.paused) return make_error(Errc::invalid_argument, fmt::format("sim: node {} is already paused", id));
  s.paused = true;
  mix(0x9A05Eu);
  mix(id);
  return ok_status();
}

Status Simulator::resume(NodeId id) {
  auto it = nodes_.find(id);
  if (it == nodes_.end()) return make_error(Errc::not_found, fmt::format("sim: no node {}", id));
  NodeSlot& s = *it->second;
  if (!s.paused) return make_error(Errc::invalid_argument, fmt::format("sim: node {} is not paused", id));
  s.paused = false;
  mix(0x2E5u);
  mix(id);
  std::deque<Event> held = std::move(s.held);
  s.held.clear();
  s.held_messages = 0;
  for (Event& e : held) {
    e.t = now_;
    push(std::move(e));
  }
  return ok_status();
}

bool Simulator::is_paused(NodeId id) const {
  auto it = nodes_.find(id);
  return it != nodes_.end() && it->second->paused;
}

void Simulator::hold(NodeSlot& s, Event e) {
  if (e.kind == Event::kMessage) {
    if (s.held_messages >= opts_.max_paused_messages) {
      counters_.dropped_paused++;
      log::debug("sim", "message_dropped", "reason=paused_queue_full node={} from={} held={}", s.id, e.from,
                 s.held_messages);
      return;
    }
    s.held_messages++;
  }
  counters_.held_paused++;
  note(e, "held");
  s.held.push_back(std::move(e));
}

std::vector<node::NodeId> Simulator::node_ids() const { return order_; }

std::uint64_t Simulator::sent_by(node::NodeId id) const {
  auto it = nodes_.find(id);
  return it == nodes_.end() ? 0 : it->second->sent;
}

void Simulator::partition(const std::vector<NodeId>& a, const std::vector<NodeId>& b) {
  for (NodeId x : a)
    for (NodeId y : b) {
      block(x, y);
      block(y, x);
    }
}
void Simulator::block(NodeId from, NodeId to) {
  blocks_.insert({from, to});
  cut(from, to, std::nullopt);
}
void Simulator::unblock(NodeId from, NodeId to) { blocks_.erase({from, to}); }
void Simulator::heal() {
  blocks_.clear();
  channel_blocks_.clear();
}
bool Simulator::blocked(NodeId from, NodeId to) const { return blocks_.count({from, to}) != 0; }

Status Simulator::set_link_delay(NodeId from, NodeId to, Duration extra) {
  if (extra <= Duration{0}) {
    link_delays_.erase({from, to});
    return ok_status();
  }
  if (link_delays_.count({from, to}) == 0 && link_delays_.size() >= opts_.max_link_delays)
    return make_error(Errc::backpressure,
                      fmt::format("sim: link delay {} -> {} refused: {} links delayed already (max_link_delays)", from,
                                  to, link_delays_.size()));
  link_delays_[{from, to}] = extra;
  return ok_status();
}

Status Simulator::set_group_delay(const std::vector<NodeId>& a, const std::vector<NodeId>& b, Duration extra) {
  for (NodeId x : a)
    for (NodeId y : b) {
      HS_TRY(set_link_delay(x, y, extra));
      HS_TRY(set_link_delay(y, x, extra));
    }
  return ok_status();
}

Duration Simulator::link_delay(NodeId from, NodeId to) const {
  if (link_delays_.empty()) return Duration{0};
  auto it = link_delays_.find({from, to});
  return it == link_delays_.end() ? Duration{0} : it->second;
}

void Simulator::block_channel(NodeId from, NodeId to, ChannelId ch) {
  channel_blocks_.insert({from, to, ch});
  cut(from, to, ch);
}
void Simulator::unblock_channel(NodeId from, NodeId to, ChannelId ch) { channel_blocks_.erase({from, to, ch}); }
void Simulator::partition_channel(const std::vector<NodeId>& a, const std::vector<NodeId>& b, ChannelId ch) {
  for (NodeId x : a)
    for (NodeId y : b) {
      block_channel(x, y, ch);
      block_channel(y, x, ch);
    }
}
bool Simulator::blocked(NodeId from, NodeId to, ChannelId ch) const {
  return blocked(from, to) || channel_blocks_.count({from, to, ch}) != 0;
}

// A cut resets the ordered links it covers: messages in flight on them are dropped at arrival.
void Simulator::cut(NodeId from, NodeId to, std::optional<ChannelId> ch) {
  ++cut_gen_;
  if (ch) {
    auto it = links_.find({from, to, *ch});
    if (it != links_.end()) it->second.cut_at = cut_gen_;
    return;
  }
  for (auto it = links_.lower_bound({from, to, ChannelId{0}}); it != links_.end(); ++it) {
    if (std::get<0>(it->first) != from || std::get<1>(it->first) != to) break;
    it->second.cut_at = cut_gen_;
  }
}

Instant Simulator::ordered_time(NodeId from, NodeId to, ChannelId ch, Instant t) {
  if (links_.size() >= opts_.max_ordered_links && links_.count({from, to, ch}) == 0) {
    // Evict idle links: nothing is in flight on a link whose last delivery is in the past.
    for (auto it = links_.begin(); it != links_.end();) it = it->second.last < now_ ? links_.erase(it) : std::next(it);
  }
  OrderedLink& l = links_[{from, to, ch}];
  if (t < l.last) t = l.last;
  l.last = t;
  return t;
}

Result<Simulator::FilterId> Simulator::add_filter(Filter f) {
  if (!f) return make_error(Errc::invalid_argument, "sim: add_filter: empty filter");
  if (filters_.size() >= opts_.max_filters)
    return make_error(Errc::backpressure, fmt::format("sim: filter limit {} reached", opts_.max_filters));
  const FilterId id = next_filter_++;
  filters_.emplace_back(id, std::move(f));
  return id;
}

Status Simulator::remove_filter(FilterId id) {
  for (auto it = filters_.begin(); it != filters_.end(); ++it)
    if (it->first == id) {
      filters_.erase(it);
      return ok_status();
    }
  return make_error(Errc::not_found, fmt::format("sim: no filter {}", id));
}

Status Simulator::set_channel(ChannelId ch, ChannelOptions o) {
  const NetworkOptions& n = o.net;
  auto prob = [](double p) { return p >= 0.0 && p <= 1.0; };
  if (!prob(n.loss) || !prob(n.duplicate) || !prob(n.reorder))
    return make_error(Errc::invalid_argument, fmt::format("sim: channel {}: probabilities must be in [0, 1]", ch));
  if (n.min_latency < Duration{0} || n.mean_extra_latency < Duration{0} || n.reorder_delay < Duration{0})
    return make_error(Errc::invalid_argument, fmt::format("sim: channel {}: negative latency", ch));
  channels_[ch] = std::move(o);
  return ok_status();
}

Status Simulator::add_invariant(std::string name, Invariant inv) {
  if (!inv) return make_error(Errc::invalid_argument, fmt::format("sim: add_invariant: empty invariant {}", name));
  if (invariants_.size() >= opts_.max_invariants)
    return make_error(Errc::backpressure, fmt::format("sim: invariant limit {} reached", opts_.max_invariants));
  invariants_.emplace_back(std::move(name), std::move(inv));
  return ok_status();
}

Status Simulator::set_clock_skew(NodeId id, Duration offset, double rate) {
  auto it = nodes_.find(id);
  if (it == nodes_.end()) return make_error(Errc::not_found, fmt::format("sim: no node {}", id));
  if (!(rate > 0.5 && rate < 2.0)) return make_error(Errc::invalid_argument, "sim: clock rate must be in (0.5, 2)");
  it->second->clock.offset = offset;
  it->second->clock.rate = rate;
  return ok_status();
}

Status Simulator::set_slow(node::NodeId id, double factor, Duration unit) {
  auto it = nodes_.find(id);
  if (it == nodes_.end()) return make_error(Errc::not_found, fmt::format("sim: no node {}", id));
  if (!(factor >= 1.0)) return make_error(Errc::invalid_argument, "sim: slow factor must be >= 1");
  it->second->slow_factor = factor;
  it->second->slow_unit = unit;
  return ok_status();
}

Status Simulator::set_disk_fault(node::NodeId id, Duration fsync_delay, bool fail_sync) {
  auto it = nodes_.find(id);
  if (it == nodes_.end()) return make_error(Errc::not_found, fmt::format("sim: no node {}", id));
  if (fsync_delay < Duration{0}) return make_error(Errc::invalid_argument, "sim: fsync delay must be >= 0");
  it->second->fsync_delay = fsync_delay;
  it->second->fail_sync = fail_sync;
  return ok_status();
}

Instant Simulator::slow_delay(NodeSlot& s, Instant t) {
  if (s.slow_factor <= 1.0) return t;
  const double max_extra = (s.slow_factor - 1.0) * static_cast<double>(s.slow_unit.count());
  return t + Duration{static_cast<std::int64_t>(rng_.next_double() * max_extra)};
}

void Simulator::send_from(node::NodeId from, node::NodeId to, node::Bytes msg) {
  counters_.sent++;
  auto fit = nodes_.find(from);
  if (fit != nodes_.end()) fit->second->sent++;
  mix(0x5E11Du);
  mix(from);
  mix(to);
  mix(msg.size());
  if (msg.size() > opts_.net.max_message_bytes) {
    counters_.dropped_oversize++;
    return;
  }
  bool filtered = filter_ && filter_(from, to, msg);
  for (std::size_t i = 0; !filtered && i < filters_.size(); ++i) filtered = filters_[i].second(from, to, msg);
  if (filtered) {
    counters_.dropped_filter++;
    mix(0xF117u);
    return;
  }
  const ChannelId ch = channel_of(msg);
  auto chan = channels_.find(ch);
  const NetworkOptions& net = chan == channels_.end() ? opts_.net : chan->second.net;
  const bool ordered = chan != channels_.end() && chan->second.ordered;
  // Every random draw happens whatever the outcome, so one fault does not shift the others.
  const bool lost = rng_.chance(net.loss);
  const bool dup = rng_.chance(net.duplicate);
  const bool reorder = rng_.chance(net.reorder) && !ordered;
  auto latency = [&]() {
    const double mean = static_cast<double>(net.mean_extra_latency.count());
    const double u = rng_.next_double();
    Duration d = net.min_latency + Duration{static_cast<std::int64_t>(-std::log1p(-u) * mean)};
    return d;
  };
  const Duration link = link_delay(from, to);
  Duration d1 = latency() + link;
  Duration d2 = latency() + link;
  Duration extra{static_cast<std::int64_t>(rng_.next_double() * static_cast<double>(net.reorder_delay.count()))};
  if (blocked(from, to) || (!channel_blocks_.empty() && channel_blocks_.count({from, to, ch}) != 0)) {
    counters_.dropped_partition++;
    return;
  }
  if (lost) {
    counters_.dropped_loss++;
    return;
  }
  auto payload = std::make_shared<node::Bytes>(std::move(msg));
  Event e{};
  e.kind = Event::kMessage;
  e.to = to;
  e.from = from;
  e.payload = payload;
  e.t = now_ + d1 + (reorder ? extra : Duration{0});
  if (ordered) {
    e.ordered = true;
    e.channel = ch;
    e.sent_gen = cut_gen_;
    auto tit = nodes_.find(to);
    e.to_epoch = tit == nodes_.end() ? 0 : tit->second->epoch;
    e.t = ordered_time(from, to, ch, e.t);
  }
  if (reorder) counters_.reordered++;
  push(e);
  if (dup) {
    counters_.duplicated++;
    e.t = ordered ? ordered_time(from, to, ch, now_ + d2) : now_ + d2;
    push(e);
  }
}

node::TimerId Simulator::set_timer_for(node::NodeId id, Duration after, std::uint64_t tag) {
  NodeSlot& s = *nodes_.at(id);
  const node::TimerId tid = s.next_timer++;
  if (after < Duration{0}) after = Duration{0};
  // The node asked for `after` on its own (skewed) clock.
  Duration global_after{static_cast<std::int64_t>(static_cast<double>(after.count()) / s.clock.rate)};
  Event e{};
  e.kind = Event::kTimer;
  e.to = id;
  e.epoch = s.epoch;
  e.timer = tid;
  e.tag = tag;
  e.t = now_ + global_after;
  if (push(std::move(e))) s.live_timers.emplace(tid, true);
  return tid;
}

void Simulator::at(Instant t, std::function<void(Simulator&)> fn) {
  Event e{};
  e.kind = Event::kScript;
  e.t = t < now_ ? now_ : t;
  e.script = std::make_shared<std::function<void(Simulator&)>>(std::move(fn));
  push(std::move(e));
}

Status Simulator::dispatch(Event& e) {
  if (e.kind == Event::kScript) {
    note(e, "script");
    (*e.script)(*this);
    return ok_status();
  }
  auto it = nodes_.find(e.to);
  if (it == nodes_.end()) {
    if (e.kind == Event::kMessage) counters_.dropped_down++;
    return ok_status();
  }
  NodeSlot& s = *it->second;
  s.clock.global = now_;
  // One Context per node slot, valid for as long as the simulator: a node may keep it and use it
  // from a call made during any of its events (the node contract).
  if (!s.ctx) s.ctx = std::make_unique<Ctx>(*this, s);
  node::Context& ctx = *s.ctx;
  switch (e.kind) {
    case Event::kStart:
      if (!s.up || e.epoch != s.epoch) return ok_status();
      if (s.paused) {
        hold(s, std::move(e));
        return ok_status();
      }
      note(e, "start");
      s.node->on_start(ctx);
      break;
    case Event::kMessage: {
      // An ordered (TCP-like) link reaching the network end: a cut since the send, or a new
      // incarnation of the receiver, reset the connection and what was in flight on it is gone.
      if (e.ordered && !e.arrived) {
        auto l = links_.find({e.from, e.to, e.channel});
        if ((l != links_.end() && l->second.cut_at > e.sent_gen) || e.to_epoch != s.epoch) {
          counters_.dropped_cut++;
          note(e, "cut");
          return ok_status();
        }
        e.arrived = true;  // in the receiver's socket buffer now: later cuts do not touch it
      }
      if (!s.up) {
        counters_.dropped_down++;
        return ok_status();
      }
      if (s.paused) {
        hold(s, std::move(e));
        return ok_status();
      }
      // A slow node handles the message late (re-queued once with its processing delay).
      if (s.slow_factor > 1.0 && e.epoch == 0) {
        e.epoch = 1;
        e.t = slow_delay(s, now_);
        if (e.ordered) {
          if (e.t < s.slow_fifo) e.t = s.slow_fifo;
          s.slow_fifo = e.t;
        }
        push(e);
        return ok_status();
      }
      counters_.delivered++;
      note(e, "deliver");
      s.node->on_message(ctx, e.from, std::span<const std::uint8_t>(e.payload->data(), e.payload->size()));
      break;
    }
    case Event::kTimer:
      return dispatch_timer(s, e);
    case Event::kScript:
      break;
  }
  return ok_status();
}

Status Simulator::dispatch_timer(NodeSlot& s, Event& e) {
  if (!s.up || e.epoch != s.epoch) return ok_status();
  // A sync barrier completes on the disk (even if the node cancelled its timer or is paused: the
  // kernel does the fsync) unless the disk is stalled; a failed one is reported in the tag.
  if (auto sp = s.syncs.find(e.timer); sp != s.syncs.end()) {
    if (s.disk_stalled) {
      counters_.syncs_stalled++;
      note(e, "sync_stalled");
      s.stalled_syncs.push_back(std::move(e));
      return ok_status();
    }
    const Status st = s.fdisk.sync_end(sp->second);
    s.syncs.erase(sp);
    if (!st.ok()) {
      e.tag |= kSyncFailed;
      mix(0x5F41u);
      log::debug("sim", "sync_failed", "node={} t={:.6f}s error={}", s.id, to_seconds(now_), log::quoted(st.message()));
    }
  }
  if (s.paused) {
    hold(s, std::move(e));
    return ok_status();
  }
  auto t = s.live_timers.find(e.timer);
  if (t == s.live_timers.end()) return ok_status();
  s.live_timers.erase(t);
  counters_.timers_fired++;
  note(e, "timer");
  if (!s.ctx) s.ctx = std::make_unique<Ctx>(*this, s);
  s.node->on_timer(*s.ctx, e.timer, e.tag);
  return ok_status();
}

Status Simulator::run_until(Instant t) {
  if (!sticky_.ok()) return sticky_;
  AssertScope assert_scope;
  while (!queue_.empty() && queue_.top().t <= t) {
    Event e = queue_.top();
    queue_.pop();
    now_ = e.t;
    ++events_;
    mix(static_cast<std::uint64_t>(e.t.count()));
    mix(e.kind);
    mix(e.to);
    mix(e.from);
    mix(e.tag);
    if (e.payload) {
      std::uint64_t h = 0;
      for (std::uint8_t b : *e.payload) h = h * 131 + b;
      mix(h);
    }
    // The lines logged while this event runs (role code included) carry its virtual time and node.
    const log::VirtualTimeScope log_time(now_.count(), e.kind == Event::kScript ? 0 : e.to);
    try {
      HS_TRY(dispatch(e));
      HS_TRY(check_invariants());
    } catch (const AssertionFailed& a) {
      log::error("sim", "assertion_failed", "seed={} t={:.6f}s where={}", opts_.seed, to_seconds(now_),
                 log::quoted(a.what));
      sticky_ = fail_run(make_error(Errc::internal, fmt::format("assertion failed: {}", a.what)));
      return sticky_;
    }
  }
  if (now_ < t) now_ = t;
  return ok_status();
}

Status Simulator::check_invariants() {
  if (invariant_) {
    Status st = invariant_(*this);
    if (!st.ok()) {
      log::error("sim", "invariant_failed", "seed={} t={:.6f}s error={}", opts_.seed, to_seconds(now_),
                 log::quoted(st.message()));
      return fail_run(st);
    }
  }
  for (auto& [name, inv] : invariants_) {
    Status st = inv(*this);
    if (!st.ok()) {
      log::error("sim", "invariant_failed", "seed={} t={:.6f}s invariant={} error={}", opts_.seed, to_seconds(now_),
                 log::quoted(name), log::quoted(st.message()));
      return fail_run(st.with_context(fmt::format("invariant '{}'", name)));
    }
  }
  return ok_status();
}

Status Simulator::fail_run(Status st) {
  Status out = st.with_context(fmt::format("seed {} at t={:.6f}s", opts_.seed, to_seconds(now_)));
  failure_ = out.message();
  return out;
}

std::vector<std::uint64_t> seeds_to_run(std::size_t count) {
  if (const char* one = std::getenv("HS_SIM_SEED"); one && *one) return {std::strtoull(one, nullptr, 10)};
  if (const char* k = std::getenv("HS_SIM_SEEDS"); k && *k) count = std::strtoull(k, nullptr, 10);
  std::uint64_t base = 1;
  if (const char* b = std::getenv("HS_SIM_SEED_BASE"); b && *b) base = std::strtoull(b, nullptr, 10);
  std::vector<std::uint64_t> out;
  for (std::size_t i = 0; i < count; ++i) out.push_back(base + i);
  return out;
}

std::string replay_command(std::uint64_t seed, const std::string& program, const std::string& test) {
  std::string prog = program;
  if (prog.empty()) {
    char buf[4096];
    ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    prog = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string("<test binary>");
  }
  return fmt::format("HS_SIM_SEED={} {} '{}'", seed, prog, test);
}

}  // namespace hs::sim
