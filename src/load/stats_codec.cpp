#include "hyperscale/load/stats_codec.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>

namespace hs::load {
namespace {

constexpr char kMagic[4] = {'H', 'S', 'W', 'S'};

class Writer {
 public:
  explicit Writer(std::vector<std::uint8_t>& out) : out_(out) {}
  void u8(std::uint8_t v) { out_.push_back(v); }
  void var(std::uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<std::uint8_t>(v | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<std::uint8_t>(v));
  }
  void str(const std::string& s) {
    // Longer strings are cut at the bound so that what is encoded always decodes.
    const std::size_t n = std::min(s.size(), kMaxStatsString);
    var(n);
    out_.insert(out_.end(), s.begin(), s.begin() + static_cast<std::ptrdiff_t>(n));
  }
  void counts(const Counts& c) {
    var(c.executed);
    var(c.ok);
    var(c.failed);
    var(c.reasons.size());
    for (auto r : c.reasons) var(r);
  }
  void hist(const Histogram& h) {
    var(h.sum());
    var(h.min());
    var(h.max());
    const auto& cs = h.counts();
    std::uint64_t nz = 0;
    for (auto c : cs) nz += c != 0;
    var(nz);
    std::size_t prev = 0;
    for (std::size_t i = 0; i < cs.size(); ++i) {
      if (cs[i] == 0) continue;
      var(i - prev);  // index delta (the first one is the index itself)
      var(cs[i]);
      prev = i;
    }
  }

 private:
  std::vector<std::uint8_t>& out_;
};

class Reader {
 public:
  Reader(const std::uint8_t* p, std::size_t n) : p_(p), end_(p + n) {}
  std::size_t left() const { return static_cast<std::size_t>(end_ - p_); }
  std::size_t offset(const std::uint8_t* base) const { return static_cast<std::size_t>(p_ - base); }

  Status u8(std::uint8_t& v, const char* what) {
    if (left() < 1) return truncated(what);
    v = *p_++;
    return ok_status();
  }
  Status var(std::uint64_t& v, const char* what) {
    v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (left() < 1) return truncated(what);
      const std::uint8_t b = *p_++;
      if (shift == 63 && (b & 0x7e) != 0) return bad(what, "varint overflows 64 bits");
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return ok_status();
    }
    return bad(what, "varint longer than 10 bytes");
  }
  Status bounded(std::uint64_t& v, std::uint64_t max, const char* what) {
    HS_TRY(var(v, what));
    if (v > max) return bad(what, fmt::format("{} exceeds the bound {}", v, max));
    return ok_status();
  }
  Status str(std::string& s, const char* what) {
    std::uint64_t n = 0;
    HS_TRY(bounded(n, kMaxStatsString, what));
    if (n > left()) return truncated(what);
    s.assign(reinterpret_cast<const char*>(p_), static_cast<std::size_t>(n));
    p_ += n;
    return ok_status();
  }
  Status counts(Counts& c, const char* what) {
    HS_TRY(var(c.executed, what));
    HS_TRY(var(c.ok, what));
    HS_TRY(var(c.failed, what));
    std::uint64_t n = 0;
    HS_TRY(bounded(n, c.reasons.size(), what));
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < c.reasons.size(); ++i) {
      c.reasons[i] = 0;
      if (i < n) HS_TRY(var(c.reasons[i], what));
      if (sum + c.reasons[i] < sum) return bad(what, "failure reasons overflow");
      sum += c.reasons[i];
    }
    if (c.ok + c.failed < c.ok || c.ok + c.failed != c.executed) return bad(what, "ok + failed != executed");
    if (sum != c.failed) return bad(what, "failure reasons do not add up to failed");
    return ok_status();
  }
  Status hist(Histogram& h, const char* what) {
    std::uint64_t sum = 0, mn = 0, mx = 0, nz = 0;
    HS_TRY(var(sum, what));
    HS_TRY(var(mn, what));
    HS_TRY(var(mx, what));
    HS_TRY(bounded(nz, Histogram::kBuckets, what));
    if (nz * 2 > left()) return truncated(what);  // each bucket takes at least two bytes
    std::vector<std::pair<std::uint32_t, std::uint64_t>> b;
    b.reserve(static_cast<std::size_t>(nz));
    std::uint64_t idx = 0;
    for (std::uint64_t k = 0; k < nz; ++k) {
      std::uint64_t d = 0, n = 0;
      HS_TRY(bounded(d, Histogram::kBuckets, what));
      HS_TRY(var(n, what));
      if (k > 0 && d == 0) return bad(what, "bucket indices not ascending");
      idx += d;
      if (idx >= Histogram::kBuckets) return bad(what, "bucket index out of range");
      b.emplace_back(static_cast<std::uint32_t>(idx), n);
    }
    if (!h.restore(b, sum, mn, mx)) return bad(what, "inconsistent histogram (counts, min, max or sum)");
    return ok_status();
  }

  Status truncated(const char* what) const {
    return make_error(Errc::invalid_argument, fmt::format("stats: truncated input reading {}", what));
  }
  Status bad(const char* what, const std::string& why) const {
    return make_error(Errc::invalid_argument, fmt::format("stats: bad {}: {}", what, why));
  }

 private:
  const std::uint8_t* p_;
  const std::uint8_t* end_;
};

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
  Reader r(data + 5, size - 5);
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
