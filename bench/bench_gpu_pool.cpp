// GPU benchmarks of the ACP and batch-norm CUDA kernels at the sizes of a ResNet50 training
// step on 512x512 inputs, batch 32, against the device-to-device copy bandwidth measured in
// the same run (the practical ceiling of a memory-bound kernel):
//   acp_forward / acp_backward      32x2048x16x16 f32 (the final feature map, 64 MiB);
//   bn_forward_training             32x256x128x128 f32 (layer1 activations, 512 MiB):
//                                   statistics + per-channel setup + normalization;
//   bn_backward_training            the same: backward sums + input gradient;
//   d2d_copy/<bytes>                cudaMemcpyAsync of the kernel's main tensor.
// Counters: GB/s is the traffic the kernels cannot avoid (each launch's reads and writes
// of the big tensors, small per-channel arrays included), copy_frac that over the copy's
// GB/s (a copy reads and writes its bytes: 2 x size / time). Batch norm needs more than
// one pass: forward reads x twice (statistics, then normalize) and writes y, backward
// reads g and x twice and writes dx, since every element's output depends on sums over
// the whole channel; one_pass_frac is the fraction a hypothetical single read-and-write
// pass would reach in the same time (forward 2 x size, backward 3 x size), the figure to
// compare with fused or persistent implementations.
// Each kernel is validated against the CPU loops on the same data first (exit 1 on a
// mismatch), warmed up, and timed with CUDA events over kLaunchesPerIteration launches so
// launch latency does not count. No GPU: prints why and exits 0.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "tensor/random.h"
#include "tensor/tensor.h"
#ifdef HPA_WITH_CUDA
#include "kernels/batchnorm.h"
#include "kernels/concat_pool.h"
#include "kernels/cuda_check.h"
#include "tensor/cuda_backend.h"
#endif

#ifdef HPA_WITH_CUDA

namespace {

using namespace hpa;

constexpr int kLaunchesPerIteration = 10;
constexpr int64_t kAcpN = 32, kAcpC = 2048, kAcpHW = 16 * 16;
constexpr int64_t kBnN = 32, kBnC = 256, kBnHW = 128 * 128;

kernels::Stream stream0() { return static_cast<kernels::Stream>(cuda::stream(0)); }

Tensor random_normal(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  return Tensor::randn(shape, DType::f32, Device::cpu(), &gen);
}

// Seconds of GPU time of `launches` (called kLaunchesPerIteration times between events).
template <class F>
double time_launches(F&& launches) {
  cudaEvent_t start, stop;
  HPA_CUDA_CHECK(cudaEventCreate(&start));
  HPA_CUDA_CHECK(cudaEventCreate(&stop));
  HPA_CUDA_CHECK(cudaEventRecord(start, stream0()));
  for (int i = 0; i < kLaunchesPerIteration; ++i) launches();
  HPA_CUDA_CHECK(cudaEventRecord(stop, stream0()));
  HPA_CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  HPA_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  HPA_CUDA_CHECK(cudaEventDestroy(start));
  HPA_CUDA_CHECK(cudaEventDestroy(stop));
  return static_cast<double>(ms) * 1e-3 / kLaunchesPerIteration;
}

// Copy bandwidth for `bytes`, GB/s counting the read and the write: the best of a few
// measurements, so the kernels are compared with the ceiling, not a noisy low.
double copy_gbps(int64_t bytes) {
  Tensor src = Tensor::zeros({bytes / 4}, DType::f32, Device::cuda(0));
  Tensor dst = Tensor::empty({bytes / 4}, DType::f32, Device::cuda(0));
  auto copy = [&] {
    HPA_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), static_cast<size_t>(bytes),
                                   cudaMemcpyDeviceToDevice, stream0()));
  };
  time_launches(copy);  // warm-up
  double best = 1e30;
  for (int i = 0; i < 5; ++i) best = std::min(best, time_launches(copy));
  return 2.0 * static_cast<double>(bytes) / best * 1e-9;
}

struct Ceilings {
  double acp = 0, bn = 0;  // copy GB/s at the ACP and BN tensor sizes
} g_ceiling;

void report(benchmark::State& state, double seconds_total, double bytes_per_launch, double ceiling,
            double one_pass_bytes = 0) {
  const double per_launch = seconds_total / static_cast<double>(state.iterations());
  const double gbps = bytes_per_launch / per_launch * 1e-9;
  state.counters["GB/s"] = gbps;
  state.counters["copy_GB/s"] = ceiling;
  state.counters["copy_frac"] = gbps / ceiling;
  if (one_pass_bytes > 0) state.counters["one_pass_frac"] = one_pass_bytes / per_launch * 1e-9 / ceiling;
}

template <class F>
void run_timed(benchmark::State& state, F&& launches, double bytes, double ceiling,
               double one_pass_bytes = 0) {
  for (int i = 0; i < 3; ++i) launches();  // warm-up
  HPA_CUDA_CHECK(cudaStreamSynchronize(stream0()));
  double total = 0;
  for (auto _ : state) {
    const double s = time_launches(launches);
    state.SetIterationTime(s);
    total += s;
  }
  report(state, total, bytes, ceiling, one_pass_bytes);
}

// ---- ACP ----------------------------------------------------------------------------------

struct AcpData {
  kernels::ConcatPoolArgs args{kAcpN, kAcpC, kAcpHW, 2 * kAcpC};
  Tensor x_cpu, g_cpu;
  Tensor x, out, argmax, g, grad_x;  // device
};

AcpData& acp() {
  static AcpData d = [] {
    AcpData a;
    a.x_cpu = random_normal({kAcpN, kAcpC, 16, 16}, 1);
    a.g_cpu = random_normal({kAcpN, 2 * kAcpC}, 2);
    a.x = a.x_cpu.to(Device::cuda(0));
    a.g = a.g_cpu.to(Device::cuda(0));
    a.out = Tensor::empty({kAcpN, 2 * kAcpC}, DType::f32, Device::cuda(0));
    a.argmax = Tensor::empty({kAcpN, kAcpC}, DType::i32, Device::cuda(0));
    a.grad_x = Tensor::empty(a.x.shape(), DType::f32, Device::cuda(0));
    return a;
  }();
  return d;
}

void acp_forward(AcpData& a) {
  float* out = a.out.data<float>();
  kernels::concat_pool_forward_cuda(a.x.data<float>(), a.args, out, out + kAcpC, a.argmax.data<int32_t>(),
                                    stream0());
}

void acp_backward(AcpData& a) {
  const float* g = a.g.data<float>();
  kernels::concat_pool_backward_cuda(g, g + kAcpC, a.argmax.data<int32_t>(), a.args, a.grad_x.data<float>(),
                                     stream0());
}

bool validate_acp() {
  AcpData& a = acp();
  acp_forward(a);
  acp_backward(a);
  std::vector<float> out(static_cast<size_t>(kAcpN * 2 * kAcpC)),
      grad_x(static_cast<size_t>(a.x_cpu.numel()));
  std::vector<int32_t> argmax(static_cast<size_t>(kAcpN * kAcpC));
  kernels::concat_pool_forward_cpu(a.x_cpu.data<float>(), a.args, out.data(), out.data() + kAcpC,
                                   argmax.data());
  kernels::concat_pool_backward_cpu(a.g_cpu.data<float>(), a.g_cpu.data<float>() + kAcpC, argmax.data(),
                                    a.args, grad_x.data());
  const auto out_d = a.out.to_vector<float>(), grad_d = a.grad_x.to_vector<float>();
  const auto argmax_d = a.argmax.to_vector<int32_t>();
  for (size_t i = 0; i < out.size(); ++i) {
    if (!(std::abs(out_d[i] - out[i]) <= 1e-7 + 1e-6 * std::abs(out[i]))) {
      std::fprintf(stderr, "ACP forward mismatch at %zu: %g vs CPU %g\n", i, out_d[i], out[i]);
      return false;
    }
  }
  if (argmax_d != argmax || grad_d != grad_x) {
    std::fprintf(stderr, "ACP argmax or gradient differs from the CPU\n");
    return false;
  }
  return true;
}

void BM_acp_forward(benchmark::State& state) {
  AcpData& a = acp();
  const double bytes = 4.0 * (kAcpN * kAcpC * kAcpHW + kAcpN * 2 * kAcpC + kAcpN * kAcpC);
  run_timed(
      state, [&] { acp_forward(a); }, bytes, g_ceiling.acp);
}

void BM_acp_backward(benchmark::State& state) {
  AcpData& a = acp();
  const double bytes = 4.0 * (kAcpN * kAcpC * kAcpHW + kAcpN * 2 * kAcpC + kAcpN * kAcpC);
  run_timed(
      state, [&] { acp_backward(a); }, bytes, g_ceiling.acp);
}

// ---- batch norm ---------------------------------------------------------------------------

struct BnData {
  kernels::BatchNormArgs args{kBnN, kBnC, kBnHW};
  Tensor x_cpu, g_cpu, gamma_cpu;
  Tensor x, y, g, grad_x, gamma, beta, running_mean, running_var;  // device
  Tensor mean, var, invstd, scale, shift, sum_g, sum_g_xhat, workspace;
};

BnData& bn() {
  static BnData d = [] {
    BnData b;
    const Device dev = Device::cuda(0);
    b.x_cpu = random_normal({kBnN, kBnC, 128, 128}, 3);
    b.g_cpu = random_normal({kBnN, kBnC, 128, 128}, 4);
    b.gamma_cpu = Tensor::full({kBnC}, 1.25, DType::f32);
    b.x = b.x_cpu.to(dev);
    b.g = b.g_cpu.to(dev);
    b.gamma = b.gamma_cpu.to(dev);
    b.beta = Tensor::full({kBnC}, 0.5, DType::f32, dev);
    b.running_mean = Tensor::zeros({kBnC}, DType::f32, dev);
    b.running_var = Tensor::ones({kBnC}, DType::f32, dev);
    b.y = Tensor::empty(b.x.shape(), DType::f32, dev);
    b.grad_x = Tensor::empty(b.x.shape(), DType::f32, dev);
    for (Tensor* t : {&b.mean, &b.var, &b.invstd, &b.scale, &b.shift, &b.sum_g, &b.sum_g_xhat})
      *t = Tensor::empty({kBnC}, DType::f64, dev);
    b.workspace = Tensor::empty({kernels::batchnorm_cuda_workspace_elements(b.args)}, DType::f64, dev);
    return b;
  }();
  return d;
}

void bn_forward(BnData& b) {
  kernels::batchnorm_stats_cuda(b.x.data<float>(), b.args, b.mean.data<double>(), b.var.data<double>(),
                                b.workspace.data<double>(), stream0());
  kernels::BatchNormChannelSetup<float> s;
  s.c = kBnC;
  s.count = kBnN * kBnHW;
  s.eps = 1e-5;
  s.momentum = 0.1;
  s.gamma = b.gamma.data<float>();
  s.beta = b.beta.data<float>();
  s.running_mean = b.running_mean.data<float>();
  s.running_var = b.running_var.data<float>();
  s.mean = b.mean.data<double>();
  s.var = b.var.data<double>();
  s.invstd = b.invstd.data<double>();
  s.scale = b.scale.data<double>();
  s.shift = b.shift.data<double>();
  kernels::batchnorm_setup_channels_cuda(s, stream0());
  kernels::batchnorm_forward_cuda(b.x.data<float>(), s.scale, s.shift, b.args, b.y.data<float>(), stream0());
}

void bn_backward(BnData& b) {
  kernels::batchnorm_backward_reduce_cuda(b.g.data<float>(), b.x.data<float>(), b.mean.data<double>(),
                                          b.invstd.data<double>(), b.args, b.sum_g.data<double>(),
                                          b.sum_g_xhat.data<double>(), b.workspace.data<double>(), stream0());
  kernels::batchnorm_backward_training_cuda(b.g.data<float>(), b.x.data<float>(), b.mean.data<double>(),
                                            b.invstd.data<double>(), b.gamma.data<float>(),
                                            b.sum_g.data<double>(), b.sum_g_xhat.data<double>(), b.args,
                                            b.grad_x.data<float>(), stream0());
}

bool validate_bn() {
  BnData& b = bn();
  bn_forward(b);
  bn_backward(b);
  const auto& a = b.args;
  std::vector<double> mean(kBnC), var(kBnC), invstd(kBnC), scale(kBnC), shift(kBnC), sum_g(kBnC),
      sum_gx(kBnC);
  kernels::batchnorm_stats_cpu(b.x_cpu.data<float>(), a, mean.data(), var.data());
  for (int64_t c = 0; c < kBnC; ++c) {
    invstd[c] = kernels::batchnorm_invstd(var[c], 1e-5);
    const auto affine = kernels::batchnorm_channel_affine(mean[c], invstd[c], 1.25, 0.5);
    scale[c] = affine.scale;
    shift[c] = affine.shift;
  }
  std::vector<float> y(static_cast<size_t>(b.x_cpu.numel())), grad_x(y.size());
  kernels::batchnorm_forward_cpu(b.x_cpu.data<float>(), scale.data(), shift.data(), a, y.data());
  kernels::batchnorm_backward_reduce_cpu(b.g_cpu.data<float>(), b.x_cpu.data<float>(), mean.data(),
                                         invstd.data(), a, sum_g.data(), sum_gx.data());
  kernels::batchnorm_backward_training_cpu(b.g_cpu.data<float>(), b.x_cpu.data<float>(), mean.data(),
                                           invstd.data(), b.gamma_cpu.data<float>(), sum_g.data(),
                                           sum_gx.data(), a, grad_x.data());
  const auto y_d = b.y.to_vector<float>(), grad_d = b.grad_x.to_vector<float>();
  for (size_t i = 0; i < y.size(); ++i) {
    // f32 tolerance of tests/test_gpu_batchnorm.cpp.
    if (!(std::abs(y_d[i] - y[i]) <= 1e-5 + 1e-5 * std::abs(y[i])) ||
        !(std::abs(grad_d[i] - grad_x[i]) <= 1e-5 + 1e-5 * std::abs(grad_x[i]))) {
      std::fprintf(stderr, "batch norm mismatch at %zu: y %g vs CPU %g, grad_x %g vs CPU %g\n", i, y_d[i],
                   y[i], grad_d[i], grad_x[i]);
      return false;
    }
  }
  return true;
}

void BM_bn_forward_training(benchmark::State& state) {
  BnData& b = bn();
  const double size = 4.0 * static_cast<double>(kBnN * kBnC * kBnHW);
  run_timed(
      state, [&] { bn_forward(b); }, 3 * size, g_ceiling.bn, 2 * size);
}

void BM_bn_backward_training(benchmark::State& state) {
  BnData& b = bn();
  const double size = 4.0 * static_cast<double>(kBnN * kBnC * kBnHW);
  run_timed(
      state, [&] { bn_backward(b); }, 5 * size, g_ceiling.bn, 3 * size);
}

void BM_copy(benchmark::State& state, int64_t bytes) {
  Tensor src = Tensor::zeros({bytes / 4}, DType::f32, Device::cuda(0));
  Tensor dst = Tensor::empty({bytes / 4}, DType::f32, Device::cuda(0));
  const double ceiling = bytes == 4 * kAcpN * kAcpC * kAcpHW ? g_ceiling.acp : g_ceiling.bn;
  run_timed(
      state,
      [&] {
        HPA_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), static_cast<size_t>(bytes),
                                       cudaMemcpyDeviceToDevice, stream0()));
      },
      2.0 * static_cast<double>(bytes), ceiling);
}

}  // namespace

int main(int argc, char** argv) {
  if (hpa::cuda::device_count() == 0) {
    std::printf("bench_gpu_pool: no GPU present (cudaGetDeviceCount reports none); nothing to measure\n");
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  if (!validate_acp() || !validate_bn()) {
    std::fprintf(stderr, "bench_gpu_pool: CUDA results differ from the CPU; not benchmarking\n");
    return 1;
  }
  const int64_t acp_bytes = 4 * kAcpN * kAcpC * kAcpHW, bn_bytes = 4 * kBnN * kBnC * kBnHW;
  g_ceiling.acp = copy_gbps(acp_bytes);
  g_ceiling.bn = copy_gbps(bn_bytes);
  benchmark::AddCustomContext("copy_GB/s_64MiB", std::to_string(g_ceiling.acp));
  benchmark::AddCustomContext("copy_GB/s_512MiB", std::to_string(g_ceiling.bn));
  benchmark::RegisterBenchmark("d2d_copy/64MiB", BM_copy, acp_bytes)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("d2d_copy/512MiB", BM_copy, bn_bytes)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("acp_forward/32x2048x16x16_f32", BM_acp_forward)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("acp_backward/32x2048x16x16_f32", BM_acp_backward)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("bn_forward_training/32x256x128x128_f32", BM_bn_forward_training)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("bn_backward_training/32x256x128x128_f32", BM_bn_backward_training)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

#else  // no CUDA in this build

int main() {
  std::printf("bench_gpu_pool: built without CUDA (HPA_CUDA=OFF or no nvcc); nothing to measure\n");
  return 0;
}

#endif
