// dropout / alpha_dropout: the documented Philox mask rule, reproducibility from a seed,
// keep rate and moment preservation on large tensors, eval and p = 0 as the identity,
// p = 1, finite-difference gradients in double (each evaluation re-seeds its own
// Generator so the mask is identical), float-vs-double agreement and argument errors.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/dropout.h"
#include "kernels/philox.h"
#include "tensor/autograd.h"
#include "tensor/ops/dropout.h"
#include "tensor/random.h"
#include "tensor/tensor.h"
#include "tests/test_util.h"

using namespace hpa;
using hpa::test::float_matches_double;
using hpa::test::gradcheck;

namespace {

constexpr double kAlphaPrime = -1.7580993408473766;

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double e : v) s += e;
  return s / static_cast<double>(v.size());
}

double variance_of(const std::vector<double>& v) {
  const double m = mean_of(v);
  double s = 0;
  for (double e : v) s += (e - m) * (e - m);
  return s / static_cast<double>(v.size());
}

bool kept_by_rule(uint64_t i, uint64_t offset, uint64_t seed, double p) {
  return static_cast<double>(kernels::philox_uniform(kernels::philox4x32_10(i, offset, seed).v[0])) >= p;
}

Tensor requiring_grad(Tensor t) {
  t.set_requires_grad();
  return t;
}

}  // namespace

TEST(Dropout, MaskFollowsThePhiloxRuleAndScalesKeptValues) {
  const double p = 0.4;
  Tensor x = hpa::test::randn({3, 4, 5, 7}, DType::f64, 1);
  Generator gen(1234);
  gen.set_state(1234, 17);
  Tensor y = dropout(x, p, true, &gen);
  EXPECT_EQ(gen.offset(), 18u);  // exactly one draw
  const auto xv = x.to_vector<double>(), yv = y.to_vector<double>();
  int kept = 0;
  for (size_t i = 0; i < xv.size(); ++i) {
    if (kept_by_rule(i, 17, 1234, p)) {
      ++kept;
      EXPECT_DOUBLE_EQ(yv[i], xv[i] / (1 - p)) << i;
    } else {
      EXPECT_EQ(yv[i], 0.0) << i;
    }
  }
  EXPECT_GT(kept, 0);
  EXPECT_LT(kept, static_cast<int>(xv.size()));
}

TEST(Dropout, SameSeedSameMaskAndConsecutiveDrawsDiffer) {
  Tensor x = Tensor::ones({1000}, DType::f32);
  Generator a(99), b(99);
  Tensor ya = dropout(x, 0.5, true, &a), yb = dropout(x, 0.5, true, &b);
  EXPECT_EQ(ya.to_vector<float>(), yb.to_vector<float>());
  EXPECT_NE(dropout(x, 0.5, true, &a).to_vector<float>(), ya.to_vector<float>());
  // The mask does not depend on the dtype: the double path drops the same elements.
  Generator c(99);
  const auto yd = dropout(x.to(DType::f64), 0.5, true, &c).to_vector<double>();
  const auto yf = ya.to_vector<float>();
  for (size_t i = 0; i < yd.size(); ++i) EXPECT_EQ(yd[i] == 0.0, yf[i] == 0.0f) << i;
  // The default generator is used when none is given.
  manual_seed(99);
  EXPECT_EQ(dropout(x, 0.5, true).to_vector<float>(), ya.to_vector<float>());
}

TEST(Dropout, KeepRateAndMeanOnALargeTensor) {
  const double p = 0.3;
  const int64_t n = 200000;
  Generator gen(7);
  const auto y = dropout(Tensor::ones({n}, DType::f64), p, true, &gen).to_vector<double>();
  int64_t kept = 0;
  for (double e : y) kept += e != 0.0;
  // Binomial standard deviation of the kept fraction: sqrt(0.21 / n) ~ 0.001.
  EXPECT_NEAR(static_cast<double>(kept) / static_cast<double>(n), 1 - p, 0.005);
  // Inverted scaling keeps the mean: standard deviation sqrt(p / (1-p) / n) ~ 0.0015.
  EXPECT_NEAR(mean_of(y), 1.0, 0.0075);
}

TEST(Dropout, EvalAndZeroProbabilityAreTheIdentity) {
  Tensor x = requiring_grad(hpa::test::randn({2, 3}, DType::f32, 2));
  Generator gen(5);
  EXPECT_TRUE(dropout(x, 0.5, false, &gen).same(x));
  EXPECT_TRUE(dropout(x, 0.0, true, &gen).same(x));
  EXPECT_TRUE(alpha_dropout(x, 0.5, false, &gen).same(x));
  EXPECT_TRUE(alpha_dropout(x, 0.0, true, &gen).same(x));
  EXPECT_EQ(gen.offset(), 0u);  // no draw was made
}

TEST(Dropout, ProbabilityOneDropsEverything) {
  Tensor x = requiring_grad(hpa::test::randn({4, 5}, DType::f64, 3));
  Generator gen(5);
  Tensor y = dropout(x, 1.0, true, &gen);
  for (double e : y.to_vector<double>()) EXPECT_EQ(e, 0.0);
  y.backward(Tensor::ones(y.shape(), DType::f64));
  for (double e : x.grad().to_vector<double>()) EXPECT_EQ(e, 0.0);
}

TEST(Dropout, BackwardReusesTheForwardMask) {
  const double p = 0.5;
  Tensor x = requiring_grad(hpa::test::randn({6, 11}, DType::f32, 4));
  Generator gen(31);
  Tensor y = dropout(x, p, true, &gen);
  dropout(x, p, true, &gen);  // a later draw must not disturb y's backward
  y.backward(Tensor::ones(y.shape(), DType::f32));
  const auto yv = y.to_vector<float>(), gv = x.grad().to_vector<float>();
  for (size_t i = 0; i < yv.size(); ++i) EXPECT_EQ(gv[i], yv[i] == 0.0f ? 0.0f : 2.0f) << i;
}

TEST(AlphaDropout, DroppedAndKeptValuesFollowTheAffineMap) {
  const double p = 0.2;
  const double a = 1 / std::sqrt((1 - p) * (1 + p * kAlphaPrime * kAlphaPrime)), b = -a * kAlphaPrime * p;
  Tensor x = hpa::test::randn({5, 13}, DType::f64, 5);
  Generator gen(8);
  const auto y = alpha_dropout(x, p, true, &gen).to_vector<double>();
  const auto xv = x.to_vector<double>();
  int dropped = 0;
  for (size_t i = 0; i < xv.size(); ++i) {
    if (kept_by_rule(i, 0, 8, p)) {
      EXPECT_NEAR(y[i], a * xv[i] + b, 1e-15) << i;
    } else {
      ++dropped;
      EXPECT_NEAR(y[i], a * kAlphaPrime + b, 1e-15) << i;
    }
  }
  EXPECT_GT(dropped, 0);
}

TEST(AlphaDropout, KeepsMeanZeroAndVarianceOneOfAStandardNormal) {
  Tensor x = hpa::test::randn({100000}, DType::f64, 6);
  Generator gen(9);
  const auto y = alpha_dropout(x, 0.3, true, &gen).to_vector<double>();
  // Standard deviations of the estimates over 1e5 samples: ~0.003 (mean), ~0.006 (variance).
  EXPECT_NEAR(mean_of(y), 0.0, 0.02);
  EXPECT_NEAR(variance_of(y), 1.0, 0.03);
}

// ---- finite differences in double, and float against double ---------------------------

namespace {

// Each evaluation builds its own Generator from the same seed, so every finite-difference
// step sees the mask of the analytic pass.
test::Fn with_fresh_generator(bool alpha, double p, uint64_t seed) {
  return [=](const std::vector<Tensor>& in) {
    Generator gen(seed);
    return alpha ? alpha_dropout(in[0], p, true, &gen) : dropout(in[0], p, true, &gen);
  };
}

}  // namespace

TEST(DropoutGrad, FiniteDifferencesInDouble) {
  for (bool alpha : {false, true}) {
    for (double p : {0.25, 0.6}) {
      SCOPED_TRACE(testing::Message() << (alpha ? "alpha_dropout" : "dropout") << " p " << p);
      EXPECT_TRUE(gradcheck(with_fresh_generator(alpha, p, 12),
                            {requiring_grad(hpa::test::randn({2, 3, 4, 5}, DType::f64, 7))}));
      EXPECT_TRUE(gradcheck(with_fresh_generator(alpha, p, 13),
                            {requiring_grad(hpa::test::randn({1, 1, 1, 1}, DType::f64, 8))}));
    }
  }
}

TEST(DropoutGrad, FloatMatchesDouble) {
  for (bool alpha : {false, true}) {
    SCOPED_TRACE(alpha ? "alpha_dropout" : "dropout");
    EXPECT_TRUE(float_matches_double(with_fresh_generator(alpha, 0.35, 14),
                                     {requiring_grad(hpa::test::randn({3, 4, 9, 7}, DType::f64, 9))}));
  }
}

// ---- argument errors ---------------------------------------------------------------------

TEST(DropoutErrors, NameTheOpAndTheShapes) {
  Tensor x = Tensor::zeros({2, 3});
  EXPECT_HPA_ERROR(dropout(x, -0.1, true), "dropout", "[0, 1]", "-0.1", "f32[2, 3]");
  EXPECT_HPA_ERROR(dropout(x, 1.5, true), "dropout", "[0, 1]", "f32[2, 3]");
  EXPECT_HPA_ERROR(dropout(x, std::numeric_limits<double>::quiet_NaN(), true), "dropout", "[0, 1]");
  EXPECT_HPA_ERROR(alpha_dropout(x, 1.0, true), "alpha_dropout", "[0, 1)", "f32[2, 3]");
  EXPECT_HPA_ERROR(alpha_dropout(x, -1.0, false), "alpha_dropout", "[0, 1)");
  EXPECT_HPA_ERROR(dropout(Tensor::zeros({4}, DType::i32), 0.5, true), "dropout", "i32[4]");
  EXPECT_HPA_ERROR(alpha_dropout(Tensor(), 0.5, true), "alpha_dropout", "undefined");
}
