// batch_norm2d: argument checks, the running-statistics update, and the backward node.
// The statistics used by a call (batch ones in training, a snapshot of the running ones
// in eval) are saved as f64 [C] tensors, so a later in-place update of the running
// buffers cannot change what this call's backward computes.
#include <cmath>

#include "kernels/batchnorm.h"
#include "tensor/autograd.h"
#include "tensor/ops/check.h"
#include "tensor/ops/norm.h"

namespace hpa {

namespace {

constexpr const char* kOp = "batch_norm2d";

void check_channel_vector(const Tensor& x, const Tensor& v, const char* arg) {
  check::floating(kOp, v, arg);
  check::same_dtype(kOp, x, v);
  check::same_device(kOp, x, v);
  HPA_CHECK(v.dim() == 1 && v.size(0) == x.size(1), kOp, ": argument '", arg, "' must be [", x.size(1),
            "] for input ", x.desc(), ", got ", v.desc());
}

kernels::BatchNormArgs args_of(const Tensor& x) {
  return {x.size(0), x.size(1), x.size(2) * x.size(3)};
}

template <class T>
const T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

struct BatchNorm2dBackward : Node {
  Tensor x, weight;     // weight undefined when affine=false
  Tensor mean, invstd;  // f64 [C]: the statistics this call normalized with
  bool training = true;

  const char* name() const override { return kOp; }

  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs) override {
    const Tensor& g = grad_outputs[0];
    const bool want_x = next[0].valid(), want_weight = next[1].valid(), want_bias = next[2].valid();
    const auto a = args_of(x);
    const Shape channels{a.c};
    Tensor grad_x, grad_weight, grad_bias;
    dispatch_float(x.dtype(), kOp, [&](auto tag) {
      using T = decltype(tag);
      const double* mean_p = mean.data<double>();
      const double* invstd_p = invstd.data<double>();
      Tensor sum_g, sum_g_xhat;
      if (want_weight || want_bias || (want_x && training)) {
        sum_g = Tensor::empty(channels, DType::f64);
        sum_g_xhat = Tensor::empty(channels, DType::f64);
        kernels::batchnorm_backward_reduce_cpu(g.data<T>(), x.data<T>(), mean_p, invstd_p, a,
                                               sum_g.data<double>(), sum_g_xhat.data<double>());
      }
      if (want_x) {
        grad_x = Tensor::empty(x.shape(), x.dtype());
        if (training) {
          kernels::batchnorm_backward_training_cpu(g.data<T>(), x.data<T>(), mean_p, invstd_p,
                                                   data_or_null<T>(weight), sum_g.data<double>(),
                                                   sum_g_xhat.data<double>(), a, grad_x.data<T>());
        } else {
          kernels::batchnorm_backward_eval_cpu(g.data<T>(), invstd_p, data_or_null<T>(weight), a,
                                               grad_x.data<T>());
        }
      }
      if (want_weight) grad_weight = sum_g_xhat.to(x.dtype());
      if (want_bias) grad_bias = sum_g.to(x.dtype());
    });
    return {grad_x, grad_weight, grad_bias};
  }

  void release_saved() override {
    x = weight = mean = invstd = Tensor();
  }
};

}  // namespace

Tensor batch_norm2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                    Tensor running_var, const BatchNormOptions& options) {
  check::floating(kOp, x, "x");
  HPA_CHECK(x.dim() == 4, kOp, ": input must be 4-D NCHW, got ", x.desc());
  check::cpu_only(kOp, x);
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

  const Shape channels{a.c};
  Tensor mean = Tensor::empty(channels, DType::f64), invstd = Tensor::empty(channels, DType::f64);
  Tensor scale = Tensor::empty(channels, DType::f64), shift = Tensor::empty(channels, DType::f64);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch_float(x.dtype(), kOp, [&](auto tag) {
    using T = decltype(tag);
    double* mean_p = mean.data<double>();
    double* invstd_p = invstd.data<double>();
    if (options.training) {
      Tensor var = Tensor::empty(channels, DType::f64);
      double* var_p = var.data<double>();
      kernels::batchnorm_stats_cpu(x.data<T>(), a, mean_p, var_p);
      for (int64_t c = 0; c < a.c; ++c) invstd_p[c] = kernels::batchnorm_invstd(var_p[c], options.eps);
      if (tracking) {
        kernels::batchnorm_update_running_cpu(running_mean.data<T>(), running_var.data<T>(), mean_p, var_p, a.c,
                                              count, options.momentum);
      }
    } else {
      const T* rm = running_mean.data<T>();
      const T* rv = running_var.data<T>();
      for (int64_t c = 0; c < a.c; ++c) {
        mean_p[c] = static_cast<double>(rm[c]);
        invstd_p[c] = kernels::batchnorm_invstd(static_cast<double>(rv[c]), options.eps);
      }
    }
    const T* w = data_or_null<T>(weight);
    const T* b = data_or_null<T>(bias);
    double* scale_p = scale.data<double>();
    double* shift_p = shift.data<double>();
    for (int64_t c = 0; c < a.c; ++c) {
      const auto affine = kernels::batchnorm_channel_affine(mean_p[c], invstd_p[c],
                                                            w ? static_cast<double>(w[c]) : 1.0,
                                                            b ? static_cast<double>(b[c]) : 0.0);
      scale_p[c] = affine.scale;
      shift_p[c] = affine.shift;
    }
    kernels::batchnorm_forward_cpu(x.data<T>(), scale_p, shift_p, a, y.data<T>());
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
