// CUDA twin of the global / concat pooling kernels (kernels/concat_pool.h).
//
// Grid, forward and backward alike: a "plane group" of kWarpsPerPlane warps owns one (n, c)
// plane; a block of 256 threads holds 8 / kWarpsPerPlane groups, and blocks stride over
// the planes. Group thread r handles packs r, r + group size, ... of the plane, a pack
// being 16 bytes (4 floats, 2 doubles) when hw is a whole number of packs and the pointers
// are aligned, else one element. Planes of up to kWarpPlaneMax elements get one warp each
// (the ResNet final map: 16x16 = 256 floats, two 16-byte loads per lane); larger planes a
// whole block, so a few big planes still spread over many threads.
//
// Forward reads each plane once: every thread keeps one PlaneAvgMax state over its own
// elements (increasing index), and the states are merged by a fixed shuffle tree with
// plane_avg_max_merge, which breaks ties by the lower index, so the maximum and argmax are
// the CPU's bit for bit; only the order of the double sum differs. Backward writes each
// plane once from the saved argmax.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/concat_pool.h"
#include "kernels/cuda_check.h"

namespace hpa::kernels {

namespace {

constexpr int kWarp = 32;
constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / kWarp;
constexpr int64_t kWarpPlaneMax = 2048;
constexpr int64_t kMaxBlocks = int64_t{1} << 30;
constexpr unsigned kFullMask = 0xffffffffu;

template <class T, int kVec>
struct alignas(sizeof(T) * kVec) Pack {
  T v[kVec];
};
template <class T>
constexpr int kPackOf = 16 / static_cast<int>(sizeof(T));

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <class T>
__device__ __forceinline__ PlaneAvgMax<T> shuffle_xor(const PlaneAvgMax<T>& s, int offset) {
  return {__shfl_xor_sync(kFullMask, s.sum, offset), __shfl_xor_sync(kFullMask, s.best, offset),
          static_cast<int64_t>(__shfl_xor_sync(kFullMask, static_cast<long long>(s.best_index), offset))};
}

template <class T>
__device__ __forceinline__ PlaneAvgMax<T> warp_merge(PlaneAvgMax<T> s) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) s = plane_avg_max_merge(s, shuffle_xor(s, offset));
  return s;
}

// Plane groups (see the top of the file). avg and max may each be null.
template <class T, int kVec, int kWarpsPerPlane>
__global__ void __launch_bounds__(kThreads)
    concat_pool_forward_kernel(const T* __restrict__ x, ConcatPoolArgs a, T* __restrict__ avg,
                               T* __restrict__ max, int32_t* __restrict__ argmax) {
  using P = Pack<T, kVec>;
  constexpr int kGroup = kWarpsPerPlane * kWarp;
  constexpr int kPlanesPerBlock = kThreads / kGroup;
  __shared__ PlaneAvgMax<T> shared[kWarpsPerBlock];
  const int64_t planes = a.n * a.c, packs = a.hw / kVec;
  const int group = static_cast<int>(threadIdx.x) / kGroup, r = static_cast<int>(threadIdx.x) % kGroup;
  for (int64_t first = static_cast<int64_t>(blockIdx.x) * kPlanesPerBlock; first < planes;
       first += static_cast<int64_t>(gridDim.x) * kPlanesPerBlock) {
    const int64_t plane = first + group;
    PlaneAvgMax<T> s = plane_avg_max_empty<T>();
    if (plane < planes) {
      const P* in = reinterpret_cast<const P*>(x + plane * a.hw);
#pragma unroll 4
      for (int64_t j = r; j < packs; j += kGroup) {
        const P v = in[j];
#pragma unroll
        for (int k = 0; k < kVec; ++k) {
          const int64_t index = j * kVec + k;
          if (s.best_index < 0) {
            s = plane_avg_max_start(v.v[k], index);
          } else {
            plane_avg_max_step(s, v.v[k], index);
          }
        }
      }
    }
    s = warp_merge(s);
    if (kWarpsPerPlane > 1) {
      const int warp = static_cast<int>(threadIdx.x) / kWarp, lane = static_cast<int>(threadIdx.x) % kWarp;
      if (lane == 0) shared[warp] = s;
      __syncthreads();
      // kWarpsPerPlane == kWarpsPerBlock here: one plane per block, merged by warp 0.
      if (warp == 0) s = warp_merge(lane < kWarpsPerPlane ? shared[lane] : plane_avg_max_empty<T>());
      __syncthreads();
    }
    if (r == 0 && plane < planes) {
      const int64_t out = concat_pool_out_index(plane, a);
      if (avg) avg[out] = concat_pool_average<T>(s.sum, a.hw);
      if (max) {
        max[out] = s.best;
        argmax[plane] = static_cast<int32_t>(s.best_index);
      }
    }
  }
}

// Plane groups (see the top of the file): writes (=) every element of the plane.
template <class T, int kVec, int kWarpsPerPlane>
__global__ void __launch_bounds__(kThreads)
    concat_pool_backward_kernel(const T* __restrict__ grad_avg, const T* __restrict__ grad_max,
                                const int32_t* __restrict__ argmax, ConcatPoolArgs a,
                                T* __restrict__ grad_x) {
  using P = Pack<T, kVec>;
  constexpr int kGroup = kWarpsPerPlane * kWarp;
  constexpr int kPlanesPerBlock = kThreads / kGroup;
  const int64_t planes = a.n * a.c, packs = a.hw / kVec;
  const int group = static_cast<int>(threadIdx.x) / kGroup, r = static_cast<int>(threadIdx.x) % kGroup;
  for (int64_t first = static_cast<int64_t>(blockIdx.x) * kPlanesPerBlock; first < planes;
       first += static_cast<int64_t>(gridDim.x) * kPlanesPerBlock) {
    const int64_t plane = first + group;
    if (plane >= planes) continue;
    const int64_t out = concat_pool_out_index(plane, a);
    const T g_avg = grad_avg ? concat_pool_avg_share(grad_avg[out], a.hw) : T(0);
    const T g_max = grad_max ? grad_max[out] : T(0);
    const int64_t best = grad_max ? argmax[plane] : -1;
    P* gx = reinterpret_cast<P*>(grad_x + plane * a.hw);
#pragma unroll 4
    for (int64_t j = r; j < packs; j += kGroup) {
      P v;
#pragma unroll
      for (int k = 0; k < kVec; ++k) v.v[k] = concat_pool_grad_at(j * kVec + k, g_avg, g_max, best);
      gx[j] = v;
    }
  }
}

int blocks_for(int64_t planes, int planes_per_block) {
  return static_cast<int>(
      std::clamp<int64_t>((planes + planes_per_block - 1) / planes_per_block, 1, kMaxBlocks));
}

template <class T, int kVec>
void launch_forward(const T* x, const ConcatPoolArgs& a, T* avg, T* max, int32_t* argmax, Stream stream) {
  const int64_t planes = a.n * a.c;
  if (a.hw <= kWarpPlaneMax) {
    concat_pool_forward_kernel<T, kVec, 1>
        <<<blocks_for(planes, kWarpsPerBlock), kThreads, 0, stream>>>(x, a, avg, max, argmax);
  } else {
    concat_pool_forward_kernel<T, kVec, kWarpsPerBlock>
        <<<blocks_for(planes, 1), kThreads, 0, stream>>>(x, a, avg, max, argmax);
  }
  HPA_CHECK_LAUNCH("concat_pool_forward_kernel");
}

template <class T, int kVec>
void launch_backward(const T* grad_avg, const T* grad_max, const int32_t* argmax, const ConcatPoolArgs& a,
                     T* grad_x, Stream stream) {
  const int64_t planes = a.n * a.c;
  if (a.hw <= kWarpPlaneMax) {
    concat_pool_backward_kernel<T, kVec, 1>
        <<<blocks_for(planes, kWarpsPerBlock), kThreads, 0, stream>>>(grad_avg, grad_max, argmax, a, grad_x);
  } else {
    concat_pool_backward_kernel<T, kVec, kWarpsPerBlock>
        <<<blocks_for(planes, 1), kThreads, 0, stream>>>(grad_avg, grad_max, argmax, a, grad_x);
  }
  HPA_CHECK_LAUNCH("concat_pool_backward_kernel");
}

}  // namespace

template <class T>
void concat_pool_forward_cuda(const T* x, const ConcatPoolArgs& a, T* avg, T* max, int32_t* argmax,
                              Stream stream) {
  HPA_NVTX_RANGE("concat_pool_forward_cuda");
  if (a.n * a.c == 0) return;
  HPA_CHECK(a.hw >= 1, "concat_pool_forward_cuda: needs a non-empty plane, got hw ", a.hw);
  if (a.hw % kPackOf<T> == 0 && aligned16(x)) {
    launch_forward<T, kPackOf<T>>(x, a, avg, max, argmax, stream);
  } else {
    launch_forward<T, 1>(x, a, avg, max, argmax, stream);
  }
}

template <class T>
void concat_pool_backward_cuda(const T* grad_avg, const T* grad_max, const int32_t* argmax,
                               const ConcatPoolArgs& a, T* grad_x, Stream stream) {
  HPA_NVTX_RANGE("concat_pool_backward_cuda");
  if (a.n * a.c * a.hw == 0) return;
  if (a.hw % kPackOf<T> == 0 && aligned16(grad_x)) {
    launch_backward<T, kPackOf<T>>(grad_avg, grad_max, argmax, a, grad_x, stream);
  } else {
    launch_backward<T, 1>(grad_avg, grad_max, argmax, a, grad_x, stream);
  }
}

#define HPA_INSTANTIATE_CONCAT_POOL_CUDA(T)                                                                 \
  template void concat_pool_forward_cuda<T>(const T*, const ConcatPoolArgs&, T*, T*, int32_t*, Stream);     \
  template void concat_pool_backward_cuda<T>(const T*, const T*, const int32_t*, const ConcatPoolArgs&, T*, \
                                             Stream);

HPA_INSTANTIATE_CONCAT_POOL_CUDA(float)
HPA_INSTANTIATE_CONCAT_POOL_CUDA(double)
#undef HPA_INSTANTIATE_CONCAT_POOL_CUDA

}  // namespace hpa::kernels
