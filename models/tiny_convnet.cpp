#include "models/tiny_convnet.h"

#include <cmath>

#include "tensor/ops.h"

namespace hpa {

namespace {
// He-normal (fan_in) weights, the usual initialization for ReLU networks.
Tensor he_normal(const Shape& shape, int64_t fan_in, DType dtype, Generator& gen) {
  NoGradGuard ng;
  Tensor w = mul_scalar(Tensor::randn(shape, dtype, Device::cpu(), &gen), std::sqrt(2.0 / static_cast<double>(fan_in)));
  return w.set_requires_grad();
}
Tensor trainable(Tensor t) { return t.set_requires_grad(); }
}  // namespace

TinyConvNet::TinyConvNet(int in_channels, int c1, int c2, int classes, uint64_t seed, DType dtype) {
  Generator gen(seed);
  conv1_w = he_normal({c1, in_channels, 3, 3}, int64_t{in_channels} * 9, dtype, gen);
  bn1_gamma = trainable(Tensor::ones({c1}, dtype));
  bn1_beta = trainable(Tensor::zeros({c1}, dtype));
  bn1_mean = Tensor::zeros({c1}, dtype);
  bn1_var = Tensor::ones({c1}, dtype);
  conv2_w = he_normal({c2, c1, 3, 3}, int64_t{c1} * 9, dtype, gen);
  bn2_gamma = trainable(Tensor::ones({c2}, dtype));
  bn2_beta = trainable(Tensor::zeros({c2}, dtype));
  bn2_mean = Tensor::zeros({c2}, dtype);
  bn2_var = Tensor::ones({c2}, dtype);
  fc_w = he_normal({classes, 2 * c2}, 2 * int64_t{c2}, dtype, gen);
  fc_b = trainable(Tensor::zeros({classes}, dtype));
}

Tensor TinyConvNet::forward(const Tensor& x, bool training) {
  BatchNormOptions bn;
  bn.training = training;
  Tensor h = conv2d(x, conv1_w, Tensor(), Conv2dOptions::square(1, 1));
  h = relu(batch_norm2d(h, bn1_gamma, bn1_beta, bn1_mean, bn1_var, bn));
  h = conv2d(h, conv2_w, Tensor(), Conv2dOptions::square(2, 1));
  h = relu(batch_norm2d(h, bn2_gamma, bn2_beta, bn2_mean, bn2_var, bn));
  h = adaptive_concat_pool2d(h).flatten(1);
  return linear(h, fc_w, fc_b);
}

std::vector<Tensor> TinyConvNet::parameters() const {
  return {conv1_w, bn1_gamma, bn1_beta, conv2_w, bn2_gamma, bn2_beta, fc_w, fc_b};
}

}  // namespace hpa
