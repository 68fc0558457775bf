// The data library's random numbers: a counter-based splitmix64 stream. A generator is a
// (key, counter) pair, so per-sample streams are derived from (seed, epoch, sample) with
// mix_seed and give the same numbers whatever thread draws them. No std:: distributions:
// their output differs between standard libraries, and data/ must be reproducible anywhere.
#pragma once

#include <cmath>
#include <cstdint>

namespace hpa::data {

// The splitmix64 finalizer: a bijective 64-bit mix with full avalanche.
constexpr uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Combines a seed with further keys (epoch, sample index, purpose tag) into a new seed.
constexpr uint64_t mix_seed(uint64_t seed, uint64_t key) {
  return splitmix64_mix(seed ^ splitmix64_mix(key + 0x9e3779b97f4a7c15ULL));
}
constexpr uint64_t mix_seed(uint64_t seed, uint64_t key1, uint64_t key2) {
  return mix_seed(mix_seed(seed, key1), key2);
}

class Rng {
 public:
  explicit Rng(uint64_t seed, uint64_t stream = 0) : key_(mix_seed(seed, stream)) {}

  uint64_t next_u64() { return splitmix64_mix(key_ + 0x9e3779b97f4a7c15ULL * ++counter_); }
  uint32_t next_u32() { return static_cast<uint32_t>(next_u64() >> 32); }

  // Uniform integer in [0, n) by Lemire's multiply-shift (bias < n / 2^64, negligible); n > 0.
  uint64_t below(uint64_t n) {
    __extension__ typedef unsigned __int128 uint128;  // GCC/Clang builtin; -Wpedantic-safe
    return static_cast<uint64_t>((static_cast<uint128>(next_u64()) * n) >> 64);
  }
  // Uniform integer in [lo, hi] inclusive.
  int64_t range(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(below(static_cast<uint64_t>(hi - lo) + 1));
  }
  // Uniform double in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  bool bernoulli(double p) { return uniform() < p; }
  // Standard normal by Box-Muller (one value per call; simplicity over speed).
  double normal() {
    const double u1 = 1.0 - uniform();  // (0, 1]: log stays finite
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  double normal(double mean, double stddev) { return mean + stddev * normal(); }

 private:
  uint64_t key_;
  uint64_t counter_ = 0;
};

}  // namespace hpa::data
