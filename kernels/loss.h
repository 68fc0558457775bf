// Per-sample binary cross-entropy and focal loss on logits: the per-element math, shared
// by the CPU twin (loss.cpp) and the CUDA twin (loss.cu), and the kernel declarations.
//
// Design rule: the forward computes the loss and its derivative with respect to the
// logits in one pass (the gradient is a by-product of the same sigmoid and log1p), and
// stores the derivative already scaled by w_c / C. The backward is then a row scale by
// the incoming per-sample gradient and never touches a transcendental function.
//
// Numerics, for any finite logit x (tested at |x| = 1000):
//  - p = sigmoid(x) and 1 - p are each computed from exp(-|x|), so both keep full
//    relative precision and neither is ever formed as 1 - (something close to 1);
//  - BCE = max(x,0) - x*y + log1p(exp(-|x|)) never takes the log of 0;
//  - dBCE/dx = p - y is formed as p*(1-y) - (1-p)*y, so for y = 1 it is exactly -(1-p)
//    instead of a cancellation that rounds to 0;
//  - focal's derivative is written with factors that are all bounded (see
//    focal_loss_and_grad), so no inf * 0 can appear at saturated logits.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/hd.h"

namespace hpa::kernels {

template <class T>
struct LossAndGrad {
  T loss;  // l(x, y)
  T grad;  // dl/dx
};

// sigmoid(x) and 1 - sigmoid(x), both to full relative precision.
template <class T>
HPA_HD inline void sigmoid_and_complement(T x, T& p, T& one_minus_p) {
  using std::exp;
  using std::fabs;
  const T e = exp(-fabs(x));  // in (0, 1]: never overflows
  const T inv = T(1) / (T(1) + e);
  if (x >= T(0)) {
    p = inv;
    one_minus_p = e * inv;
  } else {
    p = e * inv;
    one_minus_p = inv;
  }
}

// Binary cross-entropy of logit x against target y in [0, 1] (soft targets allowed):
//   l = -(y log p + (1-y) log(1-p)) = max(x,0) - x*y + log1p(exp(-|x|)),
//   dl/dx = p - y.
template <class T>
HPA_HD inline LossAndGrad<T> bce_with_logits_and_grad(T x, T y) {
  using std::exp;
  using std::fabs;
  using std::log1p;
  T p, one_minus_p;
  sigmoid_and_complement(x, p, one_minus_p);
  LossAndGrad<T> r;
  r.loss = (x > T(0) ? x : T(0)) - x * y + log1p(exp(-fabs(x)));
  r.grad = p * (T(1) - y) - one_minus_p * y;
  return r;
}

// Focal loss (Lin et al. 2017) on logit x, target y in [0, 1], focusing gamma >= 0:
//   l = q^gamma * BCE(x, y),  q = 1 - p_t,  p_t = p*y + (1-p)*(1-y).
// For a hard target this is the usual p_t (p if y = 1, else 1 - p); a soft target
// interpolates p_t linearly, as torchvision's sigmoid_focal_loss does. q is formed as
// p*(1-y) + (1-p)*y from the two precise sigmoids, so it keeps full relative precision
// down to underflow; it only underflows where the loss and its gradient (both below
// (1+gamma)*q for hard targets) underflow too, so no log-space detour is needed.
//
// Derivative. With dp/dx = p(1-p) and dq/dx = p(1-p)(1-2y):
//   dl/dx = gamma q^(gamma-1) p(1-p)(1-2y) BCE + q^gamma (p - y)
//         = q^gamma [ (p - y) + gamma * ratio * (1-2y) * BCE ],   ratio = p(1-p) / q.
// Since p(1-y) >= p(1-p)(1-y) and (1-p)y >= p(1-p)y, q >= p(1-p): ratio is in [0, 1]
// and the bracket is bounded by 1 + gamma*BCE, whereas q^(gamma-1) alone blows up for
// gamma < 1 at saturated logits. q = 0 happens only for a hard target whose matching
// sigmoid underflowed, where ratio's limit is 1 (it equals p for y = 1, 1-p for y = 0).
// With gamma = 0, q^0 = 1 and gamma * (...) = 0 exactly: the result is bit-for-bit BCE.
template <class T>
HPA_HD inline LossAndGrad<T> focal_loss_and_grad(T x, T y, T gamma) {
  using std::exp;
  using std::fabs;
  using std::log1p;
  using std::pow;
  T p, one_minus_p;
  sigmoid_and_complement(x, p, one_minus_p);
  const T bce = (x > T(0) ? x : T(0)) - x * y + log1p(exp(-fabs(x)));
  const T bce_grad = p * (T(1) - y) - one_minus_p * y;
  const T q = p * (T(1) - y) + one_minus_p * y;
  const T ratio = q > T(0) ? p * one_minus_p / q : T(1);
  const T modulating = pow(q, gamma);  // pow(0, 0) = 1 keeps gamma = 0 exact
  LossAndGrad<T> r;
  r.loss = modulating * bce;
  r.grad = modulating * (bce_grad + gamma * ratio * (T(1) - T(2) * y) * bce);
  return r;
}

// The value checks of the op: a target must lie in [0, 1] and a class weight in
// [0, DBL_MAX] (finite, >= 0), both compared in double. The negated form catches NaN.
HPA_HD inline bool outside_closed_range(double v, double lo, double hi) { return !(v >= lo && v <= hi); }

enum class PerSampleLossKind { bce, focal };

struct PerSampleLossArgs {
  int64_t n = 0;  // samples (rows)
  int64_t c = 0;  // classes (columns), >= 1
  PerSampleLossKind kind = PerSampleLossKind::bce;
  double gamma = 0;  // focal only
};

// loss[n] = (1/C) sum_c w_c l(logits[n,c], targets[n,c]), w_c = 1 when class_weights is
// null. When grad_logits is non-null it is written (=) with d loss[n] / d logits[n,c]
// = (w_c / C) dl/dx, the fused gradient the backward scales.
template <class T>
void per_sample_loss_forward_cpu(const T* logits, const T* targets, const T* class_weights, T* loss,
                                 T* grad_logits, const PerSampleLossArgs& args);

// grad_logits[n,c] = grad_loss[n] * fused_grad[n,c]; writes (=).
template <class T>
void per_sample_loss_backward_cpu(const T* grad_loss, const T* fused_grad, T* grad_logits, int64_t n,
                                  int64_t c);

// Index of the first element outside [lo, hi] or NaN, or -1 when all are inside: the
// argument checks for targets ([0, 1]) and class weights ([0, +inf)).
template <class T>
int64_t first_outside_cpu(const T* values, int64_t count, double lo, double hi);

// CUDA twin of per_sample_loss_forward_cpu, with first_outside_cpu's value checks done in
// the same pass instead of two extra ones: first_invalid points to 2 int64 of device memory
// that receive [0] the flat index of the first target outside [0, 1] or NaN and [1] the
// index of the first negative or non-finite class weight, each -1 when there is none (the
// launcher resets them). The caller reads them back to raise the op's error: one 16-byte
// device-to-host copy per call. Each row's sum runs in a fixed order, so a result repeats
// bit for bit; the order differs from the CPU's, so the two agree to rounding.
template <class T>
void per_sample_loss_forward_cuda(const T* logits, const T* targets, const T* class_weights, T* loss,
                                  T* grad_logits, const PerSampleLossArgs& args, int64_t* first_invalid,
                                  Stream stream);

// CUDA twin of per_sample_loss_backward_cpu; writes (=).
template <class T>
void per_sample_loss_backward_cuda(const T* grad_loss, const T* fused_grad, T* grad_logits, int64_t n,
                                   int64_t c, Stream stream);

}  // namespace hpa::kernels
