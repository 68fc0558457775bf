// CUDA twin of kernels/topk.h: the hard sampler's top-K by counting ranks, and the
// backward that routes the K gradients back to their samples.
//
// Why counting and not a sort: a batch holds at most a few thousand losses, and the rank
// of each one (how many others rank before it) is an independent integer count that a
// warp computes in n / 32 steps with no synchronization beyond its own shuffles. Ranks of
// a strict total order are a permutation, so rank r < k names the r-th chosen sample
// directly: the selection, its order and the gather are one kernel, the result cannot
// depend on timing, and it equals the CPU's partial sort exactly.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda_check.h"
#include "kernels/topk.h"

namespace hpa::kernels {

namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = kThreads / kWarp;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;

int blocks_for(int64_t items, int64_t items_per_block) {
  const int64_t blocks = (items + items_per_block - 1) / items_per_block;
  return static_cast<int>(std::clamp<int64_t>(blocks, 1, kMaxBlocks));
}

// Grid: warp w of block b ranks samples i = b * kWarpsPerBlock + w, then i + (warps in the
// grid), ...; lane l compares sample i with samples l, l + 32, ... and the warp adds the
// lanes' counts. A NaN sample lowers first_nan and takes rank n (never chosen); since no
// value ranks before or after a NaN, the other samples' ranks stay a permutation.
template <class T>
__global__ void __launch_bounds__(kThreads)
    topk_rank_select_kernel(const T* __restrict__ values, int64_t n, int64_t k, int64_t* __restrict__ ranks,
                            int64_t* __restrict__ indices, T* __restrict__ chosen, int64_t* first_nan) {
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int64_t warps_in_grid = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp; i < n;
       i += warps_in_grid) {
    const T value = values[i];
    long long before = 0;
    for (int64_t j = lane; j < n; j += kWarp) before += ranks_before(values[j], j, value, i) ? 1 : 0;
#pragma unroll
    for (int offset = kWarp / 2; offset > 0; offset /= 2)
      before += __shfl_xor_sync(0xffffffffu, before, offset);
    if (lane == 0) {
      if (isnan(value)) {
        // The flag starts as all ones, larger than every index when read as unsigned.
        atomicMin(reinterpret_cast<unsigned long long*>(first_nan), static_cast<unsigned long long>(i));
        ranks[i] = n;
      } else {
        ranks[i] = before;
        if (before < k) {
          indices[before] = i;
          chosen[before] = value;
        }
      }
    }
  }
}

// Grid: one thread per sample, grid-stride.
template <class T>
__global__ void topk_scatter_kernel(const T* __restrict__ grad_chosen, const int64_t* __restrict__ ranks,
                                    int64_t k, T* __restrict__ grad_values, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t rank = ranks[i];
    grad_values[i] = rank < k ? grad_chosen[rank] : T(0);
  }
}

}  // namespace

template <class T>
void topk_rank_select_cuda(const T* values, int64_t n, int64_t k, int64_t* ranks, int64_t* indices, T* chosen,
                           int64_t* first_nan, Stream stream) {
  HPA_NVTX_RANGE("topk_rank_select");
  HPA_CHECK(k >= 1 && k <= n, "topk_rank_select_cuda: k = ", k, " must be in [1, n] for n = ", n);
  HPA_CUDA_CHECK(cudaMemsetAsync(first_nan, 0xFF, sizeof(int64_t), stream));  // -1
  topk_rank_select_kernel<T><<<blocks_for(n, kWarpsPerBlock), kThreads, 0, stream>>>(
      values, n, k, ranks, indices, chosen, first_nan);
  HPA_CHECK_LAUNCH("topk_rank_select_kernel");
}

template <class T>
void topk_scatter_cuda(const T* grad_chosen, const int64_t* ranks, int64_t k, T* grad_values, int64_t n,
                       Stream stream) {
  HPA_NVTX_RANGE("topk_scatter");
  if (n == 0) return;
  topk_scatter_kernel<T>
      <<<blocks_for(n, kThreads), kThreads, 0, stream>>>(grad_chosen, ranks, k, grad_values, n);
  HPA_CHECK_LAUNCH("topk_scatter_kernel");
}

#define HPA_INSTANTIATE_TOPK_CUDA(T)                                                                   \
  template void topk_rank_select_cuda<T>(const T*, int64_t, int64_t, int64_t*, int64_t*, T*, int64_t*, \
                                         Stream);                                                      \
  template void topk_scatter_cuda<T>(const T*, const int64_t*, int64_t, T*, int64_t, Stream);
HPA_INSTANTIATE_TOPK_CUDA(float)
HPA_INSTANTIATE_TOPK_CUDA(double)
#undef HPA_INSTANTIATE_TOPK_CUDA

}  // namespace hpa::kernels
