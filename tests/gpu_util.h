// Helpers for the CPU-vs-CUDA parity tests (tests/test_gpu_*.cpp, ctest label `gpu`).
//  - HPA_REQUIRE_GPU(): skips with a clear message in a CPU-only build or where no GPU
//    is present (CI compiles these tests but has no GPU).
//  - cuda_parity(): runs f on CPU inputs and on their CUDA copies, compares the outputs
//    and every input gradient with one tolerance rule (tests/test_util.h all_close).
//  - GuardedDeviceBuffer: a device buffer with sentinel guard regions on both sides, for
//    calling a kernel launcher directly and proving it writes nothing out of bounds.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "tests/test_util.h"
#ifdef HPA_WITH_CUDA
#include "tensor/cuda_backend.h"
#endif

namespace hpa::test {

inline bool gpu_available() {
#ifdef HPA_WITH_CUDA
  return cuda::device_count() > 0;
#else
  return false;
#endif
}

#ifdef HPA_WITH_CUDA
#define HPA_REQUIRE_GPU() \
  if (!::hpa::test::gpu_available()) GTEST_SKIP() << "no GPU present (cudaGetDeviceCount reports none): skipped"
#else
#define HPA_REQUIRE_GPU() GTEST_SKIP() << "built without CUDA (HPA_CUDA=OFF or no nvcc): skipped"
#endif

// Turns TF32 off for the lifetime of the object, so f32 convolutions and GEMMs on the GPU
// are IEEE f32 like the CPU.
class NoTf32 {
 public:
  NoTf32() {
#ifdef HPA_WITH_CUDA
    prev_ = cuda::allow_tf32();
    cuda::set_allow_tf32(false);
#endif
  }
  ~NoTf32() {
#ifdef HPA_WITH_CUDA
    cuda::set_allow_tf32(prev_);
#endif
  }

 private:
  bool prev_ = true;
};

// Runs f on `inputs` (CPU tensors; those with requires_grad get gradients) and on CUDA
// copies, then compares outputs and input gradients. A fixed random projection seeds
// backward when the output requires a gradient.
inline ::testing::AssertionResult cuda_parity(const Fn& f, const std::vector<Tensor>& inputs, double atol,
                                              double rtol, uint64_t seed = 11) {
  NoTf32 exact;
  std::vector<Tensor> cpu_in, gpu_in;
  for (const auto& t : inputs) {
    if (!t.defined()) {
      cpu_in.emplace_back();
      gpu_in.emplace_back();
      continue;
    }
    Tensor c = t.detach().clone(), g = t.detach().to(Device::cuda(0));
    if (t.requires_grad()) {
      c.set_requires_grad();
      g.set_requires_grad();
    }
    cpu_in.push_back(c);
    gpu_in.push_back(g);
  }
  Tensor oc = f(cpu_in), og = f(gpu_in);
  if (!og.is_cuda()) return ::testing::AssertionFailure() << "op returned " << og.desc() << " for CUDA inputs";
  auto r = all_close(og, oc, atol, rtol, "CUDA output");
  if (!r) return r;
  if (oc.requires_grad()) {
    Generator gen(seed);
    Tensor proj = Tensor::randn(oc.shape(), oc.dtype(), Device::cpu(), &gen);
    oc.backward(proj);
    og.backward(proj.to(Device::cuda(0)));
    for (size_t k = 0; k < cpu_in.size(); ++k) {
      if (!cpu_in[k].defined() || !cpu_in[k].requires_grad()) continue;
      r = all_close(gpu_in[k].grad(), cpu_in[k].grad(), atol, rtol, "CUDA gradient of input " + std::to_string(k));
      if (!r) return r;
    }
  }
  return ::testing::AssertionSuccess();
}

// A device buffer of n elements of T with `guard` sentinel elements on each side.
template <class T>
class GuardedDeviceBuffer {
 public:
  GuardedDeviceBuffer(int64_t n, int64_t guard = 256)
      : n_(n), guard_(guard), storage_(Tensor::empty({n + 2 * guard}, dtype_of<T>::value, Device::cuda(0))) {
    std::vector<T> host(static_cast<size_t>(n + 2 * guard));
    unsigned char* bytes = reinterpret_cast<unsigned char*>(host.data());
    std::memset(bytes, 0xA5, host.size() * sizeof(T));
    sentinel_ = host[0];
    storage_.copy_from(Tensor::from_vector(host, {n + 2 * guard}));
  }
  T* ptr() { return storage_.data<T>() + guard_; }
  int64_t size() const { return n_; }
  std::vector<T> values() const {
    auto all = storage_.to_vector<T>();
    return std::vector<T>(all.begin() + guard_, all.begin() + guard_ + n_);
  }
  // True when no guard element changed.
  ::testing::AssertionResult guards_intact() const {
    auto all = storage_.to_vector<T>();
    for (int64_t i = 0; i < guard_; ++i) {
      for (int64_t j : {i, guard_ + n_ + i}) {
        if (std::memcmp(&all[static_cast<size_t>(j)], &sentinel_, sizeof(T)) != 0)
          return ::testing::AssertionFailure() << "write outside the buffer at offset " << (j - guard_)
                                               << " (buffer of " << n_ << ")";
      }
    }
    return ::testing::AssertionSuccess();
  }

 private:
  int64_t n_, guard_;
  Tensor storage_;
  T sentinel_{};
};

}  // namespace hpa::test
