// CUDA twin of the dropout kernels (kernels/dropout.h). Each element's keep decision is
// dropout_keep(i, offset, seed, p), the very function the CPU loop calls, on the element's
// flat index i, so the mask is bit-identical to the CPU's whatever the grid. Philox costs
// about a hundred integer instructions per element, so these kernels are compute-bound;
// 16-byte loads and stores still keep the memory side out of the way.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda_check.h"
#include "kernels/dropout.h"

namespace hpa::kernels {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;

template <class T, int kVec>
struct alignas(sizeof(T) * kVec) Pack {
  T v[kVec];
};
template <class T>
constexpr int kPackOf = 16 / static_cast<int>(sizeof(T));

template <class T, bool kBackward>
__device__ __forceinline__ T dropout_element(T v, int64_t i, const DropoutArgs& d) {
  const bool keep = dropout_keep(static_cast<uint64_t>(i), d.offset, d.seed, d.p);
  return kBackward ? dropout_grad(v, keep, d) : dropout_value(v, keep, d);
}

// Grid: global thread t handles packs t, t + (threads in the grid), ... of kVec elements
// (elements p * kVec .. p * kVec + kVec - 1); the n % kVec elements after the last whole
// pack go one each to global threads 0 .. n % kVec - 1.
template <class T, int kVec, bool kBackward>
__global__ void dropout_kernel(const T* __restrict__ in, int64_t n, DropoutArgs d, T* __restrict__ out) {
  using P = Pack<T, kVec>;
  const int64_t packs = n / kVec;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t p = tid; p < packs; p += step) {
    P v = reinterpret_cast<const P*>(in)[p];
#pragma unroll
    for (int k = 0; k < kVec; ++k) v.v[k] = dropout_element<T, kBackward>(v.v[k], p * kVec + k, d);
    reinterpret_cast<P*>(out)[p] = v;
  }
  const int64_t tail = packs * kVec + tid;
  if (tail < n) out[tail] = dropout_element<T, kBackward>(in[tail], tail, d);
}

template <class T, bool kBackward>
void launch(const T* in, int64_t n, const DropoutArgs& d, T* out, Stream stream) {
  if (n == 0) return;
  constexpr int kVec = kPackOf<T>;
  const bool aligned =
      reinterpret_cast<uintptr_t>(in) % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0;
  const int64_t items = aligned ? n / kVec + 1 : n;
  const int blocks = static_cast<int>(std::clamp<int64_t>((items + kThreads - 1) / kThreads, 1, kMaxBlocks));
  if (aligned) {
    dropout_kernel<T, kVec, kBackward><<<blocks, kThreads, 0, stream>>>(in, n, d, out);
  } else {
    dropout_kernel<T, 1, kBackward><<<blocks, kThreads, 0, stream>>>(in, n, d, out);
  }
  HPA_CHECK_LAUNCH(kBackward ? "dropout_kernel (backward)" : "dropout_kernel (forward)");
}

}  // namespace

template <class T>
void dropout_forward_cuda(const T* x, int64_t n, const DropoutArgs& d, T* y, Stream stream) {
  HPA_NVTX_RANGE("dropout_forward_cuda");
  launch<T, false>(x, n, d, y, stream);
}

template <class T>
void dropout_backward_cuda(const T* grad_y, int64_t n, const DropoutArgs& d, T* grad_x, Stream stream) {
  HPA_NVTX_RANGE("dropout_backward_cuda");
  launch<T, true>(grad_y, n, d, grad_x, stream);
}

template void dropout_forward_cuda<float>(const float*, int64_t, const DropoutArgs&, float*, Stream);
template void dropout_forward_cuda<double>(const double*, int64_t, const DropoutArgs&, double*, Stream);
template void dropout_backward_cuda<float>(const float*, int64_t, const DropoutArgs&, float*, Stream);
template void dropout_backward_cuda<double>(const double*, int64_t, const DropoutArgs&, double*, Stream);

}  // namespace hpa::kernels
