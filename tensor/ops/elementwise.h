// Elementwise ops. Binary ops broadcast NumPy-style (align trailing dimensions; a size
// of 1 stretches), which covers bias [C] or [1,C,1,1] against [N,C,H,W], per-channel
// scale, and squeeze-excite gating [N,C,1,1] * [N,C,H,W]. The backward of a broadcast
// input sums the gradient over the stretched dimensions.
#pragma once

#include "tensor/tensor.h"

namespace hpa {

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);

Tensor add_scalar(const Tensor& a, double s);
Tensor mul_scalar(const Tensor& a, double s);
Tensor neg(const Tensor& a);

Tensor relu(const Tensor& x);
// SELU with the constants of Klambauer et al. 2017 (alpha 1.6732632423543772,
// scale 1.0507009873554805), as PyTorch.
Tensor selu(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator+(const Tensor& a, double s) { return add_scalar(a, s); }
inline Tensor operator-(const Tensor& a, double s) { return add_scalar(a, -s); }
inline Tensor operator*(const Tensor& a, double s) { return mul_scalar(a, s); }
inline Tensor operator*(double s, const Tensor& a) { return mul_scalar(a, s); }
inline Tensor operator/(const Tensor& a, double s) { return mul_scalar(a, 1.0 / s); }
inline Tensor operator-(const Tensor& a) { return neg(a); }

// The shape two operands broadcast to; throws naming `op` and both shapes if they don't.
Shape broadcast_shape(const Shape& a, const Shape& b, const char* op);
// Sums `g` down to `shape` (the inverse of broadcasting); not recorded.
Tensor sum_to_shape(const Tensor& g, const Shape& shape);
// Stretches x to `shape` (NumPy rules) as a new contiguous tensor; differentiable (its
// gradient is sum_to_shape).
Tensor broadcast_to(const Tensor& x, const Shape& shape);

}  // namespace hpa
