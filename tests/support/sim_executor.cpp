#include "support/sim_executor.hpp"

#include <algorithm>
#include <charconv>
#include <string_view>

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
  const std::string_view text(reinterpret_cast<const char*>(spec.plan.data()), spec.plan.size());
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
    else if (k == "hang")
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
    if (!r.hang) worker_->on_exec_progress(exec, ExecProgress{r.done, 0, std::min(r.total, r.done + r.vus)});
    ctx.set_timer(kStep, exec);
    return;
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

}  // namespace hs::worker
