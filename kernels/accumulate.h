// dst += src over n elements: how the autograd engine sums the gradients of a tensor
// that feeds several ops.
#pragma once

#include <cstdint>

namespace hpa::kernels {

template <class T>
void accumulate_cpu(T* dst, const T* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

}  // namespace hpa::kernels
