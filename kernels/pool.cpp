// CPU twin of the windowed pooling kernels: one (n, c) plane per OpenMP iteration, so the
// backward scatters of overlapping windows never race.
#include "kernels/pool.h"

#include <algorithm>

namespace hpa::kernels {

template <class T>
void max_pool2d_forward_cpu(const T* x, const Pool2dArgs& a, T* y, int32_t* argmax) {
  const int64_t in_plane = a.in_h * a.in_w, out_plane = a.out_h * a.out_w;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < a.planes; ++p) {
    const T* in = x + p * in_plane;
    T* out = y + p * out_plane;
    int32_t* idx = argmax + p * out_plane;
    for (int64_t oh = 0; oh < a.out_h; ++oh) {
      for (int64_t ow = 0; ow < a.out_w; ++ow) {
        const MaxPoolPick<T> best = max_pool_window(in, a.in_w, pool_window(oh, ow, a));
        out[oh * a.out_w + ow] = best.value;
        idx[oh * a.out_w + ow] = static_cast<int32_t>(best.index);
      }
    }
  }
}

template <class T>
void max_pool2d_backward_cpu(const T* grad_y, const int32_t* argmax, const Pool2dArgs& a, T* grad_x) {
  const int64_t in_plane = a.in_h * a.in_w, out_plane = a.out_h * a.out_w;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < a.planes; ++p) {
    T* gx = grad_x + p * in_plane;
    const T* g = grad_y + p * out_plane;
    const int32_t* idx = argmax + p * out_plane;
    std::fill(gx, gx + in_plane, T(0));
    for (int64_t o = 0; o < out_plane; ++o)
      if (idx[o] >= 0) gx[idx[o]] += g[o];
  }
}

template <class T>
void avg_pool2d_forward_cpu(const T* x, const Pool2dArgs& a, T* y) {
  const int64_t in_plane = a.in_h * a.in_w, out_plane = a.out_h * a.out_w;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < a.planes; ++p) {
    const T* in = x + p * in_plane;
    T* out = y + p * out_plane;
    for (int64_t oh = 0; oh < a.out_h; ++oh) {
      for (int64_t ow = 0; ow < a.out_w; ++ow) {
        out[oh * a.out_w + ow] = avg_pool_window(in, a.in_w, pool_window(oh, ow, a));
      }
    }
  }
}

template <class T>
void avg_pool2d_backward_cpu(const T* grad_y, const Pool2dArgs& a, T* grad_x) {
  const int64_t in_plane = a.in_h * a.in_w, out_plane = a.out_h * a.out_w;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < a.planes; ++p) {
    T* gx = grad_x + p * in_plane;
    const T* g = grad_y + p * out_plane;
    std::fill(gx, gx + in_plane, T(0));
    for (int64_t oh = 0; oh < a.out_h; ++oh) {
      for (int64_t ow = 0; ow < a.out_w; ++ow) {
        const PoolWindow win = pool_window(oh, ow, a);
        if (win.area <= 0) continue;
        const T share = avg_pool_share(g[oh * a.out_w + ow], win.area);
        for (int64_t h = win.h0; h < win.h1; ++h)
          for (int64_t w = win.w0; w < win.w1; ++w) gx[h * a.in_w + w] += share;
      }
    }
  }
}

#define HPA_INSTANTIATE_POOL(T)                                                              \
  template void max_pool2d_forward_cpu<T>(const T*, const Pool2dArgs&, T*, int32_t*);        \
  template void max_pool2d_backward_cpu<T>(const T*, const int32_t*, const Pool2dArgs&, T*); \
  template void avg_pool2d_forward_cpu<T>(const T*, const Pool2dArgs&, T*);                  \
  template void avg_pool2d_backward_cpu<T>(const T*, const Pool2dArgs&, T*);

HPA_INSTANTIATE_POOL(float)
HPA_INSTANTIATE_POOL(double)
#undef HPA_INSTANTIATE_POOL

}  // namespace hpa::kernels
