// The owner's work on each job: every share is submitted to its datacenter's leading manager
// (idempotent: same job id, same spec), polled until it ends, fenced after a takeover and stopped
// when the job ends first; deadlines (the global timeout, best effort), checkpoints and retention.
// See gate.hpp and docs/gates.md.
#include <fmt/format.h>

#include <algorithm>

#include "hyperscale/base/assert.hpp"
#include "hyperscale/base/log.hpp"
#include "hyperscale/gate/gate.hpp"

namespace hs::gate {

using namespace cluster;

namespace {
enum Kind : std::uint8_t { kSubmit = 1, kPoll, kCancel, kFence };

std::uint64_t ms(Duration d) {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}
// Calls f(id, job, live) for every ledger job that has live state, walking both maps (ordered by job
// id) together: the passes run every tick over every job, and a lookup per job was most of their cost.
template <class Jobs, class Lives, class F>
void each_live(const Jobs& jobs, Lives& lives, F&& f) {
  auto lit = lives.begin();
  for (const auto& [id, j] : jobs) {
    while (lit != lives.end() && lit->first < id) ++lit;
    if (lit == lives.end()) return;
    if (lit->first != id) continue;
    auto& l = (lit++)->second;  // advanced first: f may not erase, but need not care
    f(id, j, l);
  }
}
}  // namespace

// ---------------------------------------------------------------- requests

std::uint64_t Gate::next_req(const std::string& id, std::uint32_t share, std::uint8_t kind) {
  // Bounded: at most four requests per share are in flight; past the bound the oldest is forgotten
  // (its reply is then counted as stale and the request is sent again).
  const std::size_t bound = cfg_.max_active_jobs * cfg_.max_datacenters * 4 + 1024;
  while (requests_.size() >= bound) {
    requests_.erase(requests_.begin());
    stats_.stale_replies++;
  }
  const std::uint64_t req = next_req_++;
  requests_.emplace(req, std::make_tuple(id, share, kind));
  return req;
}

bool Gate::decode_req(std::uint64_t req, std::string& id, std::uint32_t& share, std::uint8_t& kind) const {
  auto it = requests_.find(req);
  if (it == requests_.end()) return false;
  std::tie(id, share, kind) = it->second;
  return true;
}

// AD-44: the job's retry budget and per-workflow cap are the whole job's, shared by its datacenters:
// share i of n gets total / n, plus one for the first total % n shares. The datacenters together
// never retry more than the job allows, and a share's part depends only on its index, so every
// owner (after a takeover too) sends the same spec and the managers' idempotency sees no conflict.
namespace {
std::uint32_t retry_part(std::uint32_t total, std::size_t n, std::uint32_t i) {
  HS_ASSERT(n > 0 && i < n, "share {} of {}", i, n);
  const auto shares = static_cast<std::uint32_t>(n);
  return total / shares + (i < total % shares ? 1 : 0);
}
}  // namespace

JobSpec Gate::share_spec(const GateJob& j, std::uint32_t share) const {
  JobSpec s = j.spec;
  s.retry_budget = retry_part(j.spec.retry_budget, j.shares.size(), share);
  s.workflow_retries = retry_part(j.spec.workflow_retries, j.shares.size(), share);
  s.datacenters.clear();
  s.datacenter_count = 0;
  s.min_datacenters = 0;
  s.best_effort_ms = 0;
  s.idempotency_key = "gate." + j.spec.job_id;
  // The managers' own timeout is a backstop for when the gate tier is gone: the gate decides first.
  if (s.timeout_ms != 0) s.timeout_ms += ms(cfg_.timeout_slack);
  return s;
}

// ---------------------------------------------------------------- the shares pass

// The jobs this gate owns; a job that moved to another owner (adopted, handed off) is dropped
// here with its requests in flight (their replies then count as stale).
void Gate::shares_pass() {
  // One walk of the ledger and live_ together (both ordered by job id), so a pass costs no lookup
  // per job. It runs every tick on the event loop, over every job the ledger holds, in slices of at
  // most cfg_.shares_slice jobs: a slice ends at a job id (shares_cursor_) and the next one, a loop
  // turn later (a 0 ms timer), starts after it. Jobs added in between behind the cursor wait for
  // the next pass; live_ entries with no ledger job are dropped by the slice that passes them.
  const auto& jobs = ledger_.jobs();
  auto jit = shares_cursor_ ? jobs.upper_bound(*shares_cursor_) : jobs.begin();
  auto lit = shares_cursor_ ? live_.upper_bound(*shares_cursor_) : live_.begin();
  stats_.share_slices++;
  auto drop = [this](auto it) {  // a job retired from the ledger, or owned by another gate now
    // Every request in flight is one of its shares' (issue() is the only place that numbers one),
    // so the job's requests go with its shares (their replies then count as stale).
    for (const ShareRun& r : it->second.shares)
      for (const Request* q : {&r.submit, &r.poll, &r.cancel, &r.fence})
        if (q->req != 0) requests_.erase(q->req);
    return live_.erase(it);
  };
  const std::size_t slice = std::max<std::size_t>(1, cfg_.shares_slice);
  for (std::size_t n = 0; jit != jobs.end(); ++jit, ++n) {
    const auto& [id, j] = *jit;
    if (n == slice) {  // the rest in the next slice, from the last job stepped
      shares_cursor_ = std::prev(jit)->first;
      if (!shares_more_armed_) {
        shares_more_armed_ = true;
        ctx_->set_timer(Duration{0}, kSharesMore);
      }
      return;
    }
    while (lit != live_.end() && lit->first < id) lit = drop(lit);
    const bool here = lit != live_.end() && lit->first == id;
    if (j.owner != self_) {  // another gate's (adopted, handed off): its state here goes
      if (here) lit = drop(lit);
      continue;
    }
    Live* lp = nullptr;
    if (here) {
      lp = &lit->second;
      ++lit;
    } else {
      lp = &live_of(id, j);  // new here: inserted before lit, which stays valid
    }
    Live& l = *lp;
    if (l.proposing || settled(j, l)) continue;
    for (std::uint32_t s = 0; s < j.shares.size(); ++s) share_step(id, j, l, s);
  }
  while (lit != live_.end()) lit = drop(lit);
  shares_cursor_.reset();  // the pass is whole
}

// A share that ended with its datacenter's word, or whose stop the datacenter confirmed since: the
// gate has nothing more to tell its datacenter (run: the share's live state, if any).
bool Gate::at_rest(const GateShare& sh, const ShareRun* run) {
  return terminal(sh.state) && (!sh.gate_decided || (run != nullptr && run->stop_confirmed));
}

// An ended job whose shares are all at rest: nothing for share_step to do until it is retired (the
// common case of most jobs the ledger holds).
bool Gate::settled(const GateJob& j, const Live& l) const {
  if (!terminal(j.state)) return false;
  for (std::uint32_t s = 0; s < j.shares.size(); ++s)
    if (!at_rest(j.shares[s], s < l.shares.size() ? &l.shares[s] : nullptr)) return false;
  return true;
}

void Gate::share_step(const std::string& id, const GateJob& j, Live& l, std::uint32_t s) {
  const GateShare& sh = j.shares[s];
  if (s >= l.shares.size()) l.shares.resize(j.shares.size());
  ShareRun& r = l.shares[s];
  if (r.proposing) return;
  const bool ended = terminal(sh.state);
  // A share whose end the gate decided without the datacenter's word (unreachable, lost, a stop not
  // confirmed) may still run there, or get its submit late. Once the datacenter is usable it is
  // told to stop (a fenced cancel; one it never had leaves a tombstone there), until it confirms.
  if (ended && (at_rest(sh, &r) || !dc_usable(sh.dc))) return;
  const Instant now = ctx_->now();
  const NodeId to = dc_target(sh.dc, r.leader);
  auto due = [&](const Request& q, Duration every) { return q.sent.count() < 0 || now - q.sent >= every; };
  auto issue = [&](Request& q, std::uint8_t kind) {
    if (q.req != 0) requests_.erase(q.req);
    q.req = next_req(id, s, kind);
    q.sent = now;
    q.to = to;
    return q.req;
  };
  auto decide = [&](JobState st, std::string why, bool unreachable) {
    r.proposing = true;
    GateEntry e = entry(GateOp::dc_done, id);
    e.share = s;
    e.state = static_cast<std::uint8_t>(st);
    e.completed = r.completed;
    e.failed = r.failed;
    e.error = std::move(why);
    e.workflows = r.workflows;
    e.gate_decided = true;
    log::warn("gate", "share_decided", "job={} dc={} state={} error={}", log::quoted(id), sh.dc, name(st),
              log::quoted(e.error));
    if (unreachable) stats_.dc_unreachable++;
    auto clear = [this, id, s](auto&&...) {
      if (auto it = live_.find(id); it != live_.end() && s < it->second.shares.size())
        it->second.shares[s].proposing = false;
    };
    propose(std::move(e), clear, clear);
  };
  if (to == 0) return;

  if (ended) {
    if (due(r.cancel, cfg_.request_timeout)) {
      CancelJob c;
      c.req = issue(r.cancel, kCancel);
      c.job_id = id;
      c.reason = fmt::format("the gate ended this share: {}", sh.error.empty() ? name(sh.state) : sh.error);
      c.gate_fence = j.fence;
      stats_.cancels_sent++;
      send(to, MsgType::cancel_job, c);
    }
    return;
  }

  if (terminal(j.state)) {  // the job ended first: stop the share, then take its final view
    if (l.cancel_started.count() < 0) l.cancel_started = now;
    if (!r.stop_confirmed && due(r.cancel, cfg_.request_timeout)) {
      CancelJob c;
      c.req = issue(r.cancel, kCancel);
      c.job_id = id;
      c.reason = j.error.empty() ? std::string(name(j.state)) : j.error;
      c.gate_fence = j.fence;
      stats_.cancels_sent++;
      send(to, MsgType::cancel_job, c);
    }
    if (r.stop_confirmed && due(r.poll, cfg_.poll)) {
      StatusQuery q;
      q.req = issue(r.poll, kPoll);
      q.job_id = id;
      stats_.polls++;
      send(to, MsgType::status_query, q);
    }
    if (now - l.cancel_started >= cfg_.cancel_timeout) {
      const JobState st = j.state == JobState::timeout ? JobState::timeout : JobState::cancelled;
      decide(
          st,
          fmt::format("stop not confirmed: datacenter {} did not confirm within {} ms", sh.dc, ms(cfg_.cancel_timeout)),
          true);
    }
    return;
  }

  if (!sh.accepted) {
    if (!dc_usable(sh.dc)) {
      if (r.unusable_since.count() < 0) r.unusable_since = now;
      if (now - r.unusable_since >= cfg_.dc_grace) {
        if (!(j.routed && reroute(id, j, s, "unusable"))) {
          decide(JobState::failed,
                 fmt::format("datacenter {} unusable for {} ms before accepting", sh.dc, ms(cfg_.dc_grace)), true);
        }
        return;
      }
    } else {
      r.unusable_since = Instant{-1};
    }
    if (due(r.submit, std::max(cfg_.request_timeout, r.submit_backoff))) {
      Submit m;
      m.req = issue(r.submit, kSubmit);
      m.spec = share_spec(j, s);
      m.gate_fence = j.fence;
      stats_.dc_submits++;
      send(to, MsgType::submit, m);
    }
    return;
  }

  if (!r.fenced && due(r.fence, cfg_.request_timeout)) {
    JobFence f;
    f.req = issue(r.fence, kFence);
    f.job_id = id;
    f.gate_fence = j.fence;
    stats_.fences_sent++;
    send(to, MsgType::job_fence, f);
  }
  if (due(r.poll, cfg_.poll)) {
    StatusQuery q;
    q.req = issue(r.poll, kPoll);
    q.job_id = id;
    stats_.polls++;
    send(to, MsgType::status_query, q);
  }
  if (now - r.last_answer >= cfg_.dc_grace)
    decide(JobState::failed,
           fmt::format("datacenter {} unreachable: no answer for {} ms", sh.dc, ms(now - r.last_answer)), true);
}

// A share its datacenter refused (or could not take) before accepting moves to the best other
// usable datacenter the job does not use yet; false when there is none.
bool Gate::reroute(const std::string& id, const GateJob& j, std::uint32_t s, const std::string& why) {
  const GateShare& sh = j.shares[s];
  std::vector<std::tuple<int, std::int64_t, std::string>> cands;
  for (const auto& d : dcs_) {
    const std::string& n = d.cfg.name;
    bool used = std::any_of(j.shares.begin(), j.shares.end(), [&](const GateShare& x) { return x.dc == n; });
    used = used || std::find(sh.tried.begin(), sh.tried.end(), n) != sh.tried.end();
    const DcStatus st = dc_status(d);
    if (used || st.health == DcHealth::unhealthy) continue;
    cands.emplace_back(static_cast<int>(st.health), -static_cast<std::int64_t>(st.available_cores), n);
  }
  if (cands.empty()) return false;
  std::sort(cands.begin(), cands.end());
  Live& l = live_.at(id);
  l.shares[s].proposing = true;
  GateEntry e = entry(GateOp::reroute, id);
  e.share = s;
  e.dc = std::get<2>(cands.front());
  e.error = why;
  stats_.reroutes++;
  log::warn("gate", "share_rerouted", "job={} from={} to={} why={}", log::quoted(id), sh.dc, e.dc, log::quoted(why));
  auto done = [this, id, s](GateOutcome o) {
    auto it = live_.find(id);
    if (it == live_.end() || s >= it->second.shares.size()) return;
    ShareRun& r = it->second.shares[s];
    for (const Request* q : {&r.submit, &r.poll, &r.cancel, &r.fence})
      if (q->req != 0) requests_.erase(q->req);
    if (o == GateOutcome::applied) r = ShareRun{}, r.last_answer = ctx_->now(), r.fenced = true;
    r.proposing = false;
  };
  propose(std::move(e), done, [this, id, s](const Status&) {
    if (auto it = live_.find(id); it != live_.end() && s < it->second.shares.size())
      it->second.shares[s].proposing = false;
  });
  return true;
}

// ---------------------------------------------------------------- replies from datacenters

Gate::ShareRun* Gate::reply_run(std::uint64_t req, std::uint8_t kind, NodeId from, std::string& id,
                                std::uint32_t& share) {
  std::uint8_t k = 0;
  if (!in_quorum() || !decode_req(req, id, share, k) || k != kind) {
    stats_.stale_replies++;
    return nullptr;
  }
  requests_.erase(req);
  auto it = live_.find(id);
  if (it == live_.end() || share >= it->second.shares.size()) {
    stats_.stale_replies++;
    return nullptr;
  }
  ShareRun& r = it->second.shares[share];
  r.last_answer = ctx_->now();
  if (manager_dc_.count(from) != 0) r.leader = from;
  return &r;
}

void Gate::handle_submit_ack(NodeId from, const SubmitAck& a) {
  std::string id;
  std::uint32_t s = 0;
  ShareRun* r = reply_run(a.req, kSubmit, from, id, s);
  if (r == nullptr) return;
  const GateJob* j = ledger_.job(id);
  if (j == nullptr || s >= j->shares.size() || r->proposing) return;
  r->submit.req = 0;
  const std::string dc_name = j->shares[s].dc;
  if (a.accepted) {
    r->proposing = true;
    GateEntry e = entry(GateOp::dc_accepted, id);
    e.share = s;
    auto clear = [this, id, s](auto&&...) {
      if (auto it = live_.find(id); it != live_.end() && s < it->second.shares.size())
        it->second.shares[s].proposing = false;
    };
    propose(
        std::move(e),
        [this, clear, id, dc_name](GateOutcome o) {
          if (o == GateOutcome::applied) {
            stats_.dc_accepted++;
            log::info("gate", "share_accepted", "job={} dc={}", log::quoted(id), dc_name);
          }
          clear();
        },
        clear);
    return;
  }
  if (a.code == Err::not_leader) {
    r->leader = a.leader;
    r->submit.sent = Instant{-1};  // ask the leader at the next pass
    return;
  }
  if (retryable(a.code)) {
    // Sent again after request_timeout, doubled at each refusal up to 8 x (or the datacenter's
    // retry_after): a datacenter that is full is not asked again by every waiting share every second.
    const Duration after = std::chrono::milliseconds(a.retry_after_ms);
    r->submit_backoff = std::min(std::max({2 * r->submit_backoff, cfg_.request_timeout, after}),
                                 std::max(8 * cfg_.request_timeout, after));
    stats_.dc_backoffs++;
    return;
  }
  stats_.dc_refused++;
  const std::string why = fmt::format("datacenter {} refused the job: {}: {}", dc_name, name(a.code), a.error);
  log::warn("gate", "share_refused", "job={} error={}", log::quoted(id), log::quoted(why));
  if (terminal(j->state)) return;
  if (j->routed && reroute(id, *j, s, why)) return;
  r->proposing = true;
  GateEntry e = entry(GateOp::dc_done, id);
  e.share = s;
  e.state = static_cast<std::uint8_t>(JobState::failed);
  e.error = why;
  auto clear = [this, id, s](auto&&...) {
    if (auto it = live_.find(id); it != live_.end() && s < it->second.shares.size())
      it->second.shares[s].proposing = false;
  };
  propose(std::move(e), clear, clear);
}

void Gate::handle_status_reply(NodeId from, StatusReply& m) {
  std::string id;
  std::uint32_t s = 0;
  ShareRun* r = reply_run(m.req, kPoll, from, id, s);
  if (r == nullptr) return;
  r->poll.req = 0;
  const GateJob* j = ledger_.job(id);
  if (j == nullptr || s >= j->shares.size() || terminal(j->shares[s].state) || r->proposing) return;
  JobState final_state = JobState::submitted;
  std::string why;
  if (m.found) {
    r->not_found = 0;
    r->completed = std::max(r->completed, m.job.completed);
    r->failed = std::max(r->failed, m.job.failed);
    r->workflows = std::move(m.job.workflows);
    if (m.job.leader != 0 && manager_dc_.count(m.job.leader) != 0) r->leader = m.job.leader;
    if (!terminal(m.job.state)) return;
    final_state = m.job.state;
    why = m.job.error;
    stats_.dc_results++;
  } else {
    if (++r->not_found < cfg_.not_found_limit) return;
    stats_.dc_lost++;
    final_state = terminal(j->state) ? (j->state == JobState::timeout ? JobState::timeout : JobState::cancelled)
                                     : JobState::failed;
    why = terminal(j->state)
              ? fmt::format("datacenter {} has no record of the job (never started there)", j->shares[s].dc)
              : fmt::format("datacenter {} lost the job (no record after it accepted)", j->shares[s].dc);
  }
  r->proposing = true;
  GateEntry e = entry(GateOp::dc_done, id);
  e.share = s;
  e.state = static_cast<std::uint8_t>(final_state);
  e.completed = r->completed;
  e.failed = r->failed;
  e.error = why;
  e.workflows = r->workflows;
  e.gate_decided = !m.found;  // declared lost: the datacenter said nothing about its end
  log::info("gate", "share_ended", "job={} dc={} state={} completed={} failed={}", log::quoted(id), j->shares[s].dc,
            name(final_state), e.completed, e.failed);
  auto clear = [this, id, s](auto&&...) {
    if (auto it = live_.find(id); it != live_.end() && s < it->second.shares.size())
      it->second.shares[s].proposing = false;
  };
  propose(std::move(e), clear, clear);
}

void Gate::handle_cancel_reply(NodeId from, const CancelReply& c) {
  std::string id;
  std::uint32_t s = 0;
  ShareRun* r = reply_run(c.req, kCancel, from, id, s);
  if (r == nullptr) return;
  r->cancel.req = 0;
  if (c.success || c.already_cancelled || c.already_completed || c.code == Err::not_found) {
    r->stop_confirmed = true;
    r->poll.sent = Instant{-1};
    return;
  }
  if (c.code == Err::not_leader) {
    r->leader = c.leader;
    r->cancel.sent = Instant{-1};
  } else if (c.code == Err::fence) {
    stats_.fence_refused++;
    log::error("gate", "fence_refused", "job={} op=cancel error={}", log::quoted(id), log::quoted(c.error));
  }
}

void Gate::handle_fence_ack(NodeId from, const JobFenceAck& a) {
  std::string id;
  std::uint32_t s = 0;
  ShareRun* r = reply_run(a.req, kFence, from, id, s);
  if (r == nullptr) return;
  r->fence.req = 0;
  if (a.accepted) {
    r->fenced = true;
  } else if (a.code == Err::not_leader) {
    r->leader = a.leader;
    r->fence.sent = Instant{-1};
  } else if (a.code == Err::fence) {
    stats_.fence_refused++;
    log::error("gate", "fence_refused", "job={} op=fence current={} error={}", log::quoted(id), a.current,
               log::quoted(a.error));
  } else if (a.code == Err::not_found) {
    r->fenced = true;  // nothing there to fence; the polls decide what happened to the share
  }
}

// ---------------------------------------------------------------- deadlines and retention

void Gate::end_job(const std::string& id, JobState state, std::string why) {
  Live& l = live_.at(id);
  l.proposing = true;
  GateEntry e = entry(GateOp::job_done, id);
  e.state = static_cast<std::uint8_t>(state);
  e.error = std::move(why);
  for (std::uint32_t s = 0; s < l.shares.size(); ++s)
    e.counts.push_back(ShareCount{s, l.shares[s].completed, l.shares[s].failed});
  log::warn("gate", "job_end", "job={} state={} why={}", log::quoted(id), name(state), log::quoted(e.error));
  auto clear = [this, id](auto&&...) {
    if (auto it = live_.find(id); it != live_.end()) it->second.proposing = false;
  };
  propose(
      std::move(e),
      [this, clear, state](GateOutcome o) {
        if (o == GateOutcome::applied) (state == JobState::timeout ? stats_.timeouts : stats_.best_effort_ends)++;
        clear();
      },
      clear);
}

void Gate::deadlines_pass() {
  const Instant now = ctx_->now();
  each_live(ledger_.jobs(), live_, [&](const std::string& id, const GateJob& job, Live& l) {
    const GateJob* j = &job;
    if (terminal(j->state) || l.proposing || j->owner != self_) return;
    const std::uint64_t elapsed = elapsed_ms(id);
    std::size_t completed = 0;
    for (const auto& s : j->shares) completed += s.state == JobState::completed ? 1 : 0;
    if (j->spec.timeout_ms != 0 && elapsed >= j->spec.timeout_ms) {
      end_job(id, JobState::timeout, fmt::format("the job timed out after {} ms (gate)", j->spec.timeout_ms));
      return;
    }
    if (j->required < j->shares.size() && j->spec.best_effort_ms != 0 && elapsed >= j->spec.best_effort_ms &&
        completed >= j->required) {
      end_job(id, JobState::partial,
              fmt::format("best effort: {} of {} datacenters completed by the {} ms deadline", completed,
                          j->shares.size(), j->spec.best_effort_ms));
      return;
    }
    if (now < l.next_checkpoint) return;
    l.next_checkpoint = now + cfg_.checkpoint_every;
    GateEntry e = entry(GateOp::checkpoint, id);
    bool changed = false;
    for (std::uint32_t s = 0; s < l.shares.size() && s < j->shares.size(); ++s) {
      e.counts.push_back(ShareCount{s, l.shares[s].completed, l.shares[s].failed});
      changed = changed || l.shares[s].completed > j->shares[s].completed || l.shares[s].failed > j->shares[s].failed;
    }
    // Counts when they changed; the elapsed time alone (for a new owner's timeout) now and then.
    if (!changed && e.elapsed_ms < j->elapsed_ms + 10 * ms(cfg_.checkpoint_every)) return;
    stats_.checkpoints++;
    propose(std::move(e), nullptr);
  });
}

void Gate::retention_pass() {
  const Instant now = ctx_->now();
  rejections_.expire(now);
  if (!in_quorum()) return;
  each_live(ledger_.jobs(), live_, [&](const std::string& id, const GateJob& job, Live& l) {
    const GateJob* j = &job;
    if (j->owner != self_ || !terminal(j->state) || l.proposing) return;
    if (!std::all_of(j->shares.begin(), j->shares.end(), [](const GateShare& s) { return terminal(s.state); })) return;
    auto clear = [this, id = id](auto&&...) {
      if (auto it = live_.find(id); it != live_.end()) it->second.proposing = false;
    };
    if (!j->cancel_complete) {
      l.proposing = true;
      GateEntry e = entry(GateOp::cancel_done, id);
      for (const auto& s : j->shares)
        if (s.error.rfind("stop not confirmed", 0) == 0) e.notes.push_back(fmt::format("{}: {}", s.dc, s.error));
      propose(std::move(e), clear, clear);
      return;
    }
    if (l.terminal_at.count() < 0) l.terminal_at = now;
    const Duration keep = j->state == JobState::completed ? cfg_.retention_ok : cfg_.retention_failed;
    if (now - l.terminal_at < keep) return;
    l.proposing = true;
    propose(
        entry(GateOp::retire, id),
        [this, clear](GateOutcome o) {
          if (o == GateOutcome::applied) stats_.cleaned++;
          clear();
        },
        clear);
  });
}

}  // namespace hs::gate
