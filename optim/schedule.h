// CosineCyclicSchedule: the paper's cosine cyclic learning rate (cosine annealing with warm
// restarts, SGDR), as a host object. The formula itself lives in kernels/schedule.h and is
// the same function the fused CUDA optimizer evaluates on the device, so
// SGD::step(schedule) sets the same rates whichever device the parameters are on.
//
// Steps count from 0: lr(0) = lr_max, each cycle restarts at lr_max, the first cycle
// lasts cycle_steps steps and each later one cycle_mult times the one before.
#pragma once

#include <cstdint>

#include "kernels/schedule.h"

namespace hpa {

class CosineCyclicSchedule {
 public:
  // Throws hpa::Error unless 0 <= lr_min <= lr_max (both finite), cycle_steps >= 1 and
  // cycle_mult >= 1.
  explicit CosineCyclicSchedule(const kernels::CosineCyclicArgs& args);
  CosineCyclicSchedule(double lr_max, double lr_min, int64_t cycle_steps, int64_t cycle_mult = 1);

  // Rate at `step` (>= 0) for a group whose rate is `group_scale` (>= 0) times the schedule's.
  double lr(int64_t step, double group_scale = 1.0) const;
  // Which cycle `step` falls in, its position inside it and the cycle's length.
  kernels::CyclePosition position(int64_t step) const;
  const kernels::CosineCyclicArgs& args() const { return args_; }

 private:
  kernels::CosineCyclicArgs args_;
};

}  // namespace hpa
