// TinyConvNet: the engine's smallest complete model, used by the demo and the learning
// test until layers/ and the real backbones exist. conv3x3(4->c1)-BN-ReLU,
// conv3x3 stride 2 (c1->c2)-BN-ReLU, adaptive concat pooling (2*c2), linear -> classes.
// Written with the functional ops so every step of a training iteration is visible.
#pragma once

#include <cstdint>
#include <vector>

#include "tensor/tensor.h"

namespace hpa {

struct TinyConvNet {
  TinyConvNet(int in_channels, int c1, int c2, int classes, uint64_t seed, DType dtype = DType::f32);

  // x: [N, in_channels, H, W] -> logits [N, classes].
  Tensor forward(const Tensor& x, bool training);
  std::vector<Tensor> parameters() const;

  Tensor conv1_w, bn1_gamma, bn1_beta, bn1_mean, bn1_var;
  Tensor conv2_w, bn2_gamma, bn2_beta, bn2_mean, bn2_var;
  Tensor fc_w, fc_b;
};

}  // namespace hpa
