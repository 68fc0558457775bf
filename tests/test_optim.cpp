// SGD update rule against hand computation, parameter groups, skipping parameters with no
// gradient, the scheduled rate (step(schedule), group scales, the step counter), and macro
// F1.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "optim/metrics.h"
#include "optim/schedule.h"
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

TEST(SGD, StepWithScheduleUsesTheRateAtTheStepCounterTimesTheGroupScale) {
  // Momentum 0 and no decay: each step moves w by exactly -lr * g, with g = 1.
  Tensor enc = Tensor::zeros({3}, DType::f64).set_requires_grad();
  Tensor head = Tensor::zeros({2}, DType::f64).set_requires_grad();
  kernels::SgdArgs plain;
  plain.lr = 123.0;  // must not be used under a schedule
  ParamGroup encoder{"encoder", {enc}, plain};
  encoder.lr_scale = 1.0 / 3.0;
  SGD sgd({encoder, ParamGroup{"head", {head}, plain}});
  // Cycles of 2 steps: rates 0.3, 0.15, then a restart at 0.3.
  const CosineCyclicSchedule schedule(0.3, 0.0, 2);
  double enc_w = 0, head_w = 0;
  for (int64_t t = 0; t < 3; ++t) {
    EXPECT_EQ(sgd.steps(), t);
    enc.set_grad(Tensor::ones({3}, DType::f64));
    head.set_grad(Tensor::ones({2}, DType::f64));
    sgd.step(schedule);
    const double lr = t == 1 ? 0.15 : 0.3;
    enc_w -= lr / 3.0;
    head_w -= lr;
    EXPECT_NEAR(enc.to_vector<double>()[2], enc_w, 1e-15) << "step " << t;
    EXPECT_NEAR(head.to_vector<double>()[1], head_w, 1e-15) << "step " << t;
  }
  EXPECT_EQ(sgd.steps(), 3);
  // A plain step uses args.lr and still counts.
  head.set_grad(Tensor::ones({2}, DType::f64));
  enc.zero_grad();
  sgd.step();
  EXPECT_NEAR(head.to_vector<double>()[0], head_w - 123.0, 1e-12);
  EXPECT_NEAR(enc.to_vector<double>()[0], enc_w, 1e-15);  // no gradient: untouched
  EXPECT_EQ(sgd.steps(), 4);
  // Resuming at step 1 gives the mid-cycle rate again.
  sgd.set_steps(1);
  head.set_grad(Tensor::ones({2}, DType::f64));
  const double before = head.to_vector<double>()[0];
  sgd.step(schedule);
  EXPECT_NEAR(head.to_vector<double>()[0], before - 0.15, 1e-15);
  EXPECT_EQ(sgd.steps(), 2);
  EXPECT_FALSE(sgd.device_step_counter(Device::cpu()).defined());
}

TEST(SGD, ScheduledStepMatchesTheFormulaWithMomentumAndNesterov) {
  // Same update as sgd_update_element with args.lr replaced by the schedule's rate.
  Tensor w = Tensor::from_vector<float>({0.5f, -1.5f, 2.0f, 0.0f, -0.25f}, {5}).set_requires_grad();
  kernels::SgdArgs a;
  a.momentum = 0.9;
  a.weight_decay = 1e-3;
  a.l1 = 1e-4;
  a.nesterov = true;
  ParamGroup group{"g", {w}, a};
  group.lr_scale = 0.5;
  SGD sgd({group});
  const CosineCyclicSchedule schedule(0.2, 0.02, 3, 2);
  std::vector<float> ref_w = w.to_vector<float>(), ref_v(5, 0.0f);
  for (int64_t t = 0; t < 6; ++t) {
    std::vector<float> g(5);
    for (size_t i = 0; i < g.size(); ++i)
      g[i] = 0.1f * static_cast<float>(i) - 0.2f + 0.05f * static_cast<float>(t);
    w.set_grad(Tensor::from_vector(g, {5}));
    sgd.step(schedule);
    kernels::SgdArgs at = a;
    at.lr = schedule.lr(t, 0.5);
    for (size_t i = 0; i < g.size(); ++i) kernels::sgd_update_element(ref_w[i], ref_v[i], g[i], at);
    const auto got = w.to_vector<float>();
    for (size_t i = 0; i < g.size(); ++i) EXPECT_EQ(got[i], ref_w[i]) << "step " << t << " element " << i;
  }
}

TEST(SGD, RejectsBadGroupScale) {
  Tensor a = Tensor::ones({2}).set_requires_grad();
  ParamGroup g{"enc", {a}, {}};
  g.lr_scale = -1.0;
  EXPECT_HPA_ERROR(SGD({g}), "enc", "lr_scale");
  g.lr_scale = std::nan("");
  EXPECT_HPA_ERROR(SGD({g}), "enc", "lr_scale");
  SGD ok({ParamGroup{"enc", {a}, {}}});
  EXPECT_HPA_ERROR(ok.set_steps(-1), "set_steps");
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
