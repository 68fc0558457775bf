// SGD with momentum over parameter groups. Each group has its own learning rate (the
// paper trains the encoder at lr/3 or lr/4 and the head at lr), momentum and weight decay.
// A parameter without a gradient (not reached by the last backward) is skipped, as in
// PyTorch. The momentum buffers are the optimizer state that a checkpoint saves.
#pragma once

#include <string>
#include <vector>

#include "kernels/sgd.h"
#include "tensor/tensor.h"

namespace hpa {

struct ParamGroup {
  std::string name;
  std::vector<Tensor> params;
  kernels::SgdArgs args;
};

class SGD {
 public:
  explicit SGD(std::vector<ParamGroup> groups);
  void step();
  void zero_grad();
  std::vector<ParamGroup>& groups() { return groups_; }
  // Momentum buffer of parameter i of group g (undefined before the first step).
  const Tensor& momentum_buffer(size_t g, size_t i) const { return buffers_.at(g).at(i); }

 private:
  std::vector<ParamGroup> groups_;
  std::vector<std::vector<Tensor>> buffers_;
};

}  // namespace hpa
