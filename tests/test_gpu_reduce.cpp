// CPU-vs-CUDA parity of sum and mean (kernels/reduce.cu): every subset of dimensions of an
// odd 4-D and a 5-D tensor, keepdim both ways, forward and backward in f32 and f64; shapes
// that reach every plan of the CUDA kernel (one thread, a warp or a block per output; one
// or several runs per chunk; the two-pass paths of both kernel shapes); ResNet50-stage
// shapes; run-to-run determinism; empty reductions; guard regions around the output and
// the workspace of direct kernel calls.
//
// Tolerances. Both devices sum in double, in different orders. f32: the double sums differ
// by far less than a float ulp, so the f32 results differ by at most one rounding step:
// rtol 1e-6 (8 ulp). f64: reordering a sum of L terms of size ~1 changes it by about
// sqrt(L) * 1.1e-16 * sqrt(L) (random-walk growth of the partial sums) = L * 1.1e-16; the
// largest L here is 3.2e6, so atol 1e-15 * L with rtol 1e-12.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/reduce.h"
#include "tensor/autograd.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/reduce.h"
#include "tests/gpu_util.h"
#ifdef HPA_WITH_CUDA
#include "tensor/cuda_backend.h"
#endif

using namespace hpa;
using test::cuda_parity;

namespace {

Tensor leaf(Tensor t) { return t.set_requires_grad(); }

struct Tolerance {
  double atol, rtol;
};
// `length`: elements summed into one output.
Tolerance tolerance(DType t, int64_t length) {
  if (t == DType::f32) return {1e-6, 1e-6};
  return {1e-15 * static_cast<double>(std::max<int64_t>(length, 16)), 1e-12};
}

std::vector<int> dims_of(unsigned mask, int ndim) {
  std::vector<int> dims;
  for (int d = 0; d < ndim; ++d)
    if (mask >> d & 1u) dims.push_back(d);
  return dims;
}

int64_t reduced_length(const Shape& s, const std::vector<int>& dims) {
  int64_t n = 1;
  for (int d : dims) n *= s[d];
  return n;
}

}  // namespace

TEST(GpuReduce, EveryDimSubsetMatchesTheCpu) {
  HPA_REQUIRE_GPU();
  for (const Shape& shape : {Shape{3, 5, 7, 9}, Shape{2, 3, 4, 5, 6}}) {
    for (DType dtype : {DType::f32, DType::f64}) {
      const Tensor x = test::randn(shape, dtype, 5);
      for (unsigned mask = 0; mask < (1u << shape.size()); ++mask) {
        const auto dims = dims_of(mask, shape.size());
        const Tolerance tol = tolerance(dtype, reduced_length(shape, dims));
        for (bool keepdim : {false, true}) {
          EXPECT_TRUE(cuda_parity([&](const std::vector<Tensor>& in) { return sum(in[0], dims, keepdim); },
                                  {leaf(x)}, tol.atol, tol.rtol))
              << "sum over mask " << mask << " of " << shape << " keepdim " << keepdim << " " << dtype;
          EXPECT_TRUE(cuda_parity([&](const std::vector<Tensor>& in) { return mean(in[0], dims, keepdim); },
                                  {leaf(x)}, tol.atol, tol.rtol))
              << "mean over mask " << mask << " of " << shape << " keepdim " << keepdim << " " << dtype;
        }
      }
      const Tolerance all = tolerance(dtype, shape.numel());
      EXPECT_TRUE(cuda_parity([](const std::vector<Tensor>& in) { return sum(in[0]); }, {leaf(x)}, all.atol,
                              all.rtol));
      EXPECT_TRUE(cuda_parity([](const std::vector<Tensor>& in) { return mean(in[0]); }, {leaf(x)}, all.atol,
                              all.rtol));
    }
  }
}

TEST(GpuReduce, EveryKernelPlanMatchesTheCpu) {
  HPA_REQUIRE_GPU();
  struct Case {
    Shape shape;
    std::vector<int> dims;
    const char* plan;
  };
  const std::vector<Case> cases = {
      {{1000, 7}, {1}, "innermost reduced, one thread per output"},
      {{2, 512, 28, 28}, {2, 3}, "innermost reduced, one warp per output (global average pool)"},
      {{6, 50, 20}, {0, 2}, "innermost reduced, several short runs per chunk"},
      {{300, 3, 100}, {0, 2}, "innermost reduced, several short runs per chunk, two passes"},
      {{4, 256, 56, 56}, {0, 2, 3}, "innermost reduced, block per chunk (batch-norm statistics)"},
      {{4, 256, 56, 56}, {0, 1, 2, 3}, "full reduction, long-run segments, two passes"},
      {{100003}, {0}, "full reduction of a length that is not a whole number of packs"},
      {{64, 2048}, {0}, "innermost kept, one pass (linear bias gradient)"},
      {{20000, 3}, {0}, "innermost kept, row chunks, two passes"},
      {{3, 4, 5, 6, 7}, {1, 3}, "innermost kept, two reduced outer groups"},
      {{3, 4, 5, 6, 7}, {0, 2, 4}, "innermost reduced, two reduced outer groups"},
      {{5, 1, 7}, {1}, "size-1 dimension only: a copy"},
  };
  for (const Case& c : cases) {
    for (DType dtype : {DType::f32, DType::f64}) {
      const Tensor x = test::randn(c.shape, dtype, 9);
      const Tolerance tol = tolerance(dtype, reduced_length(c.shape, c.dims));
      const auto dims = c.dims;
      EXPECT_TRUE(cuda_parity([&](const std::vector<Tensor>& in) { return sum(in[0], dims); }, {leaf(x)},
                              tol.atol, tol.rtol))
          << "sum " << c.shape << ": " << c.plan << ", " << dtype;
      EXPECT_TRUE(cuda_parity([&](const std::vector<Tensor>& in) { return mean(in[0], dims, true); },
                              {leaf(x)}, tol.atol, tol.rtol))
          << "mean " << c.shape << ": " << c.plan << ", " << dtype;
    }
  }
}

TEST(GpuReduce, RepeatsBitForBit) {
  HPA_REQUIRE_GPU();
  const Tensor x = test::randn({4, 256, 56, 56}, DType::f32, 13).to(Device::cuda(0));
  for (const std::vector<int>& dims :
       {std::vector<int>{0, 1, 2, 3}, std::vector<int>{0, 2, 3}, std::vector<int>{0}}) {
    const auto first = sum(x, dims).to_vector<float>();
    for (int run = 0; run < 3; ++run) {
      const auto again = sum(x, dims).to_vector<float>();
      ASSERT_EQ(std::memcmp(first.data(), again.data(), first.size() * sizeof(float)), 0) << "run " << run;
    }
  }
}

TEST(GpuReduce, EmptyReductions) {
  HPA_REQUIRE_GPU();
  const Tensor x = Tensor::zeros({3, 0, 4}, DType::f32, Device::cuda(0));
  const auto s = sum(x, {1}).to_vector<float>();
  ASSERT_EQ(s.size(), 12u);
  for (float v : s) EXPECT_EQ(v, 0.0f);
  for (float v : mean(x, {1}).to_vector<float>()) EXPECT_TRUE(std::isnan(v));
  EXPECT_EQ(sum(x).item(), 0.0);
  EXPECT_EQ(sum(x, {0}).numel(), 0);  // [0, 4]: nothing to write
}

TEST(GpuReduceErrors, BadDimensionListsNameTheOp) {
  HPA_REQUIRE_GPU();
  const Tensor x = Tensor::zeros({2, 3}, DType::f32, Device::cuda(0));
  EXPECT_HPA_ERROR(sum(x, {2}), "sum", "dimension 2 out of range", "f32[2, 3] cuda:0");
  EXPECT_HPA_ERROR(mean(x, {0, -2}), "mean", "more than once");
  EXPECT_HPA_ERROR(sum(Tensor::zeros({2}, DType::i64, Device::cuda(0))), "sum", "f32 or f64");
}

#ifdef HPA_WITH_CUDA

namespace {

// Sums x over `dims` with the kernel directly, the output and the workspace both inside
// guard regions, and checks the result against reduce_sum_cpu.
template <class T>
void check_in_bounds(const Shape& shape, const std::vector<int>& dims) {
  bool reduce_dim[Shape::kMaxDims] = {};
  for (int d : dims) reduce_dim[d] = true;
  const auto args = kernels::make_reduce_args(shape.begin(), shape.size(), reduce_dim, 0.5);
  Generator g(17);
  const Tensor x = Tensor::randn(shape, dtype_of<T>::value, Device::cpu(), &g);
  const Tensor x_gpu = x.to(Device::cuda(0));
  const int64_t workspace_elements = kernels::reduce_sum_cuda_workspace_elements(args);
  test::GuardedDeviceBuffer<T> out(args.numel_out);
  test::GuardedDeviceBuffer<double> workspace(std::max<int64_t>(workspace_elements, 1));
  kernels::reduce_sum_cuda(x_gpu.data<T>(), out.ptr(), args,
                           workspace_elements > 0 ? workspace.ptr() : nullptr,
                           static_cast<kernels::Stream>(cuda::stream(0)));
  std::vector<T> expected(static_cast<size_t>(args.numel_out));
  kernels::reduce_sum_cpu(x.data<T>(), expected.data(), args);
  EXPECT_TRUE(out.guards_intact()) << shape;
  EXPECT_TRUE(workspace.guards_intact()) << "workspace of " << shape;
  const auto actual = out.values();
  const Tolerance tol = tolerance(dtype_of<T>::value, reduced_length(shape, dims));
  for (size_t i = 0; i < actual.size(); ++i)
    ASSERT_LE(std::abs(static_cast<double>(actual[i]) - expected[i]),
              tol.atol + tol.rtol * std::abs(expected[i]))
        << shape << " element " << i;
}

}  // namespace

TEST(GpuReduceKernels, OutputAndWorkspaceStayInBounds) {
  HPA_REQUIRE_GPU();
  const std::vector<std::pair<Shape, std::vector<int>>> cases = {
      {{1000, 7}, {1}},          {{2, 512, 28, 28}, {2, 3}},
      {{300, 3, 100}, {0, 2}},   {{4, 64, 56, 56}, {0, 2, 3}},
      {{1, 40001}, {0, 1}},      {{20000, 3}, {0}},
      {{3, 4, 5, 6, 7}, {1, 3}}, {{7}, {}},
  };
  for (const auto& [shape, dims] : cases) {
    check_in_bounds<float>(shape, dims);
    check_in_bounds<double>(shape, dims);
  }
}

#endif  // HPA_WITH_CUDA
