// SGD with momentum over parameter groups. Each group has its own learning rate (the
// paper trains the encoder at lr/3 or lr/4 and the head at lr), momentum and weight decay.
// A parameter without a gradient (not reached by the last backward) is skipped, as in
// PyTorch. The momentum buffers are the optimizer state that a checkpoint saves.
//
// Devices: parameters on the CPU are updated tensor by tensor; parameters on a GPU are
// updated by one fused multi-tensor kernel per device and dtype (kernels/sgd.h), a few
// launches for a whole model.
//
// Learning rate: step() uses each group's args.lr; step(schedule) uses the cosine cyclic
// schedule at the optimizer's step counter, times the group's lr_scale. The counter counts
// every step() call from 0. It is kept on the host and, for each GPU holding parameters, in
// device memory, where the fused kernel reads it and a one-thread kernel advances it: a
// scheduled step needs no host-to-device transfer of the rate and replays correctly from
// a captured CUDA graph.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "kernels/sgd.h"
#include "optim/schedule.h"
#include "tensor/tensor.h"

namespace hpa {

struct ParamGroup {
  std::string name;
  std::vector<Tensor> params;
  kernels::SgdArgs args;
  // Under step(schedule): this group's rate is lr_scale times the schedule's (args.lr is
  // then not used). E.g. 1/3 for the encoder, 1/2 for the middle, 1 for the head.
  double lr_scale = 1.0;
};

// One ParamGroup per (name, parameters) pair, e.g. Classifier::parameter_groups()'s
// "encoder" and "head", each with `args` and lr_scale 1.
std::vector<ParamGroup> param_groups(const std::vector<std::pair<std::string, std::vector<Tensor>>>& named,
                                     const kernels::SgdArgs& args);

class SGD {
 public:
  explicit SGD(std::vector<ParamGroup> groups);
  // One update with each group's args.lr.
  void step();
  // One update with group g's rate = schedule.lr(steps(), groups()[g].lr_scale).
  void step(const CosineCyclicSchedule& schedule);
  void zero_grad();
  std::vector<ParamGroup>& groups() { return groups_; }
  const std::vector<ParamGroup>& groups() const { return groups_; }
  // Momentum buffer of parameter i of group g (undefined before the first step).
  const Tensor& momentum_buffer(size_t g, size_t i) const { return buffers_.at(g).at(i); }
  // Restores a momentum buffer from a checkpoint: a tensor of the parameter's shape, dtype
  // and device, which the optimizer then owns and updates in place; undefined clears it
  // (the parameter then starts again from a zero buffer, as before its first step).
  void set_momentum_buffer(size_t g, size_t i, Tensor buffer);

  // Steps taken so far (the schedule's position); set_steps restores it from a checkpoint
  // (host and device counters alike).
  int64_t steps() const { return steps_; }
  void set_steps(int64_t steps);
  // The i64 [1] step counter in `device`'s memory; undefined until a step has run there.
  Tensor device_step_counter(Device device) const;

 private:
  void update(const CosineCyclicSchedule* schedule);
  void update_cuda(int device, const CosineCyclicSchedule* schedule);
  Tensor& counter_on(int device);

  std::vector<ParamGroup> groups_;
  std::vector<std::vector<Tensor>> buffers_;
  int64_t steps_ = 0;
  std::map<int, Tensor> device_steps_;  // by CUDA device index
};

}  // namespace hpa
