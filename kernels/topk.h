// The hard sampler's selection: the K largest per-sample losses of a batch, largest
// first, ties broken by the lower sample index, and the gather / scatter that move
// values and gradients between the batch and the chosen K.
//
// Design rule: the order is a strict total order (ranks_before), so the choice is the
// same on every run, every thread count and every device. A NaN has no place in that
// order, so the selection refuses to run on one and reports where it is; it never sorts
// it silently.
#pragma once

#include <cstdint>

#include "kernels/hd.h"

namespace hpa::kernels {

// True when sample a (value va) ranks before sample b (value vb): larger value first,
// then lower index. Values must not be NaN.
template <class T>
HPA_HD inline bool ranks_before(T va, int64_t a, T vb, int64_t b) {
  return va > vb || (va == vb && a < b);
}

// Writes the indices of the k largest of values[0..n) to indices[0..k), in rank order,
// and returns -1; 1 <= k <= n. If any value is NaN, writes nothing and returns the index
// of the first NaN.
template <class T>
int64_t topk_descending_cpu(const T* values, int64_t n, int64_t k, int64_t* indices);

// out[j] = values[indices[j]] for j < k; writes (=).
template <class T>
void topk_gather_cpu(const T* values, const int64_t* indices, int64_t k, T* out);

// grad_values = 0 over n elements, then grad_values[indices[j]] = grad_chosen[j]; writes
// (=). Indices are distinct, so no two writes collide.
template <class T>
void topk_scatter_cpu(const T* grad_chosen, const int64_t* indices, int64_t k, T* grad_values, int64_t n);

// ---- CUDA ------------------------------------------------------------------------------
// The selection by counting: the rank of sample i is the number of samples that rank
// before it under ranks_before, an exact integer, so the K chosen and their order are
// the CPU's exactly. O(n^2 / 32) per warp-lane: meant for a batch (n up to a few
// thousand), not for arbitrary arrays.

// One kernel for topk_descending_cpu and topk_gather_cpu, 1 <= k <= n: writes ranks[i]
// (the rank of sample i; n for a NaN), and for rank r < k indices[r] = i and
// chosen[r] = values[i]. first_nan (1 int64 of device memory, reset by the launcher)
// receives the index of the first NaN, or -1; when it is not -1 the other outputs are
// incomplete and must not be used.
template <class T>
void topk_rank_select_cuda(const T* values, int64_t n, int64_t k, int64_t* ranks, int64_t* indices, T* chosen,
                           int64_t* first_nan, Stream stream);

// topk_scatter_cpu's result, computed as a gather over the batch from the forward's ranks:
// grad_values[i] = ranks[i] < k ? grad_chosen[ranks[i]] : 0 over n elements, so every
// output is written exactly once by one thread; writes (=).
template <class T>
void topk_scatter_cuda(const T* grad_chosen, const int64_t* ranks, int64_t k, T* grad_values, int64_t n,
                       Stream stream);

}  // namespace hpa::kernels
