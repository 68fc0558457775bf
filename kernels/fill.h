// Filling a tensor on creation: with one constant, or with a Philox draw (uniform [0, 1)
// or standard normal). Element i of a draw is a pure function of (seed, offset, i)
// (kernels/philox.h), and the per-element functions below are shared by the CPU loops
// and the CUDA kernels, so a draw does not depend on the device or on how the work is
// split. Uniform draws are bit-identical on CPU and CUDA in both dtypes. Normal draws are
// not guaranteed to be: Box-Muller's log and cos come from glibc on the CPU and from
// CUDA's libdevice (within 1-2 ulp) on the GPU, so an f64 normal can differ in its last
// bits, and an f32 normal (the double rounded once) differs only in the rare element whose
// double lands within those few ulp of a float rounding boundary.
//
// A constant travels as the bytes of one element (`pattern`, little-endian, in the low
// element_bytes bytes), so one kernel fills every dtype and the value conversion stays in
// tensor/ with the rest of the dtype code.
#pragma once

#include <cstdint>

#include "kernels/hd.h"
#include "kernels/philox.h"

namespace hpa::kernels {

// Which draw of the generator: element i uses philox4x32_10(i, offset, seed).
struct PhiloxDraw {
  uint64_t seed = 0;
  uint64_t offset = 0;
};

template <class T>
HPA_HD inline T uniform_element(uint64_t i, const PhiloxDraw& draw) {
  return static_cast<T>(philox_uniform(philox4x32_10(i, draw.offset, draw.seed).v[0]));
}

template <class T>
HPA_HD inline T normal_element(uint64_t i, const PhiloxDraw& draw) {
  return static_cast<T>(philox_normal(philox4x32_10(i, draw.offset, draw.seed)));
}

// out[i] = pattern's element for i in [0, n) (writes =); element_bytes is 1, 2, 4 or 8.
void fill_pattern_cpu(void* out, int64_t n, int element_bytes, uint64_t pattern);
// out[i] = uniform_element<T>(i, draw) / normal_element<T>(i, draw) (writes =).
template <class T>
void fill_uniform_cpu(T* out, int64_t n, const PhiloxDraw& draw);
template <class T>
void fill_normal_cpu(T* out, int64_t n, const PhiloxDraw& draw);

// CUDA twins (kernels/fill.cu): device pointers, work queued on `stream`.
void fill_pattern_cuda(void* out, int64_t n, int element_bytes, uint64_t pattern, Stream stream);
template <class T>
void fill_uniform_cuda(T* out, int64_t n, const PhiloxDraw& draw, Stream stream);
template <class T>
void fill_normal_cuda(T* out, int64_t n, const PhiloxDraw& draw, Stream stream);

}  // namespace hpa::kernels
