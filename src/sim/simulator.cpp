#include "hyperscale/sim/simulator.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <limits>

#include <fmt/format.h>

#include "hyperscale/base/log.hpp"

namespace hs::sim {

// ---------------- clock ----------------

Instant NodeClock::now() const noexcept {
  if (rate == 1.0) return global + offset;
  return Instant{static_cast<std::int64_t>(static_cast<double>(global.count()) * rate)} + offset;
}

// ---------------- simulator ----------------

struct Simulator::NodeSlot {
  node::NodeId id = 0;
  Factory factory;
  std::unique_ptr<node::Node> node;
  MemDisk disk;
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
  std::unique_ptr<node::Context> ctx;  // created at the first event; outlives every Node of the slot
};

class Simulator::Ctx final : public node::Context {
 public:
  Ctx(Simulator& s, NodeSlot& n) : sim_(s), n_(n) {}
  node::NodeId self() const override { return n_.id; }
  const Clock& clock() const override { return n_.clock; }
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
    return sim_.set_timer_for(n_.id, n_.fsync_delay, tag);
  }
  node::Disk& disk() override { return n_.disk; }

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
  auto slot = std::make_unique<NodeSlot>();
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
  return it == nodes_.end() ? nullptr : &it->second->disk;
}

std::vector<node::NodeId> Simulator::node_ids() const { return order_; }

std::uint64_t Simulator::sent_by(node::NodeId id) const {
  auto it = nodes_.find(id);
  return it == nodes_.end() ? 0 : it->second->sent;
}

void Simulator::partition(const std::vector<node::NodeId>& a, const std::vector<node::NodeId>& b) {
  for (node::NodeId x : a)
    for (node::NodeId y : b) {
      blocks_.insert({x, y});
      blocks_.insert({y, x});
    }
}
void Simulator::block(node::NodeId from, node::NodeId to) { blocks_.insert({from, to}); }
void Simulator::unblock(node::NodeId from, node::NodeId to) { blocks_.erase({from, to}); }
void Simulator::heal() { blocks_.clear(); }
bool Simulator::blocked(node::NodeId from, node::NodeId to) const { return blocks_.count({from, to}) != 0; }

Status Simulator::set_clock_skew(node::NodeId id, Duration offset, double rate) {
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
  if (filter_ && filter_(from, to, msg)) {
    counters_.dropped_filter++;
    mix(0xF117u);
    return;
  }
  // Every random draw happens whatever the outcome, so one fault does not shift the others.
  const bool lost = rng_.chance(opts_.net.loss);
  const bool dup = rng_.chance(opts_.net.duplicate);
  const bool reorder = rng_.chance(opts_.net.reorder);
  auto latency = [&]() {
    const double mean = static_cast<double>(opts_.net.mean_extra_latency.count());
    const double u = rng_.next_double();
    Duration d = opts_.net.min_latency + Duration{static_cast<std::int64_t>(-std::log1p(-u) * mean)};
    return d;
  };
  Duration d1 = latency();
  Duration d2 = latency();
  Duration extra{static_cast<std::int64_t>(rng_.next_double() * static_cast<double>(opts_.net.reorder_delay.count()))};
  if (blocked(from, to)) {
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
  if (reorder) counters_.reordered++;
  push(e);
  if (dup) {
    counters_.duplicated++;
    e.t = now_ + d2;
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
      note(e, "start");
      s.node->on_start(ctx);
      break;
    case Event::kMessage: {
      if (!s.up) {
        counters_.dropped_down++;
        return ok_status();
      }
      // A slow node handles the message late (re-queued once with its processing delay).
      if (s.slow_factor > 1.0 && e.epoch == 0) {
        e.epoch = 1;
        e.t = slow_delay(s, now_);
        push(e);
        return ok_status();
      }
      counters_.delivered++;
      note(e, "deliver");
      s.node->on_message(ctx, e.from, std::span<const std::uint8_t>(e.payload->data(), e.payload->size()));
      break;
    }
    case Event::kTimer: {
      if (!s.up || e.epoch != s.epoch) return ok_status();
      auto t = s.live_timers.find(e.timer);
      if (t == s.live_timers.end()) return ok_status();
      s.live_timers.erase(t);
      counters_.timers_fired++;
      note(e, "timer");
      s.node->on_timer(ctx, e.timer, e.tag);
      break;
    }
    case Event::kScript:
      break;
  }
  return ok_status();
}

Status Simulator::run_until(Instant t) {
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
    HS_TRY(dispatch(e));
    if (invariant_) {
      Status st = invariant_(*this);
      if (!st.ok()) {
        log::error("sim", "invariant_failed", "seed={} t={:.6f}s error={}", opts_.seed, to_seconds(now_),
                   log::quoted(st.message()));
        return st.with_context(fmt::format("seed {} at t={:.6f}s", opts_.seed, to_seconds(now_)));
      }
    }
  }
  if (now_ < t) now_ = t;
  return ok_status();
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
