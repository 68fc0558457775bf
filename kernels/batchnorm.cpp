// CPU twin of the batch normalization kernels. Reductions run one channel per OpenMP
// iteration (a channel's sum is then a fixed serial order: deterministic); elementwise
// passes run one (n, c) plane per iteration.
#include "kernels/batchnorm.h"

namespace hpa::kernels {

template <class T>
void batchnorm_stats_cpu(const T* x, const BatchNormArgs& a, double* mean, double* var) {
  const double count = static_cast<double>(a.n * a.hw);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < a.c; ++c) {
    double sum = 0;
    for (int64_t n = 0; n < a.n; ++n) {
      const T* plane = x + (n * a.c + c) * a.hw;
      for (int64_t i = 0; i < a.hw; ++i) sum += static_cast<double>(plane[i]);
    }
    const double m = sum / count;
    // Second pass around the mean: no cancellation when |mean| >> std.
    double squares = 0;
    for (int64_t n = 0; n < a.n; ++n) {
      const T* plane = x + (n * a.c + c) * a.hw;
      for (int64_t i = 0; i < a.hw; ++i) {
        const double d = static_cast<double>(plane[i]) - m;
        squares += d * d;
      }
    }
    mean[c] = m;
    var[c] = squares / count;
  }
}

template <class T>
void batchnorm_forward_cpu(const T* x, const double* scale, const double* shift, const BatchNormArgs& a,
                           T* y) {
  const int64_t planes = a.n * a.c;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t c = p % a.c;
    const T s = static_cast<T>(scale[c]), b = static_cast<T>(shift[c]);
    const T* in = x + p * a.hw;
    T* out = y + p * a.hw;
    for (int64_t i = 0; i < a.hw; ++i) out[i] = batchnorm_normalize(in[i], s, b);
  }
}

template <class T>
void batchnorm_backward_reduce_cpu(const T* grad_y, const T* x, const double* mean, const double* invstd,
                                   const BatchNormArgs& a, double* sum_g, double* sum_g_xhat) {
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < a.c; ++c) {
    double sg = 0, sgx = 0;
    for (int64_t n = 0; n < a.n; ++n) {
      const int64_t base = (n * a.c + c) * a.hw;
      for (int64_t i = 0; i < a.hw; ++i) {
        const BatchNormBackwardTerms t = batchnorm_backward_terms(static_cast<double>(grad_y[base + i]),
                                                                  static_cast<double>(x[base + i]), mean[c]);
        sg += t.g;
        sgx += t.g_centered;
      }
    }
    sum_g[c] = sg;
    sum_g_xhat[c] = sgx * invstd[c];
  }
}

template <class T>
void batchnorm_backward_training_cpu(const T* grad_y, const T* x, const double* mean, const double* invstd,
                                     const T* gamma, const double* sum_g, const double* sum_g_xhat,
                                     const BatchNormArgs& a, T* grad_x) {
  const double count = static_cast<double>(a.n * a.hw);
  const int64_t planes = a.n * a.c;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; ++p) {
    const BatchNormGradChannel k =
        batchnorm_grad_channel(gamma, mean, invstd, sum_g, sum_g_xhat, count, p % a.c);
    const T* g = grad_y + p * a.hw;
    const T* in = x + p * a.hw;
    T* out = grad_x + p * a.hw;
    for (int64_t i = 0; i < a.hw; ++i) out[i] = batchnorm_training_grad_at(k, g[i], in[i]);
  }
}

template <class T>
void batchnorm_backward_eval_cpu(const T* grad_y, const double* invstd, const T* gamma,
                                 const BatchNormArgs& a, T* grad_x) {
  const int64_t planes = a.n * a.c;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t c = p % a.c;
    const T s = static_cast<T>(batchnorm_param_or(gamma, c, 1.0) * invstd[c]);
    const T* g = grad_y + p * a.hw;
    T* out = grad_x + p * a.hw;
    for (int64_t i = 0; i < a.hw; ++i) out[i] = g[i] * s;
  }
}

template <class T>
void batchnorm_setup_channels_cpu(const BatchNormChannelSetup<T>& s) {
  for (int64_t c = 0; c < s.c; ++c) batchnorm_setup_channel(s, c);
}

#define HPA_INSTANTIATE_BATCHNORM(T)                                                                         \
  template void batchnorm_stats_cpu<T>(const T*, const BatchNormArgs&, double*, double*);                    \
  template void batchnorm_forward_cpu<T>(const T*, const double*, const double*, const BatchNormArgs&, T*);  \
  template void batchnorm_backward_reduce_cpu<T>(const T*, const T*, const double*, const double*,           \
                                                 const BatchNormArgs&, double*, double*);                    \
  template void batchnorm_backward_training_cpu<T>(const T*, const T*, const double*, const double*,         \
                                                   const T*, const double*, const double*,                   \
                                                   const BatchNormArgs&, T*);                                \
  template void batchnorm_backward_eval_cpu<T>(const T*, const double*, const T*, const BatchNormArgs&, T*); \
  template void batchnorm_setup_channels_cpu<T>(const BatchNormChannelSetup<T>&);

HPA_INSTANTIATE_BATCHNORM(float)
HPA_INSTANTIATE_BATCHNORM(double)
#undef HPA_INSTANTIATE_BATCHNORM

}  // namespace hpa::kernels
