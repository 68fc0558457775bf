// Conversions between element types, including the 16-bit floats that weights may be
// stored in. bf16 is the top half of an f32 (round-to-nearest-even on the way down);
// f16 is IEEE binary16 with subnormals. cast_cpu / cast_cuda convert whole buffers
// between f32 and f64 (IEEE round-to-nearest, so both twins give the same bits).
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/hd.h"

namespace hpa::kernels {

HPA_HD inline float bits_to_float(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
HPA_HD inline uint32_t float_to_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

HPA_HD inline float bf16_to_float(uint16_t h) { return bits_to_float(static_cast<uint32_t>(h) << 16); }

HPA_HD inline uint16_t float_to_bf16(float f) {
  uint32_t u = float_to_bits(f);
  if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x007FFFFFu))
    return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN stays NaN
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

HPA_HD inline float f16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  if (exp == 0) {
    if (mant == 0) return bits_to_float(sign);
    // subnormal: value = mant * 2^-24
    float v = static_cast<float>(mant) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  if (exp == 31) return bits_to_float(sign | 0x7F800000u | (mant << 13));
  return bits_to_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

HPA_HD inline uint16_t float_to_f16(float f) {
  const uint32_t u = float_to_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t absu = u & 0x7FFFFFFFu;
  if (absu >= 0x7F800000u) return static_cast<uint16_t>(sign | 0x7C00u | (absu > 0x7F800000u ? 0x200u : 0u));
  if (absu >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // overflow to inf
  if (absu < 0x38800000u) {                                               // subnormal or zero in f16
    const float a = bits_to_float(absu);
    // round to nearest even multiple of 2^-24
    const float scaled = a * 16777216.0f;
    uint32_t m = static_cast<uint32_t>(scaled);
    const float frac = scaled - static_cast<float>(m);
    if (frac > 0.5f || (frac == 0.5f && (m & 1u))) ++m;
    return static_cast<uint16_t>(sign | m);
  }
  uint32_t v = absu - 0x38000000u;  // rebias exponent 127 -> 15
  v += 0xFFFu + ((v >> 13) & 1u);
  return static_cast<uint16_t>(sign | (v >> 13));
}

template <class Dst, class Src>
HPA_HD inline Dst cast_element(Src v) {
  return static_cast<Dst>(v);
}

// dst[i] = cast_element<Dst>(src[i]) (writes =); Src and Dst are float and double, either way.
template <class Src, class Dst>
void cast_cpu(const Src* src, Dst* dst, int64_t n);
// CUDA twin (kernels/cast.cu): device pointers, work queued on `stream`.
template <class Src, class Dst>
void cast_cuda(const Src* src, Dst* dst, int64_t n, Stream stream);

}  // namespace hpa::kernels
