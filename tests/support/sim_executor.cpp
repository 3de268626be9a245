#include "support/sim_executor.hpp"

#include <algorithm>
#include <charconv>
#include <string_view>

#include "hyperscale/load/window.hpp"
#include "hyperscale/worker/worker.hpp"

namespace hs::worker {

namespace {
constexpr Duration kStep = std::chrono::milliseconds(100);

std::uint64_t number(std::string_view v) {
  std::uint64_t n = 0;
  std::from_chars(v.data(), v.data() + v.size(), n);
  return n;
}

// The share of `n` that global shards [first, first + count) of `total` get (even split, the
// remainder to the first shards). total 0: the whole.
std::uint64_t part_share(std::uint64_t n, std::uint32_t first, std::uint32_t count, std::uint32_t total) {
  if (total == 0) return n;
  std::uint64_t sum = 0;
  for (std::uint32_t g = first; g < first + count; ++g) sum += n / total + (g < n % total ? 1 : 0);
  return sum;
}
}  // namespace

Status SimExecutor::start(std::uint64_t exec, const ExecSpec& spec) {
  started.push_back(spec);
  Run r;
  r.length = std::chrono::milliseconds(1000);
  std::uint64_t ops = 0, iters = 0;
  std::int64_t fail_part = -1;
  bool has_ops = false, has_iters = false;
  const std::string overridden = plan_override ? plan_override(spec) : std::string();
  const std::string_view text =
      plan_override ? std::string_view(overridden)
                    : std::string_view(reinterpret_cast<const char*>(spec.plan.data()), spec.plan.size());
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t end = text.find(';', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view item = text.substr(pos, end - pos);
    const std::size_t eq = item.find('=');
    const std::string_view k = item.substr(0, eq), v = eq == std::string_view::npos ? "" : item.substr(eq + 1);
    if (k == "ms")
      r.length = std::chrono::milliseconds(number(v));
    else if (k == "ops")
      has_ops = true, ops = number(v);
    else if (k == "iters")
      has_iters = true, iters = number(v);
    else if (k == "failpart")
      fail_part = static_cast<std::int64_t>(number(v));
    else if (k == "fail")
      r.fail = std::string(v.empty() ? "application error" : v);
    else if (k == "lat")
      r.lat_us = number(v);
    else if (k == "slow") {
      const std::size_t colon = v.find(':');
      r.slow_after_ms = number(v.substr(0, colon));
      r.slow_us = colon == std::string_view::npos ? 0 : number(v.substr(colon + 1));
    } else if (k == "hang")
      r.hang = true;
    else if (k == "crash")
      r.crash = true;
    else if (k == "bad")
      return make_error(Errc::invalid_argument, "sim plan marked bad");
    else if (k == "publish") {
      std::size_t p = 0;
      while (p < v.size()) {
        std::size_t c = v.find(',', p);
        if (c == std::string_view::npos) c = v.size();
        const std::string_view kv = v.substr(p, c - p);
        const std::size_t colon = kv.find(':');
        if (colon != std::string_view::npos)
          r.publish.emplace_back(std::string(kv.substr(0, colon)), std::string(kv.substr(colon + 1)));
        p = c + 1;
      }
    }
    pos = end + 1;
  }
  r.vus = part_share(spec.vus, spec.shard_first, spec.cores, spec.shard_total);
  const std::uint64_t per_vu = has_ops ? ops : static_cast<std::uint64_t>(r.length / kStep);
  r.total = per_vu * r.vus;
  if (has_iters) {
    const std::uint64_t share = part_share(iters, spec.shard_first, spec.cores, spec.shard_total);
    r.total = share - std::min(share, spec.skip_iterations);
  }
  r.key = {spec.job_id, spec.workflow, spec.part};
  if (fail_part >= 0 && fail_part != static_cast<std::int64_t>(spec.part)) r.fail.clear();
  r.start = ctx_->now();
  r.workflow = spec.workflow;
  r.part = spec.part;
  r.token = spec.token;
  r.window_ms = spec.window_ms;
  r.origin_ms = spec.window_origin_unix_ms;
  runs_[exec] = std::move(r);
  ctx_->set_timer(kStep, exec);
  return ok_status();
}

void SimExecutor::cancel(std::uint64_t exec) {
  auto it = runs_.find(exec);
  if (it == runs_.end() || it->second.hang || it->second.cancelled) return;
  it->second.cancelled = true;
  ctx_->set_timer(std::chrono::milliseconds(20), exec);
}

void SimExecutor::on_timer(node::Context& ctx, node::TimerId, std::uint64_t exec) {
  ctx_ = &ctx;
  auto it = runs_.find(exec);
  if (it == runs_.end() || worker_ == nullptr) return;
  Run& r = it->second;
  const Duration elapsed = ctx.now() - r.start;
  if (r.cancelled) {
    if (auto ws = take_windows(r, true); !ws.empty()) {
      ExecProgress p{r.done, 0, std::min(r.total, r.done + r.vus), {}};
      p.windows = std::move(ws);
      worker_->on_exec_progress(exec, p);
    }
    ExecResult res;
    res.outcome = ExecOutcome::cancelled;
    res.completed = r.done;
    res.error = "cancelled";
    runs_.erase(it);
    worker_->on_exec_done(exec, std::move(res));
    return;
  }
  const double frac = r.length.count() > 0 ? std::min(1.0, double(elapsed.count()) / double(r.length.count())) : 1.0;
  r.done = static_cast<std::uint64_t>(frac * double(r.total));
  done_by_part[r.key] = r.done;
  if (r.crash && !r.crashed && frac >= 0.5) {
    r.crashed = true;
    if (on_crash) on_crash();
    return;
  }
  if (frac < 1.0 || r.hang) {
    if (!r.hang) {
      ExecProgress p{r.done, 0, std::min(r.total, r.done + r.vus), {}};
      p.windows = take_windows(r, false);
      worker_->on_exec_progress(exec, p);
    }
    ctx.set_timer(kStep, exec);
    return;
  }
  r.done = r.total;
  if (auto ws = take_windows(r, true); !ws.empty()) {
    ExecProgress p{r.done, 0, r.done, {}};
    p.windows = std::move(ws);
    worker_->on_exec_progress(exec, p);
  }
  ExecResult res;
  res.completed = r.total;
  res.outcome = r.fail.empty() ? ExecOutcome::completed : ExecOutcome::failed;
  res.error = r.fail;
  res.published = r.publish;
  res.stats.assign({1, 2, 3});
  runs_.erase(it);
  worker_->on_exec_done(exec, std::move(res));
}

std::vector<Bytes> SimExecutor::take_windows(Run& r, bool last) {
  std::vector<Bytes> out;
  if (r.window_ms == 0) return out;
  const std::uint64_t wall = ctx_->wall_ms();
  const std::uint64_t index = wall < r.origin_ms ? 0 : (wall - r.origin_ms) / r.window_ms;
  if (index > r.win_index) {  // the window being filled has ended: its actions were all reported in it
    out.push_back(encode(r));
    r.win_index = index;
    r.win_requests = 0;
    r.win_latencies_us.clear();
    r.win_counts.clear();
  }
  const std::uint64_t fresh = r.done - std::min(r.done, r.reported);
  r.reported = r.done;
  if (fresh > 0) {
    const bool slow = r.slow_after_ms > 0 && ctx_->now() - r.start >= std::chrono::milliseconds(r.slow_after_ms);
    const std::uint64_t lat = slow ? r.slow_us : r.lat_us;
    auto it = std::find(r.win_latencies_us.begin(), r.win_latencies_us.end(), lat);
    if (it == r.win_latencies_us.end()) {
      r.win_latencies_us.push_back(lat);
      r.win_counts.push_back(fresh);
    } else {
      r.win_counts[static_cast<std::size_t>(it - r.win_latencies_us.begin())] += fresh;
    }
    r.win_requests += fresh;
  }
  if (last) {
    out.push_back(encode(r));
    r.win_requests = 0;
    r.win_latencies_us.clear();
    r.win_counts.clear();
  }
  windows_sent[r.key] += out.size();
  return out;
}

Bytes SimExecutor::encode(const Run& r) {
  load::Window w;
  w.workflow = r.workflow;
  w.part = r.part;
  w.token = r.token;
  w.index = r.win_index;
  load::WindowStep st;
  st.name = "op";
  st.total.executed = st.total.ok = r.win_requests;
  st.measured = st.total;
  for (std::size_t i = 0; i < r.win_latencies_us.size(); ++i)
    for (std::uint64_t k = 0; k < r.win_counts[i]; ++k) st.latency.record(r.win_latencies_us[i] * 1000);
  w.steps.push_back(std::move(st));
  w.iterations.started = w.iterations.completed = r.win_requests;
  w.saturation.cpu_percent = 40;
  w.saturation.rss_bytes = 64u << 20;
  requests_in_windows[r.key] += r.win_requests;
  return load::encode_window(w);
}

}  // namespace hs::worker
