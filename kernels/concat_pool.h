// Global pooling kernels, and the paper's adaptive concat pooling (ACP) built on them: one
// pass over each (n, c) plane computes both its average and its maximum (with argmax).
// CPU loops in concat_pool.cpp, CUDA twins in concat_pool.cu.
//
// Output placement: the average of plane (n, c) goes to avg[n * out_sample_stride + c] and
// the maximum to max[n * out_sample_stride + c], so ACP writes [N, 2C] by passing
// avg = out, max = out + C, stride 2C, and a lone global pool passes one of them (the
// other null) with stride C. Max ties: the first maximum in row-major order wins; NaN
// propagates (kernels/pool.h max_pool_takes).
#pragma once

#include <cstdint>

#include "kernels/hd.h"
#include "kernels/pool.h"

namespace hpa::kernels {

struct ConcatPoolArgs {
  int64_t n = 0, c = 0, hw = 0;
  int64_t out_sample_stride = 0;  // elements between consecutive samples of avg/max outputs
};

// Running state of the single pass over a plane (or, on the GPU, over one thread's share
// of it). best_index < 0 marks a state that has seen no element yet.
template <class T>
struct PlaneAvgMax {
  double sum;
  T best;
  int64_t best_index;
};

template <class T>
HPA_HD inline PlaneAvgMax<T> plane_avg_max_empty() {
  return {0.0, T(0), -1};
}

template <class T>
HPA_HD inline PlaneAvgMax<T> plane_avg_max_start(T first, int64_t index = 0) {
  return {static_cast<double>(first), first, index};
}

template <class T>
HPA_HD inline void plane_avg_max_step(PlaneAvgMax<T>& s, T value, int64_t index) {
  s.sum += static_cast<double>(value);
  if (max_pool_takes(value, s.best)) {
    s.best = value;
    s.best_index = index;
  }
}

// Combines the states of two disjoint parts of a plane, either possibly empty. The winner
// is the one a row-major scan of the whole plane would keep: a strictly greater value (or
// a NaN over a number) wins, and between equal values (or two NaNs) the lower index wins.
// Symmetric in its arguments, so any reduction tree picks the same winner.
template <class T>
HPA_HD inline PlaneAvgMax<T> plane_avg_max_merge(const PlaneAvgMax<T>& a, const PlaneAvgMax<T>& b) {
  if (b.best_index < 0) return a;
  if (a.best_index < 0) return b;
  const bool b_wins =
      max_pool_takes(b.best, a.best) || (!max_pool_takes(a.best, b.best) && b.best_index < a.best_index);
  const PlaneAvgMax<T>& w = b_wins ? b : a;
  return {a.sum + b.sum, w.best, w.best_index};
}

// Where the outputs of plane p = (n, c) go: n * out_sample_stride + c.
HPA_HD inline int64_t concat_pool_out_index(int64_t plane, const ConcatPoolArgs& a) {
  return (plane / a.c) * a.out_sample_stride + plane % a.c;
}

// The plane's average: sum / hw.
template <class T>
HPA_HD inline T concat_pool_average(double sum, int64_t hw) {
  return static_cast<T>(sum / static_cast<double>(hw));
}

// What each element of a plane receives from the average's gradient g.
template <class T>
HPA_HD inline T concat_pool_avg_share(T g, int64_t hw) {
  return g / static_cast<T>(hw);
}

// Gradient of element `index` of a plane: the average spreads g_avg / hw over the plane,
// the maximum routes g_max to its argmax. Either gradient may be absent (pass 0).
template <class T>
HPA_HD inline T concat_pool_grad_at(int64_t index, T g_avg_over_hw, T g_max, int64_t argmax) {
  return g_avg_over_hw + (index == argmax ? g_max : T(0));
}

// avg and max may each be null (then not computed); argmax [n * c] is written with max.
// Requires hw >= 1.
template <class T>
void concat_pool_forward_cpu(const T* x, const ConcatPoolArgs& a, T* avg, T* max, int32_t* argmax);

// grad_x [n, c, hw] is written (=) with the sum of both parts. grad_avg / grad_max use
// the same placement as the forward outputs and may each be null (that part contributes 0).
template <class T>
void concat_pool_backward_cpu(const T* grad_avg, const T* grad_max, const int32_t* argmax,
                              const ConcatPoolArgs& a, T* grad_x);

// CUDA twins, same contracts (device pointers, queued on `stream`, T float or double).
// Forward: one warp per plane (a block of 8 warps for planes over 2048 elements) reads the
// plane once with 16-byte loads where aligned and merges per-thread states with
// plane_avg_max_merge: the max and argmax equal the CPU's bit for bit, the average differs
// only by the order of the double sum. Backward uses the argmax saved by forward (4 bytes
// per plane) instead of re-reading the input to find it again, and equals the CPU bit for
// bit.
template <class T>
void concat_pool_forward_cuda(const T* x, const ConcatPoolArgs& a, T* avg, T* max, int32_t* argmax,
                              Stream stream);

template <class T>
void concat_pool_backward_cuda(const T* grad_avg, const T* grad_max, const int32_t* argmax,
                               const ConcatPoolArgs& a, T* grad_x, Stream stream);

}  // namespace hpa::kernels
