// CPU-vs-CUDA parity of linear (kernels/linear.cu over kernels/gemm.cu, cuBLAS): forward
// and the three gradients, f32 and f64, on odd shapes, the HPA head's shapes (ACP of a
// ResNet50 feature map: 4096 features -> 28 classes; a 2048 -> 512 bottleneck) and a
// large odd GEMM; TF32 on and off; the bias gradient bit for bit; empty batch and empty
// features; device-mismatch errors; guard regions around direct launcher calls and
// around a gemm_cuda into a padded C (ldc > n), whose gaps must stay untouched.
//
// Tolerances. x ~ N(0, 1), weight ~ N(0, 1/in), so y and grad_x have magnitude ~1 and
// grad_weight / grad_bias ~sqrt(batch). Dot products have length K = in (up to 4096) or
// batch (up to 257); their rounding error is normwise, ~eps x sqrt(K) x the sum's scale,
// so the large shapes compare per tensor with atol = tol x rms(reference), rtol = tol:
// f64 tol 1e-10 (eps x sqrt(4096) ~ 7e-15), f32 with TF32 off tol 1e-4 (6e-8 x 64 ~ 4e-6
// typical: ~25x margin), TF32 on tol 1e-2 (10-bit mantissa inputs, ~1e-3 normwise). The
// odd shapes (K <= 17, magnitudes <= ~5) use cuda_parity's fixed atol = rtol: f64 1e-12,
// f32 1e-5. The bias gradient sums each column in the CPU's order, so it is exact.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/gemm.h"
#include "kernels/linear.h"
#include "tensor/autograd.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/linear.h"
#include "tests/gpu_util.h"
#ifdef HPA_WITH_CUDA
#include "tensor/cuda_backend.h"
#endif

using namespace hpa;
using test::cuda_parity;

namespace {

test::Fn linear_fn() {
  return [](const std::vector<Tensor>& in) { return linear(in[0], in[1], in.size() > 2 ? in[2] : Tensor()); };
}

std::vector<Tensor> linear_inputs(int64_t n, int64_t in, int64_t out, bool bias, DType dtype, uint64_t seed) {
  Generator gen(seed);
  Tensor x = Tensor::randn({n, in}, dtype, Device::cpu(), &gen);
  Tensor w =
      Tensor::randn({out, in}, dtype, Device::cpu(), &gen) * (1.0 / std::sqrt(std::max<double>(1.0, in)));
  x.set_requires_grad();
  w.set_requires_grad();
  std::vector<Tensor> v{x, w};
  if (bias) {
    Tensor b = Tensor::randn({out}, dtype, Device::cpu(), &gen);
    b.set_requires_grad();
    v.push_back(b);
  }
  return v;
}

double rms(const Tensor& t) {
  const auto v = test::as_doubles(t);
  double s = 0;
  for (double e : v) s += e * e;
  return v.empty() ? 0.0 : std::sqrt(s / static_cast<double>(v.size()));
}

// cuda_parity with atol = tol x rms(reference) per tensor (see the header).
::testing::AssertionResult normwise_parity(const test::Fn& f, const std::vector<Tensor>& inputs, double tol,
                                           bool tf32 = false, uint64_t seed = 11) {
  test::NoTf32 exact;
#ifdef HPA_WITH_CUDA
  cuda::set_allow_tf32(tf32);
#endif
  std::vector<Tensor> cpu_in, gpu_in;
  for (const auto& t : inputs) {
    Tensor c = t.detach().clone(), g = t.detach().to(Device::cuda(0));
    if (t.requires_grad()) {
      c.set_requires_grad();
      g.set_requires_grad();
    }
    cpu_in.push_back(c);
    gpu_in.push_back(g);
  }
  Tensor oc = f(cpu_in), og = f(gpu_in);
  if (!og.is_cuda())
    return ::testing::AssertionFailure() << "op returned " << og.desc() << " for CUDA inputs";
  auto r = test::all_close(og, oc, tol * rms(oc), tol, "CUDA output");
  if (!r) return r;
  Generator gen(seed);
  Tensor proj = Tensor::randn(oc.shape(), oc.dtype(), Device::cpu(), &gen);
  oc.backward(proj);
  og.backward(proj.to(Device::cuda(0)));
  for (size_t k = 0; k < cpu_in.size(); ++k) {
    if (!cpu_in[k].requires_grad()) continue;
    const Tensor& ref = cpu_in[k].grad();
    r = test::all_close(gpu_in[k].grad(), ref, tol * rms(ref), tol,
                        "CUDA gradient of input " + std::to_string(k));
    if (!r) return r;
  }
  return ::testing::AssertionSuccess();
}

struct LinearCase {
  int64_t n, in, out;
  bool bias;
};

TEST(GpuLinear, OddShapesMatchCpu) {
  HPA_REQUIRE_GPU();
  const std::vector<LinearCase> cases = {
      {7, 13, 5, true}, {1, 1, 1, true}, {3, 17, 11, false}, {5, 3, 9, true}};
  for (DType dtype : {DType::f32, DType::f64}) {
    const double tol = dtype == DType::f64 ? 1e-12 : 1e-5;
    for (const auto& c : cases) {
      SCOPED_TRACE(std::to_string(c.n) + "x" + std::to_string(c.in) + "->" + std::to_string(c.out));
      EXPECT_TRUE(cuda_parity(linear_fn(), linear_inputs(c.n, c.in, c.out, c.bias, dtype, 3), tol, tol));
    }
  }
}

TEST(GpuLinear, HeadAndLargeShapesMatchCpu) {
  HPA_REQUIRE_GPU();
  const std::vector<LinearCase> cases = {{32, 4096, 28, true}, {32, 2048, 512, true}, {257, 1000, 515, true}};
  for (DType dtype : {DType::f32, DType::f64}) {
    const double tol = dtype == DType::f64 ? 1e-10 : 1e-4;
    for (const auto& c : cases) {
      SCOPED_TRACE(std::to_string(c.n) + "x" + std::to_string(c.in) + "->" + std::to_string(c.out));
      EXPECT_TRUE(normwise_parity(linear_fn(), linear_inputs(c.n, c.in, c.out, c.bias, dtype, 5), tol));
    }
  }
}

TEST(GpuLinear, Tf32FlagSelectsTheMath) {
  HPA_REQUIRE_GPU();
  const auto in = linear_inputs(64, 2048, 256, true, DType::f32, 9);
  EXPECT_TRUE(normwise_parity(linear_fn(), in, 1e-2, /*tf32=*/true));
  EXPECT_TRUE(normwise_parity(linear_fn(), in, 1e-4, /*tf32=*/false));
}

TEST(GpuLinear, BiasGradientIsBitIdentical) {
  HPA_REQUIRE_GPU();
  for (DType dtype : {DType::f32, DType::f64}) {
    auto in = linear_inputs(37, 6, 29, true, dtype, 4);
    in[0].set_requires_grad(false);
    in[1].set_requires_grad(false);
    EXPECT_TRUE(cuda_parity(linear_fn(), in, 1e-5, 1e-5));  // the forward, loosely
    // Now exactly: the same projection seeds both backwards.
    Tensor bc = in[2].detach().clone().set_requires_grad();
    Tensor bg = in[2].detach().to(Device::cuda(0)).set_requires_grad();
    Generator gen(21);
    const Tensor proj = Tensor::randn({37, 29}, dtype, Device::cpu(), &gen);
    linear(in[0], in[1], bc).backward(proj);
    linear(in[0].to(Device::cuda(0)), in[1].to(Device::cuda(0)), bg).backward(proj.to(Device::cuda(0)));
    EXPECT_TRUE(test::all_close(bg.grad(), bc.grad(), 0.0, 0.0, "bias gradient"));
  }
}

TEST(GpuLinear, GradientsOnlyWhereRequired) {
  HPA_REQUIRE_GPU();
  for (int which = 0; which < 3; ++which) {
    SCOPED_TRACE("only input " + std::to_string(which) + " requires a gradient");
    auto in = linear_inputs(6, 7, 8, true, DType::f64, 4);
    for (int k = 0; k < 3; ++k) in[static_cast<size_t>(k)].set_requires_grad(k == which);
    EXPECT_TRUE(cuda_parity(linear_fn(), in, 1e-12, 1e-12));
  }
}

TEST(GpuLinear, EmptyBatchAndEmptyFeatures) {
  HPA_REQUIRE_GPU();
  for (DType dtype : {DType::f32, DType::f64}) {
    EXPECT_TRUE(
        cuda_parity(linear_fn(), linear_inputs(0, 5, 3, true, dtype, 1), 1e-12, 1e-12));  // zero grads
    EXPECT_TRUE(cuda_parity(linear_fn(), linear_inputs(4, 0, 3, true, dtype, 1), 1e-12, 1e-12));   // y = bias
    EXPECT_TRUE(cuda_parity(linear_fn(), linear_inputs(4, 0, 3, false, dtype, 1), 1e-12, 1e-12));  // y = 0
  }
}

TEST(GpuLinear, DeviceMismatchIsAClearError) {
  HPA_REQUIRE_GPU();
  const Tensor x = Tensor::zeros({2, 3}, DType::f32, Device::cuda(0));
  const Tensor w_cpu = Tensor::zeros({4, 3});
  EXPECT_HPA_ERROR(linear(x, w_cpu), "linear", "device mismatch", "[4, 3]");
  EXPECT_HPA_ERROR(linear(x, w_cpu.to(Device::cuda(0)), Tensor::zeros({4})), "linear", "device mismatch");
}

#ifdef HPA_WITH_CUDA
kernels::GemmCudaContext context0(bool tf32 = false) {
  return {0, static_cast<kernels::Stream>(cuda::stream(0)), tf32};
}

template <class T>
void guarded_linear() {
  const kernels::LinearArgs a{5, 7, 3};
  Generator gen(3);
  const DType dtype = dtype_of<T>::value;
  const Tensor x = Tensor::randn({a.n, a.in}, dtype, Device::cpu(), &gen);
  const Tensor w = Tensor::randn({a.out, a.in}, dtype, Device::cpu(), &gen);
  const Tensor b = Tensor::randn({a.out}, dtype, Device::cpu(), &gen);
  const Tensor gy = Tensor::randn({a.n, a.out}, dtype, Device::cpu(), &gen);
  const Tensor xd = x.to(Device::cuda(0)), wd = w.to(Device::cuda(0)), bd = b.to(Device::cuda(0)),
               gyd = gy.to(Device::cuda(0));
  test::GuardedDeviceBuffer<T> y(a.n * a.out), grad_x(a.n * a.in), grad_w(a.out * a.in), grad_b(a.out);
  kernels::linear_forward_cuda<T>(a, xd.data<T>(), wd.data<T>(), bd.data<T>(), y.ptr(), context0());
  kernels::linear_backward_input_cuda<T>(a, gyd.data<T>(), wd.data<T>(), grad_x.ptr(), context0());
  kernels::linear_backward_weight_cuda<T>(a, gyd.data<T>(), xd.data<T>(), grad_w.ptr(), context0());
  kernels::linear_backward_bias_cuda<T>(a, gyd.data<T>(), grad_b.ptr(), context0());
  cuda::synchronize(0);
  EXPECT_TRUE(y.guards_intact());
  EXPECT_TRUE(grad_x.guards_intact());
  EXPECT_TRUE(grad_w.guards_intact());
  EXPECT_TRUE(grad_b.guards_intact());
  std::vector<T> y_cpu(static_cast<size_t>(a.n * a.out)), gb_cpu(static_cast<size_t>(a.out));
  kernels::linear_forward_cpu<T>(a, x.data<T>(), w.data<T>(), b.data<T>(), y_cpu.data());
  kernels::linear_backward_bias_cpu<T>(a, gy.data<T>(), gb_cpu.data());
  const auto y_gpu = y.values();
  for (size_t i = 0; i < y_cpu.size(); ++i)
    EXPECT_NEAR(y_gpu[i], y_cpu[i], 1e-5 + 1e-5 * std::abs(y_cpu[i])) << i;
  EXPECT_EQ(grad_b.values(), gb_cpu);
}

TEST(GpuLinear, LaunchersWriteOnlyTheirOutputs) {
  HPA_REQUIRE_GPU();
  guarded_linear<float>();
  guarded_linear<double>();
}

// C is 4 x 3 inside rows of ldc 5: columns 3 and 4 of each row are gaps gemm_cuda must not
// touch, for a real product and for the k == 0 memset path.
TEST(GpuLinear, GemmLeavesTheGapsOfAPaddedC) {
  HPA_REQUIRE_GPU();
  const int64_t m = 4, n = 3, k = 6, ldc = 5;
  Generator gen(5);
  const Tensor a = Tensor::randn({m, k}, DType::f64, Device::cpu(), &gen);
  const Tensor b = Tensor::randn({k, n}, DType::f64, Device::cpu(), &gen);
  const Tensor ad = a.to(Device::cuda(0)), bd = b.to(Device::cuda(0));
  for (int64_t kk : {k, int64_t{0}}) {
    SCOPED_TRACE("k = " + std::to_string(kk));
    test::GuardedDeviceBuffer<double> c(m * ldc);
    const auto before = c.values();
    kernels::GemmArgs g{m, n, kk, false, false, k, n, ldc};
    kernels::gemm_cuda<double>(g, 1.0, ad.data<double>(), bd.data<double>(), 0.0, c.ptr(), context0());
    cuda::synchronize(0);
    EXPECT_TRUE(c.guards_intact());
    std::vector<double> expect(static_cast<size_t>(m * ldc));
    std::memcpy(expect.data(), before.data(), expect.size() * sizeof(double));
    kernels::gemm_cpu<double>(g, 1.0, a.data<double>(), b.data<double>(), 0.0, expect.data());
    const auto got = c.values();
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < ldc; ++j) {
        const size_t at = static_cast<size_t>(i * ldc + j);
        if (j < n) {
          EXPECT_NEAR(got[at], expect[at], 1e-12) << i << "," << j;
        } else {
          EXPECT_EQ(std::memcmp(&got[at], &before[at], sizeof(double)), 0)
              << "gap " << i << "," << j << " written";
        }
      }
    }
  }
}
#endif

}  // namespace
