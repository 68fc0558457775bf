// CPU-vs-CUDA parity of dropout and alpha_dropout (kernels/dropout.cu): the CUDA mask is
// bit-identical to the CPU's for the same (seed, offset), including seeds and offsets past
// 2^32 and sizes that are not a whole number of 16-byte packs; the mask against the
// documented Philox rule; backward recomputes the forward mask on the device; p = 1, eval
// mode and p = 0; a ResNet-head-sized tensor; guard regions around direct kernel calls
// with aligned and misaligned buffers.
//
// Tolerances. dropout's kept values are x * (1/(1-p)) rounded once on both devices (no add
// to fuse), and every gradient is g * kept_scale: all compared bit for bit. alpha_dropout's
// kept values are x * a + b, which nvcc fuses into one fma where the CPU rounds twice: at
// most 1 ulp of |x * a| apart (|x| <= ~5, a ~ 1.1: ulp 4.8e-7 in f32, 8.9e-16 in f64), so
// atol 1e-6 / 2e-15 with rtol 0; the dropped value is the same constant on both.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/dropout.h"
#include "kernels/philox.h"
#include "tensor/autograd.h"
#include "tensor/ops/dropout.h"
#include "tensor/random.h"
#include "tests/gpu_util.h"
#ifdef HPA_WITH_CUDA
#include "kernels/cuda_check.h"
#include "tensor/cuda_backend.h"
#endif

using namespace hpa;

namespace {

std::vector<unsigned char> bytes_of(const Tensor& t) {
  const Tensor h = t.to(Device::cpu());
  const auto* p = static_cast<const unsigned char*>(h.data_ptr());
  return std::vector<unsigned char>(p, p + h.nbytes());
}

bool kept_by_rule(uint64_t i, uint64_t offset, uint64_t seed, double p) {
  return static_cast<double>(kernels::philox_uniform(kernels::philox4x32_10(i, offset, seed).v[0])) >= p;
}

struct Draw {
  Tensor y, grad_x;
};

// One dropout (or alpha_dropout) draw at generator state (seed, offset) on `device`,
// backward seeded with `upstream`.
Draw draw(bool alpha, const Tensor& x0, const Tensor& upstream, double p, uint64_t seed, uint64_t offset,
          Device device) {
  Tensor x = x0.to(device).clone();
  x.set_requires_grad();
  Generator gen;
  gen.set_state(seed, offset);
  Tensor y = alpha ? alpha_dropout(x, p, true, &gen) : dropout(x, p, true, &gen);
  y.backward(upstream.to(device));
  return {y, x.grad()};
}

}  // namespace

TEST(GpuDropout, CpuAndCudaMasksAreBitIdenticalForTheSameSeed) {
  HPA_REQUIRE_GPU();
  struct State {
    uint64_t seed, offset;
  };
  const std::vector<State> states = {{0, 0}, {1234, 17}, {0x1234567890ABCDEFull, (uint64_t{1} << 32) + 5}};
  for (const Shape& s : {Shape{3, 5, 7, 9}, Shape{1, 1, 1, 1}, Shape{2, 3, 4, 4}, Shape{1001}}) {
    for (DType dtype : {DType::f32, DType::f64}) {
      const Tensor x = test::randn(s, dtype, 1), upstream = test::randn(s, dtype, 2);
      for (const State& st : states) {
        for (double p : {0.1, 0.5, 0.9}) {
          const Draw cpu = draw(false, x, upstream, p, st.seed, st.offset, Device::cpu());
          const Draw gpu = draw(false, x, upstream, p, st.seed, st.offset, Device::cuda(0));
          ASSERT_TRUE(gpu.y.is_cuda());
          EXPECT_EQ(bytes_of(gpu.y), bytes_of(cpu.y))
              << s << " " << dtype << " seed " << st.seed << " p " << p;
          EXPECT_EQ(bytes_of(gpu.grad_x), bytes_of(cpu.grad_x))
              << "gradient " << s << " " << dtype << " seed " << st.seed << " p " << p;
        }
      }
    }
  }
}

TEST(GpuDropout, MaskFollowsThePhiloxRule) {
  HPA_REQUIRE_GPU();
  const double p = 0.3;
  const uint64_t seed = 77, offset = 4;
  const Tensor x = Tensor::ones({5003}, DType::f32, Device::cuda(0));
  Generator gen;
  gen.set_state(seed, offset);
  const auto y = dropout(x, p, true, &gen).to_vector<float>();
  EXPECT_EQ(gen.offset(), offset + 1);
  int64_t kept = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    const bool keep = kept_by_rule(i, offset, seed, p);
    kept += keep;
    ASSERT_EQ(y[i], keep ? static_cast<float>(1.0 / (1.0 - p)) : 0.0f) << i;
  }
  EXPECT_GT(kept, 3000);  // ~0.7 * 5003 = 3502, binomial sd 32
  EXPECT_LT(kept, 4000);
}

TEST(GpuDropout, BackwardRecomputesTheForwardMask) {
  HPA_REQUIRE_GPU();
  Tensor x = test::randn({6, 11, 13}, DType::f32, 4).to(Device::cuda(0));
  x.set_requires_grad();
  Generator gen(31);
  Tensor y = dropout(x, 0.5, true, &gen);
  dropout(x, 0.5, true, &gen);  // a later draw must not disturb y's backward
  y.backward(Tensor::ones(y.shape(), DType::f32, Device::cuda(0)));
  const auto yv = y.to_vector<float>(), gv = x.grad().to_vector<float>();
  for (size_t i = 0; i < yv.size(); ++i) ASSERT_EQ(gv[i], yv[i] == 0.0f ? 0.0f : 2.0f) << i;
}

TEST(GpuDropout, AlphaDropoutMatchesTheCpu) {
  HPA_REQUIRE_GPU();
  for (DType dtype : {DType::f32, DType::f64}) {
    const double atol = dtype == DType::f32 ? 1e-6 : 2e-15;
    for (const Shape& s : {Shape{3, 5, 7, 9}, Shape{4, 2048}}) {
      const Tensor x = test::randn(s, dtype, 5), upstream = test::randn(s, dtype, 6);
      for (double p : {0.05, 0.5}) {
        const Draw cpu = draw(true, x, upstream, p, 8, 3, Device::cpu());
        const Draw gpu = draw(true, x, upstream, p, 8, 3, Device::cuda(0));
        EXPECT_TRUE(test::all_close(gpu.y, cpu.y, atol, 0, "alpha_dropout output")) << s << " " << dtype;
        // g * a where kept, 0 where dropped: equal bytes mean equal masks.
        EXPECT_EQ(bytes_of(gpu.grad_x), bytes_of(cpu.grad_x)) << "gradient " << s << " " << dtype;
      }
    }
  }
}

TEST(GpuDropout, LargeTensorMatchesTheCpu) {
  HPA_REQUIRE_GPU();
  const Shape s{32, 2048, 4, 4};  // ACP-head sized, ~1M elements
  const Tensor x = test::randn(s, DType::f32, 9), upstream = test::randn(s, DType::f32, 10);
  const Draw cpu = draw(false, x, upstream, 0.25, 2024, 11, Device::cpu());
  const Draw gpu = draw(false, x, upstream, 0.25, 2024, 11, Device::cuda(0));
  EXPECT_EQ(bytes_of(gpu.y), bytes_of(cpu.y));
  EXPECT_EQ(bytes_of(gpu.grad_x), bytes_of(cpu.grad_x));
}

TEST(GpuDropout, ProbabilityOneEvalAndZeroOnTheDevice) {
  HPA_REQUIRE_GPU();
  Tensor x = test::randn({4, 5}, DType::f64, 3).to(Device::cuda(0));
  x.set_requires_grad();
  Generator gen(5);
  Tensor y = dropout(x, 1.0, true, &gen);
  ASSERT_TRUE(y.is_cuda());
  for (double e : y.to_vector<double>()) EXPECT_EQ(e, 0.0);
  y.backward(Tensor::ones(y.shape(), DType::f64, Device::cuda(0)));
  for (double e : x.grad().to_vector<double>()) EXPECT_EQ(e, 0.0);
  EXPECT_TRUE(dropout(x, 0.5, false, &gen).same(x));
  EXPECT_TRUE(alpha_dropout(x, 0.0, true, &gen).same(x));
}

TEST(GpuDropoutErrors, ArgumentErrorsNameTheOp) {
  HPA_REQUIRE_GPU();
  const Tensor x = Tensor::zeros({2, 3}, DType::f32, Device::cuda(0));
  EXPECT_HPA_ERROR(dropout(x, 1.5, true), "dropout", "[0, 1]", "cuda:0");
  EXPECT_HPA_ERROR(alpha_dropout(x, 1.0, true), "alpha_dropout", "[0, 1)");
  EXPECT_HPA_ERROR(dropout(Tensor::zeros({2}, DType::i64, Device::cuda(0)), 0.5, true), "dropout",
                   "f32 or f64");
}

#ifdef HPA_WITH_CUDA

namespace {

// Both kernels called directly on guarded buffers (guard 1 misaligns them, so the
// single-element path runs), compared bit for bit with the CPU loops.
template <class T>
void check_dropout_kernels(int64_t n, int64_t guard) {
  SCOPED_TRACE(::testing::Message() << "n " << n << " guard " << guard << " " << dtype_of<T>::value);
  kernels::DropoutArgs d;
  d.seed = 0xC0FFEEull << 20;
  d.offset = 9;
  d.p = 0.4;
  d.kept_scale = 1.0 / 0.6;
  const Tensor x = test::randn({n}, dtype_of<T>::value, 12);
  std::vector<T> y(n), gx(n);
  kernels::dropout_forward_cpu(x.data<T>(), n, d, y.data());
  kernels::dropout_backward_cpu(x.data<T>(), n, d, gx.data());
  test::GuardedDeviceBuffer<T> x_d(n, guard), y_d(n, guard), gx_d(n, guard);
  const auto xv = x.to_vector<T>();
  HPA_CUDA_CHECK(cudaMemcpy(x_d.ptr(), xv.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  const auto stream = static_cast<kernels::Stream>(cuda::stream(0));
  kernels::dropout_forward_cuda(x_d.ptr(), n, d, y_d.ptr(), stream);
  kernels::dropout_backward_cuda(x_d.ptr(), n, d, gx_d.ptr(), stream);
  EXPECT_TRUE(y_d.guards_intact());
  EXPECT_TRUE(gx_d.guards_intact());
  const auto yv = y_d.values(), gv = gx_d.values();
  EXPECT_EQ(std::memcmp(yv.data(), y.data(), n * sizeof(T)), 0);
  EXPECT_EQ(std::memcmp(gv.data(), gx.data(), n * sizeof(T)), 0);
}

}  // namespace

TEST(GpuDropoutKernels, OutputsStayInBounds) {
  HPA_REQUIRE_GPU();
  for (int64_t guard : {int64_t{256}, int64_t{1}}) {
    for (int64_t n : {int64_t{1}, int64_t{3}, int64_t{4}, int64_t{945}, int64_t{65537}}) {
      check_dropout_kernels<float>(n, guard);
      check_dropout_kernels<double>(n, guard);
    }
  }
  const kernels::DropoutArgs d;
  kernels::dropout_forward_cuda<float>(nullptr, 0, d, nullptr, static_cast<kernels::Stream>(cuda::stream(0)));
}

#endif  // HPA_WITH_CUDA
