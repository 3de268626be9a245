// ShardSet: N reactors on N threads (named hs-shard-N, pinned to cores when the machine has them),
// connected by one bounded SPSC ring per ordered pair of shards.
//
//   ShardSet set({.shards = 2});
//   set.start([](Reactor& r) { /* runs on each shard's thread before its loop */ });
//   auto reason = set.wait_for_stop_request();   // SIGINT/SIGTERM, a stop_node task, request_stop()
//   auto report = set.stop();                    // orderly, bounded by options.shutdown_bound
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "hyperscale/runtime/reactor.hpp"
#include "hyperscale/runtime/spsc_ring.hpp"

namespace hs::runtime {

struct ShardSetOptions {
  int shards = 0;                     // 0: one per available core
  std::size_t ring_capacity = 4096;   // messages per (from, to) ring
  std::size_t max_external = 65'536;  // bound of the post() queue per shard
  bool pin = true;                    // pin shard i to the i-th allowed core when there are enough
  bool handle_signals = false;        // SIGINT/SIGTERM on shard 0 -> request_stop()
  Duration shutdown_bound = std::chrono::seconds(5);
  ReactorOptions reactor;  // shard_id is filled in per shard
};

struct StopReport {
  bool clean = true;
  bool within_bound = true;
  Duration took{0};
  std::vector<ShutdownReport> shards;
};

class ShardSet {
 public:
  explicit ShardSet(ShardSetOptions opts = {});
  ShardSet(const ShardSet&) = delete;
  ShardSet& operator=(const ShardSet&) = delete;
  ~ShardSet();  // stops (if running) and joins

  int size() const noexcept { return static_cast<int>(reactors_.size()); }
  // Access a reactor. Only touch it from its own thread (or before start / after stop).
  Reactor& shard(int i) { return *reactors_.at(static_cast<std::size_t>(i)); }
  const ShardSetOptions& options() const noexcept { return opts_; }

  // Starts every shard thread; `init` runs on each shard's thread before its loop starts.
  Status start(std::function<void(Reactor&)> init = {});
  bool running() const noexcept { return started_ && !stopped_; }

  // Thread-safe: runs `fn` on shard `shard`. For threads that are not shards (main, tests).
  Status post(int shard, SmallFn<void(Reactor&)> fn);
  // Runs fn on `shard` and waits until it has run (from a thread outside the set, e.g. main).
  // timeout: fn is abandoned (never runs after this returns) and the error says so.
  Status call(int shard, std::function<void(Reactor&)> fn, Duration timeout);

  // Thread-safe: asks the node to stop; wait_for_stop_request() returns the first reason given.
  void request_stop(std::string reason);
  std::string wait_for_stop_request();
  std::optional<std::string> wait_for_stop_request(Duration timeout);

  // Orderly shutdown of every shard within `bound` (default options().shutdown_bound). Call from a
  // thread that is not a shard. Idempotent: later calls return the first report.
  StopReport stop(std::optional<Duration> bound = std::nullopt);

  // The ring carrying messages from shard `from` to shard `to` (runtime internals and tests).
  SpscRing<Message>& ring(int from, int to) { return *rings_[static_cast<std::size_t>(from * size() + to)]; }

  // Number of CPUs this process may run on.
  static int available_cores();

 private:
  friend class Reactor;
  void thread_main(int i, std::function<void(Reactor&)> init);
  void drain_external(Reactor& r);

  ShardSetOptions opts_;
  std::vector<std::unique_ptr<Reactor>> reactors_;
  std::vector<std::unique_ptr<SpscRing<Message>>> rings_;
  std::vector<std::thread> threads_;
  bool started_ = false;
  bool stopped_ = false;
  StopReport stop_report_;

  struct External {
    std::mutex mu;
    std::deque<SmallFn<void(Reactor&)>> q;
  };
  std::vector<std::unique_ptr<External>> external_;

  std::mutex state_mu_;
  std::condition_variable state_cv_;
  std::optional<std::string> stop_reason_;
  int finished_threads_ = 0;
  int signals_seen_ = 0;
  std::vector<std::unique_ptr<uv_signal_t>> signal_handles_;
};

}  // namespace hs::runtime
