// Fully connected layer: y[N,out] = x[N,in] · w[out,in]^T + b[out] (PyTorch's weight
// layout, so state_dict weights load unchanged). bias may be undefined.
#pragma once

#include "tensor/tensor.h"

namespace hpa {

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

}  // namespace hpa
