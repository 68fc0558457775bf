// GapNet-PL's extra: the weight penalty of its published training setup (Rumetshofer et
// al., ICLR 2019: L1 1e-7 and L2 1e-5 on the weights), usable with any model.
#pragma once

#include "layers/module.h"

namespace hpa {

// l1 * sum|w| + l2 * sum w^2 over the `weight` of every Conv2d and Linear in `m` (the module
// itself and all its descendants); biases and BatchNorm parameters are not penalized.
// Differentiable (|w| is written as relu(w) + relu(-w), whose gradient at w = 0 is 0).
// Returns a 0-D tensor of the weights' dtype and device (a constant 0 when l1 = l2 = 0;
// an f32 CPU 0 when `m` holds no Conv2d or Linear). l1 and l2 must be finite and >= 0
// (hpa::Error otherwise).
Tensor weight_penalty(const Module& m, double l1, double l2);

}  // namespace hpa
