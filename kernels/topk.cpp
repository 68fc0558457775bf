// CPU twin of kernels/topk.h. A batch holds at most a few hundred samples, so a serial
// partial sort (O(n log k)) is all the selection needs.
#include "kernels/topk.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace hpa::kernels {

template <class T>
int64_t topk_descending_cpu(const T* values, int64_t n, int64_t k, int64_t* indices) {
  for (int64_t i = 0; i < n; ++i)
    if (std::isnan(values[i])) return i;
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [values](int64_t a, int64_t b) { return ranks_before(values[a], a, values[b], b); });
  std::copy(order.begin(), order.begin() + k, indices);
  return -1;
}

template <class T>
void topk_gather_cpu(const T* values, const int64_t* indices, int64_t k, T* out) {
  for (int64_t j = 0; j < k; ++j) out[j] = values[indices[j]];
}

template <class T>
void topk_scatter_cpu(const T* grad_chosen, const int64_t* indices, int64_t k, T* grad_values, int64_t n) {
  std::fill(grad_values, grad_values + n, T(0));
  for (int64_t j = 0; j < k; ++j) grad_values[indices[j]] = grad_chosen[j];
}

#define HPA_INSTANTIATE_TOPK(T)                                                  \
  template int64_t topk_descending_cpu<T>(const T*, int64_t, int64_t, int64_t*); \
  template void topk_gather_cpu<T>(const T*, const int64_t*, int64_t, T*);       \
  template void topk_scatter_cpu<T>(const T*, const int64_t*, int64_t, T*, int64_t);
HPA_INSTANTIATE_TOPK(float)
HPA_INSTANTIATE_TOPK(double)
#undef HPA_INSTANTIATE_TOPK

}  // namespace hpa::kernels
