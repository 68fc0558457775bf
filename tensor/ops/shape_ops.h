// Joining and splitting along one dimension (DenseNet's concatenation, the Inception
// branches, GapNet's concatenated block features). Both copy: tensors stay contiguous.
#pragma once

#include <vector>

#include "tensor/tensor.h"

namespace hpa {

// All inputs share dtype, device and every size but `dim`.
Tensor concat(const std::vector<Tensor>& inputs, int dim);
// Splits into pieces of the given sizes along `dim` (the sizes must add up to its size).
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int dim);

}  // namespace hpa
