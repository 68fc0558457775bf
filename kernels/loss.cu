// CUDA twin of kernels/loss.h: per-sample BCE / focal loss, its fused gradient and the
// op's value checks in one kernel, and the backward's row scale.
//
// Design rules:
//  - one warp per sample row: lanes take the row's classes in a strided order, keep
//    per-lane partial sums in that fixed order, and combine them with a fixed shuffle tree.
//    No atomics touch the sums, so the loss repeats bit for bit from run to run.
//  - the checks that the CPU op runs as two extra passes (targets in [0, 1], class weights
//    finite and >= 0) ride along in the same pass: an element that fails lowers a flag
//    with atomicMin on its index, so the flag ends as the first bad index whatever the
//    timing, as the CPU reports it. atomicMin only touches those flags, on the error path.
#include <cuda_runtime.h>

#include <algorithm>
#include <cfloat>
#include <cstdint>

#include "kernels/cuda_check.h"
#include "kernels/loss.h"

namespace hpa::kernels {

namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;
constexpr int kRowsPerBlock = kThreads / kWarp;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;  // beyond this, warps loop over rows

int blocks_for(int64_t items, int64_t items_per_block) {
  const int64_t blocks = (items + items_per_block - 1) / items_per_block;
  return static_cast<int>(std::clamp<int64_t>(blocks, 1, kMaxBlocks));
}

__device__ __forceinline__ void lower_flag(int64_t* flag, int64_t index) {
  // The launcher set the flag to all ones: as unsigned, larger than every index.
  atomicMin(reinterpret_cast<unsigned long long*>(flag), static_cast<unsigned long long>(index));
}

// Grid: warp w of block b owns rows r = b * kRowsPerBlock + w, then r + (warps in the
// grid), ...; lane l of that warp handles classes l, l + 32, ... of the row. Block 0 also
// checks the c class weights (whatever n is, as the CPU op does).
template <class T>
__global__ void __launch_bounds__(kThreads)
    per_sample_loss_kernel(const T* __restrict__ logits, const T* __restrict__ targets,
                           const T* __restrict__ class_weights, T* __restrict__ loss,
                           T* __restrict__ grad_logits, int64_t n, int64_t c, bool focal, T gamma,
                           int64_t* first_invalid) {
  if (class_weights && blockIdx.x == 0) {
    for (int64_t j = threadIdx.x; j < c; j += kThreads)
      if (outside_closed_range(static_cast<double>(class_weights[j]), 0.0, DBL_MAX))
        lower_flag(first_invalid + 1, j);
  }
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int64_t warps_in_grid = static_cast<int64_t>(gridDim.x) * kRowsPerBlock;
  const T inv_c = T(1) / static_cast<T>(c);
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp; row < n;
       row += warps_in_grid) {
    const int64_t base = row * c;
    T partial = 0;
    for (int64_t j = lane; j < c; j += kWarp) {
      const T x = logits[base + j], y = targets[base + j];
      if (outside_closed_range(static_cast<double>(y), 0.0, 1.0)) lower_flag(first_invalid, base + j);
      const LossAndGrad<T> e = focal ? focal_loss_and_grad(x, y, gamma) : bce_with_logits_and_grad(x, y);
      const T w = class_weights ? class_weights[j] : T(1);
      partial += w * e.loss;
      if (grad_logits) grad_logits[base + j] = w * inv_c * e.grad;
    }
#pragma unroll
    for (int offset = kWarp / 2; offset > 0; offset /= 2)
      partial += __shfl_xor_sync(0xffffffffu, partial, offset);
    if (lane == 0) loss[row] = partial * inv_c;
  }
}

// Grid: one thread per element of [n, c], grid-stride.
template <class T>
__global__ void per_sample_loss_backward_kernel(const T* __restrict__ grad_loss,
                                                const T* __restrict__ fused_grad, T* __restrict__ grad_logits,
                                                int64_t n, int64_t c) {
  const int64_t total = n * c;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    grad_logits[i] = grad_loss[i / c] * fused_grad[i];
}

}  // namespace

template <class T>
void per_sample_loss_forward_cuda(const T* logits, const T* targets, const T* class_weights, T* loss,
                                  T* grad_logits, const PerSampleLossArgs& args, int64_t* first_invalid,
                                  Stream stream) {
  HPA_NVTX_RANGE("per_sample_loss_forward");
  HPA_CHECK(args.n >= 0 && args.c >= 1,
            "per_sample_loss_forward_cuda: need n >= 0 and c >= 1, got n = ", args.n, ", c = ", args.c);
  HPA_CUDA_CHECK(cudaMemsetAsync(first_invalid, 0xFF, 2 * sizeof(int64_t), stream));  // both flags = -1
  if (args.n == 0 && !class_weights) return;
  const bool focal = args.kind == PerSampleLossKind::focal;
  per_sample_loss_kernel<T><<<blocks_for(args.n, kRowsPerBlock), kThreads, 0, stream>>>(
      logits, targets, class_weights, loss, grad_logits, args.n, args.c, focal, static_cast<T>(args.gamma),
      first_invalid);
  HPA_CHECK_LAUNCH("per_sample_loss_kernel");
}

template <class T>
void per_sample_loss_backward_cuda(const T* grad_loss, const T* fused_grad, T* grad_logits, int64_t n,
                                   int64_t c, Stream stream) {
  HPA_NVTX_RANGE("per_sample_loss_backward");
  if (n == 0 || c == 0) return;
  per_sample_loss_backward_kernel<T>
      <<<blocks_for(n * c, kThreads), kThreads, 0, stream>>>(grad_loss, fused_grad, grad_logits, n, c);
  HPA_CHECK_LAUNCH("per_sample_loss_backward_kernel");
}

#define HPA_INSTANTIATE_LOSS_CUDA(T)                                                         \
  template void per_sample_loss_forward_cuda<T>(const T*, const T*, const T*, T*, T*,        \
                                                const PerSampleLossArgs&, int64_t*, Stream); \
  template void per_sample_loss_backward_cuda<T>(const T*, const T*, T*, int64_t, int64_t, Stream);
HPA_INSTANTIATE_LOSS_CUDA(float)
HPA_INSTANTIATE_LOSS_CUDA(double)
#undef HPA_INSTANTIATE_LOSS_CUDA

}  // namespace hpa::kernels
