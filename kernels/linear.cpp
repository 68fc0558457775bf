// CPU twin of the fully connected kernels. All the work is in gemm_cpu, which splits a
// large product over the OpenMP threads and leaves small ones (the usual head: a few
// hundred features by 28 classes) on one thread.
#include "kernels/linear.h"

#include <algorithm>

#include "kernels/gemm.h"

namespace hpa::kernels {

template <class T>
void linear_forward_cpu(const LinearArgs& a, const T* x, const T* weight, const T* bias, T* y) {
  if (bias != nullptr) {
    for (int64_t i = 0; i < a.n; ++i) std::copy(bias, bias + a.out, y + i * a.out);
  }
  gemm_cpu<T>(gemm_args(a.n, a.out, a.in, false, true), T(1), x, weight, bias != nullptr ? T(1) : T(0), y);
}

template <class T>
void linear_backward_input_cpu(const LinearArgs& a, const T* grad_y, const T* weight, T* grad_x) {
  gemm_cpu<T>(gemm_args(a.n, a.in, a.out), T(1), grad_y, weight, T(0), grad_x);
}

template <class T>
void linear_backward_weight_cpu(const LinearArgs& a, const T* grad_y, const T* x, T* grad_weight) {
  gemm_cpu<T>(gemm_args(a.out, a.in, a.n, true, false), T(1), grad_y, x, T(0), grad_weight);
}

template <class T>
void linear_backward_bias_cpu(const LinearArgs& a, const T* grad_y, T* grad_bias) {
  std::fill(grad_bias, grad_bias + a.out, T(0));
  for (int64_t i = 0; i < a.n; ++i)
    for (int64_t o = 0; o < a.out; ++o) grad_bias[o] += grad_y[i * a.out + o];
}

template void linear_forward_cpu<float>(const LinearArgs&, const float*, const float*, const float*, float*);
template void linear_forward_cpu<double>(const LinearArgs&, const double*, const double*, const double*,
                                         double*);
template void linear_backward_input_cpu<float>(const LinearArgs&, const float*, const float*, float*);
template void linear_backward_input_cpu<double>(const LinearArgs&, const double*, const double*, double*);
template void linear_backward_weight_cpu<float>(const LinearArgs&, const float*, const float*, float*);
template void linear_backward_weight_cpu<double>(const LinearArgs&, const double*, const double*, double*);
template void linear_backward_bias_cpu<float>(const LinearArgs&, const float*, float*);
template void linear_backward_bias_cpu<double>(const LinearArgs&, const double*, double*);

}  // namespace hpa::kernels
