// CUDA twin of the f32 <-> f64 buffer casts (kernels/cast.h).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cast.h"
#include "kernels/cuda_check.h"

namespace hpa::kernels {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;

// Grid: global thread t converts elements t, t + (threads in the grid), ...
template <class Src, class Dst>
__global__ void cast_kernel(const Src* __restrict__ src, Dst* __restrict__ dst, int64_t n) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step)
    dst[i] = cast_element<Dst>(src[i]);
}

}  // namespace

template <class Src, class Dst>
void cast_cuda(const Src* src, Dst* dst, int64_t n, Stream stream) {
  HPA_NVTX_RANGE("cast_cuda");
  if (n == 0) return;
  const int blocks = static_cast<int>(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, kMaxBlocks));
  cast_kernel<Src, Dst><<<blocks, kThreads, 0, stream>>>(src, dst, n);
  HPA_CHECK_LAUNCH("cast_kernel");
}

template void cast_cuda<float, double>(const float*, double*, int64_t, Stream);
template void cast_cuda<double, float>(const double*, float*, int64_t, Stream);

}  // namespace hpa::kernels
