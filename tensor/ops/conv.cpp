// conv2d: argument checks, output allocation, dispatch by the input's device to the CPU
// kernels or their cuDNN twins (kernels/conv.h), and the backward node. The node saves the
// input only when the weight needs a gradient and the weight only when the input needs
// one, and runs only the backward passes whose gradient some input actually requires.
// cuDNN's workspace comes from the caching allocator and is released when the call
// returns: the device's single stream orders its reuse after the work that used it.
#include "tensor/ops/conv.h"

#include <climits>
#include <vector>

#include "kernels/conv.h"
#include "tensor/autograd.h"
#include "tensor/ops/check.h"
#ifdef HPA_WITH_CUDA
#include "tensor/cuda_backend.h"
#endif

namespace hpa {

namespace {

constexpr const char* kOp = "conv2d";

#ifdef HPA_WITH_CUDA
// Lends cuDNN memory from the caching allocator; it all goes back when this object dies.
class CachingWorkspace final : public kernels::CudaWorkspace {
 public:
  explicit CachingWorkspace(Device device) : device_(device) {}
  void* allocate(size_t bytes) override {
    buffers_.push_back(Tensor::empty({static_cast<int64_t>(bytes)}, DType::u8, device_));
    return buffers_.back().data_ptr();
  }

 private:
  Device device_;
  std::vector<Tensor> buffers_;
};

kernels::Conv2dCudaContext cuda_context(Device device, CachingWorkspace& workspace) {
  return {device.index, static_cast<kernels::Stream>(cuda::stream(device.index)), cuda::allow_tf32(),
          &workspace};
}
#else
[[noreturn]] void no_cuda(Device device) {
  HPA_FAIL(kOp, ": this build has no CUDA backend, got a tensor on ", device.str());
}
#endif

struct Conv2dBackward : Node {
  kernels::Conv2dArgs args;
  Device device;
  Tensor x, weight;
  bool x_needs_grad = false, weight_needs_grad = false, bias_needs_grad = false;

  const char* name() const override { return "Conv2dBackward"; }

  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs) override {
    const Tensor& grad_y = grad_outputs[0];
    Tensor grad_x, grad_weight, grad_bias;
    const DType dtype = grad_y.dtype();
    if (x_needs_grad) grad_x = Tensor::empty({args.n, args.c_in, args.h, args.w}, dtype, device);
    if (weight_needs_grad)
      grad_weight = Tensor::empty({args.c_out, args.c_in / args.groups, args.kh, args.kw}, dtype, device);
    if (bias_needs_grad) grad_bias = Tensor::empty({args.c_out}, dtype, device);
    if (device.is_cuda()) {
#ifdef HPA_WITH_CUDA
      CachingWorkspace workspace(device);
      const kernels::Conv2dCudaContext ctx = cuda_context(device, workspace);
      dispatch_float(dtype, "conv2d backward", [&](auto tag) {
        using T = decltype(tag);
        if (x_needs_grad)
          kernels::conv2d_backward_input_cuda<T>(args, grad_y.data<T>(), weight.data<T>(), grad_x.data<T>(),
                                                 ctx);
        if (weight_needs_grad)
          kernels::conv2d_backward_weight_cuda<T>(args, grad_y.data<T>(), x.data<T>(), grad_weight.data<T>(),
                                                  ctx);
        if (bias_needs_grad)
          kernels::conv2d_backward_bias_cuda<T>(args, grad_y.data<T>(), grad_bias.data<T>(), ctx);
      });
#else
      no_cuda(device);
#endif
      return {grad_x, grad_weight, grad_bias};
    }
    dispatch_float(dtype, "conv2d backward", [&](auto tag) {
      using T = decltype(tag);
      if (x_needs_grad)
        kernels::conv2d_backward_input_cpu<T>(args, grad_y.data<T>(), weight.data<T>(), grad_x.data<T>());
      if (weight_needs_grad)
        kernels::conv2d_backward_weight_cpu<T>(args, grad_y.data<T>(), x.data<T>(), grad_weight.data<T>());
      if (bias_needs_grad) kernels::conv2d_backward_bias_cpu<T>(args, grad_y.data<T>(), grad_bias.data<T>());
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
  // The GEMMs index with BLAS's 32-bit ints (and cuDNN's descriptors take int dimensions).
  HPA_CHECK(a.h * a.w <= INT_MAX && a.h_out * a.w_out <= INT_MAX && weight.size(1) * a.kh * a.kw <= INT_MAX,
            kOp, ": input ", x.desc(), " or weight ", weight.desc(), " exceeds the 32-bit GEMM index range");
  return a;
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& options) {
  const kernels::Conv2dArgs a = checked_args(x, weight, bias, options);
  Tensor y = Tensor::empty({a.n, a.c_out, a.h_out, a.w_out}, x.dtype(), x.device());
  if (x.is_cuda()) {
#ifdef HPA_WITH_CUDA
    CachingWorkspace workspace(x.device());
    const kernels::Conv2dCudaContext ctx = cuda_context(x.device(), workspace);
    dispatch_float(x.dtype(), kOp, [&](auto tag) {
      using T = decltype(tag);
      kernels::conv2d_forward_cuda<T>(a, x.data<T>(), weight.data<T>(),
                                      bias.defined() ? bias.data<T>() : nullptr, y.data<T>(), ctx);
    });
#else
    no_cuda(x.device());
#endif
  } else {
    dispatch_float(x.dtype(), kOp, [&](auto tag) {
      using T = decltype(tag);
      kernels::conv2d_forward_cpu<T>(a, x.data<T>(), weight.data<T>(),
                                     bias.defined() ? bias.data<T>() : nullptr, y.data<T>());
    });
  }

  if (needs_grad({x, weight, bias})) {
    auto node = std::make_shared<Conv2dBackward>();
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
