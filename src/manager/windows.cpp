// The manager role: live windows. The leader merges the windows every part sends (through the
// host's WorkflowWindows), advances them on its own clock, serves them to `watch` and `results`,
// and fails a job whose abort threshold fails on the merged statistics. Leader soft state: a new
// leader starts merging from the windows it receives (the workers re-send what it has not
// acknowledged). See manager.hpp, windows.hpp and docs/windows.md.
#include <fmt/format.h>

#include <algorithm>

#include "hyperscale/base/log.hpp"
#include "hyperscale/manager/manager.hpp"

namespace hs::manager {

using namespace cluster;

void Manager::handle_window_batch(NodeId from, WindowBatch& b) {
  stats_.window_batches++;
  if (!is_leader()) {
    // Not acknowledged: the worker sends them again to the leader it learns of.
    log::debug("manager", "windows_not_leader", "from={} job={} workflow={} part={} windows={}", from,
               log::quoted(b.job_id), log::quoted(b.workflow), b.part, b.windows.size());
    return;
  }
  WindowAck ack{b.job_id, b.workflow, b.part, b.token, b.last_seq};
  const LedgerJob* j = ledger_.job(b.job_id);
  const auto i = j ? wf_index(*j, b.workflow) : std::nullopt;
  const char* why = nullptr;
  if (!i)
    why = "no such job or workflow";
  else if (b.part >= j->workflows[*i].parts.size())
    why = "no such part";
  else if (b.window_ms == 0 || b.last_seq < b.first_seq)
    why = "malformed batch";
  WfWindows* w = nullptr;
  if (why == nullptr) {
    w = windows_for(b.job_id, live_of(b.job_id, *j), *i, b);
    if (w == nullptr) why = "no merger for the workflow";
  }
  if (w == nullptr) {
    // Acknowledged all the same: sending them again cannot help. Counted, and logged with the reason.
    stats_.windows_unused += b.windows.size();
    log::info("manager", "windows_unused", "from={} job={} workflow={} part={} token={} windows={} reason={}", from,
              log::quoted(b.job_id), log::quoted(b.workflow), b.part, b.token, b.windows.size(), why);
    reply(from, MsgType::window_ack, ack);
    return;
  }
  auto& [token, dropped] = w->dropped[b.part];
  if (b.token > token) {
    w->dropped_before += dropped;
    token = b.token;
    dropped = 0;
  }
  if (b.token == token) dropped = std::max(dropped, b.dropped);
  std::size_t refused = 0;
  std::string first_error;
  for (const auto& bytes : b.windows) {
    stats_.windows++;
    if (Status st = w->merger->add(bytes); !st.ok()) {
      if (refused++ == 0) first_error = st.message();
    }
  }
  if (refused > 0) {
    stats_.windows_refused += refused;
    log::warn("manager", "windows_refused", "from={} job={} workflow={} part={} token={} refused={} of {} error={}",
              from, log::quoted(b.job_id), log::quoted(b.workflow), b.part, b.token, refused, b.windows.size(),
              log::quoted(first_error));
  }
  w->merger->advance(window_index(*w));
  reply(from, MsgType::window_ack, ack);
}

// The windows of workflow `wf` for a batch: created on the first batch (its origin and length are
// the workflow's), restarted when a later attempt of a one-part workflow brings a new origin (it
// runs again from its beginning), none for an older attempt's batch on an old origin.
Manager::WfWindows* Manager::windows_for(const std::string& id, Live& l, std::size_t wf, const WindowBatch& b) {
  const LedgerJob* j = ledger_.job(id);
  if (j == nullptr) return nullptr;
  if (l.windows.size() < j->workflows.size()) l.windows.resize(j->workflows.size());
  WfWindows& w = l.windows[wf];
  if (w.factory_failed) return nullptr;
  if (w.merger && (w.origin_ms != b.origin_unix_ms || w.window_ms != b.window_ms)) {
    if (b.token < w.origin_token) return nullptr;
    log::info("manager", "windows_restarted", "job={} workflow={} token={} origin_ms={} previous_origin_ms={}",
              log::quoted(id), log::quoted(b.workflow), b.token, b.origin_unix_ms, w.origin_ms);
    w = WfWindows{};
  }
  if (w.merger) return &w;
  if (!cfg_.windows) return nullptr;
  if (!make_room_for_windows(id)) {
    stats_.window_mergers_refused++;
    log::warn("manager", "windows_refused_workflow", "job={} workflow={} (max_window_workflows={} all live)",
              log::quoted(id), log::quoted(b.workflow), cfg_.max_window_workflows);
    return nullptr;
  }
  auto m = cfg_.windows(j->spec.workflows[wf].plan, j->spec.workflows[wf].name);
  if (!m.ok()) {
    w.factory_failed = true;
    stats_.window_factory_errors++;
    log::warn("manager", "windows_unavailable", "job={} workflow={} error={} (the workflow gets no live windows)",
              log::quoted(id), log::quoted(b.workflow), log::quoted(m.status().message()));
    return nullptr;
  }
  w.merger = std::move(*m);
  w.origin_ms = b.origin_unix_ms;
  w.window_ms = b.window_ms;
  w.origin_token = b.token;
  w.dropped.assign(j->workflows[wf].parts.size(), {0, 0});
  w.merger->advance(window_index(w));
  return &w;
}

std::size_t Manager::window_mergers() const {
  std::size_t n = 0;
  for (const auto& [id, l] : live_)
    for (const auto& w : l.windows) n += w.merger ? 1 : 0;
  return n;
}

// Under max_window_workflows, or after the windows of the job that ended first (not `id`) are freed.
bool Manager::make_room_for_windows(const std::string& id) {
  if (window_mergers() < cfg_.max_window_workflows) return true;
  Live* oldest = nullptr;
  const std::string* oldest_id = nullptr;
  for (auto& [other, l] : live_) {
    if (other == id || l.terminal_at.count() < 0) continue;
    const bool has =
        std::any_of(l.windows.begin(), l.windows.end(), [](const WfWindows& w) { return w.merger != nullptr; });
    if (has && (oldest == nullptr || l.terminal_at < oldest->terminal_at)) {
      oldest = &l;
      oldest_id = &other;
    }
  }
  if (oldest == nullptr) return false;
  stats_.window_mergers_evicted++;
  log::info("manager", "windows_evicted", "job={} (max_window_workflows={}: the windows of the job ended first go)",
            log::quoted(*oldest_id), cfg_.max_window_workflows);
  oldest->windows.clear();
  return window_mergers() < cfg_.max_window_workflows;
}

std::uint64_t Manager::window_index(const WfWindows& w) const {
  const std::uint64_t wall = ctx_->wall_ms();
  if (w.window_ms == 0 || wall < w.origin_ms) return 0;
  return (wall - w.origin_ms) / w.window_ms;
}

// Advances every workflow's windows to the leader's clock and judges the abort thresholds of live
// jobs on the merged statistics: the first that fails ends the job `failed`, naming it.
void Manager::windows_pass() {
  std::vector<std::pair<std::string, std::string>> breaches;
  for (auto& [id, l] : live_) {
    const LedgerJob* j = ledger_.job(id);
    if (j == nullptr) continue;
    std::optional<std::string> breach;
    for (std::size_t i = 0; i < l.windows.size(); ++i) {
      WfWindows& w = l.windows[i];
      if (!w.merger) continue;
      w.merger->advance(window_index(w));
      if (breach || terminal(j->state) || l.proposing) continue;
      const std::uint64_t wall = ctx_->wall_ms();
      const double elapsed_s = wall > w.origin_ms ? static_cast<double>(wall - w.origin_ms) / 1000.0 : 0.0;
      if (auto b = w.merger->abort_breach(elapsed_s))
        breach = fmt::format("abort threshold failed in workflow '{}': {}", j->spec.workflows[i].name, *b);
    }
    if (breach) breaches.emplace_back(id, std::move(*breach));
  }
  for (auto& [id, why] : breaches) {
    log::warn("manager", "threshold_abort", "job={} reason={}", log::quoted(id), log::quoted(why));
    propose_job_end(id, JobState::failed, std::move(why), stats_.threshold_aborts);
  }
}

void Manager::handle_watch(NodeId from, const WatchQuery& m) {
  stats_.watches++;
  WatchReply r;
  if (!is_leader()) {
    r.code = Err::not_leader;
    r.error = "live windows are kept by the datacenter leader";
    r.leader = raft_->leader_id();
  } else if (auto w = watch(m.job_id, m.from_index, m.max_windows)) {
    r = std::move(*w);
  } else {
    r.code = Err::not_found;
    r.error = fmt::format("no job '{}'", m.job_id);
  }
  r.req = m.req;
  reply(from, MsgType::watch_reply, r);
}

std::optional<WatchReply> Manager::watch(const std::string& job_id, std::uint64_t from_index,
                                         std::uint32_t max_windows) const {
  const LedgerJob* j = ledger_.job(job_id);
  if (!is_leader() || j == nullptr) return std::nullopt;
  auto it = live_.find(job_id);
  return watch_reply(*j, it == live_.end() ? nullptr : &it->second, from_index, max_windows);
}

WatchReply Manager::watch_reply(const LedgerJob& j, const Live* l, std::uint64_t from_index,
                                std::uint32_t max_windows) const {
  WatchReply r;
  r.leader = self_;
  r.state = j.state;
  r.job_error = j.error;
  if (l == nullptr) return r;
  const std::uint32_t max = std::clamp<std::uint32_t>(max_windows == 0 ? cfg_.max_watch_windows : max_windows, 1,
                                                      std::max<std::uint32_t>(1, cfg_.max_watch_windows));
  std::size_t bytes = 0;
  for (std::size_t i = 0; i < l->windows.size() && i < j.workflows.size(); ++i) {
    const WfWindows& w = l->windows[i];
    if (!w.merger) continue;
    WatchWorkflow f;
    f.name = j.spec.workflows[i].name;
    f.origin_unix_ms = w.origin_ms;
    f.window_ms = w.window_ms;
    f.now_index = w.merger->now();
    f.totals = w.merger->totals();
    bytes += f.totals.size();
    const auto& parts = j.workflows[i].parts;
    for (ClosedWindow& c : w.merger->closed_since(from_index, max + 1)) {
      if (f.windows.size() >= max || (!f.windows.empty() && bytes + c.merged.size() > cfg_.max_watch_bytes)) {
        f.more = true;
        break;
      }
      bytes += c.merged.size();
      WatchWindow ww{c.index, std::move(c.merged), {}};
      for (const WindowPartLoad& p : c.parts) {
        PartLoad pl{p.part, 0, 0, p.token, p.cpu_percent, p.rss_bytes, p.late};
        if (p.part < parts.size()) {
          pl.cores = parts[p.part].cores;
          if (parts[p.part].token == p.token) pl.worker = parts[p.part].worker;
        }
        ww.parts.push_back(pl);
      }
      f.windows.push_back(std::move(ww));
    }
    copy_tally(w.merger->tally(), f);
    f.dropped = w.dropped_before;
    for (const auto& d : w.dropped) f.dropped += d.second;
    r.workflows.push_back(std::move(f));
  }
  return r;
}

}  // namespace hs::manager
