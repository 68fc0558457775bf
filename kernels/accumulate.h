// dst += src over n elements: how the autograd engine sums the gradients of a tensor
// that feeds several ops. The CPU loop is here; the CUDA twin is kernels/accumulate.cu.
#pragma once

#include <cstdint>

#include "kernels/hd.h"

namespace hpa::kernels {

template <class T>
HPA_HD inline void accumulate_element(T& dst, T src) {
  dst += src;
}

// dst += src (accumulates).
template <class T>
void accumulate_cpu(T* dst, const T* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) accumulate_element(dst[i], src[i]);
}

// CUDA twin (accumulates); device pointers, queued on `stream`. T is float or double.
template <class T>
void accumulate_cuda(T* dst, const T* src, int64_t n, Stream stream);

}  // namespace hpa::kernels
