// The cosine cyclic learning rate: cosine annealing with warm restarts (SGDR, Loshchilov
// & Hutter 2017), written once as HPA_HD so the host schedule (optim/schedule.h) and the
// fused CUDA optimizer (kernels/sgd.cu), which evaluates it on the device from a device
// step counter, compute the same rate.
//
// Within cycle i, of T_i steps, at step t_cur = 0 .. T_i - 1 of that cycle:
//   lr = scale * (lr_min + (lr_max - lr_min) * (1 + cos(pi * t_cur / T_i)) / 2)
// with T_0 = cycle_steps and T_{i+1} = T_i * cycle_mult. Step 0 of every cycle is a warm
// restart at scale * lr_max; the last step of a cycle is just above scale * lr_min. The
// scale is the parameter group's factor (the paper trains the encoder at lr/3 or lr/4,
// the middle at lr/2 and the head at lr), applied to both ends of the range.
//
// Design rule: the position inside the cycle is found with integer arithmetic on the
// 64-bit step, never with a floating-point log, so cycle boundaries are exact for any
// cycle_mult.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/hd.h"

namespace hpa::kernels {

struct CosineCyclicArgs {
  double lr_max = 0.01;
  double lr_min = 0.0;
  int64_t cycle_steps = 1;  // T_0 >= 1
  int64_t cycle_mult = 1;   // T_mult >= 1
};

struct CyclePosition {
  int64_t cycle = 0;   // i: 0 for the first cycle
  int64_t step = 0;    // t_cur, in [0, length)
  int64_t length = 1;  // T_i
};

// Where `step` (>= 0) falls among the cycles of `a`.
HPA_HD inline CyclePosition cosine_cycle_position(const CosineCyclicArgs& a, int64_t step) {
  CyclePosition pos;
  pos.length = a.cycle_steps;
  if (a.cycle_mult == 1) {
    pos.cycle = step / a.cycle_steps;
    pos.step = step % a.cycle_steps;
    return pos;
  }
  // At most 63 iterations: the length at least doubles each time.
  constexpr int64_t kMaxLength = INT64_MAX;
  while (step >= pos.length) {
    step -= pos.length;
    ++pos.cycle;
    if (pos.length > kMaxLength / a.cycle_mult) {
      // The next cycle is longer than any 64-bit step count: the step lies inside it.
      pos.length = kMaxLength;
      break;
    }
    pos.length *= a.cycle_mult;
  }
  pos.step = step;
  return pos;
}

// The learning rate at `step` for a parameter group whose rate is `group_scale` times the
// schedule's.
HPA_HD inline double cosine_cyclic_lr(const CosineCyclicArgs& a, int64_t step, double group_scale = 1.0) {
  using std::cos;
  const double kPi = 3.14159265358979323846;
  const CyclePosition pos = cosine_cycle_position(a, step);
  const double phase = static_cast<double>(pos.step) / static_cast<double>(pos.length);  // [0, 1)
  return group_scale * (a.lr_min + (a.lr_max - a.lr_min) * (1.0 + cos(kPi * phase)) * 0.5);
}

}  // namespace hpa::kernels
