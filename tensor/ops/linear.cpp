// linear: argument checks, dispatch by the input's device to the CPU kernels or their
// cuBLAS twins (kernels/linear.h), and the backward node, which saves x only when the
// weight needs a gradient and the weight only when x needs one.
#include "tensor/ops/linear.h"

#include <climits>

#include "kernels/linear.h"
#include "tensor/autograd.h"
#include "tensor/ops/check.h"
#ifdef HPA_WITH_CUDA
#include "tensor/cuda_backend.h"
#endif

namespace hpa {

namespace {

constexpr const char* kOp = "linear";

#ifdef HPA_WITH_CUDA
kernels::GemmCudaContext cuda_context(Device device) {
  return {device.index, static_cast<kernels::Stream>(cuda::stream(device.index)), cuda::allow_tf32()};
}
#else
[[noreturn]] void no_cuda(Device device) {
  HPA_FAIL(kOp, ": this build has no CUDA backend, got a tensor on ", device.str());
}
#endif

struct LinearBackward : Node {
  kernels::LinearArgs args;
  Device device;
  Tensor x, weight;
  bool x_needs_grad = false, weight_needs_grad = false, bias_needs_grad = false;

  const char* name() const override { return "LinearBackward"; }

  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs) override {
    const Tensor& grad_y = grad_outputs[0];
    Tensor grad_x, grad_weight, grad_bias;
    const DType dtype = grad_y.dtype();
    if (x_needs_grad) grad_x = Tensor::empty({args.n, args.in}, dtype, device);
    if (weight_needs_grad) grad_weight = Tensor::empty({args.out, args.in}, dtype, device);
    if (bias_needs_grad) grad_bias = Tensor::empty({args.out}, dtype, device);
    if (device.is_cuda()) {
#ifdef HPA_WITH_CUDA
      const kernels::GemmCudaContext ctx = cuda_context(device);
      dispatch_float(dtype, "linear backward", [&](auto tag) {
        using T = decltype(tag);
        if (x_needs_grad)
          kernels::linear_backward_input_cuda<T>(args, grad_y.data<T>(), weight.data<T>(), grad_x.data<T>(),
                                                 ctx);
        if (weight_needs_grad)
          kernels::linear_backward_weight_cuda<T>(args, grad_y.data<T>(), x.data<T>(), grad_weight.data<T>(),
                                                  ctx);
        if (bias_needs_grad)
          kernels::linear_backward_bias_cuda<T>(args, grad_y.data<T>(), grad_bias.data<T>(), ctx);
      });
#else
      no_cuda(device);
#endif
      return {grad_x, grad_weight, grad_bias};
    }
    dispatch_float(dtype, "linear backward", [&](auto tag) {
      using T = decltype(tag);
      if (x_needs_grad)
        kernels::linear_backward_input_cpu<T>(args, grad_y.data<T>(), weight.data<T>(), grad_x.data<T>());
      if (weight_needs_grad)
        kernels::linear_backward_weight_cpu<T>(args, grad_y.data<T>(), x.data<T>(), grad_weight.data<T>());
      if (bias_needs_grad) kernels::linear_backward_bias_cpu<T>(args, grad_y.data<T>(), grad_bias.data<T>());
    });
    return {grad_x, grad_weight, grad_bias};
  }

  void release_saved() override {
    x = Tensor();
    weight = Tensor();
  }
};

}  // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check::dims(kOp, x, 2, "input");
  check::dims(kOp, weight, 2, "weight");
  check::floating(kOp, x, "input");
  check::same_dtype(kOp, x, weight);
  check::same_device(kOp, x, weight);
  HPA_CHECK(x.size(1) == weight.size(1), kOp, ": input ", x.desc(), " has ", x.size(1),
            " features but weight ", weight.desc(), " expects ", weight.size(1));
  if (bias.defined()) {
    check::dims(kOp, bias, 1, "bias");
    check::same_dtype(kOp, x, bias);
    check::same_device(kOp, x, bias);
    HPA_CHECK(bias.size(0) == weight.size(0), kOp, ": bias ", bias.desc(), " does not match the ",
              weight.size(0), " outputs of weight ", weight.desc());
  }
  const kernels::LinearArgs a{x.size(0), x.size(1), weight.size(0)};
  HPA_CHECK(a.n <= INT_MAX && a.in <= INT_MAX && a.out <= INT_MAX, kOp, ": input ", x.desc(), " or weight ",
            weight.desc(), " exceeds the 32-bit GEMM index range (BLAS and cuBLAS take int dimensions)");

  Tensor y = Tensor::empty({a.n, a.out}, x.dtype(), x.device());
  if (x.is_cuda()) {
#ifdef HPA_WITH_CUDA
    const kernels::GemmCudaContext ctx = cuda_context(x.device());
    dispatch_float(x.dtype(), kOp, [&](auto tag) {
      using T = decltype(tag);
      kernels::linear_forward_cuda<T>(a, x.data<T>(), weight.data<T>(),
                                      bias.defined() ? bias.data<T>() : nullptr, y.data<T>(), ctx);
    });
#else
    no_cuda(x.device());
#endif
  } else {
    dispatch_float(x.dtype(), kOp, [&](auto tag) {
      using T = decltype(tag);
      kernels::linear_forward_cpu<T>(a, x.data<T>(), weight.data<T>(),
                                     bias.defined() ? bias.data<T>() : nullptr, y.data<T>());
    });
  }

  if (needs_grad({x, weight, bias})) {
    auto node = std::make_shared<LinearBackward>();
    node->args = a;
    node->device = x.device();
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
