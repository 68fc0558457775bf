// CPU-vs-CUDA parity of batch_norm2d (kernels/batchnorm.cu): training with and without the
// affine parameters and the running buffers, eval mode, forward and every gradient, in f32
// and f64, on odd shapes (unvectorized planes), vectorized planes, planes cut into several
// tiles, 1x1 spatial, batch 1 and ResNet50-stage shapes; the running-statistics update;
// a large mean over a small spread (the one-pass shifted sums of the CUDA statistics);
// run-to-run determinism; device-mismatch errors; guard regions around every output and
// the workspace of direct kernel calls.
//
// Tolerances. Both devices accumulate in double, in different orders (CPU: serial, two
// passes; CUDA: per-tile trees, one pass of shifted sums). f64: reordering a sum of L terms
// of size ~1 changes it by about L * 1.1e-16 (random-walk growth of the partial sums), and
// mean, var, sum_g, sum_g_xhat inherit that, L being the values per channel (n * h * w);
// so atol 1e-15 * L, rtol 1e-12. f32: the statistics agree far below a float ulp, and each
// output is one rounding of the same double (backward) or x * scale + shift, which nvcc
// fuses into one fma where the CPU rounds twice: at most ~1 ulp of |x * scale| (<= ~5 for
// standard-normal data, ulp 4.8e-7), so atol 1e-5, rtol 1e-5.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/batchnorm.h"
#include "tensor/autograd.h"
#include "tensor/ops/norm.h"
#include "tests/gpu_util.h"
#ifdef HPA_WITH_CUDA
#include "kernels/cuda_check.h"
#include "tensor/cuda_backend.h"
#endif

using namespace hpa;
using test::cuda_parity;

namespace {

Tensor leaf(Tensor t) { return t.set_requires_grad(); }

struct Tolerance {
  double atol, rtol;
};

Tolerance tolerance(DType dtype, const Shape& x_shape) {
  if (dtype == DType::f32) return {1e-5, 1e-5};
  const int64_t per_channel = x_shape[0] * x_shape[2] * x_shape[3];
  return {1e-15 * static_cast<double>(std::max<int64_t>(per_channel, 16)), 1e-12};
}

// gamma around 1, beta around 0, running statistics plausible (var > 0).
Tensor around(const Shape& s, DType dtype, double center, double spread, uint64_t seed) {
  Generator g(seed);
  const Tensor r = Tensor::randn(s, DType::f64, Device::cpu(), &g);
  auto v = r.to_vector<double>();
  for (double& e : v) e = center + spread * e;
  return Tensor::from_vector(v, s).to(dtype);
}

enum class Mode { training_affine_tracking, training_plain, eval_affine };

const char* mode_name(Mode m) {
  switch (m) {
    case Mode::training_affine_tracking:
      return "training, affine, tracking";
    case Mode::training_plain:
      return "training, no affine, no running buffers";
    case Mode::eval_affine:
      return "eval, affine";
  }
  return "?";
}

// Parity of the output and the gradients of x (and gamma, beta when affine). The running
// buffers are inputs of f so each device updates its own copy.
::testing::AssertionResult bn_parity(const Shape& shape, DType dtype, Mode mode, uint64_t seed = 3) {
  const int64_t c = shape[1];
  const bool affine = mode != Mode::training_plain, tracking = mode != Mode::training_plain;
  BatchNormOptions options;
  options.training = mode != Mode::eval_affine;
  const Tensor x = test::randn(shape, dtype, seed);
  const Tensor gamma = affine ? leaf(around({c}, dtype, 1.0, 0.3, seed + 1)) : Tensor();
  const Tensor beta = affine ? leaf(around({c}, dtype, 0.0, 0.5, seed + 2)) : Tensor();
  const Tensor running_mean = tracking ? around({c}, dtype, 0.1, 0.2, seed + 3) : Tensor();
  const Tensor running_var = tracking ? around({c}, dtype, 1.0, 0.1, seed + 4) : Tensor();
  const Tolerance tol = tolerance(dtype, shape);
  return cuda_parity(
      [&](const std::vector<Tensor>& in) {
        Tensor rm = in[3], rv = in[4];
        return batch_norm2d(in[0], in[1], in[2], rm, rv, options);
      },
      {leaf(x), gamma, beta, running_mean, running_var}, tol.atol, tol.rtol);
}

}  // namespace

TEST(GpuBatchNorm, OddAndEdgeShapesMatchTheCpu) {
  HPA_REQUIRE_GPU();
  const std::vector<Shape> shapes = {
      {3, 5, 7, 9},      // hw 63: single-element packs, one 32-thread tile per plane
      {2, 3, 4, 4},      // hw 16: 16-byte packs
      {2, 3, 100, 100},  // several tiles per plane (vectorized)
      {2, 3, 65, 63},    // several tiles per plane (unvectorized)
      {5, 3, 1, 1},      // 1x1 spatial
      {1, 4, 5, 5},      // batch 1
      {2, 1, 3, 3},      // one channel
  };
  for (const Shape& s : shapes)
    for (DType dtype : {DType::f32, DType::f64})
      for (Mode mode : {Mode::training_affine_tracking, Mode::training_plain, Mode::eval_affine})
        EXPECT_TRUE(bn_parity(s, dtype, mode)) << s << " " << dtype << " " << mode_name(mode);
}

TEST(GpuBatchNorm, EvalModeAcceptsOneValuePerChannel) {
  HPA_REQUIRE_GPU();
  for (DType dtype : {DType::f32, DType::f64})
    EXPECT_TRUE(bn_parity({1, 6, 1, 1}, dtype, Mode::eval_affine)) << dtype;
}

TEST(GpuBatchNorm, ResNetStageShapesMatchTheCpu) {
  HPA_REQUIRE_GPU();
  EXPECT_TRUE(bn_parity({4, 256, 56, 56}, DType::f32, Mode::training_affine_tracking));
  EXPECT_TRUE(bn_parity({2, 512, 28, 28}, DType::f64, Mode::training_affine_tracking));
  EXPECT_TRUE(bn_parity({2, 512, 28, 28}, DType::f32, Mode::eval_affine));
  EXPECT_TRUE(bn_parity({8, 2048, 7, 7}, DType::f32, Mode::training_affine_tracking));  // hw 49: small planes
}

TEST(GpuBatchNorm, RunningStatisticsUpdateMatchesTheCpu) {
  HPA_REQUIRE_GPU();
  for (DType dtype : {DType::f32, DType::f64}) {
    const Shape shape{4, 6, 9, 11};
    const Tensor x = test::randn(shape, dtype, 21);
    Tensor rm_cpu = around({6}, dtype, 0.2, 0.3, 22), rv_cpu = around({6}, dtype, 1.5, 0.2, 23);
    Tensor rm_gpu = rm_cpu.to(Device::cuda(0)), rv_gpu = rv_cpu.to(Device::cuda(0));
    BatchNormOptions options;
    options.momentum = 0.3;
    for (int step = 0; step < 3; ++step) {  // three updates compound any error
      batch_norm2d(x, Tensor(), Tensor(), rm_cpu, rv_cpu, options);
      batch_norm2d(x.to(Device::cuda(0)), Tensor(), Tensor(), rm_gpu, rv_gpu, options);
    }
    const Tolerance tol = tolerance(dtype, shape);
    EXPECT_TRUE(test::all_close(rm_gpu, rm_cpu, tol.atol, tol.rtol, "running_mean")) << dtype;
    EXPECT_TRUE(test::all_close(rv_gpu, rv_cpu, tol.atol, tol.rtol, "running_var")) << dtype;
    // And the update really happened (a test that cannot fail is a defect).
    EXPECT_FALSE(test::all_close(rm_gpu, around({6}, dtype, 0.2, 0.3, 22), 1e-6, 0, "unchanged"));
  }
}

// Values 1000 +- 1: the raw sum of squares would cancel 12 of f64's 16 digits; the CUDA
// statistics shift by the channel's first element, the CPU centres on the exact mean.
// Tolerances: the CPU's serial sum of L = 1292 values ~1000 rounds partial sums ~1.3e6
// (half-ulp 1.2e-10 in f64), a random walk of sqrt(L) * 1.2e-10 / L = 3.2e-12 in the mean,
// times gamma * invstd (<= ~2.2) in y: f64 atol 3e-11 (~4 sigma), rtol 1e-10 (the
// gradients of gamma, ~sqrt(L) in size, inherit the same relative error). f32: x * scale
// is ~1300-2000 there and the CPU rounds that product (half-ulp 6.1e-5) before adding
// shift, where the GPU's fma does not: atol 1.2e-4.
TEST(GpuBatchNorm, LargeMeanSmallSpreadMatchesTheCpu) {
  HPA_REQUIRE_GPU();
  const Shape shape{4, 3, 17, 19};
  for (DType dtype : {DType::f32, DType::f64}) {
    const Tensor x = around(shape, dtype, 1000.0, 1.0, 31);
    const Tolerance tol = dtype == DType::f32 ? Tolerance{1.2e-4, 1e-5} : Tolerance{3e-11, 1e-10};
    EXPECT_TRUE(cuda_parity(
        [](const std::vector<Tensor>& in) { return batch_norm2d(in[0], in[1], in[2], Tensor(), Tensor()); },
        {leaf(x), leaf(around({3}, dtype, 1.0, 0.3, 32)), leaf(around({3}, dtype, 0.0, 0.3, 33))}, tol.atol,
        tol.rtol))
        << dtype;
  }
}

TEST(GpuBatchNorm, RepeatsBitForBit) {
  HPA_REQUIRE_GPU();
  const Tensor x0 = test::randn({4, 64, 30, 30}, DType::f32, 41).to(Device::cuda(0));
  const Tensor gamma0 = around({64}, DType::f32, 1.0, 0.2, 42).to(Device::cuda(0));
  const Tensor seed_grad = test::randn({4, 64, 30, 30}, DType::f32, 43).to(Device::cuda(0));
  std::vector<float> first_y, first_gx, first_gw;
  for (int run = 0; run < 3; ++run) {
    Tensor x = x0.clone().set_requires_grad(), gamma = gamma0.clone().set_requires_grad();
    Tensor y = batch_norm2d(x, gamma, Tensor(), Tensor(), Tensor());
    y.backward(seed_grad);
    const auto yv = y.to_vector<float>(), gx = x.grad().to_vector<float>(),
               gw = gamma.grad().to_vector<float>();
    if (run == 0) {
      first_y = yv;
      first_gx = gx;
      first_gw = gw;
      continue;
    }
    ASSERT_EQ(std::memcmp(yv.data(), first_y.data(), yv.size() * sizeof(float)), 0) << "y, run " << run;
    ASSERT_EQ(std::memcmp(gx.data(), first_gx.data(), gx.size() * sizeof(float)), 0) << "grad x, run " << run;
    ASSERT_EQ(std::memcmp(gw.data(), first_gw.data(), gw.size() * sizeof(float)), 0)
        << "grad gamma, run " << run;
  }
}

TEST(GpuBatchNormErrors, MixedDevicesNameTheOpAndTheTensors) {
  HPA_REQUIRE_GPU();
  const Tensor x = Tensor::zeros({2, 3, 4, 4}, DType::f32, Device::cuda(0));
  const Tensor cpu_vec = Tensor::ones({3}, DType::f32);
  EXPECT_HPA_ERROR(batch_norm2d(x, cpu_vec, Tensor(), Tensor(), Tensor()), "batch_norm2d", "device mismatch",
                   "cuda:0");
  Tensor rm = Tensor::zeros({3}, DType::f32), rv = Tensor::ones({3}, DType::f32);
  EXPECT_HPA_ERROR(batch_norm2d(x, Tensor(), Tensor(), rm, rv), "batch_norm2d", "device mismatch");
  EXPECT_HPA_ERROR(batch_norm2d(Tensor::zeros({1, 3, 1, 1}, DType::f32, Device::cuda(0)), Tensor(), Tensor(),
                                Tensor(), Tensor()),
                   "batch_norm2d", "more than 1 value per channel");
}

#ifdef HPA_WITH_CUDA

namespace {

kernels::Stream stream0() { return static_cast<kernels::Stream>(cuda::stream(0)); }

template <class T>
std::vector<T> host(const Tensor& t) {
  return t.to_vector<T>();
}

template <class T>
::testing::AssertionResult close(const std::vector<T>& actual, const std::vector<T>& expected,
                                 const Tolerance& tol, const char* what) {
  for (size_t i = 0; i < actual.size(); ++i) {
    const double a = static_cast<double>(actual[i]), e = static_cast<double>(expected[i]);
    if (!(std::abs(a - e) <= tol.atol + tol.rtol * std::abs(e)))
      return ::testing::AssertionFailure() << what << " element " << i << ": " << a << " vs CPU " << e;
  }
  return ::testing::AssertionSuccess();
}

// Every launcher called directly with its outputs and workspace inside guard regions;
// values checked against the CPU loops. Misaligned offsets (guard of 1 element) force the
// single-element path.
template <class T>
void check_kernels_in_bounds(const Shape& shape, int64_t guard) {
  SCOPED_TRACE(::testing::Message() << shape << " guard " << guard << " " << dtype_of<T>::value);
  const kernels::BatchNormArgs a{shape[0], shape[1], shape[2] * shape[3]};
  const int64_t numel = shape.numel();
  const Tolerance tol = tolerance(dtype_of<T>::value, shape);
  const Tensor x = test::randn(shape, dtype_of<T>::value, 51), g = test::randn(shape, dtype_of<T>::value, 52);
  const Tensor gamma = around({a.c}, dtype_of<T>::value, 1.0, 0.3, 53);
  test::GuardedDeviceBuffer<T> x_d(numel, guard), g_d(numel, guard);
  {
    const auto xv = host<T>(x), gv = host<T>(g);
    HPA_CUDA_CHECK(cudaMemcpy(x_d.ptr(), xv.data(), numel * sizeof(T), cudaMemcpyHostToDevice));
    HPA_CUDA_CHECK(cudaMemcpy(g_d.ptr(), gv.data(), numel * sizeof(T), cudaMemcpyHostToDevice));
  }
  const Tensor gamma_d = gamma.to(Device::cuda(0));

  // CPU reference.
  std::vector<double> mean(a.c), var(a.c), invstd(a.c), scale(a.c), shift(a.c), sum_g(a.c), sum_gx(a.c);
  kernels::batchnorm_stats_cpu(x.data<T>(), a, mean.data(), var.data());
  for (int64_t c = 0; c < a.c; ++c) {
    invstd[c] = kernels::batchnorm_invstd(var[c], 1e-5);
    const auto affine = kernels::batchnorm_channel_affine(mean[c], invstd[c], 1.0, 0.0);
    scale[c] = affine.scale;
    shift[c] = affine.shift;
  }
  std::vector<T> y(numel), gx_train(numel), gx_eval(numel);
  kernels::batchnorm_forward_cpu(x.data<T>(), scale.data(), shift.data(), a, y.data());
  kernels::batchnorm_backward_reduce_cpu(g.data<T>(), x.data<T>(), mean.data(), invstd.data(), a,
                                         sum_g.data(), sum_gx.data());
  kernels::batchnorm_backward_training_cpu(g.data<T>(), x.data<T>(), mean.data(), invstd.data(),
                                           gamma.data<T>(), sum_g.data(), sum_gx.data(), a, gx_train.data());
  kernels::batchnorm_backward_eval_cpu(g.data<T>(), invstd.data(), gamma.data<T>(), a, gx_eval.data());

  // CUDA, guarded.
  const int64_t ws = kernels::batchnorm_cuda_workspace_elements(a);
  test::GuardedDeviceBuffer<double> workspace(ws, guard), mean_d(a.c, guard), var_d(a.c, guard),
      invstd_d(a.c, guard), scale_d(a.c, guard), shift_d(a.c, guard), sum_g_d(a.c, guard),
      sum_gx_d(a.c, guard);
  test::GuardedDeviceBuffer<T> y_d(numel, guard), gx_train_d(numel, guard), gx_eval_d(numel, guard);
  kernels::batchnorm_stats_cuda(x_d.ptr(), a, mean_d.ptr(), var_d.ptr(), workspace.ptr(), stream0());
  kernels::BatchNormChannelSetup<T> setup;
  setup.c = a.c;
  setup.count = a.n * a.hw;
  setup.eps = 1e-5;
  setup.training = true;
  setup.mean = mean_d.ptr();
  setup.var = var_d.ptr();
  setup.invstd = invstd_d.ptr();
  setup.scale = scale_d.ptr();
  setup.shift = shift_d.ptr();
  kernels::batchnorm_setup_channels_cuda(setup, stream0());
  kernels::batchnorm_forward_cuda(x_d.ptr(), scale_d.ptr(), shift_d.ptr(), a, y_d.ptr(), stream0());
  kernels::batchnorm_backward_reduce_cuda(g_d.ptr(), x_d.ptr(), mean_d.ptr(), invstd_d.ptr(), a,
                                          sum_g_d.ptr(), sum_gx_d.ptr(), workspace.ptr(), stream0());
  kernels::batchnorm_backward_training_cuda(g_d.ptr(), x_d.ptr(), mean_d.ptr(), invstd_d.ptr(),
                                            gamma_d.data<T>(), sum_g_d.ptr(), sum_gx_d.ptr(), a,
                                            gx_train_d.ptr(), stream0());
  kernels::batchnorm_backward_eval_cuda(g_d.ptr(), invstd_d.ptr(), gamma_d.data<T>(), a, gx_eval_d.ptr(),
                                        stream0());
  for (auto* b : {&workspace, &mean_d, &var_d, &invstd_d, &scale_d, &shift_d, &sum_g_d, &sum_gx_d})
    EXPECT_TRUE(b->guards_intact());
  for (auto* b : {&y_d, &gx_train_d, &gx_eval_d}) EXPECT_TRUE(b->guards_intact());
  EXPECT_TRUE(close(mean_d.values(), mean, tol, "mean"));
  EXPECT_TRUE(close(var_d.values(), var, tol, "var"));
  EXPECT_TRUE(close(sum_g_d.values(), sum_g, tol, "sum_g"));
  EXPECT_TRUE(close(sum_gx_d.values(), sum_gx, tol, "sum_g_xhat"));
  EXPECT_TRUE(close(y_d.values(), y, tol, "y"));
  EXPECT_TRUE(close(gx_train_d.values(), gx_train, tol, "grad_x (training)"));
  EXPECT_TRUE(close(gx_eval_d.values(), gx_eval, tol, "grad_x (eval)"));
}

}  // namespace

TEST(GpuBatchNormKernels, OutputsAndWorkspaceStayInBounds) {
  HPA_REQUIRE_GPU();
  for (const Shape& s : {Shape{3, 5, 7, 9}, Shape{2, 3, 100, 100}, Shape{2, 4, 8, 8}, Shape{6, 2, 1, 1}}) {
    for (int64_t guard : {int64_t{256}, int64_t{1}}) {
      check_kernels_in_bounds<float>(s, guard);
      check_kernels_in_bounds<double>(s, guard);
    }
  }
}

#endif  // HPA_WITH_CUDA
