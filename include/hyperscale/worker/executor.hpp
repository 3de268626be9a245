// The boundary between the worker role (sans-IO) and whatever actually runs a workflow.
//
// The worker role calls Executor::start/cancel; the host reports back by calling
// Worker::on_exec_progress / Worker::on_exec_done during an event of the worker's node (in the
// simulator a SimExecutor does this from its own timers; on a real worker the load engine runs the
// workflow on the worker's shards and its completions are posted back to the control shard).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "hyperscale/base/status.hpp"

namespace hs::worker {

using Bytes = std::vector<std::uint8_t>;
using KeyValues = std::vector<std::pair<std::string, std::string>>;

struct ExecSpec {
  std::string job_id;
  std::string workflow;  // workflow name, unique within the job
  Bytes plan;            // opaque to the roles: for the load engine, the workflow file's text
  std::uint32_t cores = 1;
  std::uint32_t vus = 1;
  KeyValues context;  // values published by the workflows this one depends on ("workflow.key" -> value)
  // A part of a workflow spread over several workers: the `cores` shards are its global shards
  // [shard_first, shard_first + cores) of shard_total (cluster::Dispatch). shard_total 0: the whole workflow.
  std::uint32_t shard_first = 0;
  std::uint32_t shard_total = 0;
  // The wall-clock time (Unix ms) the schedule starts at, the same for every part (cluster::Dispatch);
  // 0: at once. A worker whose clock is off by s starts s early or late (docs/load.md, "Parts").
  std::uint64_t start_at_unix_ms = 0;
  // A part re-dispatched after its worker was lost: iterations of the part's share that an earlier
  // attempt already accounted for (acknowledged done, or declared lost); this attempt runs the rest
  // of an `iterations` budget. 0: the whole share. Duration-based parts ignore it: the shared
  // start_at (in the past by now) already places them in their schedule.
  std::uint64_t skip_iterations = 0;
  std::uint32_t part = 0;  // which part of the workflow this is (logs and observers)
  // Live windows (docs/windows.md): the part's fence token (carried in every window), the window
  // length (0: no windows) and the wall-clock time (Unix ms) window 0 starts at, the same for every
  // part of the workflow (start_at_unix_ms for a split workflow; the dispatch time for one part).
  std::uint64_t token = 0;
  std::uint32_t window_ms = 0;
  std::uint64_t window_origin_unix_ms = 0;
};

struct ExecProgress {
  std::uint64_t completed = 0;  // cumulative since start
  std::uint64_t failed = 0;
  std::uint64_t started = 0;  // iterations begun, cumulative (completed + failed + in flight)
  // Windows finished since the previous progress, oldest first, each one encoded load::Window (opaque
  // to the roles). The executor reports the last ones in one more progress just before done.
  std::vector<Bytes> windows;
};

enum class ExecOutcome : std::uint8_t { completed, failed, cancelled };

struct ExecResult {
  ExecOutcome outcome = ExecOutcome::completed;
  std::uint64_t completed = 0;
  std::uint64_t failed = 0;
  std::string error;    // application error text when outcome == failed
  Bytes stats;          // exact, mergeable statistics (opaque to the roles; see load::encode_stats)
  KeyValues published;  // context values this workflow publishes for its dependants
};

class Executor {
 public:
  virtual ~Executor() = default;
  // Starts execution `exec`. An error means it never started (the worker reports the dispatch failed).
  virtual Status start(std::uint64_t exec, const ExecSpec& spec) = 0;
  // Asks execution `exec` to stop; on_exec_done(exec, cancelled) should follow. The worker frees the
  // cores after its force-stop grace even if it never does (and counts that).
  virtual void cancel(std::uint64_t exec) = 0;
};

}  // namespace hs::worker
