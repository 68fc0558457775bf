// SGD with momentum, weight decay (L2) and optional L1, written once for every backend:
//   g' = g + weight_decay * w + l1 * sign(w)
//   v  = momentum * v + g'            (PyTorch's convention, no dampening)
//   w  = w - lr * (nesterov ? g' + momentum * v : v)
// The per-element update is HPA_HD so the fused CUDA optimizer will share it.
#pragma once

#include <cstdint>

#include "kernels/hd.h"

namespace hpa::kernels {

struct SgdArgs {
  double lr = 0.01;
  double momentum = 0.0;
  double weight_decay = 0.0;
  double l1 = 0.0;
  bool nesterov = false;
};

template <class T>
HPA_HD inline void sgd_update_element(T& w, T& v, T g, const SgdArgs& a) {
  const T sign = w > T(0) ? T(1) : (w < T(0) ? T(-1) : T(0));
  const T gd = g + static_cast<T>(a.weight_decay) * w + static_cast<T>(a.l1) * sign;
  v = static_cast<T>(a.momentum) * v + gd;
  const T step = a.nesterov ? gd + static_cast<T>(a.momentum) * v : v;
  w -= static_cast<T>(a.lr) * step;
}

// w, v updated in place (=) from g over n elements.
template <class T>
void sgd_update_cpu(T* w, T* v, const T* g, int64_t n, const SgdArgs& a) {
#pragma omp parallel for if (n > 65536) schedule(static)
  for (int64_t i = 0; i < n; ++i) sgd_update_element(w[i], v[i], g[i], a);
}

}  // namespace hpa::kernels
