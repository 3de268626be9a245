// Private to src/load: the byte-level pieces shared by the statistics encodings (stats_codec.cpp,
// window.cpp): LEB128 varints, bounded length-prefixed strings, Counts (ok + failed = executed, reasons
// add up to failed) and sparse histograms ((index delta, count) pairs over the non-empty buckets, plus
// sum/min/max, rebuilt through Histogram::restore). Every read is checked against its bound and the
// bytes left; errors name the encoding (`what_codec`, e.g. "stats" or "window") and the field.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "hyperscale/base/status.hpp"
#include "hyperscale/load/histogram.hpp"
#include "hyperscale/load/stats.hpp"

namespace hs::load::codec {

// Strings (workflow, step and note text) are at most this long in every statistics encoding.
inline constexpr std::size_t kMaxString = 64 * 1024;

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
    const std::size_t n = std::min(s.size(), kMaxString);
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
  Reader(const std::uint8_t* p, std::size_t n, const char* what_codec) : p_(p), end_(p + n), codec_(what_codec) {}
  std::size_t left() const { return static_cast<std::size_t>(end_ - p_); }
  const std::uint8_t* here() const { return p_; }
  void skip(std::size_t n) { p_ += std::min(n, left()); }

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
    HS_TRY(bounded(n, kMaxString, what));
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
    return make_error(Errc::invalid_argument, fmt::format("{}: truncated input reading {}", codec_, what));
  }
  Status bad(const char* what, const std::string& why) const {
    return make_error(Errc::invalid_argument, fmt::format("{}: bad {}: {}", codec_, what, why));
  }

 private:
  const std::uint8_t* p_;
  const std::uint8_t* end_;
  const char* codec_;
};

}  // namespace hs::load::codec
