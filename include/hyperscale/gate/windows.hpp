// A job's live windows merged across its datacenters, as the gate that owns the job serves them to
// `watch --gate` and `submit --gate --wait` (docs/gates.md "Live windows").
//
// Each datacenter's leader manager merges its own parts' windows (docs/windows.md) and serves the
// closed ones on a watch query. The owning gate asks every share's datacenter for them and merges
// each workflow's windows over the datacenters with the same code the managers use
// (cluster::WorkflowWindows, on the daemons host::LoadWindows over load::WindowMerger): a
// datacenter's merged window k goes in as part `share index`, token `the series' origin`, index k.
// Counts add and histograms merge bucket for bucket, so the gate's window k is exactly the sum of
// the datacenters' windows k. Windows are matched by their index from each datacenter's origin of
// the workflow (the shares are dispatched together; their origins differ by the dispatch delay).
//
// Sans-IO: no clock, no socket, no logging; the gate (gate.hpp) sends the queries, feeds the
// replies, logs and counts what this returns. Bounded: one merger per workflow (its ring of
// windows bounded by its own config), per datacenter only the last answer's totals.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "hyperscale/cluster/messages.hpp"
#include "hyperscale/cluster/windows.hpp"

namespace hs::gate {

class JobWindows {
 public:
  // `shares`: the job's datacenter shares (their index is the windows' part). `factory` creates a
  // workflow's merger from the job's workflow file text (the managers' factory).
  JobWindows(cluster::WindowsFactory factory, std::size_t shares);

  struct Added {
    std::size_t merged = 0;   // windows taken (merged, or duplicate/late/stale/expired: tallied)
    std::size_t skipped = 0;  // at or below what the share already gave (a repeat, a new leader's older ones)
    std::size_t refused = 0;  // errors (bad bytes, another window length, no merger)
    std::size_t mergers_created = 0;
    std::string first_error;
  };
  // Share `share` (datacenter `dc`) answered a watch query with `r`. Each workflow's closed windows
  // the share has not given yet go into the workflow's merger; the share's current window, totals
  // and tallies are replaced by the reply's. A workflow gets a merger on its first windows while
  // `mergers_left` > 0 (the gate's budget: it decrements it). `ended`: the datacenter reports the
  // share's job terminal and every window was given (no `more`): the share holds back no window.
  Added add(const cluster::JobSpec& spec, std::uint32_t share, const std::string& dc, const cluster::WatchReply& r,
            std::size_t& mergers_left);
  // Where the share's next query starts, remembered for its answer: the lowest next index over the
  // workflows the share has shown (0 before any). A workflow the datacenter starts later shows up in
  // the next answer (a datacenter lists every workflow it has windows of); its windows are taken
  // from 0 on, by the query after (each workflow's windows start at its own index 0).
  std::uint64_t query_from(std::uint32_t share);
  bool more(std::uint32_t share) const;   // its last reply had more windows than it carried
  bool ended(std::uint32_t share) const;  // see add()
  // Advances every workflow's merger to the lowest current window of the shares still `active`
  // (a window closes at the gate once each running datacenter closed it); with no share active
  // every merger is sealed (all windows closed).
  void advance(const std::vector<bool>& active);
  // The reply to a client's watch query: per workflow with a merger, the merged totals, the closed
  // windows from `from` (at most `max` per workflow and about `max_bytes` in all; `more` says there
  // are more), the datacenters' shares (WatchDc) and the tallies (the gate merger's plus the
  // datacenters' last ones).
  cluster::WatchReply reply(const cluster::JobSpec& spec, std::uint64_t from, std::uint32_t max,
                            std::size_t max_bytes) const;
  std::size_t mergers() const;
  std::uint64_t refused_workflows() const noexcept { return refused_workflows_; }

 private:
  struct Series {  // one share's windows of one workflow
    bool seen = false;
    std::uint64_t origin_ms = 0;
    std::uint32_t window_ms = 0;
    std::uint64_t next = 0;  // the next index not given yet
    std::uint64_t now_index = 0;
    std::uint32_t cores = 0;  // the datacenter's parts' cores in its last window
    bool more = false;
    std::uint64_t windows = 0;
    cluster::WatchWorkflow last;  // the datacenter's tallies and totals (no windows)
  };
  struct Wf {
    std::unique_ptr<cluster::WorkflowWindows> merger;
    bool refused = false;  // no merger: the factory failed or the budget was spent
    bool sealed = false;   // sealed since a share was last active
    std::string error;
    std::uint64_t origin_ms = 0;  // the lowest origin of its series
    std::uint32_t window_ms = 0;  // the first series' length; another length is refused
    std::vector<Series> dcs;      // by share
  };
  struct Share {
    std::string dc;
    cluster::JobState state = cluster::JobState::submitted;
    bool more = false;
    bool ended = false;
    std::uint64_t asked = 0;  // the from_index of the query being answered
  };

  cluster::WindowsFactory factory_;
  std::vector<Share> shares_;
  std::vector<Wf> wfs_;  // by the job's workflow index
  std::uint64_t refused_workflows_ = 0;
};

}  // namespace hs::gate
