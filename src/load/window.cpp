#include "hyperscale/load/window.hpp"

#include "codec_io.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "hyperscale/base/assert.hpp"

namespace hs::load {
namespace {
// One part's step of one window added to a merged step (the totals' WindowStep or a ring slot's).
template <class Step>
void add_step(Step& into, const WindowStep& w) {
  into.total.merge(w.total);
  into.measured.merge(w.measured);
  into.latency.merge(w.latency);
}

using codec::Reader;
using codec::Writer;

constexpr char kWindowMagic[4] = {'H', 'S', 'W', 'N'};
constexpr char kBatchMagic[4] = {'H', 'S', 'W', 'B'};

Status bad_window(const std::string& why) { return make_error(Errc::invalid_argument, "window: " + why); }

Status check_counts(const Counts& c, const std::string& step, const char* which) {
  std::uint64_t sum = 0;
  for (auto r : c.reasons) {
    if (sum + r < sum) return bad_window(fmt::format("step '{}' {} counts: failure reasons overflow", step, which));
    sum += r;
  }
  if (c.ok + c.failed < c.ok || c.ok + c.failed != c.executed)
    return bad_window(fmt::format("step '{}' {} counts: ok + failed != executed", step, which));
  if (sum != c.failed)
    return bad_window(fmt::format("step '{}' {} counts: failure reasons do not add up to failed", step, which));
  return ok_status();
}

// a + b without wrapping, or false.
bool add_fits(std::uint64_t a, std::uint64_t b) { return a + b >= a; }

}  // namespace

// ---------------------------------------------------------------- WindowCutter

namespace {
// now - before, field by field, or false when a field went back.
bool counts_growth(const Counts& now, const Counts& before, Counts& out) {
  if (now.executed < before.executed || now.ok < before.ok || now.failed < before.failed) return false;
  out.executed = now.executed - before.executed;
  out.ok = now.ok - before.ok;
  out.failed = now.failed - before.failed;
  for (std::size_t i = 0; i < out.reasons.size(); ++i) {
    if (now.reasons[i] < before.reasons[i]) return false;
    out.reasons[i] = now.reasons[i] - before.reasons[i];
  }
  return true;
}
}  // namespace

WindowCutter::WindowCutter(std::string workflow, std::vector<std::string> steps, std::uint32_t part,
                           std::uint64_t token, Duration length, Duration offset)
    : workflow_(std::move(workflow)), steps_(std::move(steps)), part_(part), token_(token), length_(length) {
  HS_ASSERT(length_ > Duration{0}, "window cutter: window length {} ns", length_.count());
  HS_ASSERT(steps_.size() <= kMaxWindowSteps, "window cutter: {} steps", steps_.size());
  cur_ = index_of(offset);
  acc_.total.resize(steps_.size());
  acc_.measured.resize(steps_.size());
  acc_.latency.resize(steps_.size());
  prev_total_.resize(steps_.size());
  prev_measured_.resize(steps_.size());
}

std::uint64_t WindowCutter::index_of(Duration since_origin) const {
  if (since_origin <= Duration{0}) return 0;
  return static_cast<std::uint64_t>(since_origin.count() / length_.count());
}

Window WindowCutter::take(std::uint64_t index) {
  Window w;
  w.workflow = workflow_;
  w.part = part_;
  w.token = token_;
  w.index = index;
  for (std::size_t i = 0; i < steps_.size(); ++i) {
    if (acc_.total[i].executed == 0 && acc_.measured[i].executed == 0 && acc_.latency[i].count() == 0) continue;
    WindowStep st;
    st.name = steps_[i];
    st.total = acc_.total[i];
    st.measured = acc_.measured[i];
    st.latency = acc_.latency[i];
    w.steps.push_back(std::move(st));
    acc_.total[i] = Counts{};
    acc_.measured[i] = Counts{};
    acc_.latency[i].reset();
  }
  w.iterations = acc_.iterations;
  w.saturation = acc_.saturation;
  acc_.iterations = WindowIterations{};
  const Status ok = check_window(w);  // attribute() only adds growth that adds up
  HS_ASSERT(ok.ok(), "window cutter: window {} of '{}' does not add up: {}", index, workflow_, ok.message());
  return w;
}

void WindowCutter::advance_to(std::uint64_t index, Saturation s, std::vector<Window>& out) {
  out.push_back(take(cur_));
  const std::uint64_t gap = index - cur_ - 1;  // empty windows between the current one and `index`
  acc_.saturation = s;
  if (gap > kMaxGapWindows) {
    skipped_ += gap - 1;
    out.push_back(take(index - 1));
  } else {
    for (std::uint64_t k = cur_ + 1; k < index; ++k) out.push_back(take(k));
  }
  cur_ = index;
}

bool WindowCutter::attribute(const WorkflowLive& l) {
  const std::size_t n = steps_.size();
  auto refuse = [&](std::string why) {
    ++refused_;
    last_refusal_ = std::move(why);
    // The new base: the next growth is measured from this sample (what this one added is lost).
    if (l.steps.size() == n && l.measured.size() == n) {
      prev_total_ = l.steps;
      prev_measured_ = l.measured;
    }
    prev_iter_ = WindowIterations{l.started, l.completed, l.iterations_failed, l.dropped};
    return false;
  };
  if (l.steps.size() != n || l.measured.size() != n || l.window.size() != n)
    return refuse(fmt::format("sample of {}/{}/{} steps (totals/measured/windows), the workflow has {}", l.steps.size(),
                              l.measured.size(), l.window.size(), n));
  if (l.started < prev_iter_.started || l.completed < prev_iter_.completed || l.iterations_failed < prev_iter_.failed ||
      l.dropped < prev_iter_.dropped)
    return refuse("an iteration counter went back");
  std::vector<Counts> total(n), measured(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (!counts_growth(l.steps[i], prev_total_[i], total[i]) ||
        !counts_growth(l.measured[i], prev_measured_[i], measured[i]))
      return refuse(fmt::format("step '{}': a cumulative count went back", steps_[i]));
    // The growth as a one-step window must add up (counts, measured within total, one latency per
    // measured request); so does the sum of such growths in a window.
    Window one;
    one.steps.push_back(WindowStep{steps_[i], total[i], measured[i], l.window[i]});
    const Status st = check_window(one);
    if (!st.ok()) return refuse(st.message());
  }
  for (std::size_t i = 0; i < n; ++i) {
    acc_.total[i].merge(total[i]);
    acc_.measured[i].merge(measured[i]);
    acc_.latency[i].merge(l.window[i]);
  }
  acc_.iterations.merge(WindowIterations{l.started - prev_iter_.started, l.completed - prev_iter_.completed,
                                         l.iterations_failed - prev_iter_.failed, l.dropped - prev_iter_.dropped});
  prev_total_ = l.steps;
  prev_measured_ = l.measured;
  prev_iter_ = WindowIterations{l.started, l.completed, l.iterations_failed, l.dropped};
  return true;
}

std::vector<Window> WindowCutter::feed(const WorkflowLive& live, Duration since_origin, Saturation s) {
  std::vector<Window> out;
  if (finished_) return out;
  s.cpu_percent = std::min(s.cpu_percent, kMaxWindowCpuPercent);
  const std::uint64_t index = index_of(since_origin);
  if (index > cur_) advance_to(index, s, out);  // a lower index (the clock went back): the current window
  attribute(live);
  acc_.saturation = s;
  return out;
}

std::vector<Window> WindowCutter::finish(const WorkflowLive& final_live, Duration since_origin, Saturation s) {
  std::vector<Window> out = feed(final_live, since_origin, s);
  if (finished_) return out;
  out.push_back(take(cur_));
  finished_ = true;
  return out;
}

const char* window_add_name(WindowAdd a) {
  switch (a) {
    case WindowAdd::merged:
      return "merged";
    case WindowAdd::duplicate:
      return "duplicate";
    case WindowAdd::late:
      return "late";
    case WindowAdd::stale_token:
      return "stale_token";
    case WindowAdd::expired:
      return "expired";
  }
  return "?";
}

Status check_window(const Window& w) {
  if (w.workflow.size() > codec::kMaxString)
    return bad_window(
        fmt::format("workflow name of {} bytes exceeds the bound {}", w.workflow.size(), codec::kMaxString));
  if (w.steps.size() > kMaxWindowSteps)
    return bad_window(fmt::format("{} steps exceed the bound {}", w.steps.size(), kMaxWindowSteps));
  if (w.saturation.cpu_percent > kMaxWindowCpuPercent)
    return bad_window(
        fmt::format("cpu_percent {} exceeds the bound {}", w.saturation.cpu_percent, kMaxWindowCpuPercent));
  for (const auto& s : w.steps) {
    if (s.name.size() > codec::kMaxString)
      return bad_window(fmt::format("step name of {} bytes exceeds the bound {}", s.name.size(), codec::kMaxString));
    HS_TRY(check_counts(s.total, s.name, "total"));
    HS_TRY(check_counts(s.measured, s.name, "measured"));
    bool within =
        s.measured.executed <= s.total.executed && s.measured.ok <= s.total.ok && s.measured.failed <= s.total.failed;
    for (std::size_t i = 0; i < s.total.reasons.size(); ++i)
      within = within && s.measured.reasons[i] <= s.total.reasons[i];
    if (!within) return bad_window(fmt::format("step '{}': measured counts exceed total counts", s.name));
    if (s.latency.count() != s.measured.executed)
      return bad_window(fmt::format("step '{}': {} latency samples but {} measured requests", s.name, s.latency.count(),
                                    s.measured.executed));
  }
  return ok_status();
}

std::vector<std::uint8_t> encode_window(const Window& w) {
  const Status ok = check_window(w);
  HS_ASSERT(ok.ok(), "encoding a window that does not add up: {}", ok.message());
  std::vector<std::uint8_t> out;
  out.reserve(64 + 32 * w.steps.size());
  Writer wr(out);
  for (char c : kWindowMagic) wr.u8(static_cast<std::uint8_t>(c));  // (insert trips a g++ 12 -O3 false warning)
  wr.u8(kWindowCodecVersion);
  wr.str(w.workflow);
  wr.var(w.part);
  wr.var(w.token);
  wr.var(w.index);
  wr.var(w.steps.size());
  for (const auto& s : w.steps) {
    wr.str(s.name);
    wr.counts(s.total);
    wr.counts(s.measured);
    wr.hist(s.latency);
  }
  wr.var(w.iterations.started);
  wr.var(w.iterations.completed);
  wr.var(w.iterations.failed);
  wr.var(w.iterations.dropped);
  wr.var(w.saturation.cpu_percent);
  wr.var(w.saturation.rss_bytes);
  HS_ASSERT(out.size() <= kMaxWindowBytes, "an encoded window of {} bytes exceeds the bound {}", out.size(),
            kMaxWindowBytes);
  return out;
}

Result<Window> decode_window(const std::uint8_t* data, std::size_t size) {
  if (size > kMaxWindowBytes) return bad_window(fmt::format("{} bytes exceed the bound {}", size, kMaxWindowBytes));
  if (size < 5 || data == nullptr || std::memcmp(data, kWindowMagic, 4) != 0)
    return bad_window("not an encoded window (bad magic)");
  if (data[4] != kWindowCodecVersion)
    return bad_window(fmt::format("unsupported version {} (this build reads {})", data[4], kWindowCodecVersion));
  Reader r(data + 5, size - 5, "window");
  Window w;
  HS_TRY(r.str(w.workflow, "workflow name"));
  std::uint64_t part = 0, nsteps = 0;
  HS_TRY(r.bounded(part, std::numeric_limits<std::uint32_t>::max(), "part"));
  w.part = static_cast<std::uint32_t>(part);
  HS_TRY(r.var(w.token, "token"));
  HS_TRY(r.var(w.index, "window index"));
  HS_TRY(r.bounded(nsteps, kMaxWindowSteps, "step count"));
  if (nsteps > r.left()) return r.truncated("steps");  // a step takes at least one byte
  w.steps.resize(static_cast<std::size_t>(nsteps));
  for (auto& s : w.steps) {
    HS_TRY(r.str(s.name, "step name"));
    HS_TRY(r.counts(s.total, "step total counts"));
    HS_TRY(r.counts(s.measured, "step measured counts"));
    HS_TRY(r.hist(s.latency, "step latency histogram"));
  }
  HS_TRY(r.var(w.iterations.started, "iterations started"));
  HS_TRY(r.var(w.iterations.completed, "iterations completed"));
  HS_TRY(r.var(w.iterations.failed, "iterations failed"));
  HS_TRY(r.var(w.iterations.dropped, "iterations dropped"));
  HS_TRY(r.bounded(w.saturation.cpu_percent, kMaxWindowCpuPercent, "cpu_percent"));
  HS_TRY(r.var(w.saturation.rss_bytes, "rss_bytes"));
  if (r.left() != 0) return r.bad("input", fmt::format("{} trailing bytes", r.left()));
  HS_TRY(check_window(w));
  return w;
}

std::vector<std::uint8_t> encode_windows(std::span<const Window> ws) {
  HS_ASSERT(ws.size() <= kMaxWindowBatch, "a batch of {} windows exceeds the bound {}", ws.size(), kMaxWindowBatch);
  std::vector<std::uint8_t> out;
  Writer wr(out);
  for (char c : kBatchMagic) wr.u8(static_cast<std::uint8_t>(c));
  wr.u8(kWindowCodecVersion);
  wr.var(ws.size());
  for (const auto& w : ws) {
    const auto one = encode_window(w);
    wr.var(one.size());
    out.insert(out.end(), one.begin(), one.end());
  }
  HS_ASSERT(out.size() <= kMaxWindowBatchBytes, "an encoded batch of {} bytes exceeds the bound {}", out.size(),
            kMaxWindowBatchBytes);
  return out;
}

Result<std::vector<Window>> decode_windows(const std::uint8_t* data, std::size_t size) {
  auto bad_batch = [](const std::string& why) { return make_error(Errc::invalid_argument, "window batch: " + why); };
  if (size > kMaxWindowBatchBytes)
    return bad_batch(fmt::format("{} bytes exceed the bound {}", size, kMaxWindowBatchBytes));
  if (size < 5 || data == nullptr || std::memcmp(data, kBatchMagic, 4) != 0)
    return bad_batch("not an encoded window batch (bad magic)");
  if (data[4] != kWindowCodecVersion)
    return bad_batch(fmt::format("unsupported version {} (this build reads {})", data[4], kWindowCodecVersion));
  Reader r(data + 5, size - 5, "window batch");
  std::uint64_t n = 0;
  HS_TRY(r.bounded(n, kMaxWindowBatch, "window count"));
  if (n * 6 > r.left()) return r.truncated("windows");  // a window takes at least 6 bytes (length + header)
  std::vector<Window> out;
  out.reserve(static_cast<std::size_t>(n));
  for (std::uint64_t k = 0; k < n; ++k) {
    std::uint64_t len = 0;
    HS_TRY(r.bounded(len, kMaxWindowBytes, "window length"));
    if (len > r.left()) return r.truncated("window");
    auto w = decode_window(r.here(), static_cast<std::size_t>(len));
    if (!w.ok()) return bad_batch(fmt::format("window {} of {}: {}", k, n, w.status().message()));
    out.push_back(std::move(*w));
    r.skip(static_cast<std::size_t>(len));
  }
  if (r.left() != 0) return r.bad("input", fmt::format("{} trailing bytes", r.left()));
  return out;
}

// --- merger ---------------------------------------------------------------------------------------

void WindowMerger::SparseHist::merge(const Histogram& h) {
  if (h.count() == 0) return;
  const auto& cs = h.counts();
  std::vector<std::pair<std::uint32_t, std::uint64_t>> out;
  out.reserve(buckets.size() + 16);
  std::size_t k = 0;
  for (std::size_t i = 0; i < cs.size(); ++i) {
    while (k < buckets.size() && buckets[k].first < i) out.push_back(buckets[k++]);
    const bool here = k < buckets.size() && buckets[k].first == i;
    const std::uint64_t n = cs[i] + (here ? buckets[k].second : 0);
    if (here) ++k;
    if (n != 0) out.emplace_back(static_cast<std::uint32_t>(i), n);
  }
  while (k < buckets.size()) out.push_back(buckets[k++]);
  const bool was_empty = buckets.empty();
  buckets = std::move(out);
  sum += h.sum();
  min = was_empty ? h.min() : std::min(min, h.min());
  max = was_empty ? h.max() : std::max(max, h.max());
}

Histogram WindowMerger::SparseHist::dense() const {
  Histogram h;
  if (buckets.empty()) return h;
  const bool ok = h.restore(buckets, sum, min, max);
  HS_ASSERT(ok, "a merged window histogram does not restore ({} buckets, sum {}, min {}, max {})", buckets.size(), sum,
            min, max);
  return h;
}

WindowMerger::WindowMerger(std::string workflow, std::vector<std::string> steps, WindowMergerConfig cfg)
    : workflow_(std::move(workflow)), cfg_(cfg) {
  HS_ASSERT(cfg_.lateness >= 1, "window lateness must be at least 1 window");
  HS_ASSERT(cfg_.max_windows > cfg_.lateness + cfg_.max_ahead,
            "max_windows {} must exceed lateness {} + max_ahead {} (open windows are never evicted)", cfg_.max_windows,
            cfg_.lateness, cfg_.max_ahead);
  HS_ASSERT(cfg_.max_parts >= 1 && cfg_.max_tokens_per_part >= 1, "max_parts and max_tokens_per_part must be >= 1");
  HS_ASSERT(steps.size() <= kMaxWindowSteps, "{} steps exceed the bound {}", steps.size(), kMaxWindowSteps);
  totals_.steps.resize(steps.size());
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const bool fresh = step_index_.emplace(steps[i], i).second;
    HS_ASSERT(fresh, "workflow '{}' names step '{}' twice", workflow_, steps[i]);
    totals_.steps[i].name = std::move(steps[i]);
  }
  ring_.resize(cfg_.max_windows);
}

Status WindowMerger::refuse(Status s) {
  counters_.refused++;
  return s;
}

void WindowMerger::retain_through(std::uint64_t newest) {
  if (newest <= newest_) return;
  // Slots of indices (newest_, newest] hold windows at least max_windows older than them: out of the ring.
  const std::uint64_t moved = std::min<std::uint64_t>(newest - newest_, cfg_.max_windows);
  for (std::uint64_t k = 1; k <= moved; ++k) {
    Slot& s = ring_[static_cast<std::size_t>((newest_ + k) % cfg_.max_windows)];
    if (s.used && s.index != newest_ + k) {
      counters_.evicted++;
      s = Slot{};
    }
  }
  newest_ = newest;
}

void WindowMerger::advance(std::uint64_t now_index) {
  if (now_index <= now_) return;
  now_ = now_index;
  retain_through(now_);
}

std::optional<std::uint64_t> WindowMerger::closed_through() const {
  if (now_ < cfg_.lateness) return std::nullopt;
  return now_ - cfg_.lateness;
}

std::size_t WindowMerger::retained() const {
  return static_cast<std::size_t>(std::count_if(ring_.begin(), ring_.end(), [](const Slot& s) { return s.used; }));
}

Result<WindowAdd> WindowMerger::add(const Window& w) {
  // 1. Bad input: refused with an error, nothing changes but the refused counter.
  if (w.workflow != workflow_)
    return refuse(
        bad_window(fmt::format("a window of workflow '{}' sent to the merger of '{}'", w.workflow, workflow_)));
  if (w.part >= cfg_.max_parts)
    return refuse(bad_window(fmt::format("part {} out of range (max_parts {})", w.part, cfg_.max_parts)));
  if (Status s = check_window(w); !s.ok()) return refuse(std::move(s));
  std::vector<std::size_t> where(w.steps.size());
  std::vector<bool> named(totals_.steps.size(), false);
  for (std::size_t i = 0; i < w.steps.size(); ++i) {
    const auto it = step_index_.find(w.steps[i].name);
    if (it == step_index_.end())
      return refuse(bad_window(fmt::format("part {} names step '{}', which workflow '{}' does not have", w.part,
                                           w.steps[i].name, workflow_)));
    if (named[it->second])
      return refuse(bad_window(fmt::format("part {} names step '{}' twice", w.part, w.steps[i].name)));
    named[it->second] = true;
    where[i] = it->second;
  }
  for (std::size_t i = 0; i < w.steps.size(); ++i) {
    const WindowStep& a = w.steps[i];
    const WindowStep& t = totals_.steps[where[i]];
    if (!add_fits(t.total.executed, a.total.executed) || !add_fits(t.measured.executed, a.measured.executed) ||
        !add_fits(t.latency.sum(), a.latency.sum()))
      return refuse(bad_window(fmt::format("step '{}' of part {}: the totals would overflow 64 bits", a.name, w.part)));
  }
  {
    const auto& it = totals_.iterations;
    if (!add_fits(it.started, w.iterations.started) || !add_fits(it.completed, w.iterations.completed) ||
        !add_fits(it.failed, w.iterations.failed) || !add_fits(it.dropped, w.iterations.dropped))
      return refuse(bad_window(fmt::format("iterations of part {}: the totals would overflow 64 bits", w.part)));
  }
  if (w.index > now_ && w.index - now_ > cfg_.max_ahead)
    return refuse(bad_window(fmt::format("part {} sent window {}, more than {} windows past now ({})", w.part, w.index,
                                         cfg_.max_ahead, now_)));

  // 2. Fencing: a superseded attempt of the part.
  if (w.part < highest_token_.size() && w.token < highest_token_[w.part]) {
    counters_.stale++;
    return WindowAdd::stale_token;
  }
  // 3. Older than the ring: its key may have been forgotten, so it cannot be told from a duplicate.
  if (!in_ring(w.index)) {
    counters_.expired++;
    return WindowAdd::expired;
  }
  // 4. Duplicate (part, token, index).
  Slot& slot = ring_[static_cast<std::size_t>(w.index % cfg_.max_windows)];
  const bool holds = slot.used && slot.index == w.index;
  auto key_less = [](const PartSample& p, std::pair<std::uint32_t, std::uint64_t> k) {
    return std::make_pair(p.part, p.token) < k;
  };
  if (holds) {
    const auto it = std::lower_bound(slot.parts.begin(), slot.parts.end(), std::make_pair(w.part, w.token), key_less);
    if (it != slot.parts.end() && it->part == w.part && it->token == w.token) {
      counters_.duplicates++;
      return WindowAdd::duplicate;
    }
    const auto tokens =
        std::count_if(slot.parts.begin(), slot.parts.end(), [&](const PartSample& p) { return p.part == w.part; });
    if (static_cast<std::size_t>(tokens) >= cfg_.max_tokens_per_part)
      return refuse(bad_window(fmt::format("part {} has sent window {} under {} tokens already (bound {})", w.part,
                                           w.index, tokens, cfg_.max_tokens_per_part)));
  }

  // 5. Accepted: the totals always, the window unless it is closed.
  if (w.part >= highest_token_.size()) highest_token_.resize(static_cast<std::size_t>(w.part) + 1, 0);
  highest_token_[w.part] = std::max(highest_token_[w.part], w.token);
  for (std::size_t i = 0; i < w.steps.size(); ++i) add_step(totals_.steps[where[i]], w.steps[i]);
  totals_.iterations.merge(w.iterations);

  retain_through(w.index);
  if (!holds) {
    HS_ASSERT(!slot.used, "window {} of '{}': slot holds window {} inside the ring", w.index, workflow_, slot.index);
    slot = Slot{};
    slot.used = true;
    slot.index = w.index;
    slot.steps.resize(totals_.steps.size());
  }
  const bool late = closed(w.index);
  PartSample sample{w.part, w.token, late, w.iterations, w.saturation};
  slot.parts.insert(std::lower_bound(slot.parts.begin(), slot.parts.end(), std::make_pair(w.part, w.token), key_less),
                    sample);
  if (late) {
    counters_.late++;
    for (const auto& s : w.steps) counters_.late_executed += s.total.executed;
    return WindowAdd::late;
  }
  for (std::size_t i = 0; i < w.steps.size(); ++i) add_step(slot.steps[where[i]], w.steps[i]);
  slot.iterations.merge(w.iterations);
  counters_.merged++;
  return WindowAdd::merged;
}

std::optional<MergedWindow> WindowMerger::window(std::uint64_t index) const {
  if (!in_ring(index)) return std::nullopt;
  const Slot& slot = ring_[static_cast<std::size_t>(index % cfg_.max_windows)];
  if (!slot.used || slot.index != index) return std::nullopt;
  MergedWindow m;
  m.index = index;
  m.closed = closed(index);
  m.steps.resize(slot.steps.size());
  for (std::size_t i = 0; i < slot.steps.size(); ++i) {
    m.steps[i].name = totals_.steps[i].name;
    m.steps[i].total = slot.steps[i].total;
    m.steps[i].measured = slot.steps[i].measured;
    m.steps[i].latency = slot.steps[i].latency.dense();
  }
  m.iterations = slot.iterations;
  m.parts = slot.parts;
  return m;
}

Result<Judged> WindowMerger::judge(const Threshold& t, double seconds) const {
  const std::uint64_t dropped = totals_.iterations.dropped;
  const std::uint64_t scheduled = totals_.iterations.started + totals_.iterations.dropped;
  if (t.scope == "workflow " + workflow_)
    return judge_threshold(t, totals_.measured_counts(), totals_.merged_latency(), seconds, dropped, scheduled);
  const std::string prefix = "step " + workflow_ + ".";
  if (t.scope.size() > prefix.size() && t.scope.compare(0, prefix.size(), prefix) == 0) {
    const auto it = step_index_.find(t.scope.substr(prefix.size()));
    if (it != step_index_.end()) {
      const WindowStep& s = totals_.steps[it->second];
      return judge_threshold(t, s.measured, s.latency, seconds, dropped, scheduled);
    }
  }
  return make_error(Errc::invalid_argument,
                    fmt::format("window: threshold '{} {} {}' ({}) is not about workflow '{}' or one of its steps",
                                t.scope, t.key, t.condition, t.where, workflow_));
}

}  // namespace hs::load
