// Latency histogram: HDR-style log-linear buckets over nanoseconds.
//
// Values below 2*kSub are stored exactly; above that, every power-of-two range is split into kSub
// linear sub-buckets, so a reported percentile is within 1/kSub (< 0.8 %) of the true sample.
// Counts are plain integers per bucket, so merge(a, b) is element-wise addition and equals recording
// every value into one histogram (exact merge across shards, workers, managers and gates).
#pragma once

#include <array>
#include <cstdint>
#include <utility>
#include <vector>

namespace hs::load {

class Histogram {
 public:
  static constexpr int kSubBits = 7;
  static constexpr std::uint64_t kSub = 1u << kSubBits;  // 128 linear sub-buckets per octave
  static constexpr int kMaxBits = 42;                    // values clamp at 2^42 ns (~73 min)
  static constexpr std::uint64_t kMaxValue = (std::uint64_t{1} << kMaxBits) - 1;
  static constexpr std::size_t kBuckets = 2 * kSub + (kMaxBits - kSubBits - 1) * kSub;

  Histogram() : counts_(kBuckets, 0) {}

  void record(std::uint64_t v) noexcept {
    if (v > kMaxValue) v = kMaxValue;
    counts_[index_of(v)]++;
    count_++;
    sum_ += v;
    if (v < min_) min_ = v;
    if (v > max_) max_ = v;
  }
  void merge(const Histogram& o) noexcept;
  void reset() noexcept;
  // Rebuilds a histogram from its parts (stats decoding): non-empty buckets as (index, count) in
  // ascending index order, plus sum/min/max. Returns false and leaves the histogram unchanged when the
  // parts are inconsistent (an index out of range or out of order, a zero count, min/max outside the
  // first/last bucket, a count overflow).
  bool restore(const std::vector<std::pair<std::uint32_t, std::uint64_t>>& buckets, std::uint64_t sum,
               std::uint64_t min, std::uint64_t max);

  std::uint64_t count() const noexcept { return count_; }
  std::uint64_t min() const noexcept { return count_ ? min_ : 0; }
  std::uint64_t max() const noexcept { return max_; }
  double mean() const noexcept { return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0.0; }
  // Value at quantile q in [0, 1] (q = 0.99 for p99): the smallest recorded-bucket value such that at
  // least ceil(q * count) samples are <= it, reported as the bucket's upper edge clamped to [min, max].
  std::uint64_t quantile(double q) const noexcept;

  bool operator==(const Histogram& o) const noexcept {
    return count_ == o.count_ && sum_ == o.sum_ && min() == o.min() && max_ == o.max_ && counts_ == o.counts_;
  }

  static std::size_t index_of(std::uint64_t v) noexcept {
    if (v < 2 * kSub) return static_cast<std::size_t>(v);
    const int msb = 63 - __builtin_clzll(v);
    const int shift = msb - kSubBits;  // >= 1
    return static_cast<std::size_t>(2 * kSub + static_cast<std::uint64_t>(shift - 1) * kSub + ((v >> shift) - kSub));
  }
  // Highest value that maps to bucket i.
  static std::uint64_t upper_of(std::size_t i) noexcept;

  const std::vector<std::uint64_t>& counts() const noexcept { return counts_; }
  std::uint64_t sum() const noexcept { return sum_; }

 private:
  std::vector<std::uint64_t> counts_;
  std::uint64_t count_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t min_ = ~std::uint64_t{0};
  std::uint64_t max_ = 0;
};

}  // namespace hs::load
