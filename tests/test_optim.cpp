// SGD update rule against hand computation, parameter groups, skipping parameters with no
// gradient, and macro F1.
#include <gtest/gtest.h>

#include "optim/metrics.h"
#include "optim/sgd.h"
#include "tests/test_util.h"

using namespace hpa;

TEST(SGD, MomentumWeightDecayAndL1ByHand) {
  Tensor w = Tensor::from_vector<double>({1.0, -2.0, 0.0}, {3}).set_requires_grad();
  w.set_grad(Tensor::from_vector<double>({0.5, 0.5, 0.5}, {3}));
  kernels::SgdArgs a;
  a.lr = 0.1;
  a.momentum = 0.9;
  a.weight_decay = 0.01;
  a.l1 = 0.001;
  SGD sgd({ParamGroup{"g", {w}, a}});
  sgd.step();
  // step 1: g' = g + wd*w + l1*sign(w); v = g'; w -= lr*v
  const double g0 = 0.5 + 0.01 * 1.0 + 0.001, g1 = 0.5 + 0.01 * -2.0 - 0.001, g2 = 0.5;
  auto v = w.to_vector<double>();
  EXPECT_DOUBLE_EQ(v[0], 1.0 - 0.1 * g0);
  EXPECT_DOUBLE_EQ(v[1], -2.0 - 0.1 * g1);
  EXPECT_DOUBLE_EQ(v[2], 0.0 - 0.1 * g2);
  sgd.step();  // step 2: v = 0.9 v + g'(w1)
  const double w0 = 1.0 - 0.1 * g0;
  const double g0b = 0.5 + 0.01 * w0 + 0.001;
  EXPECT_DOUBLE_EQ(w.to_vector<double>()[0], w0 - 0.1 * (0.9 * g0 + g0b));
}

TEST(SGD, GroupsHaveTheirOwnRateAndSkipMissingGradients) {
  Tensor a = Tensor::ones({2}, DType::f32).set_requires_grad();
  Tensor b = Tensor::ones({2}, DType::f32).set_requires_grad();
  Tensor c = Tensor::ones({2}, DType::f32).set_requires_grad();
  a.set_grad(Tensor::ones({2}));
  b.set_grad(Tensor::ones({2}));
  kernels::SgdArgs enc, head;
  enc.lr = 0.25;
  head.lr = 1.0;
  SGD sgd({ParamGroup{"encoder", {a}, enc}, ParamGroup{"head", {b, c}, head}});
  sgd.step();
  EXPECT_FLOAT_EQ(a.to_vector<float>()[0], 0.75f);
  EXPECT_FLOAT_EQ(b.to_vector<float>()[0], 0.0f);
  EXPECT_FLOAT_EQ(c.to_vector<float>()[0], 1.0f);  // no gradient: untouched
  sgd.zero_grad();
  EXPECT_FALSE(a.grad().defined());
}

TEST(SGD, RejectsBadSettings) {
  Tensor a = Tensor::ones({2}).set_requires_grad();
  kernels::SgdArgs bad;
  bad.momentum = 1.5;
  EXPECT_HPA_ERROR(SGD({ParamGroup{"enc", {a}, bad}}), "enc", "momentum");
  EXPECT_HPA_ERROR(SGD({ParamGroup{"enc", {Tensor::ones({2})}, {}}}), "not a trainable leaf");
}

TEST(Metrics, MacroF1ByHand) {
  // 3 samples x 2 classes. Class 0: tp=1 fp=1 fn=0 -> F1 2/3. Class 1: tp=1 fp=0 fn=1 -> 2/3.
  const std::vector<float> scores = {0.9f, 0.1f, 0.8f, 0.7f, 0.2f, 0.3f};
  const std::vector<float> targets = {1, 1, 0, 1, 0, 0};
  EXPECT_NEAR(macro_f1(scores, targets, 3, 2, 0.5), 2.0 / 3.0, 1e-12);
  // A class never present and never predicted scores 0.
  EXPECT_NEAR(macro_f1({0.1f, 0.9f}, {0, 1}, 1, 2, 0.5), 0.5, 1e-12);
  EXPECT_HPA_ERROR(macro_f1({0.1f}, {0, 1}, 1, 2, 0.5), "count_per_class");
}
