// CUDA twin of kernels/accumulate.h: dst += src, the autograd engine's gradient sum.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/accumulate.h"
#include "kernels/cuda_check.h"

namespace hpa::kernels {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;

template <class T, int kVec>
struct alignas(sizeof(T) * kVec) Pack {
  T v[kVec];
};

// Grid: global thread t handles packs t, t + (threads in the grid), ... of kVec elements;
// the n % kVec elements after the last whole pack go one each to global threads
// 0 .. n % kVec - 1.
template <class T, int kVec>
__global__ void accumulate_kernel(T* __restrict__ dst, const T* __restrict__ src, int64_t n) {
  using P = Pack<T, kVec>;
  const int64_t packs = n / kVec;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t p = tid; p < packs; p += step) {
    P d = reinterpret_cast<P*>(dst)[p];
    const P s = reinterpret_cast<const P*>(src)[p];
#pragma unroll
    for (int k = 0; k < kVec; ++k) accumulate_element(d.v[k], s.v[k]);
    reinterpret_cast<P*>(dst)[p] = d;
  }
  const int64_t tail = packs * kVec + tid;
  if (tail < n) accumulate_element(dst[tail], src[tail]);
}

int blocks_for(int64_t items) {
  return static_cast<int>(std::clamp<int64_t>((items + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

}  // namespace

template <class T>
void accumulate_cuda(T* dst, const T* src, int64_t n, Stream stream) {
  HPA_NVTX_RANGE("accumulate_cuda");
  if (n == 0) return;
  constexpr int kVec = 16 / static_cast<int>(sizeof(T));
  const bool aligned =
      reinterpret_cast<uintptr_t>(dst) % 16 == 0 && reinterpret_cast<uintptr_t>(src) % 16 == 0;
  if (aligned) {
    accumulate_kernel<T, kVec><<<blocks_for(n / kVec + 1), kThreads, 0, stream>>>(dst, src, n);
  } else {
    accumulate_kernel<T, 1><<<blocks_for(n), kThreads, 0, stream>>>(dst, src, n);
  }
  HPA_CHECK_LAUNCH("accumulate_kernel");
}

template void accumulate_cuda<float>(float*, const float*, int64_t, Stream);
template void accumulate_cuda<double>(double*, const double*, int64_t, Stream);

}  // namespace hpa::kernels
