// concat / split: values along every dimension against an index-by-index reference,
// round trips, other dtypes, gradchecks (split's unused outputs get zero gradients),
// float vs double, and bad inputs.
#include <gtest/gtest.h>

#include "tensor/autograd.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/shape_ops.h"
#include "tests/test_util.h"

using namespace hpa;
using test::float_matches_double;
using test::gradcheck;

namespace {

Tensor leaf(Tensor t) { return t.set_requires_grad(); }

// Element `coords` of a contiguous tensor.
double at(const std::vector<double>& v, const Shape& s, const std::vector<int64_t>& coords) {
  int64_t i = 0;
  for (int d = 0; d < s.size(); ++d) i += coords[static_cast<size_t>(d)] * s.stride(d);
  return v[static_cast<size_t>(i)];
}

// Checks that `joined` holds the inputs back to back along `dim`, element by element.
::testing::AssertionResult is_concatenation(const Tensor& joined, const std::vector<Tensor>& inputs,
                                            int dim) {
  const Shape& js = joined.shape();
  const auto jv = test::as_doubles(joined);
  int64_t start = 0;
  for (size_t p = 0; p < inputs.size(); ++p) {
    const Shape& s = inputs[p].shape();
    const auto v = test::as_doubles(inputs[p]);
    for (int64_t i = 0; i < s.numel(); ++i) {
      std::vector<int64_t> c(static_cast<size_t>(s.size()));
      for (int d = 0; d < s.size(); ++d) c[static_cast<size_t>(d)] = (i / s.stride(d)) % s[d];
      const double expected = at(v, s, c);
      c[static_cast<size_t>(dim)] += start;
      if (at(jv, js, c) != expected)
        return ::testing::AssertionFailure() << "input " << p << " element " << i << " misplaced";
    }
    start += s[dim];
  }
  return ::testing::AssertionSuccess();
}

}  // namespace

TEST(ShapeOps, HandComputedSplitAndConcat) {
  const Tensor x = Tensor::arange(10, DType::f64).reshape({2, 5});
  const auto parts = split(x, {2, 3}, 1);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].shape(), (Shape{2, 2}));
  EXPECT_EQ(parts[0].to_vector<double>(), (std::vector<double>{0, 1, 5, 6}));
  EXPECT_EQ(parts[1].to_vector<double>(), (std::vector<double>{2, 3, 4, 7, 8, 9}));
  EXPECT_EQ(concat({parts[1], parts[0]}, -1).to_vector<double>(),
            (std::vector<double>{2, 3, 4, 0, 1, 7, 8, 9, 5, 6}));
  EXPECT_EQ(concat({parts[0], parts[0]}, 0).to_vector<double>(),
            (std::vector<double>{0, 1, 5, 6, 0, 1, 5, 6}));
  // Copies, not views.
  const Tensor one = concat({x}, 1);
  EXPECT_NE(one.data_ptr(), x.data_ptr());
  EXPECT_EQ(one.to_vector<double>(), x.to_vector<double>());
}

TEST(ShapeOps, ConcatAlongEveryDimMatchesReference) {
  uint64_t seed = 1;
  const Shape base{2, 3, 4, 5};
  for (int dim = 0; dim < 4; ++dim) {
    std::vector<Tensor> inputs;
    for (int64_t size : {1, 3, 2}) {  // odd sizes, one of 1
      Shape s = base;
      s[dim] = size;
      inputs.push_back(test::randn(s, DType::f32, seed++));
    }
    const Tensor joined = concat(inputs, dim);
    Shape expected = base;
    expected[dim] = 6;
    EXPECT_EQ(joined.shape(), expected);
    EXPECT_TRUE(is_concatenation(joined, inputs, dim)) << "dim " << dim;
    const auto back = split(joined, {1, 3, 2}, dim - 4);  // negative dim
    for (size_t i = 0; i < back.size(); ++i)
      EXPECT_EQ(back[i].to_vector<float>(), inputs[i].to_vector<float>()) << "dim " << dim << " piece " << i;
  }
}

TEST(ShapeOps, DenseNetSizedChannelConcat) {
  // Large enough for the parallel copy path.
  const std::vector<Tensor> inputs = {test::randn({4, 64, 16, 16}, DType::f32, 20),
                                      test::randn({4, 32, 16, 16}, DType::f32, 21),
                                      test::randn({4, 32, 16, 16}, DType::f32, 22)};
  const Tensor joined = concat(inputs, 1);
  EXPECT_EQ(joined.shape(), (Shape{4, 128, 16, 16}));
  EXPECT_TRUE(is_concatenation(joined, inputs, 1));
  const auto back = split(joined, {64, 32, 32}, 1);
  for (size_t i = 0; i < back.size(); ++i)
    EXPECT_EQ(back[i].to_vector<float>(), inputs[i].to_vector<float>());
}

TEST(ShapeOps, AnyDtypeAndEmptyPieces) {
  const Tensor a = Tensor::arange(4, DType::i64).reshape({2, 2});
  const Tensor b = Tensor::arange(2, DType::i64).reshape({2, 1});
  EXPECT_EQ(concat({a, b}, 1).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 0, 2, 3, 1}));
  const auto u = split(Tensor::full({3, 2}, 7, DType::u8), {2, 1}, 0);
  EXPECT_EQ(u[1].to_vector<uint8_t>(), (std::vector<uint8_t>{7, 7}));
  const auto parts = split(Tensor::arange(5, DType::f32), {0, 5, 0}, 0);
  EXPECT_EQ(parts[0].numel(), 0);
  EXPECT_EQ(parts[1].to_vector<float>(), (std::vector<float>{0, 1, 2, 3, 4}));
  EXPECT_EQ(concat(parts, 0).to_vector<float>(), (std::vector<float>{0, 1, 2, 3, 4}));
}

TEST(ShapeOpsGrad, Concat) {
  Tensor a = leaf(test::randn({2, 1, 3, 3}, DType::f64, 30));
  Tensor b = leaf(test::randn({2, 2, 3, 3}, DType::f64, 31));
  const Tensor frozen = test::randn({2, 3, 3, 3}, DType::f64, 32);
  Tensor c = leaf(test::randn({2, 1, 3, 3}, DType::f64, 33));
  // in[2] needs no gradient: its edge is invalid and backward skips its slice.
  const test::Fn f = [](const std::vector<Tensor>& in) { return concat({in[0], in[1], in[2], in[3]}, 1); };
  EXPECT_TRUE(gradcheck(f, {a, b, frozen, c}));
  EXPECT_TRUE(float_matches_double(f, {a, b, frozen, c}));
  Tensor y = concat({a, frozen}, 1);
  EXPECT_STREQ(y.grad_fn()->name(), "concat");
  EXPECT_FALSE(y.grad_fn()->next[1].valid());
  // The same tensor twice gets both slices' gradients.
  Tensor x = leaf(test::randn({3, 2}, DType::f64, 34));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return concat({in[0], in[0], in[0]}, 0); }, {x}));
  x.zero_grad();
  concat({x, x}, 1).backward(Tensor::ones({3, 4}, DType::f64));
  EXPECT_EQ(x.grad().to_vector<double>(), std::vector<double>(6, 2.0));
}

TEST(ShapeOpsGrad, SplitWithUnusedOutputs) {
  Tensor x = leaf(test::randn({2, 6, 2, 2}, DType::f64, 40));
  // Piece 1 is never used: the engine hands its node a zero gradient for it.
  const test::Fn f = [](const std::vector<Tensor>& in) {
    const auto p = split(in[0], {2, 1, 3}, 1);
    return concat({mul_scalar(p[2], -3.0), mul_scalar(p[0], 2.0)}, 1);
  };
  EXPECT_TRUE(gradcheck(f, {x}));
  EXPECT_TRUE(float_matches_double(f, {x}));
  x.zero_grad();
  const auto p = split(x, {5, 1}, 1);
  EXPECT_STREQ(p[0].grad_fn()->name(), "split");
  EXPECT_EQ(p[1].impl().output_nr, 1);
  p[1].backward(Tensor::full({2, 1, 2, 2}, 4.0, DType::f64));
  const auto g = x.grad().to_vector<double>();
  for (size_t i = 0; i < g.size(); ++i) EXPECT_EQ(g[i], (i / 4) % 6 == 5 ? 4.0 : 0.0) << i;
  // Split along the last dim, batch 1.
  Tensor y = leaf(test::randn({1, 7}, DType::f64, 41));
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& in) {
        const auto q = split(in[0], {3, 4}, -1);
        return concat({q[1], q[0]}, 1);
      },
      {y}));
}

TEST(ShapeOpsErrors, BadInputs) {
  const Tensor a = Tensor::zeros({2, 4, 4}), b = Tensor::zeros({2, 5, 3});
  EXPECT_HPA_ERROR(concat({}, 0), "concat", "empty");
  EXPECT_HPA_ERROR(concat({a, b}, 1), "concat", "input 1", "f32[2, 5, 3]", "f32[2, 4, 4]", "dimension 1");
  EXPECT_HPA_ERROR(concat({a, Tensor::zeros({2, 4})}, 0), "concat", "[2, 4]", "[2, 4, 4]");
  EXPECT_HPA_ERROR(concat({a, Tensor::zeros({2, 4, 4}, DType::f64)}, 0), "concat", "dtype", "f64[2, 4, 4]");
  EXPECT_HPA_ERROR(concat({a, a}, 3), "concat", "dimension 3", "out of range", "[2, 4, 4]");
  EXPECT_HPA_ERROR(concat({Tensor::scalar(1.0), Tensor::scalar(2.0)}, 0), "concat", "0-D");
  EXPECT_HPA_ERROR(concat({a, Tensor()}, 0), "concat", "input 1", "undefined");
  EXPECT_HPA_ERROR(split(a, {1, 2}, 1), "split", "[1, 2]", "add up to 3", "size 4", "f32[2, 4, 4]");
  EXPECT_HPA_ERROR(split(a, {5, -1}, 1), "split", "negative size -1", "[2, 4, 4]");
  EXPECT_HPA_ERROR(split(a, {}, 1), "split", "empty", "[2, 4, 4]");
  EXPECT_HPA_ERROR(split(a, {2}, -4), "split", "dimension -4", "out of range");
  EXPECT_HPA_ERROR(split(Tensor(), {1}, 0), "split", "undefined");
}
