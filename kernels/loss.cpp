// CPU twin of kernels/loss.h: one pass over each row computes the per-sample loss and,
// when asked, the fused gradient. Rows are independent, so the parallel split is over
// samples and each row's sum runs in class order: the result does not depend on the
// thread count.
#include "kernels/loss.h"

namespace hpa::kernels {

template <class T>
void per_sample_loss_forward_cpu(const T* logits, const T* targets, const T* class_weights, T* loss,
                                 T* grad_logits, const PerSampleLossArgs& args) {
  const int64_t n = args.n, c = args.c;
  const T gamma = static_cast<T>(args.gamma);
  const bool focal = args.kind == PerSampleLossKind::focal;
  const T inv_c = T(1) / static_cast<T>(c);
#pragma omp parallel for schedule(static) if (n * c > 16384)
  for (int64_t i = 0; i < n; ++i) {
    const T* x = logits + i * c;
    const T* y = targets + i * c;
    T* g = grad_logits ? grad_logits + i * c : nullptr;
    T sum = 0;
    for (int64_t j = 0; j < c; ++j) {
      const LossAndGrad<T> e =
          focal ? focal_loss_and_grad(x[j], y[j], gamma) : bce_with_logits_and_grad(x[j], y[j]);
      const T w = class_weights ? class_weights[j] : T(1);
      sum += w * e.loss;
      if (g) g[j] = w * inv_c * e.grad;
    }
    loss[i] = sum * inv_c;
  }
}

template <class T>
void per_sample_loss_backward_cpu(const T* grad_loss, const T* fused_grad, T* grad_logits, int64_t n,
                                  int64_t c) {
#pragma omp parallel for schedule(static) if (n * c > 16384)
  for (int64_t i = 0; i < n; ++i) {
    const T g = grad_loss[i];
    for (int64_t j = 0; j < c; ++j) grad_logits[i * c + j] = g * fused_grad[i * c + j];
  }
}

template <class T>
int64_t first_outside_cpu(const T* values, int64_t count, double lo, double hi) {
  for (int64_t i = 0; i < count; ++i) {
    const double v = static_cast<double>(values[i]);
    if (!(v >= lo && v <= hi)) return i;  // the negated form also catches NaN
  }
  return -1;
}

#define HPA_INSTANTIATE_LOSS(T)                                                            \
  template void per_sample_loss_forward_cpu<T>(const T*, const T*, const T*, T*, T*,       \
                                               const PerSampleLossArgs&);                  \
  template void per_sample_loss_backward_cpu<T>(const T*, const T*, T*, int64_t, int64_t); \
  template int64_t first_outside_cpu<T>(const T*, int64_t, double, double);
HPA_INSTANTIATE_LOSS(float)
HPA_INSTANTIATE_LOSS(double)
#undef HPA_INSTANTIATE_LOSS

}  // namespace hpa::kernels
