// Test support (tests/support, library hs_test_support): a test double, not part of any production library.
// A synthetic Executor for the simulator (scenarios.md §2.2 workloads). It is a component of the
// worker's Mux (channel kExec) so that its timers run on the worker's node; the plan is a short
// text of `;`-separated options:
//   ms=N          run for N ms (default 1000)
//   ops=N         each VU performs exactly N actions (default: 10 per second per VU)
//   iters=N       the workflow performs exactly N iterations in all (a budget: a part does its share,
//                 less the skip of a re-placed part), spread evenly over the run
// A part (ExecSpec shard_first/shard_total) gets the sum of its global shards' even shares of the
// VUs and of an iters budget (shard g of T: N / T, plus one if g < N % T), as the load engine does.
// Progress reports started = done + the part's VUs (one iteration in flight per VU), capped.
//   fail=TEXT     end with an application error
//   failpart=K    ... only part K of a split workflow (with fail=)
//   hang          never finish and ignore cancellation (W-hang)
//   crash         call on_crash halfway through (the test crashes the node: W-crash)
//   bad           refuse to start (a plan the worker cannot run)
//   publish=k:v,… context values published at the end
//   lat=N         every action takes N µs (default 1000): the latency its live windows report
//   slow=T:N      ... N µs once the run is T ms old (a target that degrades: abort thresholds)
// Live windows (ExecSpec.window_ms > 0): every action is one request of step "op", attributed to the
// window of the worker's wall clock (from ExecSpec.window_origin_unix_ms) in which it is reported;
// each window goes out in the first progress after it ends, the last one in a progress just before
// the result. windows_sent counts them per (job, workflow, part) and requests_in_windows their requests.
// Progress is linear and reported every 100 ms; a cancel ends the run 20 ms later.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <tuple>

#include "hyperscale/node/node.hpp"
#include "hyperscale/worker/executor.hpp"

namespace hs::worker {

class Worker;

class SimExecutor final : public Executor, public node::Node {
 public:
  void attach(Worker* w, node::Context* ctx) {
    worker_ = w;
    ctx_ = ctx;
  }
  std::function<void()> on_crash;
  // When set, the plan this executor runs instead of the spec's (e.g. one datacenter of a gate's job
  // runs another workload than the others); the original plan stays in `started`.
  std::function<std::string(const ExecSpec&)> plan_override;
  // Every spec this executor was asked to start (the test's view of what reached the worker).
  std::vector<ExecSpec> started;

  Status start(std::uint64_t exec, const ExecSpec& spec) override;
  void cancel(std::uint64_t exec) override;

  void on_start(node::Context& ctx) override { ctx_ = &ctx; }
  void on_message(node::Context&, node::NodeId, std::span<const std::uint8_t>) override {}
  void on_timer(node::Context& ctx, node::TimerId id, std::uint64_t tag) override;
  std::size_t live() const noexcept { return runs_.size(); }
  // Iterations every execution completed, by (job, workflow, part), as it ended or last reported.
  std::map<std::tuple<std::string, std::string, std::uint32_t>, std::uint64_t> done_by_part;
  std::map<std::tuple<std::string, std::string, std::uint32_t>, std::uint64_t> windows_sent;
  std::map<std::tuple<std::string, std::string, std::uint32_t>, std::uint64_t> requests_in_windows;

 private:
  struct Run {
    Instant start{0};
    Duration length{0};
    std::uint64_t total = 0;
    std::uint64_t done = 0;
    std::uint64_t vus = 1;
    bool hang = false, crash = false, crashed = false, cancelled = false;
    std::tuple<std::string, std::string, std::uint32_t> key;
    std::string fail;
    KeyValues publish;
    // live windows
    std::string workflow;
    std::uint32_t part = 0;
    std::uint64_t token = 0, origin_ms = 0;
    std::uint32_t window_ms = 0;
    std::uint64_t lat_us = 1000, slow_after_ms = 0, slow_us = 0;
    std::uint64_t reported = 0;      // actions already put in a window
    std::uint64_t win_index = 0;     // the window being filled
    std::uint64_t win_requests = 0;  // its actions
    std::uint64_t win_latency_sum_us = 0;
    std::vector<std::uint64_t> win_latencies_us;  // distinct latencies (one or two) with counts below
    std::vector<std::uint64_t> win_counts;
  };
  // Adds the actions done since the last call to the current window; returns the windows finished
  // (encoded), the current one too when `last`.
  std::vector<Bytes> take_windows(Run& r, bool last);
  Bytes encode(const Run& r);
  Worker* worker_ = nullptr;
  node::Context* ctx_ = nullptr;
  std::map<std::uint64_t, Run> runs_;
};

}  // namespace hs::worker
