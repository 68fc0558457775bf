// Batch normalization over N,H,W per channel of an NCHW tensor.
// Training: normalizes with the batch mean and the biased batch variance, and updates
// running_mean/running_var in place (when defined) with
//   running = (1 - momentum) * running + momentum * batch_stat,
// using the unbiased variance for running_var (PyTorch's convention). Eval: normalizes
// with the running statistics. weight (gamma) and bias (beta) are [C] and may be undefined
// (affine=false). Running statistics are buffers: never differentiated.
#pragma once

#include "tensor/tensor.h"

namespace hpa {

struct BatchNormOptions {
  bool training = true;
  double momentum = 0.1;
  double eps = 1e-5;
};

Tensor batch_norm2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                    Tensor running_var, const BatchNormOptions& options = {});

}  // namespace hpa
