// CPU twins of the elementwise kernels. Every loop is a plain indexed loop over contiguous
// memory with the op as a template functor, so the compiler can vectorize it; OpenMP
// splits it only when there is enough work to pay for waking the threads.
#include "kernels/elementwise.h"

namespace hpa::kernels {

namespace {

constexpr int64_t kParallelMinElements = 1 << 15;

// out[i] = f(a[i], b[i]) on contiguous runs, with either operand possibly a single value
// stretched along the run (stride 0).
template <class T, class F>
inline void binary_run(const T* a, int64_t stride_a, const T* b, int64_t stride_b, T* out, int64_t n, F f) {
  if (stride_a == 1 && stride_b == 1) {
    for (int64_t j = 0; j < n; ++j) out[j] = f(a[j], b[j]);
  } else if (stride_a == 1) {
    const T vb = b[0];
    for (int64_t j = 0; j < n; ++j) out[j] = f(a[j], vb);
  } else if (stride_b == 1) {
    const T va = a[0];
    for (int64_t j = 0; j < n; ++j) out[j] = f(va, b[j]);
  } else {
    for (int64_t j = 0; j < n; ++j) out[j] = f(a[j * stride_a], b[j * stride_b]);
  }
}

// Walks the output as rows of the innermost merged dimension. A single row (same-shape
// operands, or a tensor against one value) is split across threads by elements instead.
template <class T, class F>
void broadcast_loop(const T* a, const T* b, T* out, const BroadcastArgs& args, F f) {
  if (args.numel == 0) return;
  const int last = args.ndim - 1;
  const int64_t inner = args.sizes[last];
  const int64_t sa = args.stride_a[last], sb = args.stride_b[last];
  const int64_t rows = args.numel / inner;
  if (rows == 1) {
    const int64_t n = inner;
    const int64_t chunk = 4096;
    const int64_t chunks = (n + chunk - 1) / chunk;
#pragma omp parallel for if (n >= kParallelMinElements)
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t j0 = c * chunk, len = (n - j0 < chunk) ? n - j0 : chunk;
      binary_run(a + j0 * sa, sa, b + j0 * sb, sb, out + j0, len, f);
    }
    return;
  }
#pragma omp parallel for if (args.numel >= kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r) {
    int64_t rest = r, offset_a = 0, offset_b = 0;
    for (int d = last - 1; d >= 0; --d) {
      const int64_t i = rest % args.sizes[d];
      rest /= args.sizes[d];
      offset_a += i * args.stride_a[d];
      offset_b += i * args.stride_b[d];
    }
    binary_run(a + offset_a, sa, b + offset_b, sb, out + r * inner, inner, f);
  }
}

template <class T, class F>
void map_loop(const T* x, T* y, int64_t n, F f) {
#pragma omp parallel for simd if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) y[i] = f(x[i]);
}

template <class T, class F>
void zip_loop(const T* g, const T* s, T* out, int64_t n, F f) {
#pragma omp parallel for simd if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) out[i] = f(g[i], s[i]);
}

}  // namespace

BroadcastArgs make_broadcast_args(const int64_t* out_sizes, int out_ndim, const int64_t* a_sizes, int a_ndim,
                                  const int64_t* b_sizes, int b_ndim) {
  BroadcastArgs args;
  args.numel = 1;
  for (int d = 0; d < out_ndim; ++d) args.numel *= out_sizes[d];
  if (args.numel == 0) return args;

  // Contiguous strides of each operand in its own shape, then 0 where it is stretched.
  int64_t stride_a[kMaxBroadcastDims], stride_b[kMaxBroadcastDims];
  int64_t step_a = 1, step_b = 1;
  for (int d = out_ndim - 1; d >= 0; --d) {
    const int da = d - (out_ndim - a_ndim), db = d - (out_ndim - b_ndim);
    const int64_t size_a = da >= 0 ? a_sizes[da] : 1, size_b = db >= 0 ? b_sizes[db] : 1;
    stride_a[d] = size_a == 1 ? 0 : step_a;
    stride_b[d] = size_b == 1 ? 0 : step_b;
    step_a *= size_a;
    step_b *= size_b;
  }

  // Drop size-1 output dims, and merge a dim into the previous kept one when both
  // operands step through the pair as through one dimension.
  int n = 0;
  for (int d = 0; d < out_ndim; ++d) {
    if (out_sizes[d] == 1) continue;
    if (n > 0 && args.stride_a[n - 1] == stride_a[d] * out_sizes[d] &&
        args.stride_b[n - 1] == stride_b[d] * out_sizes[d]) {
      args.sizes[n - 1] *= out_sizes[d];
      args.stride_a[n - 1] = stride_a[d];
      args.stride_b[n - 1] = stride_b[d];
      continue;
    }
    args.sizes[n] = out_sizes[d];
    args.stride_a[n] = stride_a[d];
    args.stride_b[n] = stride_b[d];
    ++n;
  }
  if (n == 0) {  // one element
    args.sizes[0] = 1;
    args.stride_a[0] = args.stride_b[0] = 0;
    n = 1;
  }
  args.ndim = n;
  return args;
}

template <class T>
void binary_forward_cpu(BinaryOp op, const T* a, const T* b, T* out, const BroadcastArgs& args) {
  visit_binary(op, [&](auto f) { broadcast_loop(a, b, out, args, f); });
}

template <class T>
void broadcast_scaled_cpu(const T* src, T* out, const BroadcastArgs& args, T scale) {
  BroadcastArgs only_a = args;  // b is src too, read with a's strides and ignored
  for (int d = 0; d < args.ndim; ++d) only_a.stride_b[d] = args.stride_a[d];
  broadcast_loop(src, src, out, only_a, ScaleFirstFn<T>{scale});
}

template <class T>
void unary_forward_cpu(UnaryOp op, const T* x, T* y, const UnaryArgs& args) {
  visit_unary_forward(op, static_cast<T>(args.scalar), [&](auto f) { map_loop(x, y, args.n, f); });
}

template <class T>
void unary_backward_cpu(UnaryOp op, const T* grad_y, const T* saved, T* grad_x, const UnaryArgs& args) {
  visit_unary_backward(op, static_cast<T>(args.scalar), [&](auto f) {
    if constexpr (decltype(f)::kUsesSaved) {
      zip_loop(grad_y, saved, grad_x, args.n, f);
    } else {
      map_loop(grad_y, grad_x, args.n, f);
    }
  });
}

#define HPA_INSTANTIATE_ELEMENTWISE(T)                                                         \
  template void binary_forward_cpu<T>(BinaryOp, const T*, const T*, T*, const BroadcastArgs&); \
  template void broadcast_scaled_cpu<T>(const T*, T*, const BroadcastArgs&, T);                \
  template void unary_forward_cpu<T>(UnaryOp, const T*, T*, const UnaryArgs&);                 \
  template void unary_backward_cpu<T>(UnaryOp, const T*, const T*, T*, const UnaryArgs&);
HPA_INSTANTIATE_ELEMENTWISE(float)
HPA_INSTANTIATE_ELEMENTWISE(double)
#undef HPA_INSTANTIATE_ELEMENTWISE

}  // namespace hpa::kernels
