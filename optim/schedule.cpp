// Host side of the cosine cyclic schedule: argument checks around kernels/schedule.h.
#include "optim/schedule.h"

#include <cmath>

#include "tensor/error.h"

namespace hpa {

CosineCyclicSchedule::CosineCyclicSchedule(const kernels::CosineCyclicArgs& args) : args_(args) {
  HPA_CHECK(std::isfinite(args.lr_max) && std::isfinite(args.lr_min) && args.lr_min >= 0 &&
                args.lr_min <= args.lr_max,
            "CosineCyclicSchedule: need 0 <= lr_min <= lr_max, both finite; got lr_min = ", args.lr_min,
            ", lr_max = ", args.lr_max);
  HPA_CHECK(args.cycle_steps >= 1, "CosineCyclicSchedule: cycle_steps must be >= 1, got ", args.cycle_steps);
  HPA_CHECK(args.cycle_mult >= 1, "CosineCyclicSchedule: cycle_mult must be >= 1, got ", args.cycle_mult);
}

CosineCyclicSchedule::CosineCyclicSchedule(double lr_max, double lr_min, int64_t cycle_steps,
                                           int64_t cycle_mult)
    : CosineCyclicSchedule(kernels::CosineCyclicArgs{lr_max, lr_min, cycle_steps, cycle_mult}) {}

double CosineCyclicSchedule::lr(int64_t step, double group_scale) const {
  HPA_CHECK(step >= 0, "CosineCyclicSchedule::lr: step must be >= 0, got ", step);
  HPA_CHECK(std::isfinite(group_scale) && group_scale >= 0,
            "CosineCyclicSchedule::lr: group_scale must be finite and >= 0, got ", group_scale);
  return kernels::cosine_cyclic_lr(args_, step, group_scale);
}

kernels::CyclePosition CosineCyclicSchedule::position(int64_t step) const {
  HPA_CHECK(step >= 0, "CosineCyclicSchedule::position: step must be >= 0, got ", step);
  return kernels::cosine_cycle_position(args_, step);
}

}  // namespace hpa
