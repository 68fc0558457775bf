// CPU twin of the global / concat pooling kernels: one (n, c) plane per OpenMP iteration.
#include "kernels/concat_pool.h"

namespace hpa::kernels {

template <class T>
void concat_pool_forward_cpu(const T* x, const ConcatPoolArgs& a, T* avg, T* max, int32_t* argmax) {
  const int64_t planes = a.n * a.c;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; ++p) {
    const T* in = x + p * a.hw;
    PlaneAvgMax<T> s = plane_avg_max_start(in[0]);
    for (int64_t i = 1; i < a.hw; ++i) plane_avg_max_step(s, in[i], i);
    const int64_t out = concat_pool_out_index(p, a);
    if (avg) avg[out] = concat_pool_average<T>(s.sum, a.hw);
    if (max) {
      max[out] = s.best;
      argmax[p] = static_cast<int32_t>(s.best_index);
    }
  }
}

template <class T>
void concat_pool_backward_cpu(const T* grad_avg, const T* grad_max, const int32_t* argmax,
                              const ConcatPoolArgs& a, T* grad_x) {
  const int64_t planes = a.n * a.c;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t out = concat_pool_out_index(p, a);
    const T g_avg = grad_avg ? concat_pool_avg_share(grad_avg[out], a.hw) : T(0);
    const T g_max = grad_max ? grad_max[out] : T(0);
    const int64_t best = grad_max ? argmax[p] : -1;
    T* gx = grad_x + p * a.hw;
    for (int64_t i = 0; i < a.hw; ++i) gx[i] = concat_pool_grad_at(i, g_avg, g_max, best);
  }
}

#define HPA_INSTANTIATE_CONCAT_POOL(T)                                                         \
  template void concat_pool_forward_cpu<T>(const T*, const ConcatPoolArgs&, T*, T*, int32_t*); \
  template void concat_pool_backward_cpu<T>(const T*, const T*, const int32_t*, const ConcatPoolArgs&, T*);

HPA_INSTANTIATE_CONCAT_POOL(float)
HPA_INSTANTIATE_CONCAT_POOL(double)
#undef HPA_INSTANTIATE_CONCAT_POOL

}  // namespace hpa::kernels
