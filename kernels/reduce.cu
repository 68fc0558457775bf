// CUDA twin of the sum reduction (kernels/reduce.h). The merged groups are split into the
// outer kept groups, the outer reduced groups and the innermost group, and one of two
// kernel shapes runs, as on the CPU:
//  - innermost group reduced (sum over H*W, over N,H,W, over everything): each output
//    sums `rows` runs of `inner` contiguous elements. The runs are cut into chunks (a
//    segment of one long run, or several whole short runs) whose size depends only on the
//    shape; a thread group (1 thread, a warp or a block, by the output's length) sums one
//    chunk, and if an output has several chunks a second pass adds their partials in
//    chunk order.
//  - innermost group kept (sum over N of [N, C], over N of NCHW): each thread sums one
//    output element down a range of rows, reading memory coalesced across the row; long
//    row ranges are cut into fixed row chunks and finished by a second pass the same way.
// Every sum is a double accumulated in a fixed order and combined by a fixed tree, never
// by atomics, so a result depends on the shape alone, not on timing or the GPU model.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda_check.h"
#include "kernels/reduce.h"

namespace hpa::kernels {

namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;
// Elements summed by one thread group before its partial is written (innermost reduced).
constexpr int64_t kChunk = 16384;
// Outputs at most this long are summed by one thread, up to kWarpMaxLength by one warp.
constexpr int64_t kThreadMaxLength = 32;
constexpr int64_t kWarpMaxLength = 4096;
// Innermost kept: rows per thread at least this many, and enough row chunks to give about
// kTargetThreads threads.
constexpr int64_t kMinRowsPerChunk = 32;
constexpr int64_t kTargetThreads = int64_t{1} << 18;

int blocks_for(int64_t items, int64_t items_per_block) {
  const int64_t blocks = (items + items_per_block - 1) / items_per_block;
  return static_cast<int>(std::clamp<int64_t>(blocks, 1, kMaxBlocks));
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <class T, int kVec>
struct alignas(sizeof(T) * kVec) Pack {
  T v[kVec];
};
template <class T>
constexpr int kPackOf = 16 / static_cast<int>(sizeof(T));

// Some of the outer groups, walked as one linear index (the last group fastest).
struct Walk {
  int n = 0;
  int64_t sizes[kMaxReduceDims] = {};
  int64_t strides[kMaxReduceDims] = {};
  int64_t count = 1;

  void add(int64_t size, int64_t stride) {
    sizes[n] = size;
    strides[n] = stride;
    ++n;
    count *= size;
  }
};

// Element offset of linear index `linear` (< w.count) of the walk.
__device__ __forceinline__ int64_t offset_of(const Walk& w, int64_t linear) {
  int64_t offset = 0;
#pragma unroll
  for (int d = kMaxReduceDims - 1; d >= 1; --d) {
    if (d < w.n) {
      offset += (linear % w.sizes[d]) * w.strides[d];
      linear /= w.sizes[d];
    }
  }
  return w.n > 0 ? offset + linear * w.strides[0] : 0;
}

// How one reduction is cut up; a function of the shape alone.
struct ReducePlan {
  Walk kept, reduced;  // the outer groups
  int64_t inner = 1;   // size of the innermost group
  bool inner_reduced = false;
  // Innermost reduced: `chunks` per output. segments_per_row > 0: chunk c is segment
  // c % segments_per_row (kChunk elements) of run c / segments_per_row; otherwise chunk c is
  // runs [c * rows_per_chunk, ...) whole. group: threads summing one chunk (1, 32 or 256).
  int64_t chunks = 1;
  int64_t segments_per_row = 0;
  int64_t rows_per_chunk = 1;
  int group = 1;
  // Innermost kept: row_chunks chunks of rows_per_chunk rows per output element.
  int64_t row_chunks = 1;
  // Doubles of workspace needed (0: one pass).
  int64_t workspace = 0;
};

ReducePlan make_plan(const ReduceArgs& args) {
  ReducePlan plan;
  const int last = args.ngroups - 1;
  plan.inner = args.sizes[last];
  plan.inner_reduced = args.reduced[last];
  int64_t stride = plan.inner;
  int64_t outer_strides[kMaxReduceDims] = {};
  for (int d = last - 1; d >= 0; --d) {
    outer_strides[d] = stride;
    stride *= args.sizes[d];
  }
  for (int d = 0; d < last; ++d)
    (args.reduced[d] ? plan.reduced : plan.kept).add(args.sizes[d], outer_strides[d]);

  const int64_t rows = plan.reduced.count;
  if (plan.inner_reduced) {
    const int64_t length = rows * plan.inner;  // elements per output
    if (plan.inner >= kChunk) {
      plan.segments_per_row = ceil_div(plan.inner, kChunk);
      plan.chunks = rows * plan.segments_per_row;
    } else {
      plan.rows_per_chunk = kChunk / plan.inner;
      plan.chunks = ceil_div(rows, plan.rows_per_chunk);
    }
    plan.group = length <= kThreadMaxLength ? 1 : length <= kWarpMaxLength ? kWarp : kThreads;
    plan.workspace = plan.chunks > 1 ? plan.kept.count * plan.chunks : 0;
  } else {
    const int64_t outputs = plan.kept.count * plan.inner;
    const int64_t wanted = std::max<int64_t>(1, kTargetThreads / std::max<int64_t>(outputs, 1));
    const int64_t chunks = std::min(ceil_div(rows, kMinRowsPerChunk), wanted);
    plan.rows_per_chunk = ceil_div(rows, std::max<int64_t>(chunks, 1));
    plan.row_chunks = ceil_div(rows, plan.rows_per_chunk);
    plan.workspace = plan.row_chunks > 1 ? outputs * plan.row_chunks : 0;
  }
  return plan;
}

// ---- group sums -----------------------------------------------------------------------

// Sum of v over a group of kGroup consecutive threads (1, a warp, or the whole block),
// combined by a fixed tree; the result is valid in the group's first thread. A block-wide
// group must be entered by every thread of the block.
template <int kGroup>
__device__ __forceinline__ double group_sum(double v) {
  if constexpr (kGroup == 1) {
    return v;
  } else {
#pragma unroll
    for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    if constexpr (kGroup == kWarp) {
      return v;
    } else {
      static_assert(kGroup == kThreads, "group is 1, a warp or the block");
      __shared__ double warp_sums[kThreads / kWarp];
      const int warp = static_cast<int>(threadIdx.x) / kWarp, lane = static_cast<int>(threadIdx.x) % kWarp;
      if (lane == 0) warp_sums[warp] = v;
      __syncthreads();
      double total = 0;
      if (warp == 0) {
        total = lane < kThreads / kWarp ? warp_sums[lane] : 0.0;
#pragma unroll
        for (int offset = kThreads / kWarp / 2; offset > 0; offset /= 2)
          total += __shfl_down_sync(0xffffffffu, total, offset);
      }
      __syncthreads();  // warp_sums is reused by the block's next chunk
      return total;
    }
  }
}

// This thread's share (elements lane*kVec + k*kGroup*kVec ...) of a contiguous run of
// `length` elements, in order; four packs are loaded before any is added so several loads
// are in flight. kVec > 1 needs p 16-byte aligned and length % kVec == 0.
template <class T, int kVec, int kGroup>
__device__ __forceinline__ double sum_run(const T* __restrict__ p, int64_t length, int lane) {
  using P = Pack<T, kVec>;
  const P* packs = reinterpret_cast<const P*>(p);
  const int64_t count = length / kVec;
  double acc = 0;
  int64_t q = lane;
  for (; q + 3 * kGroup < count; q += 4 * kGroup) {
    const P v0 = packs[q], v1 = packs[q + kGroup], v2 = packs[q + 2 * kGroup], v3 = packs[q + 3 * kGroup];
#pragma unroll
    for (int k = 0; k < kVec; ++k) acc += static_cast<double>(v0.v[k]);
#pragma unroll
    for (int k = 0; k < kVec; ++k) acc += static_cast<double>(v1.v[k]);
#pragma unroll
    for (int k = 0; k < kVec; ++k) acc += static_cast<double>(v2.v[k]);
#pragma unroll
    for (int k = 0; k < kVec; ++k) acc += static_cast<double>(v3.v[k]);
  }
  for (; q < count; q += kGroup) {
    const P v = packs[q];
#pragma unroll
    for (int k = 0; k < kVec; ++k) acc += static_cast<double>(v.v[k]);
  }
  return acc;
}

// ---- innermost group reduced ----------------------------------------------------------

// Grid: the block's threads form kThreads / kGroup groups; group g of block b takes work
// items (output o, chunk c) = item b * (groups per block) + g, then steps by the groups of
// the whole grid. The group's first thread writes out[o] (one chunk per output) or the
// chunk's partial.
template <class T, int kVec, int kGroup>
__global__ void reduce_inner_kernel(const T* __restrict__ x, T* __restrict__ out,
                                    double* __restrict__ partials, ReducePlan plan, double scale) {
  constexpr int kGroupsPerBlock = kThreads / kGroup;
  const int lane = static_cast<int>(threadIdx.x) % kGroup;
  const int64_t items = plan.kept.count * plan.chunks;
  const int64_t rows = plan.reduced.count;
  for (int64_t item = static_cast<int64_t>(blockIdx.x) * kGroupsPerBlock + threadIdx.x / kGroup; item < items;
       item += static_cast<int64_t>(gridDim.x) * kGroupsPerBlock) {
    const int64_t o = item / plan.chunks, c = item - o * plan.chunks;
    const T* base = x + offset_of(plan.kept, o);
    int64_t first_row, row_count, j0, length;
    if (plan.segments_per_row > 0) {
      first_row = c / plan.segments_per_row;
      j0 = (c - first_row * plan.segments_per_row) * kChunk;
      length = plan.inner - j0 < kChunk ? plan.inner - j0 : kChunk;
      row_count = 1;
    } else {
      first_row = c * plan.rows_per_chunk;
      row_count = rows - first_row < plan.rows_per_chunk ? rows - first_row : plan.rows_per_chunk;
      j0 = 0;
      length = plan.inner;
    }
    double acc;
    if (row_count == 1) {
      acc = sum_run<T, kVec, kGroup>(base + offset_of(plan.reduced, first_row) + j0, length, lane);
    } else {
      // Several short runs (row_count * length <= kChunk): 32-bit index arithmetic.
      acc = 0;
      const uint32_t total = static_cast<uint32_t>(row_count * length), run = static_cast<uint32_t>(length);
      for (uint32_t e = static_cast<uint32_t>(lane); e < total; e += kGroup) {
        const uint32_t r = e / run;
        acc += static_cast<double>(base[offset_of(plan.reduced, first_row + r) + (e - r * run)]);
      }
    }
    acc = group_sum<kGroup>(acc);
    if (lane == 0) {
      if (plan.chunks == 1) {
        out[o] = static_cast<T>(acc * scale);
      } else {
        partials[item] = acc;
      }
    }
  }
}

// Grid: one warp per output o (warps step by the grid's warps); lane l adds partials
// l, l + 32, ... of o in order, then a fixed shuffle tree.
template <class T>
__global__ void finish_inner_kernel(const double* __restrict__ partials, T* __restrict__ out, int64_t outputs,
                                    int64_t chunks, double scale) {
  constexpr int kWarpsPerBlock = kThreads / kWarp;
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp; o < outputs;
       o += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    double acc = 0;
    for (int64_t c = lane; c < chunks; c += kWarp) acc += partials[o * chunks + c];
    acc = group_sum<kWarp>(acc);
    if (lane == 0) out[o] = static_cast<T>(acc * scale);
  }
}

// ---- innermost group kept -------------------------------------------------------------

// Grid: global thread t handles items t, t + (threads in the grid), ...; item
// ((o * row_chunks + c) * inner + j) is output element (o, j) summed over row chunk c.
// Consecutive threads take consecutive j, so every row is read coalesced.
template <class T>
__global__ void reduce_outer_kernel(const T* __restrict__ x, T* __restrict__ out,
                                    double* __restrict__ partials, ReducePlan plan, double scale) {
  const int64_t items = plan.kept.count * plan.row_chunks * plan.inner;
  const int64_t rows = plan.reduced.count;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t item = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; item < items;
       item += step) {
    const int64_t j = item % plan.inner, oc = item / plan.inner;
    const int64_t o = oc / plan.row_chunks, c = oc - o * plan.row_chunks;
    const int64_t r0 = c * plan.rows_per_chunk;
    const int64_t r1 = rows - r0 < plan.rows_per_chunk ? rows : r0 + plan.rows_per_chunk;
    const T* base = x + offset_of(plan.kept, o) + j;
    double acc = 0;
    if (plan.reduced.n <= 1) {
      const int64_t row_stride = plan.reduced.n == 1 ? plan.reduced.strides[0] : 0;
#pragma unroll 4
      for (int64_t r = r0; r < r1; ++r) acc += static_cast<double>(base[r * row_stride]);
    } else {
      for (int64_t r = r0; r < r1; ++r) acc += static_cast<double>(base[offset_of(plan.reduced, r)]);
    }
    if (plan.row_chunks == 1) {
      out[o * plan.inner + j] = static_cast<T>(acc * scale);
    } else {
      partials[item] = acc;
    }
  }
}

// Grid: global thread t handles output elements t, t + (threads in the grid), ...; adds
// its row-chunk partials in chunk order.
template <class T>
__global__ void finish_outer_kernel(const double* __restrict__ partials, T* __restrict__ out, int64_t outer,
                                    int64_t row_chunks, int64_t inner, double scale) {
  const int64_t n = outer * inner;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const int64_t o = i / inner, j = i - o * inner;
    double acc = 0;
    for (int64_t c = 0; c < row_chunks; ++c) acc += partials[(o * row_chunks + c) * inner + j];
    out[i] = static_cast<T>(acc * scale);
  }
}

// Grid: one thread per output element (grid-stride): the empty reduction's 0 * scale.
template <class T>
__global__ void fill_empty_kernel(T* __restrict__ out, int64_t n, T value) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step)
    out[i] = value;
}

template <class T, int kVec>
void launch_inner(const T* x, T* out, double* partials, const ReducePlan& plan, double scale, Stream stream) {
  const int64_t items = plan.kept.count * plan.chunks;
  switch (plan.group) {
    case 1:
      reduce_inner_kernel<T, kVec, 1>
          <<<blocks_for(items, kThreads), kThreads, 0, stream>>>(x, out, partials, plan, scale);
      break;
    case kWarp:
      reduce_inner_kernel<T, kVec, kWarp>
          <<<blocks_for(items, kThreads / kWarp), kThreads, 0, stream>>>(x, out, partials, plan, scale);
      break;
    default:
      reduce_inner_kernel<T, kVec, kThreads>
          <<<blocks_for(items, 1), kThreads, 0, stream>>>(x, out, partials, plan, scale);
      break;
  }
  HPA_CHECK_LAUNCH("reduce_inner_kernel");
}

}  // namespace

int64_t reduce_sum_cuda_workspace_elements(const ReduceArgs& args) {
  if (args.numel_out == 0 || args.numel_in == 0) return 0;
  return make_plan(args).workspace;
}

template <class T>
void reduce_sum_cuda(const T* x, T* out, const ReduceArgs& args, double* workspace, Stream stream) {
  HPA_NVTX_RANGE("reduce_sum_cuda");
  if (args.numel_out == 0) return;
  if (args.numel_in == 0) {
    fill_empty_kernel<T><<<blocks_for(args.numel_out, kThreads), kThreads, 0, stream>>>(
        out, args.numel_out, static_cast<T>(0.0 * args.scale));
    HPA_CHECK_LAUNCH("fill_empty_kernel");
    return;
  }
  const ReducePlan plan = make_plan(args);
  HPA_CHECK(plan.workspace == 0 || workspace != nullptr, "reduce_sum_cuda: ", plan.workspace,
            " doubles of workspace needed, none given");
  if (plan.inner_reduced) {
    // Packs need every chunk start aligned: runs start at multiples of inner, segments at
    // multiples of kChunk.
    constexpr int kVec = kPackOf<T>;
    if (plan.inner % kVec == 0 && aligned16(x)) {
      launch_inner<T, kVec>(x, out, workspace, plan, args.scale, stream);
    } else {
      launch_inner<T, 1>(x, out, workspace, plan, args.scale, stream);
    }
    if (plan.chunks > 1) {
      finish_inner_kernel<T><<<blocks_for(plan.kept.count, kThreads / kWarp), kThreads, 0, stream>>>(
          workspace, out, plan.kept.count, plan.chunks, args.scale);
      HPA_CHECK_LAUNCH("finish_inner_kernel");
    }
  } else {
    const int64_t items = plan.kept.count * plan.row_chunks * plan.inner;
    reduce_outer_kernel<T>
        <<<blocks_for(items, kThreads), kThreads, 0, stream>>>(x, out, workspace, plan, args.scale);
    HPA_CHECK_LAUNCH("reduce_outer_kernel");
    if (plan.row_chunks > 1) {
      finish_outer_kernel<T><<<blocks_for(args.numel_out, kThreads), kThreads, 0, stream>>>(
          workspace, out, plan.kept.count, plan.row_chunks, plan.inner, args.scale);
      HPA_CHECK_LAUNCH("finish_outer_kernel");
    }
  }
}

template void reduce_sum_cuda<float>(const float*, float*, const ReduceArgs&, double*, Stream);
template void reduce_sum_cuda<double>(const double*, double*, const ReduceArgs&, double*, Stream);

}  // namespace hpa::kernels
