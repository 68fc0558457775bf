// Elementwise ops: argument checks, dispatch to kernels/elementwise.h, and backward nodes.
//
// Saved tensors are detached handles (same storage, no autograd state), so a node that
// saves its own output (relu, sigmoid, exp) never owns itself through grad_fn. Backward
// passes run under the engine's NoGradGuard and reuse the public ops for their algebra.
// Every kernel call dispatches on the device of the tensor it writes: the CPU loop, or
// the CUDA twin on that device's stream.
#include "tensor/ops/elementwise.h"

#include <algorithm>
#include <memory>
#include <vector>

#include "kernels/elementwise.h"
#include "kernels/reduce.h"
#include "tensor/autograd.h"
#include "tensor/ops/check.h"
#include "tensor/ops/dispatch.h"
#ifdef HPA_WITH_CUDA
#include "tensor/cuda_backend.h"
#endif

namespace hpa {

namespace {

using kernels::BinaryOp;
using kernels::UnaryOp;
using kernels::UnarySaved;

const char* binary_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::add:
      return "add";
    case BinaryOp::sub:
      return "sub";
    case BinaryOp::mul:
      return "mul";
    case BinaryOp::div:
      return "div";
  }
  return "?";
}

const char* unary_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::add_scalar:
      return "add_scalar";
    case UnaryOp::mul_scalar:
      return "mul_scalar";
    case UnaryOp::neg:
      return "neg";
    case UnaryOp::relu:
      return "relu";
    case UnaryOp::selu:
      return "selu";
    case UnaryOp::sigmoid:
      return "sigmoid";
    case UnaryOp::exp:
      return "exp";
    case UnaryOp::log:
      return "log";
  }
  return "?";
}

kernels::BroadcastArgs broadcast_args(const Shape& out, const Shape& a, const Shape& b) {
  return kernels::make_broadcast_args(out.begin(), out.size(), a.begin(), a.size(), b.begin(), b.size());
}

// out = a (op) b, unchecked and unrecorded.
Tensor binary_kernel(BinaryOp op, const Tensor& a, const Tensor& b, const Shape& out_shape) {
  Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());
  const auto args = broadcast_args(out_shape, a.shape(), b.shape());
  dispatch_float(a.dtype(), binary_name(op), [&](auto tag) {
    using T = decltype(tag);
    if (out.is_cuda()) {
#ifdef HPA_WITH_CUDA
      kernels::binary_forward_cuda(op, a.data<T>(), b.data<T>(), out.data<T>(), args, stream_of(out));
#else
      no_cuda(binary_name(op), out);
#endif
    } else {
      kernels::binary_forward_cpu(op, a.data<T>(), b.data<T>(), out.data<T>(), args);
    }
  });
  return out;
}

struct BinaryBackward : Node {
  BinaryOp op = BinaryOp::add;
  Shape a_shape, b_shape;
  Tensor a, b;  // saved by mul and div only, and only where a gradient needs them

  const char* name() const override { return binary_name(op); }

  std::vector<Tensor> backward(const std::vector<Tensor>& grads) override {
    const Tensor& g = grads[0];
    const bool need_a = next[0].valid(), need_b = next[1].valid();
    Tensor grad_a, grad_b;
    switch (op) {
      case BinaryOp::add:
        if (need_a) grad_a = sum_to_shape(g, a_shape);
        if (need_b) grad_b = sum_to_shape(g, b_shape);
        break;
      case BinaryOp::sub:
        if (need_a) grad_a = sum_to_shape(g, a_shape);
        if (need_b) grad_b = neg(sum_to_shape(g, b_shape));
        break;
      case BinaryOp::mul:
        if (need_a) grad_a = sum_to_shape(mul(g, b), a_shape);
        if (need_b) grad_b = sum_to_shape(mul(g, a), b_shape);
        break;
      case BinaryOp::div: {
        // grad_a = g / b;  grad_b = -g * a / b^2 = -(g / b) * (a / b)
        const Tensor g_over_b = div(g, b);
        if (need_a) grad_a = sum_to_shape(g_over_b, a_shape);
        if (need_b) grad_b = neg(sum_to_shape(mul(g_over_b, div(a, b)), b_shape));
        break;
      }
    }
    return {grad_a, grad_b};
  }

  void release_saved() override {
    a = Tensor();
    b = Tensor();
  }
};

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  check::floating(name, a, "a");
  check::floating(name, b, "b");
  check::same_device(name, a, b);
  check::same_dtype(name, a, b);
  const Shape out_shape = broadcast_shape(a.shape(), b.shape(), name);
  Tensor out = binary_kernel(op, a, b, out_shape);
  if (needs_grad({a, b})) {
    auto node = std::make_shared<BinaryBackward>();
    node->op = op;
    node->a_shape = a.shape();
    node->b_shape = b.shape();
    const bool a_grad = a.requires_grad(), b_grad = b.requires_grad();
    if (op == BinaryOp::mul) {
      if (b_grad) node->a = a.detach();
      if (a_grad) node->b = b.detach();
    } else if (op == BinaryOp::div) {
      if (b_grad) node->a = a.detach();
      node->b = b.detach();
    }
    record(node, {a, b}, {out});
  }
  return out;
}

struct UnaryBackward : Node {
  UnaryOp op = UnaryOp::neg;
  double scalar = 0;
  Tensor saved;  // the input or the output, as kernels::unary_saved(op) says

  const char* name() const override { return unary_name(op); }

  std::vector<Tensor> backward(const std::vector<Tensor>& grads) override {
    const Tensor& g = grads[0];
    Tensor grad_x = Tensor::empty(g.shape(), g.dtype(), g.device());
    const kernels::UnaryArgs args{g.numel(), scalar};
    dispatch_float(g.dtype(), unary_name(op), [&](auto tag) {
      using T = decltype(tag);
      const T* s = saved.defined() ? saved.data<T>() : nullptr;
      if (g.is_cuda()) {
#ifdef HPA_WITH_CUDA
        kernels::unary_backward_cuda(op, g.data<T>(), s, grad_x.data<T>(), args, stream_of(g));
#else
        no_cuda(unary_name(op), g);
#endif
      } else {
        kernels::unary_backward_cpu(op, g.data<T>(), s, grad_x.data<T>(), args);
      }
    });
    return {grad_x};
  }

  void release_saved() override { saved = Tensor(); }
};

Tensor unary(UnaryOp op, const Tensor& x, double scalar = 0) {
  const char* name = unary_name(op);
  check::floating(name, x, "x");
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  const kernels::UnaryArgs args{x.numel(), scalar};
  dispatch_float(x.dtype(), name, [&](auto tag) {
    using T = decltype(tag);
    if (x.is_cuda()) {
#ifdef HPA_WITH_CUDA
      kernels::unary_forward_cuda(op, x.data<T>(), out.data<T>(), args, stream_of(x));
#else
      no_cuda(name, x);
#endif
    } else {
      kernels::unary_forward_cpu(op, x.data<T>(), out.data<T>(), args);
    }
  });
  if (needs_grad({x})) {
    auto node = std::make_shared<UnaryBackward>();
    node->op = op;
    node->scalar = scalar;
    switch (kernels::unary_saved(op)) {
      case UnarySaved::input:
        node->saved = x.detach();
        break;
      case UnarySaved::output:
        node->saved = out.detach();
        break;
      case UnarySaved::none:
        break;
    }
    record(node, {x}, {out});
  }
  return out;
}

struct BroadcastToBackward : Node {
  Shape input_shape;
  const char* name() const override { return "broadcast_to"; }
  std::vector<Tensor> backward(const std::vector<Tensor>& grads) override {
    return {sum_to_shape(grads[0], input_shape)};
  }
};

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary(BinaryOp::add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinaryOp::sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryOp::mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::div, a, b); }

Tensor add_scalar(const Tensor& a, double s) { return unary(UnaryOp::add_scalar, a, s); }
Tensor mul_scalar(const Tensor& a, double s) { return unary(UnaryOp::mul_scalar, a, s); }
Tensor neg(const Tensor& a) { return unary(UnaryOp::neg, a); }

Tensor relu(const Tensor& x) { return unary(UnaryOp::relu, x); }
Tensor selu(const Tensor& x) { return unary(UnaryOp::selu, x); }
Tensor sigmoid(const Tensor& x) { return unary(UnaryOp::sigmoid, x); }
Tensor exp(const Tensor& x) { return unary(UnaryOp::exp, x); }
Tensor log(const Tensor& x) { return unary(UnaryOp::log, x); }

Shape broadcast_shape(const Shape& a, const Shape& b, const char* op) {
  const int n = std::max(a.size(), b.size());
  std::vector<int64_t> out(static_cast<size_t>(n));
  for (int i = 1; i <= n; ++i) {  // i-th dimension from the end
    const int64_t size_a = i <= a.size() ? a[a.size() - i] : 1;
    const int64_t size_b = i <= b.size() ? b[b.size() - i] : 1;
    HPA_CHECK(size_a == size_b || size_a == 1 || size_b == 1, op, ": shapes ", a, " and ", b,
              " cannot be broadcast together (dimension ", -i, ": ", size_a, " vs ", size_b, ")");
    out[static_cast<size_t>(n - i)] = size_a == 1 ? size_b : size_a;
  }
  return Shape(out);
}

Tensor sum_to_shape(const Tensor& g, const Shape& shape) {
  check::floating("sum_to_shape", g, "g");
  if (g.shape() == shape) return g;
  HPA_CHECK(shape.size() <= g.dim() && broadcast_shape(shape, g.shape(), "sum_to_shape") == g.shape(),
            "sum_to_shape: ", shape, " does not broadcast to ", g.desc());
  const int lead = g.dim() - shape.size();
  bool reduce_dim[Shape::kMaxDims] = {};
  for (int d = 0; d < g.dim(); ++d) reduce_dim[d] = d < lead || (shape[d - lead] == 1 && g.shape()[d] != 1);
  const auto args = kernels::make_reduce_args(g.shape().begin(), g.dim(), reduce_dim, 1.0);
  Tensor out = Tensor::empty(shape, g.dtype(), g.device());
  dispatch_float(g.dtype(), "sum_to_shape", [&](auto tag) {
    using T = decltype(tag);
    if (g.is_cuda()) {
#ifdef HPA_WITH_CUDA
      const int64_t workspace_elements = kernels::reduce_sum_cuda_workspace_elements(args);
      Tensor workspace;
      if (workspace_elements > 0) workspace = Tensor::empty({workspace_elements}, DType::f64, g.device());
      kernels::reduce_sum_cuda(g.data<T>(), out.data<T>(), args,
                               workspace.defined() ? workspace.data<double>() : nullptr, stream_of(g));
#else
      no_cuda("sum_to_shape", g);
#endif
    } else {
      kernels::reduce_sum_cpu(g.data<T>(), out.data<T>(), args);
    }
  });
  return out;
}

Tensor broadcast_to(const Tensor& x, const Shape& shape) {
  check::floating("broadcast_to", x, "x");
  HPA_CHECK(x.dim() <= shape.size() && broadcast_shape(x.shape(), shape, "broadcast_to") == shape,
            "broadcast_to: ", x.desc(), " cannot be broadcast to ", shape);
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  const auto args = broadcast_args(shape, x.shape(), shape);
  dispatch_float(x.dtype(), "broadcast_to", [&](auto tag) {
    using T = decltype(tag);
    if (x.is_cuda()) {
#ifdef HPA_WITH_CUDA
      kernels::broadcast_scaled_cuda(x.data<T>(), out.data<T>(), args, T(1), stream_of(x));
#else
      no_cuda("broadcast_to", x);
#endif
    } else {
      kernels::broadcast_scaled_cpu(x.data<T>(), out.data<T>(), args, T(1));
    }
  });
  if (needs_grad({x})) {
    auto node = std::make_shared<BroadcastToBackward>();
    node->input_shape = x.shape();
    record(node, {x}, {out});
  }
  return out;
}

}  // namespace hpa
