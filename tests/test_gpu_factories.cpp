// Tensor factories and casts on a CUDA device (kernels/fill.cu, kernels/cast.cu) against the
// CPU: uniform draws bit for bit, normal draws to the few ulp that glibc and libdevice
// differ by (kernels/fill.h), constants of every dtype byte for byte, f32 <-> f64 casts bit
// for bit, the generator's bookkeeping, and guard regions around direct kernel calls.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cast.h"
#include "kernels/fill.h"
#include "tensor/random.h"
#include "tensor/tensor.h"
#include "tests/gpu_util.h"
#ifdef HPA_WITH_CUDA
#include "tensor/cuda_backend.h"
#endif

using namespace hpa;

namespace {

// Bytes of a tensor (any dtype, any device) as seen from the host.
std::vector<unsigned char> bytes_of(const Tensor& t) {
  const Tensor host = t.to(Device::cpu());
  const auto* p = static_cast<const unsigned char*>(host.data_ptr());
  return std::vector<unsigned char>(p, p + host.nbytes());
}

const std::vector<Shape> kShapes = {{1}, {7}, {3, 5, 7, 9}, {1000003}, {0, 5}};

}  // namespace

TEST(GpuFactories, UniformDrawsAreBitIdenticalToTheCpu) {
  HPA_REQUIRE_GPU();
  for (const Shape& shape : kShapes) {
    for (DType dtype : {DType::f32, DType::f64}) {
      Generator cpu_gen(2024), gpu_gen(2024);
      cpu_gen.set_state(2024, 41);
      gpu_gen.set_state(2024, 41);
      const Tensor c = Tensor::rand(shape, dtype, Device::cpu(), &cpu_gen);
      const Tensor g = Tensor::rand(shape, dtype, Device::cuda(0), &gpu_gen);
      ASSERT_TRUE(g.is_cuda());
      EXPECT_EQ(g.shape(), shape);
      EXPECT_EQ(bytes_of(g), bytes_of(c)) << shape << " " << dtype;
      EXPECT_EQ(gpu_gen.offset(), cpu_gen.offset());
    }
  }
  // Other dtypes are drawn on the host and copied: the same values too.
  Generator a(3), b(3);
  EXPECT_EQ(bytes_of(Tensor::rand({1001}, DType::bf16, Device::cuda(0), &a)),
            bytes_of(Tensor::rand({1001}, DType::bf16, Device::cpu(), &b)));
}

TEST(GpuFactories, NormalDrawsAgreeWithTheCpuToLibmAccuracy) {
  HPA_REQUIRE_GPU();
  const Shape shape{1000003};
  Generator cpu_gen(77), gpu_gen(77);
  // f64: log (1 ulp), cos (2 ulp) and their products differ by a few ulp between glibc and
  // libdevice; 16 ulp of slack, relative to each value.
  const auto c64 = Tensor::randn(shape, DType::f64, Device::cpu(), &cpu_gen).to_vector<double>();
  const auto g64 = Tensor::randn(shape, DType::f64, Device::cuda(0), &gpu_gen).to_vector<double>();
  for (size_t i = 0; i < c64.size(); ++i)
    ASSERT_LE(std::abs(g64[i] - c64[i]), 16 * 0x1p-52 * std::abs(c64[i])) << "element " << i;
  // f32: the double rounded once; only a double within a few ulp of a float rounding
  // boundary can round the other way (about 1e-8 of the elements), and then by one ulp.
  const auto c32 = Tensor::randn(shape, DType::f32, Device::cpu(), &cpu_gen).to_vector<float>();
  const auto g32 = Tensor::randn(shape, DType::f32, Device::cuda(0), &gpu_gen).to_vector<float>();
  int64_t differing = 0;
  for (size_t i = 0; i < c32.size(); ++i) {
    if (g32[i] == c32[i]) continue;
    ++differing;
    ASSERT_TRUE(g32[i] == std::nextafter(c32[i], INFINITY) || g32[i] == std::nextafter(c32[i], -INFINITY))
        << "element " << i << ": " << g32[i] << " vs " << c32[i];
  }
  EXPECT_LE(differing, 2) << "of " << c32.size() << " f32 normals differ by one ulp";
  // A wrong mapping (seed, offset or counter) would differ everywhere; so would a moment
  // that is off.
  double s = 0, s2 = 0;
  for (double v : g64) {
    s += v;
    s2 += v * v;
  }
  EXPECT_NEAR(s / static_cast<double>(g64.size()), 0.0, 0.01);
  EXPECT_NEAR(s2 / static_cast<double>(g64.size()), 1.0, 0.01);
}

TEST(GpuFactories, ConstantsOfEveryDtypeMatchTheCpu) {
  HPA_REQUIRE_GPU();
  const std::vector<std::pair<DType, double>> cases = {
      {DType::f32, 0.1},  {DType::f64, -0.1},    {DType::i32, -3.7}, {DType::i64, 5e12},
      {DType::u8, 200.0}, {DType::boolean, 1.0}, {DType::bf16, 1.5}, {DType::f16, 65504.0},
  };
  for (const Shape& shape : kShapes) {
    for (const auto& [dtype, value] : cases) {
      const Tensor g = Tensor::full(shape, value, dtype, Device::cuda(0));
      ASSERT_TRUE(g.is_cuda());
      EXPECT_EQ(bytes_of(g), bytes_of(Tensor::full(shape, value, dtype))) << shape << " " << dtype;
    }
  }
  EXPECT_EQ(Tensor::ones({2, 3}, DType::f64, Device::cuda(0)).to_vector<double>(),
            std::vector<double>(6, 1.0));
  EXPECT_EQ(Tensor::scalar(-4.25, DType::f32, Device::cuda(0)).item(), -4.25);
  EXPECT_EQ(Tensor::zeros({5}, DType::f32, Device::cuda(0)).to_vector<float>(), std::vector<float>(5, 0.0f));
  EXPECT_EQ(bytes_of(Tensor::arange(0.5, 3.0, 0.25, DType::f64, Device::cuda(0))),
            bytes_of(Tensor::arange(0.5, 3.0, 0.25, DType::f64)));
  Tensor t = Tensor::zeros({4, 4}, DType::f32, Device::cuda(0));
  t.fill_(2.5);
  EXPECT_EQ(t.to_vector<float>(), std::vector<float>(16, 2.5f));
}

TEST(GpuFactories, FloatDoubleCastsAreBitIdenticalToTheCpu) {
  HPA_REQUIRE_GPU();
  for (const Shape& shape : kShapes) {
    const Tensor x64 = test::randn(shape, DType::f64, 19);
    const Tensor x32 = test::randn(shape, DType::f32, 20);
    const Tensor down = x64.to(Device::cuda(0)).to(DType::f32);
    const Tensor up = x32.to(Device::cuda(0)).to(DType::f64);
    ASSERT_TRUE(down.is_cuda());
    ASSERT_TRUE(up.is_cuda());
    EXPECT_EQ(bytes_of(down), bytes_of(x64.to(DType::f32))) << shape;
    EXPECT_EQ(bytes_of(up), bytes_of(x32.to(DType::f64))) << shape;
  }
  // Round-to-nearest-even at a tie, subnormals kept.
  const Tensor edge = Tensor::from_vector<double>({1.0 + 0x1p-24, 1.0 + 0x1.8p-24, 1e-40, -0.0}, {4});
  EXPECT_EQ(bytes_of(edge.to(Device::cuda(0)).to(DType::f32)), bytes_of(edge.to(DType::f32)));
  Tensor nhwc = Tensor::zeros({1, 2, 3, 4}, DType::f32, Device::cuda(0));
  nhwc.set_layout(Layout::NHWC);
  EXPECT_EQ(nhwc.to(DType::f64).layout(), Layout::NHWC);
  EXPECT_HPA_ERROR(nhwc.to(DType::bf16), "Tensor::to(bf16)", "only f32 <-> f64", "f32[1, 2, 3, 4] cuda:0");
}

#ifdef HPA_WITH_CUDA

TEST(GpuFactoriesKernels, FillsAndCastsWriteOnlyTheirOutput) {
  HPA_REQUIRE_GPU();
  const auto stream = static_cast<kernels::Stream>(cuda::stream(0));
  const kernels::PhiloxDraw draw{123, 4};
  for (int64_t n : {int64_t{1}, int64_t{3}, int64_t{1027}}) {
    test::GuardedDeviceBuffer<float> u(n), z(n);
    test::GuardedDeviceBuffer<double> u64(n);
    kernels::fill_uniform_cuda(u.ptr(), n, draw, stream);
    kernels::fill_normal_cuda(z.ptr(), n, draw, stream);
    kernels::fill_uniform_cuda(u64.ptr(), n, draw, stream);
    std::vector<float> u_cpu(static_cast<size_t>(n));
    std::vector<double> u64_cpu(static_cast<size_t>(n));
    kernels::fill_uniform_cpu(u_cpu.data(), n, draw);
    kernels::fill_uniform_cpu(u64_cpu.data(), n, draw);
    EXPECT_TRUE(u.guards_intact()) << n;
    EXPECT_TRUE(z.guards_intact()) << n;
    EXPECT_TRUE(u64.guards_intact()) << n;
    EXPECT_EQ(u.values(), u_cpu);
    EXPECT_EQ(u64.values(), u64_cpu);

    test::GuardedDeviceBuffer<uint8_t> b1(n), b2(2 * n);  // b2: n two-byte elements
    test::GuardedDeviceBuffer<int64_t> b8(n);
    kernels::fill_pattern_cuda(b1.ptr(), n, 1, 0x5A, stream);
    kernels::fill_pattern_cuda(b2.ptr(), n, 2, 0x1234, stream);
    kernels::fill_pattern_cuda(b8.ptr(), n, 8, 0x0102030405060708ull, stream);
    EXPECT_TRUE(b1.guards_intact()) << n;
    EXPECT_TRUE(b2.guards_intact()) << n;
    EXPECT_TRUE(b8.guards_intact()) << n;
    EXPECT_EQ(b1.values(), std::vector<uint8_t>(static_cast<size_t>(n), 0x5A));
    std::vector<uint8_t> little_endian_pairs;
    for (int64_t i = 0; i < n; ++i) little_endian_pairs.insert(little_endian_pairs.end(), {0x34, 0x12});
    EXPECT_EQ(b2.values(), little_endian_pairs);
    EXPECT_EQ(b8.values(), std::vector<int64_t>(static_cast<size_t>(n), 0x0102030405060708ll));

    test::GuardedDeviceBuffer<double> wide(n);
    test::GuardedDeviceBuffer<float> narrow(n);
    kernels::cast_cuda(u.ptr(), wide.ptr(), n, stream);
    kernels::cast_cuda(wide.ptr(), narrow.ptr(), n, stream);
    EXPECT_TRUE(wide.guards_intact()) << n;
    EXPECT_TRUE(narrow.guards_intact()) << n;
    EXPECT_EQ(narrow.values(), u_cpu);
  }
  test::GuardedDeviceBuffer<float> empty(0);
  kernels::fill_normal_cuda(empty.ptr(), 0, draw, stream);
  kernels::fill_pattern_cuda(empty.ptr(), 0, 4, 0, stream);
  EXPECT_TRUE(empty.guards_intact());
  EXPECT_HPA_ERROR(kernels::fill_pattern_cuda(empty.ptr(), 1, 3, 0, stream), "fill_pattern_cuda", "3");
}

#endif  // HPA_WITH_CUDA
