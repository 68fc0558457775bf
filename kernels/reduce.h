// Sum reductions over any set of dimensions of a contiguous tensor (mean is a sum with
// scale 1/count). The input is described as alternating groups of kept and reduced
// dimensions, adjacent dimensions of the same kind merged and size-1 dimensions dropped,
// so "sum over N, H, W of [N,C,H,W]" runs as reduced N, kept C, reduced H*W.
//
// Accumulation is in double, and every output element is summed by one thread in a fixed
// order (the full reduction adds fixed-size chunk partials in chunk order), so results
// do not depend on the number of threads.
//
// The CUDA twin also sums in double and is deterministic: the work is cut into chunks
// whose size depends only on the shape, each chunk is summed by a fixed-size thread group
// in a fixed order (per-thread sums, then a fixed shuffle tree), and chunk partials are
// added by a second pass in a fixed order. No atomics, so a run repeats bit for bit. Its
// summation order differs from the CPU's, so the two agree to rounding, not bit for bit.
#pragma once

#include <cstdint>

#include "kernels/hd.h"

namespace hpa::kernels {

constexpr int kMaxReduceDims = 5;

struct ReduceArgs {
  int ngroups = 1;  // at least 1
  int64_t sizes[kMaxReduceDims] = {1};
  bool reduced[kMaxReduceDims] = {false};
  int64_t numel_in = 1;
  int64_t numel_out = 1;
  double scale = 1.0;  // multiplies each sum: 1 for sum, 1/count for mean
};

// reduce_dim[d] says whether dimension d of `sizes` is reduced.
ReduceArgs make_reduce_args(const int64_t* sizes, int ndim, const bool* reduce_dim, double scale);

// out = scale * sum over the reduced groups (writes =). An empty reduction gives 0
// (times scale: NaN for the mean of nothing, as PyTorch).
template <class T>
void reduce_sum_cpu(const T* x, T* out, const ReduceArgs& args);

// Device scratch reduce_sum_cuda needs for `args`, in doubles (0 for shapes summed in one
// pass): the chunk partials of the two-pass paths, at most a few MiB.
int64_t reduce_sum_cuda_workspace_elements(const ReduceArgs& args);

// CUDA twin of reduce_sum_cpu (writes =). `workspace` holds at least
// reduce_sum_cuda_workspace_elements(args) doubles of device memory on the same stream's
// device (null when that is 0); the caching allocator's stream-ordered reuse makes it
// safe to free right after the call.
template <class T>
void reduce_sum_cuda(const T* x, T* out, const ReduceArgs& args, double* workspace, Stream stream);

}  // namespace hpa::kernels
