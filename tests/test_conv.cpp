// conv2d: hand-computed cases, forward and all three gradients against a naive direct
// convolution written here (shapes that take several row blocks, channel chunks and
// multi-image blocks, under 1, 2 and 3 OpenMP threads), finite-difference gradient checks in double
// over the options (stride, padding, dilation, groups, depthwise, 1x1, 1x1 output, odd
// sizes, batch 1, no bias), float against double, gradients computed only where needed,
// and argument errors.
#include <gtest/gtest.h>
#include <omp.h>

#include <vector>

#include "kernels/conv.h"
#include "tensor/autograd.h"
#include "tensor/ops/conv.h"
#include "tests/test_util.h"

using namespace hpa;
using hpa::test::all_close;
using hpa::test::as_doubles;
using hpa::test::randn;

namespace {

struct ConvCase {
  const char* name;
  Shape x, w;
  Conv2dOptions options;
  bool bias = true;
};

int64_t out_size(int64_t in, int64_t k, int stride, int pad, int dilation) {
  return (in + 2 * pad - dilation * (k - 1) - 1) / stride + 1;
}

struct Reference {
  Tensor y, grad_x, grad_w, grad_b;  // f64
};

// Direct convolution in double, straight from the definition; when grad_y is given, also
// the gradients of sum(grad_y * y).
Reference reference_conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dOptions& o,
                           const Tensor& grad_y = Tensor()) {
  const auto xv = as_doubles(x), wv = as_doubles(w);
  const std::vector<double> bv = b.defined() ? as_doubles(b) : std::vector<double>();
  const int64_t n = x.size(0), c_in = x.size(1), h = x.size(2), wd = x.size(3);
  const int64_t c_out = w.size(0), cin_g = w.size(1), kh = w.size(2), kw = w.size(3);
  const int64_t cout_g = c_out / o.groups;
  const int64_t ho = out_size(h, kh, o.stride_h, o.pad_h, o.dilation_h);
  const int64_t wo = out_size(wd, kw, o.stride_w, o.pad_w, o.dilation_w);
  std::vector<double> y(static_cast<size_t>(n * c_out * ho * wo));
  std::vector<double> gy = grad_y.defined() ? as_doubles(grad_y) : std::vector<double>(y.size());
  std::vector<double> gx(xv.size()), gw(wv.size()), gb(static_cast<size_t>(c_out));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t co = 0; co < c_out; ++co) {
      const int64_t g = co / cout_g;
      for (int64_t oh = 0; oh < ho; ++oh)
        for (int64_t ow = 0; ow < wo; ++ow) {
          const size_t yi = static_cast<size_t>(((i * c_out + co) * ho + oh) * wo + ow);
          double acc = b.defined() ? bv[static_cast<size_t>(co)] : 0.0;
          const double dy = gy[yi];
          gb[static_cast<size_t>(co)] += dy;
          for (int64_t cl = 0; cl < cin_g; ++cl) {
            const int64_t c = g * cin_g + cl;
            for (int64_t p = 0; p < kh; ++p)
              for (int64_t q = 0; q < kw; ++q) {
                const int64_t ih = oh * o.stride_h - o.pad_h + p * o.dilation_h;
                const int64_t iw = ow * o.stride_w - o.pad_w + q * o.dilation_w;
                if (ih < 0 || ih >= h || iw < 0 || iw >= wd) continue;
                const size_t xi = static_cast<size_t>(((i * c_in + c) * h + ih) * wd + iw);
                const size_t wi = static_cast<size_t>(((co * cin_g + cl) * kh + p) * kw + q);
                acc += xv[xi] * wv[wi];
                gx[xi] += wv[wi] * dy;
                gw[wi] += xv[xi] * dy;
              }
          }
          y[yi] = acc;
        }
    }
  Reference r;
  r.y = Tensor::from_vector(y, {n, c_out, ho, wo});
  r.grad_x = Tensor::from_vector(gx, x.shape());
  r.grad_w = Tensor::from_vector(gw, w.shape());
  r.grad_b = Tensor::from_vector(gb, {c_out});
  return r;
}

Tensor conv_of(const std::vector<Tensor>& in, const Conv2dOptions& o) {
  return conv2d(in[0], in[1], in.size() > 2 ? in[2] : Tensor(), o);
}

// Shapes big enough for several row blocks (and, at batch 1, channel chunks), small maps
// whose blocks hold several images, and the ResNeXt block (64 -> 64, 32 groups of 2).
const std::vector<ConvCase>& reference_cases() {
  static const std::vector<ConvCase> cases = {
      {"3x3_pad1", {2, 16, 23, 19}, {12, 16, 3, 3}, Conv2dOptions::square(1, 1)},
      {"3x3_pad1_batch1", {1, 64, 30, 30}, {32, 64, 3, 3}, Conv2dOptions::square(1, 1)},
      {"resnext_groups32", {2, 64, 9, 9}, {64, 2, 3, 3}, Conv2dOptions::square(1, 1, 1, 32)},
      {"stem_7x7_stride2", {2, 4, 37, 41}, {8, 4, 7, 7}, Conv2dOptions::square(2, 3)},
      {"pointwise", {3, 24, 13, 11}, {10, 24, 1, 1}, Conv2dOptions::square(1, 0), false},
      {"pointwise_batch1", {1, 32, 17, 5}, {16, 32, 1, 1}, Conv2dOptions::square(1, 0)},
      {"1x1_stride2", {2, 12, 15, 14}, {20, 12, 1, 1}, Conv2dOptions::square(2, 0)},
      {"1x1_padded", {2, 6, 5, 4}, {4, 6, 1, 1}, Conv2dOptions::square(1, 1)},
      {"asymmetric", {2, 6, 21, 26}, {5, 6, 2, 5}, Conv2dOptions{2, 3, 1, 2, 2, 1, 1}},
      {"dilation2", {2, 8, 17, 16}, {6, 8, 3, 3}, Conv2dOptions::square(1, 2, 2)},
      {"depthwise_multiplier2", {2, 6, 11, 9}, {12, 1, 3, 3}, Conv2dOptions::square(2, 1, 1, 6)},
      {"groups2_big_stride", {3, 8, 19, 19}, {6, 4, 3, 3}, Conv2dOptions::square(4, 2, 1, 2)},
      {"padding_beyond_kernel", {1, 3, 4, 5}, {4, 3, 3, 2}, Conv2dOptions{1, 2, 3, 2, 1, 1, 1}},
      {"one_by_one_output", {2, 5, 4, 6}, {3, 5, 4, 6}, Conv2dOptions::square(1, 0)},
      // Small feature maps: several images share one GEMM block (ragged last block).
      {"small_map_batch5", {5, 6, 6, 7}, {4, 6, 3, 3}, Conv2dOptions::square(1, 1)},
      {"small_map_pointwise", {5, 8, 4, 5}, {6, 8, 1, 1}, Conv2dOptions::square(1, 0)},
      {"small_map_groups4_stride2", {4, 8, 5, 5}, {8, 2, 3, 3}, Conv2dOptions::square(2, 1, 1, 4)},
  };
  return cases;
}

class ConvThreads : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    saved_threads_ = omp_get_max_threads();
    saved_min_macs_ = kernels::conv2d_min_parallel_macs();
    omp_set_num_threads(GetParam());
    kernels::set_conv2d_min_parallel_macs(0);  // small shapes take the parallel paths too
  }
  void TearDown() override {
    omp_set_num_threads(saved_threads_);
    kernels::set_conv2d_min_parallel_macs(saved_min_macs_);
  }
  int saved_threads_ = 1;
  int64_t saved_min_macs_ = 0;
};

}  // namespace

TEST(Conv2d, HandComputedDifferenceKernel) {
  // y[i, j] = x[i, j] - x[i + 1, j + 1] + 0.5 on x = 1..9 (3x3): every output is -4 + 0.5.
  Tensor x = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3});
  Tensor w = Tensor::from_vector<float>({1, 0, 0, -1}, {1, 1, 2, 2});
  Tensor b = Tensor::from_vector<float>({0.5f}, {1});
  Tensor y = conv2d(x, w, b);
  EXPECT_EQ(y.shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{-3.5f, -3.5f, -3.5f, -3.5f}));
}

TEST(Conv2d, HandComputedPaddedStride2) {
  // 3x3 box filter, padding 1, stride 2 on x = 1..9: the four corner windows.
  Tensor x = Tensor::from_vector<double>({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3});
  Tensor w = Tensor::ones({1, 1, 3, 3}, DType::f64);
  Tensor y = conv2d(x, w, Tensor(), Conv2dOptions::square(2, 1));
  EXPECT_EQ(y.shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(y.to_vector<double>(), (std::vector<double>{12, 16, 24, 28}));
}

TEST(Conv2d, HandComputedGradients) {
  // One 2x2 window per output on a 2x3 input with a 2x2 kernel: y = [y0, y1].
  Tensor x = Tensor::from_vector<double>({1, 2, 3, 4, 5, 6}, {1, 1, 2, 3});
  x.set_requires_grad();
  Tensor w = Tensor::from_vector<double>({1, 2, 3, 4}, {1, 1, 2, 2});
  w.set_requires_grad();
  Tensor b = Tensor::from_vector<double>({0}, {1});
  b.set_requires_grad();
  Tensor y = conv2d(x, w, b);
  // y0 = 1*1 + 2*2 + 3*4 + 4*5 = 37; y1 = 1*2 + 2*3 + 3*5 + 4*6 = 47.
  EXPECT_EQ(y.to_vector<double>(), (std::vector<double>{37, 47}));
  y.backward(Tensor::from_vector<double>({1, 10}, {1, 1, 1, 2}));
  // dx = w placed at each window, weighted by dy: [1, 2+10, 20; 3, 4+30, 40].
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{1, 12, 20, 3, 34, 40}));
  // dw[p][q] = x[p][q] * 1 + x[p][q + 1] * 10.
  EXPECT_EQ(w.grad().to_vector<double>(), (std::vector<double>{21, 32, 54, 65}));
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{11}));
}

TEST_P(ConvThreads, ForwardAndGradientsMatchDirectConvolution) {
  uint64_t seed = 100;
  for (const ConvCase& c : reference_cases()) {
    for (DType dtype : {DType::f64, DType::f32}) {
      SCOPED_TRACE(std::string(c.name) + (dtype == DType::f32 ? " f32" : " f64"));
      Tensor x = randn(c.x, dtype, ++seed).set_requires_grad();
      Tensor w = randn(c.w, dtype, ++seed).set_requires_grad();
      Tensor b = c.bias ? randn({c.w[0]}, dtype, ++seed).set_requires_grad() : Tensor();
      Tensor y = conv2d(x, w, b, c.options);
      Tensor grad_y = randn(y.shape(), dtype, ++seed);
      y.backward(grad_y);
      const Reference ref = reference_conv2d(x, w, b, c.options, grad_y);
      // Sums of up to a few hundred unit-variance products: float keeps ~1e-6 relative.
      const double atol = dtype == DType::f32 ? 2e-4 : 1e-11, rtol = dtype == DType::f32 ? 1e-4 : 1e-11;
      EXPECT_TRUE(all_close(y, ref.y, atol, rtol, "y"));
      EXPECT_TRUE(all_close(x.grad(), ref.grad_x, atol, rtol, "grad x"));
      EXPECT_TRUE(all_close(w.grad(), ref.grad_w, 10 * atol, rtol, "grad weight"));
      if (c.bias) {
        EXPECT_TRUE(all_close(b.grad(), ref.grad_b, 10 * atol, rtol, "grad bias"));
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Threads, ConvThreads, ::testing::Values(1, 2, 3));

TEST(Conv2d, Gradcheck) {
  const std::vector<ConvCase> cases = {
      {"plain_3x3", {2, 3, 5, 6}, {4, 3, 3, 3}, Conv2dOptions::square(1, 0)},
      {"stride2_pad1", {2, 2, 7, 6}, {3, 2, 3, 3}, Conv2dOptions::square(2, 1)},
      {"dilation2_pad2", {1, 2, 7, 7}, {2, 2, 3, 3}, Conv2dOptions::square(1, 2, 2)},
      {"groups2", {2, 4, 5, 5}, {6, 2, 3, 3}, Conv2dOptions::square(1, 1, 1, 2)},
      {"depthwise", {2, 3, 5, 4}, {3, 1, 3, 3}, Conv2dOptions::square(1, 1, 1, 3)},
      {"pointwise", {2, 5, 3, 4}, {3, 5, 1, 1}, Conv2dOptions::square(1, 0)},
      {"pointwise_stride2", {1, 3, 5, 5}, {2, 3, 1, 1}, Conv2dOptions::square(2, 0)},
      {"batch1_odd_asymmetric", {1, 3, 7, 5}, {2, 3, 3, 2}, Conv2dOptions{2, 1, 1, 0, 1, 2, 1}},
      {"one_by_one_output", {2, 2, 3, 3}, {3, 2, 3, 3}, Conv2dOptions::square(1, 0)},
      {"no_bias", {2, 2, 4, 5}, {3, 2, 2, 3}, Conv2dOptions::square(1, 1), false},
  };
  uint64_t seed = 500;
  for (const ConvCase& c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<Tensor> in = {randn(c.x, DType::f64, ++seed).set_requires_grad(),
                              randn(c.w, DType::f64, ++seed).set_requires_grad()};
    if (c.bias) in.push_back(randn({c.w[0]}, DType::f64, ++seed).set_requires_grad());
    const Conv2dOptions o = c.options;
    EXPECT_TRUE(test::gradcheck([o](const std::vector<Tensor>& t) { return conv_of(t, o); }, in));
  }
}

TEST(Conv2d, FloatMatchesDouble) {
  const std::vector<ConvCase> cases = {
      {"stride2_pad1", {2, 3, 9, 8}, {4, 3, 3, 3}, Conv2dOptions::square(2, 1)},
      {"groups4_dilation2", {2, 8, 9, 9}, {8, 2, 3, 3}, Conv2dOptions::square(1, 2, 2, 4)},
      {"pointwise_no_bias", {2, 6, 5, 5}, {4, 6, 1, 1}, Conv2dOptions::square(1, 0), false},
  };
  uint64_t seed = 900;
  for (const ConvCase& c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<Tensor> in = {randn(c.x, DType::f64, ++seed).set_requires_grad(),
                              randn(c.w, DType::f64, ++seed).set_requires_grad()};
    if (c.bias) in.push_back(randn({c.w[0]}, DType::f64, ++seed).set_requires_grad());
    const Conv2dOptions o = c.options;
    EXPECT_TRUE(test::float_matches_double([o](const std::vector<Tensor>& t) { return conv_of(t, o); }, in));
  }
}

TEST(Conv2d, GradientsOnlyWhereRequired) {
  Tensor x = randn({2, 3, 6, 6}, DType::f64, 1);
  Tensor w = randn({4, 3, 3, 3}, DType::f64, 2);
  Tensor b = randn({4}, DType::f64, 3);
  const Reference ref =
      reference_conv2d(x, w, b, Conv2dOptions::square(1, 1), Tensor::ones({2, 4, 6, 6}, DType::f64));

  w.set_requires_grad();  // input frozen: the node keeps x but not the weight
  Tensor y = conv2d(x, w, b, Conv2dOptions::square(1, 1));
  ASSERT_TRUE(y.requires_grad());
  y.backward(Tensor::ones(y.shape(), DType::f64));
  EXPECT_FALSE(x.grad().defined());
  EXPECT_FALSE(b.grad().defined());
  EXPECT_TRUE(all_close(w.grad(), ref.grad_w, 1e-11, 1e-11, "grad weight"));

  Tensor x2 = x.detach().clone().set_requires_grad();  // weight frozen
  Tensor y2 = conv2d(x2, w.detach(), b, Conv2dOptions::square(1, 1));
  y2.backward(Tensor::ones(y2.shape(), DType::f64));
  EXPECT_TRUE(all_close(x2.grad(), ref.grad_x, 1e-11, 1e-11, "grad x"));

  Tensor b3 = b.detach().clone().set_requires_grad();  // only the bias
  Tensor y3 = conv2d(x, w.detach(), b3, Conv2dOptions::square(1, 1));
  y3.backward(Tensor::ones(y3.shape(), DType::f64));
  EXPECT_TRUE(all_close(b3.grad(), ref.grad_b, 1e-11, 1e-11, "grad bias"));

  NoGradGuard no_grad;
  EXPECT_FALSE(conv2d(x2, w, b3).requires_grad());
}

// Empty batch: empty output, zero weight and bias gradients. Empty input plane seen only
// through padding: the output is the bias, the weight gradient zero, the bias gradient
// the sum of grad_y.
TEST(Conv2d, EmptyBatchAndEmptyPlane) {
  Tensor w = randn({4, 3, 3, 3}, DType::f64, 2).set_requires_grad();
  Tensor b = randn({4}, DType::f64, 3).set_requires_grad();
  Tensor x0 = Tensor::zeros({0, 3, 5, 5}, DType::f64).set_requires_grad();
  Tensor y0 = conv2d(x0, w, b, Conv2dOptions::square(1, 1));
  EXPECT_EQ(y0.shape(), (Shape{0, 4, 5, 5}));
  y0.backward(Tensor::zeros(y0.shape(), DType::f64));
  EXPECT_EQ(x0.grad().shape(), (Shape{0, 3, 5, 5}));
  EXPECT_EQ(w.grad().to_vector<double>(), std::vector<double>(108, 0.0));
  EXPECT_EQ(b.grad().to_vector<double>(), std::vector<double>(4, 0.0));

  Tensor w1 = randn({4, 3, 1, 1}, DType::f64, 4).set_requires_grad();
  Tensor b1 = Tensor::from_vector<double>({1, -2, 3, 0.5}, {4}).set_requires_grad();
  Tensor x1 = Tensor::zeros({2, 3, 0, 4}, DType::f64).set_requires_grad();
  Tensor y1 = conv2d(x1, w1, b1, Conv2dOptions::square(1, 1));
  ASSERT_EQ(y1.shape(), (Shape{2, 4, 2, 6}));
  const auto yv = y1.to_vector<double>();
  for (size_t i = 0; i < yv.size(); ++i) EXPECT_EQ(yv[i], b1.to_vector<double>()[(i / 12) % 4]) << i;
  y1.backward(Tensor::ones(y1.shape(), DType::f64));
  EXPECT_EQ(x1.grad().shape(), (Shape{2, 3, 0, 4}));
  EXPECT_EQ(w1.grad().to_vector<double>(), std::vector<double>(12, 0.0));
  EXPECT_EQ(b1.grad().to_vector<double>(), std::vector<double>(4, 24.0));
}

TEST(Conv2d, ErrorsNameTheOpAndShapes) {
  Tensor x = Tensor::zeros({2, 4, 8, 8});
  Tensor w = Tensor::zeros({6, 4, 3, 3});
  EXPECT_HPA_ERROR(conv2d(Tensor::zeros({4, 8, 8}), w), "conv2d", "input", "[4, 8, 8]");
  EXPECT_HPA_ERROR(conv2d(x, Tensor::zeros({6, 4, 3})), "conv2d", "weight", "[6, 4, 3]");
  EXPECT_HPA_ERROR(conv2d(x, Tensor::zeros({6, 3, 3, 3})), "conv2d", "[2, 4, 8, 8]", "[6, 3, 3, 3]");
  EXPECT_HPA_ERROR(conv2d(x, Tensor::zeros({6, 4, 3, 3}), Tensor(), Conv2dOptions::square(1, 0, 1, 2)),
                   "conv2d", "[2, 4, 8, 8]", "[6, 4, 3, 3]", "groups 2");
  EXPECT_HPA_ERROR(conv2d(x, Tensor::zeros({5, 2, 3, 3}), Tensor(), Conv2dOptions::square(1, 0, 1, 2)),
                   "conv2d", "[5, 2, 3, 3]", "not divisible by groups 2");
  EXPECT_HPA_ERROR(conv2d(x, w, Tensor::zeros({5})), "conv2d", "bias", "[5]", "[6, 4, 3, 3]");
  EXPECT_HPA_ERROR(conv2d(x, w, Tensor::zeros({6, 1})), "conv2d", "bias", "[6, 1]");
  EXPECT_HPA_ERROR(conv2d(x, w, Tensor::zeros({6}, DType::f64)), "conv2d", "dtype", "f64[6]");
  EXPECT_HPA_ERROR(conv2d(x, Tensor::zeros({6, 4, 3, 3}, DType::f64)), "conv2d", "dtype", "f32[2, 4, 8, 8]",
                   "f64[6, 4, 3, 3]");
  EXPECT_HPA_ERROR(conv2d(Tensor::zeros({2, 4, 8, 8}, DType::i32), Tensor::zeros({6, 4, 3, 3}, DType::i32)),
                   "conv2d", "f32 or f64", "i32[2, 4, 8, 8]");
  EXPECT_HPA_ERROR(conv2d(x, w, Tensor(), Conv2dOptions::square(0, 0)), "conv2d", "stride (0, 0)");
  EXPECT_HPA_ERROR(conv2d(x, w, Tensor(), Conv2dOptions{1, 1, -1, 0, 1, 1, 1}), "conv2d", "padding (-1, 0)");
  EXPECT_HPA_ERROR(conv2d(x, w, Tensor(), Conv2dOptions::square(1, 0, 0)), "conv2d", "dilation (0, 0)");
  EXPECT_HPA_ERROR(conv2d(x, w, Tensor(), Conv2dOptions::square(1, 0, 1, 0)), "conv2d", "groups 0");
  EXPECT_HPA_ERROR(conv2d(x, Tensor::zeros({6, 4, 9, 3})), "conv2d", "output size 0 x 6", "[2, 4, 8, 8]",
                   "[6, 4, 9, 3]");
  EXPECT_HPA_ERROR(conv2d(x, w, Tensor(), Conv2dOptions::square(1, 0, 4)), "conv2d", "output size",
                   "dilation (4, 4)");
  EXPECT_HPA_ERROR(conv2d(x, Tensor::zeros({6, 4, 0, 3})), "conv2d", "[6, 4, 0, 3]", "empty");
  EXPECT_HPA_ERROR(conv2d(Tensor(), w), "conv2d", "undefined");
}
