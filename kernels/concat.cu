// CUDA twin of concat / split (kernels/concat.h): one strided copy kernel moves every
// piece of a batch of up to kMaxPieces in one launch, in either direction.
//
// The copy unit is the widest of 16, 8, 4, 2, 1 bytes that divides the bytes of one step
// along the dimension and the alignment of every pointer, so a channel concat of NCHW
// f32 tensors moves 16-byte units like a memcpy. A piece's row (its part of one outer
// index) is walked in tiles of whole units; rows too short to fill a tile are walked as
// one flat range of the piece with a division per unit instead.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/concat.h"
#include "kernels/cuda_check.h"

namespace hpa::kernels {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxPieces = 64;
constexpr int kUnitsPerThread = 4;
constexpr int64_t kTileUnits = kThreads * kUnitsPerThread;
// Piece rows shorter than this (in units) are copied as one flat range.
constexpr int64_t kShortRowUnits = kThreads;
constexpr int64_t kMaxBlocks = 65535;

// One launch's pieces: each piece's bytes per outer index, where its part starts within a
// joined row, and its pointer (null: skip, for split's unwanted gradients).
struct PieceBatch {
  int count = 0;
  int64_t row_bytes[kMaxPieces] = {};
  int64_t joined_offset[kMaxPieces] = {};
  char* pointer[kMaxPieces] = {};
};

__host__ __device__ int64_t tiles_of(int64_t row_units, int64_t outer) {
  if (row_units == 0) return 0;
  if (row_units >= kShortRowUnits) return outer * ((row_units + kTileUnits - 1) / kTileUnits);
  return (outer * row_units + kTileUnits - 1) / kTileUnits;
}

// Grid: blockIdx.y is the piece of the batch; block x of that piece takes tiles x,
// x + gridDim.x, ... A tile is kTileUnits consecutive units of one piece row (long rows)
// or of the piece's flattened [outer, row] range (short rows); threads take consecutive
// units, so both sides are accessed coalesced. kToJoined: concat; otherwise split.
// Launched with kThreads threads.
template <class Unit, bool kToJoined>
__global__ void __launch_bounds__(kThreads)
    concat_kernel(char* joined, int64_t joined_row_bytes, int64_t outer, PieceBatch batch) {
  const int p = static_cast<int>(blockIdx.y);
  char* piece = batch.pointer[p];
  const int64_t row_units = batch.row_bytes[p] / static_cast<int64_t>(sizeof(Unit));
  if (piece == nullptr || row_units == 0) return;
  const int64_t joined_row_units = joined_row_bytes / static_cast<int64_t>(sizeof(Unit));
  Unit* piece_units = reinterpret_cast<Unit*>(piece);
  Unit* joined_units = reinterpret_cast<Unit*>(joined + batch.joined_offset[p]);
  const int64_t tiles = tiles_of(row_units, outer);
  for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    if (row_units >= kShortRowUnits) {
      const int64_t tiles_per_row = (row_units + kTileUnits - 1) / kTileUnits;
      const int64_t o = t / tiles_per_row;
      const int64_t k0 = (t - o * tiles_per_row) * kTileUnits;
      const int64_t end = row_units - k0 < kTileUnits ? row_units : k0 + kTileUnits;
      Unit* piece_row = piece_units + o * row_units;
      Unit* joined_row = joined_units + o * joined_row_units;
      const Unit* from = kToJoined ? piece_row : joined_row;
      Unit* to = kToJoined ? joined_row : piece_row;
      // Thread t moves units k0 + t + u * kThreads: all loads before the first store, so
      // several are in flight (the two sides never overlap).
      Unit v[kUnitsPerThread];
#pragma unroll
      for (int u = 0; u < kUnitsPerThread; ++u) {
        const int64_t k = k0 + u * kThreads + threadIdx.x;
        if (k < end) v[u] = from[k];
      }
#pragma unroll
      for (int u = 0; u < kUnitsPerThread; ++u) {
        const int64_t k = k0 + u * kThreads + threadIdx.x;
        if (k < end) to[k] = v[u];
      }
    } else {
      const int64_t total = outer * row_units;
      const int64_t u0 = t * kTileUnits;
      const int64_t end = total - u0 < kTileUnits ? total : u0 + kTileUnits;
      for (int64_t u = u0 + threadIdx.x; u < end; u += blockDim.x) {
        const int64_t o = u / row_units;
        Unit* joined_unit = joined_units + o * joined_row_units + (u - o * row_units);
        if (kToJoined) {
          *joined_unit = piece_units[u];
        } else {
          piece_units[u] = *joined_unit;
        }
      }
    }
  }
}

// 16-byte unit without CUDA's vector types in the signature.
struct alignas(16) Unit16 {
  uint64_t lo, hi;
};

template <bool kToJoined>
void launch_batch(char* joined, const ConcatArgs& args, const PieceBatch& batch, int unit, Stream stream) {
  int64_t max_tiles = 0;
  for (int i = 0; i < batch.count; ++i)
    if (batch.pointer[i]) max_tiles = std::max(max_tiles, tiles_of(batch.row_bytes[i] / unit, args.outer));
  if (max_tiles == 0) return;
  const dim3 grid(static_cast<unsigned>(std::min(max_tiles, kMaxBlocks)), static_cast<unsigned>(batch.count));
  const int64_t joined_row_bytes = args.total * args.inner_bytes;
  switch (unit) {
    case 16:
      concat_kernel<Unit16, kToJoined>
          <<<grid, kThreads, 0, stream>>>(joined, joined_row_bytes, args.outer, batch);
      break;
    case 8:
      concat_kernel<uint64_t, kToJoined>
          <<<grid, kThreads, 0, stream>>>(joined, joined_row_bytes, args.outer, batch);
      break;
    case 4:
      concat_kernel<uint32_t, kToJoined>
          <<<grid, kThreads, 0, stream>>>(joined, joined_row_bytes, args.outer, batch);
      break;
    case 2:
      concat_kernel<uint16_t, kToJoined>
          <<<grid, kThreads, 0, stream>>>(joined, joined_row_bytes, args.outer, batch);
      break;
    default:
      concat_kernel<uint8_t, kToJoined>
          <<<grid, kThreads, 0, stream>>>(joined, joined_row_bytes, args.outer, batch);
      break;
  }
  HPA_CHECK_LAUNCH("concat_kernel");
}

// Copies between `joined` and the pieces (concat when kToJoined), kMaxPieces at a time.
// The side being read is never written, whichever way the constness of the caller's
// pointers runs.
template <bool kToJoined>
void copy_pieces(const void* joined, const void* const* pieces, const ConcatArgs& args, Stream stream) {
  if (args.outer == 0 || args.inner_bytes == 0 || args.total == 0) return;
  auto misaligned = [](const void* p, int unit) { return reinterpret_cast<uintptr_t>(p) % unit != 0; };
  int unit = 16;
  while (unit > 1) {
    bool fits = args.inner_bytes % unit == 0 && !misaligned(joined, unit);
    for (int i = 0; fits && i < args.num_pieces; ++i) fits = !pieces[i] || !misaligned(pieces[i], unit);
    if (fits) break;
    unit /= 2;
  }
  char* joined_bytes = static_cast<char*>(const_cast<void*>(joined));
  int64_t start = 0;  // along the dimension
  for (int first = 0; first < args.num_pieces; first += kMaxPieces) {
    PieceBatch batch;
    batch.count = std::min(kMaxPieces, args.num_pieces - first);
    for (int i = 0; i < batch.count; ++i) {
      const int64_t size = args.sizes[first + i];
      batch.row_bytes[i] = size * args.inner_bytes;
      batch.joined_offset[i] = start * args.inner_bytes;
      batch.pointer[i] = static_cast<char*>(const_cast<void*>(pieces[first + i]));
      start += size;
    }
    launch_batch<kToJoined>(joined_bytes, args, batch, unit, stream);
  }
}

}  // namespace

void concat_cuda(const void* const* pieces, void* joined, const ConcatArgs& args, Stream stream) {
  HPA_NVTX_RANGE("concat_cuda");
  copy_pieces<true>(joined, pieces, args, stream);
}

void split_cuda(const void* joined, void* const* pieces, const ConcatArgs& args, Stream stream) {
  HPA_NVTX_RANGE("split_cuda");
  copy_pieces<false>(joined, pieces, args, stream);
}

}  // namespace hpa::kernels
