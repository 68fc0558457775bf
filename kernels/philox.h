// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11):
// a counter-based generator. Element i of a draw is a pure function of (seed, offset, i),
// so the CPU loops and the CUDA kernels produce bit-identical random tensors and dropout
// masks whatever their parallel decomposition.
//
// Mapping (shared by every backend): element i of a draw made at generator offset `off`
// uses counter = {lo32(i), hi32(i), lo32(off), hi32(off)} and key = {lo32(seed),
// hi32(seed)}. Lane 0 of the output gives a uniform; lanes 0 and 1 give a normal.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/hd.h"

namespace hpa::kernels {

struct PhiloxOut {
  uint32_t v[4];
};

HPA_HD inline uint32_t philox_mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  const uint64_t product = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(product >> 32);
  return static_cast<uint32_t>(product);
}

HPA_HD inline PhiloxOut philox4x32_10(uint64_t element, uint64_t offset, uint64_t seed) {
  uint32_t c0 = static_cast<uint32_t>(element), c1 = static_cast<uint32_t>(element >> 32);
  uint32_t c2 = static_cast<uint32_t>(offset), c3 = static_cast<uint32_t>(offset >> 32);
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    const uint32_t lo0 = philox_mulhilo(kMul0, c0, &hi0);
    const uint32_t lo1 = philox_mulhilo(kMul1, c2, &hi1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0;
    c1 = n1;
    c2 = n2;
    c3 = n3;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return PhiloxOut{{c0, c1, c2, c3}};
}

// Uniform in [0, 1) with 24 random bits: exactly representable in float and double, so
// both dtypes see the same values.
HPA_HD inline float philox_uniform(uint32_t bits) {
  return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f);
}

// Uniform in (0, 1]: safe to take the logarithm of.
HPA_HD inline float philox_uniform_open0(uint32_t bits) {
  return (static_cast<float>(bits >> 8) + 1.0f) * (1.0f / 16777216.0f);
}

// Standard normal by Box-Muller from lanes 0 and 1, computed in double so that float and
// double tensors drawn from the same stream agree to float rounding.
HPA_HD inline double philox_normal(const PhiloxOut& r) {
  const double u1 = static_cast<double>(philox_uniform_open0(r.v[0]));
  const double u2 = static_cast<double>(philox_uniform(r.v[1]));
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  return sqrt(-2.0 * log(u1)) * cos(kTwoPi * u2);
}

}  // namespace hpa::kernels
