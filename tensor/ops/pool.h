// Pooling over NCHW tensors.
// max_pool2d / avg_pool2d follow PyTorch's output-size rule, including ceil_mode (a last
// window must start inside the input or its left padding). avg_pool2d divides by the
// window area including padding unless count_include_pad is false.
// Max ties: the first maximum in row-major window order wins, in forward and backward.
// Global pools reduce H and W to 1 and return [N, C, 1, 1].
// adaptive_concat_pool2d is the paper's ACP: [N, 2C, 1, 1] with channels 0..C-1 the
// global average and C..2C-1 the global max, computed in one pass.
#pragma once

#include "tensor/tensor.h"

namespace hpa {

struct Pool2dOptions {
  int kernel_h = 2, kernel_w = 2;
  int stride_h = 2, stride_w = 2;
  int pad_h = 0, pad_w = 0;
  bool ceil_mode = false;
  bool count_include_pad = true;  // avg_pool2d only

  static Pool2dOptions square(int kernel, int stride, int pad = 0, bool ceil_mode = false) {
    return {kernel, kernel, stride, stride, pad, pad, ceil_mode, true};
  }
};

Tensor max_pool2d(const Tensor& x, const Pool2dOptions& options);
Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& options);
Tensor global_avg_pool2d(const Tensor& x);
Tensor global_max_pool2d(const Tensor& x);
Tensor adaptive_concat_pool2d(const Tensor& x);

}  // namespace hpa
