// The gate's live windows: a job's windows merged across its datacenters (JobWindows, sans-IO), and
// the owner's work around it (Gate::handle_watch, windows_pass, handle_watch_reply): while clients
// watch a job, the owner asks each share's datacenter leader for its closed windows every gate.poll
// and merges them. See gate/windows.hpp and docs/gates.md "Live windows".
#include "hyperscale/gate/windows.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "hyperscale/base/assert.hpp"
#include "hyperscale/base/log.hpp"
#include "hyperscale/gate/gate.hpp"

namespace hs::gate {

using namespace cluster;

// ---------------------------------------------------------------- JobWindows

JobWindows::JobWindows(WindowsFactory factory, std::size_t shares) : factory_(std::move(factory)) {
  HS_ASSERT(factory_ != nullptr, "gate windows need a factory");
  shares_.resize(shares);
}

JobWindows::Added JobWindows::add(const JobSpec& spec, std::uint32_t share, const std::string& dc, const WatchReply& r,
                                  std::size_t& mergers_left) {
  Added out;
  if (share >= shares_.size()) {
    out.refused = 1;
    out.first_error = fmt::format("share {} of {}", share, shares_.size());
    return out;
  }
  auto refuse = [&](std::size_t n, std::string why) {
    if (out.refused == 0) out.first_error = std::move(why);
    out.refused += n;
  };
  if (wfs_.size() < spec.workflows.size()) wfs_.resize(spec.workflows.size());
  bool more = false;
  for (const WatchWorkflow& f : r.workflows) {
    auto it = std::find_if(spec.workflows.begin(), spec.workflows.end(),
                           [&](const WorkflowSpec& w) { return w.name == f.name; });
    if (it == spec.workflows.end()) {
      refuse(f.windows.size(), fmt::format("no workflow '{}' in the job", f.name));
      continue;
    }
    Wf& w = wfs_[static_cast<std::size_t>(it - spec.workflows.begin())];
    if (w.dcs.size() < shares_.size()) w.dcs.resize(shares_.size());
    if (!w.merger && !w.refused) {
      if (mergers_left == 0) {
        w.refused = true;
        w.error = "too many workflows with live windows on this gate";
        refused_workflows_++;
      } else if (auto m = factory_(it->plan, it->name); !m.ok()) {
        w.refused = true;
        w.error = m.status().message();
        refused_workflows_++;
      } else {
        w.merger = std::move(*m);
        w.window_ms = f.window_ms;
        w.origin_ms = f.origin_unix_ms;
        --mergers_left;
        out.mergers_created++;
      }
    }
    if (!w.merger) {
      refuse(f.windows.size(), fmt::format("workflow '{}': {}", f.name, w.error));
      continue;
    }
    if (f.window_ms != w.window_ms) {
      refuse(f.windows.size(), fmt::format("workflow '{}': datacenter {} has windows of {} ms, the merge {} ms", f.name,
                                           dc, f.window_ms, w.window_ms));
      continue;
    }
    Series& s = w.dcs[share];
    if (!s.seen && shares_[share].asked > 0) {
      // A workflow this share shows for the first time, in an answer from a later index: its windows
      // below that index were not asked for. Taken from 0 on by the next query (query_from).
      s.seen = true;
      s.origin_ms = f.origin_unix_ms;
      s.window_ms = f.window_ms;
      s.now_index = f.now_index;
      out.skipped += f.windows.size();
      more = true;
      continue;
    }
    if (s.seen && f.origin_unix_ms != s.origin_ms) {
      // The datacenter restarted the workflow's series (a one-part workflow run again from its
      // start): its windows start over at index 0 under a new token, fencing off the old ones.
      if (f.origin_unix_ms < s.origin_ms) {
        out.skipped += f.windows.size();
        continue;
      }
      s.next = 0;
    }
    s.seen = true;
    s.origin_ms = f.origin_unix_ms;
    s.window_ms = f.window_ms;
    w.origin_ms = std::min(w.origin_ms, f.origin_unix_ms);
    for (const WatchWindow& ww : f.windows) {
      if (ww.index < s.next) {  // given already (a repeat, or a new datacenter leader's older windows)
        out.skipped++;
        continue;
      }
      if (Status st = w.merger->add_as(ww.merged, share, s.origin_ms, ww.index); !st.ok()) {
        refuse(1, fmt::format("workflow '{}' window {} from {}: {}", f.name, ww.index, dc, st.message()));
      } else {
        out.merged++;
        s.windows++;
      }
      std::uint32_t cores = 0;
      for (const PartLoad& p : ww.parts)
        if (!p.late) cores += std::max<std::uint32_t>(1, p.cores);
      if (cores != 0) s.cores = cores;
      s.next = ww.index + 1;
    }
    s.now_index = f.now_index;
    s.more = f.more;
    more = more || f.more;
    s.last = f;
    s.last.windows.clear();
    s.last.datacenters.clear();
  }
  Share& sh = shares_[share];
  sh.dc = dc;
  sh.state = r.state;
  sh.more = more;
  sh.ended = terminal(r.state) && !more;
  return out;
}

std::uint64_t JobWindows::query_from(std::uint32_t share) {
  if (share >= shares_.size()) return 0;
  std::uint64_t from = UINT64_MAX;
  for (const Wf& w : wfs_)
    if (w.merger && share < w.dcs.size() && w.dcs[share].seen) from = std::min(from, w.dcs[share].next);
  shares_[share].asked = from == UINT64_MAX ? 0 : from;
  return shares_[share].asked;
}

bool JobWindows::more(std::uint32_t share) const { return share < shares_.size() && shares_[share].more; }
bool JobWindows::ended(std::uint32_t share) const { return share < shares_.size() && shares_[share].ended; }

void JobWindows::advance(const std::vector<bool>& active) {
  const bool any = std::any_of(active.begin(), active.end(), [](bool a) { return a; });
  for (Wf& w : wfs_) {
    if (!w.merger) continue;
    if (!any) {
      if (!w.sealed) w.merger->seal();  // once: seal() moves the merger's now past its newest window
      w.sealed = true;
      continue;
    }
    w.sealed = false;
    std::optional<std::uint64_t> now;
    for (std::size_t s = 0; s < w.dcs.size() && s < active.size(); ++s) {
      const Series& d = w.dcs[s];
      if (!active[s] || !d.seen) continue;
      // A share that has more windows than its last reply carried is only as far as what it gave.
      const std::uint64_t at = d.more ? d.next : d.now_index;
      now = now ? std::min(*now, at) : at;
    }
    if (now && *now > w.merger->now()) w.merger->advance(*now);
  }
}

WatchReply JobWindows::reply(const JobSpec& spec, std::uint64_t from, std::uint32_t max, std::size_t max_bytes) const {
  WatchReply r;
  std::size_t bytes = 0;
  for (std::size_t i = 0; i < wfs_.size() && i < spec.workflows.size(); ++i) {
    const Wf& w = wfs_[i];
    if (!w.merger) continue;
    WatchWorkflow f;
    f.name = spec.workflows[i].name;
    f.origin_unix_ms = w.origin_ms;
    f.window_ms = w.window_ms;
    f.now_index = w.merger->now();
    f.totals = w.merger->totals();
    bytes += f.totals.size();
    for (ClosedWindow& c : w.merger->closed_since(from, std::size_t{max} + 1)) {
      if (f.windows.size() >= max || (!f.windows.empty() && bytes + c.merged.size() > max_bytes)) {
        f.more = true;
        break;
      }
      bytes += c.merged.size();
      WatchWindow ww{c.index, std::move(c.merged), {}};
      for (const WindowPartLoad& p : c.parts) {
        const std::uint32_t cores = p.part < w.dcs.size() ? w.dcs[p.part].cores : 0;
        ww.parts.push_back(PartLoad{p.part, 0, cores, p.token, p.cpu_percent, p.rss_bytes, p.late});
      }
      f.windows.push_back(std::move(ww));
    }
    copy_tally(w.merger->tally(), f);
    for (std::size_t s = 0; s < w.dcs.size() && s < shares_.size(); ++s) {
      const Series& d = w.dcs[s];
      if (!d.seen) continue;
      // The datacenters' own tallies (their parts' duplicates, late windows, drops) add to the gate's.
      f.duplicates += d.last.duplicates;
      f.late += d.last.late;
      f.stale += d.last.stale;
      f.expired += d.last.expired;
      f.refused += d.last.refused;
      f.evicted += d.last.evicted;
      f.dropped += d.last.dropped;
      f.datacenters.push_back(WatchDc{static_cast<std::uint32_t>(s), shares_[s].dc, shares_[s].state, d.now_index,
                                      d.last.totals, d.windows});
      bytes += d.last.totals.size();
    }
    r.workflows.push_back(std::move(f));
  }
  return r;
}

std::size_t JobWindows::mergers() const {
  return static_cast<std::size_t>(
      std::count_if(wfs_.begin(), wfs_.end(), [](const Wf& w) { return w.merger != nullptr; }));
}

// ---------------------------------------------------------------- the gate

std::size_t Gate::window_mergers() const {
  std::size_t n = 0;
  for (const auto& [id, w] : watched_) n += w.windows.mergers();
  return n;
}

std::map<std::string, std::size_t> Gate::window_tables() const {
  return {
      {"watched_jobs", watched_.size()}, {"watch_requests", watch_reqs_.size()}, {"window_mergers", window_mergers()}};
}

void Gate::handle_watch(NodeId from, const WatchQuery& m) {
  stats_.watches++;
  WatchReply r;
  r.req = m.req;
  const GateJob* j = ledger_.job(m.job_id);
  if (j != nullptr) {
    r.state = j->state;
    r.job_error = j->error;
  }
  if (j != nullptr && j->owner != self_) {
    // The job's owner merges its windows: name it (a client follows `leader`).
    stats_.watch_redirects++;
    r.leader = j->owner;
    r.code = Err::not_leader;
    r.error = "live windows are merged by the job's owner gate";
  } else if (j == nullptr && !is_leader()) {
    // This gate's ledger may lag the leader's (a job acked a moment ago): ask the leader.
    stats_.watch_redirects++;
    r.leader = raft_->leader_id();
    r.code = r.leader != 0 ? Err::not_leader : Err::no_quorum;
    r.error = fmt::format("no job '{}' here yet; ask the gate leader", m.job_id);
  } else if (j == nullptr) {
    r.code = Err::not_found;
    r.error = fmt::format("no job '{}'", m.job_id);
  } else if (!cfg_.windows || cfg_.max_watched_jobs == 0) {
    r.code = Err::invalid;
    r.error = "this gate merges no live windows (no window factory, or max_watched_jobs 0)";
  } else {
    r.leader = self_;
    auto it = watched_.find(m.job_id);
    if (it == watched_.end()) {
      if (watched_.size() >= cfg_.max_watched_jobs) {
        // The job watched least recently goes (its clients, if any, get it back on their next ask).
        auto lru = std::min_element(watched_.begin(), watched_.end(), [](const auto& a, const auto& b) {
          return a.second.last_asked < b.second.last_asked;
        });
        stats_.watches_evicted++;
        log::info("gate", "watch_evicted", "job={} (max_watched_jobs={}: the job watched least recently goes)",
                  log::quoted(lru->first), cfg_.max_watched_jobs);
        drop_watch(lru);
      }
      const std::size_t n = j->shares.size();
      it = watched_
               .emplace(m.job_id, Watched{JobWindows(cfg_.windows, n), ctx_->now(), std::vector<NodeId>(n, 0),
                                          std::vector<Request>(n), false})
               .first;
      log::debug("gate", "watch_started", "job={} shares={}", log::quoted(m.job_id), j->shares.size());
    }
    it->second.last_asked = ctx_->now();
    const std::uint32_t max = std::clamp<std::uint32_t>(m.max_windows == 0 ? cfg_.max_watch_windows : m.max_windows, 1,
                                                        std::max<std::uint32_t>(1, cfg_.max_watch_windows));
    WatchReply w = it->second.windows.reply(j->spec, m.from_index, max, cfg_.max_watch_bytes);
    r.workflows = std::move(w.workflows);
  }
  send(from, MsgType::watch_reply, r);
}

void Gate::drop_watch(std::map<std::string, Watched>::iterator it) {
  for (const Request& q : it->second.queries)
    if (q.req != 0) watch_reqs_.erase(q.req);
  watched_.erase(it);
}

// The owner, every tick: for each watched job, each share accepted by its datacenter and not done
// giving windows is asked for its closed windows every gate.poll (a lost answer: again after
// request_timeout); the mergers advance as the datacenters do. A job nobody asked about for
// watch_linger, or gone from the ledger, is dropped with its windows.
void Gate::windows_pass() {
  const Instant now = ctx_->now();
  for (auto it = watched_.begin(); it != watched_.end();) {
    const GateJob* j = ledger_.job(it->first);
    if (j == nullptr || j->owner != self_ || now - it->second.last_asked > cfg_.watch_linger) {
      log::debug("gate", "watch_ended", "job={} reason={}", log::quoted(it->first),
                 j == nullptr        ? "job gone"
                 : j->owner != self_ ? "owned by another gate"
                                     : "no client asked");
      auto gone = it++;
      drop_watch(gone);
      continue;
    }
    Watched& w = it->second;
    std::vector<bool> active(j->shares.size(), false);
    for (std::uint32_t s = 0; s < j->shares.size() && s < w.queries.size(); ++s) {
      const GateShare& sh = j->shares[s];
      // A share holds windows back until its datacenter gave them all after its end; one the gate
      // ended without the datacenter's word (unreachable, lost) holds nothing back.
      active[s] = sh.accepted && !w.windows.ended(s) && !(terminal(sh.state) && sh.gate_decided);
      if (!active[s]) continue;
      Request& q = w.queries[s];
      const bool due = q.req == 0 ? (q.sent.count() < 0 || now - q.sent >= cfg_.poll || w.windows.more(s))
                                  : now - q.sent >= cfg_.request_timeout;
      if (!due) continue;
      const NodeId to = dc_target(sh.dc, w.hints[s]);
      if (to == 0) continue;
      if (q.req != 0) watch_reqs_.erase(q.req);
      q.req = next_watch_req_++;
      q.sent = now;
      q.to = to;
      watch_reqs_.emplace(q.req, std::make_pair(it->first, s));
      WatchQuery m{q.req, it->first, w.windows.query_from(s), 0};
      stats_.watch_polls++;
      send(to, MsgType::watch_query, m);
    }
    w.windows.advance(active);
    ++it;
  }
}

void Gate::handle_watch_reply(NodeId from, const WatchReply& m) {
  auto rq = watch_reqs_.find(m.req);
  if (rq == watch_reqs_.end()) {
    stats_.stale_replies++;
    return;
  }
  const auto [id, s] = rq->second;
  if (const GateJob* j = ledger_.job(id); j == nullptr || j->owner != self_) {  // no longer this gate's
    watch_reqs_.erase(rq);
    stats_.stale_replies++;
    return;
  }
  watch_reqs_.erase(rq);
  auto it = watched_.find(id);
  const GateJob* j = ledger_.job(id);
  if (it == watched_.end() || j == nullptr || s >= j->shares.size() || s >= it->second.queries.size()) {
    stats_.stale_replies++;
    return;
  }
  Watched& w = it->second;
  w.queries[s].req = 0;
  const std::string& dc = j->shares[s].dc;
  if (m.code == Err::not_leader) {
    w.hints[s] = m.leader;
    w.queries[s].sent = Instant{-1};  // ask the named leader at the next pass
    return;
  }
  if (m.code != Err::none) {
    stats_.watch_errors++;
    log::debug("gate", "watch_refused", "job={} dc={} from={} code={} error={}", log::quoted(id), dc, from,
               name(m.code), log::quoted(m.error));
    return;
  }
  w.hints[s] = from;
  std::size_t left = cfg_.max_window_workflows > window_mergers() ? cfg_.max_window_workflows - window_mergers() : 0;
  const JobWindows::Added a = w.windows.add(j->spec, s, dc, m, left);
  stats_.watch_replies++;
  stats_.windows_merged += a.merged;
  if (a.refused > 0) {
    stats_.windows_refused += a.refused;
    // Once per watched job at warn: a workflow without a merger is refused at every poll.
    if (!w.warned)
      log::warn("gate", "windows_refused", "job={} dc={} from={} refused={} error={}", log::quoted(id), dc, from,
                a.refused, log::quoted(a.first_error));
    else
      log::debug("gate", "windows_refused", "job={} dc={} from={} refused={} error={}", log::quoted(id), dc, from,
                 a.refused, log::quoted(a.first_error));
    w.warned = true;
  }
}

}  // namespace hs::gate
