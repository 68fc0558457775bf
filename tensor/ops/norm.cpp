// batch_norm2d: argument checks, the running-statistics update, and the backward node,
// dispatched to the CPU loops or the CUDA twins (kernels/batchnorm.h) by the input's device.
// The statistics used by a call (batch ones in training, a snapshot of the running ones
// in eval) are saved as f64 [C] tensors on the input's device, so a later in-place update
// of the running buffers cannot change what this call's backward computes.
#include "tensor/ops/norm.h"

#include <cmath>

#include "kernels/batchnorm.h"
#include "tensor/autograd.h"
#include "tensor/ops/check.h"
#include "tensor/ops/dispatch.h"
#ifdef HPA_WITH_CUDA
#include "tensor/cuda_backend.h"
#endif

namespace hpa {

namespace {

constexpr const char* kOp = "batch_norm2d";

#ifdef HPA_WITH_CUDA
// Partial sums of the CUDA reductions; freed when the call returns, which the caching
// allocator's stream-ordered reuse makes safe.
Tensor cuda_workspace(const kernels::BatchNormArgs& a, Device device) {
  return Tensor::empty({kernels::batchnorm_cuda_workspace_elements(a)}, DType::f64, device);
}
#else
[[noreturn]] void no_cuda(const Tensor& t) {
  HPA_FAIL(kOp, ": this build has no CUDA backend, got ", t.desc());
}
#endif

void check_channel_vector(const Tensor& x, const Tensor& v, const char* arg) {
  check::floating(kOp, v, arg);
  check::same_dtype(kOp, x, v);
  check::same_device(kOp, x, v);
  HPA_CHECK(v.dim() == 1 && v.size(0) == x.size(1), kOp, ": argument '", arg, "' must be [", x.size(1),
            "] for input ", x.desc(), ", got ", v.desc());
}

kernels::BatchNormArgs args_of(const Tensor& x) { return {x.size(0), x.size(1), x.size(2) * x.size(3)}; }

template <class T>
const T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

template <class T>
T* mutable_data_or_null(Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

struct BatchNorm2dBackward : Node {
  Tensor x, weight;     // weight undefined when affine=false
  Tensor mean, invstd;  // f64 [C] on x's device: the statistics this call normalized with
  bool training = true;

  const char* name() const override { return kOp; }

  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs) override {
    const Tensor& g = grad_outputs[0];
    const bool want_x = next[0].valid(), want_weight = next[1].valid(), want_bias = next[2].valid();
    const auto a = args_of(x);
    const Shape channels{a.c};
    const Device device = x.device();
    Tensor grad_x, grad_weight, grad_bias;
    dispatch_float(x.dtype(), kOp, [&](auto tag) {
      using T = decltype(tag);
      const double* mean_p = mean.data<double>();
      const double* invstd_p = invstd.data<double>();
      const T* gamma = data_or_null<T>(weight);
      Tensor sum_g, sum_g_xhat;
      if (want_weight || want_bias || (want_x && training)) {
        sum_g = Tensor::empty(channels, DType::f64, device);
        sum_g_xhat = Tensor::empty(channels, DType::f64, device);
        if (device.is_cuda()) {
#ifdef HPA_WITH_CUDA
          Tensor workspace = cuda_workspace(a, device);
          kernels::batchnorm_backward_reduce_cuda(g.data<T>(), x.data<T>(), mean_p, invstd_p, a,
                                                  sum_g.data<double>(), sum_g_xhat.data<double>(),
                                                  workspace.data<double>(), stream_of(x));
#else
          no_cuda(x);
#endif
        } else {
          kernels::batchnorm_backward_reduce_cpu(g.data<T>(), x.data<T>(), mean_p, invstd_p, a,
                                                 sum_g.data<double>(), sum_g_xhat.data<double>());
        }
      }
      if (want_x) {
        grad_x = Tensor::empty(x.shape(), x.dtype(), device);
        if (device.is_cuda()) {
#ifdef HPA_WITH_CUDA
          if (training) {
            kernels::batchnorm_backward_training_cuda(g.data<T>(), x.data<T>(), mean_p, invstd_p, gamma,
                                                      sum_g.data<double>(), sum_g_xhat.data<double>(), a,
                                                      grad_x.data<T>(), stream_of(x));
          } else {
            kernels::batchnorm_backward_eval_cuda(g.data<T>(), invstd_p, gamma, a, grad_x.data<T>(),
                                                  stream_of(x));
          }
#else
          no_cuda(x);
#endif
        } else if (training) {
          kernels::batchnorm_backward_training_cpu(g.data<T>(), x.data<T>(), mean_p, invstd_p, gamma,
                                                   sum_g.data<double>(), sum_g_xhat.data<double>(), a,
                                                   grad_x.data<T>());
        } else {
          kernels::batchnorm_backward_eval_cpu(g.data<T>(), invstd_p, gamma, a, grad_x.data<T>());
        }
      }
      if (want_weight) grad_weight = sum_g_xhat.to(x.dtype());
      if (want_bias) grad_bias = sum_g.to(x.dtype());
    });
    return {grad_x, grad_weight, grad_bias};
  }

  void release_saved() override { x = weight = mean = invstd = Tensor(); }
};

}  // namespace

Tensor batch_norm2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                    Tensor running_var, const BatchNormOptions& options) {
  check::floating(kOp, x, "x");
  HPA_CHECK(x.dim() == 4, kOp, ": input must be 4-D NCHW, got ", x.desc());
  if (weight.defined()) check_channel_vector(x, weight, "weight");
  if (bias.defined()) check_channel_vector(x, bias, "bias");
  HPA_CHECK(running_mean.defined() == running_var.defined(), kOp,
            ": running_mean and running_var must both be given or both be undefined, got ",
            running_mean.desc(), " and ", running_var.desc());
  const bool tracking = running_mean.defined();
  if (tracking) {
    check_channel_vector(x, running_mean, "running_mean");
    check_channel_vector(x, running_var, "running_var");
  }
  HPA_CHECK(options.training || tracking, kOp, ": eval mode needs running_mean and running_var (input ",
            x.desc(), ")");
  HPA_CHECK(options.eps >= 0 && std::isfinite(options.eps), kOp, ": eps must be finite and >= 0, got ",
            options.eps);
  HPA_CHECK(options.momentum >= 0 && options.momentum <= 1, kOp, ": momentum must be in [0, 1], got ",
            options.momentum);
  const auto a = args_of(x);
  const int64_t count = a.n * a.hw;
  // PyTorch's rule: the unbiased variance of a single value is undefined.
  HPA_CHECK(!options.training || count > 1, kOp,
            ": expected more than 1 value per channel when training, got input ", x.desc());

  const Device device = x.device();
  const Shape channels{a.c};
  Tensor mean = Tensor::empty(channels, DType::f64, device),
         invstd = Tensor::empty(channels, DType::f64, device);
  Tensor scale = Tensor::empty(channels, DType::f64, device),
         shift = Tensor::empty(channels, DType::f64, device);
  Tensor var;
  if (options.training) var = Tensor::empty(channels, DType::f64, device);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), device);
  dispatch_float(x.dtype(), kOp, [&](auto tag) {
    using T = decltype(tag);
    kernels::BatchNormChannelSetup<T> setup;
    setup.c = a.c;
    setup.count = count;
    setup.eps = options.eps;
    setup.momentum = options.momentum;
    setup.training = options.training;
    setup.gamma = data_or_null<T>(weight);
    setup.beta = data_or_null<T>(bias);
    setup.running_mean = mutable_data_or_null<T>(running_mean);
    setup.running_var = mutable_data_or_null<T>(running_var);
    setup.mean = mean.data<double>();
    setup.var = options.training ? var.data<double>() : nullptr;
    setup.invstd = invstd.data<double>();
    setup.scale = scale.data<double>();
    setup.shift = shift.data<double>();
    if (device.is_cuda()) {
#ifdef HPA_WITH_CUDA
      if (options.training) {
        Tensor workspace = cuda_workspace(a, device);
        kernels::batchnorm_stats_cuda(x.data<T>(), a, mean.data<double>(), var.data<double>(),
                                      workspace.data<double>(), stream_of(x));
      }
      kernels::batchnorm_setup_channels_cuda(setup, stream_of(x));
      kernels::batchnorm_forward_cuda(x.data<T>(), setup.scale, setup.shift, a, y.data<T>(), stream_of(x));
#else
      no_cuda(x);
#endif
    } else {
      if (options.training)
        kernels::batchnorm_stats_cpu(x.data<T>(), a, mean.data<double>(), var.data<double>());
      kernels::batchnorm_setup_channels_cpu(setup);
      kernels::batchnorm_forward_cpu(x.data<T>(), setup.scale, setup.shift, a, y.data<T>());
    }
  });

  if (needs_grad({x, weight, bias})) {
    auto node = std::make_shared<BatchNorm2dBackward>();
    node->x = x.detach();
    node->weight = weight.defined() ? weight.detach() : Tensor();
    node->mean = mean;
    node->invstd = invstd;
    node->training = options.training;
    record(node, {x, weight, bias}, {y});
  }
  return y;
}

}  // namespace hpa
