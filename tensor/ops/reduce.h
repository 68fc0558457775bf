// Reductions. `dims` lists the dimensions to reduce (negative counts from the end, each
// at most once); keepdim leaves them as size 1. Accumulation is in double for f32 and f64
// inputs, so a sum does not depend on the order of a parallel split. An empty `dims`
// reduces nothing (the result is a copy; PyTorch's legacy dim=[] would reduce everything).
// The mean over zero elements is NaN.
#pragma once

#include <vector>

#include "tensor/tensor.h"

namespace hpa {

Tensor sum(const Tensor& x, const std::vector<int>& dims, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int>& dims, bool keepdim = false);
// Over all elements: a 0-D tensor.
Tensor sum(const Tensor& x);
Tensor mean(const Tensor& x);

}  // namespace hpa
