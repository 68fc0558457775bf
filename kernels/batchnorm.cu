// CUDA twin of the batch normalization kernels (kernels/batchnorm.h).
//
// Grid shape of every kernel that walks the [n, c, hw] data, "plane tiles": each (n, c)
// plane of hw elements is read as packs of kVec elements (16 bytes when hw and every
// pointer allow it, else single elements) and cut into tiles of kPacksPerThread * blockDim.x
// packs. Block b handles tile b % tiles of plane b / tiles (channel plane % c); its thread t
// handles packs tile_start + t + u * blockDim.x, u < kPacksPerThread. blockDim.x grows with
// the plane from 32 to 256 threads, so small planes (7x7) do not leave most lanes idle, and
// the channel's constants are read once per tile, not per element.
//
// The two reductions (statistics, backward sums) are deterministic and atomic-free: each
// tile's block sums its elements in double (every thread in a fixed order, then a fixed
// shuffle tree) into one partial of the workspace, laid out channel-major; a second kernel,
// one warp per channel, adds the channel's partials in a fixed order. The result depends
// on the shape alone, never on timing.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>

#include "kernels/batchnorm.h"
#include "kernels/cuda_check.h"

namespace hpa::kernels {

namespace {

constexpr int kWarp = 32;
constexpr int kMaxThreads = 256;
constexpr int kPacksPerThread = 4;
constexpr int64_t kMaxGrid = int64_t{1} << 30;
constexpr unsigned kFullMask = 0xffffffffu;

template <class T, int kVec>
struct alignas(sizeof(T) * kVec) Pack {
  T v[kVec];
};
template <class T>
constexpr int kPackOf = 16 / static_cast<int>(sizeof(T));

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int grid_for(int64_t blocks) { return static_cast<int>(std::min(blocks, kMaxGrid)); }

struct Tiling {
  int threads = kWarp;
  int64_t tiles = 0;   // per plane
  int64_t blocks = 0;  // planes * tiles
};

Tiling plane_tiling(const BatchNormArgs& a, int vec) {
  const int64_t packs = a.hw / vec;
  Tiling t;
  const int64_t threads_wanted = ceil_div(ceil_div(packs, kPacksPerThread), kWarp) * kWarp;
  t.threads = static_cast<int>(std::clamp<int64_t>(threads_wanted, kWarp, kMaxThreads));
  t.tiles = ceil_div(packs, int64_t{t.threads} * kPacksPerThread);
  t.blocks = a.n * a.c * t.tiles;
  return t;
}

// 16-byte packs when hw is a whole number of packs and every pointer is 16-byte aligned
// (then every plane starts aligned too).
template <class T>
bool vectorizable(const BatchNormArgs& a, std::initializer_list<const void*> pointers) {
  if (a.hw % kPackOf<T> != 0) return false;
  for (const void* p : pointers)
    if (p != nullptr && !aligned16(p)) return false;
  return true;
}

// Where block b of the plane-tile grid works.
struct TileCoords {
  int64_t plane, channel, sample, tile, first_pack;
};

__device__ __forceinline__ TileCoords tile_coords(int64_t b, int64_t tiles, int64_t channels) {
  TileCoords t;
  t.plane = b / tiles;
  t.tile = b % tiles;
  t.channel = t.plane % channels;
  t.sample = t.plane / channels;
  t.first_pack = t.tile * blockDim.x * kPacksPerThread + threadIdx.x;
  return t;
}

// Sums (s0, s1) over the block; the totals are valid in warp 0. `shared` holds one pair
// per warp. Ends with a barrier so the caller may reuse `shared` at once.
__device__ __forceinline__ void block_sum_pair(double& s0, double& s1, double (*shared)[2]) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    s0 += __shfl_xor_sync(kFullMask, s0, offset);
    s1 += __shfl_xor_sync(kFullMask, s1, offset);
  }
  const int warp = static_cast<int>(threadIdx.x) / kWarp, lane = static_cast<int>(threadIdx.x) % kWarp;
  const int warps = static_cast<int>(blockDim.x) / kWarp;
  if (lane == 0) {
    shared[warp][0] = s0;
    shared[warp][1] = s1;
  }
  __syncthreads();
  if (warp == 0) {
    s0 = lane < warps ? shared[lane][0] : 0.0;
    s1 = lane < warps ? shared[lane][1] : 0.0;
    for (int offset = kWarp / 2; offset > 0; offset /= 2) {
      s0 += __shfl_xor_sync(kFullMask, s0, offset);
      s1 += __shfl_xor_sync(kFullMask, s1, offset);
    }
  }
  __syncthreads();
}

// Plane tiles (see the top of the file). Statistics (kBackward false): sums of d = x - shift
// and d^2, shift = the channel's first element x[0, c, 0]. Backward: sums of g and
// g * (x - mean[c]). partial[2 * ((c * n + sample) * tiles + tile) + {0, 1}] is written.
template <class T, int kVec, bool kBackward>
__global__ void __launch_bounds__(kMaxThreads)
    channel_sums_partial_kernel(const T* __restrict__ x, const T* __restrict__ grad_y,
                                const double* __restrict__ mean, BatchNormArgs a, int64_t tiles,
                                double* __restrict__ partial) {
  using P = Pack<T, kVec>;
  __shared__ double shared[kMaxThreads / kWarp][2];
  const int64_t packs = a.hw / kVec;
  const int64_t blocks = a.n * a.c * tiles;
  for (int64_t b = blockIdx.x; b < blocks; b += gridDim.x) {
    const TileCoords t = tile_coords(b, tiles, a.c);
    const double center = kBackward ? mean[t.channel] : static_cast<double>(x[t.channel * a.hw]);
    const P* xp = reinterpret_cast<const P*>(x + t.plane * a.hw);
    const P* gp = reinterpret_cast<const P*>(grad_y + (kBackward ? t.plane * a.hw : 0));
    P xv[kPacksPerThread] = {}, gv[kPacksPerThread] = {};
#pragma unroll
    for (int u = 0; u < kPacksPerThread; ++u) {
      const int64_t i = t.first_pack + int64_t{u} * blockDim.x;
      if (i < packs) {
        xv[u] = xp[i];
        if (kBackward) gv[u] = gp[i];
      }
    }
    double s0 = 0, s1 = 0;
#pragma unroll
    for (int u = 0; u < kPacksPerThread; ++u) {
      if (t.first_pack + int64_t{u} * blockDim.x >= packs) break;
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        if (kBackward) {
          const BatchNormBackwardTerms terms = batchnorm_backward_terms(
              static_cast<double>(gv[u].v[k]), static_cast<double>(xv[u].v[k]), center);
          s0 += terms.g;
          s1 += terms.g_centered;
        } else {
          const double d = static_cast<double>(xv[u].v[k]) - center;
          s0 += d;
          s1 += d * d;
        }
      }
    }
    block_sum_pair(s0, s1, shared);
    if (threadIdx.x == 0) {
      const int64_t slot = (t.channel * a.n + t.sample) * tiles + t.tile;
      partial[2 * slot] = s0;
      partial[2 * slot + 1] = s1;
    }
  }
}

// One warp per channel (8 per block): lane l adds partials l, l + 32, ... of the channel,
// then a shuffle tree adds the lanes. Statistics: writes mean[c] and var[c]
// (batchnorm_shifted_moments). Backward: writes sum_g[c] and sum_g_xhat[c] (the second sum
// times invstd[c]).
template <class T, bool kBackward>
__global__ void __launch_bounds__(kMaxThreads)
    channel_sums_finish_kernel(const double* __restrict__ partial, int64_t per_channel,
                               const T* __restrict__ x, const double* __restrict__ invstd, BatchNormArgs a,
                               double* __restrict__ out0, double* __restrict__ out1) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  if (c >= a.c) return;  // whole warps leave together; no block barrier follows
  double s0 = 0, s1 = 0;
  const double* p = partial + 2 * c * per_channel;
  for (int64_t j = lane; j < per_channel; j += kWarp) {
    s0 += p[2 * j];
    s1 += p[2 * j + 1];
  }
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    s0 += __shfl_xor_sync(kFullMask, s0, offset);
    s1 += __shfl_xor_sync(kFullMask, s1, offset);
  }
  if (lane != 0) return;
  if (kBackward) {
    out0[c] = s0;
    out1[c] = s1 * invstd[c];
  } else {
    const BatchNormMoments m =
        batchnorm_shifted_moments(static_cast<double>(x[c * a.hw]), s0, s1, static_cast<double>(a.n * a.hw));
    out0[c] = m.mean;
    out1[c] = m.var;
  }
}

template <class T, bool kBackward>
void channel_sums_cuda(const T* x, const T* grad_y, const double* mean, const double* invstd,
                       const BatchNormArgs& a, double* out0, double* out1, double* workspace, Stream stream) {
  if (a.c == 0) return;
  const bool vec = vectorizable<T>(a, {x, grad_y});
  const Tiling t = plane_tiling(a, vec ? kPackOf<T> : 1);
  if (t.blocks > 0) {
    if (vec) {
      channel_sums_partial_kernel<T, kPackOf<T>, kBackward>
          <<<grid_for(t.blocks), t.threads, 0, stream>>>(x, grad_y, mean, a, t.tiles, workspace);
    } else {
      channel_sums_partial_kernel<T, 1, kBackward>
          <<<grid_for(t.blocks), t.threads, 0, stream>>>(x, grad_y, mean, a, t.tiles, workspace);
    }
    HPA_CHECK_LAUNCH("batchnorm channel_sums_partial_kernel");
  }
  constexpr int kChannelsPerBlock = kMaxThreads / kWarp;
  channel_sums_finish_kernel<T, kBackward>
      <<<grid_for(ceil_div(a.c, kChannelsPerBlock)), kMaxThreads, 0, stream>>>(workspace, a.n * t.tiles, x,
                                                                               invstd, a, out0, out1);
  HPA_CHECK_LAUNCH("batchnorm channel_sums_finish_kernel");
}

// One thread per channel.
template <class T>
__global__ void setup_channels_kernel(BatchNormChannelSetup<T> s) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c < s.c) batchnorm_setup_channel(s, c);
}

// Plane tiles (see the top of the file): y = batchnorm_normalize(x, scale[c], shift[c]).
template <class T, int kVec>
__global__ void __launch_bounds__(kMaxThreads)
    forward_kernel(const T* __restrict__ x, const double* __restrict__ scale,
                   const double* __restrict__ shift, BatchNormArgs a, int64_t tiles, T* __restrict__ y) {
  using P = Pack<T, kVec>;
  const int64_t packs = a.hw / kVec;
  const int64_t blocks = a.n * a.c * tiles;
  for (int64_t b = blockIdx.x; b < blocks; b += gridDim.x) {
    const TileCoords t = tile_coords(b, tiles, a.c);
    const T s = static_cast<T>(scale[t.channel]), sh = static_cast<T>(shift[t.channel]);
    const P* in = reinterpret_cast<const P*>(x + t.plane * a.hw);
    P* out = reinterpret_cast<P*>(y + t.plane * a.hw);
    P v[kPacksPerThread] = {};
#pragma unroll
    for (int u = 0; u < kPacksPerThread; ++u) {
      const int64_t i = t.first_pack + int64_t{u} * blockDim.x;
      if (i < packs) v[u] = in[i];
    }
#pragma unroll
    for (int u = 0; u < kPacksPerThread; ++u) {
      const int64_t i = t.first_pack + int64_t{u} * blockDim.x;
      if (i >= packs) break;
#pragma unroll
      for (int k = 0; k < kVec; ++k) v[u].v[k] = batchnorm_normalize(v[u].v[k], s, sh);
      out[i] = v[u];
    }
  }
}

// Plane tiles: grad_x = batchnorm_training_grad_at(channel constants, g, x).
template <class T, int kVec>
__global__ void __launch_bounds__(kMaxThreads)
    backward_training_kernel(const T* __restrict__ grad_y, const T* __restrict__ x,
                             const double* __restrict__ mean, const double* __restrict__ invstd,
                             const T* __restrict__ gamma, const double* __restrict__ sum_g,
                             const double* __restrict__ sum_g_xhat, BatchNormArgs a, int64_t tiles,
                             T* __restrict__ grad_x) {
  using P = Pack<T, kVec>;
  const int64_t packs = a.hw / kVec;
  const int64_t blocks = a.n * a.c * tiles;
  const double count = static_cast<double>(a.n * a.hw);
  for (int64_t b = blockIdx.x; b < blocks; b += gridDim.x) {
    const TileCoords t = tile_coords(b, tiles, a.c);
    const BatchNormGradChannel k =
        batchnorm_grad_channel(gamma, mean, invstd, sum_g, sum_g_xhat, count, t.channel);
    const P* gp = reinterpret_cast<const P*>(grad_y + t.plane * a.hw);
    const P* xp = reinterpret_cast<const P*>(x + t.plane * a.hw);
    P* out = reinterpret_cast<P*>(grad_x + t.plane * a.hw);
    P gv[kPacksPerThread] = {}, xv[kPacksPerThread] = {};
#pragma unroll
    for (int u = 0; u < kPacksPerThread; ++u) {
      const int64_t i = t.first_pack + int64_t{u} * blockDim.x;
      if (i < packs) {
        gv[u] = gp[i];
        xv[u] = xp[i];
      }
    }
#pragma unroll
    for (int u = 0; u < kPacksPerThread; ++u) {
      const int64_t i = t.first_pack + int64_t{u} * blockDim.x;
      if (i >= packs) break;
#pragma unroll
      for (int e = 0; e < kVec; ++e) gv[u].v[e] = batchnorm_training_grad_at(k, gv[u].v[e], xv[u].v[e]);
      out[i] = gv[u];
    }
  }
}

// Plane tiles: grad_x = g * (gamma[c] * invstd[c]).
template <class T, int kVec>
__global__ void __launch_bounds__(kMaxThreads)
    backward_eval_kernel(const T* __restrict__ grad_y, const double* __restrict__ invstd,
                         const T* __restrict__ gamma, BatchNormArgs a, int64_t tiles,
                         T* __restrict__ grad_x) {
  using P = Pack<T, kVec>;
  const int64_t packs = a.hw / kVec;
  const int64_t blocks = a.n * a.c * tiles;
  for (int64_t b = blockIdx.x; b < blocks; b += gridDim.x) {
    const TileCoords t = tile_coords(b, tiles, a.c);
    const T s = static_cast<T>(batchnorm_param_or(gamma, t.channel, 1.0) * invstd[t.channel]);
    const P* gp = reinterpret_cast<const P*>(grad_y + t.plane * a.hw);
    P* out = reinterpret_cast<P*>(grad_x + t.plane * a.hw);
    P v[kPacksPerThread] = {};
#pragma unroll
    for (int u = 0; u < kPacksPerThread; ++u) {
      const int64_t i = t.first_pack + int64_t{u} * blockDim.x;
      if (i < packs) v[u] = gp[i];
    }
#pragma unroll
    for (int u = 0; u < kPacksPerThread; ++u) {
      const int64_t i = t.first_pack + int64_t{u} * blockDim.x;
      if (i >= packs) break;
#pragma unroll
      for (int k = 0; k < kVec; ++k) v[u].v[k] = v[u].v[k] * s;
      out[i] = v[u];
    }
  }
}

}  // namespace

int64_t batchnorm_cuda_workspace_elements(const BatchNormArgs& a) {
  // Single-element packs give the most tiles, so their count bounds both element types.
  return std::max<int64_t>(2 * a.c * a.n * plane_tiling(a, 1).tiles, 1);
}

template <class T>
void batchnorm_stats_cuda(const T* x, const BatchNormArgs& a, double* mean, double* var, double* workspace,
                          Stream stream) {
  HPA_NVTX_RANGE("batchnorm_stats_cuda");
  HPA_CHECK(a.c == 0 || a.n * a.hw > 0, "batchnorm_stats_cuda: needs at least one value per channel, got n ",
            a.n, ", hw ", a.hw);
  channel_sums_cuda<T, false>(x, nullptr, nullptr, nullptr, a, mean, var, workspace, stream);
}

template <class T>
void batchnorm_setup_channels_cuda(const BatchNormChannelSetup<T>& s, Stream stream) {
  HPA_NVTX_RANGE("batchnorm_setup_channels_cuda");
  if (s.c == 0) return;
  setup_channels_kernel<T><<<grid_for(ceil_div(s.c, kMaxThreads)), kMaxThreads, 0, stream>>>(s);
  HPA_CHECK_LAUNCH("batchnorm setup_channels_kernel");
}

template <class T>
void batchnorm_forward_cuda(const T* x, const double* scale, const double* shift, const BatchNormArgs& a,
                            T* y, Stream stream) {
  HPA_NVTX_RANGE("batchnorm_forward_cuda");
  const bool vec = vectorizable<T>(a, {x, y});
  const Tiling t = plane_tiling(a, vec ? kPackOf<T> : 1);
  if (t.blocks == 0) return;
  if (vec) {
    forward_kernel<T, kPackOf<T>>
        <<<grid_for(t.blocks), t.threads, 0, stream>>>(x, scale, shift, a, t.tiles, y);
  } else {
    forward_kernel<T, 1><<<grid_for(t.blocks), t.threads, 0, stream>>>(x, scale, shift, a, t.tiles, y);
  }
  HPA_CHECK_LAUNCH("batchnorm forward_kernel");
}

template <class T>
void batchnorm_backward_reduce_cuda(const T* grad_y, const T* x, const double* mean, const double* invstd,
                                    const BatchNormArgs& a, double* sum_g, double* sum_g_xhat,
                                    double* workspace, Stream stream) {
  HPA_NVTX_RANGE("batchnorm_backward_reduce_cuda");
  channel_sums_cuda<T, true>(x, grad_y, mean, invstd, a, sum_g, sum_g_xhat, workspace, stream);
}

template <class T>
void batchnorm_backward_training_cuda(const T* grad_y, const T* x, const double* mean, const double* invstd,
                                      const T* gamma, const double* sum_g, const double* sum_g_xhat,
                                      const BatchNormArgs& a, T* grad_x, Stream stream) {
  HPA_NVTX_RANGE("batchnorm_backward_training_cuda");
  const bool vec = vectorizable<T>(a, {grad_y, x, grad_x});
  const Tiling t = plane_tiling(a, vec ? kPackOf<T> : 1);
  if (t.blocks == 0) return;
  if (vec) {
    backward_training_kernel<T, kPackOf<T>><<<grid_for(t.blocks), t.threads, 0, stream>>>(
        grad_y, x, mean, invstd, gamma, sum_g, sum_g_xhat, a, t.tiles, grad_x);
  } else {
    backward_training_kernel<T, 1><<<grid_for(t.blocks), t.threads, 0, stream>>>(
        grad_y, x, mean, invstd, gamma, sum_g, sum_g_xhat, a, t.tiles, grad_x);
  }
  HPA_CHECK_LAUNCH("batchnorm backward_training_kernel");
}

template <class T>
void batchnorm_backward_eval_cuda(const T* grad_y, const double* invstd, const T* gamma,
                                  const BatchNormArgs& a, T* grad_x, Stream stream) {
  HPA_NVTX_RANGE("batchnorm_backward_eval_cuda");
  const bool vec = vectorizable<T>(a, {grad_y, grad_x});
  const Tiling t = plane_tiling(a, vec ? kPackOf<T> : 1);
  if (t.blocks == 0) return;
  if (vec) {
    backward_eval_kernel<T, kPackOf<T>>
        <<<grid_for(t.blocks), t.threads, 0, stream>>>(grad_y, invstd, gamma, a, t.tiles, grad_x);
  } else {
    backward_eval_kernel<T, 1>
        <<<grid_for(t.blocks), t.threads, 0, stream>>>(grad_y, invstd, gamma, a, t.tiles, grad_x);
  }
  HPA_CHECK_LAUNCH("batchnorm backward_eval_kernel");
}

#define HPA_INSTANTIATE_BATCHNORM_CUDA(T)                                                                    \
  template void batchnorm_stats_cuda<T>(const T*, const BatchNormArgs&, double*, double*, double*, Stream);  \
  template void batchnorm_setup_channels_cuda<T>(const BatchNormChannelSetup<T>&, Stream);                   \
  template void batchnorm_forward_cuda<T>(const T*, const double*, const double*, const BatchNormArgs&, T*,  \
                                          Stream);                                                           \
  template void batchnorm_backward_reduce_cuda<T>(const T*, const T*, const double*, const double*,          \
                                                  const BatchNormArgs&, double*, double*, double*, Stream);  \
  template void batchnorm_backward_training_cuda<T>(const T*, const T*, const double*, const double*,        \
                                                    const T*, const double*, const double*,                  \
                                                    const BatchNormArgs&, T*, Stream);                       \
  template void batchnorm_backward_eval_cuda<T>(const T*, const double*, const T*, const BatchNormArgs&, T*, \
                                                Stream);

HPA_INSTANTIATE_BATCHNORM_CUDA(float)
HPA_INSTANTIATE_BATCHNORM_CUDA(double)
#undef HPA_INSTANTIATE_BATCHNORM_CUDA

}  // namespace hpa::kernels
