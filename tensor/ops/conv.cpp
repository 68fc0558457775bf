// conv2d: argument checks, output allocation, dispatch to kernels/conv.h, and the backward
// node. The node saves the input only when the weight needs a gradient and the weight
// only when the input needs one, and runs only the backward GEMMs whose gradient some
// input actually requires.
#include "tensor/ops/conv.h"

#include <climits>

#include "kernels/conv.h"
#include "tensor/autograd.h"
#include "tensor/ops/check.h"

namespace hpa {

namespace {

constexpr const char* kOp = "conv2d";

struct Conv2dBackward : Node {
  kernels::Conv2dArgs args;
  Tensor x, weight;
  bool x_needs_grad = false, weight_needs_grad = false, bias_needs_grad = false;

  const char* name() const override { return "Conv2dBackward"; }

  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs) override {
    const Tensor& grad_y = grad_outputs[0];
    Tensor grad_x, grad_weight, grad_bias;
    const DType dtype = grad_y.dtype();
    dispatch_float(dtype, "conv2d backward", [&](auto tag) {
      using T = decltype(tag);
      if (x_needs_grad) {
        grad_x = Tensor::empty({args.n, args.c_in, args.h, args.w}, dtype);
        kernels::conv2d_backward_input_cpu<T>(args, grad_y.data<T>(), weight.data<T>(), grad_x.data<T>());
      }
      if (weight_needs_grad) {
        grad_weight = Tensor::empty({args.c_out, args.c_in / args.groups, args.kh, args.kw}, dtype);
        kernels::conv2d_backward_weight_cpu<T>(args, grad_y.data<T>(), x.data<T>(), grad_weight.data<T>());
      }
      if (bias_needs_grad) {
        grad_bias = Tensor::empty({args.c_out}, dtype);
        kernels::conv2d_backward_bias_cpu<T>(args, grad_y.data<T>(), grad_bias.data<T>());
      }
    });
    return {grad_x, grad_weight, grad_bias};
  }

  void release_saved() override {
    x = Tensor();
    weight = Tensor();
  }
};

std::string options_desc(const Conv2dOptions& o) {
  return detail::concat("stride (", o.stride_h, ", ", o.stride_w, "), padding (", o.pad_h, ", ", o.pad_w,
                        "), dilation (", o.dilation_h, ", ", o.dilation_w, "), groups ", o.groups);
}

kernels::Conv2dArgs checked_args(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                 const Conv2dOptions& o) {
  check::dims(kOp, x, 4, "input");
  check::dims(kOp, weight, 4, "weight");
  check::floating(kOp, x, "input");
  check::same_dtype(kOp, x, weight);
  check::same_device(kOp, x, weight);
  check::cpu_only(kOp, x);
  HPA_CHECK(o.stride_h >= 1 && o.stride_w >= 1 && o.dilation_h >= 1 && o.dilation_w >= 1 && o.pad_h >= 0 &&
                o.pad_w >= 0 && o.groups >= 1,
            kOp, ": invalid options ", options_desc(o),
            " (stride and dilation must be >= 1, padding >= 0, groups >= 1)");
  for (int d = 0; d < 4; ++d)
    HPA_CHECK(weight.size(d) >= 1, kOp, ": weight ", weight.desc(), " has an empty dimension");
  const int64_t c_in = x.size(1), c_out = weight.size(0);
  HPA_CHECK(c_in == weight.size(1) * o.groups, kOp, ": input ", x.desc(), " has ", c_in,
            " channels but weight ", weight.desc(), " with groups ", o.groups, " expects ",
            weight.size(1) * o.groups);
  HPA_CHECK(c_out % o.groups == 0, kOp, ": weight ", weight.desc(), " has ", c_out,
            " output channels, not divisible by groups ", o.groups);
  if (bias.defined()) {
    check::dims(kOp, bias, 1, "bias");
    check::same_dtype(kOp, x, bias);
    check::same_device(kOp, x, bias);
    HPA_CHECK(bias.size(0) == c_out, kOp, ": bias ", bias.desc(), " does not match the ", c_out,
              " output channels of weight ", weight.desc());
  }

  kernels::Conv2dArgs a;
  a.n = x.size(0);
  a.c_in = c_in;
  a.h = x.size(2);
  a.w = x.size(3);
  a.c_out = c_out;
  a.kh = weight.size(2);
  a.kw = weight.size(3);
  a.stride_h = o.stride_h;
  a.stride_w = o.stride_w;
  a.pad_h = o.pad_h;
  a.pad_w = o.pad_w;
  a.dilation_h = o.dilation_h;
  a.dilation_w = o.dilation_w;
  a.groups = o.groups;
  a.h_out = kernels::conv_output_size(a.h, a.kh, a.stride_h, a.pad_h, a.dilation_h);
  a.w_out = kernels::conv_output_size(a.w, a.kw, a.stride_w, a.pad_w, a.dilation_w);
  HPA_CHECK(a.h_out >= 1 && a.w_out >= 1, kOp, ": output size ", a.h_out, " x ", a.w_out,
            " is not positive for input ", x.desc(), " and weight ", weight.desc(), " with ",
            options_desc(o));
  // The GEMMs index with BLAS's 32-bit ints.
  HPA_CHECK(a.h * a.w <= INT_MAX && a.h_out * a.w_out <= INT_MAX && weight.size(1) * a.kh * a.kw <= INT_MAX,
            kOp, ": input ", x.desc(), " or weight ", weight.desc(), " exceeds the 32-bit GEMM index range");
  return a;
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& options) {
  const kernels::Conv2dArgs a = checked_args(x, weight, bias, options);
  Tensor y = Tensor::empty({a.n, a.c_out, a.h_out, a.w_out}, x.dtype(), x.device());
  dispatch_float(x.dtype(), kOp, [&](auto tag) {
    using T = decltype(tag);
    kernels::conv2d_forward_cpu<T>(a, x.data<T>(), weight.data<T>(),
                                   bias.defined() ? bias.data<T>() : nullptr, y.data<T>());
  });

  if (needs_grad({x, weight, bias})) {
    auto node = std::make_shared<Conv2dBackward>();
    node->args = a;
    node->x_needs_grad = x.requires_grad();
    node->weight_needs_grad = weight.requires_grad();
    node->bias_needs_grad = bias.defined() && bias.requires_grad();
    if (node->weight_needs_grad) node->x = x.detach();
    if (node->x_needs_grad) node->weight = weight.detach();
    record(node, {x, weight, bias}, {y});
  }
  return y;
}

}  // namespace hpa
