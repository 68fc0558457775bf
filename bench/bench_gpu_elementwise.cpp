// GPU benchmarks of the memory-bound elementwise, reduction, dropout and concat kernels at the size of
// ResNet50's layer-1 activations in a 4x512x512 batch-32 training step (32x256x128x128
// f32, 512 MiB), against the device-to-device copy bandwidth measured in the same run.
//
// Rules a reader would otherwise guess:
//  - Every benchmark first checks the GPU result against the CPU op on the same input
//    (exact for add and relu, 1e-6 relative for the sum); a mismatch prints
//    "VALIDATION FAILED", marks the benchmark as errored and makes the exit status 1.
//  - Forward ops are timed through the public API (allocation from the warm caching
//    allocator included); relu backward calls its kernel launcher, as the autograd node
//    does. Time comes from CUDA events around each call on the device's stream, after
//    three warm-up calls. Run with --benchmark_repetitions=N and read the median.
//  - GB/s counts the bytes the op must move at least: add and relu read x and write y;
//    relu backward reads dy and y and writes dx; the sum reads x. The copy moves (reads and
//    writes) the same 512 MiB, so "of_copy" = the op's GB/s / the copy's GB/s: the goal for
//    these memory-bound kernels is 0.8 or more.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "tensor/ops.h"
#ifdef HPA_WITH_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda_check.h"
#include "kernels/elementwise.h"
#include "tensor/cuda_backend.h"
#endif

#ifdef HPA_WITH_CUDA

namespace {

using hpa::Device;
using hpa::DType;
using hpa::Shape;
using hpa::Tensor;

bool g_failed = false;
double g_copy_gbps = 0;  // set by the copy benchmark, which runs first

const Shape kActivation{32, 256, 128, 128};

cudaStream_t stream() { return static_cast<cudaStream_t>(hpa::cuda::stream(0)); }

void fail(benchmark::State& state, const std::string& what) {
  static std::string message;  // SkipWithError keeps the pointer in Google Benchmark 1.7
  message = "VALIDATION FAILED: " + what;
  g_failed = true;
  std::fprintf(stderr, "%s\n", message.c_str());
  state.SkipWithError(message.c_str());
}

// Largest |gpu - cpu| / (atol + rtol |cpu|) over all elements (both f32).
double worst_error(const Tensor& gpu, const Tensor& cpu, double atol, double rtol) {
  const auto g = gpu.to_vector<float>(), c = cpu.to_vector<float>();
  double worst = g.size() == c.size() ? 0.0 : INFINITY;
  for (size_t i = 0; i < g.size() && i < c.size(); ++i) {
    const double diff = std::abs(static_cast<double>(g[i]) - c[i]), tol = atol + rtol * std::abs(c[i]);
    const double err = diff == 0 ? 0.0 : tol > 0 ? diff / tol : INFINITY;
    if (!(err <= worst)) worst = std::isnan(err) ? INFINITY : err;
  }
  return worst;
}

// Times `body` with CUDA events, one iteration per call, after three warm-up calls;
// reports GB/s from `bytes` per call and the fraction of the copy bandwidth.
template <class Body>
void time_on_device(benchmark::State& state, double bytes, Body&& body) {
  for (int i = 0; i < 3; ++i) body();
  HPA_CUDA_CHECK(cudaStreamSynchronize(stream()));
  cudaEvent_t start, stop;
  HPA_CUDA_CHECK(cudaEventCreate(&start));
  HPA_CUDA_CHECK(cudaEventCreate(&stop));
  double seconds = 0;
  int64_t calls = 0;
  for (auto _ : state) {
    HPA_CUDA_CHECK(cudaEventRecord(start, stream()));
    body();
    HPA_CUDA_CHECK(cudaEventRecord(stop, stream()));
    HPA_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    HPA_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    state.SetIterationTime(ms * 1e-3);
    seconds += ms * 1e-3;
    ++calls;
  }
  HPA_CUDA_CHECK(cudaEventDestroy(start));
  HPA_CUDA_CHECK(cudaEventDestroy(stop));
  const double gbps = seconds > 0 ? bytes * static_cast<double>(calls) / seconds * 1e-9 : 0.0;
  state.counters["GB/s"] = gbps;
  if (g_copy_gbps > 0) state.counters["of_copy"] = gbps / g_copy_gbps;
}

Tensor device_randn(const Shape& shape, uint64_t seed) {
  hpa::Generator g(seed);
  return Tensor::randn(shape, DType::f32, Device::cuda(0), &g);
}

void BM_DeviceToDeviceCopy(benchmark::State& state) {
  const Tensor x = device_randn(kActivation, 1);
  Tensor y = Tensor::empty(kActivation, DType::f32, Device::cuda(0));
  HPA_CUDA_CHECK(cudaMemcpyAsync(y.data_ptr(), x.data_ptr(), x.nbytes(), cudaMemcpyDeviceToDevice, stream()));
  if (worst_error(y, x, 0, 0) > 1) return fail(state, "copy");
  const double bytes = 2.0 * static_cast<double>(x.nbytes());
  time_on_device(state, bytes, [&] {
    HPA_CUDA_CHECK(
        cudaMemcpyAsync(y.data_ptr(), x.data_ptr(), x.nbytes(), cudaMemcpyDeviceToDevice, stream()));
  });
  g_copy_gbps = state.counters["GB/s"];
}

void BM_BroadcastAddBias(benchmark::State& state) {
  const Tensor x = device_randn(kActivation, 2), bias = device_randn({1, 256, 1, 1}, 3);
  const double err =
      worst_error(hpa::add(x, bias), hpa::add(x.to(Device::cpu()), bias.to(Device::cpu())), 0, 0);
  if (err > 1)
    return fail(state, "broadcast add differs from the CPU by " + std::to_string(err) + "x tolerance 0");
  time_on_device(state, 2.0 * static_cast<double>(x.nbytes()),
                 [&] { benchmark::DoNotOptimize(hpa::add(x, bias)); });
}

void BM_ReluForward(benchmark::State& state) {
  const Tensor x = device_randn(kActivation, 4);
  const double err = worst_error(hpa::relu(x), hpa::relu(x.to(Device::cpu())), 0, 0);
  if (err > 1) return fail(state, "relu differs from the CPU by " + std::to_string(err) + "x tolerance 0");
  time_on_device(state, 2.0 * static_cast<double>(x.nbytes()),
                 [&] { benchmark::DoNotOptimize(hpa::relu(x)); });
}

void BM_ReluBackward(benchmark::State& state) {
  const Tensor y = hpa::relu(device_randn(kActivation, 5)), dy = device_randn(kActivation, 6);
  Tensor dx = Tensor::empty(kActivation, DType::f32, Device::cuda(0));
  const hpa::kernels::UnaryArgs args{y.numel(), 0.0};
  auto run = [&] {
    hpa::kernels::unary_backward_cuda(hpa::kernels::UnaryOp::relu, dy.data<float>(), y.data<float>(),
                                      dx.data<float>(), args, stream());
  };
  run();
  // The CPU reference goes through autograd: d(sum(relu(x) * dy))/dx = relu'(x) * dy.
  const Tensor x_cpu = y.to(Device::cpu()).set_requires_grad();
  hpa::sum(hpa::mul(hpa::relu(x_cpu), dy.to(Device::cpu()))).backward();
  const double err = worst_error(dx, x_cpu.grad(), 0, 0);
  if (err > 1)
    return fail(state, "relu backward differs from the CPU by " + std::to_string(err) + "x tolerance 0");
  time_on_device(state, 3.0 * static_cast<double>(y.nbytes()), run);
}

void BM_SumOverBatchAndSpace(benchmark::State& state) {
  const Tensor x = device_randn(kActivation, 7);
  const std::vector<int> dims = {0, 2, 3};
  // Both sum 524288 values per channel in double; the f32 results differ by at most a
  // rounding step.
  const double err = worst_error(hpa::sum(x, dims), hpa::sum(x.to(Device::cpu()), dims), 1e-6, 1e-6);
  if (err > 1)
    return fail(state, "sum over N,H,W differs from the CPU by " + std::to_string(err) + "x tolerance");
  time_on_device(state, static_cast<double>(x.nbytes()),
                 [&] { benchmark::DoNotOptimize(hpa::sum(x, dims)); });
}

// Dropout draws its mask from the Philox stream: the same (seed, offset) gives the CPU's
// mask bit for bit, so the comparison is exact. Reads x, writes y.
void BM_DropoutForward(benchmark::State& state) {
  const Tensor x = device_randn(kActivation, 8);
  hpa::Generator g_gpu(42), g_cpu(42);
  const double err = worst_error(hpa::dropout(x, 0.5, true, &g_gpu),
                                 hpa::dropout(x.to(Device::cpu()), 0.5, true, &g_cpu), 0, 0);
  if (err > 1) return fail(state, "dropout differs from the CPU by " + std::to_string(err) + "x tolerance 0");
  hpa::Generator g(7);
  time_on_device(state, 2.0 * static_cast<double>(x.nbytes()),
                 [&] { benchmark::DoNotOptimize(hpa::dropout(x, 0.5, true, &g)); });
}

// DenseNet-style channel concatenation of two halves of the activation: reads both,
// writes the whole.
void BM_ConcatChannels(benchmark::State& state) {
  const Tensor a = device_randn({32, 128, 128, 128}, 9), b = device_randn({32, 128, 128, 128}, 10);
  const double err =
      worst_error(hpa::concat({a, b}, 1), hpa::concat({a.to(Device::cpu()), b.to(Device::cpu())}, 1), 0, 0);
  if (err > 1) return fail(state, "concat differs from the CPU by " + std::to_string(err) + "x tolerance 0");
  time_on_device(state, 2.0 * static_cast<double>(a.nbytes() + b.nbytes()),
                 [&] { benchmark::DoNotOptimize(hpa::concat({a, b}, 1)); });
}

}  // namespace

BENCHMARK(BM_DeviceToDeviceCopy)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_BroadcastAddBias)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ReluForward)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ReluBackward)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_SumOverBatchAndSpace)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DropoutForward)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ConcatChannels)->UseManualTime()->Unit(benchmark::kMicrosecond);

#endif  // HPA_WITH_CUDA

int main(int argc, char** argv) {
#ifndef HPA_WITH_CUDA
  (void)argc;
  (void)argv;
  std::printf("bench_gpu_elementwise: built without CUDA (HPA_CUDA=OFF or no nvcc): nothing to run\n");
  return 0;
#else
  if (hpa::cuda::device_count() == 0) {
    std::printf("bench_gpu_elementwise: no GPU present (cudaGetDeviceCount reports none): nothing to run\n");
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return g_failed ? 1 : 0;
#endif
}
