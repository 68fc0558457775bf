// linear and the GEMM wrapper under it: a hand-computed case, forward and gradients against
// naive loops on shapes that do and do not split over threads, finite-difference checks in
// double, float against double, gradients only where required, zero features, argument
// errors; the wrapper's transposes, leading dimensions, k = 0 and its argument checks.
#include <gtest/gtest.h>
#include <omp.h>

#include <stdexcept>
#include <vector>

#include "kernels/gemm.h"
#include "tensor/autograd.h"
#include "tensor/ops/linear.h"
#include "tests/test_util.h"

using namespace hpa;
using hpa::test::all_close;
using hpa::test::as_doubles;
using hpa::test::randn;

namespace {

struct Reference {
  Tensor y, grad_x, grad_w, grad_b;
};

Reference reference_linear(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& grad_y) {
  const auto xv = as_doubles(x), wv = as_doubles(w), gy = as_doubles(grad_y);
  const std::vector<double> bv = b.defined() ? as_doubles(b) : std::vector<double>();
  const int64_t n = x.size(0), in = x.size(1), out = w.size(0);
  std::vector<double> y(static_cast<size_t>(n * out)), gx(xv.size()), gw(wv.size()),
      gb(static_cast<size_t>(out));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < out; ++o) {
      const size_t yi = static_cast<size_t>(i * out + o);
      double acc = b.defined() ? bv[static_cast<size_t>(o)] : 0.0;
      for (int64_t k = 0; k < in; ++k) {
        const size_t xi = static_cast<size_t>(i * in + k), wi = static_cast<size_t>(o * in + k);
        acc += xv[xi] * wv[wi];
        gx[xi] += gy[yi] * wv[wi];
        gw[wi] += gy[yi] * xv[xi];
      }
      y[yi] = acc;
      gb[static_cast<size_t>(o)] += gy[yi];
    }
  return {Tensor::from_vector(y, {n, out}), Tensor::from_vector(gx, x.shape()),
          Tensor::from_vector(gw, w.shape()), Tensor::from_vector(gb, {out})};
}

Tensor linear_of(const std::vector<Tensor>& in) {
  return linear(in[0], in[1], in.size() > 2 ? in[2] : Tensor());
}

}  // namespace

TEST(Linear, HandComputed) {
  Tensor x = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor w = Tensor::from_vector<float>({1, 0, -1, 2, 1, 0}, {2, 3});
  Tensor b = Tensor::from_vector<float>({10, 20}, {2});
  // Row 0: [1-3, 2+2] + b = [8, 24]; row 1: [4-6, 8+5] + b = [8, 33].
  EXPECT_EQ(linear(x, w, b).to_vector<float>(), (std::vector<float>{8, 24, 8, 33}));
  EXPECT_EQ(linear(x, w).to_vector<float>(), (std::vector<float>{-2, 4, -2, 13}));
}

TEST(Linear, MatchesNaiveLoops) {
  struct Case {
    int64_t n, in, out;
    bool bias;
  };
  // The last three exceed the threaded-split threshold: split by columns, by rows, and the
  // transposed weight-gradient product.
  const std::vector<Case> cases = {{1, 7, 3, true},      {5, 1, 4, false},      {9, 33, 28, true},
                                   {64, 300, 130, true}, {200, 300, 50, false}, {37, 517, 301, true}};
  const int saved_threads = omp_get_max_threads();
  uint64_t seed = 10;
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    for (const Case& c : cases) {
      for (DType dtype : {DType::f64, DType::f32}) {
        SCOPED_TRACE(testing::Message() << c.n << "x" << c.in << "->" << c.out << " " << dtype_name(dtype)
                                        << " threads " << threads);
        Tensor x = randn({c.n, c.in}, dtype, ++seed).set_requires_grad();
        Tensor w = randn({c.out, c.in}, dtype, ++seed).set_requires_grad();
        Tensor b = c.bias ? randn({c.out}, dtype, ++seed).set_requires_grad() : Tensor();
        Tensor y = linear(x, w, b);
        Tensor grad_y = randn(y.shape(), dtype, ++seed);
        y.backward(grad_y);
        const Reference ref = reference_linear(x, w, b, grad_y);
        const double atol = dtype == DType::f32 ? 2e-4 : 1e-11, rtol = dtype == DType::f32 ? 1e-4 : 1e-11;
        EXPECT_TRUE(all_close(y, ref.y, atol, rtol, "y"));
        EXPECT_TRUE(all_close(x.grad(), ref.grad_x, atol, rtol, "grad x"));
        EXPECT_TRUE(all_close(w.grad(), ref.grad_w, atol, rtol, "grad weight"));
        if (c.bias) {
          EXPECT_TRUE(all_close(b.grad(), ref.grad_b, atol, rtol, "grad bias"));
        }
      }
    }
  }
  omp_set_num_threads(saved_threads);
}

TEST(Linear, Gradcheck) {
  EXPECT_TRUE(test::gradcheck(linear_of, {randn({4, 5}, DType::f64, 1).set_requires_grad(),
                                          randn({3, 5}, DType::f64, 2).set_requires_grad(),
                                          randn({3}, DType::f64, 3).set_requires_grad()}));
  EXPECT_TRUE(test::gradcheck(linear_of, {randn({1, 6}, DType::f64, 4).set_requires_grad(),
                                          randn({2, 6}, DType::f64, 5).set_requires_grad()}));
}

TEST(Linear, FloatMatchesDouble) {
  EXPECT_TRUE(test::float_matches_double(linear_of, {randn({6, 17}, DType::f64, 6).set_requires_grad(),
                                                     randn({9, 17}, DType::f64, 7).set_requires_grad(),
                                                     randn({9}, DType::f64, 8).set_requires_grad()}));
}

TEST(Linear, GradientsOnlyWhereRequired) {
  Tensor x = randn({3, 4}, DType::f64, 1), w = randn({2, 4}, DType::f64, 2), b = randn({2}, DType::f64, 3);
  const Reference ref = reference_linear(x, w, b, Tensor::ones({3, 2}, DType::f64));
  w.set_requires_grad();
  linear(x, w, b).backward(Tensor::ones({3, 2}, DType::f64));
  EXPECT_FALSE(x.grad().defined());
  EXPECT_TRUE(all_close(w.grad(), ref.grad_w, 1e-12, 1e-12, "grad weight"));
  Tensor x2 = x.detach().clone().set_requires_grad();
  linear(x2, w.detach(), b).backward(Tensor::ones({3, 2}, DType::f64));
  EXPECT_TRUE(all_close(x2.grad(), ref.grad_x, 1e-12, 1e-12, "grad x"));
  Tensor b3 = b.detach().clone().set_requires_grad();
  linear(x, w.detach(), b3).backward(Tensor::ones({3, 2}, DType::f64));
  EXPECT_TRUE(all_close(b3.grad(), ref.grad_b, 1e-12, 1e-12, "grad bias"));
}

TEST(Linear, ZeroFeaturesGiveTheBias) {
  Tensor b = Tensor::from_vector<double>({1.5, -2}, {2});
  Tensor y = linear(Tensor::zeros({3, 0}, DType::f64), Tensor::zeros({2, 0}, DType::f64), b);
  EXPECT_EQ(y.to_vector<double>(), (std::vector<double>{1.5, -2, 1.5, -2, 1.5, -2}));
  EXPECT_EQ(linear(Tensor::zeros({3, 0}), Tensor::zeros({2, 0})).to_vector<float>(),
            std::vector<float>(6, 0.0f));
}

// Backward through empty shapes: no features gives empty x/weight gradients and the bias
// gradient; an empty batch gives zero weight and bias gradients.
TEST(Linear, EmptyShapesBackward) {
  Tensor x = Tensor::zeros({3, 0}, DType::f64).set_requires_grad();
  Tensor w = Tensor::zeros({2, 0}, DType::f64).set_requires_grad();
  Tensor b = Tensor::zeros({2}, DType::f64).set_requires_grad();
  linear(x, w, b).backward(Tensor::from_vector<double>({1, 2, 3, 4, 5, 6}, {3, 2}));
  EXPECT_EQ(x.grad().shape(), (Shape{3, 0}));
  EXPECT_EQ(w.grad().shape(), (Shape{2, 0}));
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{9, 12}));

  Tensor x0 = Tensor::zeros({0, 4}, DType::f64).set_requires_grad();
  Tensor w0 = randn({2, 4}, DType::f64, 1).set_requires_grad();
  Tensor b0 = Tensor::zeros({2}, DType::f64).set_requires_grad();
  linear(x0, w0, b0).backward(Tensor::zeros({0, 2}, DType::f64));
  EXPECT_EQ(x0.grad().shape(), (Shape{0, 4}));
  EXPECT_EQ(w0.grad().to_vector<double>(), std::vector<double>(8, 0.0));
  EXPECT_EQ(b0.grad().to_vector<double>(), std::vector<double>(2, 0.0));
}

TEST(Linear, ErrorsNameTheOpAndShapes) {
  Tensor x = Tensor::zeros({4, 5}), w = Tensor::zeros({3, 5});
  EXPECT_HPA_ERROR(linear(Tensor::zeros({4, 5, 1}), w), "linear", "input", "[4, 5, 1]");
  EXPECT_HPA_ERROR(linear(x, Tensor::zeros({15})), "linear", "weight", "[15]");
  EXPECT_HPA_ERROR(linear(x, Tensor::zeros({3, 4})), "linear", "[4, 5]", "[3, 4]");
  EXPECT_HPA_ERROR(linear(x, w, Tensor::zeros({4})), "linear", "bias", "[4]", "[3, 5]");
  EXPECT_HPA_ERROR(linear(x, w, Tensor::zeros({1, 3})), "linear", "bias", "[1, 3]");
  EXPECT_HPA_ERROR(linear(x, Tensor::zeros({3, 5}, DType::f64)), "linear", "dtype", "f32[4, 5]", "f64[3, 5]");
  EXPECT_HPA_ERROR(linear(x, w, Tensor::zeros({3}, DType::f64)), "linear", "dtype", "f64[3]");
  EXPECT_HPA_ERROR(linear(Tensor::zeros({4, 5}, DType::i64), Tensor::zeros({3, 5}, DType::i64)), "linear",
                   "f32 or f64", "i64[4, 5]");
  EXPECT_HPA_ERROR(linear(x, Tensor()), "linear", "undefined");
}

TEST(Gemm, TransposesAndLeadingDimensions) {
  // A = [[1, 2, 3], [4, 5, 6]] (2x3), B = [[1, 0], [0, 1], [1, 1]] (3x2): A B = [[4, 5], [10, 11]].
  // Each operand sits in a wider row-major buffer (padding marked 99) and is stored plainly
  // or transposed; C has one padding column that must survive.
  const double a[] = {1, 2, 3, 99, 4, 5, 6, 99};        // lda 4
  const double a_t[] = {1, 4, 99, 2, 5, 99, 3, 6, 99};  // A^T, lda 3
  const double b[] = {1, 0, 99, 0, 1, 99, 1, 1, 99};    // ldb 3
  const double b_t[] = {1, 0, 1, 99, 0, 1, 1, 99};      // B^T, ldb 4
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      double c[] = {1, 1, -7, 1, 1, -7};  // ldc 3; beta 2 doubles the old 1s
      const kernels::GemmArgs g{2, 2, 3, ta, tb, ta ? 3 : 4, tb ? 4 : 3, 3};
      kernels::gemm_cpu<double>(g, 1.0, ta ? a_t : a, tb ? b_t : b, 2.0, c);
      EXPECT_EQ(std::vector<double>(c, c + 6), (std::vector<double>{6, 7, -7, 12, 13, -7})) << ta << tb;
    }
  float c0[] = {3, 3};
  kernels::gemm_serial_cpu<float>(kernels::gemm_args(1, 2, 0), 1.0f, nullptr, nullptr, 0.5f, c0);
  EXPECT_EQ(std::vector<float>(c0, c0 + 2), (std::vector<float>{1.5f, 1.5f}));
  EXPECT_THROW(
      kernels::gemm_cpu<float>(kernels::GemmArgs{2, 2, 2, false, false, 1, 2, 2}, 1.0f, c0, c0, 0.0f, c0),
      std::invalid_argument);
  EXPECT_THROW(kernels::gemm_cpu<float>(kernels::gemm_args(-1, 2, 2), 1.0f, c0, c0, 0.0f, c0),
               std::invalid_argument);
}
