// CPU-vs-CUDA parity of concat and split (kernels/concat.cu): along every dimension of odd
// shapes, forward and backward in f32 and f64; DenseNet-sized channel concats with more
// pieces than one launch takes; byte dtypes whose rows need 1- and 2-byte copy units;
// empty pieces; split outputs nobody uses; guard regions around direct kernel calls.
// The copies move bytes, so every comparison is exact (tolerance 0).
#include <gtest/gtest.h>

#include <vector>

#include "kernels/concat.h"
#include "tensor/autograd.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/reduce.h"
#include "tensor/ops/shape_ops.h"
#include "tests/gpu_util.h"
#ifdef HPA_WITH_CUDA
#include "tensor/cuda_backend.h"
#endif

using namespace hpa;
using test::cuda_parity;

namespace {

Tensor leaf(Tensor t) { return t.set_requires_grad(); }

// Values in [0, 100) converted to `dtype` (valid for the unsigned ones too).
Tensor small_values(const Shape& shape, DType dtype, uint64_t seed) {
  Generator g(seed);
  return mul_scalar(Tensor::rand(shape, DType::f64, Device::cpu(), &g), 100.0).to(dtype);
}

std::vector<unsigned char> bytes_of(const Tensor& t) {
  const Tensor host = t.to(Device::cpu());
  const auto* p = static_cast<const unsigned char*>(host.data_ptr());
  return std::vector<unsigned char>(p, p + host.nbytes());
}

}  // namespace

TEST(GpuShapeOps, ConcatAndSplitAlongEveryDimMatchTheCpu) {
  HPA_REQUIRE_GPU();
  const Shape base{3, 5, 7, 9};
  for (DType dtype : {DType::f32, DType::f64}) {
    for (int dim = 0; dim < base.size(); ++dim) {
      std::vector<Tensor> inputs;
      std::vector<int64_t> sizes;
      for (int64_t size : {int64_t{2}, int64_t{1}, int64_t{4}}) {
        Shape s = base;
        s[dim] = size;
        inputs.push_back(leaf(test::randn(s, dtype, 10 + static_cast<uint64_t>(size))));
        sizes.push_back(size);
      }
      EXPECT_TRUE(
          cuda_parity([dim](const std::vector<Tensor>& in) { return concat(in, dim); }, inputs, 0.0, 0.0))
          << "concat along " << dim << " " << dtype;
      Shape joined = base;
      joined[dim] = 7;
      const Tensor x = leaf(test::randn(joined, dtype, 3));
      // Uses the first and last pieces only: the middle one's gradient is the engine's zeros.
      auto split_then_use = [dim, sizes](const std::vector<Tensor>& in) {
        const auto pieces = split(in[0], sizes, dim);
        return concat({mul_scalar(pieces[2], 2.0), pieces[0]}, dim);
      };
      EXPECT_TRUE(cuda_parity(split_then_use, {x}, 0.0, 0.0)) << "split along " << dim << " " << dtype;
    }
  }
}

TEST(GpuShapeOps, DenseNetChannelConcats) {
  HPA_REQUIRE_GPU();
  // A DenseNet-121 block-2 concat: the block input and 12 growth-32 layers at 28x28.
  std::vector<Tensor> pieces = {leaf(test::randn({2, 128, 28, 28}, DType::f32, 1))};
  for (uint64_t i = 0; i < 12; ++i) pieces.push_back(leaf(test::randn({2, 32, 28, 28}, DType::f32, 2 + i)));
  EXPECT_TRUE(cuda_parity([](const std::vector<Tensor>& in) { return concat(in, 1); }, pieces, 0.0, 0.0));
  // More pieces than one launch takes (64), some of them empty.
  std::vector<Tensor> many;
  for (uint64_t i = 0; i < 150; ++i)
    many.push_back(leaf(test::randn({2, static_cast<int64_t>(i % 3), 5}, DType::f64, 100 + i)));
  EXPECT_TRUE(cuda_parity([](const std::vector<Tensor>& in) { return concat(in, 1); }, many, 0.0, 0.0));
}

TEST(GpuShapeOps, ByteDtypesAndShortRows) {
  HPA_REQUIRE_GPU();
  // u8 rows of odd length need 1-byte units, bf16 2-byte; [1000, 3] pieces along the last
  // dimension are rows far shorter than a tile (the flat path).
  for (DType dtype : {DType::u8, DType::bf16, DType::i32, DType::f32}) {
    const Tensor a = small_values({1000, 3}, dtype, 1);
    const Tensor b = small_values({1000, 5}, dtype, 2);
    const Tensor joined = concat({a.to(Device::cuda(0)), b.to(Device::cuda(0))}, 1);
    EXPECT_EQ(bytes_of(joined), bytes_of(concat({a, b}, 1))) << dtype;
    const auto back = split(joined, {3, 5}, 1);
    EXPECT_EQ(bytes_of(back[0]), bytes_of(a)) << dtype;
    EXPECT_EQ(bytes_of(back[1]), bytes_of(b)) << dtype;
  }
  const Tensor big = small_values({3, 70001}, DType::u8, 4);
  const auto pieces = split(big.to(Device::cuda(0)), {1, 70000}, 1);
  const auto expected = split(big, {1, 70000}, 1);
  EXPECT_EQ(bytes_of(pieces[0]), bytes_of(expected[0]));
  EXPECT_EQ(bytes_of(pieces[1]), bytes_of(expected[1]));
}

TEST(GpuShapeOpsErrors, MixedDevicesAreClearErrors) {
  HPA_REQUIRE_GPU();
  const Tensor cpu = Tensor::ones({2, 3}), gpu = Tensor::ones({2, 3}, DType::f32, Device::cuda(0));
  EXPECT_HPA_ERROR(concat({gpu, cpu}, 0), "concat", "device mismatch", "cuda:0", "cpu");
  EXPECT_HPA_ERROR(split(gpu, {1, 1}, 1), "split", "add up to 2", "f32[2, 3] cuda:0");
}

#ifdef HPA_WITH_CUDA

TEST(GpuShapeOpsKernels, CopiesWriteOnlyTheirOutput) {
  HPA_REQUIRE_GPU();
  const auto stream = static_cast<kernels::Stream>(cuda::stream(0));
  // [outer=3, total=7, inner=5 floats]: 20-byte steps (4-byte units); pieces 2, 0, 5.
  const std::vector<int64_t> sizes = {2, 0, 5};
  kernels::ConcatArgs args;
  args.outer = 3;
  args.inner_bytes = 5 * sizeof(float);
  args.total = 7;
  args.num_pieces = 3;
  args.sizes = sizes.data();
  std::vector<test::GuardedDeviceBuffer<float>> pieces;
  for (size_t p = 0; p < sizes.size(); ++p) pieces.emplace_back(3 * sizes[p] * 5);
  // Fill the pieces through split of a known joined tensor, then concat them back.
  const Tensor joined_host = test::randn({3, 7, 5}, DType::f32, 60);
  const Tensor joined_dev = joined_host.to(Device::cuda(0));
  std::vector<void*> out_ptrs;
  for (auto& p : pieces) out_ptrs.push_back(p.ptr());
  kernels::split_cuda(joined_dev.data_ptr(), out_ptrs.data(), args, stream);
  std::vector<std::vector<float>> expected(sizes.size());
  std::vector<void*> host_ptrs;
  for (size_t p = 0; p < sizes.size(); ++p) {
    expected[p].resize(static_cast<size_t>(3 * sizes[p] * 5));
    host_ptrs.push_back(expected[p].data());
  }
  kernels::split_cpu(joined_host.data_ptr(), host_ptrs.data(), args);
  for (size_t p = 0; p < sizes.size(); ++p) {
    EXPECT_TRUE(pieces[p].guards_intact()) << "piece " << p;
    EXPECT_EQ(pieces[p].values(), expected[p]) << "piece " << p;
  }
  test::GuardedDeviceBuffer<float> joined(3 * 7 * 5);
  std::vector<const void*> in_ptrs;
  for (auto& p : pieces) in_ptrs.push_back(p.ptr());
  kernels::concat_cuda(in_ptrs.data(), joined.ptr(), args, stream);
  EXPECT_TRUE(joined.guards_intact());
  EXPECT_EQ(joined.values(), joined_host.to_vector<float>());
  // A null piece in split is skipped: its buffer keeps its contents.
  test::GuardedDeviceBuffer<float> kept(3 * 5 * 5);
  const auto before = kept.values();
  std::vector<void*> partial = {nullptr, nullptr, kept.ptr()};
  kernels::split_cuda(joined_dev.data_ptr(), partial.data(), args, stream);
  EXPECT_TRUE(kept.guards_intact());
  EXPECT_EQ(kept.values(), expected[2]);
  EXPECT_NE(before, expected[2]);
}

#endif  // HPA_WITH_CUDA
