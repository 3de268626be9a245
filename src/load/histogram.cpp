#include "hyperscale/load/histogram.hpp"

#include <algorithm>
#include <cmath>

namespace hs::load {

void Histogram::merge(const Histogram& o) noexcept {
  for (std::size_t i = 0; i < kBuckets; ++i) counts_[i] += o.counts_[i];
  count_ += o.count_;
  sum_ += o.sum_;
  min_ = std::min(min_, o.min_);
  max_ = std::max(max_, o.max_);
}

void Histogram::reset() noexcept {
  std::fill(counts_.begin(), counts_.end(), 0);
  count_ = sum_ = max_ = 0;
  min_ = ~std::uint64_t{0};
}

bool Histogram::restore(const std::vector<std::pair<std::uint32_t, std::uint64_t>>& buckets, std::uint64_t sum,
                        std::uint64_t min, std::uint64_t max) {
  std::uint64_t total = 0;
  for (std::size_t k = 0; k < buckets.size(); ++k) {
    const auto [i, n] = buckets[k];
    if (i >= kBuckets || n == 0 || (k > 0 && i <= buckets[k - 1].first)) return false;
    if (total + n < total) return false;
    total += n;
  }
  if (total == 0) {
    if (sum != 0 || min != 0 || max != 0) return false;
    reset();
    return true;
  }
  if (min > max || max > kMaxValue || index_of(min) != buckets.front().first || index_of(max) != buckets.back().first)
    return false;
  if (sum < max) return false;
  std::fill(counts_.begin(), counts_.end(), 0);
  for (const auto& [i, n] : buckets) counts_[i] = n;
  count_ = total;
  sum_ = sum;
  min_ = min;
  max_ = max;
  return true;
}

std::uint64_t Histogram::upper_of(std::size_t i) noexcept {
  if (i < 2 * kSub) return i;
  const std::uint64_t j = i - 2 * kSub;
  const std::uint64_t shift = j / kSub + 1;
  const std::uint64_t sub = j % kSub + kSub;
  return ((sub + 1) << shift) - 1;
}

std::uint64_t Histogram::quantile(double q) const noexcept {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  std::uint64_t rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_)));
  if (rank == 0) rank = 1;
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::clamp(upper_of(i), min(), max_);
  }
  return max_;
}

}  // namespace hs::load
