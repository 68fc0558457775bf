// CUDA twin of the fills (kernels/fill.h): the same per-element functions, so a Philox
// draw made here equals the CPU's (see fill.h for the one f64 caveat).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda_check.h"
#include "kernels/fill.h"

namespace hpa::kernels {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;

int blocks_for(int64_t n) {
  return static_cast<int>(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

// Grid (all three kernels): global thread t handles elements t, t + (threads in the
// grid), ...
template <class U>
__global__ void fill_units_kernel(U* __restrict__ out, int64_t n, U value) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step)
    out[i] = value;
}

template <class T>
__global__ void fill_uniform_kernel(T* __restrict__ out, int64_t n, PhiloxDraw draw) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step)
    out[i] = uniform_element<T>(static_cast<uint64_t>(i), draw);
}

template <class T>
__global__ void fill_normal_kernel(T* __restrict__ out, int64_t n, PhiloxDraw draw) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step)
    out[i] = normal_element<T>(static_cast<uint64_t>(i), draw);
}

template <class U>
void launch_fill_units(void* out, int64_t n, U value, Stream stream) {
  fill_units_kernel<U><<<blocks_for(n), kThreads, 0, stream>>>(static_cast<U*>(out), n, value);
  HPA_CHECK_LAUNCH("fill_units_kernel");
}

}  // namespace

void fill_pattern_cuda(void* out, int64_t n, int element_bytes, uint64_t pattern, Stream stream) {
  HPA_NVTX_RANGE("fill_pattern_cuda");
  HPA_CHECK(element_bytes == 1 || element_bytes == 2 || element_bytes == 4 || element_bytes == 8,
            "fill_pattern_cuda: element size ", element_bytes, " is not 1, 2, 4 or 8 bytes");
  if (n == 0) return;
  switch (element_bytes) {
    case 1:
      return launch_fill_units(out, n, static_cast<uint8_t>(pattern), stream);
    case 2:
      return launch_fill_units(out, n, static_cast<uint16_t>(pattern), stream);
    case 4:
      return launch_fill_units(out, n, static_cast<uint32_t>(pattern), stream);
    default:
      return launch_fill_units(out, n, static_cast<uint64_t>(pattern), stream);
  }
}

template <class T>
void fill_uniform_cuda(T* out, int64_t n, const PhiloxDraw& draw, Stream stream) {
  HPA_NVTX_RANGE("fill_uniform_cuda");
  if (n == 0) return;
  fill_uniform_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(out, n, draw);
  HPA_CHECK_LAUNCH("fill_uniform_kernel");
}

template <class T>
void fill_normal_cuda(T* out, int64_t n, const PhiloxDraw& draw, Stream stream) {
  HPA_NVTX_RANGE("fill_normal_cuda");
  if (n == 0) return;
  fill_normal_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(out, n, draw);
  HPA_CHECK_LAUNCH("fill_normal_kernel");
}

template void fill_uniform_cuda<float>(float*, int64_t, const PhiloxDraw&, Stream);
template void fill_uniform_cuda<double>(double*, int64_t, const PhiloxDraw&, Stream);
template void fill_normal_cuda<float>(float*, int64_t, const PhiloxDraw&, Stream);
template void fill_normal_cuda<double>(double*, int64_t, const PhiloxDraw&, Stream);

}  // namespace hpa::kernels
