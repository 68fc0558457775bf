// CPU-vs-CUDA parity of the elementwise ops (kernels/elementwise.cu) and of the autograd
// engine's gradient accumulation (kernels/accumulate.cu): every op forward and backward on
// odd-sized inputs and on ResNet50-stage shapes, in f32 and f64, with shapes chosen to
// reach every kernel path (per-element broadcast, row tiles with and without 16-byte
// packs, one long row with a ragged tail); guard regions around the outputs of direct
// kernel calls, misaligned pointers included; tensors past 2^31 elements; device errors.
//
// Tolerances. The broadcast arithmetic (+ - * /, scaling) is one IEEE operation per
// element on both devices, so it agrees exactly; the transcendental functions differ: glibc
// and CUDA's libdevice are each within 1-2 ulp (CUDA C Programming Guide, "Mathematical
// Functions"), so f32 results sit a few ulp (1.2e-7 each) apart: rtol 1e-5. f64: rtol 1e-12.
// The gradients of broadcast operands are sums over up to ~1.3e4 terms (sum_to_shape), in
// double on both devices but in different orders: for f64 that differs by about
// sqrt(1.3e4) * 1.1e-16 * (sum of |terms| ~ 1e4) ~ 1e-10 at worst, so atol 1e-9; f32
// rounds the double sum once, so at most an ulp apart: rtol 1e-5 covers it.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/accumulate.h"
#include "kernels/elementwise.h"
#include "tensor/autograd.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/reduce.h"
#include "tests/gpu_util.h"
#ifdef HPA_WITH_CUDA
#include "tensor/cuda_backend.h"
#endif

using namespace hpa;
using test::cuda_parity;

namespace {

Tensor leaf(Tensor t) { return t.set_requires_grad(); }

struct Tolerance {
  double atol, rtol;
};
Tolerance tolerance(DType t) { return t == DType::f32 ? Tolerance{1e-5, 1e-5} : Tolerance{1e-9, 1e-12}; }

// Values in [0.5, 1.5): safe divisors and log arguments.
Tensor positive(const Shape& shape, DType dtype, uint64_t seed) {
  Generator g(seed);
  return add_scalar(Tensor::rand(shape, dtype, Device::cpu(), &g), 0.5);
}

struct ShapePair {
  Shape a, b;
  const char* path;  // which kernel path the pair exercises (for failure messages)
};

const std::vector<ShapePair> kBinaryCases = {
    {{3, 5, 7, 9}, {3, 5, 7, 9}, "per-element (one short row)"},
    {{3, 5, 7, 9}, {5, 1, 1}, "per-element broadcast"},
    {{2, 1, 3, 1, 5}, {1, 4, 1, 6, 1}, "5-D, both operands stretched"},
    {{7, 1, 3}, {1, 5, 1}, "outer product"},
    {{}, {3, 5, 7, 9}, "0-D operand"},
    {{3, 5, 7, 9}, {1}, "one-element operand"},
    {{1, 1}, {1, 1}, "single element"},
    {{0, 3}, {1, 3}, "empty"},
    {{3, 5, 1031}, {5, 1}, "row tiles, inner not a whole number of packs"},
    {{2, 3, 2048}, {3, 1}, "row tiles with 16-byte packs"},
    {{100003}, {100003}, "one long row with a ragged tail"},
    {{4097}, {}, "one long row against a scalar"},
    {{1, 9000}, {9000}, "row of two tiles"},
    {{2, 512, 28, 28}, {2, 512, 1, 1}, "ResNet50 stage 2 SE gating"},
    {{2, 512, 28, 28}, {2, 512, 28, 28}, "ResNet50 stage 2 same shape"},
};

using BinaryFn = Tensor (*)(const Tensor&, const Tensor&);
const std::vector<std::pair<const char*, BinaryFn>> kBinaryOps = {
    {"add", &hpa::add}, {"sub", &hpa::sub}, {"mul", &hpa::mul}, {"div", &hpa::div}};

}  // namespace

TEST(GpuElementwise, BinaryOpsWithBroadcastingMatchTheCpu) {
  HPA_REQUIRE_GPU();
  for (DType dtype : {DType::f32, DType::f64}) {
    const Tolerance tol = tolerance(dtype);
    uint64_t seed = 1;
    for (const ShapePair& c : kBinaryCases) {
      for (const auto& [name, op] : kBinaryOps) {
        const Tensor a = test::randn(c.a, dtype, ++seed);
        const Tensor b =
            std::string(name) == "div" ? positive(c.b, dtype, ++seed) : test::randn(c.b, dtype, ++seed);
        auto f = [op = op](const std::vector<Tensor>& in) { return op(in[0], in[1]); };
        EXPECT_TRUE(cuda_parity(f, {leaf(a), leaf(b)}, tol.atol, tol.rtol))
            << name << " " << c.a << " and " << c.b << " (" << c.path << "), " << dtype;
      }
    }
  }
}

TEST(GpuElementwise, BiasAddOnAResNetStage1Activation) {
  HPA_REQUIRE_GPU();
  for (DType dtype : {DType::f32, DType::f64}) {
    const Tolerance tol = tolerance(dtype);
    const Tensor x = test::randn({4, 256, 56, 56}, dtype, 3), bias = test::randn({1, 256, 1, 1}, dtype, 4);
    EXPECT_TRUE(cuda_parity([](const std::vector<Tensor>& in) { return add(in[0], in[1]); },
                            {leaf(x), leaf(bias)}, tol.atol, tol.rtol))
        << dtype;
  }
}

TEST(GpuElementwise, UnaryAndScalarOpsMatchTheCpu) {
  HPA_REQUIRE_GPU();
  const std::vector<std::pair<const char*, test::Fn>> ops = {
      {"relu", [](const std::vector<Tensor>& in) { return relu(in[0]); }},
      {"selu", [](const std::vector<Tensor>& in) { return selu(in[0]); }},
      {"sigmoid", [](const std::vector<Tensor>& in) { return sigmoid(in[0]); }},
      {"exp", [](const std::vector<Tensor>& in) { return exp(in[0]); }},
      {"log", [](const std::vector<Tensor>& in) { return log(in[0]); }},
      {"neg", [](const std::vector<Tensor>& in) { return neg(in[0]); }},
      {"add_scalar", [](const std::vector<Tensor>& in) { return add_scalar(in[0], -0.75); }},
      {"mul_scalar", [](const std::vector<Tensor>& in) { return mul_scalar(in[0], 2.5); }},
  };
  const std::vector<Shape> shapes = {{3, 5, 7, 9}, {2, 512, 28, 28}, {1}, {0, 4}, {1, 1, 1, 1}, {4099}};
  for (DType dtype : {DType::f32, DType::f64}) {
    const Tolerance tol = tolerance(dtype);
    uint64_t seed = 100;
    for (const Shape& shape : shapes) {
      for (const auto& [name, f] : ops) {
        const Tensor x = std::string(name) == "log" ? positive(shape, dtype, ++seed)
                                                    : mul_scalar(test::randn(shape, dtype, ++seed), 3.0);
        EXPECT_TRUE(cuda_parity(f, {leaf(x)}, tol.atol, tol.rtol)) << name << " " << shape << " " << dtype;
      }
    }
  }
}

TEST(GpuElementwise, ReluOnAResNetStage1ActivationIsExact) {
  HPA_REQUIRE_GPU();
  // relu and its backward select values: no rounding anywhere, so tolerance 0.
  const Tensor x = test::randn({4, 256, 56, 56}, DType::f32, 8);
  EXPECT_TRUE(cuda_parity([](const std::vector<Tensor>& in) { return relu(in[0]); }, {leaf(x)}, 0.0, 0.0));
}

TEST(GpuElementwise, SigmoidSaturatesWithoutNaN) {
  HPA_REQUIRE_GPU();
  const Tensor x = Tensor::from_vector<float>({-1e30f, -100.f, -20.f, 0.f, 20.f, 100.f, 1e30f}, {7});
  const auto y = sigmoid(x.to(Device::cuda(0))).to_vector<float>();
  EXPECT_EQ(y[0], 0.f);
  EXPECT_EQ(y[3], 0.5f);
  EXPECT_EQ(y[6], 1.f);
  for (float v : y) EXPECT_TRUE(std::isfinite(v));
}

TEST(GpuElementwise, BroadcastToAndSumToShape) {
  HPA_REQUIRE_GPU();
  for (DType dtype : {DType::f32, DType::f64}) {
    const Tolerance tol = tolerance(dtype);
    const Tensor x = test::randn({3, 1, 5}, dtype, 21);
    EXPECT_TRUE(cuda_parity(
        [](const std::vector<Tensor>& in) {
          return broadcast_to(in[0], {4, 3, 7, 5});
        },
        {leaf(x)}, tol.atol, tol.rtol))
        << dtype;
    const Tensor big = test::randn({1, 2048}, dtype, 22);
    EXPECT_TRUE(cuda_parity(
        [](const std::vector<Tensor>& in) {
          return broadcast_to(in[0], {3, 5, 2048});
        },
        {leaf(big)}, tol.atol, tol.rtol))
        << dtype;
    // sum_to_shape on its own (not recorded): the inverse of each broadcast above.
    const Tensor g = test::randn({4, 3, 7, 5}, dtype, 23);
    EXPECT_TRUE(test::all_close(sum_to_shape(g.to(Device::cuda(0)), {3, 1, 5}), sum_to_shape(g, {3, 1, 5}),
                                tol.atol, tol.rtol, "sum_to_shape"));
    const Tensor g2 = test::randn({2, 512, 28, 28}, dtype, 24);
    EXPECT_TRUE(test::all_close(sum_to_shape(g2.to(Device::cuda(0)), {512, 1, 1}),
                                sum_to_shape(g2, {512, 1, 1}), tol.atol, tol.rtol, "sum_to_shape"));
  }
}

TEST(GpuElementwise, FanOutGradientsAccumulateOnTheDevice) {
  HPA_REQUIRE_GPU();
  for (DType dtype : {DType::f32, DType::f64}) {
    const Tolerance tol = tolerance(dtype);
    const Tensor x = test::randn({3, 5, 7, 9}, dtype, 31), w = test::randn({5, 1, 1}, dtype, 32);
    // x feeds four ops and w two: the engine sums their gradients with accumulate_into.
    auto f = [](const std::vector<Tensor>& in) {
      const Tensor& a = in[0];
      const Tensor& b = in[1];
      return add(add(mul(a, a), relu(a)), mul(sigmoid(a), add(b, b)));
    };
    EXPECT_TRUE(cuda_parity(f, {leaf(x), leaf(w)}, tol.atol, tol.rtol)) << dtype;
  }
  // A leaf's .grad accumulates over two backward passes, on the device.
  Tensor x = Tensor::full({1000}, 2.0, DType::f32, Device::cuda(0)).set_requires_grad();
  sum(mul_scalar(x, 3.0)).backward();
  sum(mul_scalar(x, 4.0)).backward();
  ASSERT_TRUE(x.grad().is_cuda());
  for (float v : x.grad().to_vector<float>()) ASSERT_EQ(v, 7.0f);
}

#ifdef HPA_WITH_CUDA

namespace {

kernels::Stream stream0() { return static_cast<kernels::Stream>(cuda::stream(0)); }

template <class T>
std::vector<T> host_values(int64_t n, uint64_t seed) {
  Generator g(seed);
  return Tensor::randn({n}, dtype_of<T>::value, Device::cpu(), &g).template to_vector<T>();
}

// A device copy of `values` placed `shift` elements past a 16-byte boundary (the tensor
// holds the copy plus the shift in front), so launchers see a misaligned pointer.
template <class T>
struct DeviceInput {
  Tensor storage;
  const T* ptr;
  DeviceInput(const std::vector<T>& values, int shift) {
    std::vector<T> padded(static_cast<size_t>(shift), T(0));
    padded.insert(padded.end(), values.begin(), values.end());
    storage = Tensor::from_vector(padded, {static_cast<int64_t>(padded.size())}).to(Device::cuda(0));
    ptr = storage.data<T>() + shift;
  }
};

template <class T>
::testing::AssertionResult same_within(const std::vector<T>& actual, const std::vector<T>& expected,
                                       double rtol) {
  if (actual.size() != expected.size()) return ::testing::AssertionFailure() << "sizes differ";
  for (size_t i = 0; i < actual.size(); ++i) {
    const double a = actual[i], e = expected[i];
    if (!(std::abs(a - e) <= rtol * std::abs(e) + 1e-30))
      return ::testing::AssertionFailure() << "element " << i << ": " << a << " vs " << e;
  }
  return ::testing::AssertionSuccess();
}

template <class T>
void check_unary_kernels_in_bounds(int shift) {
  const double rtol = sizeof(T) == 4 ? 1e-5 : 1e-12;
  using kernels::UnaryOp;
  for (int64_t n : {int64_t{1}, int64_t{5}, int64_t{1027}, int64_t{40000}}) {
    auto x_pos = host_values<T>(n, 7 + static_cast<uint64_t>(n));
    for (auto& e : x_pos) e = std::abs(e) + T(0.5);  // a valid argument of every op, log included
    const auto g = host_values<T>(n, 8 + static_cast<uint64_t>(n));
    const DeviceInput<T> dx(x_pos, shift), dg(g, shift);
    for (UnaryOp op : {UnaryOp::add_scalar, UnaryOp::mul_scalar, UnaryOp::neg, UnaryOp::relu, UnaryOp::selu,
                       UnaryOp::sigmoid, UnaryOp::exp, UnaryOp::log}) {
      const kernels::UnaryArgs args{n, 1.25};
      test::GuardedDeviceBuffer<T> y(n), gx(n);
      kernels::unary_forward_cuda(op, dx.ptr, y.ptr(), args, stream0());
      kernels::unary_backward_cuda(op, dg.ptr, dx.ptr, gx.ptr(), args, stream0());
      std::vector<T> y_cpu(static_cast<size_t>(n)), gx_cpu(static_cast<size_t>(n));
      kernels::unary_forward_cpu(op, x_pos.data(), y_cpu.data(), args);
      kernels::unary_backward_cpu(op, g.data(), x_pos.data(), gx_cpu.data(), args);
      const auto what = "op " + std::to_string(static_cast<int>(op)) + " n " + std::to_string(n) + " shift " +
                        std::to_string(shift);
      EXPECT_TRUE(y.guards_intact()) << what;
      EXPECT_TRUE(gx.guards_intact()) << what;
      EXPECT_TRUE(same_within(y.values(), y_cpu, rtol)) << what;
      EXPECT_TRUE(same_within(gx.values(), gx_cpu, rtol)) << what;
    }
    // accumulate into the buffer's initial contents (the sentinel byte pattern, a finite
    // value in both dtypes).
    test::GuardedDeviceBuffer<T> acc(n);
    std::vector<T> acc_cpu = acc.values();
    kernels::accumulate_cuda(acc.ptr(), dx.ptr, n, stream0());
    kernels::accumulate_cpu(acc_cpu.data(), x_pos.data(), n);
    EXPECT_TRUE(acc.guards_intact()) << "accumulate n " << n;
    EXPECT_TRUE(same_within(acc.values(), acc_cpu, 0.0)) << "accumulate n " << n;
  }
}

template <class T>
void check_binary_kernels_in_bounds(int shift) {
  struct Case {
    Shape out, a, b;
  };
  const std::vector<Case> cases = {
      {{3, 5, 7, 9}, {3, 5, 7, 9}, {5, 1, 1}},  // per-element
      {{3, 5, 1031}, {3, 5, 1031}, {5, 1}},     // row tiles, no packs
      {{2, 3, 2048}, {2, 3, 2048}, {3, 1}},     // row tiles with packs (when aligned)
      {{10001}, {10001}, {10001}},              // one long row, ragged tail
      {{2, 4100}, {1, 4100}, {2, 1}},           // two tiles per row, a stretched down rows
  };
  for (const Case& c : cases) {
    const auto a = host_values<T>(c.a.numel(), 11), b = host_values<T>(c.b.numel(), 12);
    const DeviceInput<T> da(a, shift), db(b, shift);
    const auto args = kernels::make_broadcast_args(c.out.begin(), c.out.size(), c.a.begin(), c.a.size(),
                                                   c.b.begin(), c.b.size());
    for (auto op : {kernels::BinaryOp::add, kernels::BinaryOp::mul}) {
      test::GuardedDeviceBuffer<T> out(c.out.numel());
      kernels::binary_forward_cuda(op, da.ptr, db.ptr, out.ptr(), args, stream0());
      std::vector<T> expected(static_cast<size_t>(c.out.numel()));
      kernels::binary_forward_cpu(op, a.data(), b.data(), expected.data(), args);
      EXPECT_TRUE(out.guards_intact()) << c.out << " shift " << shift;
      EXPECT_TRUE(same_within(out.values(), expected, 0.0)) << c.out << " shift " << shift;
    }
    // broadcast_scaled reads only the first operand: stretch a's source to the output.
    const auto src_args = kernels::make_broadcast_args(c.out.begin(), c.out.size(), c.b.begin(), c.b.size(),
                                                       c.out.begin(), c.out.size());
    test::GuardedDeviceBuffer<T> stretched(c.out.numel());
    kernels::broadcast_scaled_cuda(db.ptr, stretched.ptr(), src_args, T(0.5), stream0());
    std::vector<T> expected(static_cast<size_t>(c.out.numel()));
    kernels::broadcast_scaled_cpu(b.data(), expected.data(), src_args, T(0.5));
    EXPECT_TRUE(stretched.guards_intact()) << "broadcast_scaled " << c.out;
    EXPECT_TRUE(same_within(stretched.values(), expected, 0.0)) << "broadcast_scaled " << c.out;
  }
}

}  // namespace

TEST(GpuElementwiseKernels, UnaryKernelsWriteOnlyTheirOutput) {
  HPA_REQUIRE_GPU();
  for (int shift : {0, 1}) {
    check_unary_kernels_in_bounds<float>(shift);
    check_unary_kernels_in_bounds<double>(shift);
  }
}

TEST(GpuElementwiseKernels, BroadcastKernelsWriteOnlyTheirOutput) {
  HPA_REQUIRE_GPU();
  for (int shift : {0, 1}) {
    check_binary_kernels_in_bounds<float>(shift);
    check_binary_kernels_in_bounds<double>(shift);
  }
}

TEST(GpuElementwiseKernels, TensorsPast2To31Elements) {
  HPA_REQUIRE_GPU();
  // 2,147,485,000 f32 elements (8.6 GB each), just past 2^31: every index is 64-bit.
  const int64_t rows = 2147485, cols = 1000;
  try {
    const Tensor x = Tensor::full({rows, cols}, 1.5, DType::f32, Device::cuda(0));
    const Tensor half = Tensor::full({cols}, 0.5, DType::f32, Device::cuda(0));
    const double n = static_cast<double>(rows * cols);
    {
      const Tensor y = add(x, half);  // per-element broadcast kernel, 64-bit index
      EXPECT_EQ(sum(y).item(), static_cast<double>(static_cast<float>(2.0 * n)));
      const Tensor column_means = mean(y, {0});  // innermost kept, two passes
      for (float v : column_means.to_vector<float>()) ASSERT_EQ(v, 2.0f);
    }
    {
      const Tensor flat = x.reshape({rows * cols});
      const Tensor z = relu(add(flat, Tensor::scalar(-2.0, DType::f32, Device::cuda(0))));  // one long row
      EXPECT_EQ(sum(z).item(), 0.0);
      EXPECT_EQ(sum(exp(mul_scalar(z, 0.0))).item(), static_cast<double>(static_cast<float>(n)));
    }
  } catch (const Error& e) {
    if (std::string(e.what()).find("out of memory") != std::string::npos)
      GTEST_SKIP() << "not enough GPU memory for the 2^31-element tensors: " << e.what();
    throw;
  }
}

#endif  // HPA_WITH_CUDA

TEST(GpuElementwiseErrors, MixedDevicesAndDtypesAreClearErrors) {
  HPA_REQUIRE_GPU();
  const Tensor cpu = Tensor::ones({2, 3}), gpu = Tensor::ones({2, 3}, DType::f32, Device::cuda(0));
  EXPECT_HPA_ERROR(add(cpu, gpu), "add", "device mismatch", "f32[2, 3] cpu", "f32[2, 3] cuda:0");
  EXPECT_HPA_ERROR(mul(gpu, cpu), "mul", "device mismatch");
  EXPECT_HPA_ERROR(add(gpu, Tensor::ones({2, 3}, DType::f64, Device::cuda(0))), "add", "dtype mismatch");
  EXPECT_HPA_ERROR(add(gpu, Tensor::ones({4}, DType::f32, Device::cuda(0))), "add", "[2, 3]", "[4]");
  EXPECT_HPA_ERROR(relu(Tensor::zeros({3}, DType::i32, Device::cuda(0))), "relu", "f32 or f64",
                   "i32[3] cuda:0");
  Tensor dst = Tensor::zeros({3}, DType::f32, Device::cuda(0));
  EXPECT_HPA_ERROR(accumulate_into(dst, Tensor::zeros({3})), "gradient accumulation", "cuda:0", "cpu");
}
