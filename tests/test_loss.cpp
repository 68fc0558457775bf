// The training objective: per-sample BCE and focal loss (values at hand-computed points,
// against the textbook formulas in long double, saturated logits, gamma = 0 == BCE,
// gradchecks, float vs double, argument errors), the hard sampler (order with ties,
// gradient routing, errors including NaN), and the E-loss effective-number weights.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/loss.h"
#include "tensor/autograd.h"
#include "tensor/ops/loss.h"
#include "tests/test_util.h"

using namespace hpa;
using hpa::test::all_close;
using hpa::test::float_matches_double;
using hpa::test::gradcheck;

namespace {

const double kLog2 = std::log(2.0);

Tensor from(const std::vector<double>& v, const Shape& shape) { return Tensor::from_vector(v, shape); }

// Targets mixing hard labels and soft values, from a fixed seed.
Tensor mixed_targets(const Shape& shape, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> v(static_cast<size_t>(shape.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = i % 3 == 0 ? 1.0 : i % 3 == 1 ? 0.0 : u(rng);
  return from(v, shape);
}

Tensor scaled_randn(const Shape& shape, double scale, uint64_t seed) {
  std::vector<double> v = hpa::test::randn(shape, DType::f64, seed).to_vector<double>();
  for (auto& e : v) e *= scale;
  return from(v, shape);
}

Tensor positive_weights(int64_t c, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.2, 3.0);
  std::vector<double> v(static_cast<size_t>(c));
  for (auto& x : v) x = u(rng);
  return from(v, {c});
}

// The textbook definitions, evaluated naively in long double: PyTorch's BCELoss on
// sigmoid(x), and torchvision's sigmoid_focal_loss without alpha; the derivative by the
// plain chain rule through p_t (a different arrangement from the kernel's bounded form).
struct Naive {
  long double loss, grad;
};
Naive naive_focal(long double x, long double y, long double gamma) {
  const long double p = 1.0L / (1.0L + expl(-x));
  const long double bce = -(y * logl(p) + (1.0L - y) * logl(1.0L - p));
  const long double dbce = p - y;
  const long double pt = p * y + (1.0L - p) * (1.0L - y);
  const long double dpt = p * (1.0L - p) * (2.0L * y - 1.0L);
  const long double mod = powl(1.0L - pt, gamma);
  const long double dmod = gamma == 0 ? 0.0L : -gamma * powl(1.0L - pt, gamma - 1.0L) * dpt;
  return {mod * bce, dmod * bce + mod * dbce};
}

// Runs `loss_fn` on x, y (and optional w) with a gradient and returns (loss, d sum(loss) / d x).
template <class F>
std::pair<std::vector<double>, std::vector<double>> loss_and_grad(F loss_fn, Tensor x, const Tensor& y) {
  x.set_requires_grad();
  Tensor l = loss_fn(x, y);
  l.backward(Tensor::ones(l.shape(), l.dtype()));
  return {hpa::test::as_doubles(l), hpa::test::as_doubles(x.grad())};
}

}  // namespace

// ---- per-element values ------------------------------------------------------------------

TEST(LossMath, BceAtHandComputedPoints) {
  using kernels::bce_with_logits_and_grad;
  for (double y : {0.0, 0.3, 1.0}) {
    EXPECT_DOUBLE_EQ(bce_with_logits_and_grad(0.0, y).loss, kLog2)
        << "BCE(0, y) = log 2 for any y, y = " << y;
    EXPECT_DOUBLE_EQ(bce_with_logits_and_grad(0.0, y).grad, 0.5 - y);
  }
  EXPECT_DOUBLE_EQ(bce_with_logits_and_grad(2.0, 1.0).loss, std::log1p(std::exp(-2.0)));
  EXPECT_DOUBLE_EQ(bce_with_logits_and_grad(2.0, 0.0).loss, 2.0 + std::log1p(std::exp(-2.0)));
  EXPECT_DOUBLE_EQ(bce_with_logits_and_grad(-3.0, 0.0).loss, std::log1p(std::exp(-3.0)));
  EXPECT_DOUBLE_EQ(bce_with_logits_and_grad(2.0, 1.0).grad, 1.0 / (1.0 + std::exp(2.0)) * -1.0);
  EXPECT_DOUBLE_EQ(bce_with_logits_and_grad(-3.0, 0.0).grad, 1.0 / (1.0 + std::exp(3.0)));
  // Soft target 0.25 at x = log 3 (p = 3/4): loss = -(0.25 log 0.75 + 0.75 log 0.25).
  EXPECT_NEAR(bce_with_logits_and_grad(std::log(3.0), 0.25).loss,
              -(0.25 * std::log(0.75) + 0.75 * std::log(0.25)), 1e-15);
  EXPECT_NEAR(bce_with_logits_and_grad(std::log(3.0), 0.25).grad, 0.5, 1e-15);
}

TEST(LossMath, FocalAtHandComputedPoints) {
  using kernels::focal_loss_and_grad;
  // x = 0: p = 1/2, so 1 - p_t = 1/2 for a hard target and the loss is (1/2)^gamma log 2.
  EXPECT_DOUBLE_EQ(focal_loss_and_grad(0.0, 1.0, 2.0).loss, 0.25 * kLog2);
  EXPECT_DOUBLE_EQ(focal_loss_and_grad(0.0, 0.0, 2.0).loss, 0.25 * kLog2);
  EXPECT_DOUBLE_EQ(focal_loss_and_grad(0.0, 1.0, 0.5).loss, std::sqrt(0.5) * kLog2);
  // d/dx [(1-p)^2 (-log p)] at p = 1/2: 2(1-p)(-p(1-p))(-log p) + (1-p)^2 (p - 1)
  //   = -(log 2)/4 - 1/8; by symmetry +(log 2)/4 + 1/8 for y = 0.
  EXPECT_NEAR(focal_loss_and_grad(0.0, 1.0, 2.0).grad, -kLog2 / 4 - 0.125, 1e-16);
  EXPECT_NEAR(focal_loss_and_grad(0.0, 0.0, 2.0).grad, kLog2 / 4 + 0.125, 1e-16);
  // x = log 3 (p = 3/4), y = 1, gamma = 2: loss = (1/4)^2 log(4/3);
  // grad = 2 (1/4)(-3/16) log(4/3) + (1/16)(-1/4).
  EXPECT_NEAR(focal_loss_and_grad(std::log(3.0), 1.0, 2.0).loss, std::log(4.0 / 3.0) / 16, 1e-16);
  EXPECT_NEAR(focal_loss_and_grad(std::log(3.0), 1.0, 2.0).grad, -3.0 / 32 * std::log(4.0 / 3.0) - 1.0 / 64,
              1e-16);
  // Soft target y = 1/2: p_t = 1/2 whatever p, so the modulating factor is (1/2)^gamma
  // and its derivative vanishes.
  EXPECT_NEAR(focal_loss_and_grad(1.5, 0.5, 2.0).loss,
              0.25 * kernels::bce_with_logits_and_grad(1.5, 0.5).loss, 1e-16);
  EXPECT_NEAR(focal_loss_and_grad(1.5, 0.5, 2.0).grad,
              0.25 * kernels::bce_with_logits_and_grad(1.5, 0.5).grad, 1e-16);
}

TEST(LossMath, MatchesNaiveLongDoubleFormulas) {
  int checked = 0;
  for (double x = -15.0; x <= 15.0; x += 0.375) {
    for (double y : {0.0, 0.25, 0.5, 0.9, 1.0}) {
      for (double gamma : {0.0, 0.5, 1.0, 2.0, 3.5}) {
        const Naive ref = naive_focal(x, y, gamma);
        const auto d = kernels::focal_loss_and_grad<double>(x, y, gamma);
        const double rl = static_cast<double>(ref.loss), rg = static_cast<double>(ref.grad);
        EXPECT_NEAR(d.loss, rl, 1e-15 + 1e-12 * std::abs(rl))
            << "x " << x << " y " << y << " gamma " << gamma;
        EXPECT_NEAR(d.grad, rg, 1e-15 + 1e-12 * std::abs(rg))
            << "x " << x << " y " << y << " gamma " << gamma;
        const auto f = kernels::focal_loss_and_grad<float>(static_cast<float>(x), static_cast<float>(y),
                                                           static_cast<float>(gamma));
        EXPECT_NEAR(f.loss, rl, 2e-6 + 2e-5 * std::abs(rl))
            << "float, x " << x << " y " << y << " gamma " << gamma;
        EXPECT_NEAR(f.grad, rg, 2e-6 + 2e-5 * std::abs(rg))
            << "float, x " << x << " y " << y << " gamma " << gamma;
        if (gamma == 0) {
          const auto b = kernels::bce_with_logits_and_grad<double>(x, y);
          EXPECT_NEAR(b.loss, rl, 1e-15 + 1e-12 * std::abs(rl));
          EXPECT_NEAR(b.grad, rg, 1e-15 + 1e-12 * std::abs(rg));
        }
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, 81 * 5 * 5);
}

TEST(LossMath, SaturatedLogitsKeepPrecision) {
  using kernels::bce_with_logits_and_grad;
  using kernels::focal_loss_and_grad;
  // The small side of a saturated sigmoid keeps its relative precision: for y = 1 the
  // gradient is -(1 - p) = -exp(-x)/(1+exp(-x)), not a rounded-away p - 1 = 0.
  EXPECT_NEAR(bce_with_logits_and_grad(40.0, 1.0).grad, -std::exp(-40.0), 1e-14 * std::exp(-40.0));
  EXPECT_NEAR(bce_with_logits_and_grad(100.0, 1.0).grad, -std::exp(-100.0), 1e-14 * std::exp(-100.0));
  EXPECT_NEAR(bce_with_logits_and_grad(100.0, 1.0).loss, std::exp(-100.0), 1e-14 * std::exp(-100.0));
  EXPECT_NEAR(bce_with_logits_and_grad(-40.0f, 0.0f).grad, std::exp(-40.0), 1e-6 * std::exp(-40.0));
  EXPECT_EQ(bce_with_logits_and_grad(1000.0, 0.0).loss, 1000.0);
  EXPECT_EQ(bce_with_logits_and_grad(-1000.0, 1.0).loss, 1000.0);
  EXPECT_EQ(bce_with_logits_and_grad(1000.0f, 0.3f).loss, 700.0f);
  EXPECT_EQ(bce_with_logits_and_grad(1000.0, 1.0).loss, 0.0);
  EXPECT_EQ(bce_with_logits_and_grad(1000.0, 0.0).grad, 1.0);
  EXPECT_EQ(bce_with_logits_and_grad(-1000.0, 1.0).grad, -1.0);
  // Focal, wrong and confident: (1 - p_t) = 1, the loss is the BCE and the gradient -1.
  EXPECT_EQ(focal_loss_and_grad(-1000.0, 1.0, 0.5).loss, 1000.0);
  EXPECT_EQ(focal_loss_and_grad(-1000.0, 1.0, 0.5).grad, -1.0);
  EXPECT_EQ(focal_loss_and_grad(1000.0f, 0.0f, 2.0f).grad, 1.0f);
  // Right and confident, gamma < 1 (where q^(gamma-1) alone would be infinite): 0, not NaN.
  EXPECT_EQ(focal_loss_and_grad(1000.0, 1.0, 0.5).loss, 0.0);
  EXPECT_EQ(focal_loss_and_grad(1000.0, 1.0, 0.5).grad, 0.0);
  EXPECT_EQ(focal_loss_and_grad(-1000.0f, 0.0f, 0.5f).grad, 0.0f);
  // y = 1, x = 30, gamma = 0.5: loss = q^1.5 to first order with q = exp(-30), and
  // grad = -(1 + gamma) q^1.5 to first order.
  const double q = std::exp(-30.0);
  EXPECT_NEAR(focal_loss_and_grad(30.0, 1.0, 0.5).loss, std::pow(q, 1.5), 1e-10 * std::pow(q, 1.5));
  EXPECT_NEAR(focal_loss_and_grad(30.0, 1.0, 0.5).grad, -1.5 * std::pow(q, 1.5), 1e-10 * std::pow(q, 1.5));
}

// ---- the ops -----------------------------------------------------------------------------

TEST(PerSampleLoss, MeanOverClassesWithWeights) {
  // Row 0: all logits 0, so each term is log 2 and the loss is log 2 * mean(w).
  // Row 1: logits {2, -3, 0}, targets {1, 0, 0.5}.
  const Tensor x = from({0, 0, 0, 2, -3, 0}, {2, 3});
  const Tensor y = from({1, 0, 0.5, 1, 0, 0.5}, {2, 3});
  const Tensor w = from({0.5, 1, 2}, {3});
  const double l1 = std::log1p(std::exp(-2.0)), l2 = std::log1p(std::exp(-3.0));
  EXPECT_ALL_CLOSE(bce_with_logits_per_sample(x, y), from({kLog2, (l1 + l2 + kLog2) / 3}, {2}), 1e-15, 1e-14);
  EXPECT_ALL_CLOSE(bce_with_logits_per_sample(x, y, w),
                   from({kLog2 * 3.5 / 3, (0.5 * l1 + l2 + 2 * kLog2) / 3}, {2}), 1e-15, 1e-14);
  // Focal gamma = 2 on row 0 (p = 1/2): every (1 - p_t) is 1/2.
  EXPECT_NEAR(focal_loss_per_sample(x, y, 2.0, w).to_vector<double>()[0], 0.25 * kLog2 * 3.5 / 3, 1e-15);
  // The gradient: (w_c / C) (p - y), scaled by the per-sample seed.
  Tensor xg = x.clone().set_requires_grad();
  bce_with_logits_per_sample(xg, y, w).backward(from({2.0, -1.0}, {2}));
  const double s2 = 1 / (1 + std::exp(-2.0)), s3 = 1 / (1 + std::exp(3.0));
  EXPECT_ALL_CLOSE(
      xg.grad(),
      from({2 * 0.5 / 3 * -0.5, 2 * 1 / 3.0 * 0.5, 0, -1 * 0.5 / 3 * (s2 - 1), -1 * 1 / 3.0 * s3, 0}, {2, 3}),
      1e-15, 1e-14);
  EXPECT_STREQ(bce_with_logits_per_sample(xg, y).grad_fn()->name(), "bce_with_logits_per_sample");
  EXPECT_STREQ(focal_loss_per_sample(xg, y, 1.0).grad_fn()->name(), "focal_loss_per_sample");
}

TEST(PerSampleLoss, FiniteAtHugeLogits) {
  for (DType dt : {DType::f32, DType::f64}) {
    const Tensor x =
        from({100, -100, 1000, -1000, 100, -100, 1000, -1000, 100, -100, 1000, -1000}, {3, 4}).to(dt);
    const Tensor y = from({1, 1, 1, 1, 0, 0, 0, 0, 0.3, 0.3, 0.3, 0.3}, {3, 4}).to(dt);
    for (double gamma : {-1.0, 0.0, 0.5, 2.0}) {  // -1: BCE
      auto fn = [gamma](const Tensor& a, const Tensor& b) {
        return gamma < 0 ? bce_with_logits_per_sample(a, b) : focal_loss_per_sample(a, b, gamma);
      };
      const auto [loss, grad] = loss_and_grad(fn, x.clone(), y);
      for (double v : loss) EXPECT_TRUE(std::isfinite(v)) << dtype_name(dt) << " gamma " << gamma;
      for (double v : grad) EXPECT_TRUE(std::isfinite(v)) << dtype_name(dt) << " gamma " << gamma;
      // Sample 0 is right on 100 / 1000 and wrong on -100 / -1000: about 1100 / 4 for BCE.
      if (gamma <= 0) {
        EXPECT_NEAR(loss[0], 1100.0 / 4, 1e-3);
        EXPECT_NEAR(grad[3], -0.25, 1e-7);
      }
    }
  }
}

TEST(PerSampleLoss, GammaZeroIsExactlyBce) {
  for (DType dt : {DType::f32, DType::f64}) {
    const Tensor x = (hpa::test::randn({6, 7}, DType::f64, 11).to(dt));
    const Tensor y = mixed_targets({6, 7}, 12).to(dt);
    const Tensor w = positive_weights(7, 13).to(dt);
    for (const Tensor& weights : {Tensor(), w}) {
      auto bce = [&](const Tensor& a, const Tensor& b) { return bce_with_logits_per_sample(a, b, weights); };
      auto focal0 = [&](const Tensor& a, const Tensor& b) {
        return focal_loss_per_sample(a, b, 0.0, weights);
      };
      const auto rb = loss_and_grad(bce, x.clone(), y);
      const auto rf = loss_and_grad(focal0, x.clone(), y);
      EXPECT_EQ(rb.first, rf.first) << dtype_name(dt);
      EXPECT_EQ(rb.second, rf.second) << dtype_name(dt);
    }
  }
}

TEST(PerSampleLoss, GradcheckBce) {
  for (bool weighted : {false, true}) {
    const Tensor x = (hpa::test::randn({3, 5}, DType::f64, 21)).set_requires_grad();
    const Tensor y = mixed_targets({3, 5}, 22);
    const Tensor w = weighted ? positive_weights(5, 23) : Tensor();
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& in) { return bce_with_logits_per_sample(in[0], y, w); }, {x}))
        << "weighted " << weighted;
  }
}

TEST(PerSampleLoss, GradcheckFocal) {
  for (double gamma : {0.0, 0.5, 2.0}) {
    for (bool weighted : {false, true}) {
      // Spread 2.5x wider than unit normal to reach into the saturating region too.
      const Tensor x = scaled_randn({3, 5}, 2.5, 31).set_requires_grad();
      const Tensor y = mixed_targets({3, 5}, 32);
      const Tensor w = weighted ? positive_weights(5, 33) : Tensor();
      EXPECT_TRUE(gradcheck(
          [&](const std::vector<Tensor>& in) { return focal_loss_per_sample(in[0], y, gamma, w); }, {x}))
          << "gamma " << gamma << " weighted " << weighted;
    }
  }
}

TEST(PerSampleLoss, GradcheckEdgeShapes) {
  for (Shape s : {Shape{1, 1}, Shape{1, 28}, Shape{5, 1}}) {
    const Tensor x = hpa::test::randn(s, DType::f64, 41).set_requires_grad();
    const Tensor y = mixed_targets(s, 42);
    EXPECT_TRUE(
        gradcheck([&](const std::vector<Tensor>& in) { return focal_loss_per_sample(in[0], y, 2.0); }, {x}))
        << s;
    EXPECT_TRUE(
        gradcheck([&](const std::vector<Tensor>& in) { return bce_with_logits_per_sample(in[0], y); }, {x}))
        << s;
  }
}

TEST(PerSampleLoss, FloatMatchesDouble) {
  const Tensor x = hpa::test::randn({5, 7}, DType::f64, 51).set_requires_grad();
  const Tensor y = mixed_targets({5, 7}, 52);
  const Tensor w = positive_weights(7, 53);
  auto cast = [](const Tensor& t, const Tensor& like) { return t.to(like.dtype()); };
  EXPECT_TRUE(float_matches_double(
      [&](const std::vector<Tensor>& in) {
        return bce_with_logits_per_sample(in[0], cast(y, in[0]), cast(w, in[0]));
      },
      {x}));
  for (double gamma : {0.5, 2.0}) {
    EXPECT_TRUE(float_matches_double(
        [&](const std::vector<Tensor>& in) {
          return focal_loss_per_sample(in[0], cast(y, in[0]), gamma, cast(w, in[0]));
        },
        {x}))
        << "gamma " << gamma;
  }
}

TEST(PerSampleLoss, OnlyLogitsAreDifferentiated) {
  Tensor x = hpa::test::randn({2, 3}, DType::f64, 61).set_requires_grad();
  Tensor y = mixed_targets({2, 3}, 62).set_requires_grad();
  Tensor w = positive_weights(3, 63).set_requires_grad();
  focal_loss_per_sample(x, y, 2.0, w).backward(Tensor::ones({2}, DType::f64));
  EXPECT_TRUE(x.grad().defined());
  EXPECT_FALSE(y.grad().defined());
  EXPECT_FALSE(w.grad().defined());
  // Targets alone needing a gradient record nothing.
  EXPECT_FALSE(bce_with_logits_per_sample(x.detach(), y).requires_grad());
  NoGradGuard no_grad;
  EXPECT_FALSE(bce_with_logits_per_sample(x, y).requires_grad());
}

TEST(PerSampleLoss, EmptyBatch) {
  const Tensor l =
      focal_loss_per_sample(Tensor::zeros({0, 4}, DType::f64), Tensor::zeros({0, 4}, DType::f64), 2.0);
  EXPECT_EQ(l.shape(), (Shape{0}));
}

TEST(PerSampleLoss, BadArguments) {
  const Tensor x = Tensor::zeros({2, 3});
  const Tensor y = Tensor::zeros({2, 3});
  const char* bce = "bce_with_logits_per_sample";
  const char* focal = "focal_loss_per_sample";
  EXPECT_HPA_ERROR(bce_with_logits_per_sample(Tensor::zeros({6}), Tensor::zeros({6})), bce, "2-D", "f32[6]");
  EXPECT_HPA_ERROR(focal_loss_per_sample(Tensor::zeros({2, 3, 1}), Tensor::zeros({2, 3, 1}), 2.0), focal,
                   "2-D", "f32[2, 3, 1]");
  EXPECT_HPA_ERROR(bce_with_logits_per_sample(x, Tensor::zeros({3, 2})), bce, "shape mismatch", "f32[2, 3]",
                   "f32[3, 2]");
  EXPECT_HPA_ERROR(bce_with_logits_per_sample(x, Tensor::zeros({2, 3}, DType::f64)), bce, "dtype mismatch",
                   "f64[2, 3]");
  EXPECT_HPA_ERROR(bce_with_logits_per_sample(Tensor::zeros({2, 3}, DType::i32), y), bce, "f32 or f64",
                   "i32[2, 3]");
  EXPECT_HPA_ERROR(bce_with_logits_per_sample(x, Tensor()), bce, "'targets'", "undefined");
  EXPECT_HPA_ERROR(bce_with_logits_per_sample(Tensor::zeros({2, 0}), Tensor::zeros({2, 0})), bce,
                   "no classes", "f32[2, 0]");
  EXPECT_HPA_ERROR(bce_with_logits_per_sample(x, y, Tensor::ones({4})), bce, "class_weights", "[3]",
                   "f32[4]");
  EXPECT_HPA_ERROR(bce_with_logits_per_sample(x, y, Tensor::ones({1, 3})), bce, "class_weights", "f32[1, 3]");
  EXPECT_HPA_ERROR(focal_loss_per_sample(x, y, 2.0, Tensor::ones({3}, DType::f64)), focal, "dtype mismatch",
                   "f64[3]");
  EXPECT_HPA_ERROR(focal_loss_per_sample(x, y, -0.5), focal, "gamma", "-0.5");
  EXPECT_HPA_ERROR(focal_loss_per_sample(x, y, std::nan("")), focal, "gamma");
  EXPECT_HPA_ERROR(focal_loss_per_sample(x, y, std::numeric_limits<double>::infinity()), focal, "gamma");
  EXPECT_HPA_ERROR(bce_with_logits_per_sample(x, from({0, 0, 0, 0, 1.5, 0}, {2, 3}).to(DType::f32)), bce,
                   "[0, 1]", "target[1, 1] = 1.5");
  EXPECT_HPA_ERROR(bce_with_logits_per_sample(x, from({0, 0, std::nan(""), 0, 0, 0}, {2, 3}).to(DType::f32)),
                   bce, "target[0, 2] = nan");
  EXPECT_HPA_ERROR(bce_with_logits_per_sample(x, from({0, 0, 0, 0, 0, -0.1}, {2, 3}).to(DType::f32)), bce,
                   "target[1, 2]");
  EXPECT_HPA_ERROR(focal_loss_per_sample(x, y, 1.0, from({1, -1, 1}, {3}).to(DType::f32)), focal,
                   "class_weights[1] = -1");
  EXPECT_HPA_ERROR(focal_loss_per_sample(
                       x, y, 1.0, from({1, 1, std::numeric_limits<double>::infinity()}, {3}).to(DType::f32)),
                   focal, "class_weights[2] = inf");
}

// ---- hard sampler ------------------------------------------------------------------------

TEST(HardSampler, ChoosesLargestWithTiesByLowerIndex) {
  const Tensor losses = from({0.5, 2.0, 1.0, 2.0, 0.1, 1.0}, {6});
  const HardSamples top4 = hard_sample_topk(losses, 4);
  EXPECT_EQ(top4.indices, (std::vector<int64_t>{1, 3, 2, 5}));
  EXPECT_EQ(top4.losses.to_vector<double>(), (std::vector<double>{2.0, 2.0, 1.0, 1.0}));
  // k = 3 cuts a tie: the lower index (2) wins over 5.
  EXPECT_EQ(hard_sample_topk(losses, 3).indices, (std::vector<int64_t>{1, 3, 2}));
  // k = N is the full order.
  const HardSamples all = hard_sample_topk(losses, 6);
  EXPECT_EQ(all.indices, (std::vector<int64_t>{1, 3, 2, 5, 0, 4}));
  EXPECT_EQ(all.losses.to_vector<double>(), (std::vector<double>{2.0, 2.0, 1.0, 1.0, 0.5, 0.1}));
  // Batch of one, float, and +inf ranks first.
  EXPECT_EQ(hard_sample_topk(Tensor::full({1}, 3.0), 1).indices, (std::vector<int64_t>{0}));
  const auto inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(hard_sample_topk(from({1, inf, -inf, 2}, {4}).to(DType::f32), 2).indices,
            (std::vector<int64_t>{1, 3}));
  // All equal: the first k indices, in order.
  EXPECT_EQ(hard_sample_topk(Tensor::zeros({5}), 3).indices, (std::vector<int64_t>{0, 1, 2}));
}

TEST(HardSampler, GradientReachesOnlyChosenSamples) {
  Tensor per_sample = from({0.5, 2.0, 1.0, 3.0, 0.1, 1.0}, {6}).set_requires_grad();
  const HardSamples top = hard_sample_topk(per_sample, 2);
  EXPECT_STREQ(top.losses.grad_fn()->name(), "hard_sample_topk");
  top.losses.backward(from({3.0, 5.0}, {2}));
  EXPECT_EQ(per_sample.grad().to_vector<double>(), (std::vector<double>{0, 5, 0, 3, 0, 0}));

  // Through the loss to the logits: rows of unchosen samples get exactly 0.
  const Tensor x = hpa::test::randn({6, 4}, DType::f64, 71);
  Tensor logits = x.clone().set_requires_grad();
  const Tensor y = mixed_targets({6, 4}, 72);
  const HardSamples hard = hard_sample_topk(bce_with_logits_per_sample(logits, y), 3);
  hard.losses.backward(Tensor::ones({3}, DType::f64));
  const auto g = logits.grad().to_vector<double>();
  const auto xv = x.to_vector<double>(), yv = y.to_vector<double>();
  for (int64_t n = 0; n < 6; ++n) {
    const bool chosen = std::find(hard.indices.begin(), hard.indices.end(), n) != hard.indices.end();
    for (int64_t c = 0; c < 4; ++c) {
      const size_t i = static_cast<size_t>(n * 4 + c);
      const double expected = chosen ? (1 / (1 + std::exp(-xv[i])) - yv[i]) / 4 : 0.0;
      EXPECT_NEAR(g[i], expected, 1e-15) << "sample " << n << " class " << c << (chosen ? " (chosen)" : "");
    }
  }
}

TEST(HardSampler, GradcheckAndFloatMatchesDouble) {
  const Tensor losses = hpa::test::separated_values({7}, DType::f64, 81, 0.1).set_requires_grad();
  for (int64_t k : {1, 4, 7}) {
    auto f = [k](const std::vector<Tensor>& in) { return hard_sample_topk(in[0], k).losses; };
    EXPECT_TRUE(gradcheck(f, {losses})) << "k " << k;
    EXPECT_TRUE(float_matches_double(f, {losses})) << "k " << k;
  }
}

TEST(HardSampler, BadArguments) {
  const Tensor losses = Tensor::ones({6});
  EXPECT_HPA_ERROR(hard_sample_topk(losses, 0), "hard_sample_topk", "k = 0", "f32[6]");
  EXPECT_HPA_ERROR(hard_sample_topk(losses, 7), "hard_sample_topk", "k = 7", "[1, N]");
  EXPECT_HPA_ERROR(hard_sample_topk(losses, -1), "hard_sample_topk", "k = -1");
  EXPECT_HPA_ERROR(hard_sample_topk(Tensor::ones({0}), 1), "hard_sample_topk", "f32[0]");
  EXPECT_HPA_ERROR(hard_sample_topk(Tensor::ones({2, 3}), 1), "hard_sample_topk", "1-D", "f32[2, 3]");
  EXPECT_HPA_ERROR(hard_sample_topk(Tensor::ones({6}, DType::i64), 1), "hard_sample_topk", "i64[6]");
  EXPECT_HPA_ERROR(hard_sample_topk(Tensor(), 1), "hard_sample_topk", "undefined");
  const Tensor with_nan = from({1.0, 2.0, 0.5, std::nan(""), 3.0, std::nan("")}, {6});
  EXPECT_HPA_ERROR(hard_sample_topk(with_nan, 2), "hard_sample_topk", "sample 3", "NaN");
  EXPECT_HPA_ERROR(hard_sample_topk(with_nan.to(DType::f32), 6), "hard_sample_topk", "sample 3", "NaN");
  // A NaN logit reaches the sampler as a NaN loss and is reported there, not sorted.
  const Tensor logits = from({0, 1, std::nan(""), 2}, {2, 2});
  EXPECT_HPA_ERROR(hard_sample_topk(bce_with_logits_per_sample(logits, Tensor::zeros({2, 2}, DType::f64)), 1),
                   "hard_sample_topk", "sample 1");
}

// ---- effective-number weights ------------------------------------------------------------

TEST(EffectiveNumberWeights, HandComputedAndNormalized) {
  // alpha = 1/2: 1/Q_1 = 1, 1/Q_2 = (1/2)/(3/4) = 2/3; scaled to sum 2: 6/5 and 4/5.
  const auto w = effective_number_weights({1, 2}, 0.5);
  ASSERT_EQ(w.size(), 2u);
  EXPECT_NEAR(w[0], 1.2, 1e-15);
  EXPECT_NEAR(w[1], 0.8, 1e-15);
  // One class: weight 1 whatever its count.
  EXPECT_NEAR(effective_number_weights({12345}, 0.99)[0], 1.0, 1e-15);
  // alpha close to 1: Q_7 / Q_1 = 1 + alpha + ... + alpha^6 must survive. A naive
  // 1 - alpha^7 is off by 2e-8 here (alpha^7 rounds near 1); -expm1(7 log alpha) by 1e-15.
  const double alpha = 1 - 1e-9;
  const auto near1 = effective_number_weights({1, 7}, alpha);
  long double q7 = 0;
  for (int k = 0; k < 7; ++k) q7 += powl(alpha, k);
  EXPECT_NEAR(near1[0] / near1[1], static_cast<double>(q7), 1e-13);
}

TEST(EffectiveNumberWeights, DecreasingInCountAndEmptyClassCountsAsOne) {
  std::vector<int64_t> counts;
  // Up to 40: beyond, 1 - 0.5^n rounds to 1 in double and neighbours tie.
  for (int64_t n = 0; n <= 40; ++n) counts.push_back(n);
  for (double alpha : {0.5, 0.9, 0.99, 0.999}) {
    const auto w = effective_number_weights(counts, alpha);
    EXPECT_NEAR(std::accumulate(w.begin(), w.end(), 0.0), static_cast<double>(counts.size()), 1e-12);
    EXPECT_EQ(w[0], w[1]) << "n = 0 is treated as n = 1, alpha " << alpha;
    for (size_t n = 2; n < w.size(); ++n) EXPECT_LT(w[n], w[n - 1]) << "n " << n << " alpha " << alpha;
    for (double v : w) EXPECT_TRUE(std::isfinite(v) && v > 0);
  }
}

TEST(EffectiveNumberWeights, HpaClassCountsOrderLikeInverseCounts) {
  // Counts of the 28 labels in the 31,072-image HPA train.csv, from
  // shared/hpa_classes.tsv of the project workspace (column train_count, class ids 0..27).
  const std::vector<int64_t> counts = {12885, 1254, 3621, 1561, 1858, 2513, 1008, 2822, 53,  45,
                                       28,    1093, 688,  537,  1066, 21,   530,  210,  902, 1482,
                                       172,   3777, 802,  2965, 322,  8228, 328,  11};
  ASSERT_EQ(counts.size(), 28u);
  const auto w = effective_number_weights(counts, 0.999);
  EXPECT_NEAR(std::accumulate(w.begin(), w.end(), 0.0), 28.0, 1e-12);
  std::vector<size_t> by_weight(28), by_inverse_count(28);
  std::iota(by_weight.begin(), by_weight.end(), size_t{0});
  std::iota(by_inverse_count.begin(), by_inverse_count.end(), size_t{0});
  std::sort(by_weight.begin(), by_weight.end(), [&](size_t a, size_t b) { return w[a] > w[b]; });
  std::sort(by_inverse_count.begin(), by_inverse_count.end(),
            [&](size_t a, size_t b) { return 1.0 / counts[a] > 1.0 / counts[b]; });
  EXPECT_EQ(by_weight, by_inverse_count);
  EXPECT_EQ(by_weight.front(), 27u);  // Rods & rings, 11 images
  EXPECT_EQ(by_weight.back(), 0u);    // Nucleoplasm, 12885 images
  // The ratio of two weights is the inverse ratio of the effective numbers.
  const long double q0 = (1 - powl(0.999L, 12885)) / 0.001L, q27 = (1 - powl(0.999L, 11)) / 0.001L;
  EXPECT_NEAR(w[27] / w[0], static_cast<double>(q0 / q27), 1e-9);
}

TEST(EffectiveNumberWeights, BadArguments) {
  for (double alpha : {0.0, 1.0, -0.5, 1.5, std::nan("")})
    EXPECT_HPA_ERROR(effective_number_weights({1, 2}, alpha), "effective_number_weights", "alpha");
  EXPECT_HPA_ERROR(effective_number_weights({3, -1}, 0.9), "effective_number_weights",
                   "class_counts[1] = -1");
  EXPECT_HPA_ERROR(effective_number_weights({}, 0.9), "effective_number_weights", "empty");
}
