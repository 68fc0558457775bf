// sum / mean: every subset of dimensions of 4-D and 5-D tensors against a naive reference,
// hand-computed values, double accumulation, the parallel paths, gradchecks, float vs
// double, and bad dimension lists.
#include <gtest/gtest.h>

#include <cmath>

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

// Sums x over the dims flagged in `mask` (bit d = dimension d), one input element at a
// time, in double; keepdim shape.
Tensor naive_sum(const Tensor& x, unsigned mask, bool mean) {
  const Shape& s = x.shape();
  Shape out_shape;
  int64_t count = 1;
  for (int d = 0; d < s.size(); ++d) {
    const bool r = mask >> d & 1u;
    out_shape.push_back(r ? 1 : s[d]);
    if (r) count *= s[d];
  }
  const auto v = test::as_doubles(x);
  std::vector<double> out(static_cast<size_t>(out_shape.numel()), 0.0);
  for (int64_t i = 0; i < s.numel(); ++i) {
    int64_t o = 0;
    for (int d = 0; d < s.size(); ++d) {
      const int64_t coord = (i / s.stride(d)) % s[d];
      if (!(mask >> d & 1u)) o += coord * out_shape.stride(d);
    }
    out[static_cast<size_t>(o)] += v[static_cast<size_t>(i)];
  }
  if (mean)
    for (auto& e : out) e /= static_cast<double>(count);
  return f64(out, out_shape);
}

std::vector<int> dims_of(unsigned mask, int ndim, bool negative) {
  std::vector<int> dims;
  for (int d = ndim - 1; d >= 0; --d)  // reversed order on purpose: order must not matter
    if (mask >> d & 1u) dims.push_back(negative ? d - ndim : d);
  return dims;
}

}  // namespace

TEST(Reduce, HandComputedValues) {
  const Tensor x = Tensor::arange(24, DType::f64).reshape({2, 3, 4});
  const Tensor s1 = sum(x, {1});
  EXPECT_EQ(s1.shape(), (Shape{2, 4}));
  EXPECT_EQ(s1.to_vector<double>(), (std::vector<double>{12, 15, 18, 21, 48, 51, 54, 57}));
  EXPECT_EQ(sum(x, {1}, true).shape(), (Shape{2, 1, 4}));
  EXPECT_EQ(sum(x, {0, 2}).to_vector<double>(), (std::vector<double>{60, 92, 124}));
  EXPECT_EQ(sum(x, {-1}).to_vector<double>(), (std::vector<double>{6, 22, 38, 54, 70, 86}));
  EXPECT_EQ(mean(x, {0, -1}, true).to_vector<double>(), (std::vector<double>{7.5, 11.5, 15.5}));
  EXPECT_EQ(mean(x, {0, -1}, true).shape(), (Shape{1, 3, 1}));
  const Tensor all = sum(x);
  EXPECT_EQ(all.dim(), 0);
  EXPECT_EQ(all.item(), 276.0);
  EXPECT_EQ(mean(x).item(), 11.5);
  EXPECT_EQ(sum(x, {0, 1, 2}).dim(), 0);
  EXPECT_EQ(sum(x, {0, 1, 2}, true).shape(), (Shape{1, 1, 1}));
  // An empty list reduces nothing.
  EXPECT_EQ(sum(x, {}).to_vector<double>(), x.to_vector<double>());
  // 0-D, batch 1 and 1x1 spatial.
  EXPECT_EQ(sum(Tensor::scalar(2.5, DType::f64)).item(), 2.5);
  EXPECT_EQ(mean(f64({1, 2, 3}, {1, 3, 1, 1}), {0, 2, 3}).to_vector<double>(),
            (std::vector<double>{1, 2, 3}));
}

TEST(Reduce, EmptyReductions) {
  const Tensor e = Tensor::zeros({0, 3}, DType::f64);
  EXPECT_EQ(sum(e, {0}).to_vector<double>(), (std::vector<double>{0, 0, 0}));
  EXPECT_EQ(sum(e).item(), 0.0);
  EXPECT_TRUE(std::isnan(mean(e).item()));
  EXPECT_EQ(sum(e, {1}).shape(), (Shape{0}));
}

TEST(Reduce, EveryDimSubsetMatchesNaiveReference) {
  uint64_t seed = 1;
  for (const Shape& shape : {Shape{2, 3, 4, 5}, Shape{3, 1, 2, 4, 3}, Shape{1, 7, 1, 1}}) {
    const int n = shape.size();
    for (DType dt : {DType::f64, DType::f32}) {
      const Tensor x = test::randn(shape, dt, seed++);
      const double tol = dt == DType::f64 ? 1e-13 : 1e-6;
      for (unsigned mask = 0; mask < (1u << n); ++mask) {
        for (bool is_mean : {false, true}) {
          const std::vector<int> dims = dims_of(mask, n, mask % 3 == 1);
          const Tensor kept = is_mean ? mean(x, dims, true) : sum(x, dims, true);
          const std::string what = std::string(is_mean ? "mean" : "sum") + " of " + shape.str() + " mask " +
                                   std::to_string(mask) + " " + dtype_name(dt);
          EXPECT_TRUE(test::all_close(kept, naive_sum(x, mask, is_mean), tol, tol, what));
          const Tensor dropped = is_mean ? mean(x, dims) : sum(x, dims);
          EXPECT_EQ(dropped.numel(), kept.numel()) << what;
          EXPECT_EQ(dropped.dim(), n - static_cast<int>(dims.size())) << what;
        }
      }
    }
  }
}

TEST(Reduce, LargeTensorsTakeTheParallelPathsCorrectly) {
  const Tensor x = test::randn({3, 40001}, DType::f32, 5);
  EXPECT_TRUE(test::all_close(sum(x, {1}, true), naive_sum(x, 2u, false), 1e-4, 1e-6, "rows"));
  EXPECT_TRUE(test::all_close(sum(x, {0}, true), naive_sum(x, 1u, false), 1e-5, 1e-6, "columns"));
  EXPECT_TRUE(test::all_close(mean(x).reshape({1, 1}), naive_sum(x, 3u, true), 1e-7, 1e-6, "all"));
  const Tensor y = test::randn({2, 16, 33, 35}, DType::f32, 6);
  EXPECT_TRUE(test::all_close(sum(y, {0, 2, 3}, true), naive_sum(y, 13u, false), 1e-4, 1e-6, "N,H,W"));
  EXPECT_TRUE(test::all_close(sum(y, {1}, true), naive_sum(y, 2u, false), 1e-5, 1e-6, "C"));
}

TEST(Reduce, AccumulatesInDouble) {
  // In float, 1e8 + 1 == 1e8: a float accumulator would return 0 here.
  std::vector<float> v(1002, 1.0f);
  v.front() = 1e8f;
  v.back() = -1e8f;
  const Tensor x = Tensor::from_vector(v, {1002});
  EXPECT_EQ(sum(x).item(), 1000.0);
  EXPECT_EQ(sum(x.reshape({1, 1002}), {1}).item(), 1000.0);
  EXPECT_EQ(sum(x.reshape({1002, 1}), {0}).item(), 1000.0);
}

TEST(ReduceGrad, SumAndMean) {
  Tensor x = leaf(test::randn({2, 3, 4, 5}, DType::f64, 10));
  const std::vector<std::pair<std::vector<int>, bool>> cases = {
      {{1}, false}, {{0, 2, 3}, true}, {{-1}, false}, {{3, 0}, false}, {{0, 1, 2, 3}, true}};
  for (const auto& [dims, keepdim] : cases) {
    const auto s = [&](const std::vector<Tensor>& in) { return sum(in[0], dims, keepdim); };
    const auto m = [&](const std::vector<Tensor>& in) { return mean(in[0], dims, keepdim); };
    EXPECT_TRUE(gradcheck(s, {x})) << "sum over " << dims.size() << " dims";
    EXPECT_TRUE(gradcheck(m, {x})) << "mean over " << dims.size() << " dims";
    EXPECT_TRUE(float_matches_double(s, {x}));
    EXPECT_TRUE(float_matches_double(m, {x}));
  }
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return sum(in[0]); }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return mean(in[0]); }, {x}));
  // The mean's gradient is exactly 1/count everywhere.
  Tensor y = leaf(test::randn({4, 5}, DType::f64, 11));
  mean(y).backward();
  EXPECT_EQ(y.grad().to_vector<double>(), std::vector<double>(20, 1.0 / 20));
  EXPECT_STREQ(mean(y, {0}).grad_fn()->name(), "mean");
}

TEST(ReduceErrors, BadDimensionLists) {
  const Tensor x = Tensor::zeros({2, 3, 4});
  EXPECT_HPA_ERROR(sum(x, {3}), "sum", "dimension 3", "out of range", "f32[2, 3, 4]");
  EXPECT_HPA_ERROR(mean(x, {-4}), "mean", "dimension -4", "out of range", "[2, 3, 4]");
  EXPECT_HPA_ERROR(sum(x, {1, 1}), "sum", "more than once", "[1, 1]", "[2, 3, 4]");
  EXPECT_HPA_ERROR(mean(x, {0, 2, -1}), "mean", "dimension -1", "more than once", "[0, 2, -1]");
  EXPECT_HPA_ERROR(sum(Tensor::zeros({2}, DType::i64)), "sum", "f32 or f64", "i64[2]");
  EXPECT_HPA_ERROR(mean(Tensor()), "mean", "undefined");
  EXPECT_HPA_ERROR(sum(Tensor::scalar(1.0), {0}), "sum", "out of range");
}
