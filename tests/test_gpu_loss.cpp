// CPU-vs-CUDA parity of the training objective's hand-written kernels: the fused per-sample
// BCE / focal loss (forward, fused gradient and backward; with and without class weights;
// odd shapes, the paper's 32x28 and 4096x28 batches, classes beyond one warp; saturated
// logits), its in-kernel value checks (same errors as the CPU, first bad index reported),
// run-to-run determinism, and the hard sampler's top-K (exactly the CPU's choice, ties and
// signed zeros included; NaN errors; backward routing). Kernel-level tests call the
// launchers on guarded buffers to catch out-of-bounds writes.
//
// Tolerances. f64: every per-element function (exp, log1p, pow) is within 2 ulp on both
// sides, and a row sums C <= 1000 positive terms in a different order on each device:
// |error| <= C * 2^-52 * sum <= 2.3e-13 relative, so rtol 1e-12 (atol 1e-14 for values
// that are ~0 at saturated logits). f32: CUDA's expf/log1pf/powf are within 2-4 ulp
// (CUDA Programming Guide, Table "single-precision mathematical functions"), so an element
// is within ~8 ulp = 5e-7 relative and a sum of C <= 64 positive terms within
// (8 + C) * 2^-24 = 4.3e-6 relative: rtol 1e-5. For C = 1000 the summation bound is
// 1008 * 2^-24 = 6e-5: rtol 1e-4 there. atol 1e-6 (f32) covers gradients that underflow
// differently at saturated logits; the reference values there are 1e-2 and up.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/loss.h"
#include "kernels/topk.h"
#include "tensor/ops/loss.h"
#include "tests/gpu_util.h"

using namespace hpa;
using hpa::test::cuda_parity;

namespace {

constexpr double kF64Atol = 1e-14, kF64Rtol = 1e-12;
constexpr double kF32Atol = 1e-6, kF32Rtol = 1e-5;

Tensor logits_of(const Shape& shape, DType dtype, double scale, uint64_t seed) {
  std::vector<double> v = hpa::test::randn(shape, DType::f64, seed).to_vector<double>();
  for (auto& e : v) e *= scale;
  return Tensor::from_vector(v, shape).to(dtype);
}

// Hard labels mixed with soft values, from a fixed seed.
Tensor targets_of(const Shape& shape, DType dtype, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> v(static_cast<size_t>(shape.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = i % 3 == 0 ? 1.0 : i % 3 == 1 ? 0.0 : u(rng);
  return Tensor::from_vector(v, shape).to(dtype);
}

Tensor weights_of(int64_t c, DType dtype, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.2, 3.0);
  std::vector<double> v(static_cast<size_t>(c));
  for (auto& x : v) x = u(rng);
  return Tensor::from_vector(v, {c}).to(dtype);
}

struct LossCase {
  int64_t n, c;
  bool focal;
  double gamma;
  bool weighted;
};

hpa::test::Fn loss_fn(const LossCase& lc) {
  return [lc](const std::vector<Tensor>& in) {
    return lc.focal ? focal_loss_per_sample(in[0], in[1], lc.gamma, in[2])
                    : bce_with_logits_per_sample(in[0], in[1], in[2]);
  };
}

void expect_loss_parity(const LossCase& lc, DType dtype, double scale, double f32_rtol = kF32Rtol) {
  const Tensor x = logits_of({lc.n, lc.c}, dtype, scale, 100 + static_cast<uint64_t>(lc.n * 7 + lc.c));
  Tensor logits = x;
  logits.set_requires_grad();
  const Tensor y = targets_of({lc.n, lc.c}, dtype, 200 + static_cast<uint64_t>(lc.c));
  const Tensor w = lc.weighted ? weights_of(lc.c, dtype, 300) : Tensor();
  const bool f64 = dtype == DType::f64;
  EXPECT_TRUE(cuda_parity(loss_fn(lc), {logits, y, w}, f64 ? kF64Atol : kF32Atol, f64 ? kF64Rtol : f32_rtol))
      << (lc.focal ? "focal" : "bce") << " gamma " << lc.gamma << " [" << lc.n << ", " << lc.c << "] "
      << dtype_name(dtype) << (lc.weighted ? " weighted" : "") << " logit scale " << scale;
}

// The message of the hpa::Error that f throws, or "" when it throws none.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// The CPU message with the CPU tensors' descriptions replaced by the CUDA ones.
std::string on_cuda(std::string message) {
  for (size_t at = message.find(" cpu"); at != std::string::npos; at = message.find(" cpu", at))
    message.replace(at, 4, " cuda:0");
  return message;
}

}  // namespace

// ---- per-sample loss through the op -------------------------------------------------------

TEST(GpuLoss, ParityOnOddShapes) {
  HPA_REQUIRE_GPU();
  for (DType dtype : {DType::f32, DType::f64})
    for (const LossCase& lc :
         {LossCase{3, 5, false, 0, false}, LossCase{3, 5, true, 2.0, true}, LossCase{1, 1, true, 0.5, false},
          LossCase{1, 1, false, 0, true}, LossCase{7, 33, true, 2.0, true}, LossCase{9, 31, false, 0, true},
          LossCase{13, 65, true, 1.5, false}, LossCase{5, 28, true, 0.0, true}})
      expect_loss_parity(lc, dtype, 3.0);
}

TEST(GpuLoss, ParityOnThePapersBatches) {
  HPA_REQUIRE_GPU();
  // 28 classes; a batch of 32 and a large evaluation batch of 4096.
  for (DType dtype : {DType::f32, DType::f64})
    for (int64_t n : {32, 4096})
      for (bool focal : {false, true})
        expect_loss_parity(LossCase{n, 28, focal, focal ? 2.0 : 0.0, true}, dtype, 2.0);
}

TEST(GpuLoss, ParityWithManyClasses) {
  HPA_REQUIRE_GPU();
  // 1000 classes: 32 per lane, the longest per-lane sums; f32 gets the looser summation
  // bound (see the header).
  for (DType dtype : {DType::f32, DType::f64})
    expect_loss_parity(LossCase{6, 1000, true, 2.0, true}, dtype, 2.0, 1e-4);
}

TEST(GpuLoss, ParityAtSaturatedLogits) {
  HPA_REQUIRE_GPU();
  for (DType dtype : {DType::f32, DType::f64}) {
    std::vector<double> v = {1000, -1000, 100, -100, 40, -40, 0, 1e-3, -17, 17};
    const Tensor x = Tensor::from_vector(v, {2, 5}).to(dtype);
    const Tensor y = Tensor::from_vector<double>({1, 0, 0, 1, 1, 0, 1, 0.3, 0, 1}, {2, 5}).to(dtype);
    for (double gamma : {0.0, 0.5, 2.0}) {
      Tensor logits = x.clone();
      logits.set_requires_grad();
      const bool f64 = dtype == DType::f64;
      EXPECT_TRUE(cuda_parity(loss_fn({2, 5, true, gamma, false}), {logits, y, Tensor()},
                              f64 ? kF64Atol : kF32Atol, f64 ? kF64Rtol : kF32Rtol))
          << "gamma " << gamma << " " << dtype_name(dtype);
    }
  }
}

TEST(GpuLoss, ForwardWithoutGradientAndEmptyBatch) {
  HPA_REQUIRE_GPU();
  const Tensor x = logits_of({5, 7}, DType::f64, 2.0, 1), y = targets_of({5, 7}, DType::f64, 2);
  const Tensor cpu = focal_loss_per_sample(x, y, 2.0);
  const Tensor gpu = focal_loss_per_sample(x.to(Device::cuda(0)), y.to(Device::cuda(0)), 2.0);
  EXPECT_FALSE(gpu.requires_grad());
  EXPECT_TRUE(hpa::test::all_close(gpu, cpu, kF64Atol, kF64Rtol, "no-grad forward"));
  const Tensor empty = bce_with_logits_per_sample(Tensor::zeros({0, 4}, DType::f32, Device::cuda(0)),
                                                  Tensor::zeros({0, 4}, DType::f32, Device::cuda(0)));
  EXPECT_EQ(empty.shape(), Shape({0}));
  EXPECT_TRUE(empty.is_cuda());
}

TEST(GpuLoss, RunsRepeatBitForBit) {
  HPA_REQUIRE_GPU();
  const Device gpu = Device::cuda(0);
  const Tensor x = logits_of({4096, 28}, DType::f32, 3.0, 5).to(gpu),
               y = targets_of({4096, 28}, DType::f32, 6).to(gpu);
  const Tensor w = weights_of(28, DType::f32, 7).to(gpu);
  const auto first = focal_loss_per_sample(x, y, 2.0, w).to_vector<float>();
  for (int run = 0; run < 3; ++run) {
    const auto again = focal_loss_per_sample(x, y, 2.0, w).to_vector<float>();
    ASSERT_EQ(std::memcmp(first.data(), again.data(), first.size() * sizeof(float)), 0) << "run " << run;
  }
}

TEST(GpuLoss, ValueErrorsMatchTheCpu) {
  HPA_REQUIRE_GPU();
  const Device gpu = Device::cuda(0);
  for (DType dtype : {DType::f32, DType::f64}) {
    const Tensor x = logits_of({4, 6}, dtype, 1.0, 1);
    std::vector<double> yv = targets_of({4, 6}, DType::f64, 2).to_vector<double>();
    // Two bad targets: the first in row-major order, [0, 5], is the one reported.
    yv[3 * 6 + 1] = -0.5;
    yv[0 * 6 + 5] = 1.5;
    const Tensor bad_y = Tensor::from_vector(yv, {4, 6}).to(dtype);
    const std::string cpu_msg = error_of([&] { focal_loss_per_sample(x, bad_y, 2.0); });
    ASSERT_NE(cpu_msg.find("target[0, 5] = 1.5"), std::string::npos) << cpu_msg;
    EXPECT_EQ(error_of([&] { focal_loss_per_sample(x.to(gpu), bad_y.to(gpu), 2.0); }), on_cuda(cpu_msg));

    yv[0 * 6 + 5] = 1.0;
    yv[3 * 6 + 1] = std::nan("");
    const Tensor nan_y = Tensor::from_vector(yv, {4, 6}).to(dtype);
    const std::string nan_msg = error_of([&] { bce_with_logits_per_sample(x.to(gpu), nan_y.to(gpu)); });
    EXPECT_NE(nan_msg.find("bce_with_logits_per_sample"), std::string::npos) << nan_msg;
    EXPECT_NE(nan_msg.find("target[3, 1] = nan"), std::string::npos) << nan_msg;
    EXPECT_EQ(nan_msg, on_cuda(error_of([&] { bce_with_logits_per_sample(x, nan_y); })));

    const Tensor y = targets_of({4, 6}, dtype, 3);
    for (double bad : {-0.25, std::numeric_limits<double>::infinity(), std::nan("")}) {
      std::vector<double> wv = weights_of(6, DType::f64, 4).to_vector<double>();
      wv[4] = bad;
      wv[5] = -1.0;  // also bad, but later: [4] is reported
      const Tensor w = Tensor::from_vector(wv, {6}).to(dtype);
      const std::string cpu_w = error_of([&] { focal_loss_per_sample(x, y, 1.0, w); });
      ASSERT_NE(cpu_w.find("class_weights[4]"), std::string::npos) << cpu_w;
      EXPECT_EQ(error_of([&] { focal_loss_per_sample(x.to(gpu), y.to(gpu), 1.0, w.to(gpu)); }),
                on_cuda(cpu_w));
      // The weights are checked even for an empty batch, as on the CPU.
      const Tensor none = Tensor::zeros({0, 6}, dtype, gpu);
      EXPECT_HPA_ERROR(focal_loss_per_sample(none, none, 1.0, w.to(gpu)), "focal_loss_per_sample",
                       "class_weights[4]");
    }
  }
}

TEST(GpuLoss, DeviceMismatchIsAnError) {
  HPA_REQUIRE_GPU();
  const Tensor x = logits_of({2, 3}, DType::f32, 1.0, 1), y = targets_of({2, 3}, DType::f32, 2);
  EXPECT_HPA_ERROR(bce_with_logits_per_sample(x.to(Device::cuda(0)), y), "bce_with_logits_per_sample",
                   "device mismatch", "cuda:0", "cpu");
  EXPECT_HPA_ERROR(
      focal_loss_per_sample(x.to(Device::cuda(0)), y.to(Device::cuda(0)), 2.0, Tensor::ones({3})),
      "focal_loss_per_sample", "device mismatch");
  EXPECT_HPA_ERROR(hard_sample_topk(Tensor::ones({4}, DType::f32, Device::cuda(0)), 5), "hard_sample_topk",
                   "k = 5");
}

// ---- per-sample loss kernels on guarded buffers ---------------------------------------------
#ifdef HPA_WITH_CUDA
template <class T>
void guarded_loss_kernels(int64_t n, int64_t c, bool weighted) {
  const DType dtype = dtype_of<T>::value;
  const Tensor x = logits_of({n, c}, dtype, 3.0, 11), y = targets_of({n, c}, dtype, 12);
  const Tensor w = weighted ? weights_of(c, dtype, 13) : Tensor();
  kernels::PerSampleLossArgs args;
  args.n = n;
  args.c = c;
  args.kind = kernels::PerSampleLossKind::focal;
  args.gamma = 2.0;
  std::vector<T> cpu_loss(static_cast<size_t>(n)), cpu_grad(static_cast<size_t>(n * c));
  kernels::per_sample_loss_forward_cpu<T>(x.data<T>(), y.data<T>(), weighted ? w.data<T>() : nullptr,
                                          cpu_loss.data(), cpu_grad.data(), args);

  const Tensor xd = x.to(Device::cuda(0)), yd = y.to(Device::cuda(0));
  const Tensor wd = weighted ? w.to(Device::cuda(0)) : Tensor();
  hpa::test::GuardedDeviceBuffer<T> loss(n), grad(n * c);
  hpa::test::GuardedDeviceBuffer<int64_t> flags(2);
  const auto stream = static_cast<kernels::Stream>(cuda::stream(0));
  kernels::per_sample_loss_forward_cuda<T>(xd.data<T>(), yd.data<T>(), weighted ? wd.data<T>() : nullptr,
                                           loss.ptr(), grad.ptr(), args, flags.ptr(), stream);
  EXPECT_TRUE(loss.guards_intact());
  EXPECT_TRUE(grad.guards_intact());
  EXPECT_TRUE(flags.guards_intact());
  EXPECT_EQ(flags.values(), (std::vector<int64_t>{-1, -1}));
  const bool f64 = dtype == DType::f64;
  EXPECT_TRUE(hpa::test::all_close(Tensor::from_vector(loss.values(), {n}),
                                   Tensor::from_vector(cpu_loss, {n}), f64 ? kF64Atol : kF32Atol,
                                   f64 ? kF64Rtol : kF32Rtol, "loss"));
  EXPECT_TRUE(hpa::test::all_close(Tensor::from_vector(grad.values(), {n, c}),
                                   Tensor::from_vector(cpu_grad, {n, c}), f64 ? kF64Atol : kF32Atol,
                                   f64 ? kF64Rtol : kF32Rtol, "fused gradient"));

  // Backward: a row scale of the fused gradient, on guarded output.
  const Tensor grad_loss = hpa::test::randn({n}, dtype, 14);
  std::vector<T> cpu_back(static_cast<size_t>(n * c));
  kernels::per_sample_loss_backward_cpu<T>(grad_loss.data<T>(), cpu_grad.data(), cpu_back.data(), n, c);
  const Tensor grad_loss_d = grad_loss.to(Device::cuda(0));
  hpa::test::GuardedDeviceBuffer<T> back(n * c);
  kernels::per_sample_loss_backward_cuda<T>(grad_loss_d.data<T>(), grad.ptr(), back.ptr(), n, c, stream);
  EXPECT_TRUE(back.guards_intact());
  EXPECT_TRUE(hpa::test::all_close(Tensor::from_vector(back.values(), {n, c}),
                                   Tensor::from_vector(cpu_back, {n, c}), f64 ? kF64Atol : kF32Atol,
                                   f64 ? kF64Rtol : kF32Rtol, "backward"));
}
#endif  // HPA_WITH_CUDA

TEST(GpuLossKernels, GuardRegionsStayIntact) {
  HPA_REQUIRE_GPU();
#ifdef HPA_WITH_CUDA
  for (auto [n, c] : {std::pair<int64_t, int64_t>{1, 1}, {3, 5}, {32, 28}, {9, 70}, {4097, 28}}) {
    guarded_loss_kernels<float>(n, c, true);
    guarded_loss_kernels<double>(n, c, false);
  }
#endif
}

// ---- hard sampler -------------------------------------------------------------------------

namespace {

void expect_same_choice(const Tensor& losses_cpu, int64_t k) {
  const HardSamples cpu = hard_sample_topk(losses_cpu, k);
  const HardSamples gpu = hard_sample_topk(losses_cpu.to(Device::cuda(0)), k);
  ASSERT_EQ(gpu.indices, cpu.indices) << "n " << losses_cpu.size(0) << " k " << k;
  ASSERT_TRUE(gpu.losses.is_cuda());
  // A gather: bit for bit.
  EXPECT_TRUE(hpa::test::same_bits(gpu.losses, cpu.losses, "chosen losses"));
}

}  // namespace

TEST(GpuTopk, SameChoiceAsTheCpu) {
  HPA_REQUIRE_GPU();
  for (DType dtype : {DType::f32, DType::f64}) {
    for (int64_t n : {1, 2, 31, 32, 33, 1000, 4096}) {
      const Tensor losses = hpa::test::randn({n}, dtype, 40 + static_cast<uint64_t>(n));
      for (int64_t k : {int64_t{1}, (n + 1) / 2, n}) expect_same_choice(losses, k);
    }
  }
}

TEST(GpuTopk, TiesSignedZerosAndInfinitiesBreakByIndexAsOnTheCpu) {
  HPA_REQUIRE_GPU();
  // Few distinct values, so most comparisons are ties.
  std::mt19937_64 rng(9);
  std::vector<double> v(4096);
  for (auto& e : v) e = static_cast<double>(rng() % 4) * 0.5;
  v[10] = -0.0;
  v[11] = 0.0;
  v[12] = std::numeric_limits<double>::infinity();
  v[13] = -std::numeric_limits<double>::infinity();
  v[14] = std::numeric_limits<double>::infinity();
  for (DType dtype : {DType::f32, DType::f64}) {
    const Tensor losses = Tensor::from_vector(v, {4096}).to(dtype);
    for (int64_t k : {1, 2, 3, 1000, 2049, 4096}) expect_same_choice(losses, k);
  }
  // All equal: the first k indices, in order.
  const HardSamples flat = hard_sample_topk(Tensor::ones({50}, DType::f32, Device::cuda(0)), 7);
  EXPECT_EQ(flat.indices, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6}));
}

TEST(GpuTopk, NanIsAnErrorNamingTheFirstNan) {
  HPA_REQUIRE_GPU();
  std::vector<float> v(100, 1.0f);
  v[70] = std::nanf("");
  v[31] = std::nanf("");
  const Tensor cpu = Tensor::from_vector(v, {100});
  const std::string cpu_msg = error_of([&] { hard_sample_topk(cpu, 10); });
  ASSERT_NE(cpu_msg.find("sample 31"), std::string::npos) << cpu_msg;
  EXPECT_EQ(error_of([&] { hard_sample_topk(cpu.to(Device::cuda(0)), 10); }), on_cuda(cpu_msg));
}

TEST(GpuTopk, BackwardParityAndThroughTheLoss) {
  HPA_REQUIRE_GPU();
  for (DType dtype : {DType::f32, DType::f64}) {
    // Losses alone: the gradient routes to the chosen samples (exact: a copy or a zero).
    Tensor losses = hpa::test::separated_values({257}, dtype, 3);
    losses.set_requires_grad();
    EXPECT_TRUE(cuda_parity([](const std::vector<Tensor>& in) { return hard_sample_topk(in[0], 100).losses; },
                            {losses}, 0, 0));
    // The training objective end to end: focal loss per sample, keep the hardest half.
    Tensor logits = logits_of({32, 28}, dtype, 2.0, 21);
    logits.set_requires_grad();
    const Tensor y = targets_of({32, 28}, dtype, 22), w = weights_of(28, dtype, 23);
    const bool f64 = dtype == DType::f64;
    EXPECT_TRUE(cuda_parity(
        [](const std::vector<Tensor>& in) {
          return hard_sample_topk(focal_loss_per_sample(in[0], in[1], 2.0, in[2]), 16).losses;
        },
        {logits, y, w}, f64 ? kF64Atol : kF32Atol, f64 ? kF64Rtol : kF32Rtol));
  }
}

#ifdef HPA_WITH_CUDA
template <class T>
void guarded_topk_kernels(int64_t n, int64_t k) {
  const Tensor values = hpa::test::separated_values({n}, dtype_of<T>::value, 50 + static_cast<uint64_t>(n));
  std::vector<int64_t> cpu_indices(static_cast<size_t>(k));
  ASSERT_EQ(kernels::topk_descending_cpu<T>(values.data<T>(), n, k, cpu_indices.data()), -1);
  const Tensor values_d = values.to(Device::cuda(0));
  hpa::test::GuardedDeviceBuffer<int64_t> ranks(n), indices(k), flag(1);
  hpa::test::GuardedDeviceBuffer<T> chosen(k);
  const auto stream = static_cast<kernels::Stream>(cuda::stream(0));
  kernels::topk_rank_select_cuda<T>(values_d.data<T>(), n, k, ranks.ptr(), indices.ptr(), chosen.ptr(),
                                    flag.ptr(), stream);
  EXPECT_TRUE(ranks.guards_intact());
  EXPECT_TRUE(indices.guards_intact());
  EXPECT_TRUE(chosen.guards_intact());
  EXPECT_TRUE(flag.guards_intact());
  EXPECT_EQ(flag.values(), std::vector<int64_t>{-1});
  EXPECT_EQ(indices.values(), cpu_indices);
  // The ranks are a permutation consistent with the chosen indices.
  const auto r = ranks.values();
  std::vector<int> seen(static_cast<size_t>(n), 0);
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_GE(r[static_cast<size_t>(i)], 0);
    ASSERT_LT(r[static_cast<size_t>(i)], n);
    ++seen[static_cast<size_t>(r[static_cast<size_t>(i)])];
  }
  for (int s : seen) EXPECT_EQ(s, 1);
  for (int64_t j = 0; j < k; ++j) EXPECT_EQ(r[static_cast<size_t>(cpu_indices[static_cast<size_t>(j)])], j);

  // Backward on guarded output against the CPU scatter.
  const Tensor grad_chosen = hpa::test::randn({k}, dtype_of<T>::value, 60);
  std::vector<T> cpu_grad(static_cast<size_t>(n));
  kernels::topk_scatter_cpu<T>(grad_chosen.data<T>(), cpu_indices.data(), k, cpu_grad.data(), n);
  const Tensor grad_chosen_d = grad_chosen.to(Device::cuda(0));
  hpa::test::GuardedDeviceBuffer<T> grad(n);
  kernels::topk_scatter_cuda<T>(grad_chosen_d.data<T>(), ranks.ptr(), k, grad.ptr(), n, stream);
  EXPECT_TRUE(grad.guards_intact());
  EXPECT_EQ(grad.values(), cpu_grad);
}
#endif  // HPA_WITH_CUDA

TEST(GpuTopkKernels, GuardRegionsStayIntact) {
  HPA_REQUIRE_GPU();
#ifdef HPA_WITH_CUDA
  for (auto [n, k] : {std::pair<int64_t, int64_t>{1, 1}, {5, 2}, {32, 32}, {33, 8}, {4096, 1024}}) {
    guarded_topk_kernels<float>(n, k);
    guarded_topk_kernels<double>(n, k);
  }
#endif
}
