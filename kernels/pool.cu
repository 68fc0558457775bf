// CUDA twin of the windowed pooling kernels (kernels/pool.h). Every kernel calls the same
// HPA_HD window functions as the CPU loops, and the backward kernels gather instead of
// scattering: the thread of an input element visits the outputs whose windows cover it in
// increasing output order and adds their contributions in that order, which is exactly the
// sequence of additions the CPU scatter performs on that element. So forward and backward
// equal the CPU bit for bit, without atomics, ties and overlapping windows included.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda_check.h"
#include "kernels/pool.h"

namespace hpa::kernels {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 30;

int blocks_for(int64_t items) {
  return static_cast<int>(std::clamp<int64_t>((items + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

// Grid: global thread t handles outputs t, t + (threads in the grid), ... of the flat
// [planes, out_h, out_w] index space.
template <class T>
__global__ void max_pool2d_forward_kernel(const T* __restrict__ x, Pool2dArgs a, T* __restrict__ y,
                                          int32_t* __restrict__ argmax) {
  const int64_t out_plane = a.out_h * a.out_w, total = a.planes * out_plane;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < total; o += step) {
    const int64_t plane = o / out_plane, r = o % out_plane;
    const MaxPoolPick<T> best =
        max_pool_window(x + plane * a.in_h * a.in_w, a.in_w, pool_window(r / a.out_w, r % a.out_w, a));
    y[o] = best.value;
    argmax[o] = static_cast<int32_t>(best.index);
  }
}

// Grid: as max_pool2d_forward_kernel, over the outputs.
template <class T>
__global__ void avg_pool2d_forward_kernel(const T* __restrict__ x, Pool2dArgs a, T* __restrict__ y) {
  const int64_t out_plane = a.out_h * a.out_w, total = a.planes * out_plane;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < total; o += step) {
    const int64_t plane = o / out_plane, r = o % out_plane;
    y[o] = avg_pool_window(x + plane * a.in_h * a.in_w, a.in_w, pool_window(r / a.out_w, r % a.out_w, a));
  }
}

// Grid: global thread t handles inputs t, t + (threads in the grid), ... of the flat
// [planes, in_h, in_w] index space, and writes (=) each one's whole gradient.
template <class T, bool kMax>
__global__ void pool2d_backward_kernel(const T* __restrict__ grad_y, const int32_t* __restrict__ argmax,
                                       Pool2dArgs a, T* __restrict__ grad_x) {
  const int64_t in_plane = a.in_h * a.in_w, out_plane = a.out_h * a.out_w, total = a.planes * in_plane;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const int64_t plane = e / in_plane, i = e % in_plane;
    const int64_t h = i / a.in_w, w = i % a.in_w;
    int64_t oh0, oh1, ow0, ow1;
    pool_outputs_covering(h, a.kernel_h, a.stride_h, a.pad_h, a.out_h, &oh0, &oh1);
    pool_outputs_covering(w, a.kernel_w, a.stride_w, a.pad_w, a.out_w, &ow0, &ow1);
    const T* g = grad_y + plane * out_plane;
    const int32_t* idx = kMax ? argmax + plane * out_plane : nullptr;
    T sum = T(0);
    for (int64_t oh = oh0; oh <= oh1; ++oh) {
      for (int64_t ow = ow0; ow <= ow1; ++ow) {
        const int64_t o = oh * a.out_w + ow;
        if (kMax) {
          if (idx[o] == i) sum += g[o];
        } else {
          const PoolWindow win = pool_window(oh, ow, a);
          if (win.area > 0) sum += avg_pool_share(g[o], win.area);
        }
      }
    }
    grad_x[e] = sum;
  }
}

}  // namespace

template <class T>
void max_pool2d_forward_cuda(const T* x, const Pool2dArgs& a, T* y, int32_t* argmax, Stream stream) {
  HPA_NVTX_RANGE("max_pool2d_forward_cuda");
  const int64_t total = a.planes * a.out_h * a.out_w;
  if (total == 0) return;
  max_pool2d_forward_kernel<T><<<blocks_for(total), kThreads, 0, stream>>>(x, a, y, argmax);
  HPA_CHECK_LAUNCH("max_pool2d_forward_kernel");
}

template <class T>
void max_pool2d_backward_cuda(const T* grad_y, const int32_t* argmax, const Pool2dArgs& a, T* grad_x,
                              Stream stream) {
  HPA_NVTX_RANGE("max_pool2d_backward_cuda");
  const int64_t total = a.planes * a.in_h * a.in_w;
  if (total == 0) return;
  pool2d_backward_kernel<T, true><<<blocks_for(total), kThreads, 0, stream>>>(grad_y, argmax, a, grad_x);
  HPA_CHECK_LAUNCH("pool2d_backward_kernel (max)");
}

template <class T>
void avg_pool2d_forward_cuda(const T* x, const Pool2dArgs& a, T* y, Stream stream) {
  HPA_NVTX_RANGE("avg_pool2d_forward_cuda");
  const int64_t total = a.planes * a.out_h * a.out_w;
  if (total == 0) return;
  avg_pool2d_forward_kernel<T><<<blocks_for(total), kThreads, 0, stream>>>(x, a, y);
  HPA_CHECK_LAUNCH("avg_pool2d_forward_kernel");
}

template <class T>
void avg_pool2d_backward_cuda(const T* grad_y, const Pool2dArgs& a, T* grad_x, Stream stream) {
  HPA_NVTX_RANGE("avg_pool2d_backward_cuda");
  const int64_t total = a.planes * a.in_h * a.in_w;
  if (total == 0) return;
  pool2d_backward_kernel<T, false><<<blocks_for(total), kThreads, 0, stream>>>(grad_y, nullptr, a, grad_x);
  HPA_CHECK_LAUNCH("pool2d_backward_kernel (avg)");
}

#define HPA_INSTANTIATE_POOL_CUDA(T)                                                                  \
  template void max_pool2d_forward_cuda<T>(const T*, const Pool2dArgs&, T*, int32_t*, Stream);        \
  template void max_pool2d_backward_cuda<T>(const T*, const int32_t*, const Pool2dArgs&, T*, Stream); \
  template void avg_pool2d_forward_cuda<T>(const T*, const Pool2dArgs&, T*, Stream);                  \
  template void avg_pool2d_backward_cuda<T>(const T*, const Pool2dArgs&, T*, Stream);

HPA_INSTANTIATE_POOL_CUDA(float)
HPA_INSTANTIATE_POOL_CUDA(double)
#undef HPA_INSTANTIATE_POOL_CUDA

}  // namespace hpa::kernels
