// batch_norm2d: hand-computed training and eval outputs, the running-statistics update
// (biased variance to normalize, unbiased to track, PyTorch's momentum), finite-difference
// gradients in double through the batch statistics and through the eval affine map,
// float-vs-double agreement, edge shapes and argument errors.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "tensor/autograd.h"
#include "tensor/ops/norm.h"
#include "tensor/tensor.h"
#include "tests/test_util.h"

using namespace hpa;
using hpa::test::float_matches_double;
using hpa::test::gradcheck;

namespace {

Tensor f64(const std::vector<double>& v, const Shape& s) { return Tensor::from_vector(v, s); }

// [N=2, C=2, H=1, W=2]: channel 0 holds {1, 2, 3, 4} (mean 2.5, biased var 1.25,
// unbiased 5/3), channel 1 holds {10, 10, 10, 14} (mean 11, biased var 3, unbiased 4).
Tensor two_channel_input() { return f64({1, 2, 10, 10, 3, 4, 10, 14}, {2, 2, 1, 2}); }

Tensor requiring_grad(Tensor t) {
  t.set_requires_grad();
  return t;
}

}  // namespace

TEST(BatchNorm2d, TrainingForwardAndRunningStatsByHand) {
  const double eps = 1e-5;
  Tensor x = two_channel_input();
  Tensor gamma = f64({2, -1}, {2}), beta = f64({0.5, 3}, {2});
  Tensor running_mean = f64({0, 1}, {2}), running_var = f64({1, 2}, {2});
  BatchNormOptions o;
  o.training = true;
  o.momentum = 0.1;
  o.eps = eps;
  Tensor y = batch_norm2d(x, gamma, beta, running_mean, running_var, o);

  const double s0 = 2 / std::sqrt(1.25 + eps), s1 = -1 / std::sqrt(3 + eps);
  const std::vector<double> expected = {(1 - 2.5) * s0 + 0.5, (2 - 2.5) * s0 + 0.5, (10 - 11) * s1 + 3,
                                        (10 - 11) * s1 + 3,   (3 - 2.5) * s0 + 0.5, (4 - 2.5) * s0 + 0.5,
                                        (10 - 11) * s1 + 3,   (14 - 11) * s1 + 3};
  EXPECT_ALL_CLOSE(y, f64(expected, {2, 2, 1, 2}), 1e-14, 1e-14);
  // running = 0.9 * running + 0.1 * batch, with the unbiased variance.
  EXPECT_ALL_CLOSE(running_mean, f64({0.1 * 2.5, 0.9 * 1 + 0.1 * 11}, {2}), 1e-15, 1e-15);
  EXPECT_ALL_CLOSE(running_var, f64({0.9 * 1 + 0.1 * (5.0 / 3), 0.9 * 2 + 0.1 * 4}, {2}), 1e-15, 1e-15);
}

TEST(BatchNorm2d, MomentumOneCopiesTheBatchStatistics) {
  Tensor x = two_channel_input().to(DType::f32);
  Tensor running_mean = Tensor::zeros({2}), running_var = Tensor::ones({2});
  BatchNormOptions o;
  o.momentum = 1.0;
  batch_norm2d(x, Tensor(), Tensor(), running_mean, running_var, o);
  EXPECT_EQ(running_mean.to_vector<float>(), (std::vector<float>{2.5f, 11.0f}));
  EXPECT_ALL_CLOSE(running_var, Tensor::from_vector<float>({5.0f / 3, 4.0f}, {2}), 1e-7, 1e-6);
}

TEST(BatchNorm2d, WithoutAffineNormalizesToZeroMeanUnitVariance) {
  Tensor x = hpa::test::randn({4, 3, 5, 6}, DType::f64, 21);
  Tensor y = batch_norm2d(x, Tensor(), Tensor(), Tensor(), Tensor(), {true, 0.1, 0.0});
  const auto v = y.to_vector<double>();
  for (int c = 0; c < 3; ++c) {
    double sum = 0, squares = 0;
    for (int n = 0; n < 4; ++n)
      for (int i = 0; i < 30; ++i) {
        const double e = v[static_cast<size_t>((n * 3 + c) * 30 + i)];
        sum += e;
        squares += e * e;
      }
    EXPECT_NEAR(sum / 120, 0.0, 1e-14);
    EXPECT_NEAR(squares / 120, 1.0, 1e-13);
  }
}

TEST(BatchNorm2d, EvalUsesTheRunningStatisticsAndLeavesThemAlone) {
  const double eps = 1e-3;
  Tensor x = two_channel_input();
  Tensor gamma = f64({2, -1}, {2}), beta = f64({0.5, 3}, {2});
  Tensor running_mean = f64({1, 9}, {2}), running_var = f64({4, 0.25}, {2});
  BatchNormOptions o;
  o.training = false;
  o.eps = eps;
  Tensor y = batch_norm2d(x, gamma, beta, running_mean, running_var, o);
  const double s0 = 2 / std::sqrt(4 + eps), s1 = -1 / std::sqrt(0.25 + eps);
  const std::vector<double> expected = {(1 - 1) * s0 + 0.5, (2 - 1) * s0 + 0.5, (10 - 9) * s1 + 3,
                                        (10 - 9) * s1 + 3,  (3 - 1) * s0 + 0.5, (4 - 1) * s0 + 0.5,
                                        (10 - 9) * s1 + 3,  (14 - 9) * s1 + 3};
  EXPECT_ALL_CLOSE(y, f64(expected, {2, 2, 1, 2}), 1e-14, 1e-14);
  EXPECT_EQ(running_mean.to_vector<double>(), (std::vector<double>{1, 9}));
  EXPECT_EQ(running_var.to_vector<double>(), (std::vector<double>{4, 0.25}));

  // Training on the same input normalizes with the batch statistics instead.
  o.training = true;
  Tensor y_train = batch_norm2d(x, gamma, beta, running_mean.clone(), running_var.clone(), o);
  EXPECT_FALSE(hpa::test::all_close(y_train, y, 1e-3, 0));
}

TEST(BatchNorm2d, EvalBackwardIsTheAffineMap) {
  Tensor x = requiring_grad(two_channel_input());
  Tensor gamma = requiring_grad(f64({2, -1}, {2})), beta = requiring_grad(f64({0.5, 3}, {2}));
  Tensor running_mean = f64({1, 9}, {2}), running_var = f64({4, 0.25}, {2});
  BatchNormOptions o;
  o.training = false;
  o.eps = 0;
  Tensor y = batch_norm2d(x, gamma, beta, running_mean, running_var, o);
  y.backward(Tensor::ones(y.shape(), DType::f64));
  // dx = gamma / sqrt(var): 2 / 2 = 1 on channel 0, -1 / 0.5 = -2 on channel 1.
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{1, 1, -2, -2, 1, 1, -2, -2}));
  // dgamma = sum of xhat: channel 0 (0 + 1 + 2 + 3) / 2, channel 1 (1 + 1 + 1 + 5) / 0.5.
  EXPECT_EQ(gamma.grad().to_vector<double>(), (std::vector<double>{3, 16}));
  EXPECT_EQ(beta.grad().to_vector<double>(), (std::vector<double>{4, 4}));
}

TEST(BatchNorm2d, TrainingInputGradientSumsToZeroPerChannel) {
  // Through the batch mean, a constant upstream gradient cancels exactly.
  Tensor x = requiring_grad(hpa::test::randn({3, 2, 4, 5}, DType::f64, 5));
  Tensor y = batch_norm2d(x, Tensor(), Tensor(), Tensor(), Tensor(), {});
  y.backward(Tensor::full(y.shape(), 0.7, DType::f64));
  for (double g : x.grad().to_vector<double>()) EXPECT_NEAR(g, 0.0, 1e-12);
}

// ---- finite differences in double, and float against double ---------------------------

namespace {

struct BatchNormCase {
  const char* what;
  bool training, affine;
};

const BatchNormCase kCases[] = {
    {"training affine", true, true},
    {"training plain", true, false},
    {"eval affine", false, true},
    {"eval plain", false, false},
};

// f(x, gamma, beta) with running buffers created inside each call: training updates them,
// and every finite-difference evaluation must start from the same state. Eval reads them.
test::Fn make_fn(const BatchNormCase& c) {
  return [c](const std::vector<Tensor>& in) {
    const int64_t channels = in[0].size(1);
    std::vector<double> mean, var;
    for (int64_t i = 0; i < channels; ++i) {
      mean.push_back(0.3 * static_cast<double>(i) - 0.2);
      var.push_back(0.5 + 0.25 * static_cast<double>(i));
    }
    Tensor rm = Tensor::from_vector(mean, {channels}).to(in[0].dtype());
    Tensor rv = Tensor::from_vector(var, {channels}).to(in[0].dtype());
    BatchNormOptions o;
    o.training = c.training;
    return batch_norm2d(in[0], c.affine ? in[1] : Tensor(), c.affine ? in[2] : Tensor(), rm, rv, o);
  };
}

// gamma and beta require a gradient only when the case uses them.
std::vector<Tensor> inputs(const Shape& x_shape, uint64_t seed, bool affine = true) {
  const int64_t channels = x_shape[1];
  std::vector<double> gamma, beta;
  for (int64_t i = 0; i < channels; ++i) {
    gamma.push_back(1.0 + 0.5 * static_cast<double>(i));
    beta.push_back(0.1 * static_cast<double>(i) - 0.3);
  }
  Tensor g = f64(gamma, {channels}), b = f64(beta, {channels});
  if (affine) {
    g.set_requires_grad();
    b.set_requires_grad();
  }
  return {requiring_grad(hpa::test::randn(x_shape, DType::f64, seed)), g, b};
}

}  // namespace

TEST(BatchNorm2dGrad, FiniteDifferencesInDouble) {
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.what);
    EXPECT_TRUE(gradcheck(make_fn(c), inputs({2, 3, 3, 2}, 1, c.affine)));
    // Odd shapes, batch 1 (training still has 5*3 values per channel).
    EXPECT_TRUE(gradcheck(make_fn(c), inputs({1, 2, 5, 3}, 2, c.affine)));
  }
}

TEST(BatchNorm2dGrad, FloatMatchesDouble) {
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.what);
    EXPECT_TRUE(float_matches_double(make_fn(c), inputs({4, 3, 7, 5}, 3, c.affine)));
  }
}

TEST(BatchNorm2dGrad, OnlyTheParametersNeedGradients) {
  auto in = inputs({2, 3, 2, 2}, 4);
  in[0] = in[0].detach();
  EXPECT_TRUE(gradcheck(make_fn(kCases[0]), in));
  EXPECT_FALSE(in[0].grad().defined());
}

TEST(BatchNorm2d, Batch1With1x1SpatialWorksInEvalAndFailsInTraining) {
  Tensor x = f64({1, 2, 3}, {1, 3, 1, 1});
  Tensor rm = f64({0, 0, 0}, {3}), rv = f64({1, 1, 1}, {3});
  BatchNormOptions eval;
  eval.training = false;
  eval.eps = 0;
  EXPECT_EQ(batch_norm2d(x, Tensor(), Tensor(), rm, rv, eval).to_vector<double>(),
            (std::vector<double>{1, 2, 3}));
  EXPECT_HPA_ERROR(batch_norm2d(x, Tensor(), Tensor(), rm, rv, {}), "batch_norm2d",
                   "expected more than 1 value per channel when training", "f64[1, 3, 1, 1]");
  EXPECT_EQ(rm.to_vector<double>(), (std::vector<double>{0, 0, 0}));  // untouched by the failed call
  // Two values per channel are enough in training.
  EXPECT_NO_THROW(batch_norm2d(f64({1, 2, 3, 4, 5, 6}, {2, 3, 1, 1}), Tensor(), Tensor(), rm, rv, {}));
}

// ---- argument errors ---------------------------------------------------------------------

TEST(BatchNorm2dErrors, NameTheOpAndTheShapes) {
  Tensor x = Tensor::zeros({2, 3, 4, 4});
  Tensor c3 = Tensor::zeros({3}), c4 = Tensor::zeros({4});
  EXPECT_HPA_ERROR(batch_norm2d(Tensor::zeros({2, 3, 4}), Tensor(), Tensor(), Tensor(), Tensor()),
                   "batch_norm2d", "4-D", "f32[2, 3, 4]");
  EXPECT_HPA_ERROR(
      batch_norm2d(Tensor::zeros({2, 3, 4, 4}, DType::i64), Tensor(), Tensor(), Tensor(), Tensor()),
      "batch_norm2d", "i64[2, 3, 4, 4]");
  EXPECT_HPA_ERROR(batch_norm2d(x, c4, Tensor(), Tensor(), Tensor()), "batch_norm2d", "'weight'", "[3]",
                   "f32[4]", "f32[2, 3, 4, 4]");
  EXPECT_HPA_ERROR(batch_norm2d(x, c3, Tensor::zeros({3, 1}), Tensor(), Tensor()), "batch_norm2d", "'bias'",
                   "f32[3, 1]");
  EXPECT_HPA_ERROR(batch_norm2d(x, Tensor::zeros({3}, DType::f64), Tensor(), Tensor(), Tensor()),
                   "batch_norm2d", "dtype mismatch", "f64[3]");
  EXPECT_HPA_ERROR(batch_norm2d(x, Tensor(), Tensor(), c3, c4), "batch_norm2d", "'running_var'", "f32[4]");
  EXPECT_HPA_ERROR(batch_norm2d(x, Tensor(), Tensor(), Tensor::zeros({3}, DType::f64), c3), "batch_norm2d",
                   "dtype mismatch", "f64[3]");
  EXPECT_HPA_ERROR(batch_norm2d(x, Tensor(), Tensor(), c3, Tensor()), "batch_norm2d", "both");
  BatchNormOptions eval;
  eval.training = false;
  EXPECT_HPA_ERROR(batch_norm2d(x, Tensor(), Tensor(), Tensor(), Tensor(), eval), "batch_norm2d",
                   "eval mode needs running_mean", "f32[2, 3, 4, 4]");
  EXPECT_HPA_ERROR(batch_norm2d(x, Tensor(), Tensor(), Tensor(), Tensor(), {true, 1.5, 1e-5}), "batch_norm2d",
                   "momentum");
  EXPECT_HPA_ERROR(batch_norm2d(x, Tensor(), Tensor(), Tensor(), Tensor(), {true, 0.1, -1.0}), "batch_norm2d",
                   "eps");
}
