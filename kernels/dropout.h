// Dropout and alpha-dropout kernels (CPU loops in dropout.cpp, CUDA twins in dropout.cu).
// The mask is never stored: element i of a draw made at generator offset `offset` is kept
// iff philox_uniform(philox4x32_10(i, offset, seed).v[0]) >= p (the comparison in double),
// a pure function of (seed, offset, i). The forward and backward passes, on any device and
// any parallel split, therefore see the same mask, and backward recomputes it instead of
// keeping an activation-sized buffer alive.
//
// Both ops are out = keep ? x * kept_scale + kept_shift : dropped_value, with
//   dropout:        kept_scale = 1/(1-p), kept_shift = 0, dropped_value = 0;
//   alpha-dropout:  kept_scale = a, kept_shift = b, dropped_value = a*alpha' + b
// (see alpha_dropout_affine), and the input gradient is keep ? g * kept_scale : 0.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/hd.h"
#include "kernels/philox.h"

namespace hpa::kernels {

struct DropoutArgs {
  uint64_t seed = 0, offset = 0;
  double p = 0;
  double kept_scale = 1, kept_shift = 0, dropped_value = 0;
};

HPA_HD inline bool dropout_keep(uint64_t element, uint64_t offset, uint64_t seed, double p) {
  return static_cast<double>(philox_uniform(philox4x32_10(element, offset, seed).v[0])) >= p;
}

// SELU's negative saturation value -scale*alpha (Klambauer et al. 2017), as PyTorch.
constexpr double kAlphaDropoutSaturation = -1.7580993408473766;

// a = ((1-p) (1 + p alpha'^2))^(-1/2), b = -a alpha' p: with them a standard-normal input
// keeps mean 0 and variance 1 through alpha-dropout. Requires p < 1.
struct AlphaDropoutAffine {
  double a, b;
};

HPA_HD inline AlphaDropoutAffine alpha_dropout_affine(double p) {
  const double alpha = kAlphaDropoutSaturation;
  const double a = 1.0 / sqrt((1.0 - p) * (1.0 + p * alpha * alpha));
  return {a, -a * alpha * p};
}

template <class T>
HPA_HD inline T dropout_value(T x, bool keep, const DropoutArgs& d) {
  return keep ? static_cast<T>(x * static_cast<T>(d.kept_scale) + static_cast<T>(d.kept_shift))
              : static_cast<T>(d.dropped_value);
}

template <class T>
HPA_HD inline T dropout_grad(T g, bool keep, const DropoutArgs& d) {
  return keep ? static_cast<T>(g * static_cast<T>(d.kept_scale)) : T(0);
}

// y[i] = dropout_value(x[i], keep(i)); written (=).
template <class T>
void dropout_forward_cpu(const T* x, int64_t n, const DropoutArgs& d, T* y);

// grad_x[i] = dropout_grad(grad_y[i], keep(i)); written (=).
template <class T>
void dropout_backward_cpu(const T* grad_y, int64_t n, const DropoutArgs& d, T* grad_x);

// CUDA twins (dropout.cu): same contracts, device pointers, queued on `stream`. The mask is
// bit-identical to the CPU's for the same (seed, offset).
template <class T>
void dropout_forward_cuda(const T* x, int64_t n, const DropoutArgs& d, T* y, Stream stream);

template <class T>
void dropout_backward_cuda(const T* grad_y, int64_t n, const DropoutArgs& d, T* grad_x, Stream stream);

}  // namespace hpa::kernels
