// Windowed 2-D pooling kernels (max and average) over NCHW tensors, each (n, c) plane
// independent. CPU loops in pool.cpp, CUDA twins in pool.cu. The window geometry, the
// window scans, the average divisor and the max comparison are HPA_HD functions called by
// both, so the twins compute exactly the same windows, ties and (in the same order) sums.
//
// Rules (PyTorch's): output size floor((in + 2*pad - k) / stride) + 1, or with ceil_mode
// the ceiling, minus one when the last window would start at or beyond in + pad (so every
// window starts inside the input or its left padding). Max ties: the first maximum in
// row-major window order wins; a NaN wins over any number (and the first NaN is kept), so
// NaN propagates. argmax holds the winner's index h * in_w + w within its plane.
#pragma once

#include <cstdint>
#include <limits>

#include "kernels/hd.h"

namespace hpa::kernels {

struct Pool2dArgs {
  int64_t planes = 0;  // n * c
  int64_t in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  int kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  bool count_include_pad = true;  // avg pool only
};

HPA_HD inline int64_t pool_output_size(int64_t in, int kernel, int stride, int pad, bool ceil_mode) {
  const int64_t span = in + 2 * static_cast<int64_t>(pad) - kernel + (ceil_mode ? stride - 1 : 0);
  // Floor division that stays correct for a negative span (input smaller than the kernel).
  const int64_t q = span >= 0 ? span / stride : -((-span + stride - 1) / stride);
  int64_t out = q + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

// The window of output (oh, ow): [h0, h1) x [w0, w1) clipped to the input, and `area`,
// the divisor of an average pool (the unclipped window cut at input + padding when
// count_include_pad, else the clipped window).
struct PoolWindow {
  int64_t h0, h1, w0, w1, area;
};

HPA_HD inline PoolWindow pool_window(int64_t oh, int64_t ow, const Pool2dArgs& a) {
  int64_t h0 = oh * a.stride_h - a.pad_h, w0 = ow * a.stride_w - a.pad_w;
  int64_t h1 = h0 + a.kernel_h, w1 = w0 + a.kernel_w;
  if (h1 > a.in_h + a.pad_h) h1 = a.in_h + a.pad_h;
  if (w1 > a.in_w + a.pad_w) w1 = a.in_w + a.pad_w;
  const int64_t padded_area = (h1 - h0) * (w1 - w0);
  if (h0 < 0) h0 = 0;
  if (w0 < 0) w0 = 0;
  if (h1 > a.in_h) h1 = a.in_h;
  if (w1 > a.in_w) w1 = a.in_w;
  const int64_t area = a.count_include_pad ? padded_area : (h1 - h0) * (w1 - w0);
  return {h0, h1, w0, w1, area};
}

// Whether `value` replaces the running maximum `best`: strictly greater (so the first of
// equal maxima stays), or a NaN over a non-NaN.
template <class T>
HPA_HD inline bool max_pool_takes(T value, T best) {
  return value > best || (value != value && best == best);
}

// The winner of a max-pool window: value and index h * in_w + w within the plane.
template <class T>
struct MaxPoolPick {
  T value;
  int64_t index;
};

// Scans the window in row-major order. The option checks guarantee a non-empty window;
// an empty one would give index -1 (value -inf), which backward skips.
template <class T>
HPA_HD inline MaxPoolPick<T> max_pool_window(const T* plane, int64_t in_w, const PoolWindow& win) {
  MaxPoolPick<T> best{-std::numeric_limits<T>::infinity(), -1};
  for (int64_t h = win.h0; h < win.h1; ++h) {
    for (int64_t w = win.w0; w < win.w1; ++w) {
      const int64_t i = h * in_w + w;
      if (best.index < 0 || max_pool_takes(plane[i], best.value)) best = {plane[i], i};
    }
  }
  return best;
}

// The average of a window: the sum (in double, row-major order) over the area.
template <class T>
HPA_HD inline T avg_pool_window(const T* plane, int64_t in_w, const PoolWindow& win) {
  double sum = 0;
  for (int64_t h = win.h0; h < win.h1; ++h)
    for (int64_t w = win.w0; w < win.w1; ++w) sum += static_cast<double>(plane[h * in_w + w]);
  return win.area > 0 ? static_cast<T>(sum / static_cast<double>(win.area)) : T(0);
}

// What each input of a window receives from the window's average-pool gradient g.
template <class T>
HPA_HD inline T avg_pool_share(T g, int64_t area) {
  return g / static_cast<T>(area);
}

// The outputs along one axis whose window contains input position `in` (0 <= in < input
// size): [*first, *last], empty when *first > *last. Window o spans
// [o*stride - pad, o*stride - pad + kernel); the clipping of pool_window never removes an
// input position, so this is exact. Backward kernels that gather (CUDA) use it to visit,
// in increasing output order, exactly the outputs the CPU scatter visits.
HPA_HD inline void pool_outputs_covering(int64_t in, int kernel, int stride, int pad, int64_t out_size,
                                         int64_t* first, int64_t* last) {
  const int64_t past_end = in + pad - kernel;  // o must satisfy o*stride > past_end
  *first = past_end < 0 ? 0 : past_end / stride + 1;
  const int64_t hi = (in + pad) / stride;  // o*stride <= in + pad
  *last = hi < out_size - 1 ? hi : out_size - 1;
}

// y [planes, out_h, out_w] and argmax (same shape) are written (=).
template <class T>
void max_pool2d_forward_cpu(const T* x, const Pool2dArgs& a, T* y, int32_t* argmax);

// grad_x is written (=): zero-filled, then each output's gradient added at its argmax
// (overlapping windows may route several gradients to one input).
template <class T>
void max_pool2d_backward_cpu(const T* grad_y, const int32_t* argmax, const Pool2dArgs& a, T* grad_x);

// y is written (=). Sums are accumulated in double.
template <class T>
void avg_pool2d_forward_cpu(const T* x, const Pool2dArgs& a, T* y);

// grad_x is written (=): zero-filled, then every input of a window receives g / area.
template <class T>
void avg_pool2d_backward_cpu(const T* grad_y, const Pool2dArgs& a, T* grad_x);

// CUDA twins: same contracts and bit-identical results (device pointers, queued on
// `stream`, T float or double). Forward: one thread per output. Backward: one thread per
// input, gathering from the outputs whose windows cover it in increasing output order
// (pool_outputs_covering), so the sums equal the CPU scatter's, with no atomics.
template <class T>
void max_pool2d_forward_cuda(const T* x, const Pool2dArgs& a, T* y, int32_t* argmax, Stream stream);

template <class T>
void max_pool2d_backward_cuda(const T* grad_y, const int32_t* argmax, const Pool2dArgs& a, T* grad_x,
                              Stream stream);

template <class T>
void avg_pool2d_forward_cuda(const T* x, const Pool2dArgs& a, T* y, Stream stream);

template <class T>
void avg_pool2d_backward_cuda(const T* grad_y, const Pool2dArgs& a, T* grad_x, Stream stream);

}  // namespace hpa::kernels
