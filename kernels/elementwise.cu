// CUDA twins of the elementwise kernels (kernels/elementwise.h). The per-element math is
// the functors of elementwise.h, chosen by the same visit_* helpers as the CPU loops.
//
// All of these are memory-bound, so the kernels are built around the memory traffic:
//  - contiguous streams are read and written a 16-byte pack at a time (4 floats or 2
//    doubles) when the pointers allow it, so each warp moves 512 bytes per instruction;
//  - broadcast operands are walked as rows of the innermost merged dimension (see
//    BroadcastArgs), with the index arithmetic done once per tile of a row instead of once
//    per element; only rows too short to fill a tile fall back to per-element indexing.
// Every kernel uses 64-bit element indices (or grid-stride loops over them), so tensors
// past 2^31 elements work; n == 0 launches nothing.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda_check.h"
#include "kernels/elementwise.h"

namespace hpa::kernels {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;  // beyond this, blocks loop (grid-stride)
// Elements of a row one block handles in one step of the row kernel.
constexpr int64_t kRowTile = kThreads * 16;
// Rows shorter than this go to the per-element kernel: a row tile would leave most of a
// block idle.
constexpr int64_t kMinRowKernelInner = 1024;

int blocks_for(int64_t items, int64_t items_per_block) {
  const int64_t blocks = (items + items_per_block - 1) / items_per_block;
  return static_cast<int>(std::clamp<int64_t>(blocks, 1, kMaxBlocks));
}

// kVec consecutive elements moved by one 16-byte (or narrower) access.
template <class T, int kVec>
struct alignas(sizeof(T) * kVec) Pack {
  T v[kVec];
};
template <class T>
constexpr int kPackOf = 16 / static_cast<int>(sizeof(T));

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <class T, int kVec>
__device__ __forceinline__ Pack<T, kVec> load_pack(const T* p) {
  return *reinterpret_cast<const Pack<T, kVec>*>(p);
}
template <class T, int kVec>
__device__ __forceinline__ void store_pack(T* p, const Pack<T, kVec>& v) {
  *reinterpret_cast<Pack<T, kVec>*>(p) = v;
}

// ---- flat maps: y = f(x) and out = f(g, s) --------------------------------------------

// Grid: global thread t handles packs t, t + (threads in the grid), ...; a pack is kVec
// consecutive elements. The n % kVec elements after the last whole pack are done one per
// thread by global threads 0 .. n % kVec - 1.
template <class T, int kVec, class F>
__global__ void map_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, F f) {
  const int64_t packs = n / kVec;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t p = tid; p < packs; p += step) {
    const Pack<T, kVec> in = load_pack<T, kVec>(x + p * kVec);
    Pack<T, kVec> out;
#pragma unroll
    for (int k = 0; k < kVec; ++k) out.v[k] = f(in.v[k]);
    store_pack<T, kVec>(y + p * kVec, out);
  }
  const int64_t tail = packs * kVec + tid;
  if (tail < n) y[tail] = f(x[tail]);
}

// As map_kernel, reading two streams.
template <class T, int kVec, class F>
__global__ void zip_kernel(const T* __restrict__ g, const T* __restrict__ s, T* __restrict__ out, int64_t n,
                           F f) {
  const int64_t packs = n / kVec;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t p = tid; p < packs; p += step) {
    const Pack<T, kVec> vg = load_pack<T, kVec>(g + p * kVec);
    const Pack<T, kVec> vs = load_pack<T, kVec>(s + p * kVec);
    Pack<T, kVec> vo;
#pragma unroll
    for (int k = 0; k < kVec; ++k) vo.v[k] = f(vg.v[k], vs.v[k]);
    store_pack<T, kVec>(out + p * kVec, vo);
  }
  const int64_t tail = packs * kVec + tid;
  if (tail < n) out[tail] = f(g[tail], s[tail]);
}

template <class T, class F>
void launch_map(const T* x, T* y, int64_t n, F f, Stream stream) {
  if (n == 0) return;
  constexpr int kVec = kPackOf<T>;
  if (aligned16(x) && aligned16(y)) {
    map_kernel<T, kVec, F><<<blocks_for(n / kVec + 1, kThreads), kThreads, 0, stream>>>(x, y, n, f);
  } else {
    map_kernel<T, 1, F><<<blocks_for(n, kThreads), kThreads, 0, stream>>>(x, y, n, f);
  }
  HPA_CHECK_LAUNCH("map_kernel");
}

template <class T, class F>
void launch_zip(const T* g, const T* s, T* out, int64_t n, F f, Stream stream) {
  if (n == 0) return;
  constexpr int kVec = kPackOf<T>;
  if (aligned16(g) && aligned16(s) && aligned16(out)) {
    zip_kernel<T, kVec, F><<<blocks_for(n / kVec + 1, kThreads), kThreads, 0, stream>>>(g, s, out, n, f);
  } else {
    zip_kernel<T, 1, F><<<blocks_for(n, kThreads), kThreads, 0, stream>>>(g, s, out, n, f);
  }
  HPA_CHECK_LAUNCH("zip_kernel");
}

// ---- broadcasting binary ops ----------------------------------------------------------

// Offsets of output row `row` (a linear index over all but the innermost merged
// dimension) in a and b.
__device__ __forceinline__ void row_offsets(const BroadcastArgs& args, int64_t row, int64_t* offset_a,
                                            int64_t* offset_b) {
  int64_t oa = 0, ob = 0;
#pragma unroll
  for (int d = kMaxBroadcastDims - 2; d >= 0; --d) {
    if (d < args.ndim - 1) {
      const int64_t size = args.sizes[d];
      const int64_t coord = row % size;
      row /= size;
      oa += coord * args.stride_a[d];
      ob += coord * args.stride_b[d];
    }
  }
  *offset_a = oa;
  *offset_b = ob;
}

// Grid: block b handles tiles b, b + gridDim.x, ...; tile t is elements
// [j0, j0 + kRowTile) of output row t / tiles_per_row, j0 = (t % tiles_per_row) * kRowTile.
// Thread 0 turns the row into the operands' offsets (the only divisions) and shares them;
// thread t then handles packs t, t + kThreads, ... of kVec elements of the tile (launched
// with kThreads threads): an operand with inner stride 1 is read a pack at a time, one with
// inner stride 0 is a single value for the whole row. kVec > 1 needs inner % kVec == 0 and
// 16-byte aligned bases, so every pack is aligned.
template <class T, int kVec, class F>
__global__ void __launch_bounds__(kThreads)
    broadcast_rows_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out,
                          BroadcastArgs args, int64_t tiles_per_row, int64_t tiles, F f) {
  constexpr bool kReadsB = reads_second_operand<F>::value;
  constexpr int kPacksPerThread = static_cast<int>(kRowTile / (kThreads * kVec));
  __shared__ int64_t shared_offsets[2];
  const int last = args.ndim - 1;
  const int64_t inner = args.sizes[last];
  const bool a_runs = args.stride_a[last] != 0, b_runs = args.stride_b[last] != 0;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t row = tile / tiles_per_row;
    const int64_t j0 = (tile - row * tiles_per_row) * kRowTile;
    if (threadIdx.x == 0) row_offsets(args, row, &shared_offsets[0], &shared_offsets[1]);
    __syncthreads();
    const T* pa = a + shared_offsets[0] + (a_runs ? j0 : 0);
    const T* pb = b + shared_offsets[1] + (b_runs ? j0 : 0);
    __syncthreads();  // every thread has read the offsets before thread 0 overwrites them
    T* po = out + row * inner + j0;
    const int64_t len = inner - j0 < kRowTile ? inner - j0 : kRowTile;
    const T a_value = a_runs ? T(0) : pa[0];
    const T b_value = (b_runs || !kReadsB) ? T(0) : pb[0];
    // All loads of the thread's packs are issued before the first store, so each thread
    // keeps several 16-byte loads in flight.
    Pack<T, kVec> va[kPacksPerThread], vb[kPacksPerThread];
#pragma unroll
    for (int u = 0; u < kPacksPerThread; ++u) {
      const int64_t j = (static_cast<int64_t>(u) * kThreads + threadIdx.x) * kVec;
      if (j >= len) continue;
      if (a_runs) {
        va[u] = load_pack<T, kVec>(pa + j);
      } else {
#pragma unroll
        for (int k = 0; k < kVec; ++k) va[u].v[k] = a_value;
      }
      if (kReadsB && b_runs) {
        vb[u] = load_pack<T, kVec>(pb + j);
      } else {
#pragma unroll
        for (int k = 0; k < kVec; ++k) vb[u].v[k] = b_value;
      }
    }
#pragma unroll
    for (int u = 0; u < kPacksPerThread; ++u) {
      const int64_t j = (static_cast<int64_t>(u) * kThreads + threadIdx.x) * kVec;
      if (j >= len) continue;
      Pack<T, kVec> vo;
#pragma unroll
      for (int k = 0; k < kVec; ++k) vo.v[k] = f(va[u].v[k], vb[u].v[k]);
      store_pack<T, kVec>(po + j, vo);
    }
  }
}

// Grid: global thread t handles output elements t, t + (threads in the grid), ...; each
// finds its operands' offsets by dividing its index by the merged sizes. Index is 32-bit
// when the output fits, which makes the divisions several times cheaper.
template <class T, class Index, class F>
__global__ void broadcast_elements_kernel(const T* __restrict__ a, const T* __restrict__ b,
                                          T* __restrict__ out, BroadcastArgs args, F f) {
  constexpr bool kReadsB = reads_second_operand<F>::value;
  const Index n = static_cast<Index>(args.numel);
  const Index step = static_cast<Index>(gridDim.x) * blockDim.x;
  for (Index i = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    Index rest = i;
    int64_t oa = 0, ob = 0;
#pragma unroll
    for (int d = kMaxBroadcastDims - 1; d >= 0; --d) {
      if (d < args.ndim) {
        const Index size = static_cast<Index>(args.sizes[d]);
        const Index coord = rest % size;
        rest /= size;
        oa += static_cast<int64_t>(coord) * args.stride_a[d];
        ob += static_cast<int64_t>(coord) * args.stride_b[d];
      }
    }
    out[i] = f(a[oa], kReadsB ? b[ob] : T(0));
  }
}

template <class T, int kVec, class F>
void launch_rows(const T* a, const T* b, T* out, const BroadcastArgs& args, F f, Stream stream) {
  const int64_t inner = args.sizes[args.ndim - 1];
  const int64_t tiles_per_row = (inner + kRowTile - 1) / kRowTile;
  const int64_t tiles = args.numel / inner * tiles_per_row;
  broadcast_rows_kernel<T, kVec, F>
      <<<blocks_for(tiles, 1), kThreads, 0, stream>>>(a, b, out, args, tiles_per_row, tiles, f);
  HPA_CHECK_LAUNCH("broadcast_rows_kernel");
}

// Picks the kernel for a broadcast of any shape (see the file comment).
template <class T, class F>
void launch_broadcast(const T* a, const T* b, T* out, const BroadcastArgs& args, F f, Stream stream) {
  if (args.numel == 0) return;
  const int last = args.ndim - 1;
  const int64_t inner = args.sizes[last];
  if (inner < kMinRowKernelInner) {
    if (args.numel <= INT32_MAX) {
      broadcast_elements_kernel<T, uint32_t, F>
          <<<blocks_for(args.numel, kThreads), kThreads, 0, stream>>>(a, b, out, args, f);
    } else {
      broadcast_elements_kernel<T, int64_t, F>
          <<<blocks_for(args.numel, kThreads), kThreads, 0, stream>>>(a, b, out, args, f);
    }
    HPA_CHECK_LAUNCH("broadcast_elements_kernel");
    return;
  }
  constexpr int kVec = kPackOf<T>;
  const bool a_runs = args.stride_a[last] != 0, b_runs = args.stride_b[last] != 0;
  const bool aligned = aligned16(out) && (!a_runs || aligned16(a)) && (!b_runs || aligned16(b));
  const int64_t rows = args.numel / inner;
  if (aligned && inner % kVec == 0) {
    launch_rows<T, kVec>(a, b, out, args, f, stream);
  } else if (aligned && rows == 1) {
    // One long row whose length is not a whole number of packs: packs for the bulk, then
    // the last inner % kVec elements as a row of their own.
    const int64_t bulk = inner / kVec * kVec;
    BroadcastArgs head = args, tail = args;
    head.sizes[last] = head.numel = bulk;
    tail.sizes[last] = tail.numel = inner - bulk;
    launch_rows<T, kVec>(a, b, out, head, f, stream);
    launch_rows<T, 1>(a + (a_runs ? bulk : 0), b + (b_runs ? bulk : 0), out + bulk, tail, f, stream);
  } else {
    launch_rows<T, 1>(a, b, out, args, f, stream);
  }
}

}  // namespace

template <class T>
void binary_forward_cuda(BinaryOp op, const T* a, const T* b, T* out, const BroadcastArgs& args,
                         Stream stream) {
  HPA_NVTX_RANGE("binary_forward_cuda");
  visit_binary(op, [&](auto f) { launch_broadcast(a, b, out, args, f, stream); });
}

template <class T>
void broadcast_scaled_cuda(const T* src, T* out, const BroadcastArgs& args, T scale, Stream stream) {
  HPA_NVTX_RANGE("broadcast_scaled_cuda");
  BroadcastArgs only_a = args;  // b is src too; ScaleFirstFn never reads it
  for (int d = 0; d < args.ndim; ++d) only_a.stride_b[d] = args.stride_a[d];
  launch_broadcast(src, src, out, only_a, ScaleFirstFn<T>{scale}, stream);
}

template <class T>
void unary_forward_cuda(UnaryOp op, const T* x, T* y, const UnaryArgs& args, Stream stream) {
  HPA_NVTX_RANGE("unary_forward_cuda");
  visit_unary_forward(op, static_cast<T>(args.scalar), [&](auto f) { launch_map(x, y, args.n, f, stream); });
}

template <class T>
void unary_backward_cuda(UnaryOp op, const T* grad_y, const T* saved, T* grad_x, const UnaryArgs& args,
                         Stream stream) {
  HPA_NVTX_RANGE("unary_backward_cuda");
  visit_unary_backward(op, static_cast<T>(args.scalar), [&](auto f) {
    if constexpr (decltype(f)::kUsesSaved) {
      launch_zip(grad_y, saved, grad_x, args.n, f, stream);
    } else {
      launch_map(grad_y, grad_x, args.n, f, stream);
    }
  });
}

#define HPA_INSTANTIATE_ELEMENTWISE_CUDA(T)                                                             \
  template void binary_forward_cuda<T>(BinaryOp, const T*, const T*, T*, const BroadcastArgs&, Stream); \
  template void broadcast_scaled_cuda<T>(const T*, T*, const BroadcastArgs&, T, Stream);                \
  template void unary_forward_cuda<T>(UnaryOp, const T*, T*, const UnaryArgs&, Stream);                 \
  template void unary_backward_cuda<T>(UnaryOp, const T*, const T*, T*, const UnaryArgs&, Stream);
HPA_INSTANTIATE_ELEMENTWISE_CUDA(float)
HPA_INSTANTIATE_ELEMENTWISE_CUDA(double)
#undef HPA_INSTANTIATE_ELEMENTWISE_CUDA

}  // namespace hpa::kernels
