// 2-D convolution, NCHW, weight [C_out, C_in/groups, KH, KW] (PyTorch's layout), optional
// bias [C_out]. Grouped convolution (ResNeXt's 32 groups, depthwise) included.
#pragma once

#include "tensor/tensor.h"

namespace hpa {

struct Conv2dOptions {
  int stride_h = 1, stride_w = 1;
  int pad_h = 0, pad_w = 0;
  int dilation_h = 1, dilation_w = 1;
  int groups = 1;

  static Conv2dOptions square(int stride, int pad, int dilation = 1, int groups = 1) {
    return {stride, stride, pad, pad, dilation, dilation, groups};
  }
};

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
              const Conv2dOptions& options = {});

}  // namespace hpa
