#include "hyperscale/load/stats_codec.hpp"

#include "codec_io.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>

namespace hs::load {
namespace {

using codec::Reader;
using codec::Writer;

constexpr char kMagic[4] = {'H', 'S', 'W', 'S'};
static_assert(codec::kMaxString == kMaxStatsString, "one string bound for the statistics encodings");

std::uint64_t nanos(Duration d) { return static_cast<std::uint64_t>(std::max<std::int64_t>(0, d.count())); }

}  // namespace

std::vector<std::uint8_t> encode_stats(const WorkflowStats& s) {
  std::vector<std::uint8_t> out;
  out.reserve(256);
  out.insert(out.end(), kMagic, kMagic + 4);
  Writer w(out);
  w.u8(kStatsCodecVersion);
  w.str(s.name);
  w.u8(static_cast<std::uint8_t>(s.outcome));
  w.str(s.note);
  w.var(s.started);
  w.var(s.completed);
  w.var(s.dropped);
  w.var(s.interrupted);
  w.var(s.iterations_failed);
  w.var(nanos(s.elapsed));
  w.var(nanos(s.measured));
  const std::size_t nsteps = std::min(s.steps.size(), kMaxStatsSteps);
  w.var(nsteps);
  for (std::size_t i = 0; i < nsteps; ++i) {
    const StepStats& st = s.steps[i];
    w.str(st.name);
    w.counts(st.total);
    w.counts(st.measured);
    w.var(st.skipped);
    w.hist(st.latency);
    const std::size_t n = std::min(st.series.size(), StepStats::kMaxSeries);
    w.var(n);
    for (std::size_t k = 0; k < n; ++k) {
      w.var(st.series[k].executed);
      w.var(st.series[k].failed);
    }
  }
  return out;
}

Result<WorkflowStats> decode_stats(const std::uint8_t* data, std::size_t size) {
  if (size > kMaxStatsBytes)
    return make_error(Errc::invalid_argument, fmt::format("stats: {} bytes exceed the bound {}", size, kMaxStatsBytes));
  if (size < 5 || data == nullptr || std::memcmp(data, kMagic, 4) != 0)
    return make_error(Errc::invalid_argument, "stats: not encoded workflow stats (bad magic)");
  if (data[4] != kStatsCodecVersion)
    return make_error(Errc::invalid_argument,
                      fmt::format("stats: unsupported version {} (this build reads {})", data[4], kStatsCodecVersion));
  Reader r(data + 5, size - 5, "stats");
  WorkflowStats s;
  HS_TRY(r.str(s.name, "workflow name"));
  std::uint8_t outcome = 0;
  HS_TRY(r.u8(outcome, "outcome"));
  if (outcome > static_cast<std::uint8_t>(WorkflowOutcome::interrupted))
    return r.bad("outcome", fmt::format("unknown value {}", outcome));
  s.outcome = static_cast<WorkflowOutcome>(outcome);
  HS_TRY(r.str(s.note, "note"));
  HS_TRY(r.var(s.started, "started"));
  HS_TRY(r.var(s.completed, "completed"));
  HS_TRY(r.var(s.dropped, "dropped"));
  HS_TRY(r.var(s.interrupted, "interrupted"));
  HS_TRY(r.var(s.iterations_failed, "iterations_failed"));
  std::uint64_t el = 0, me = 0;
  const auto max_ns = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  HS_TRY(r.bounded(el, max_ns, "elapsed"));
  HS_TRY(r.bounded(me, max_ns, "measured"));
  s.elapsed = Duration(static_cast<std::int64_t>(el));
  s.measured = Duration(static_cast<std::int64_t>(me));
  std::uint64_t nsteps = 0;
  HS_TRY(r.bounded(nsteps, kMaxStatsSteps, "step count"));
  if (nsteps > r.left()) return r.truncated("steps");
  s.steps.resize(static_cast<std::size_t>(nsteps));
  for (auto& st : s.steps) {
    HS_TRY(r.str(st.name, "step name"));
    HS_TRY(r.counts(st.total, "step total counts"));
    HS_TRY(r.counts(st.measured, "step measured counts"));
    HS_TRY(r.var(st.skipped, "step skipped"));
    HS_TRY(r.hist(st.latency, "step latency histogram"));
    if (st.latency.count() != st.measured.executed)
      return r.bad("step latency histogram", "sample count differs from measured requests");
    std::uint64_t n = 0;
    HS_TRY(r.bounded(n, StepStats::kMaxSeries, "series length"));
    if (n * 2 > r.left()) return r.truncated("series");
    st.series.resize(static_cast<std::size_t>(n));
    for (auto& x : st.series) {
      HS_TRY(r.var(x.executed, "series"));
      HS_TRY(r.var(x.failed, "series"));
      if (x.failed > x.executed) return r.bad("series", "failed > executed");
    }
  }
  if (r.left() != 0) return r.bad("input", fmt::format("{} trailing bytes", r.left()));
  return s;
}

}  // namespace hs::load
