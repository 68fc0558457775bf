// Dropout (inverted: kept values scaled by 1/(1-p)) and alpha-dropout for SELU networks
// (Klambauer et al. 2017: dropped values set to -alpha*scale, then an affine map that
// keeps mean 0 and variance 1). In eval mode, or with p = 0, both return the input.
// The mask is drawn from the Philox stream of `gen` (default generator when null): one
// draw per call, element i kept when uniform(i) >= p, so a seed gives the same mask on
// every device.
#pragma once

#include "tensor/random.h"
#include "tensor/tensor.h"

namespace hpa {

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen = nullptr);
Tensor alpha_dropout(const Tensor& x, double p, bool training, Generator* gen = nullptr);

}  // namespace hpa
