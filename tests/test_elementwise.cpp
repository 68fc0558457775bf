// Elementwise ops: broadcasting against a naive index-by-index reference (every merged-dim
// and parallel path of the kernel), hand-computed values, gradchecks in double (broadcast
// operands included), float vs double, fan-out through the engine, and argument errors.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "tensor/autograd.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/reduce.h"
#include "tests/test_util.h"

using namespace hpa;
using test::float_matches_double;
using test::gradcheck;

namespace {

Tensor leaf(Tensor t) { return t.set_requires_grad(); }
Tensor f64(const std::vector<double>& v, const Shape& s) { return Tensor::from_vector(v, s); }

// Values in +-[0.5, 1.5]: safe divisors and log arguments (after abs).
Tensor away_from_zero(const Shape& shape, uint64_t seed, bool positive = false) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.5, 1.5);
  std::vector<double> v(static_cast<size_t>(shape.numel()));
  for (auto& x : v) x = (positive || rng() % 2) ? u(rng) : -u(rng);
  return f64(v, shape);
}

// a (op) b computed one output element at a time from NumPy's rule, in double.
Tensor naive_binary(const Tensor& a, const Tensor& b, char op) {
  const Shape out_shape = broadcast_shape(a.shape(), b.shape(), "naive");
  const auto va = test::as_doubles(a), vb = test::as_doubles(b);
  std::vector<double> out(static_cast<size_t>(out_shape.numel()));
  const int n = out_shape.size();
  auto index_in = [&](const Shape& s, int64_t linear) {
    int64_t idx = 0;
    for (int d = 0; d < n; ++d) {
      const int64_t coord = (linear / out_shape.stride(d)) % out_shape[d];
      const int sd = d - (n - s.size());
      if (sd >= 0 && s[sd] != 1) idx += coord * s.stride(sd);
    }
    return static_cast<size_t>(idx);
  };
  for (int64_t i = 0; i < out_shape.numel(); ++i) {
    const double x = va[index_in(a.shape(), i)], y = vb[index_in(b.shape(), i)];
    out[static_cast<size_t>(i)] = op == '+' ? x + y : op == '-' ? x - y : op == '*' ? x * y : x / y;
  }
  return f64(out, out_shape);
}

struct ShapePair {
  Shape a, b;
};

// Broadcasting cases: same shape, bias forms against NCHW, SE gating, both operands
// stretched, 0-D and 1-element operands, 5-D, batch 1, 1x1 spatial, odd sizes.
const std::vector<ShapePair> kBroadcastCases = {
    {{2, 3, 4, 5}, {2, 3, 4, 5}},
    {{2, 3, 4, 5}, {1, 3, 1, 1}},
    {{2, 3, 4, 5}, {3, 1, 1}},
    {{2, 3, 4, 5}, {5}},
    {{2, 3, 1, 1}, {2, 3, 4, 5}},
    {{3, 1}, {1, 4}},
    {{}, {2, 3}},
    {{2, 3}, {}},
    {{1}, {3, 7}},
    {{2, 1, 3, 1, 2}, {1, 4, 1, 5, 1}},
    {{1, 3, 1, 1}, {1, 3, 1, 1}},
    {{2, 3, 5}, {2, 1, 5}},
    {{7, 1, 3}, {1, 5, 1}},
    {{1, 1}, {1, 1}},
    {{0, 3}, {1, 3}},
};

}  // namespace

// ---- forward values -------------------------------------------------------------------

TEST(Elementwise, HandComputedBroadcasts) {
  const Tensor a = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(add(a, f64({10, 20, 30}, {3})).to_vector<double>(),
            (std::vector<double>{11, 22, 33, 14, 25, 36}));
  EXPECT_EQ(sub(f64({1, 2}, {2, 1}), f64({10, 20, 30}, {1, 3})).to_vector<double>(),
            (std::vector<double>{-9, -19, -29, -8, -18, -28}));
  const Tensor q = div(f64({1, 2, 3}, {3, 1}), f64({1, 2, 4, 8}, {1, 4}));
  EXPECT_EQ(q.shape(), (Shape{3, 4}));
  EXPECT_EQ(q.to_vector<double>(), (std::vector<double>{1, .5, .25, .125, 2, 1, .5, .25, 3, 1.5, .75, .375}));
  // Per-channel bias [C,1,1] against NCHW.
  const Tensor x = Tensor::arange(8, DType::f64).reshape({1, 2, 2, 2});
  EXPECT_EQ(add(x, f64({100, 200}, {2, 1, 1})).to_vector<double>(),
            (std::vector<double>{100, 101, 102, 103, 204, 205, 206, 207}));
  // SE gating [N,C,1,1] * [N,C,H,W].
  EXPECT_EQ(mul(f64({2, -1}, {1, 2, 1, 1}), x).to_vector<double>(),
            (std::vector<double>{0, 2, 4, 6, -4, -5, -6, -7}));
  // [C] against NCHW aligns with W (NumPy), not with C.
  const Tensor y = Tensor::arange(6, DType::f64).reshape({1, 2, 1, 3});
  EXPECT_EQ(add(y, f64({10, 20, 30}, {3})).to_vector<double>(),
            (std::vector<double>{10, 21, 32, 13, 24, 35}));
  // 0-D against a tensor.
  EXPECT_EQ(mul(Tensor::scalar(3.0, DType::f64), a).to_vector<double>(),
            (std::vector<double>{3, 6, 9, 12, 15, 18}));
}

TEST(Elementwise, BroadcastMatchesNaiveReference) {
  uint64_t seed = 1;
  for (const auto& c : kBroadcastCases) {
    for (DType dt : {DType::f64, DType::f32}) {
      const Tensor a = test::randn(c.a, dt, seed++), b = away_from_zero(c.b, seed++).to(dt);
      const double tol = dt == DType::f64 ? 1e-15 : 1e-6;
      const std::string what = c.a.str() + " with " + c.b.str() + " " + dtype_name(dt);
      EXPECT_TRUE(test::all_close(add(a, b), naive_binary(a, b, '+'), tol, tol, "add " + what));
      EXPECT_TRUE(test::all_close(sub(a, b), naive_binary(a, b, '-'), tol, tol, "sub " + what));
      EXPECT_TRUE(test::all_close(mul(a, b), naive_binary(a, b, '*'), tol, tol, "mul " + what));
      EXPECT_TRUE(test::all_close(div(a, b), naive_binary(a, b, '/'), tol, tol, "div " + what));
      EXPECT_TRUE(
          test::all_close(div(b, a.reshape(a.shape())), naive_binary(b, a, '/'), tol, tol, "div^T " + what));
    }
  }
}

TEST(Elementwise, LargeTensorsTakeTheParallelPathsCorrectly) {
  // Above the threshold where OpenMP splits the work: per-row, per-chunk and flat loops.
  const std::vector<ShapePair> cases = {{{4, 64, 16, 17}, {1, 64, 1, 1}},
                                        {{100003}, {100003}},
                                        {{100003}, {}},
                                        {{3, 40001}, {3, 1}},
                                        {{2, 5, 4099}, {5, 1}}};
  uint64_t seed = 100;
  for (const auto& c : cases) {
    const Tensor a = test::randn(c.a, DType::f32, seed++), b = test::randn(c.b, DType::f32, seed++);
    EXPECT_TRUE(
        test::all_close(mul(a, b), naive_binary(a, b, '*'), 1e-6, 1e-6, c.a.str() + " * " + c.b.str()));
    EXPECT_TRUE(
        test::all_close(sub(b, a), naive_binary(b, a, '-'), 1e-6, 1e-6, c.b.str() + " - " + c.a.str()));
  }
}

TEST(Elementwise, ScalarOpsAndOperators) {
  const Tensor a = f64({1, -2, 3}, {3});
  EXPECT_EQ(add_scalar(a, 0.5).to_vector<double>(), (std::vector<double>{1.5, -1.5, 3.5}));
  EXPECT_EQ(mul_scalar(a, -2).to_vector<double>(), (std::vector<double>{-2, 4, -6}));
  EXPECT_EQ(neg(a).to_vector<double>(), (std::vector<double>{-1, 2, -3}));
  EXPECT_EQ((a - 1.0).to_vector<double>(), (std::vector<double>{0, -3, 2}));
  EXPECT_EQ((2.0 * a).to_vector<double>(), (std::vector<double>{2, -4, 6}));
  EXPECT_EQ((a / 4.0).to_vector<double>(), (std::vector<double>{0.25, -0.5, 0.75}));
  EXPECT_EQ((-a).to_vector<double>(), (std::vector<double>{-1, 2, -3}));
  EXPECT_EQ((a * a + a - a / a).to_vector<double>(), (std::vector<double>{1, 1, 11}));
  EXPECT_EQ(add_scalar(Tensor::scalar(2.0, DType::f32), 1).item(), 3.0);
}

TEST(Elementwise, ActivationValues) {
  const Tensor r = relu(f64({-1, 0, 2.5}, {3}));
  EXPECT_EQ(r.to_vector<double>(), (std::vector<double>{0, 0, 2.5}));
  const auto s = selu(f64({1, -1, 0, 2}, {4})).to_vector<double>();
  EXPECT_DOUBLE_EQ(s[0], 1.0507009873554805);
  EXPECT_DOUBLE_EQ(s[1], -1.1113307378125628);
  EXPECT_EQ(s[2], 0.0);
  EXPECT_DOUBLE_EQ(s[3], 2.101401974710961);
  const auto sg = sigmoid(f64({0, 1, -1, 100, -100}, {5})).to_vector<double>();
  EXPECT_EQ(sg[0], 0.5);
  EXPECT_DOUBLE_EQ(sg[1], 0.7310585786300049);
  EXPECT_DOUBLE_EQ(sg[2], 0.2689414213699951);
  EXPECT_EQ(sg[3], 1.0);
  EXPECT_DOUBLE_EQ(sg[4], 3.720075976020836e-44);
  const auto e = exp(f64({0, 1, -2}, {3})).to_vector<double>();
  EXPECT_EQ(e[0], 1.0);
  EXPECT_DOUBLE_EQ(e[1], 2.718281828459045);
  EXPECT_DOUBLE_EQ(e[2], 0.1353352832366127);
  const auto l = log(f64({1, 2.718281828459045, 0.5, 0, -1}, {5})).to_vector<double>();
  EXPECT_EQ(l[0], 0.0);
  EXPECT_DOUBLE_EQ(l[1], 1.0);
  EXPECT_DOUBLE_EQ(l[2], -0.6931471805599453);
  EXPECT_EQ(l[3], -std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(l[4]));
}

TEST(Elementwise, SigmoidIsFiniteForLargeMagnitudes) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = leaf(f64({100, -100, 1000, -1000, 1e30, -1e30}, {6}).to(dt));
    Tensor y = sigmoid(x);
    const auto v = test::as_doubles(y);
    EXPECT_EQ(v[0], 1.0);
    EXPECT_GE(v[1], 0.0);
    EXPECT_LT(v[1], 1e-43);
    EXPECT_EQ(v[2], 1.0);
    EXPECT_EQ(v[3], 0.0);
    EXPECT_EQ(v[4], 1.0);
    EXPECT_EQ(v[5], 0.0);
    y.backward(Tensor::ones({6}, dt));
    for (double g : test::as_doubles(x.grad())) {
      EXPECT_TRUE(std::isfinite(g));
      EXPECT_GE(g, 0.0);
      EXPECT_LT(g, 1e-40);
    }
  }
}

TEST(Elementwise, ReluGradientAtZeroIsZero) {
  Tensor x = leaf(f64({-1, 0, 2}, {3}));
  relu(x).backward(Tensor::ones({3}, DType::f64));
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{0, 0, 1}));
}

// ---- gradients ------------------------------------------------------------------------

TEST(ElementwiseGrad, BinaryOpsWithBroadcasting) {
  const std::vector<ShapePair> cases = {{{2, 3, 4, 5}, {1, 3, 1, 1}},
                                        {{2, 3, 1, 1}, {2, 3, 4, 5}},
                                        {{3, 1}, {1, 4}},
                                        {{2, 3}, {2, 3}},
                                        {{}, {2, 3}},
                                        {{4}, {2, 3, 4}},
                                        {{2, 1, 3, 1, 2}, {1, 2, 1, 2, 1}}};
  uint64_t seed = 10;
  for (const auto& c : cases) {
    const std::string what = c.a.str() + " with " + c.b.str();
    Tensor a = leaf(test::randn(c.a, DType::f64, seed++));
    Tensor b = leaf(away_from_zero(c.b, seed++));
    EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return add(in[0], in[1]); }, {a, b}))
        << "add " << what;
    EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return sub(in[0], in[1]); }, {a, b}))
        << "sub " << what;
    EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return mul(in[0], in[1]); }, {a, b}))
        << "mul " << what;
    EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return div(in[0], in[1]); }, {a, b}))
        << "div " << what;
    EXPECT_TRUE(float_matches_double([](const std::vector<Tensor>& in) { return div(in[0], in[1]); }, {a, b}))
        << "div " << what;
    EXPECT_TRUE(
        float_matches_double([](const std::vector<Tensor>& in) { return mul(in[0], in[1]) - in[0]; }, {a, b}))
        << "mul/sub " << what;
  }
}

TEST(ElementwiseGrad, OnlyOneOperandNeedsAGradient) {
  Tensor a = leaf(test::randn({2, 3, 4}, DType::f64, 20));
  const Tensor b = away_from_zero({3, 1}, 21);
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return div(in[0], b); }, {a}));
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return div(b, in[0]); }, {a}));
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return mul(b, in[0]); }, {a}));
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return sub(b, in[0]); }, {a}));
  Tensor y = mul(a, b);
  EXPECT_EQ(y.grad_fn()->next.size(), 2u);
  EXPECT_FALSE(y.grad_fn()->next[1].valid());
}

TEST(ElementwiseGrad, UnaryOps) {
  using F = test::Fn;
  // Kinks (relu at 0, selu's derivative jump at 0) are kept away from the FD step.
  Tensor s = leaf(test::separated_values({2, 3, 5}, DType::f64, 30, 0.05));
  Tensor n = leaf(test::randn({2, 3, 5}, DType::f64, 31));
  Tensor p = leaf(away_from_zero({2, 3, 5}, 32, /*positive=*/true));
  const std::vector<std::pair<F, Tensor>> cases = {
      {[](const std::vector<Tensor>& in) { return relu(in[0]); }, s},
      {[](const std::vector<Tensor>& in) { return selu(in[0]); }, s},
      {[](const std::vector<Tensor>& in) { return sigmoid(in[0]); }, n},
      {[](const std::vector<Tensor>& in) { return exp(in[0]); }, n},
      {[](const std::vector<Tensor>& in) { return log(in[0]); }, p},
      {[](const std::vector<Tensor>& in) { return add_scalar(in[0], 3.5); }, n},
      {[](const std::vector<Tensor>& in) { return mul_scalar(in[0], -1.75); }, n},
      {[](const std::vector<Tensor>& in) { return neg(in[0]); }, n},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_TRUE(gradcheck(cases[i].first, {cases[i].second})) << "case " << i;
    EXPECT_TRUE(float_matches_double(cases[i].first, {cases[i].second})) << "case " << i;
  }
}

TEST(ElementwiseGrad, BroadcastToAndSumToShape) {
  Tensor x = leaf(test::randn({3, 1}, DType::f64, 40));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return broadcast_to(in[0], {2, 3, 4}); }, {x}));
  EXPECT_EQ(broadcast_to(f64({1, 2}, {2, 1}), {2, 3}).to_vector<double>(),
            (std::vector<double>{1, 1, 1, 2, 2, 2}));
  const Tensor g = Tensor::arange(24, DType::f64).reshape({2, 3, 4});
  EXPECT_EQ(sum_to_shape(g, {3, 1}).to_vector<double>(), (std::vector<double>{6 + 54, 22 + 70, 38 + 86}));
  EXPECT_EQ(sum_to_shape(g, {1, 4}).to_vector<double>(), (std::vector<double>{60, 66, 72, 78}));
  EXPECT_EQ(sum_to_shape(g, {}).item(), 276.0);
  EXPECT_TRUE(sum_to_shape(g, {2, 3, 4}).same(g));
  EXPECT_HPA_ERROR(sum_to_shape(g, {2, 3}), "sum_to_shape", "[2, 3]", "[2, 3, 4]");
  EXPECT_HPA_ERROR(sum_to_shape(g, {5, 2, 3, 4}), "sum_to_shape", "[5, 2, 3, 4]");
  EXPECT_HPA_ERROR(broadcast_to(g, {3, 4}), "broadcast_to", "[2, 3, 4]", "[3, 4]");
}

TEST(ElementwiseGrad, TensorUsedTwiceGetsTheSummedGradient) {
  Tensor x = leaf(f64({1, -2, 3}, {3}));
  mul(x, x).backward(Tensor::ones({3}, DType::f64));
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2, -4, 6}));
  x.zero_grad();
  add(x, x).backward(Tensor::ones({3}, DType::f64));
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2, 2, 2}));
  Tensor y = leaf(test::randn({2, 3}, DType::f64, 50));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return mul(in[0], in[0]); }, {y}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return mul(mul(in[0], in[0]), in[0]); }, {y}));
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& in) {
        return mul(add(in[0], in[0]), in[0].reshape({3, 2}));
      },
      {leaf(away_from_zero({3, 2}, 51))}));
}

TEST(ElementwiseGrad, ResidualGraphFanOut) {
  // y = relu(x * w) + x, then summed: x reaches the sum along two paths.
  const test::Fn f = [](const std::vector<Tensor>& in) { return sum(add(relu(mul(in[0], in[1])), in[0])); };
  Tensor x = leaf(test::separated_values({2, 3, 2, 2}, DType::f64, 60, 0.05));
  Tensor w = leaf(away_from_zero({1, 3, 1, 1}, 61));
  EXPECT_TRUE(gradcheck(f, {x, w}));
  EXPECT_TRUE(float_matches_double(f, {x, w}));
  // By hand: dL/dx = w * [x*w > 0] + 1.
  x.zero_grad();
  w.zero_grad();
  f({x, w}).backward();
  const auto xv = x.to_vector<double>(), wv = w.to_vector<double>(), gx = x.grad().to_vector<double>();
  for (size_t i = 0; i < xv.size(); ++i) {
    const double wc = wv[(i / 4) % 3];
    EXPECT_DOUBLE_EQ(gx[i], (xv[i] * wc > 0 ? wc : 0.0) + 1.0) << i;
  }
}

// ---- errors ---------------------------------------------------------------------------

TEST(ElementwiseErrors, MismatchesNameTheOpAndShapes) {
  const Tensor a32 = Tensor::zeros({2, 3}), a64 = Tensor::zeros({2, 3}, DType::f64);
  EXPECT_HPA_ERROR(add(a32, a64), "add", "f32[2, 3]", "f64[2, 3]");
  EXPECT_HPA_ERROR(div(a64, a32), "div", "dtype mismatch");
  EXPECT_HPA_ERROR(mul(a32, Tensor::zeros({4})), "mul", "[2, 3]", "[4]", "broadcast");
  EXPECT_HPA_ERROR(sub(Tensor::zeros({2, 3, 1}), Tensor::zeros({3, 5, 2})), "sub", "[2, 3, 1]", "[3, 5, 2]");
  EXPECT_HPA_ERROR(add(Tensor::zeros({2}, DType::i64), Tensor::zeros({2}, DType::i64)), "add", "f32 or f64",
                   "i64[2]");
  EXPECT_HPA_ERROR(add(a32, Tensor()), "add", "undefined");
  EXPECT_HPA_ERROR(relu(Tensor::zeros({3}, DType::i32)), "relu", "i32[3]");
  EXPECT_HPA_ERROR(mul_scalar(Tensor::zeros({3}, DType::u8), 2.0), "mul_scalar", "u8[3]");
  EXPECT_HPA_ERROR(log(Tensor()), "log", "undefined");
  // A device mismatch needs a second device: only checkable where a CUDA backend runs.
}
