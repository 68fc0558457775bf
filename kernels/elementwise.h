// Elementwise kernels: binary ops with NumPy broadcasting, scalar and unary ops, and the
// per-element math (forward and derivative) that the CPU loops and a CUDA twin share.
//
// Broadcasting travels as a BroadcastArgs: the output shape with, for each operand, the
// element stride to take per output step (0 along a stretched dimension). Adjacent
// dimensions that step through both operands the same way are merged first, so
// [N,C,H,W] + [1,C,1,1] runs as [N, C, H*W] and same-shape operands as one flat loop.
// Along the innermost merged dimension an operand's stride is always 0 or 1.
//
// Which functor computes which op is decided once, by the visit_* helpers below: the CPU
// loops and the CUDA kernels both receive the functor from them, so the two twins cannot
// disagree on an op's formula.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/hd.h"

namespace hpa::kernels {

// ---- per-element math -----------------------------------------------------------------
// Each *_backward takes the output gradient and the tensor that the op saves (named in
// the argument) and returns the input gradient.

// The subgradient at exactly 0 is 0 (as PyTorch). The output is saved: y > 0 iff x > 0.
template <class T>
HPA_HD inline T relu_forward(T x) {
  return x > T(0) ? x : T(0);
}
template <class T>
HPA_HD inline T relu_backward(T grad_y, T y) {
  return y > T(0) ? grad_y : T(0);
}

// Klambauer et al. 2017, with PyTorch's constants. At x == 0 the derivative takes the
// negative branch (scale * alpha), as PyTorch's elu_backward does.
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;
template <class T>
HPA_HD inline T selu_forward(T x) {
  return x > T(0) ? T(kSeluScale) * x : T(kSeluScale * kSeluAlpha) * std::expm1(x);
}
template <class T>
HPA_HD inline T selu_backward(T grad_y, T x) {
  return x > T(0) ? grad_y * T(kSeluScale) : grad_y * T(kSeluScale * kSeluAlpha) * std::exp(x);
}

// exp is only ever taken of a non-positive number, so +-100 (or +-1e30) gives 0 or 1,
// never inf/inf.
template <class T>
HPA_HD inline T sigmoid_forward(T x) {
  if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
  const T e = std::exp(x);
  return e / (T(1) + e);
}
template <class T>
HPA_HD inline T sigmoid_backward(T grad_y, T y) {
  return grad_y * y * (T(1) - y);
}

template <class T>
HPA_HD inline T exp_forward(T x) {
  return std::exp(x);
}
template <class T>
HPA_HD inline T exp_backward(T grad_y, T y) {
  return grad_y * y;
}

// log of a negative number is NaN and log(0) is -inf, as IEEE says; no check.
template <class T>
HPA_HD inline T log_forward(T x) {
  return std::log(x);
}
template <class T>
HPA_HD inline T log_backward(T grad_y, T x) {
  return grad_y / x;
}

struct AddFn {
  template <class T>
  HPA_HD T operator()(T a, T b) const {
    return a + b;
  }
};
struct SubFn {
  template <class T>
  HPA_HD T operator()(T a, T b) const {
    return a - b;
  }
};
struct MulFn {
  template <class T>
  HPA_HD T operator()(T a, T b) const {
    return a * b;
  }
};
struct DivFn {
  template <class T>
  HPA_HD T operator()(T a, T b) const {
    return a / b;
  }
};

// src * scale, with the second operand ignored: broadcast_scaled runs through the binary
// broadcast loop with src as both operands.
template <class T>
struct ScaleFirstFn {
  T scale;
  HPA_HD T operator()(T src, T) const { return src * scale; }
};

// Whether a binary functor reads its second operand (kernels skip the load when not).
template <class F>
struct reads_second_operand {
  static constexpr bool value = true;
};
template <class T>
struct reads_second_operand<ScaleFirstFn<T>> {
  static constexpr bool value = false;
};

// Unary forward functors (y = f(x)) and backward functors. A backward functor with
// kUsesSaved false maps the output gradient alone (g -> grad_x); with kUsesSaved true it
// zips the gradient with the saved tensor ((g, saved) -> grad_x).
template <class T>
struct AddScalarForward {
  T s;
  HPA_HD T operator()(T x) const { return x + s; }
};
template <class T>
struct MulScalarForward {
  T s;
  HPA_HD T operator()(T x) const { return x * s; }
};
template <class T>
struct NegForward {
  HPA_HD T operator()(T x) const { return -x; }
};
template <class T>
struct ReluForward {
  HPA_HD T operator()(T x) const { return relu_forward(x); }
};
template <class T>
struct SeluForward {
  HPA_HD T operator()(T x) const { return selu_forward(x); }
};
template <class T>
struct SigmoidForward {
  HPA_HD T operator()(T x) const { return sigmoid_forward(x); }
};
template <class T>
struct ExpForward {
  HPA_HD T operator()(T x) const { return exp_forward(x); }
};
template <class T>
struct LogForward {
  HPA_HD T operator()(T x) const { return log_forward(x); }
};

template <class T>
struct IdentityBackward {  // add_scalar
  static constexpr bool kUsesSaved = false;
  HPA_HD T operator()(T g) const { return g; }
};
template <class T>
struct MulScalarBackward {
  static constexpr bool kUsesSaved = false;
  T s;
  HPA_HD T operator()(T g) const { return g * s; }
};
template <class T>
struct NegBackward {
  static constexpr bool kUsesSaved = false;
  HPA_HD T operator()(T g) const { return -g; }
};
template <class T>
struct ReluBackward {
  static constexpr bool kUsesSaved = true;
  HPA_HD T operator()(T g, T y) const { return relu_backward(g, y); }
};
template <class T>
struct SeluBackward {
  static constexpr bool kUsesSaved = true;
  HPA_HD T operator()(T g, T x) const { return selu_backward(g, x); }
};
template <class T>
struct SigmoidBackward {
  static constexpr bool kUsesSaved = true;
  HPA_HD T operator()(T g, T y) const { return sigmoid_backward(g, y); }
};
template <class T>
struct ExpBackward {
  static constexpr bool kUsesSaved = true;
  HPA_HD T operator()(T g, T y) const { return exp_backward(g, y); }
};
template <class T>
struct LogBackward {
  static constexpr bool kUsesSaved = true;
  HPA_HD T operator()(T g, T x) const { return log_backward(g, x); }
};

// ---- binary ops with broadcasting -----------------------------------------------------

enum class BinaryOp : uint8_t { add, sub, mul, div };

constexpr int kMaxBroadcastDims = 5;

struct BroadcastArgs {
  int ndim = 1;  // after merging; at least 1
  int64_t sizes[kMaxBroadcastDims] = {1};
  int64_t stride_a[kMaxBroadcastDims] = {0};
  int64_t stride_b[kMaxBroadcastDims] = {0};
  int64_t numel = 1;  // of the output
};

// Sizes are right-aligned against the output (NumPy rules); the caller has checked that
// each of a and b broadcasts to out.
BroadcastArgs make_broadcast_args(const int64_t* out_sizes, int out_ndim, const int64_t* a_sizes, int a_ndim,
                                  const int64_t* b_sizes, int b_ndim);

// out = a (op) b over the broadcast shape (writes =).
template <class T>
void binary_forward_cpu(BinaryOp op, const T* a, const T* b, T* out, const BroadcastArgs& args);

// out = scale * src, with src stretched over the output (only stride_a is read): the
// backward of a reduction, and broadcast_to.
template <class T>
void broadcast_scaled_cpu(const T* src, T* out, const BroadcastArgs& args, T scale);

// Calls visit(functor) with the functor of `op`.
template <class Visitor>
void visit_binary(BinaryOp op, Visitor&& visit) {
  switch (op) {
    case BinaryOp::add:
      return visit(AddFn{});
    case BinaryOp::sub:
      return visit(SubFn{});
    case BinaryOp::mul:
      return visit(MulFn{});
    case BinaryOp::div:
      return visit(DivFn{});
  }
}

// ---- unary and scalar ops -------------------------------------------------------------

enum class UnaryOp : uint8_t { add_scalar, mul_scalar, neg, relu, selu, sigmoid, exp, log };

// Calls visit(functor) with the forward functor of `op`; s is the scalar of add_scalar /
// mul_scalar.
template <class T, class Visitor>
void visit_unary_forward(UnaryOp op, T s, Visitor&& visit) {
  switch (op) {
    case UnaryOp::add_scalar:
      return visit(AddScalarForward<T>{s});
    case UnaryOp::mul_scalar:
      return visit(MulScalarForward<T>{s});
    case UnaryOp::neg:
      return visit(NegForward<T>{});
    case UnaryOp::relu:
      return visit(ReluForward<T>{});
    case UnaryOp::selu:
      return visit(SeluForward<T>{});
    case UnaryOp::sigmoid:
      return visit(SigmoidForward<T>{});
    case UnaryOp::exp:
      return visit(ExpForward<T>{});
    case UnaryOp::log:
      return visit(LogForward<T>{});
  }
}

// Calls visit(functor) with the backward functor of `op` (see kUsesSaved above).
template <class T, class Visitor>
void visit_unary_backward(UnaryOp op, T s, Visitor&& visit) {
  switch (op) {
    case UnaryOp::add_scalar:
      return visit(IdentityBackward<T>{});
    case UnaryOp::mul_scalar:
      return visit(MulScalarBackward<T>{s});
    case UnaryOp::neg:
      return visit(NegBackward<T>{});
    case UnaryOp::relu:
      return visit(ReluBackward<T>{});
    case UnaryOp::selu:
      return visit(SeluBackward<T>{});
    case UnaryOp::sigmoid:
      return visit(SigmoidBackward<T>{});
    case UnaryOp::exp:
      return visit(ExpBackward<T>{});
    case UnaryOp::log:
      return visit(LogBackward<T>{});
  }
}

struct UnaryArgs {
  int64_t n = 0;
  double scalar = 0;  // the s of add_scalar / mul_scalar
};

// Which tensor an op's backward needs: its input x or its output y (none for the scalar
// ops and neg, whose derivative is a constant).
enum class UnarySaved : uint8_t { none, input, output };
inline UnarySaved unary_saved(UnaryOp op) {
  switch (op) {
    case UnaryOp::relu:
    case UnaryOp::sigmoid:
    case UnaryOp::exp:
      return UnarySaved::output;
    case UnaryOp::selu:
    case UnaryOp::log:
      return UnarySaved::input;
    default:
      return UnarySaved::none;
  }
}

// y = f(x) (writes =).
template <class T>
void unary_forward_cpu(UnaryOp op, const T* x, T* y, const UnaryArgs& args);

// grad_x = grad_y * f'(.) (writes =); `saved` is what unary_saved(op) names (ignored
// for none).
template <class T>
void unary_backward_cpu(UnaryOp op, const T* grad_y, const T* saved, T* grad_x, const UnaryArgs& args);

// ---- CUDA twins (kernels/elementwise.cu) ----------------------------------------------
// Same contracts as the CPU versions; pointers are device memory, work is queued on
// `stream` (nothing synchronizes).
template <class T>
void binary_forward_cuda(BinaryOp op, const T* a, const T* b, T* out, const BroadcastArgs& args,
                         Stream stream);
template <class T>
void broadcast_scaled_cuda(const T* src, T* out, const BroadcastArgs& args, T scale, Stream stream);
template <class T>
void unary_forward_cuda(UnaryOp op, const T* x, T* y, const UnaryArgs& args, Stream stream);
template <class T>
void unary_backward_cuda(UnaryOp op, const T* grad_y, const T* saved, T* grad_x, const UnaryArgs& args,
                         Stream stream);

}  // namespace hpa::kernels
