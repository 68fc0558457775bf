// GPU benchmarks of the training objective's and the optimizer's hand-written kernels at
// the sizes of a ResNet50 4x512x512 batch-32 training step, against the device-to-device
// copy bandwidth measured in the same run:
//  - the fused per-sample focal loss with its gradient and value checks (28 classes; the
//    training batch of 32 and an evaluation-sized batch of 4096), as a kernel and as the op
//    (whose 16-byte read-back of the value-check flags synchronizes the stream);
//  - the hard sampler's top-K by rank counting (N = 32 and 4096, K = N / 2);
//  - the fused SGD over ResNet50's 161 parameter tensors (25,557,032 f32 values), each
//    tensor its own allocation as in a real model: one multi-tensor launch with fixed rates,
//    one with the cosine cyclic rate read from the device step counter, and the same kernel
//    launched once per tensor for comparison.
//
// Rules a reader would otherwise guess:
//  - Every benchmark first checks the GPU result against the CPU kernel on the same input
//    (top-K: the same indices exactly; loss and SGD: |gpu - cpu| <= 1e-6 + 1e-5 |cpu|, the
//    parity tests' f32 tolerance); a mismatch prints "VALIDATION FAILED", marks the
//    benchmark as errored and makes the exit status 1.
//  - Kernels are timed with CUDA events around each call on the device's stream, after
//    three warm-up calls; the loss op, which synchronizes, is timed with a steady clock.
//    Run with --benchmark_repetitions=N and read the median.
//  - GB/s counts the bytes a kernel must move at least. Loss: read logits, targets and the
//    weights, write the loss and the gradient. Top-K: each of the N warps reads all N
//    losses, but from L1/L2; counted is the DRAM minimum, read N losses and write N ranks,
//    K indices and K losses (at these sizes the kernels are launch-bound: read the time).
//    SGD: read w, v, g and write w, v: 5 f32 streams, 20 bytes per parameter (the
//    momentum buffer is read, not just written). The copy reads and writes the same 102 MB,
//    so "of_copy" = the kernel's GB/s / the copy's GB/s; the goal for the SGD is 0.8 or more.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <string>
#include <vector>

#include "tensor/ops.h"
#ifdef HPA_WITH_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda_check.h"
#include "kernels/loss.h"
#include "kernels/sgd.h"
#include "kernels/topk.h"
#include "optim/schedule.h"
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

constexpr int64_t kClasses = 28;
constexpr int64_t kResNet50Parameters = 25557032;

hpa::kernels::Stream stream() { return static_cast<hpa::kernels::Stream>(hpa::cuda::stream(0)); }

void fail(benchmark::State& state, const std::string& what) {
  static std::string message;  // SkipWithError keeps the pointer in Google Benchmark 1.7
  message = "VALIDATION FAILED: " + what;
  g_failed = true;
  std::fprintf(stderr, "%s\n", message.c_str());
  state.SkipWithError(message.c_str());
}

// Largest |gpu - cpu| / (atol + rtol |cpu|); infinite for a NaN or a size mismatch.
double worst_error(const std::vector<float>& gpu, const std::vector<float>& cpu, double atol, double rtol) {
  if (gpu.size() != cpu.size()) return INFINITY;
  double worst = 0;
  for (size_t i = 0; i < gpu.size(); ++i) {
    const double err = std::abs(static_cast<double>(gpu[i]) - cpu[i]) / (atol + rtol * std::abs(cpu[i]));
    if (!(err <= worst)) worst = std::isnan(err) ? INFINITY : err;
  }
  return worst;
}

void report_rate(benchmark::State& state, double bytes, double seconds, int64_t calls) {
  const double gbps = seconds > 0 ? bytes * static_cast<double>(calls) / seconds * 1e-9 : 0.0;
  state.counters["GB/s"] = gbps;
  if (g_copy_gbps > 0) state.counters["of_copy"] = gbps / g_copy_gbps;
}

// Times `body` with CUDA events, one iteration per call, after three warm-up calls.
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
  report_rate(state, bytes, seconds, calls);
}

Tensor device_randn(const Shape& shape, uint64_t seed, double scale = 1.0) {
  hpa::Generator g(seed);
  Tensor t = Tensor::randn(shape, DType::f32, Device::cpu(), &g);
  if (scale != 1.0) {
    float* p = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(p[i] * scale);
  }
  return t.to(Device::cuda(0));
}

Tensor device_uniform(const Shape& shape, uint64_t seed, double lo, double hi) {
  hpa::Generator g(seed);
  Tensor t = Tensor::rand(shape, DType::f32, Device::cpu(), &g);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(lo + (hi - lo) * p[i]);
  return t.to(Device::cuda(0));
}

void BM_DeviceToDeviceCopy(benchmark::State& state) {
  const Tensor x = device_randn({kResNet50Parameters}, 1);
  Tensor y = Tensor::empty(x.shape(), DType::f32, Device::cuda(0));
  auto copy = [&] {
    HPA_CUDA_CHECK(
        cudaMemcpyAsync(y.data_ptr(), x.data_ptr(), x.nbytes(), cudaMemcpyDeviceToDevice, stream()));
  };
  copy();
  const std::vector<float> got = y.to_vector<float>(), want = x.to_vector<float>();
  if (std::memcmp(got.data(), want.data(), x.nbytes()) != 0) return fail(state, "copy (not bit-identical)");
  time_on_device(state, 2.0 * static_cast<double>(x.nbytes()), copy);
  g_copy_gbps = state.counters["GB/s"];
}

// ---- fused focal loss -----------------------------------------------------------------------

struct LossInputs {
  Tensor logits, targets, weights, loss, grad, flags;
  hpa::kernels::PerSampleLossArgs args;
};

LossInputs loss_inputs(int64_t n) {
  LossInputs in;
  in.logits = device_randn({n, kClasses}, 2, 3.0);
  in.targets = device_uniform({n, kClasses}, 3, 0.0, 1.0);
  in.weights = device_uniform({kClasses}, 4, 0.2, 3.0);
  in.loss = Tensor::empty({n}, DType::f32, Device::cuda(0));
  in.grad = Tensor::empty({n, kClasses}, DType::f32, Device::cuda(0));
  in.flags = Tensor::empty({2}, DType::i64, Device::cuda(0));
  in.args.n = n;
  in.args.c = kClasses;
  in.args.kind = hpa::kernels::PerSampleLossKind::focal;
  in.args.gamma = 2.0;
  return in;
}

void run_loss_kernel(LossInputs& in) {
  hpa::kernels::per_sample_loss_forward_cuda<float>(
      in.logits.data<float>(), in.targets.data<float>(), in.weights.data<float>(), in.loss.data<float>(),
      in.grad.data<float>(), in.args, in.flags.data<int64_t>(), stream());
}

bool validate_loss(benchmark::State& state, LossInputs& in) {
  run_loss_kernel(in);
  const int64_t n = in.args.n;
  const Tensor x = in.logits.to(Device::cpu()), y = in.targets.to(Device::cpu()),
               w = in.weights.to(Device::cpu());
  std::vector<float> loss(static_cast<size_t>(n)), grad(static_cast<size_t>(n * kClasses));
  hpa::kernels::per_sample_loss_forward_cpu<float>(x.data<float>(), y.data<float>(), w.data<float>(),
                                                   loss.data(), grad.data(), in.args);
  const double err = std::max(worst_error(in.loss.to_vector<float>(), loss, 1e-6, 1e-5),
                              worst_error(in.grad.to_vector<float>(), grad, 1e-6, 1e-5));
  const auto flags = in.flags.to_vector<int64_t>();
  if (err > 1 || flags[0] != -1 || flags[1] != -1) {
    fail(state, "focal loss differs from the CPU by " + std::to_string(err) + "x tolerance (flags " +
                    std::to_string(flags[0]) + ", " + std::to_string(flags[1]) + ")");
    return false;
  }
  return true;
}

double loss_bytes(int64_t n) { return 4.0 * static_cast<double>(3 * n * kClasses + kClasses + n); }

void BM_FusedFocalLossKernel(benchmark::State& state) {
  LossInputs in = loss_inputs(state.range(0));
  if (!validate_loss(state, in)) return;
  time_on_device(state, loss_bytes(in.args.n), [&] { run_loss_kernel(in); });
}

// The op: allocation from the warm cache, the kernel, and the flag read-back (a stream
// synchronization), timed on the host.
void BM_FusedFocalLossOp(benchmark::State& state) {
  LossInputs in = loss_inputs(state.range(0));
  if (!validate_loss(state, in)) return;
  Tensor logits = in.logits.clone().set_requires_grad();  // so the op also writes the gradient
  for (int i = 0; i < 3; ++i)
    benchmark::DoNotOptimize(hpa::focal_loss_per_sample(logits, in.targets, 2.0, in.weights));
  double seconds = 0;
  int64_t calls = 0;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    Tensor loss = hpa::focal_loss_per_sample(logits, in.targets, 2.0, in.weights);
    hpa::cuda::synchronize(0);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    state.SetIterationTime(s);
    seconds += s;
    ++calls;
  }
  report_rate(state, loss_bytes(in.args.n), seconds, calls);
}

// ---- top-K --------------------------------------------------------------------------------

void BM_TopkRankSelect(benchmark::State& state) {
  const int64_t n = state.range(0), k = n / 2;
  const Tensor losses = device_uniform({n}, 5, 0.0, 2.0);
  Tensor ranks = Tensor::empty({n}, DType::i64, Device::cuda(0));
  Tensor indices = Tensor::empty({k}, DType::i64, Device::cuda(0));
  Tensor chosen = Tensor::empty({k}, DType::f32, Device::cuda(0));
  Tensor flag = Tensor::empty({1}, DType::i64, Device::cuda(0));
  auto run = [&] {
    hpa::kernels::topk_rank_select_cuda<float>(losses.data<float>(), n, k, ranks.data<int64_t>(),
                                               indices.data<int64_t>(), chosen.data<float>(),
                                               flag.data<int64_t>(), stream());
  };
  run();
  const Tensor host = losses.to(Device::cpu());
  std::vector<int64_t> expected(static_cast<size_t>(k));
  hpa::kernels::topk_descending_cpu<float>(host.data<float>(), n, k, expected.data());
  if (indices.to_vector<int64_t>() != expected || flag.to_vector<int64_t>()[0] != -1)
    return fail(state, "top-K chose other samples than the CPU");
  time_on_device(
      state, 4.0 * static_cast<double>(n) + 8.0 * static_cast<double>(n + k) + 4.0 * static_cast<double>(k),
      run);
}

// ---- fused SGD over ResNet50 ------------------------------------------------------------------

// Parameter shapes of torchvision's ResNet50 (1000 classes): conv1 and bn1, 16 bottlenecks
// (1x1, 3x3, 1x1 convolutions, each with a BN weight and bias; a 1x1 downsample and its BN
// in the first block of each stage) and the classifier: 161 tensors.
std::vector<Shape> resnet50_parameter_shapes() {
  std::vector<Shape> shapes;
  auto conv_bn = [&](int64_t out, int64_t in, int64_t kernel) {
    shapes.push_back({out, in, kernel, kernel});
    shapes.push_back({out});
    shapes.push_back({out});
  };
  conv_bn(64, 3, 7);
  int64_t in = 64;
  const int64_t blocks[4] = {3, 4, 6, 3}, widths[4] = {64, 128, 256, 512};
  for (int stage = 0; stage < 4; ++stage) {
    for (int64_t b = 0; b < blocks[stage]; ++b) {
      const int64_t width = widths[stage], out = 4 * width;
      conv_bn(width, in, 1);
      conv_bn(width, width, 3);
      conv_bn(out, width, 1);
      if (b == 0) conv_bn(out, in, 1);
      in = out;
    }
  }
  shapes.push_back({1000, 2048});
  shapes.push_back({1000});
  return shapes;
}

struct ResNet50State {
  std::vector<Tensor> w, v, g;
  std::vector<hpa::kernels::SgdTensorRef<float>> refs;
  std::vector<hpa::kernels::SgdGroupArgs> groups;
  int64_t parameters = 0;
};

// Three groups as in the paper: stem and first stages (lr/3), later stages (lr/2), head.
ResNet50State resnet50_state() {
  ResNet50State s;
  const auto shapes = resnet50_parameter_shapes();
  s.groups.resize(3);
  const double scales[3] = {1.0 / 3.0, 0.5, 1.0};
  for (int i = 0; i < 3; ++i) {
    s.groups[static_cast<size_t>(i)].args.lr = 0.01 * scales[i];
    s.groups[static_cast<size_t>(i)].args.momentum = 0.9;
    s.groups[static_cast<size_t>(i)].args.weight_decay = 1e-4;
    s.groups[static_cast<size_t>(i)].lr_scale = scales[i];
  }
  for (size_t t = 0; t < shapes.size(); ++t) {
    s.w.push_back(device_randn(shapes[t], 100 + t, 0.05));
    s.v.push_back(device_randn(shapes[t], 1000 + t, 0.01));
    s.g.push_back(device_randn(shapes[t], 2000 + t, 0.01));
    hpa::kernels::SgdTensorRef<float> ref;
    ref.w = s.w.back().data<float>();
    ref.v = s.v.back().data<float>();
    ref.g = s.g.back().data<float>();
    ref.n = s.w.back().numel();
    ref.group = t + 2 >= shapes.size() ? 2 : t < shapes.size() / 2 ? 0 : 1;
    s.refs.push_back(ref);
    s.parameters += ref.n;
  }
  return s;
}

// One fused update, compared with sgd_update_cpu tensor by tensor.
bool validate_sgd(benchmark::State& state, ResNet50State& s, const hpa::kernels::SgdDeviceSchedule* schedule,
                  int64_t step) {
  if (s.refs.size() != 161 || s.parameters != kResNet50Parameters) {
    fail(state, "ResNet50 has " + std::to_string(s.refs.size()) + " tensors, " +
                    std::to_string(s.parameters) + " parameters; expected 161, " +
                    std::to_string(kResNet50Parameters));
    return false;
  }
  std::vector<std::vector<float>> w, v;
  for (size_t t = 0; t < s.refs.size(); ++t) {
    w.push_back(s.w[t].to_vector<float>());
    v.push_back(s.v[t].to_vector<float>());
  }
  hpa::kernels::sgd_update_multi_tensor_cuda<float>(s.refs.data(), static_cast<int64_t>(s.refs.size()),
                                                    s.groups.data(), 3, schedule, stream());
  double worst = 0;
  for (size_t t = 0; t < s.refs.size(); ++t) {
    hpa::kernels::SgdArgs args = s.groups[static_cast<size_t>(s.refs[t].group)].args;
    if (schedule)
      args.lr = hpa::kernels::cosine_cyclic_lr(schedule->schedule, step,
                                               s.groups[static_cast<size_t>(s.refs[t].group)].lr_scale);
    const auto g = s.g[t].to_vector<float>();
    hpa::kernels::sgd_update_cpu(w[t].data(), v[t].data(), g.data(), s.refs[t].n, args);
    worst = std::max({worst, worst_error(s.w[t].to_vector<float>(), w[t], 1e-6, 1e-5),
                      worst_error(s.v[t].to_vector<float>(), v[t], 1e-6, 1e-5)});
  }
  if (worst > 1) {
    fail(state, "fused SGD differs from the CPU by " + std::to_string(worst) + "x tolerance");
    return false;
  }
  return true;
}

double sgd_bytes(const ResNet50State& s) { return 20.0 * static_cast<double>(s.parameters); }

void BM_FusedSgdResNet50(benchmark::State& state) {
  ResNet50State s = resnet50_state();
  if (!validate_sgd(state, s, nullptr, 0)) return;
  time_on_device(state, sgd_bytes(s), [&] {
    hpa::kernels::sgd_update_multi_tensor_cuda<float>(s.refs.data(), static_cast<int64_t>(s.refs.size()),
                                                      s.groups.data(), 3, nullptr, stream());
  });
  state.counters["tensors"] = static_cast<double>(s.refs.size());
}

// The cosine cyclic rate read from the device step counter, which a second (one-thread)
// kernel advances: a scheduled training step as SGD::step(schedule) queues it.
void BM_FusedSgdResNet50Scheduled(benchmark::State& state) {
  ResNet50State s = resnet50_state();
  const hpa::CosineCyclicSchedule schedule(0.01, 1e-5, 1000, 2);
  Tensor step = Tensor::from_vector<int64_t>({37}, {1}).to(Device::cuda(0));
  hpa::kernels::SgdDeviceSchedule device_schedule;
  device_schedule.schedule = schedule.args();
  device_schedule.step = step.data<int64_t>();
  if (!validate_sgd(state, s, &device_schedule, 37)) return;
  time_on_device(state, sgd_bytes(s), [&] {
    hpa::kernels::sgd_update_multi_tensor_cuda<float>(s.refs.data(), static_cast<int64_t>(s.refs.size()),
                                                      s.groups.data(), 3, &device_schedule, stream());
    hpa::kernels::sgd_advance_step_cuda(step.data<int64_t>(), stream());
  });
}

// The same kernel launched once per tensor (each launch still carries the full tensor
// table in its parameter block): what one launch for the whole model saves.
void BM_SgdResNet50OneLaunchPerTensor(benchmark::State& state) {
  ResNet50State s = resnet50_state();
  if (!validate_sgd(state, s, nullptr, 0)) return;
  time_on_device(state, sgd_bytes(s), [&] {
    for (const auto& ref : s.refs)
      hpa::kernels::sgd_update_multi_tensor_cuda<float>(&ref, 1, s.groups.data(), 3, nullptr, stream());
  });
}

}  // namespace

BENCHMARK(BM_DeviceToDeviceCopy)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_FusedFocalLossKernel)->Arg(32)->Arg(4096)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_FusedFocalLossOp)->Arg(32)->Arg(4096)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TopkRankSelect)->Arg(32)->Arg(4096)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_FusedSgdResNet50)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_FusedSgdResNet50Scheduled)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_SgdResNet50OneLaunchPerTensor)->UseManualTime()->Unit(benchmark::kMicrosecond);

#endif  // HPA_WITH_CUDA

int main(int argc, char** argv) {
#ifndef HPA_WITH_CUDA
  (void)argc;
  (void)argv;
  std::printf("bench_gpu_fused: built without CUDA (HPA_CUDA=OFF or no nvcc): nothing to run\n");
  return 0;
#else
  if (hpa::cuda::device_count() == 0) {
    std::printf("bench_gpu_fused: no GPU present (cudaGetDeviceCount reports none): nothing to run\n");
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return g_failed ? 1 : 0;
#endif
}
