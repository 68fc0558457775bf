// CPU-vs-CUDA parity of conv2d (kernels/conv.cu, cuDNN): forward, backward-data,
// backward-filter and the bias, f32 and f64, on odd shapes (rectangular kernels, strides,
// padding, dilation, groups, depthwise, 1x1 maps, batch 1, empty batch and planes) and on
// ResNet50 stage shapes; TF32 on and off through one shape (the algorithm cache keys on
// the flag); partial gradients; device-mismatch errors; guard regions around every
// output of direct launcher calls; the algorithm cache (one search per shape); and the
// HPA_CUDNN_CHECK / HPA_CUBLAS_CHECK messages, which need no GPU.
//
// Tolerances. Inputs are x ~ N(0, 1) and weight ~ N(0, 1/fan_in), so y and grad_x have
// magnitude ~1, while grad_weight and grad_bias are sums of N x H_out x W_out products
// (magnitude ~sqrt of that, up to ~80 here). Each output is a dot product of length K (up
// to 2304 = 3x3x256 forward, 6272 = 2x56x56 for the filter gradient). Rounding error of
// such a sum is normwise: about eps x sqrt(K) x (the sum's scale), not a fraction of the
// element itself, which can cancel to ~0. So the ResNet shapes are compared per tensor
// with atol = tol x rms(reference) and rtol = tol:
//   f64: tol 1e-10. eps 1.1e-16 x sqrt(6272) ~ 1e-14 normwise: four orders of margin for
//        cuDNN's different summation order (and FFT/Winograd algorithms, whose error is
//        normwise too).
//   f32, TF32 off: tol 1e-4. eps 6e-8 x sqrt(6272) ~ 5e-6 typical, a few times that for
//        blocked/FFT orders: ~10x margin, while a wrong tap, group or stride is O(1).
//   f32, TF32 on: tol 1e-2. TF32 keeps 10 mantissa bits (unit roundoff 4.9e-4) on each
//        input; the product error ~1e-3 normwise.
// The odd shapes (K <= 75, magnitudes <= ~15) use cuda_parity's fixed atol = rtol: f64
// 1e-10, f32 1e-4 (f32 typical error there is ~1e-6 absolute).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/conv.h"
#include "tensor/autograd.h"
#include "tensor/ops/conv.h"
#include "tensor/ops/elementwise.h"
#include "tests/gpu_util.h"
#ifdef HPA_WITH_CUDA
#include "kernels/cudnn_check.h"
#include "tensor/cuda_backend.h"
#endif

using namespace hpa;
using test::cuda_parity;

namespace {

struct ConvCase {
  Shape x, weight;
  Conv2dOptions options;
  bool bias = true;
  std::string name;
};

test::Fn conv_fn(const Conv2dOptions& o) {
  return [o](const std::vector<Tensor>& in) {
    return conv2d(in[0], in[1], in.size() > 2 ? in[2] : Tensor(), o);
  };
}

// x ~ N(0, 1), weight ~ N(0, 1/fan_in), bias ~ N(0, 1); all require gradients.
std::vector<Tensor> conv_inputs(const ConvCase& c, DType dtype, uint64_t seed) {
  Generator gen(seed);
  Tensor x = Tensor::randn(c.x, dtype, Device::cpu(), &gen);
  const double fan_in = static_cast<double>(c.weight[1] * c.weight[2] * c.weight[3]);
  Tensor w = Tensor::randn(c.weight, dtype, Device::cpu(), &gen) * (1.0 / std::sqrt(fan_in));
  x.set_requires_grad();
  w.set_requires_grad();
  std::vector<Tensor> in{x, w};
  if (c.bias) {
    Tensor b = Tensor::randn({c.weight[0]}, dtype, Device::cpu(), &gen);
    b.set_requires_grad();
    in.push_back(b);
  }
  return in;
}

double rms(const Tensor& t) {
  const auto v = test::as_doubles(t);
  double s = 0;
  for (double e : v) s += e * e;
  return v.empty() ? 0.0 : std::sqrt(s / static_cast<double>(v.size()));
}

// cuda_parity with a normwise tolerance per tensor: atol = tol x rms(reference), rtol = tol
// (see the header for why). TF32 is off unless `tf32`.
::testing::AssertionResult normwise_parity(const test::Fn& f, const std::vector<Tensor>& inputs, double tol,
                                           bool tf32 = false, uint64_t seed = 11) {
  test::NoTf32 exact;
#ifdef HPA_WITH_CUDA
  cuda::set_allow_tf32(tf32);
#endif
  std::vector<Tensor> cpu_in, gpu_in;
  for (const auto& t : inputs) {
    Tensor c = t.detach().clone(), g = t.detach().to(Device::cuda(0));
    if (t.requires_grad()) {
      c.set_requires_grad();
      g.set_requires_grad();
    }
    cpu_in.push_back(c);
    gpu_in.push_back(g);
  }
  Tensor oc = f(cpu_in), og = f(gpu_in);
  if (!og.is_cuda())
    return ::testing::AssertionFailure() << "op returned " << og.desc() << " for CUDA inputs";
  auto r = test::all_close(og, oc, tol * rms(oc), tol, "CUDA output");
  if (!r) return r;
  Generator gen(seed);
  Tensor proj = Tensor::randn(oc.shape(), oc.dtype(), Device::cpu(), &gen);
  oc.backward(proj);
  og.backward(proj.to(Device::cuda(0)));
  for (size_t k = 0; k < cpu_in.size(); ++k) {
    if (!cpu_in[k].requires_grad()) continue;
    const Tensor& ref = cpu_in[k].grad();
    r = test::all_close(gpu_in[k].grad(), ref, tol * rms(ref), tol,
                        "CUDA gradient of input " + std::to_string(k));
    if (!r) return r;
  }
  return ::testing::AssertionSuccess();
}

double fixed_tolerance(DType dtype) { return dtype == DType::f64 ? 1e-10 : 1e-4; }
double normwise_tolerance(DType dtype) { return dtype == DType::f64 ? 1e-10 : 1e-4; }

Conv2dOptions options(int stride_h, int stride_w, int pad_h, int pad_w, int dilation_h, int dilation_w,
                      int groups) {
  return {stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups};
}

const std::vector<ConvCase>& odd_cases() {
  static const std::vector<ConvCase> cases = {
      {{3, 5, 7, 9}, {4, 5, 3, 3}, Conv2dOptions::square(1, 1), true, "3x3 pad 1"},
      {{3, 5, 7, 9}, {6, 5, 3, 2}, options(2, 1, 1, 0, 1, 2, 1), false, "3x2 stride (2,1) dilation (1,2)"},
      {{2, 6, 9, 7}, {9, 2, 3, 3}, Conv2dOptions::square(2, 1, 1, 3), true, "groups 3 stride 2"},
      {{2, 8, 7, 5}, {8, 1, 3, 3}, Conv2dOptions::square(1, 1, 1, 8), true, "depthwise"},
      {{2, 3, 11, 13}, {4, 3, 5, 5}, Conv2dOptions::square(3, 4, 2), true, "5x5 dilation 2 stride 3"},
      {{1, 3, 1, 1}, {5, 3, 1, 1}, Conv2dOptions::square(1, 0), true, "batch 1, 1x1 map"},
      {{2, 3, 1, 1}, {4, 3, 3, 3}, Conv2dOptions::square(1, 1), true, "1x1 map, 3x3 kernel, pad 1"},
      {{3, 4, 6, 6}, {4, 4, 1, 1}, Conv2dOptions::square(2, 0), true, "1x1 stride 2"},
  };
  return cases;
}

TEST(GpuConv2d, OddShapesMatchCpu) {
  HPA_REQUIRE_GPU();
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const ConvCase& c : odd_cases()) {
      SCOPED_TRACE(c.name + (dtype == DType::f32 ? " f32" : " f64"));
      const double tol = fixed_tolerance(dtype);
      EXPECT_TRUE(cuda_parity(conv_fn(c.options), conv_inputs(c, dtype, 3), tol, tol));
    }
  }
}

// ResNet50 stage shapes at batch 2 (the bench runs them at batch 32).
const std::vector<ConvCase>& resnet_cases() {
  static const std::vector<ConvCase> cases = {
      {{2, 256, 56, 56}, {64, 256, 1, 1}, Conv2dOptions::square(1, 0), false, "layer1 1x1 256->64"},
      {{2, 64, 56, 56}, {64, 64, 3, 3}, Conv2dOptions::square(1, 1), false, "layer1 3x3 64->64"},
      {{2, 4, 224, 224}, {64, 4, 7, 7}, Conv2dOptions::square(2, 3), false, "4-channel stem 7x7 s2"},
      {{2, 128, 28, 28}, {128, 4, 3, 3}, Conv2dOptions::square(1, 1, 1, 32), false, "ResNeXt 3x3 groups 32"},
      {{2, 256, 14, 14}, {256, 256, 3, 3}, Conv2dOptions::square(1, 1), true, "layer3 3x3 (K 2304)"},
      {{2, 256, 56, 56}, {512, 256, 1, 1}, Conv2dOptions::square(2, 0), false, "downsample 1x1 s2"},
  };
  return cases;
}

TEST(GpuConv2d, ResNet50ShapesMatchCpuF32) {
  HPA_REQUIRE_GPU();
  for (const ConvCase& c : resnet_cases()) {
    SCOPED_TRACE(c.name);
    EXPECT_TRUE(
        normwise_parity(conv_fn(c.options), conv_inputs(c, DType::f32, 5), normwise_tolerance(DType::f32)));
  }
}

TEST(GpuConv2d, ResNet50ShapesMatchCpuF64) {
  HPA_REQUIRE_GPU();
  for (const ConvCase& c : resnet_cases()) {
    SCOPED_TRACE(c.name);
    EXPECT_TRUE(
        normwise_parity(conv_fn(c.options), conv_inputs(c, DType::f64, 5), normwise_tolerance(DType::f64)));
  }
}

// TF32 on gives TF32 accuracy; turning it off again must give IEEE f32 accuracy on the same
// shape, which fails if the algorithm or math type chosen for TF32 were reused.
TEST(GpuConv2d, Tf32FlagSelectsTheMath) {
  HPA_REQUIRE_GPU();
  const ConvCase c{{2, 64, 56, 56}, {64, 64, 3, 3}, Conv2dOptions::square(1, 1), true, "tf32"};
  const auto in = conv_inputs(c, DType::f32, 9);
  EXPECT_TRUE(normwise_parity(conv_fn(c.options), in, 1e-2, /*tf32=*/true));
  EXPECT_TRUE(normwise_parity(conv_fn(c.options), in, 1e-4, /*tf32=*/false));
  EXPECT_TRUE(normwise_parity(conv_fn(c.options), in, 1e-2, /*tf32=*/true));
}

TEST(GpuConv2d, GradientsOnlyWhereRequired) {
  HPA_REQUIRE_GPU();
  const ConvCase c{{2, 6, 9, 7}, {9, 2, 3, 3}, Conv2dOptions::square(1, 1, 1, 3), true, "partial"};
  for (int which = 0; which < 3; ++which) {
    SCOPED_TRACE("only input " + std::to_string(which) + " requires a gradient");
    auto in = conv_inputs(c, DType::f64, 4);
    for (int k = 0; k < 3; ++k) in[static_cast<size_t>(k)].set_requires_grad(k == which);
    EXPECT_TRUE(cuda_parity(conv_fn(c.options), in, 1e-10, 1e-10));
  }
}

TEST(GpuConv2d, EmptyBatchAndEmptyPlanes) {
  HPA_REQUIRE_GPU();
  for (DType dtype : {DType::f32, DType::f64}) {
    // A batch of 0: empty output, zero weight and bias gradients (exact).
    EXPECT_TRUE(cuda_parity(
        conv_fn(Conv2dOptions::square(1, 1)),
        conv_inputs({{0, 3, 5, 5}, {4, 3, 3, 3}, Conv2dOptions::square(1, 1), true, ""}, dtype, 1), 0, 0));
    // An empty plane seen only through padding: y is the bias (exact), and the bias
    // gradient a sum of N x H_out x W_out = 2 x 2 x 6 = 24 projection values (|v| < ~4),
    // summed in another order on each device: at most 24 x u x sum|v| apart (u = 2^-24 in
    // f32: ~6e-6; 2^-53 in f64: ~1e-14). Seen on an H200: 3.6e-7 in f32.
    const double tol = dtype == DType::f32 ? 1e-5 : 1e-13;
    EXPECT_TRUE(cuda_parity(
        conv_fn(Conv2dOptions::square(1, 1)),
        conv_inputs({{2, 3, 0, 4}, {4, 3, 1, 1}, Conv2dOptions::square(1, 1), true, ""}, dtype, 1), tol, 0));
  }
}

TEST(GpuConv2d, DeviceMismatchIsAClearError) {
  HPA_REQUIRE_GPU();
  const Tensor x = Tensor::zeros({1, 3, 5, 5}, DType::f32, Device::cuda(0));
  const Tensor w_cpu = Tensor::zeros({4, 3, 3, 3});
  const Tensor w = w_cpu.to(Device::cuda(0));
  EXPECT_HPA_ERROR(conv2d(x, w_cpu), "conv2d", "device mismatch", "[4, 3, 3, 3]");
  EXPECT_HPA_ERROR(conv2d(x, w, Tensor::zeros({4})), "conv2d", "device mismatch", "[4]");
  EXPECT_HPA_ERROR(conv2d(x, w.to(DType::f64)), "conv2d", "dtype mismatch");
}

#ifdef HPA_WITH_CUDA
// Lends workspace from the caching allocator, as tensor/ops/conv.cpp does.
class TestWorkspace final : public kernels::CudaWorkspace {
 public:
  void* allocate(size_t bytes) override {
    buffers_.push_back(Tensor::empty({static_cast<int64_t>(bytes)}, DType::u8, Device::cuda(0)));
    return buffers_.back().data_ptr();
  }

 private:
  std::vector<Tensor> buffers_;
};

kernels::Conv2dArgs conv_args(int64_t n, int64_t c_in, int64_t h, int64_t w, int64_t c_out, int64_t k,
                              int64_t stride, int64_t pad, int64_t groups) {
  kernels::Conv2dArgs a;
  a.n = n;
  a.c_in = c_in;
  a.h = h;
  a.w = w;
  a.c_out = c_out;
  a.kh = a.kw = k;
  a.stride_h = a.stride_w = stride;
  a.pad_h = a.pad_w = pad;
  a.groups = groups;
  a.h_out = kernels::conv_output_size(h, k, stride, pad, 1);
  a.w_out = kernels::conv_output_size(w, k, stride, pad, 1);
  return a;
}

template <class T>
void guarded_launches() {
  const kernels::Conv2dArgs a = conv_args(3, 6, 9, 7, 4, 3, 2, 1, 2);
  const int64_t nx = a.n * a.c_in * a.h * a.w, ny = a.n * a.c_out * a.h_out * a.w_out,
                nw = a.c_out * (a.c_in / a.groups) * a.kh * a.kw;
  Generator gen(7);
  const DType dtype = dtype_of<T>::value;
  const Tensor x = Tensor::randn({nx}, dtype, Device::cpu(), &gen).to(Device::cuda(0));
  const Tensor w = Tensor::randn({nw}, dtype, Device::cpu(), &gen).to(Device::cuda(0));
  const Tensor b = Tensor::randn({a.c_out}, dtype, Device::cpu(), &gen).to(Device::cuda(0));
  const Tensor gy = Tensor::randn({ny}, dtype, Device::cpu(), &gen).to(Device::cuda(0));
  TestWorkspace workspace;
  const kernels::Conv2dCudaContext ctx{0, static_cast<kernels::Stream>(cuda::stream(0)), false, &workspace};
  test::GuardedDeviceBuffer<T> y(ny), grad_x(nx), grad_w(nw), grad_b(a.c_out);
  kernels::conv2d_forward_cuda<T>(a, x.data<T>(), w.data<T>(), b.data<T>(), y.ptr(), ctx);
  kernels::conv2d_backward_input_cuda<T>(a, gy.data<T>(), w.data<T>(), grad_x.ptr(), ctx);
  kernels::conv2d_backward_weight_cuda<T>(a, gy.data<T>(), x.data<T>(), grad_w.ptr(), ctx);
  kernels::conv2d_backward_bias_cuda<T>(a, gy.data<T>(), grad_b.ptr(), ctx);
  cuda::synchronize(0);
  EXPECT_TRUE(y.guards_intact());
  EXPECT_TRUE(grad_x.guards_intact());
  EXPECT_TRUE(grad_w.guards_intact());
  EXPECT_TRUE(grad_b.guards_intact());
  // And the values inside are the CPU's.
  std::vector<T> y_cpu(static_cast<size_t>(ny));
  kernels::conv2d_forward_cpu<T>(a, x.to(Device::cpu()).data<T>(), w.to(Device::cpu()).data<T>(),
                                 b.to(Device::cpu()).data<T>(), y_cpu.data());
  const std::vector<T> y_gpu = y.values();
  for (size_t i = 0; i < y_cpu.size(); ++i)
    EXPECT_NEAR(y_gpu[i], y_cpu[i], 1e-4 + 1e-4 * std::abs(y_cpu[i])) << i;
}

TEST(GpuConv2d, LaunchersWriteOnlyTheirOutputs) {
  HPA_REQUIRE_GPU();
  test::NoTf32 exact;
  guarded_launches<float>();
  guarded_launches<double>();
}

// One search per (shape, options, dtype, TF32, direction): repeating a call adds nothing
// to the cache, a new shape adds its directions.
TEST(GpuConv2d, AlgorithmsAreSearchedOncePerShape) {
  HPA_REQUIRE_GPU();
  test::NoTf32 exact;
  const ConvCase c{{2, 5, 13, 11}, {7, 5, 3, 3}, Conv2dOptions::square(1, 1), false, ""};
  auto run = [&](const ConvCase& cc) {
    auto in = conv_inputs(cc, DType::f32, 2);
    Tensor x = in[0].detach().to(Device::cuda(0)).set_requires_grad();
    Tensor w = in[1].detach().to(Device::cuda(0)).set_requires_grad();
    conv2d(x, w, Tensor(), cc.options)
        .backward(Tensor::ones({cc.x[0], cc.weight[0], 13, 11}, DType::f32, Device::cuda(0)));
  };
  run(c);
  const size_t after_first = kernels::conv2d_cuda_cached_algorithms();
  run(c);
  EXPECT_EQ(kernels::conv2d_cuda_cached_algorithms(), after_first);
  ConvCase wider = c;
  wider.weight[0] = 8;
  run(wider);
  EXPECT_EQ(kernels::conv2d_cuda_cached_algorithms(), after_first + 3);  // forward, data, filter
}

// The check macros need no GPU: they only format the library's own status strings.
TEST(LibraryChecks, CudnnAndCublasErrorsNameTheCallAndStatus) {
  EXPECT_HPA_ERROR(HPA_CUDNN_CHECK(CUDNN_STATUS_BAD_PARAM), "cuDNN", "CUDNN_STATUS_BAD_PARAM",
                   "test_gpu_conv.cpp:");
  EXPECT_HPA_ERROR(HPA_CUBLAS_CHECK(CUBLAS_STATUS_INVALID_VALUE), "cuBLAS", "CUBLAS_STATUS_INVALID_VALUE",
                   "test_gpu_conv.cpp:");
  EXPECT_NO_THROW(HPA_CUDNN_CHECK(CUDNN_STATUS_SUCCESS));
  EXPECT_NO_THROW(HPA_CUBLAS_CHECK(CUBLAS_STATUS_SUCCESS));
}
#endif

}  // namespace
