// CPU twin of the dropout kernels: a flat OpenMP loop; the mask depends only on the
// element index, so the split does not matter.
#include "kernels/dropout.h"

namespace hpa::kernels {

template <class T>
void dropout_forward_cpu(const T* x, int64_t n, const DropoutArgs& d, T* y) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i)
    y[i] = dropout_value(x[i], dropout_keep(static_cast<uint64_t>(i), d.offset, d.seed, d.p), d);
}

template <class T>
void dropout_backward_cpu(const T* grad_y, int64_t n, const DropoutArgs& d, T* grad_x) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i)
    grad_x[i] = dropout_grad(grad_y[i], dropout_keep(static_cast<uint64_t>(i), d.offset, d.seed, d.p), d);
}

template void dropout_forward_cpu<float>(const float*, int64_t, const DropoutArgs&, float*);
template void dropout_forward_cpu<double>(const double*, int64_t, const DropoutArgs&, double*);
template void dropout_backward_cpu<float>(const float*, int64_t, const DropoutArgs&, float*);
template void dropout_backward_cpu<double>(const double*, int64_t, const DropoutArgs&, double*);

}  // namespace hpa::kernels
