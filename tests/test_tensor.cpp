// Tensor core: factories, dtypes, device errors, views, the RNG, the allocator's counts and
// the autograd engine's bookkeeping (accumulation, fan-out, released graphs).
#include <gtest/gtest.h>

#include "kernels/philox.h"
#include "tensor/autograd.h"
#include "tensor/random.h"
#include "tensor/tensor.h"
#ifdef HPA_WITH_CUDA
#include "tensor/cuda_backend.h"
#endif
#include "tests/test_util.h"

using namespace hpa;

TEST(Tensor, FactoriesAndMetadata) {
  Tensor z = Tensor::zeros({2, 3});
  EXPECT_EQ(z.numel(), 6);
  EXPECT_EQ(z.dim(), 2);
  EXPECT_EQ(z.size(-1), 3);
  EXPECT_EQ(z.dtype(), DType::f32);
  for (float v : z.to_vector<float>()) EXPECT_EQ(v, 0.0f);
  Tensor f = Tensor::full({4}, 2.5, DType::f64);
  for (double v : f.to_vector<double>()) EXPECT_EQ(v, 2.5);
  Tensor a = Tensor::arange(5, DType::i64);
  EXPECT_EQ(a.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  Tensor b = Tensor::arange(1.0, 2.0, 0.25, DType::f64);
  EXPECT_EQ(b.to_vector<double>(), (std::vector<double>{1.0, 1.25, 1.5, 1.75}));
  EXPECT_EQ(Tensor::scalar(3.0).item(), 3.0);
  EXPECT_EQ(Tensor::ones({1, 1, 1, 1, 1}).numel(), 1);
  EXPECT_HPA_ERROR(Tensor::zeros({1, 2, 3, 4, 5, 6}), "more than 5");
  EXPECT_HPA_ERROR(Tensor::zeros({2, -1}), "negative size");
  EXPECT_HPA_ERROR(z.size(2), "out of range");
  EXPECT_HPA_ERROR(z.item(), "exactly one element");
  EXPECT_HPA_ERROR(z.data<double>(), "f32", "f64");
}

TEST(Tensor, CastsRoundTrip) {
  Tensor x = Tensor::from_vector<double>({-2.5, 0.0, 1.0, 65504.0, 1e-7}, {5});
  EXPECT_EQ(x.to(DType::f32).to(DType::f64).to_vector<double>()[0], -2.5);
  auto h = x.to(DType::f16).to(DType::f64).to_vector<double>();
  EXPECT_EQ(h[0], -2.5);
  EXPECT_EQ(h[3], 65504.0);
  EXPECT_NEAR(h[4], 1e-7, 6e-8);  // f16 subnormal
  auto bf = x.to(DType::bf16).to(DType::f64).to_vector<double>();
  EXPECT_EQ(bf[2], 1.0);
  EXPECT_NEAR(bf[3], 65504.0, 256.0);
  EXPECT_EQ(Tensor::from_vector<double>({3.7}, {1}).to(DType::i32).to_vector<int32_t>()[0], 3);
}

TEST(Tensor, CudaWithoutBackendIsAClearError) {
#ifndef HPA_WITH_CUDA
  EXPECT_HPA_ERROR(Tensor::zeros({2}, DType::f32, Device::cuda(0)), "no CUDA backend");
#else
  if (hpa::cuda::device_count() == 0) {
    EXPECT_HPA_ERROR(Tensor::zeros({2}, DType::f32, Device::cuda(0)), "no GPU is available");
  } else {
    EXPECT_HPA_ERROR(Tensor::zeros({2}, DType::f32, Device::cuda(99)), "cuda:99 does not exist");
  }
#endif
  EXPECT_HPA_ERROR(parse_device("gpu"), "bad device 'gpu'");
  EXPECT_EQ(parse_device("cuda:1").index, 1);
}

TEST(Tensor, ReshapeIsAViewAndChecksCount) {
  Tensor x = Tensor::arange(12, DType::f32);
  Tensor y = x.reshape({3, 4});
  EXPECT_EQ(y.data_ptr(), x.data_ptr());
  EXPECT_EQ(Tensor::zeros({2, 3, 4, 5}).flatten().shape(), (Shape{2, 60}));
  EXPECT_HPA_ERROR(x.reshape({5, 2}), "reshape", "[12]", "[5, 2]");
}

TEST(Tensor, PrintingIsReadable) {
  Tensor x = Tensor::arange(6, DType::f32).reshape({2, 3});
  const std::string s = x.to_string();
  EXPECT_NE(s.find("f32[2, 3] cpu"), std::string::npos) << s;
  EXPECT_NE(s.find("[[0, 1, 2],"), std::string::npos) << s;
  const std::string big = Tensor::zeros({100}).to_string();
  EXPECT_NE(big.find("..."), std::string::npos);
}

TEST(Random, PhiloxKnownAnswer) {
  // Random123's published known-answer vector for philox4x32-10 with all-zero counter and
  // key: {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}.
  const auto r = kernels::philox4x32_10(0, 0, 0);
  EXPECT_EQ(r.v[0], 0x6627e8d5u);
  EXPECT_EQ(r.v[1], 0xe169c58du);
  EXPECT_EQ(r.v[2], 0xbc57ac4cu);
  EXPECT_EQ(r.v[3], 0x9b00dbd8u);
}

TEST(Random, SeededAndStatisticallySane) {
  Generator g1(42), g2(42);
  Tensor a = Tensor::rand({1000}, DType::f32, Device::cpu(), &g1);
  Tensor b = Tensor::rand({1000}, DType::f32, Device::cpu(), &g2);
  EXPECT_EQ(a.to_vector<float>(), b.to_vector<float>());
  Tensor c = Tensor::rand({1000}, DType::f32, Device::cpu(), &g1);  // next draw differs
  EXPECT_NE(a.to_vector<float>(), c.to_vector<float>());
  Tensor n = Tensor::randn({100000}, DType::f64, Device::cpu(), &g1);
  double s = 0, s2 = 0;
  for (double v : n.to_vector<double>()) {
    s += v;
    s2 += v * v;
  }
  EXPECT_NEAR(s / 1e5, 0.0, 0.02);
  EXPECT_NEAR(s2 / 1e5, 1.0, 0.02);
  for (float v : a.to_vector<float>()) {
    EXPECT_GE(v, 0.0f);
    EXPECT_LT(v, 1.0f);
  }
  // The f32 and f64 draws of one stream agree to float rounding.
  Generator g3(5), g4(5);
  EXPECT_ALL_CLOSE(Tensor::randn({64}, DType::f32, Device::cpu(), &g3),
                   Tensor::randn({64}, DType::f64, Device::cpu(), &g4), 1e-6, 1e-6);
}

TEST(Allocator, CountsCurrentAndPeakBytes) {
  auto& a = CpuAllocator::instance();
  const auto before = a.stats();
  {
    Tensor t = Tensor::empty({1024}, DType::f64);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data_ptr()) % 64, 0u);
    EXPECT_EQ(a.stats().current_bytes, before.current_bytes + 8192);
    EXPECT_GE(a.stats().peak_bytes, before.current_bytes + 8192);
  }
  EXPECT_EQ(a.stats().current_bytes, before.current_bytes);
}

TEST(Autograd, ReshapeBackwardAndAccumulation) {
  Tensor x = Tensor::arange(6, DType::f64).set_requires_grad();
  Tensor y = x.reshape({2, 3});
  EXPECT_TRUE(y.requires_grad());
  EXPECT_STREQ(y.grad_fn()->name(), "reshape");
  Tensor g = Tensor::full({2, 3}, 2.0, DType::f64);
  y.backward(g);
  EXPECT_EQ(x.grad().to_vector<double>(), std::vector<double>(6, 2.0));
  // A second graph accumulates into the same .grad.
  x.reshape({3, 2}).backward(Tensor::ones({3, 2}, DType::f64));
  EXPECT_EQ(x.grad().to_vector<double>(), std::vector<double>(6, 3.0));
  // The first graph was released.
  EXPECT_HPA_ERROR(y.backward(g), "already", "reshape");
  EXPECT_HPA_ERROR(y.backward(Tensor::ones({3, 2}, DType::f64)), "does not match");
}

TEST(Autograd, NoGradGuardAndDetach) {
  Tensor x = Tensor::ones({2}, DType::f64).set_requires_grad();
  {
    NoGradGuard ng;
    EXPECT_FALSE(x.reshape({2, 1}).requires_grad());
  }
  EXPECT_FALSE(x.detach().requires_grad());
  EXPECT_HPA_ERROR(x.detach().backward(), "does not require a gradient");
  EXPECT_HPA_ERROR(Tensor::ones({2}, DType::i64).set_requires_grad(), "floating");
}
