// CUDA twin of kernels/accumulate.h: dst += src, the autograd engine's gradient sum.
// Grid: one thread per element, grid-stride loop so any n fits one launch.
#include <cuda_runtime.h>

#include <cstdint>

namespace hpa::kernels {

template <class T>
__global__ void accumulate_kernel(T* __restrict__ dst, const T* __restrict__ src, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] += src[i];
}

template <class T>
cudaError_t accumulate_cuda(T* dst, const T* src, int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  const int64_t blocks64 = (n + kThreads - 1) / kThreads;
  const int blocks = static_cast<int>(blocks64 < 65535 * 8 ? blocks64 : 65535 * 8);
  accumulate_kernel<<<blocks, kThreads, 0, stream>>>(dst, src, n);
  return cudaGetLastError();
}

template cudaError_t accumulate_cuda<float>(float*, const float*, int64_t, cudaStream_t);
template cudaError_t accumulate_cuda<double>(double*, const double*, int64_t, cudaStream_t);

}  // namespace hpa::kernels
