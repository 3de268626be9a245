// hs-bench-load-alloc: proves the load engine's steady state allocates nothing per request.
//
// Counts every operator new on the load shard's thread (a thread-local counting hook replaces the
// global operator new in this binary), runs a closed-loop HTTP workflow on ONE shard against the
// built-in target (on its own thread, not counted), and prints, per second, requests and
// allocations on the load shard. Per-second bookkeeping (live report, time series) allocates a
// constant few times a second; per request it must be ~0. C allocations made inside libuv are not
// counted (libuv allocates nothing per write/read on this path).
//
//   build-release/tools/bench/hs-bench-load-alloc [seconds=5] [vus=50]
#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <thread>

#include "hyperscale/load/engine.hpp"
#include "hyperscale/load/plan.hpp"
#include "hyperscale/load/target.hpp"
#include "hyperscale/runtime/shard_set.hpp"

namespace {
thread_local std::uint64_t tl_allocs = 0;
}

void* operator new(std::size_t n) {
  ++tl_allocs;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  ++tl_allocs;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

int main(int argc, char** argv) {
  using namespace hs;
  const int seconds = argc > 1 ? std::atoi(argv[1]) : 5;
  const int vus = argc > 2 ? std::atoi(argv[2]) : 50;
  runtime::ShardSetOptions to;
  to.shards = 1;
  to.pin = false;
  runtime::ShardSet tset(to);
  load::Target target;
  const int port = 18000 + static_cast<int>(::getpid() % 1000);
  if (!tset.start([&](runtime::Reactor& r) {
             Status st = target.start(r, {port, -1, -1, "127.0.0.1"});
             if (!st.ok()) std::fprintf(stderr, "target: %s\n", st.to_string().c_str());
           })
           .ok())
    return 1;
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto plan = load::load_plan_text(fmt::format(R"(version = 1
[[workflow]]
name = "alloc"
vus = {}
duration = "{}s"
[[workflow.step]]
name = "get"
url = "http://127.0.0.1:{}/"
)",
                                               vus, seconds, port),
                                   "alloc.toml", false);
  if (!plan.ok()) {
    std::fprintf(stderr, "%s\n", plan.status().message().c_str());
    return 1;
  }
  load::RunOptions ro;
  ro.shards = 1;
  ro.handle_signals = false;
  std::uint64_t last_allocs = 0, last_reqs = 0;
  int sec = 0;
  std::uint64_t steady_allocs = 0, steady_reqs = 0;
  ro.on_progress = [&](const load::LiveSnapshot& s) {  // runs on the (only) load shard
    if (s.workflows.empty() || s.workflows[0].steps.empty()) return;
    const std::uint64_t reqs = s.workflows[0].steps[0].total.executed;
    const std::uint64_t a = tl_allocs;
    ++sec;
    std::printf("second %d: requests %llu allocations %llu (%.5f per request)\n", sec,
                static_cast<unsigned long long>(reqs - last_reqs), static_cast<unsigned long long>(a - last_allocs),
                reqs > last_reqs ? static_cast<double>(a - last_allocs) / static_cast<double>(reqs - last_reqs) : 0.0);
    if (sec >= 3 && reqs > last_reqs && s.workflows[0].running) {
      steady_allocs += a - last_allocs;
      steady_reqs += reqs - last_reqs;
    }
    last_allocs = a;
    last_reqs = reqs;
  };
  auto r = load::run_plan(*plan, ro);
  tset.stop();
  if (!r.ok()) {
    std::fprintf(stderr, "run: %s\n", r.status().to_string().c_str());
    return 1;
  }
  std::printf("load_alloc steady_requests=%llu steady_allocations=%llu allocations_per_request=%.5f\n",
              static_cast<unsigned long long>(steady_reqs), static_cast<unsigned long long>(steady_allocs),
              steady_reqs ? static_cast<double>(steady_allocs) / static_cast<double>(steady_reqs) : 0.0);
  return 0;
}
