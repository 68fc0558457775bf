// CUDA twin of kernels/sgd.h: the fused SGD update over all parameters in one launch (a
// multi-tensor apply), and the device step counter of the scheduled rate.
//
// The update is memory-bound: per element it reads w, v, g and writes w, v (20 bytes in
// f32), and does a handful of flops. So the kernel is built around the traffic:
//  - the tensor list travels in the kernel's parameter block (__grid_constant__, read in
//    place, no device-side table to upload and so no host synchronization);
//  - every tensor is cut into chunks of kChunk elements, one block per chunk, so a big
//    conv weight and a 64-element BN bias share one launch and no block is idle long;
//  - a chunk is moved in 16-byte packs (4 floats or 2 doubles) when the tensor's three
//    pointers are 16-byte aligned, each thread loading several packs before it stores any,
//    so enough independent loads are in flight to cover the memory latency.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda_check.h"
#include "kernels/sgd.h"

namespace hpa::kernels {

namespace {

constexpr int kThreads = 256;
// Elements per block: a multiple of every pack width, so chunk starts keep the alignment.
constexpr int64_t kChunk = 32768;
constexpr int kUnroll = 4;                      // packs per thread per loop trip
constexpr int64_t kMaxGridBlocks = 2147483647;  // gridDim.x limit

template <class T>
struct TensorTable {
  T* w[kSgdMaxTensorsPerLaunch];
  T* v[kSgdMaxTensorsPerLaunch];
  const T* g[kSgdMaxTensorsPerLaunch];
  int64_t n[kSgdMaxTensorsPerLaunch];
  // Tensor t owns blocks [first_block[t], first_block[t + 1]); strictly increasing, since
  // empty tensors are left out.
  int64_t first_block[kSgdMaxTensorsPerLaunch + 1];
  uint8_t group[kSgdMaxTensorsPerLaunch];
  uint8_t packed[kSgdMaxTensorsPerLaunch];  // 1: w, v, g all 16-byte aligned
  int count;
};

struct GroupTable {
  SgdArgs args[kSgdMaxGroups];
  double lr_scale[kSgdMaxGroups];
  CosineCyclicArgs schedule;
  const int64_t* step;  // null: each group's args.lr
};

// Kernel parameters are limited to 32764 bytes (CUDA 12.1+, sm_70+).
static_assert(sizeof(TensorTable<double>) + sizeof(GroupTable) <= 32764,
              "SGD tables exceed the kernel parameter limit");

template <class T, int kVec>
struct alignas(sizeof(T) * kVec) Pack {
  T v[kVec];
};

// The tensor that owns block b: the last t with first_block[t] <= b (binary search).
template <class T>
__device__ __forceinline__ int tensor_of_block(const TensorTable<T>& table, int64_t b) {
  int lo = 0, hi = table.count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (table.first_block[mid] <= b)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

// Grid: one block per chunk of kChunk elements of one tensor (the table maps block to
// tensor and chunk); the block's threads stride over the chunk a 16-byte pack at a time,
// then over the elements after the last whole pack one at a time.
template <class T>
__global__ void __launch_bounds__(kThreads)
    sgd_multi_tensor_kernel(const __grid_constant__ TensorTable<T> table,
                            const __grid_constant__ GroupTable groups) {
  const int64_t block = blockIdx.x;
  const int t = tensor_of_block(table, block);
  const int group = table.group[t];
  SgdArgs args = groups.args[group];
  if (groups.step) args.lr = cosine_cyclic_lr(groups.schedule, *groups.step, groups.lr_scale[group]);

  const int64_t begin = (block - table.first_block[t]) * kChunk;
  const int64_t end = min(table.n[t], begin + kChunk);
  T* w = table.w[t];
  T* v = table.v[t];
  const T* g = table.g[t];

  int64_t scalar_begin = begin;
  if (table.packed[t]) {
    constexpr int kVec = 16 / static_cast<int>(sizeof(T));
    using P = Pack<T, kVec>;
    const int64_t packs = (end - begin) / kVec;
    // Each thread loads kUnroll packs of each stream before updating and storing any, so
    // 3 * kUnroll independent 16-byte loads are in flight (the compiler cannot reorder a
    // load past a store to another tensor on its own: it cannot prove they do not alias).
    for (int64_t first = threadIdx.x; first < packs; first += kThreads * kUnroll) {
      P wp[kUnroll], vp[kUnroll], gp[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t p = first + u * kThreads;
        if (p < packs) {
          wp[u] = *reinterpret_cast<const P*>(w + begin + p * kVec);
          vp[u] = *reinterpret_cast<const P*>(v + begin + p * kVec);
          gp[u] = *reinterpret_cast<const P*>(g + begin + p * kVec);
        }
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t p = first + u * kThreads;
        if (p < packs) {
#pragma unroll
          for (int k = 0; k < kVec; ++k) sgd_update_element(wp[u].v[k], vp[u].v[k], gp[u].v[k], args);
          *reinterpret_cast<P*>(w + begin + p * kVec) = wp[u];
          *reinterpret_cast<P*>(v + begin + p * kVec) = vp[u];
        }
      }
    }
    scalar_begin = begin + packs * kVec;
  }
  for (int64_t i = scalar_begin + threadIdx.x; i < end; i += kThreads)
    sgd_update_element(w[i], v[i], g[i], args);
}

// Grid: one thread.
__global__ void advance_step_kernel(int64_t* step) { *step += 1; }

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

template <class T>
void sgd_update_multi_tensor_cuda(const SgdTensorRef<T>* tensors, int64_t count, const SgdGroupArgs* groups,
                                  int num_groups, const SgdDeviceSchedule* schedule, Stream stream) {
  HPA_NVTX_RANGE("sgd_update_multi_tensor");
  HPA_CHECK(num_groups >= 1 && num_groups <= kSgdMaxGroups, "sgd_update_multi_tensor_cuda: ", num_groups,
            " parameter groups; the fused update takes 1 to ", kSgdMaxGroups);
  GroupTable group_table{};
  for (int i = 0; i < num_groups; ++i) {
    group_table.args[i] = groups[i].args;
    group_table.lr_scale[i] = groups[i].lr_scale;
  }
  if (schedule) {
    HPA_CHECK(schedule->step != nullptr, "sgd_update_multi_tensor_cuda: a schedule without a step counter");
    group_table.schedule = schedule->schedule;
    group_table.step = schedule->step;
  }

  // Large (about 9 KiB): static storage would not be thread-safe, the heap is not needed.
  TensorTable<T> table;
  int used = 0;
  int64_t blocks = 0;
  auto launch = [&] {
    if (used == 0) return;
    table.count = used;
    table.first_block[used] = blocks;
    sgd_multi_tensor_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(table, group_table);
    HPA_CHECK_LAUNCH("sgd_multi_tensor_kernel");
    used = 0;
    blocks = 0;
  };
  for (int64_t i = 0; i < count; ++i) {
    const SgdTensorRef<T>& ref = tensors[i];
    HPA_CHECK(ref.n >= 0, "sgd_update_multi_tensor_cuda: tensor ", i, " has a negative size ", ref.n);
    HPA_CHECK(ref.group >= 0 && ref.group < num_groups, "sgd_update_multi_tensor_cuda: tensor ", i,
              " names group ", ref.group, " of ", num_groups);
    if (ref.n == 0) continue;
    const int64_t chunks = (ref.n + kChunk - 1) / kChunk;
    HPA_CHECK(chunks <= kMaxGridBlocks, "sgd_update_multi_tensor_cuda: tensor ", i, " of ", ref.n,
              " elements is too large");
    if (used == kSgdMaxTensorsPerLaunch || blocks + chunks > kMaxGridBlocks) launch();
    table.w[used] = ref.w;
    table.v[used] = ref.v;
    table.g[used] = ref.g;
    table.n[used] = ref.n;
    table.first_block[used] = blocks;
    table.group[used] = static_cast<uint8_t>(ref.group);
    table.packed[used] = aligned16(ref.w) && aligned16(ref.v) && aligned16(ref.g) ? 1 : 0;
    blocks += chunks;
    ++used;
  }
  launch();
}

void sgd_advance_step_cuda(int64_t* step, Stream stream) {
  HPA_NVTX_RANGE("sgd_advance_step");
  advance_step_kernel<<<1, 1, 0, stream>>>(step);
  HPA_CHECK_LAUNCH("advance_step_kernel");
}

template void sgd_update_multi_tensor_cuda<float>(const SgdTensorRef<float>*, int64_t, const SgdGroupArgs*,
                                                  int, const SgdDeviceSchedule*, Stream);
template void sgd_update_multi_tensor_cuda<double>(const SgdTensorRef<double>*, int64_t, const SgdGroupArgs*,
                                                   int, const SgdDeviceSchedule*, Stream);

}  // namespace hpa::kernels
