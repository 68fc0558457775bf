// CPU twin of the sum reduction. Two loop shapes cover every case:
//  - innermost group reduced (sum over H*W, over a row): each output element sums
//    contiguous runs, one output per iteration of the parallel loop;
//  - innermost group kept (sum over N of [N, C]): each block of up to kBlock outputs
//    adds whole contiguous rows into a double accumulator, so memory is read in order.
#include "kernels/reduce.h"

#include <algorithm>
#include <vector>

namespace hpa::kernels {

namespace {

constexpr int64_t kParallelMinElements = 1 << 15;
constexpr int64_t kBlock = 512;
constexpr int64_t kFullReduceChunk = 1 << 14;

// A subset of the groups, walked as one linear index: offset_of maps the index to the
// element offset in the input.
struct GroupWalk {
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
  int64_t offset_of(int64_t linear) const {
    int64_t offset = 0;
    for (int d = n - 1; d >= 0; --d) {
      offset += (linear % sizes[d]) * strides[d];
      linear /= sizes[d];
    }
    return offset;
  }
};

template <class T>
double sum_run(const T* x, int64_t n) {
  double acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = 0; j < n; ++j) acc += static_cast<double>(x[j]);
  return acc;
}

}  // namespace

ReduceArgs make_reduce_args(const int64_t* sizes, int ndim, const bool* reduce_dim, double scale) {
  ReduceArgs args;
  args.scale = scale;
  args.numel_in = args.numel_out = 1;
  for (int d = 0; d < ndim; ++d) {
    args.numel_in *= sizes[d];
    if (!reduce_dim[d]) args.numel_out *= sizes[d];
  }
  int n = 0;
  for (int d = 0; d < ndim; ++d) {
    if (sizes[d] == 1) continue;
    if (n > 0 && args.reduced[n - 1] == reduce_dim[d]) {
      args.sizes[n - 1] *= sizes[d];
      continue;
    }
    args.sizes[n] = sizes[d];
    args.reduced[n] = reduce_dim[d];
    ++n;
  }
  if (n == 0) {  // one element: a kept group of size 1
    args.sizes[0] = 1;
    args.reduced[0] = false;
    n = 1;
  }
  args.ngroups = n;
  return args;
}

template <class T>
void reduce_sum_cpu(const T* x, T* out, const ReduceArgs& args) {
  if (args.numel_out == 0) return;
  if (args.numel_in == 0) {
    for (int64_t o = 0; o < args.numel_out; ++o) out[o] = static_cast<T>(0.0 * args.scale);
    return;
  }
  const int last = args.ngroups - 1;
  const int64_t inner = args.sizes[last];
  const bool parallel = args.numel_in >= kParallelMinElements;

  // Full reduction of one contiguous run: fixed chunks, partials added in chunk order.
  if (args.ngroups == 1 && args.reduced[0]) {
    const int64_t chunks = (inner + kFullReduceChunk - 1) / kFullReduceChunk;
    std::vector<double> partial(static_cast<size_t>(chunks));
#pragma omp parallel for if (parallel)
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t j0 = c * kFullReduceChunk;
      partial[static_cast<size_t>(c)] = sum_run(x + j0, std::min(kFullReduceChunk, inner - j0));
    }
    double total = 0;
    for (double p : partial) total += p;
    out[0] = static_cast<T>(total * args.scale);
    return;
  }

  // Outer groups (all but the innermost), split into kept and reduced walks.
  GroupWalk kept, reduced;
  int64_t stride = inner;
  int64_t outer_strides[kMaxReduceDims];
  for (int d = last - 1; d >= 0; --d) {
    outer_strides[d] = stride;
    stride *= args.sizes[d];
  }
  for (int d = 0; d < last; ++d) (args.reduced[d] ? reduced : kept).add(args.sizes[d], outer_strides[d]);

  if (args.reduced[last]) {
#pragma omp parallel for if (parallel)
    for (int64_t o = 0; o < kept.count; ++o) {
      const T* base = x + kept.offset_of(o);
      double acc = 0;
      for (int64_t r = 0; r < reduced.count; ++r) acc += sum_run(base + reduced.offset_of(r), inner);
      out[o] = static_cast<T>(acc * args.scale);
    }
    return;
  }

  const int64_t blocks_per_row = (inner + kBlock - 1) / kBlock;
  const int64_t blocks = kept.count * blocks_per_row;
#pragma omp parallel for if (parallel)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t o = blk / blocks_per_row;
    const int64_t j0 = (blk % blocks_per_row) * kBlock;
    const int64_t len = std::min(kBlock, inner - j0);
    double acc[kBlock];
    for (int64_t j = 0; j < len; ++j) acc[j] = 0;
    const T* base = x + kept.offset_of(o) + j0;
    for (int64_t r = 0; r < reduced.count; ++r) {
      const T* row = base + reduced.offset_of(r);
#pragma omp simd
      for (int64_t j = 0; j < len; ++j) acc[j] += static_cast<double>(row[j]);
    }
    T* dst = out + o * inner + j0;
    for (int64_t j = 0; j < len; ++j) dst[j] = static_cast<T>(acc[j] * args.scale);
  }
}

template void reduce_sum_cpu<float>(const float*, float*, const ReduceArgs&);
template void reduce_sum_cpu<double>(const double*, double*, const ReduceArgs&);

}  // namespace hpa::kernels
