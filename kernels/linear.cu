// CUDA twin of the fully connected kernels: the same GEMMs as the CPU twin through
// gemm_cuda (cuBLAS), and two small kernels for the bias. The forward broadcasts the bias
// into y and lets the GEMM accumulate onto it (beta 1), exactly as the CPU does; the bias
// gradient sums each column in batch order from 0, the CPU's order, so it is bit-identical.
#include <algorithm>

#include "kernels/cuda_check.h"
#include "kernels/linear.h"

namespace hpa::kernels {

namespace {

constexpr int kThreads = 256;

int blocks_for(int64_t work) {
  return static_cast<int>(std::min<int64_t>((work + kThreads - 1) / kThreads, int64_t{1} << 16));
}

// Grid-stride over the n x out elements of y, row-major: y[i] = bias[i % out].
template <class T>
__global__ void linear_bias_broadcast_kernel(const T* __restrict__ bias, int64_t elements, int64_t out,
                                             T* __restrict__ y) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < elements; i += stride)
    y[i] = bias[i % out];
}

// One thread per output feature o (grid-stride), summing column o of grad_y down the
// batch; neighbouring threads read neighbouring columns, so each row is read coalesced.
template <class T>
__global__ void linear_bias_grad_kernel(const T* __restrict__ grad_y, int64_t n, int64_t out,
                                        T* __restrict__ grad_bias) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < out; o += stride) {
    T sum = T(0);
    for (int64_t i = 0; i < n; ++i) sum += grad_y[i * out + o];
    grad_bias[o] = sum;
  }
}

}  // namespace

template <class T>
void linear_forward_cuda(const LinearArgs& a, const T* x, const T* weight, const T* bias, T* y,
                         const GemmCudaContext& ctx) {
  HPA_NVTX_RANGE("linear_forward_cuda");
  const int64_t elements = a.n * a.out;
  if (elements == 0) return;
  if (bias != nullptr) {
    linear_bias_broadcast_kernel<T>
        <<<blocks_for(elements), kThreads, 0, ctx.stream>>>(bias, elements, a.out, y);
    HPA_CHECK_LAUNCH("linear_bias_broadcast_kernel");
  }
  gemm_cuda<T>(gemm_args(a.n, a.out, a.in, false, true), T(1), x, weight, bias != nullptr ? T(1) : T(0), y,
               ctx);
}

template <class T>
void linear_backward_input_cuda(const LinearArgs& a, const T* grad_y, const T* weight, T* grad_x,
                                const GemmCudaContext& ctx) {
  HPA_NVTX_RANGE("linear_backward_input_cuda");
  gemm_cuda<T>(gemm_args(a.n, a.in, a.out), T(1), grad_y, weight, T(0), grad_x, ctx);
}

template <class T>
void linear_backward_weight_cuda(const LinearArgs& a, const T* grad_y, const T* x, T* grad_weight,
                                 const GemmCudaContext& ctx) {
  HPA_NVTX_RANGE("linear_backward_weight_cuda");
  gemm_cuda<T>(gemm_args(a.out, a.in, a.n, true, false), T(1), grad_y, x, T(0), grad_weight, ctx);
}

template <class T>
void linear_backward_bias_cuda(const LinearArgs& a, const T* grad_y, T* grad_bias,
                               const GemmCudaContext& ctx) {
  HPA_NVTX_RANGE("linear_backward_bias_cuda");
  if (a.out == 0) return;
  linear_bias_grad_kernel<T><<<blocks_for(a.out), kThreads, 0, ctx.stream>>>(grad_y, a.n, a.out, grad_bias);
  HPA_CHECK_LAUNCH("linear_bias_grad_kernel");
}

#define HPA_INSTANTIATE_LINEAR_CUDA(T)                                                      \
  template void linear_forward_cuda<T>(const LinearArgs&, const T*, const T*, const T*, T*, \
                                       const GemmCudaContext&);                             \
  template void linear_backward_input_cuda<T>(const LinearArgs&, const T*, const T*, T*,    \
                                              const GemmCudaContext&);                      \
  template void linear_backward_weight_cuda<T>(const LinearArgs&, const T*, const T*, T*,   \
                                               const GemmCudaContext&);                     \
  template void linear_backward_bias_cuda<T>(const LinearArgs&, const T*, T*, const GemmCudaContext&);
HPA_INSTANTIATE_LINEAR_CUDA(float)
HPA_INSTANTIATE_LINEAR_CUDA(double)
#undef HPA_INSTANTIATE_LINEAR_CUDA

}  // namespace hpa::kernels
