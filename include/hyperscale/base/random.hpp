// Seeded, reproducible pseudo-random numbers (xoshiro256** seeded through splitmix64).
//
// Every source of randomness in hyperscale is an Rng with an explicit seed, so a simulator
// run or a jittered backoff schedule can be replayed from its seed. Not for cryptography:
// keys and nonces come from OpenSSL's RAND_bytes.
#pragma once

#include <cstdint>
#include <utility>

namespace hs {

class Rng {
 public:
  explicit Rng(std::uint64_t seed) noexcept { reseed(seed); }

  void reseed(std::uint64_t seed) noexcept;
  std::uint64_t seed() const noexcept { return seed_; }

  std::uint64_t next_u64() noexcept;
  std::uint32_t next_u32() noexcept { return static_cast<std::uint32_t>(next_u64() >> 32); }
  // Uniform in [0, bound); bound == 0 returns 0. Unbiased (rejection sampling).
  std::uint64_t below(std::uint64_t bound) noexcept;
  // Uniform in [lo, hi] inclusive.
  std::int64_t range(std::int64_t lo, std::int64_t hi) noexcept;
  // Uniform in [0, 1).
  double next_double() noexcept;
  bool chance(double p) noexcept { return next_double() < p; }

  // Fisher–Yates shuffle of a random-access range.
  template <typename It>
  void shuffle(It first, It last) noexcept {
    auto n = last - first;
    for (auto i = n - 1; i > 0; --i) {
      auto j = static_cast<decltype(i)>(below(static_cast<std::uint64_t>(i) + 1));
      using std::swap;
      swap(first[i], first[j]);
    }
  }

  // A new independent generator derived from this one (for per-node streams in the simulator).
  Rng fork() noexcept { return Rng(next_u64()); }

 private:
  std::uint64_t seed_ = 0;
  std::uint64_t s_[4] = {};
};

}  // namespace hs
