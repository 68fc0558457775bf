// CPU-vs-CUDA parity of the pools (kernels/pool.cu, kernels/concat_pool.cu): max_pool2d and
// avg_pool2d over many geometries (padding, ceil_mode, count_include_pad, rectangular and
// overlapping windows), the global pools and ACP on warp-per-plane and block-per-plane
// shapes, vectorized and not, ResNet50 shapes; the max tie rule (first maximum in row-major
// order, NaN propagates, +0/-0 count as equal) in forward and backward; argument errors on
// CUDA tensors; guard regions around every output of direct kernel calls, with aligned and
// misaligned buffers.
//
// Tolerances. The windowed pools, the global max and every backward are bit-identical to
// the CPU by construction (same HPA_HD window scans, gathers that add in the CPU scatter's
// order, the saved argmax), so they are compared byte for byte. The averages of ACP and
// global_avg_pool2d are double sums in a different order: f64 differs by ~1.1e-16 relative
// per term of a sum of values ~1, averaged, so atol 1e-15, rtol 1e-12; f32 rounds double
// sums that agree far below a float ulp, so at most 1 ulp apart: atol 1e-7, rtol 1e-6.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

#include "kernels/concat_pool.h"
#include "kernels/pool.h"
#include "tensor/autograd.h"
#include "tensor/ops/pool.h"
#include "tests/gpu_util.h"
#ifdef HPA_WITH_CUDA
#include "kernels/cuda_check.h"
#include "tensor/cuda_backend.h"
#endif

using namespace hpa;
using test::cuda_parity;

namespace {

using UnaryOp = std::function<Tensor(const Tensor&)>;

struct Tolerance {
  double atol, rtol;
};

Tolerance average_tolerance(DType dtype) {
  return dtype == DType::f32 ? Tolerance{1e-7, 1e-6} : Tolerance{1e-15, 1e-12};
}

// The raw bytes of a tensor (host copy), for bit-for-bit comparisons that NaN cannot fool.
std::vector<unsigned char> bytes_of(const Tensor& t) {
  const Tensor h = t.to(Device::cpu());
  const auto* p = static_cast<const unsigned char*>(h.data_ptr());
  return std::vector<unsigned char>(p, p + h.numel() * dtype_size(h.dtype()));
}

::testing::AssertionResult same_bits(const Tensor& actual, const Tensor& expected, const char* what) {
  if (actual.shape() != expected.shape() || actual.dtype() != expected.dtype())
    return ::testing::AssertionFailure() << what << ": " << actual.desc() << " vs CPU " << expected.desc();
  const auto a = bytes_of(actual), e = bytes_of(expected);
  if (a == e) return ::testing::AssertionSuccess();
  const size_t element = dtype_size(expected.dtype());
  size_t i = 0;
  while (std::memcmp(a.data() + i * element, e.data() + i * element, element) == 0) ++i;
  const auto av = test::as_doubles(actual), ev = test::as_doubles(expected);
  return ::testing::AssertionFailure()
         << what << ": element " << i << " is " << av[i] << " on CUDA, " << ev[i] << " on the CPU";
}

// Output and x's gradient (seeded with a fixed random projection) equal bit for bit.
::testing::AssertionResult bit_identical(const UnaryOp& f, const Tensor& x0, uint64_t seed = 11) {
  Tensor xc = x0.clone();
  xc.set_requires_grad();
  Tensor xg = x0.to(Device::cuda(0));
  xg.set_requires_grad();
  Tensor yc = f(xc), yg = f(xg);
  if (!yg.is_cuda())
    return ::testing::AssertionFailure() << "op returned " << yg.desc() << " for a CUDA input";
  auto r = same_bits(yg, yc, "output");
  if (!r) return r;
  Generator gen(seed);
  const Tensor proj = Tensor::randn(yc.shape(), yc.dtype(), Device::cpu(), &gen);
  yc.backward(proj);
  yg.backward(proj.to(Device::cuda(0)));
  return same_bits(xg.grad(), xc.grad(), "gradient");
}

// ACP: the average half within the average tolerance, the max half and the gradient bit
// for bit.
::testing::AssertionResult acp_parity(const Tensor& x0, uint64_t seed = 11) {
  const int64_t c = x0.size(1);
  Tensor xc = x0.clone();
  xc.set_requires_grad();
  Tensor xg = x0.to(Device::cuda(0));
  xg.set_requires_grad();
  Tensor yc = adaptive_concat_pool2d(xc), yg = adaptive_concat_pool2d(xg);
  if (!yg.is_cuda()) return ::testing::AssertionFailure() << "ACP returned " << yg.desc();
  const auto a = test::as_doubles(yg), e = test::as_doubles(yc);
  const Tolerance tol = average_tolerance(x0.dtype());
  const auto ga = bytes_of(yg), ea = bytes_of(yc);
  const size_t element = dtype_size(x0.dtype());
  for (int64_t n = 0; n < x0.size(0); ++n) {
    for (int64_t k = 0; k < 2 * c; ++k) {
      const size_t i = static_cast<size_t>(n * 2 * c + k);
      if (k < c) {
        if (std::isnan(a[i]) && std::isnan(e[i])) continue;  // a NaN in the plane: both propagate it
        if (!(std::abs(a[i] - e[i]) <= tol.atol + tol.rtol * std::abs(e[i])))
          return ::testing::AssertionFailure() << "average of plane (" << n << ", " << k << "): " << a[i]
                                               << " on CUDA, " << e[i] << " on the CPU";
      } else if (std::memcmp(ga.data() + i * element, ea.data() + i * element, element) != 0) {
        return ::testing::AssertionFailure() << "max of plane (" << n << ", " << k - c << "): " << a[i]
                                             << " on CUDA, " << e[i] << " on the CPU";
      }
    }
  }
  Generator gen(seed);
  const Tensor proj = Tensor::randn(yc.shape(), yc.dtype(), Device::cpu(), &gen);
  yc.backward(proj);
  yg.backward(proj.to(Device::cuda(0)));
  return same_bits(xg.grad(), xc.grad(), "ACP gradient");
}

Pool2dOptions geometry(int kh, int kw, int sh, int sw, int ph, int pw, bool ceil_mode,
                       bool count_include_pad) {
  return {kh, kw, sh, sw, ph, pw, ceil_mode, count_include_pad};
}

const std::vector<Pool2dOptions> kGeometries = {
    geometry(2, 2, 2, 2, 0, 0, false, true),   // ResNet-free 2x2
    geometry(3, 3, 2, 2, 1, 1, false, true),   // ResNet stem max pool: overlapping windows
    geometry(3, 3, 2, 2, 1, 1, true, true),    // ceil_mode with padding
    geometry(3, 3, 2, 2, 1, 1, true, false),   // ... excluding the padding from the divisor
    geometry(3, 3, 1, 1, 1, 1, false, false),  // Inception's avg pool
    geometry(2, 2, 2, 2, 0, 0, true, true),    // ceil_mode on odd sizes: partial last window
    geometry(3, 2, 2, 1, 1, 0, false, true),   // rectangular
    geometry(5, 5, 1, 1, 2, 2, false, true),   // each input in up to 25 windows
    geometry(3, 3, 3, 3, 0, 0, true, true),    // non-overlapping, ceil_mode
};

// Integers in [-3, 3]: many ties within every window.
Tensor tie_heavy(const Shape& s, DType dtype, uint64_t seed) {
  auto v = test::randn(s, DType::f64, seed).to_vector<double>();
  for (double& e : v) e = std::round(std::clamp(e * 2.0, -3.0, 3.0));
  return Tensor::from_vector(v, s).to(dtype);
}

}  // namespace

TEST(GpuPool, WindowedPoolsAreBitIdenticalOverManyGeometries) {
  HPA_REQUIRE_GPU();
  for (const Shape& s : {Shape{3, 5, 7, 9}, Shape{2, 3, 8, 8}, Shape{1, 2, 5, 6}}) {
    for (DType dtype : {DType::f32, DType::f64}) {
      for (const Tensor& x : {test::randn(s, dtype, 5), tie_heavy(s, dtype, 6)}) {
        for (const Pool2dOptions& o : kGeometries) {
          EXPECT_TRUE(bit_identical([&](const Tensor& t) { return max_pool2d(t, o); }, x))
              << "max_pool2d " << s << " " << dtype << " k" << o.kernel_h << "x" << o.kernel_w << " s"
              << o.stride_h << "x" << o.stride_w << " p" << o.pad_h << "x" << o.pad_w
              << (o.ceil_mode ? " ceil" : "");
          EXPECT_TRUE(bit_identical([&](const Tensor& t) { return avg_pool2d(t, o); }, x))
              << "avg_pool2d " << s << " " << dtype << " k" << o.kernel_h << "x" << o.kernel_w << " s"
              << o.stride_h << "x" << o.stride_w << " p" << o.pad_h << "x" << o.pad_w
              << (o.ceil_mode ? " ceil" : "") << (o.count_include_pad ? "" : " exclude_pad");
        }
      }
    }
  }
}

TEST(GpuPool, OneByOneInputs) {
  HPA_REQUIRE_GPU();
  const Tensor x = test::randn({2, 3, 1, 1}, DType::f32, 8);
  EXPECT_TRUE(bit_identical([](const Tensor& t) { return max_pool2d(t, Pool2dOptions::square(1, 1)); }, x));
  EXPECT_TRUE(
      bit_identical([](const Tensor& t) { return avg_pool2d(t, Pool2dOptions::square(2, 2, 0, true)); }, x));
  EXPECT_TRUE(acp_parity(x));
}

TEST(GpuPool, MaxPoolNaNPropagatesLikeTheCpu) {
  HPA_REQUIRE_GPU();
  for (DType dtype : {DType::f32, DType::f64}) {
    auto v = tie_heavy({2, 2, 7, 7}, DType::f64, 9).to_vector<double>();
    for (size_t i : {size_t{3}, size_t{10}, size_t{11}, size_t{60}, size_t{150}})
      v[i] = std::numeric_limits<double>::quiet_NaN();
    const Tensor x = Tensor::from_vector(v, {2, 2, 7, 7}).to(dtype);
    for (const Pool2dOptions& o : kGeometries)
      EXPECT_TRUE(bit_identical([&](const Tensor& t) { return max_pool2d(t, o); }, x)) << dtype;
    EXPECT_TRUE(bit_identical([](const Tensor& t) { return global_max_pool2d(t); }, x)) << dtype;
  }
}

TEST(GpuPool, ResNetShapesAreBitIdentical) {
  HPA_REQUIRE_GPU();
  const Pool2dOptions stem = Pool2dOptions::square(3, 2, 1);
  EXPECT_TRUE(bit_identical([&](const Tensor& t) { return max_pool2d(t, stem); },
                            test::randn({4, 64, 112, 112}, DType::f32, 10)));
  EXPECT_TRUE(bit_identical([&](const Tensor& t) { return max_pool2d(t, stem); },
                            test::randn({2, 64, 56, 56}, DType::f64, 11)));
  EXPECT_TRUE(bit_identical([](const Tensor& t) { return avg_pool2d(t, Pool2dOptions::square(2, 2)); },
                            test::randn({2, 512, 28, 28}, DType::f32, 12)));
}

TEST(GpuPool, GlobalPoolsAndAcpMatchTheCpu) {
  HPA_REQUIRE_GPU();
  const std::vector<Shape> shapes = {
      {3, 5, 7, 9},       // hw 63: one warp per plane, single-element loads
      {4, 2048, 16, 16},  // ResNet50 final map at 512x512 input: warp per plane, 16-byte loads
      {8, 2048, 7, 7},    // ResNet50 final map at 224x224
      {2, 3, 100, 100},   // hw 10000: a block per plane, 16-byte loads
      {2, 3, 101, 99},    // a block per plane, single-element loads
      {1, 4, 45, 45},     // batch 1, hw 2025 (warp per plane, unaligned)
      {2, 3, 1, 1},       // 1x1 spatial
  };
  for (const Shape& s : shapes) {
    for (DType dtype : {DType::f32, DType::f64}) {
      const Tensor x = test::randn(s, dtype, 13);
      EXPECT_TRUE(acp_parity(x)) << s << " " << dtype;
      EXPECT_TRUE(bit_identical([](const Tensor& t) { return global_max_pool2d(t); }, x))
          << s << " " << dtype;
      const Tolerance tol = average_tolerance(dtype);
      EXPECT_TRUE(cuda_parity([](const std::vector<Tensor>& in) { return global_avg_pool2d(in[0]); },
                              {x.clone().set_requires_grad()}, tol.atol, tol.rtol))
          << s << " " << dtype;
    }
  }
}

// Planes built so that the maximum appears several times, in places different threads of
// a plane group read, and the first (lowest index) one must win: the gradient of the max
// part lands there on both devices.
TEST(GpuPool, AcpTieRuleIsTheCpuFirstMaximum) {
  HPA_REQUIRE_GPU();
  for (const Shape& s : {Shape{1, 4, 16, 16}, Shape{1, 4, 100, 100}}) {
    const int64_t hw = s[2] * s[3];
    std::vector<double> v = test::randn(s, DType::f64, 14).to_vector<double>();
    for (double& e : v) e = std::clamp(e, -3.0, 3.0);
    std::vector<int64_t> expected(4);
    // Plane 0: three equal maxima; the earliest sits late in a lane's share.
    for (int64_t i : {hw - 1, hw / 2 + 3, int64_t{37}}) v[static_cast<size_t>(i)] = 5.0;
    expected[0] = 37;
    // Plane 1: constant, every element ties: index 0 wins.
    for (int64_t i = 0; i < hw; ++i) v[static_cast<size_t>(hw + i)] = 0.25;
    expected[1] = 0;
    // Plane 2: NaNs beat the maximum; the first NaN wins.
    v[static_cast<size_t>(2 * hw + 5)] = 9.0;
    v[static_cast<size_t>(2 * hw + hw - 2)] = std::numeric_limits<double>::quiet_NaN();
    v[static_cast<size_t>(2 * hw + 33)] = std::numeric_limits<double>::quiet_NaN();
    expected[2] = 33;
    // Plane 3: all <= 0 with +0 and -0 maxima: equal, so the first (index 6, -0) wins.
    for (int64_t i = 0; i < hw; ++i)
      v[static_cast<size_t>(3 * hw + i)] = -1.0 - 1e-3 * static_cast<double>(i % 7);
    v[static_cast<size_t>(3 * hw + 6)] = -0.0;
    v[static_cast<size_t>(3 * hw + 40)] = 0.0;
    expected[3] = 6;
    for (DType dtype : {DType::f32, DType::f64}) {
      const Tensor x = Tensor::from_vector(v, s).to(dtype);
      EXPECT_TRUE(bit_identical([](const Tensor& t) { return global_max_pool2d(t); }, x))
          << s << " " << dtype;
      Tensor xg = x.to(Device::cuda(0));
      xg.set_requires_grad();
      Tensor y = global_max_pool2d(xg);
      y.backward(Tensor::ones(y.shape(), dtype, Device::cuda(0)));
      const auto g = test::as_doubles(xg.grad());
      for (int64_t p = 0; p < 4; ++p) {
        for (int64_t i = 0; i < hw; ++i) {
          ASSERT_EQ(g[static_cast<size_t>(p * hw + i)], i == expected[static_cast<size_t>(p)] ? 1.0 : 0.0)
              << s << " " << dtype << " plane " << p << " element " << i;
        }
      }
      const auto out = bytes_of(y);
      const size_t element = dtype_size(dtype);
      double zero_value;
      if (dtype == DType::f32) {
        float z;
        std::memcpy(&z, out.data() + 3 * element, element);
        zero_value = z;
      } else {
        std::memcpy(&zero_value, out.data() + 3 * element, element);
      }
      EXPECT_TRUE(zero_value == 0.0 && std::signbit(zero_value))
          << "plane 3's maximum must be the first zero, -0";
      EXPECT_TRUE(acp_parity(x)) << s << " " << dtype;
    }
  }
}

TEST(GpuPoolErrors, ArgumentErrorsNameTheOp) {
  HPA_REQUIRE_GPU();
  const Tensor x = Tensor::zeros({2, 3, 4, 4}, DType::f32, Device::cuda(0));
  EXPECT_HPA_ERROR(max_pool2d(x, Pool2dOptions::square(3, 1, 2)), "max_pool2d", "padding", "cuda:0");
  EXPECT_HPA_ERROR(
      avg_pool2d(Tensor::zeros({2, 3, 4}, DType::f32, Device::cuda(0)), Pool2dOptions::square(2, 2)),
      "avg_pool2d", "4-D");
  EXPECT_HPA_ERROR(adaptive_concat_pool2d(Tensor::zeros({2, 3, 4, 4}, DType::i32, Device::cuda(0))),
                   "adaptive_concat_pool2d", "f32 or f64");
  EXPECT_HPA_ERROR(global_max_pool2d(Tensor::zeros({2, 3, 0, 4}, DType::f32, Device::cuda(0))),
                   "global_max_pool2d", "non-empty");
}

#ifdef HPA_WITH_CUDA

namespace {

kernels::Stream stream0() { return static_cast<kernels::Stream>(cuda::stream(0)); }

template <class T>
void upload(test::GuardedDeviceBuffer<T>& dst, const Tensor& src) {
  const auto v = src.to_vector<T>();
  HPA_CUDA_CHECK(cudaMemcpy(dst.ptr(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
}

template <class T>
void expect_equal(const std::vector<T>& actual, const std::vector<T>& expected, const char* what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  EXPECT_EQ(std::memcmp(actual.data(), expected.data(), actual.size() * sizeof(T)), 0) << what;
}

// Windowed pools called directly, every output inside guard regions; guard 1 misaligns.
template <class T>
void check_pool_kernels(const Shape& s, const Pool2dOptions& o, int64_t guard) {
  SCOPED_TRACE(::testing::Message() << s << " guard " << guard << " " << dtype_of<T>::value);
  kernels::Pool2dArgs a;
  a.planes = s[0] * s[1];
  a.in_h = s[2];
  a.in_w = s[3];
  a.kernel_h = o.kernel_h;
  a.kernel_w = o.kernel_w;
  a.stride_h = o.stride_h;
  a.stride_w = o.stride_w;
  a.pad_h = o.pad_h;
  a.pad_w = o.pad_w;
  a.count_include_pad = o.count_include_pad;
  a.out_h = kernels::pool_output_size(a.in_h, o.kernel_h, o.stride_h, o.pad_h, o.ceil_mode);
  a.out_w = kernels::pool_output_size(a.in_w, o.kernel_w, o.stride_w, o.pad_w, o.ceil_mode);
  const int64_t in_n = s.numel(), out_n = a.planes * a.out_h * a.out_w;
  const Tensor x = tie_heavy(s, dtype_of<T>::value, 15);
  const Tensor g = test::randn({out_n}, dtype_of<T>::value, 16);
  std::vector<T> y(out_n), avg(out_n), gx_max(in_n), gx_avg(in_n);
  std::vector<int32_t> idx(out_n);
  kernels::max_pool2d_forward_cpu(x.data<T>(), a, y.data(), idx.data());
  kernels::avg_pool2d_forward_cpu(x.data<T>(), a, avg.data());
  kernels::max_pool2d_backward_cpu(g.data<T>(), idx.data(), a, gx_max.data());
  kernels::avg_pool2d_backward_cpu(g.data<T>(), a, gx_avg.data());

  test::GuardedDeviceBuffer<T> x_d(in_n, guard), g_d(out_n, guard), y_d(out_n, guard), avg_d(out_n, guard),
      gx_max_d(in_n, guard), gx_avg_d(in_n, guard);
  test::GuardedDeviceBuffer<int32_t> idx_d(out_n, guard);
  upload(x_d, x);
  upload(g_d, g);
  kernels::max_pool2d_forward_cuda(x_d.ptr(), a, y_d.ptr(), idx_d.ptr(), stream0());
  kernels::avg_pool2d_forward_cuda(x_d.ptr(), a, avg_d.ptr(), stream0());
  kernels::max_pool2d_backward_cuda(g_d.ptr(), idx_d.ptr(), a, gx_max_d.ptr(), stream0());
  kernels::avg_pool2d_backward_cuda(g_d.ptr(), a, gx_avg_d.ptr(), stream0());
  for (auto* b : {&y_d, &avg_d, &gx_max_d, &gx_avg_d}) EXPECT_TRUE(b->guards_intact());
  EXPECT_TRUE(idx_d.guards_intact());
  expect_equal(y_d.values(), y, "max_pool2d y");
  expect_equal(idx_d.values(), idx, "max_pool2d argmax");
  expect_equal(avg_d.values(), avg, "avg_pool2d y");
  expect_equal(gx_max_d.values(), gx_max, "max_pool2d grad_x");
  expect_equal(gx_avg_d.values(), gx_avg, "avg_pool2d grad_x");
}

// ACP called directly: avg and max interleaved in one [n, 2c] buffer as the op lays them out.
template <class T>
void check_concat_pool_kernels(const Shape& s, int64_t guard) {
  SCOPED_TRACE(::testing::Message() << s << " guard " << guard << " " << dtype_of<T>::value);
  const kernels::ConcatPoolArgs a{s[0], s[1], s[2] * s[3], 2 * s[1]};
  const int64_t planes = a.n * a.c, in_n = s.numel();
  const Tensor x = test::randn(s, dtype_of<T>::value, 17);
  const Tensor g = test::randn({2 * planes}, dtype_of<T>::value, 18);
  std::vector<T> out(2 * planes), gx(in_n);
  std::vector<int32_t> idx(planes);
  kernels::concat_pool_forward_cpu(x.data<T>(), a, out.data(), out.data() + a.c, idx.data());
  kernels::concat_pool_backward_cpu(g.data<T>(), g.data<T>() + a.c, idx.data(), a, gx.data());

  test::GuardedDeviceBuffer<T> x_d(in_n, guard), g_d(2 * planes, guard), out_d(2 * planes, guard),
      gx_d(in_n, guard);
  test::GuardedDeviceBuffer<int32_t> idx_d(planes, guard);
  upload(x_d, x);
  upload(g_d, g);
  kernels::concat_pool_forward_cuda(x_d.ptr(), a, out_d.ptr(), out_d.ptr() + a.c, idx_d.ptr(), stream0());
  kernels::concat_pool_backward_cuda(g_d.ptr(), g_d.ptr() + a.c, idx_d.ptr(), a, gx_d.ptr(), stream0());
  EXPECT_TRUE(x_d.guards_intact());
  EXPECT_TRUE(out_d.guards_intact());
  EXPECT_TRUE(gx_d.guards_intact());
  EXPECT_TRUE(idx_d.guards_intact());
  expect_equal(idx_d.values(), idx, "argmax");
  expect_equal(gx_d.values(), gx, "grad_x");
  const auto got = out_d.values();
  const Tolerance tol = average_tolerance(dtype_of<T>::value);
  for (int64_t i = 0; i < 2 * planes; ++i) {
    const bool is_avg = (i % (2 * a.c)) < a.c;
    const double e = static_cast<double>(out[i]), v = static_cast<double>(got[i]);
    if (is_avg) {
      EXPECT_LE(std::abs(v - e), tol.atol + tol.rtol * std::abs(e)) << "average " << i;
    } else {
      EXPECT_EQ(v, e) << "max " << i;
    }
  }
}

}  // namespace

TEST(GpuPoolKernels, WindowedPoolOutputsStayInBounds) {
  HPA_REQUIRE_GPU();
  for (int64_t guard : {int64_t{256}, int64_t{1}}) {
    for (const Pool2dOptions& o : {kGeometries[1], kGeometries[3], kGeometries[6]}) {
      check_pool_kernels<float>({3, 5, 7, 9}, o, guard);
      check_pool_kernels<double>({2, 3, 8, 8}, o, guard);
    }
  }
}

TEST(GpuPoolKernels, ConcatPoolOutputsStayInBounds) {
  HPA_REQUIRE_GPU();
  for (int64_t guard : {int64_t{256}, int64_t{1}}) {
    for (const Shape& s :
         {Shape{3, 5, 7, 9}, Shape{2, 64, 16, 16}, Shape{1, 3, 100, 100}, Shape{2, 3, 1, 1}}) {
      check_concat_pool_kernels<float>(s, guard);
      check_concat_pool_kernels<double>(s, guard);
    }
  }
}

#endif  // HPA_WITH_CUDA
