// Pooling ops: hand-computed max/avg pools (ceil_mode, count_include_pad), the max-tie
// rule in forward and backward, the global pools and ACP, finite-difference gradients in
// double, float-vs-double agreement, edge shapes and argument errors.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "tensor/autograd.h"
#include "tensor/ops/pool.h"
#include "tensor/tensor.h"
#include "tests/test_util.h"

using namespace hpa;
using hpa::test::float_matches_double;
using hpa::test::gradcheck;
using hpa::test::separated_values;

namespace {

Tensor f64(const std::vector<double>& v, const Shape& s) { return Tensor::from_vector(v, s); }

// The 4x4 plane used by the hand-computed cases.
const std::vector<double> kPlane4x4 = {1, 3, 2, 0,  //
                                       4, 2, 9, 1,  //
                                       0, 8, 5, 7,  //
                                       6, 1, 3, 2};

Pool2dOptions options(int kernel, int stride, int pad, bool ceil_mode, bool count_include_pad) {
  Pool2dOptions o = Pool2dOptions::square(kernel, stride, pad, ceil_mode);
  o.count_include_pad = count_include_pad;
  return o;
}

// Backward of y with an all-ones seed; returns x's gradient.
Tensor grad_of_sum(const std::function<Tensor(const Tensor&)>& f, const Tensor& x0) {
  Tensor x = x0.clone();
  x.set_requires_grad();
  Tensor y = f(x);
  y.backward(Tensor::ones(y.shape(), y.dtype()));
  return x.grad();
}

}  // namespace

TEST(MaxPool2d, HandComputed4x4) {
  Tensor x = f64(kPlane4x4, {1, 1, 4, 4});
  Tensor y = max_pool2d(x, Pool2dOptions::square(2, 2));
  EXPECT_EQ(y.shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(y.to_vector<double>(), (std::vector<double>{4, 9, 8, 7}));
  Tensor g = grad_of_sum([](const Tensor& t) { return max_pool2d(t, Pool2dOptions::square(2, 2)); }, x);
  EXPECT_EQ(g.to_vector<double>(), (std::vector<double>{0, 0, 0, 0,  //
                                                        1, 0, 1, 0,  //
                                                        0, 1, 0, 1,  //
                                                        0, 0, 0, 0}));
}

TEST(MaxPool2d, OverlappingWindowsAccumulateGradient) {
  // 3x3 windows with stride 1 over the 4x4 plane: the 9 at (1, 2) wins all four windows.
  Tensor x = f64(kPlane4x4, {1, 1, 4, 4});
  auto pool = [](const Tensor& t) { return max_pool2d(t, Pool2dOptions::square(3, 1)); };
  EXPECT_EQ(pool(x).to_vector<double>(), (std::vector<double>{9, 9, 9, 9}));
  std::vector<double> expected(16, 0.0);
  expected[6] = 4;
  EXPECT_EQ(grad_of_sum(pool, x).to_vector<double>(), expected);
}

TEST(MaxPool2d, CeilModeAddsPartialWindows) {
  Tensor x = Tensor::arange(25, DType::f64).reshape({1, 1, 5, 5});
  Tensor floor_y = max_pool2d(x, Pool2dOptions::square(2, 2, 0, false));
  Tensor ceil_y = max_pool2d(x, Pool2dOptions::square(2, 2, 0, true));
  EXPECT_EQ(floor_y.shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(floor_y.to_vector<double>(), (std::vector<double>{6, 8, 16, 18}));
  EXPECT_EQ(ceil_y.shape(), (Shape{1, 1, 3, 3}));
  EXPECT_EQ(ceil_y.to_vector<double>(), (std::vector<double>{6, 8, 9, 16, 18, 19, 21, 23, 24}));
}

TEST(MaxPool2d, CeilModeDropsAWindowStartingInTheRightPadding) {
  // in 4, kernel 2, stride 3, pad 1: the ceiling gives 3 windows, but the third would start
  // at 6 - 1 = 5 >= 4 (beyond the input): PyTorch keeps 2, as does floor mode.
  Tensor x = Tensor::arange(16, DType::f64).reshape({1, 1, 4, 4});
  const Tensor y = max_pool2d(x, Pool2dOptions::square(2, 3, 1, true));
  EXPECT_EQ(y.shape(), (Shape{1, 1, 2, 2}));
  // Windows rows/cols [-1, 1) and [2, 4).
  EXPECT_EQ(y.to_vector<double>(), (std::vector<double>{0, 3, 12, 15}));
  EXPECT_EQ(max_pool2d(x, Pool2dOptions::square(2, 3, 1, false)).shape(), (Shape{1, 1, 2, 2}));
}

TEST(MaxPool2d, TiesRouteToTheFirstMaximum) {
  // An all-equal plane pooled by one window: the whole gradient goes to element 0.
  Tensor x = Tensor::full({1, 1, 3, 3}, 2.0, DType::f64);
  auto whole = [](const Tensor& t) { return max_pool2d(t, Pool2dOptions::square(3, 3)); };
  std::vector<double> expected(9, 0.0);
  expected[0] = 1;
  EXPECT_EQ(grad_of_sum(whole, x).to_vector<double>(), expected);

  // Ties inside 2x2 windows of a 2x4 plane: each window picks its top-left element.
  Tensor x2 = Tensor::full({1, 1, 2, 4}, -1.0, DType::f32);
  Tensor g2 = grad_of_sum([](const Tensor& t) { return max_pool2d(t, Pool2dOptions::square(2, 2)); }, x2);
  EXPECT_EQ(g2.to_vector<float>(), (std::vector<float>{1, 0, 1, 0, 0, 0, 0, 0}));

  // Equal maxima at (0, 1) and (1, 0): the first in row-major order, (0, 1), wins.
  Tensor x3 = f64({0, 5, 5, 1}, {1, 1, 2, 2});
  Tensor g3 = grad_of_sum([](const Tensor& t) { return max_pool2d(t, Pool2dOptions::square(2, 2)); }, x3);
  EXPECT_EQ(g3.to_vector<double>(), (std::vector<double>{0, 1, 0, 0}));
}

TEST(MaxPool2d, NanPropagates) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Tensor x = f64({1, nan, 3, 2}, {1, 1, 2, 2});
  EXPECT_TRUE(std::isnan(max_pool2d(x, Pool2dOptions::square(2, 2)).item()));
  EXPECT_TRUE(std::isnan(global_max_pool2d(x).item()));
}

TEST(MaxPool2d, PaddingNeverWins) {
  // All-negative input with padding 1: implicit padding is -inf, not 0.
  Tensor x = Tensor::full({1, 1, 2, 2}, -3.0, DType::f64);
  Tensor y = max_pool2d(x, Pool2dOptions::square(2, 2, 1));
  EXPECT_EQ(y.shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(y.to_vector<double>(), (std::vector<double>{-3, -3, -3, -3}));
}

TEST(AvgPool2d, HandComputed4x4) {
  Tensor x = f64(kPlane4x4, {1, 1, 4, 4});
  EXPECT_EQ(avg_pool2d(x, Pool2dOptions::square(2, 2)).to_vector<double>(),
            (std::vector<double>{2.5, 3, 3.75, 4.25}));
  Tensor g = grad_of_sum([](const Tensor& t) { return avg_pool2d(t, Pool2dOptions::square(2, 2)); }, x);
  EXPECT_EQ(g.to_vector<double>(), std::vector<double>(16, 0.25));
}

TEST(AvgPool2d, CountIncludePadTrueVsFalse) {
  Tensor x = f64({1, 2, 3, 4}, {1, 1, 2, 2});
  // kernel 2, stride 1, pad 1: a 3x3 output whose corner windows hold one input element.
  Tensor with_pad = avg_pool2d(x, options(2, 1, 1, false, true));
  Tensor without_pad = avg_pool2d(x, options(2, 1, 1, false, false));
  EXPECT_ALL_CLOSE(with_pad, f64({0.25, 0.75, 0.5, 1.0, 2.5, 1.5, 0.75, 1.75, 1.0}, {1, 1, 3, 3}), 1e-15, 0);
  EXPECT_ALL_CLOSE(without_pad, f64({1, 1.5, 2, 2, 2.5, 3, 3, 3.5, 4}, {1, 1, 3, 3}), 1e-15, 0);
  // Backward divides by the same counts: x[0,0] sits in 4 windows, each of 4 (with pad) or
  // of 1, 2, 2, 4 elements (without).
  Tensor g_with =
      grad_of_sum([](const Tensor& t) { return avg_pool2d(t, options(2, 1, 1, false, true)); }, x);
  Tensor g_without =
      grad_of_sum([](const Tensor& t) { return avg_pool2d(t, options(2, 1, 1, false, false)); }, x);
  EXPECT_ALL_CLOSE(g_with, Tensor::full({1, 1, 2, 2}, 1.0, DType::f64), 1e-15, 0);
  EXPECT_ALL_CLOSE(g_without, Tensor::full({1, 1, 2, 2}, 1.0 + 0.5 + 0.5 + 0.25, DType::f64), 1e-15, 0);
}

TEST(AvgPool2d, CeilModeWindowsBeyondThePaddingAreNotCounted) {
  // 5x5, kernel 2, stride 2, ceil: the last column of windows covers one input column and
  // divides by 2 even with count_include_pad (the window is cut at input + padding).
  Tensor x = Tensor::arange(25, DType::f64).reshape({1, 1, 5, 5});
  Tensor y = avg_pool2d(x, options(2, 2, 0, true, true));
  EXPECT_EQ(y.shape(), (Shape{1, 1, 3, 3}));
  EXPECT_ALL_CLOSE(y, f64({3, 5, 6.5, 13, 15, 16.5, 20.5, 22.5, 24}, {1, 1, 3, 3}), 1e-15, 0);
}

TEST(GlobalPools, HandComputed) {
  // Two channels of a 2x2 plane; channel 1 has a tie at its maximum.
  Tensor x = f64({1, 4, 2, 3, /**/ 7, -1, 7, 0}, {1, 2, 2, 2});
  Tensor avg = global_avg_pool2d(x), max = global_max_pool2d(x), acp = adaptive_concat_pool2d(x);
  EXPECT_EQ(avg.shape(), (Shape{1, 2, 1, 1}));
  EXPECT_EQ(max.shape(), (Shape{1, 2, 1, 1}));
  EXPECT_EQ(acp.shape(), (Shape{1, 4, 1, 1}));
  EXPECT_EQ(avg.to_vector<double>(), (std::vector<double>{2.5, 3.25}));
  EXPECT_EQ(max.to_vector<double>(), (std::vector<double>{4, 7}));
  EXPECT_EQ(acp.to_vector<double>(), (std::vector<double>{2.5, 3.25, 4, 7}));

  // ACP backward with gradient (1, 2 | 10, 20): averages spread g/4, maxima route to the
  // first maximum (element 1 of channel 0, element 0 of channel 1), summed.
  Tensor xg = x.clone();
  xg.set_requires_grad();
  adaptive_concat_pool2d(xg).backward(f64({1, 2, 10, 20}, {1, 4, 1, 1}));
  EXPECT_EQ(xg.grad().to_vector<double>(),
            (std::vector<double>{0.25, 10.25, 0.25, 0.25, /**/ 20.5, 0.5, 0.5, 0.5}));
}

TEST(GlobalPools, AllEqualPlaneRoutesTheWholeMaxGradientToElementZero) {
  Tensor x = Tensor::full({2, 1, 3, 3}, 1.5, DType::f64);
  std::vector<double> expected(18, 0.0);
  expected[0] = expected[9] = 1;
  EXPECT_EQ(grad_of_sum(global_max_pool2d, x).to_vector<double>(), expected);
  // In ACP the max part adds to the average part's 1/9 everywhere.
  std::vector<double> acp_expected(18, 1.0 / 9);
  acp_expected[0] += 1;
  acp_expected[9] += 1;
  EXPECT_ALL_CLOSE(grad_of_sum(adaptive_concat_pool2d, x), f64(acp_expected, {2, 1, 3, 3}), 1e-15, 0);
}

TEST(GlobalPools, AcpIsAverageThenMaximum) {
  Tensor x = hpa::test::randn({3, 5, 7, 6}, DType::f32, 11);
  const auto acp = adaptive_concat_pool2d(x).to_vector<float>();
  const auto avg = global_avg_pool2d(x).to_vector<float>();
  const auto max = global_max_pool2d(x).to_vector<float>();
  for (int n = 0; n < 3; ++n) {
    for (int c = 0; c < 5; ++c) {
      EXPECT_EQ(acp[static_cast<size_t>(n * 10 + c)], avg[static_cast<size_t>(n * 5 + c)]);
      EXPECT_EQ(acp[static_cast<size_t>(n * 10 + 5 + c)], max[static_cast<size_t>(n * 5 + c)]);
    }
  }
}

// ---- finite differences in double, and float against double ---------------------------

namespace {

Tensor input(const Shape& s, uint64_t seed) {
  Tensor x = separated_values(s, DType::f64, seed);
  x.set_requires_grad();
  return x;
}

struct PoolCase {
  const char* what;
  std::function<Tensor(const Tensor&)> f;
};

std::vector<PoolCase> pool_cases() {
  return {
      {"max k2 s2", [](const Tensor& t) { return max_pool2d(t, Pool2dOptions::square(2, 2)); }},
      {"max k3 s2 p1 ceil",
       [](const Tensor& t) { return max_pool2d(t, Pool2dOptions::square(3, 2, 1, true)); }},
      {"max k3x2 s1x2 p1x0",
       [](const Tensor& t) {
         return max_pool2d(t, Pool2dOptions{3, 2, 1, 2, 1, 0});
       }},
      {"avg k3 s2 p1 ceil incl", [](const Tensor& t) { return avg_pool2d(t, options(3, 2, 1, true, true)); }},
      {"avg k3 s2 p1 ceil excl",
       [](const Tensor& t) { return avg_pool2d(t, options(3, 2, 1, true, false)); }},
      {"avg k2 s1 p1", [](const Tensor& t) { return avg_pool2d(t, options(2, 1, 1, false, true)); }},
      {"global avg", global_avg_pool2d},
      {"global max", global_max_pool2d},
      {"acp", adaptive_concat_pool2d},
  };
}

}  // namespace

TEST(PoolGrad, FiniteDifferencesInDouble) {
  for (const auto& c : pool_cases()) {
    SCOPED_TRACE(c.what);
    auto f = [&](const std::vector<Tensor>& in) { return c.f(in[0]); };
    EXPECT_TRUE(gradcheck(f, {input({2, 3, 5, 7}, 3)}));
    EXPECT_TRUE(gradcheck(f, {input({1, 1, 4, 4}, 4)}));
  }
}

TEST(PoolGrad, FloatMatchesDouble) {
  for (const auto& c : pool_cases()) {
    SCOPED_TRACE(c.what);
    auto f = [&](const std::vector<Tensor>& in) { return c.f(in[0]); };
    EXPECT_TRUE(float_matches_double(f, {input({2, 3, 9, 8}, 5)}));
  }
}

TEST(PoolGrad, Batch1And1x1Spatial) {
  Tensor x = input({1, 3, 1, 1}, 6);
  // 1x1 plane: every pool is the identity on the values (ACP duplicates them).
  EXPECT_EQ(max_pool2d(x, Pool2dOptions::square(1, 1)).to_vector<double>(), x.to_vector<double>());
  EXPECT_EQ(avg_pool2d(x, Pool2dOptions::square(1, 1)).to_vector<double>(), x.to_vector<double>());
  EXPECT_EQ(global_avg_pool2d(x).to_vector<double>(), x.to_vector<double>());
  EXPECT_EQ(global_max_pool2d(x).to_vector<double>(), x.to_vector<double>());
  auto v = x.to_vector<double>();
  auto acp_expected = v;
  acp_expected.insert(acp_expected.end(), v.begin(), v.end());
  EXPECT_EQ(adaptive_concat_pool2d(x).to_vector<double>(), acp_expected);
  // A 1x1 input with kernel 2, pad 1 and ceil: one window, the padding never wins.
  EXPECT_EQ(max_pool2d(x, Pool2dOptions::square(2, 2, 1, true)).shape(), (Shape{1, 3, 1, 1}));
  // The cases whose windows fit a 1x1 plane.
  for (const auto& c : pool_cases()) {
    const std::string what = c.what;
    if (what != "avg k2 s1 p1" && what.rfind("global", 0) != 0 && what != "acp") continue;
    SCOPED_TRACE(what);
    auto f = [&](const std::vector<Tensor>& in) { return c.f(in[0]); };
    EXPECT_TRUE(gradcheck(f, {input({1, 2, 1, 1}, 8)}));
  }
}

TEST(PoolGrad, EmptyBatchGivesEmptyOutput) {
  Tensor x = Tensor::zeros({0, 3, 4, 4});
  EXPECT_EQ(max_pool2d(x, Pool2dOptions::square(2, 2)).shape(), (Shape{0, 3, 2, 2}));
  EXPECT_EQ(avg_pool2d(x, Pool2dOptions::square(2, 2)).shape(), (Shape{0, 3, 2, 2}));
  EXPECT_EQ(adaptive_concat_pool2d(x).shape(), (Shape{0, 6, 1, 1}));
}

// ---- argument errors ---------------------------------------------------------------------

TEST(PoolErrors, NameTheOpAndTheShapes) {
  Tensor x = Tensor::zeros({2, 3, 4, 4});
  EXPECT_HPA_ERROR(max_pool2d(Tensor::zeros({3, 4, 4}), Pool2dOptions::square(2, 2)), "max_pool2d", "4-D",
                   "f32[3, 4, 4]");
  EXPECT_HPA_ERROR(avg_pool2d(Tensor::zeros({2, 3, 4, 4}, DType::i32), Pool2dOptions::square(2, 2)),
                   "avg_pool2d", "i32[2, 3, 4, 4]");
  EXPECT_HPA_ERROR(max_pool2d(x, Pool2dOptions::square(3, 1, 2)), "max_pool2d", "at most half", "pad 2x2",
                   "f32[2, 3, 4, 4]");
  EXPECT_HPA_ERROR(avg_pool2d(x, Pool2dOptions::square(0, 1)), "avg_pool2d", "kernel size must be positive");
  EXPECT_HPA_ERROR(max_pool2d(x, Pool2dOptions::square(2, 0)), "max_pool2d", "stride must be positive");
  EXPECT_HPA_ERROR(max_pool2d(x, Pool2dOptions{2, 2, 2, 2, -1, 0}), "max_pool2d", "padding must be >= 0");
  EXPECT_HPA_ERROR(max_pool2d(x, Pool2dOptions::square(5, 1, 0)), "max_pool2d", "too small",
                   "f32[2, 3, 4, 4]", "kernel 5x5");
  EXPECT_HPA_ERROR(global_avg_pool2d(Tensor::zeros({2, 3, 0, 4})), "global_avg_pool2d", "[2, 3, 0, 4]");
  EXPECT_HPA_ERROR(global_max_pool2d(Tensor::zeros({2, 3})), "global_max_pool2d", "4-D", "[2, 3]");
  EXPECT_HPA_ERROR(adaptive_concat_pool2d(Tensor::zeros({2, 3, 4}, DType::f64)), "adaptive_concat_pool2d",
                   "f64[2, 3, 4]");
  EXPECT_HPA_ERROR(adaptive_concat_pool2d(Tensor()), "adaptive_concat_pool2d", "undefined");
}
