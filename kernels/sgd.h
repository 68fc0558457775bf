// SGD with momentum, weight decay (L2) and optional L1, written once for every backend:
//   g' = g + weight_decay * w + l1 * sign(w)
//   v  = momentum * v + g'            (PyTorch's convention, no dampening)
//   w  = w - lr * (nesterov ? g' + momentum * v : v)
// The per-element update is HPA_HD: the CPU loop and the fused CUDA optimizer
// (kernels/sgd.cu) both call sgd_update_element.
//
// The CUDA twin is a multi-tensor apply: one launch updates every parameter of the model
// (up to kSgdMaxTensorsPerLaunch tensors; more take a few launches), each tensor cut into
// fixed chunks handled by one block, instead of one launch per tensor. Each tensor belongs
// to a group with its own settings; the learning rate is either the group's args.lr or
// the cosine cyclic schedule (kernels/schedule.h) evaluated on the device from a step
// counter in device memory, so a step needs no host round trip for its rate and can be
// replayed from a captured CUDA graph.
#pragma once

#include <cstdint>

#include "kernels/hd.h"
#include "kernels/schedule.h"

namespace hpa::kernels {

struct SgdArgs {
  double lr = 0.01;
  double momentum = 0.0;
  double weight_decay = 0.0;
  double l1 = 0.0;
  bool nesterov = false;
};

template <class T>
HPA_HD inline void sgd_update_element(T& w, T& v, T g, const SgdArgs& a) {
  const T sign = w > T(0) ? T(1) : (w < T(0) ? T(-1) : T(0));
  const T gd = g + static_cast<T>(a.weight_decay) * w + static_cast<T>(a.l1) * sign;
  v = static_cast<T>(a.momentum) * v + gd;
  const T step = a.nesterov ? gd + static_cast<T>(a.momentum) * v : v;
  w -= static_cast<T>(a.lr) * step;
}

// w, v updated in place (=) from g over n elements.
template <class T>
void sgd_update_cpu(T* w, T* v, const T* g, int64_t n, const SgdArgs& a) {
  // Guarded so that nvcc, which includes this header without OpenMP, sees no unknown pragma.
#if defined(_OPENMP)
#pragma omp parallel for if (n > 65536) schedule(static)
#endif
  for (int64_t i = 0; i < n; ++i) sgd_update_element(w[i], v[i], g[i], a);
}

// ---- CUDA: the fused multi-tensor update ------------------------------------------------

constexpr int kSgdMaxGroups = 16;
// Tensors one launch takes (they travel in the kernel's parameter block, which CUDA 12.1+
// allows up to 32 KiB); ResNet50's 161 fit in one launch.
constexpr int kSgdMaxTensorsPerLaunch = 192;

// One parameter: device pointers to its n weights, momentum buffer and gradient, and the
// index of its group in the groups array.
template <class T>
struct SgdTensorRef {
  T* w = nullptr;
  T* v = nullptr;
  const T* g = nullptr;
  int64_t n = 0;
  int group = 0;
};

// A group's settings. Under a device schedule the group's rate is
// cosine_cyclic_lr(schedule, *step, lr_scale) and args.lr is not used.
struct SgdGroupArgs {
  SgdArgs args;
  double lr_scale = 1.0;
};

struct SgdDeviceSchedule {
  CosineCyclicArgs schedule;
  const int64_t* step = nullptr;  // device memory: the optimizer's step counter
};

// Updates every tensor in place (= on w and v). `groups` holds num_groups (1 ..
// kSgdMaxGroups) entries; schedule is null for fixed rates. The pointers of different
// tensors must not overlap. Tensors with n = 0 are skipped.
template <class T>
void sgd_update_multi_tensor_cuda(const SgdTensorRef<T>* tensors, int64_t count, const SgdGroupArgs* groups,
                                  int num_groups, const SgdDeviceSchedule* schedule, Stream stream);

// *step += 1 on the device, queued after a step's updates so the next step's launches read
// the next value.
void sgd_advance_step_cuda(int64_t* step, Stream stream);

}  // namespace hpa::kernels
