// The cosine cyclic schedule (SGDR): values at cycle starts, ends and restarts against
// hand-computed cosines, cycle boundaries for cycle_mult = 2 and 3 against the closed form
// of SGDR's geometric cycles, group scales, the range of every value, step counts near
// the int64 limit, and argument errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "optim/schedule.h"
#include "tests/test_util.h"

using namespace hpa;

namespace {

const double kPi = 3.14159265358979323846;

// Reference for cycle_mult = m >= 2 from SGDR's closed form: cycle i starts at
// T_0 (m^i - 1) / (m - 1); the cycle of t is the largest such i with start <= t.
kernels::CyclePosition closed_form_position(int64_t t, int64_t t0, int64_t m) {
  kernels::CyclePosition pos;
  int64_t start = 0, length = t0;
  while (start + length <= t) {
    start += length;
    length *= m;
    ++pos.cycle;
  }
  pos.step = t - start;
  pos.length = length;
  return pos;
}

}  // namespace

TEST(CosineCyclicSchedule, HandComputedPointsOfOneCycle) {
  // lr_max 0.1, lr_min 0.001, cycles of 10 steps.
  const CosineCyclicSchedule s(0.1, 0.001, 10);
  EXPECT_DOUBLE_EQ(s.lr(0), 0.1);                  // cos(0) = 1: the top
  EXPECT_NEAR(s.lr(5), (0.1 + 0.001) / 2, 1e-16);  // cos(pi/2) = 0: the middle
  // cos(0.9 pi) = -cos(18 deg) = -sqrt(10 + 2 sqrt 5) / 4.
  const double cos_18deg = std::sqrt(10.0 + 2.0 * std::sqrt(5.0)) / 4.0;
  EXPECT_NEAR(s.lr(9), 0.001 + 0.099 * (1.0 - cos_18deg) / 2.0, 1e-16);  // the cycle's last step
  EXPECT_NEAR(s.lr(1), 0.001 + 0.099 * (1.0 + cos_18deg) / 2.0, 1e-16);
  EXPECT_DOUBLE_EQ(s.lr(10), 0.1);  // warm restart
  EXPECT_DOUBLE_EQ(s.lr(20), 0.1);
  EXPECT_DOUBLE_EQ(s.lr(19), s.lr(9));

  // Cycles of 6 steps: step 2 is pi/3 in, cos = 1/2, three quarters of the range up.
  const CosineCyclicSchedule six(0.3, 0.0, 6);
  EXPECT_NEAR(six.lr(2), 0.3 * 0.75, 1e-16);
  EXPECT_NEAR(six.lr(4), 0.3 * 0.25, 1e-16);  // cos(2 pi / 3) = -1/2
  EXPECT_NEAR(six.lr(3), 0.15, 1e-16);
}

TEST(CosineCyclicSchedule, DecreasesWithinACycleAndStaysInRange) {
  const CosineCyclicSchedule s(0.05, 0.002, 7, 2);
  for (int64_t t = 0; t < 300; ++t) {
    const double lr = s.lr(t);
    EXPECT_GE(lr, 0.002) << "step " << t;
    EXPECT_LE(lr, 0.05) << "step " << t;
    const auto pos = s.position(t);
    if (pos.step > 0) {
      EXPECT_LT(lr, s.lr(t - 1)) << "step " << t << " should be below step " << t - 1;
    } else {
      EXPECT_DOUBLE_EQ(lr, 0.05) << "restart at step " << t;
    }
  }
}

TEST(CosineCyclicSchedule, CycleMultTwoBoundaries) {
  // T_0 = 4, T_mult = 2: cycles [0, 4), [4, 12), [12, 28), [28, 60), [60, 124).
  const CosineCyclicSchedule s(1.0, 0.0, 4, 2);
  struct Expect {
    int64_t t, cycle, step, length;
  };
  for (const Expect& e :
       {Expect{0, 0, 0, 4}, Expect{3, 0, 3, 4}, Expect{4, 1, 0, 8}, Expect{11, 1, 7, 8}, Expect{12, 2, 0, 16},
        Expect{27, 2, 15, 16}, Expect{28, 3, 0, 32}, Expect{59, 3, 31, 32}, Expect{60, 4, 0, 64},
        Expect{123, 4, 63, 64}, Expect{124, 5, 0, 128}}) {
    const auto pos = s.position(e.t);
    EXPECT_EQ(pos.cycle, e.cycle) << "step " << e.t;
    EXPECT_EQ(pos.step, e.step) << "step " << e.t;
    EXPECT_EQ(pos.length, e.length) << "step " << e.t;
  }
  for (int64_t restart : {0, 4, 12, 28, 60, 124}) EXPECT_DOUBLE_EQ(s.lr(restart), 1.0) << "step " << restart;
  // Half way through each cycle the rate is half the range.
  for (int64_t half : {2, 8, 20, 44, 92}) EXPECT_NEAR(s.lr(half), 0.5, 1e-15) << "step " << half;
  // Last step of cycle 1 (7 of 8): (1 + cos(7 pi / 8)) / 2 = (1 - cos(pi / 8)) / 2.
  const double cos_pi_8 = std::sqrt(2.0 + std::sqrt(2.0)) / 2.0;
  EXPECT_NEAR(s.lr(11), (1.0 - cos_pi_8) / 2.0, 1e-15);
}

TEST(CosineCyclicSchedule, MatchesSgdrClosedFormForSeveralMultipliers) {
  for (int64_t m : {2, 3, 5}) {
    for (int64_t t0 : {1, 3, 10}) {
      const CosineCyclicSchedule s(0.2, 0.01, t0, m);
      for (int64_t t = 0; t < 2000; ++t) {
        const auto got = s.position(t), want = closed_form_position(t, t0, m);
        ASSERT_EQ(got.cycle, want.cycle) << "T_0 " << t0 << " T_mult " << m << " step " << t;
        ASSERT_EQ(got.step, want.step) << "T_0 " << t0 << " T_mult " << m << " step " << t;
        ASSERT_EQ(got.length, want.length) << "T_0 " << t0 << " T_mult " << m << " step " << t;
        const double lr =
            0.01 +
            0.19 * (1.0 + std::cos(kPi * static_cast<double>(want.step) / static_cast<double>(want.length))) /
                2.0;
        ASSERT_NEAR(s.lr(t), lr, 1e-15) << "T_0 " << t0 << " T_mult " << m << " step " << t;
      }
    }
  }
}

TEST(CosineCyclicSchedule, CycleMultOneIsPeriodic) {
  const CosineCyclicSchedule s(0.1, 0.0, 5);
  for (int64_t t = 0; t < 5; ++t)
    for (int64_t cycle : {1, 7, 1000000}) EXPECT_EQ(s.lr(t), s.lr(t + 5 * cycle)) << "step " << t;
  EXPECT_EQ(s.position(5000003).cycle, 1000000);
  EXPECT_EQ(s.position(5000003).step, 3);
}

TEST(CosineCyclicSchedule, GroupScaleScalesTheWholeRange) {
  // The paper's groups: encoder lr/3 (or lr/4), middle lr/2, head lr.
  const CosineCyclicSchedule s(0.03, 0.003, 8);
  for (int64_t t : {0, 3, 7, 8}) {
    EXPECT_NEAR(s.lr(t, 1.0 / 3.0), s.lr(t) / 3.0, 1e-17) << "step " << t;
    EXPECT_NEAR(s.lr(t, 0.25), s.lr(t) / 4.0, 1e-17) << "step " << t;
    EXPECT_NEAR(s.lr(t, 0.5), s.lr(t) / 2.0, 1e-17) << "step " << t;
  }
  EXPECT_DOUBLE_EQ(s.lr(0, 1.0 / 3.0), 0.01);
  EXPECT_EQ(s.lr(5, 0.0), 0.0);
}

TEST(CosineCyclicSchedule, HugeStepsNeitherOverflowNorHang) {
  const int64_t big = std::numeric_limits<int64_t>::max() - 1;
  for (int64_t m : {1, 2, 3, 1000}) {
    const CosineCyclicSchedule s(0.1, 0.01, 3, m);
    const double lr = s.lr(big);
    EXPECT_GE(lr, 0.01) << "T_mult " << m;
    EXPECT_LE(lr, 0.1) << "T_mult " << m;
    const auto pos = s.position(big);
    EXPECT_GE(pos.step, 0);
    EXPECT_LT(pos.step, pos.length);
  }
  // T_mult 2 from T_0 = 1: cycle i starts at 2^i - 1, so step 2^62 - 1 starts cycle 62.
  const CosineCyclicSchedule doubling(1.0, 0.0, 1, 2);
  const auto pos = doubling.position((int64_t{1} << 62) - 1);
  EXPECT_EQ(pos.cycle, 62);
  EXPECT_EQ(pos.step, 0);
  EXPECT_EQ(pos.length, int64_t{1} << 62);
}

TEST(CosineCyclicSchedule, RejectsBadArguments) {
  EXPECT_HPA_ERROR(CosineCyclicSchedule(0.1, 0.2, 10), "CosineCyclicSchedule", "lr_min");
  EXPECT_HPA_ERROR(CosineCyclicSchedule(0.1, -0.01, 10), "CosineCyclicSchedule", "lr_min");
  EXPECT_HPA_ERROR(CosineCyclicSchedule(std::nan(""), 0.0, 10), "CosineCyclicSchedule");
  EXPECT_HPA_ERROR(CosineCyclicSchedule(INFINITY, 0.0, 10), "CosineCyclicSchedule");
  EXPECT_HPA_ERROR(CosineCyclicSchedule(0.1, 0.0, 0), "CosineCyclicSchedule", "cycle_steps");
  EXPECT_HPA_ERROR(CosineCyclicSchedule(0.1, 0.0, 10, 0), "CosineCyclicSchedule", "cycle_mult");
  const CosineCyclicSchedule s(0.1, 0.0, 10);
  EXPECT_HPA_ERROR(s.lr(-1), "CosineCyclicSchedule", "step");
  EXPECT_HPA_ERROR(s.lr(0, -0.5), "CosineCyclicSchedule", "group_scale");
  EXPECT_HPA_ERROR(s.position(-3), "CosineCyclicSchedule", "step");
}
