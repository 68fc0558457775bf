// The CPU fills behind the factories (kernels/fill.h) and the f32 <-> f64 casts: pinned
// Philox values, bit-for-bit agreement with the per-element formula the factories used
// before the fill kernels existed (on both sides of the OpenMP threshold), constants of
// every dtype, and the generator bookkeeping.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cast.h"
#include "kernels/fill.h"
#include "kernels/philox.h"
#include "tensor/random.h"
#include "tensor/tensor.h"
#include "tests/test_util.h"

using namespace hpa;

namespace {

template <class T>
bool same_bits(T a, T b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

// The factories' formulas before the fill kernels: element i of rand was the float
// uniform widened to double, of randn Box-Muller in double; both then stored as T.
template <class T>
T reference_uniform(uint64_t i, uint64_t offset, uint64_t seed) {
  const auto r = kernels::philox4x32_10(i, offset, seed);
  return static_cast<T>(static_cast<double>(kernels::philox_uniform(r.v[0])));
}
template <class T>
T reference_normal(uint64_t i, uint64_t offset, uint64_t seed) {
  return static_cast<T>(kernels::philox_normal(kernels::philox4x32_10(i, offset, seed)));
}

}  // namespace

TEST(Fill, PinnedPhiloxValues) {
  // Computed from Random123's philox4x32-10 with seed 1234, offset 3 (see kernels/philox.h
  // for the counter mapping); uniforms carry 24 bits so they are exact in f32 and f64.
  Generator g(1234);
  g.set_state(1234, 3);
  const auto u32 = Tensor::rand({4}, DType::f32, Device::cpu(), &g).to_vector<float>();
  EXPECT_EQ(g.offset(), 4u);
  const std::vector<float> expected_u = {0x1.51f5ep-1f, 0x1.c86f4p-4f, 0x1.79a8cp-2f, 0x1.916c2p-1f};
  EXPECT_EQ(u32, expected_u);
  g.set_state(1234, 3);
  const auto u64 = Tensor::rand({4}, DType::f64, Device::cpu(), &g).to_vector<double>();
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(u64[i], static_cast<double>(expected_u[i])) << i;

  g.set_state(1234, 3);
  const auto n32 = Tensor::randn({4}, DType::f32, Device::cpu(), &g).to_vector<float>();
  const std::vector<float> expected_n32 = {-0x1.0402c8p-6f, 0x1.d47f6cp+0f, -0x1.5ca77ap-2f, -0x1.1eb61ap-1f};
  EXPECT_EQ(n32, expected_n32);
  g.set_state(1234, 3);
  const auto n64 = Tensor::randn({4}, DType::f64, Device::cpu(), &g).to_vector<double>();
  // glibc's log and cos may differ by an ulp between versions: 4 ulp of slack.
  const std::vector<double> expected_n64 = {-0x1.0402c8b187e6dp-6, 0x1.d47f6bd3771dep+0,
                                            -0x1.5ca77ac1b17dap-2, -0x1.1eb619ebd2dc9p-1};
  for (size_t i = 0; i < 4; ++i)
    EXPECT_NEAR(n64[i], expected_n64[i], 4 * 0x1p-52 * std::abs(expected_n64[i])) << i;

  // The high 32 bits of the element index reach the counter.
  const kernels::PhiloxDraw draw{0xDEADBEEFCAFEull, 7};
  EXPECT_EQ(kernels::uniform_element<float>((uint64_t{1} << 32) + 5, draw), 0x1.35fffep-1f);
  EXPECT_NE(kernels::uniform_element<float>((uint64_t{1} << 32) + 5, draw),
            kernels::uniform_element<float>(5, draw));
}

TEST(Fill, FactoriesMatchThePerElementFormulaBitForBit) {
  // 100003 elements: above the OpenMP threshold and not a multiple of any chunk.
  for (const int64_t n : {int64_t{1}, int64_t{7}, int64_t{100003}}) {
    Generator g(99);
    g.set_state(99, 12);
    const auto u32 = Tensor::rand({n}, DType::f32, Device::cpu(), &g).to_vector<float>();
    const auto u64 = Tensor::rand({n}, DType::f64, Device::cpu(), &g).to_vector<double>();
    const auto n32 = Tensor::randn({n}, DType::f32, Device::cpu(), &g).to_vector<float>();
    const auto n64 = Tensor::randn({n}, DType::f64, Device::cpu(), &g).to_vector<double>();
    EXPECT_EQ(g.offset(), 16u);
    int64_t mismatches = 0;
    for (int64_t i = 0; i < n; ++i) {
      const auto k = static_cast<size_t>(i);
      const auto e = static_cast<uint64_t>(i);
      mismatches += !same_bits(u32[k], reference_uniform<float>(e, 12, 99));
      mismatches += !same_bits(u64[k], reference_uniform<double>(e, 13, 99));
      mismatches += !same_bits(n32[k], reference_normal<float>(e, 14, 99));
      mismatches += !same_bits(n64[k], reference_normal<double>(e, 15, 99));
    }
    EXPECT_EQ(mismatches, 0) << "n = " << n;
  }
}

TEST(Fill, OtherDtypesAreDrawnLikeBefore) {
  Generator g(5);
  const auto ints = Tensor::randn({1000}, DType::i32, Device::cpu(), &g).to_vector<int32_t>();
  for (size_t i = 0; i < ints.size(); ++i)
    ASSERT_EQ(ints[i], static_cast<int32_t>(reference_normal<double>(i, 0, 5))) << i;
  const auto halves = Tensor::rand({1000}, DType::bf16, Device::cpu(), &g).to(DType::f32).to_vector<float>();
  for (size_t i = 0; i < halves.size(); ++i)
    ASSERT_EQ(halves[i], kernels::bf16_to_float(kernels::float_to_bf16(reference_uniform<float>(i, 1, 5))))
        << i;
}

TEST(Fill, ConstantsOfEveryDtype) {
  const int64_t n = 70001;  // above the OpenMP threshold
  for (float v : Tensor::full({n}, 2.5, DType::f32).to_vector<float>()) ASSERT_EQ(v, 2.5f);
  for (double v : Tensor::full({n}, 0.1, DType::f64).to_vector<double>()) ASSERT_EQ(v, 0.1);
  for (float v : Tensor::full({n}, 0.1, DType::f32).to_vector<float>()) ASSERT_EQ(v, 0.1f);
  for (int32_t v : Tensor::full({n}, -3.7, DType::i32).to_vector<int32_t>()) ASSERT_EQ(v, -3);
  for (int64_t v : Tensor::full({n}, 5e12, DType::i64).to_vector<int64_t>()) ASSERT_EQ(v, 5000000000000);
  for (uint8_t v : Tensor::full({n}, 200, DType::u8).to_vector<uint8_t>()) ASSERT_EQ(v, 200);
  for (bool v : Tensor::full({3}, 0.5, DType::boolean).to_vector<bool>()) EXPECT_TRUE(v);
  const Tensor bf = Tensor::full({5}, 1.5, DType::bf16), hf = Tensor::full({5}, 65504, DType::f16);
  for (double v : bf.to(DType::f64).to_vector<double>()) EXPECT_EQ(v, 1.5);
  for (double v : hf.to(DType::f64).to_vector<double>()) EXPECT_EQ(v, 65504.0);
  EXPECT_EQ(Tensor::full({0}, 1.0).numel(), 0);
  EXPECT_EQ(Tensor::ones({2, 3}, DType::f64).to_vector<double>(), std::vector<double>(6, 1.0));
  EXPECT_EQ(Tensor::scalar(-4.25, DType::f64).item(), -4.25);

  std::vector<uint16_t> raw(9, 0);
  kernels::fill_pattern_cpu(raw.data() + 1, 7, 2, 0xABCDull);
  EXPECT_EQ(raw.front(), 0u);
  EXPECT_EQ(raw.back(), 0u);
  for (size_t i = 1; i < 8; ++i) EXPECT_EQ(raw[i], 0xABCDu);
  EXPECT_HPA_ERROR(kernels::fill_pattern_cpu(raw.data(), 1, 3, 0), "fill_pattern_cpu", "3");
}

TEST(Fill, FloatDoubleCastsRoundToNearest) {
  const std::vector<double> values = {0.1, -2.5, 1e-40, 3.0e38, 1.0 + 0x1p-24, 1.0 + 0x1.8p-24};
  const auto floats = Tensor::from_vector(values, {6}).to(DType::f32).to_vector<float>();
  for (size_t i = 0; i < values.size(); ++i)
    EXPECT_TRUE(same_bits(floats[i], static_cast<float>(values[i]))) << i;
  EXPECT_EQ(floats[4], 1.0f);             // tie rounds to even
  EXPECT_EQ(floats[5], 1.0f + 0x1p-23f);  // above the tie rounds up
  const auto back = Tensor::from_vector(floats, {6}).to(DType::f64).to_vector<double>();
  for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(back[i], static_cast<double>(floats[i])) << i;
  // The parallel path of cast_cpu.
  const Tensor big = test::randn({100003}, DType::f64, 3);
  const auto big_f = big.to(DType::f32).to_vector<float>();
  const auto big_d = big.to_vector<double>();
  for (size_t i = 0; i < big_d.size(); ++i)
    ASSERT_TRUE(same_bits(big_f[i], static_cast<float>(big_d[i]))) << i;
}
