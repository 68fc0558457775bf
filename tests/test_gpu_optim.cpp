// CPU-vs-CUDA parity of the fused SGD: one multi-tensor launch over parameters of odd
// sizes (single elements, chunk boundaries, unaligned tails) in groups with different
// momentum / decay / L1 / nesterov settings, a parameter without a gradient, several
// launches for many tensors, the cosine cyclic rate read on the device from the device step
// counter (across warm restarts), CPU and CUDA parameters in one optimizer, and the kernel
// on guarded buffers, unaligned pointers included.
//
// Tolerances. Both devices run sgd_update_element; nvcc contracts a*b+c into one FMA and
// the CPU build does not, so each of the update's few operations may differ by half an ulp
// of its result. Over a few steps with |w|, |v| ~ 1: f32 atol 1e-6 (8 ulp of 1), rtol 1e-5;
// f64 atol 1e-14, rtol 1e-12. The scheduled rate is a double cos on both sides (within
// 1 ulp), far inside these.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <tuple>
#include <vector>

#include "kernels/sgd.h"
#include "optim/schedule.h"
#include "optim/sgd.h"
#include "tests/gpu_util.h"
#ifdef HPA_WITH_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda_check.h"
#endif

using namespace hpa;

namespace {

struct Tol {
  double atol, rtol;
};
Tol tol_of(DType dtype) { return dtype == DType::f64 ? Tol{1e-14, 1e-12} : Tol{1e-6, 1e-5}; }

// The same model on the CPU and on cuda:0: parameters with equal values, in equal groups.
struct TwinModels {
  std::vector<ParamGroup> cpu, gpu;
};

TwinModels twin_models(const std::vector<std::vector<int64_t>>& sizes_per_group,
                       const std::vector<kernels::SgdArgs>& args, const std::vector<double>& lr_scales,
                       DType dtype, uint64_t seed) {
  TwinModels m;
  for (size_t gi = 0; gi < sizes_per_group.size(); ++gi) {
    ParamGroup c{"group" + std::to_string(gi), {}, args[gi]}, g = c;
    c.lr_scale = g.lr_scale = lr_scales[gi];
    for (int64_t n : sizes_per_group[gi]) {
      const Tensor w = hpa::test::randn({n}, dtype, seed++);
      c.params.push_back(w.clone().set_requires_grad());
      g.params.push_back(w.to(Device::cuda(0)).set_requires_grad());
    }
    m.cpu.push_back(c);
    m.gpu.push_back(g);
  }
  return m;
}

// Gives every parameter except those listed in `skip` (flat index) the same fresh random
// gradient on both devices.
void set_twin_gradients(SGD& cpu, SGD& gpu, uint64_t seed, const std::vector<size_t>& skip = {}) {
  size_t flat = 0;
  for (size_t gi = 0; gi < cpu.groups().size(); ++gi) {
    for (size_t i = 0; i < cpu.groups()[gi].params.size(); ++i, ++flat) {
      Tensor& wc = cpu.groups()[gi].params[i];
      Tensor& wg = gpu.groups()[gi].params[i];
      bool skipped = false;
      for (size_t s : skip) skipped = skipped || s == flat;
      if (skipped) {
        wc.zero_grad();
        wg.zero_grad();
        continue;
      }
      const Tensor grad = hpa::test::randn(wc.shape(), wc.dtype(), seed + flat);
      wc.set_grad(grad);
      wg.set_grad(grad.to(Device::cuda(0)));
    }
  }
}

::testing::AssertionResult same_state(SGD& cpu, SGD& gpu, Tol tol, const std::string& when) {
  for (size_t gi = 0; gi < cpu.groups().size(); ++gi) {
    for (size_t i = 0; i < cpu.groups()[gi].params.size(); ++i) {
      const std::string what = when + ", group " + std::to_string(gi) + " tensor " + std::to_string(i);
      auto r = hpa::test::all_close(gpu.groups()[gi].params[i], cpu.groups()[gi].params[i], tol.atol,
                                    tol.rtol, what + " weights");
      if (!r) return r;
      const Tensor& vc = cpu.momentum_buffer(gi, i);
      const Tensor& vg = gpu.momentum_buffer(gi, i);
      if (vc.defined() != vg.defined())
        return ::testing::AssertionFailure() << what << ": momentum buffer defined on one device only";
      if (vc.defined()) {
        if (!vg.is_cuda()) return ::testing::AssertionFailure() << what << ": momentum buffer " << vg.desc();
        r = hpa::test::all_close(vg, vc, tol.atol, tol.rtol, what + " momentum");
        if (!r) return r;
      }
    }
  }
  return ::testing::AssertionSuccess();
}

std::vector<kernels::SgdArgs> three_settings() {
  kernels::SgdArgs a, b, c;
  a.lr = 0.1;
  a.momentum = 0.9;
  a.weight_decay = 1e-4;
  a.nesterov = true;
  b.lr = 0.01;
  b.momentum = 0.5;
  b.l1 = 1e-3;
  b.weight_decay = 5e-4;
  c.lr = 0.05;
  return {a, b, c};
}

}  // namespace

TEST(GpuSgd, FusedStepMatchesTheCpuAcrossGroupsAndSizes) {
  HPA_REQUIRE_GPU();
  // Sizes around the 16-byte pack and the 32768-element chunk, a tensor with no gradient,
  // and ResNet50's largest 3x3 convolution weight (512 x 512 x 3 x 3, layer4).
  const std::vector<std::vector<int64_t>> sizes = {
      {1, 3, 4097, 32768 * 2 + 3}, {5, 32768, 32769, 8}, {2, 7, 100001, 512 * 512 * 9}};
  for (DType dtype : {DType::f32, DType::f64}) {
    TwinModels m = twin_models(sizes, three_settings(), {1.0, 1.0, 1.0}, dtype, 10);
    SGD cpu(m.cpu), gpu(m.gpu);
    for (int step = 0; step < 3; ++step) {
      set_twin_gradients(cpu, gpu, 1000 + static_cast<uint64_t>(step) * 100, {5});
      cpu.step();
      gpu.step();
      ASSERT_TRUE(same_state(cpu, gpu, tol_of(dtype),
                             std::string(dtype_name(dtype)) + " step " + std::to_string(step)));
    }
    EXPECT_FALSE(gpu.momentum_buffer(1, 1).defined());  // never had a gradient
  }
}

TEST(GpuSgd, ScheduledRateIsReadFromTheDeviceStepCounter) {
  HPA_REQUIRE_GPU();
  // The paper's groups: encoder lr/3, middle lr/2, head lr. Cycles of 2, 4, 8 steps: warm
  // restarts at steps 2 and 6.
  const CosineCyclicSchedule schedule(0.1, 0.001, 2, 2);
  const std::vector<std::vector<int64_t>> sizes = {{33, 40000}, {17}, {28 * 512, 28}};
  for (DType dtype : {DType::f32, DType::f64}) {
    TwinModels m = twin_models(sizes, three_settings(), {1.0 / 3.0, 0.5, 1.0}, dtype, 20);
    SGD cpu(m.cpu), gpu(m.gpu);
    for (int step = 0; step < 7; ++step) {
      set_twin_gradients(cpu, gpu, 2000 + static_cast<uint64_t>(step) * 10);
      cpu.step(schedule);
      gpu.step(schedule);
      ASSERT_TRUE(same_state(cpu, gpu, tol_of(dtype), "scheduled step " + std::to_string(step)));
    }
    EXPECT_EQ(gpu.steps(), 7);
    const Tensor counter = gpu.device_step_counter(Device::cuda(0));
    ASSERT_TRUE(counter.defined());
    EXPECT_EQ(counter.to_vector<int64_t>(), std::vector<int64_t>{7});
    // Resuming moves the device counter too; the next step uses the rate of step 2 (a restart).
    cpu.set_steps(2);
    gpu.set_steps(2);
    EXPECT_EQ(counter.to_vector<int64_t>(), std::vector<int64_t>{2});
    set_twin_gradients(cpu, gpu, 3000);
    cpu.step(schedule);
    gpu.step(schedule);
    EXPECT_TRUE(same_state(cpu, gpu, tol_of(dtype), "after set_steps"));
    EXPECT_EQ(counter.to_vector<int64_t>(), std::vector<int64_t>{3});
    // A plain step uses args.lr and advances the counter as well.
    set_twin_gradients(cpu, gpu, 4000);
    cpu.step();
    gpu.step();
    EXPECT_TRUE(same_state(cpu, gpu, tol_of(dtype), "plain step"));
    EXPECT_EQ(counter.to_vector<int64_t>(), std::vector<int64_t>{4});
  }
}

TEST(GpuSgd, ManyTensorsTakeSeveralLaunches) {
  HPA_REQUIRE_GPU();
  // 450 tensors (more than two launches' worth), as in a deep model's many small BN vectors.
  std::vector<std::vector<int64_t>> sizes(2);
  for (int64_t i = 0; i < 450; ++i) sizes[static_cast<size_t>(i % 2)].push_back(1 + (i * 37) % 300);
  sizes[0].push_back(70000);
  auto settings = three_settings();
  settings.resize(2);
  TwinModels m = twin_models(sizes, settings, {1.0, 1.0}, DType::f32, 30);
  SGD cpu(m.cpu), gpu(m.gpu);
  for (int step = 0; step < 2; ++step) {
    set_twin_gradients(cpu, gpu, 5000 + static_cast<uint64_t>(step) * 1000);
    cpu.step();
    gpu.step();
    ASSERT_TRUE(same_state(cpu, gpu, tol_of(DType::f32), "step " + std::to_string(step)));
  }
}

TEST(GpuSgd, CpuAndCudaParametersInOneOptimizer) {
  HPA_REQUIRE_GPU();
  const Tensor init = hpa::test::randn({9}, DType::f32, 1), grad = hpa::test::randn({9}, DType::f32, 2);
  Tensor on_cpu = init.clone().set_requires_grad(), on_gpu = init.to(Device::cuda(0)).set_requires_grad();
  Tensor reference = init.clone().set_requires_grad();
  kernels::SgdArgs a = three_settings()[0];
  SGD both({ParamGroup{"mixed", {on_cpu, on_gpu}, a}}), alone({ParamGroup{"ref", {reference}, a}});
  for (int step = 0; step < 2; ++step) {
    on_cpu.set_grad(grad);
    on_gpu.set_grad(grad.to(Device::cuda(0)));
    reference.set_grad(grad);
    both.step();
    alone.step();
  }
  EXPECT_TRUE(hpa::test::all_close(on_cpu, reference, 0, 0, "CPU parameter"));
  EXPECT_TRUE(hpa::test::all_close(on_gpu, reference, 1e-6, 1e-5, "CUDA parameter"));
}

TEST(GpuSgd, TooManyGroupsForTheFusedUpdateIsAnError) {
  HPA_REQUIRE_GPU();
  std::vector<ParamGroup> groups;
  for (int i = 0; i <= kernels::kSgdMaxGroups; ++i) {
    Tensor w = Tensor::ones({2}, DType::f32, Device::cuda(0)).set_requires_grad();
    w.set_grad(Tensor::ones({2}, DType::f32, Device::cuda(0)));
    std::string name = "g";  // name built with += : GCC 12 flags "g" + to_string with a false -Wrestrict
    name += std::to_string(i);
    groups.push_back(ParamGroup{name, {w}, {}});
  }
  SGD sgd(groups);
  EXPECT_HPA_ERROR(sgd.step(), "SGD", "parameter groups", std::to_string(kernels::kSgdMaxGroups));
}

// ---- the kernel on guarded buffers ----------------------------------------------------------
#ifdef HPA_WITH_CUDA
namespace {

// Runs the fused kernel on three tensors in guarded buffers (the second shifted by one
// element, so its pointers are not 16-byte aligned) with fixed or scheduled rates, and
// compares with sgd_update_cpu.
template <class T>
void guarded_sgd(bool scheduled) {
  const std::vector<int64_t> sizes = {32768 + 5, 4099, 1};
  const auto settings = three_settings();
  const CosineCyclicSchedule schedule(0.2, 0.01, 3);
  const int64_t step_value = 4;  // step 1 of the second cycle
  const DType dtype = dtype_of<T>::value;
  struct Slot {
    hpa::test::GuardedDeviceBuffer<T> w, v, g;
    std::vector<T> w0, v0, g0;
    int64_t shift;
  };
  std::vector<std::unique_ptr<Slot>> slots;
  std::vector<kernels::SgdTensorRef<T>> refs;
  for (size_t t = 0; t < sizes.size(); ++t) {
    const int64_t n = sizes[t], shift = t == 1 ? 1 : 0;
    auto slot = std::unique_ptr<Slot>(new Slot{hpa::test::GuardedDeviceBuffer<T>(n + shift),
                                               hpa::test::GuardedDeviceBuffer<T>(n + shift),
                                               hpa::test::GuardedDeviceBuffer<T>(n + shift),
                                               {},
                                               {},
                                               {},
                                               shift});
    for (auto [buffer, host, seed] : {std::tuple{&slot->w, &slot->w0, 1}, std::tuple{&slot->v, &slot->v0, 2},
                                      std::tuple{&slot->g, &slot->g0, 3}}) {
      *host = hpa::test::randn({n + shift}, dtype, 100 * t + static_cast<uint64_t>(seed)).to_vector<T>();
      const Tensor src = Tensor::from_vector(*host, {n + shift}).to(Device::cuda(0));
      // On the engine's stream, which the kernel below is queued on.
      HPA_CUDA_CHECK(cudaMemcpyAsync(buffer->ptr(), src.data_ptr(), src.nbytes(), cudaMemcpyDeviceToDevice,
                                     static_cast<cudaStream_t>(cuda::stream(0))));
    }
    refs.push_back(
        {slot->w.ptr() + shift, slot->v.ptr() + shift, slot->g.ptr() + shift, n, static_cast<int>(t)});
    slots.push_back(std::move(slot));
  }
  std::vector<kernels::SgdGroupArgs> groups(3);
  for (int i = 0; i < 3; ++i) {
    groups[static_cast<size_t>(i)].args = settings[static_cast<size_t>(i)];
    groups[static_cast<size_t>(i)].lr_scale = 0.5 * (i + 1);
  }
  Tensor step = Tensor::from_vector<int64_t>({step_value}, {1}).to(Device::cuda(0));
  kernels::SgdDeviceSchedule device_schedule;
  device_schedule.schedule = schedule.args();
  device_schedule.step = step.data<int64_t>();
  const auto stream = static_cast<kernels::Stream>(cuda::stream(0));
  kernels::sgd_update_multi_tensor_cuda<T>(refs.data(), static_cast<int64_t>(refs.size()), groups.data(), 3,
                                           scheduled ? &device_schedule : nullptr, stream);
  kernels::sgd_advance_step_cuda(step.data<int64_t>(), stream);
  EXPECT_EQ(step.to_vector<int64_t>(), std::vector<int64_t>{step_value + 1});

  const Tol tol = tol_of(dtype);
  for (size_t t = 0; t < sizes.size(); ++t) {
    Slot& s = *slots[t];
    const int64_t n = sizes[t];
    kernels::SgdArgs args = settings[t];
    if (scheduled) args.lr = schedule.lr(step_value, groups[t].lr_scale);
    std::vector<T> w = s.w0, v = s.v0;
    kernels::sgd_update_cpu(w.data() + s.shift, v.data() + s.shift, s.g0.data() + s.shift, n, args);
    for (auto* buffer : {&s.w, &s.v, &s.g}) EXPECT_TRUE(buffer->guards_intact()) << "tensor " << t;
    const auto wg = s.w.values(), vg = s.v.values(), gg = s.g.values();
    EXPECT_EQ(gg, s.g0) << "the gradient is read-only";
    if (s.shift) {  // the element before the shifted tensor is not part of it
      EXPECT_EQ(std::memcmp(&wg[0], &s.w0[0], sizeof(T)), 0);
      EXPECT_EQ(std::memcmp(&vg[0], &s.v0[0], sizeof(T)), 0);
    }
    const Shape shape{n + s.shift};
    EXPECT_TRUE(hpa::test::all_close(Tensor::from_vector(wg, shape), Tensor::from_vector(w, shape), tol.atol,
                                     tol.rtol, "weights of tensor " + std::to_string(t)));
    EXPECT_TRUE(hpa::test::all_close(Tensor::from_vector(vg, shape), Tensor::from_vector(v, shape), tol.atol,
                                     tol.rtol, "momentum of tensor " + std::to_string(t)));
  }
}

}  // namespace
#endif  // HPA_WITH_CUDA

TEST(GpuSgdKernel, GuardRegionsAndUnalignedTensors) {
  HPA_REQUIRE_GPU();
#ifdef HPA_WITH_CUDA
  for (bool scheduled : {false, true}) {
    guarded_sgd<float>(scheduled);
    guarded_sgd<double>(scheduled);
  }
#endif
}
