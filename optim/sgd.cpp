// SGD over parameter groups: the CPU loop per tensor, and on each GPU one fused
// multi-tensor update (kernels/sgd.h) plus the device step counter the scheduled rate
// is read from. See optim/sgd.h for the contract.
#include "optim/sgd.h"

#include <cmath>
#include <set>
#include <type_traits>

#include "tensor/autograd.h"
#ifdef HPA_WITH_CUDA
#include "tensor/cuda_backend.h"
#endif

namespace hpa {

std::vector<ParamGroup> param_groups(const std::vector<std::pair<std::string, std::vector<Tensor>>>& named,
                                     const kernels::SgdArgs& args) {
  std::vector<ParamGroup> groups;
  for (const auto& [name, params] : named) groups.push_back(ParamGroup{name, params, args});
  return groups;
}

SGD::SGD(std::vector<ParamGroup> groups) : groups_(std::move(groups)) {
  for (const auto& g : groups_) {
    HPA_CHECK(g.args.lr >= 0, "SGD: group '", g.name, "' has a negative learning rate ", g.args.lr);
    HPA_CHECK(g.args.momentum >= 0 && g.args.momentum < 1, "SGD: group '", g.name, "' momentum ",
              g.args.momentum, " outside [0, 1)");
    HPA_CHECK(!g.args.nesterov || g.args.momentum > 0, "SGD: nesterov needs momentum > 0");
    HPA_CHECK(std::isfinite(g.lr_scale) && g.lr_scale >= 0, "SGD: group '", g.name, "' has lr_scale ",
              g.lr_scale, " (must be finite and >= 0)");
    for (const auto& p : g.params)
      HPA_CHECK(p.defined() && p.is_leaf() && p.requires_grad(), "SGD: group '", g.name,
                "' holds a tensor that is not a trainable leaf: ", p.desc());
    buffers_.emplace_back(g.params.size());
  }
}

void SGD::step() { update(nullptr); }

void SGD::step(const CosineCyclicSchedule& schedule) { update(&schedule); }

namespace {

// The gradient a parameter is updated from, or an undefined tensor when it has none.
Tensor gradient_of(const ParamGroup& group, const Tensor& w) {
  Tensor g = w.grad();
  if (g.defined())
    HPA_CHECK(g.shape() == w.shape() && g.dtype() == w.dtype() && g.device() == w.device(), "SGD: group '",
              group.name, "': gradient ", g.desc(), " does not match its parameter ", w.desc());
  return g;
}

}  // namespace

void SGD::update(const CosineCyclicSchedule* schedule) {
  NoGradGuard no_grad;
  std::set<int> cuda_devices;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    auto& group = groups_[gi];
    kernels::SgdArgs args = group.args;
    if (schedule) args.lr = schedule->lr(steps_, group.lr_scale);
    for (size_t i = 0; i < group.params.size(); ++i) {
      Tensor& w = group.params[i];
      if (w.is_cuda()) {
        cuda_devices.insert(w.device().index);
        continue;
      }
      Tensor g = gradient_of(group, w);
      if (!g.defined()) continue;
      Tensor& v = buffers_[gi][i];
      if (!v.defined()) v = Tensor::zeros(w.shape(), w.dtype(), w.device());
      dispatch_float(w.dtype(), "SGD", [&](auto tag) {
        using T = decltype(tag);
        kernels::sgd_update_cpu(w.data<T>(), v.data<T>(), g.data<T>(), w.numel(), args);
      });
    }
  }
  for (int device : cuda_devices) update_cuda(device, schedule);
  ++steps_;
}

void SGD::update_cuda(int device, const CosineCyclicSchedule* schedule) {
#ifdef HPA_WITH_CUDA
  HPA_CHECK(groups_.size() <= static_cast<size_t>(kernels::kSgdMaxGroups), "SGD: ", groups_.size(),
            " parameter groups; the fused CUDA update takes at most ", kernels::kSgdMaxGroups);
  std::vector<kernels::SgdTensorRef<float>> f32;
  std::vector<kernels::SgdTensorRef<double>> f64;
  std::vector<kernels::SgdGroupArgs> group_args(groups_.size());
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    auto& group = groups_[gi];
    group_args[gi].args = group.args;
    group_args[gi].lr_scale = group.lr_scale;
    for (size_t i = 0; i < group.params.size(); ++i) {
      Tensor& w = group.params[i];
      if (!w.is_cuda() || w.device().index != device) continue;
      Tensor g = gradient_of(group, w);
      if (!g.defined()) continue;
      Tensor& v = buffers_[gi][i];
      if (!v.defined()) v = Tensor::zeros(w.shape(), w.dtype(), w.device());
      dispatch_float(w.dtype(), "SGD", [&](auto tag) {
        using T = decltype(tag);
        kernels::SgdTensorRef<T> ref;
        ref.w = w.data<T>();
        ref.v = v.data<T>();
        ref.g = g.data<T>();
        ref.n = w.numel();
        ref.group = static_cast<int>(gi);
        if constexpr (std::is_same_v<T, float>)
          f32.push_back(ref);
        else
          f64.push_back(ref);
      });
    }
  }
  Tensor& counter = counter_on(device);
  kernels::SgdDeviceSchedule device_schedule;
  if (schedule) {
    device_schedule.schedule = schedule->args();
    device_schedule.step = counter.data<int64_t>();
  }
  const auto stream = static_cast<kernels::Stream>(cuda::stream(device));
  const int num_groups = static_cast<int>(group_args.size());
  if (!f32.empty())
    kernels::sgd_update_multi_tensor_cuda(f32.data(), static_cast<int64_t>(f32.size()), group_args.data(),
                                          num_groups, schedule ? &device_schedule : nullptr, stream);
  if (!f64.empty())
    kernels::sgd_update_multi_tensor_cuda(f64.data(), static_cast<int64_t>(f64.size()), group_args.data(),
                                          num_groups, schedule ? &device_schedule : nullptr, stream);
  kernels::sgd_advance_step_cuda(counter.data<int64_t>(), stream);
#else
  HPA_FAIL("SGD: this build has no CUDA backend, got a parameter on cuda:", device);
#endif
}

Tensor& SGD::counter_on(int device) {
  auto it = device_steps_.find(device);
  if (it == device_steps_.end()) {
    // Created once per device, starting at the host count (a synchronous 8-byte copy).
    Tensor counter = Tensor::from_vector<int64_t>({steps_}, {1}).to(Device::cuda(device));
    it = device_steps_.emplace(device, counter).first;
  }
  return it->second;
}

void SGD::set_steps(int64_t steps) {
  HPA_CHECK(steps >= 0, "SGD::set_steps: steps must be >= 0, got ", steps);
  steps_ = steps;
  for (auto& [device, counter] : device_steps_) counter.copy_from(Tensor::from_vector<int64_t>({steps}, {1}));
}

void SGD::set_momentum_buffer(size_t g, size_t i, Tensor buffer) {
  HPA_CHECK(g < groups_.size() && i < groups_[g].params.size(), "SGD::set_momentum_buffer: no parameter ", i,
            " in group ", g, " (", groups_.size(), " groups)");
  const Tensor& w = groups_[g].params[i];
  if (buffer.defined())
    HPA_CHECK(buffer.shape() == w.shape() && buffer.dtype() == w.dtype() && buffer.device() == w.device() &&
                  buffer.layout() == w.layout(),
              "SGD::set_momentum_buffer: group '", groups_[g].name, "' parameter ", i, ": buffer ",
              buffer.desc(), " does not match the parameter ", w.desc());
  buffers_[g][i] = std::move(buffer);
}

Tensor SGD::device_step_counter(Device device) const {
  if (!device.is_cuda()) return Tensor();
  auto it = device_steps_.find(device.index);
  return it == device_steps_.end() ? Tensor() : it->second;
}

void SGD::zero_grad() {
  for (auto& g : groups_)
    for (auto& p : g.params) p.zero_grad();
}

}  // namespace hpa
