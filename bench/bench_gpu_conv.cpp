// GPU benchmark of the cuDNN convolutions (kernels/conv.cu) at the shapes of a ResNet50
// training step on 4-channel 512x512 images, batch 32, against the cuBLAS GEMM rate
// measured in the same run (the practical ceiling of a convolution, which is a GEMM in
// disguise):
//   stem    32x4x512x512,   7x7 stride 2 pad 3 -> 64 (output 256x256)
//   layer1  32x64x128x128,  3x3 pad 1 -> 64
//   layer3  32x1024x32x32,  1x1 -> 256
// each as forward, backward-data and backward-filter, with TF32 on (the training default)
// and off (IEEE f32), plus
//   gemm_tf32/8192   cublasGemmEx 8192^3, f32 data, CUBLAS_COMPUTE_32F_FAST_TF32
//   gemm_bf16/8192   cublasGemmEx 8192^3, bf16 data, f32 compute
// Counters: TFLOP/s (2 x N x C_out x H_out x W_out x C_in/groups x KH x KW per pass, the
// same count in all three directions), and that as a fraction of the TF32 and bf16 GEMM
// rates (frac_tf32_gemm, frac_bf16_gemm). The stem's 4 input channels give a reduction of
// only 196, far from the GEMM's 8192: its low fraction is the shape's, not a defect.
// Validation first: every launcher at the same shape with batch 2 and TF32 off against
// the CPU kernels (normwise tolerance 1e-4, as tests/test_gpu_conv.cpp); exit 1 on a
// mismatch. The algorithm search (cudnnFind*) runs in the warm-up. No GPU: says so, exits 0.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/conv.h"
#include "tensor/random.h"
#include "tensor/tensor.h"
#ifdef HPA_WITH_CUDA
#include <cublas_v2.h>

#include "kernels/cudnn_check.h"
#include "tensor/cuda_backend.h"
#endif

#ifdef HPA_WITH_CUDA

namespace {

using namespace hpa;

constexpr int kLaunchesPerIteration = 5;

kernels::Stream stream0() { return static_cast<kernels::Stream>(cuda::stream(0)); }

// Workspace from the caching allocator, returned when the object dies (as in tensor/ops/conv.cpp).
class CachingWorkspace final : public kernels::CudaWorkspace {
 public:
  void* allocate(size_t bytes) override {
    buffers_.push_back(Tensor::empty({static_cast<int64_t>(bytes)}, DType::u8, Device::cuda(0)));
    return buffers_.back().data_ptr();
  }

 private:
  std::vector<Tensor> buffers_;
};

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

struct ConvShape {
  const char* name;
  int64_t n, c_in, hw, c_out, k, stride, pad;

  kernels::Conv2dArgs args(int64_t batch) const {
    kernels::Conv2dArgs a;
    a.n = batch;
    a.c_in = c_in;
    a.h = a.w = hw;
    a.c_out = c_out;
    a.kh = a.kw = k;
    a.stride_h = a.stride_w = stride;
    a.pad_h = a.pad_w = pad;
    a.h_out = a.w_out = kernels::conv_output_size(hw, k, stride, pad, 1);
    return a;
  }
};

const ConvShape kShapes[] = {
    {"stem_7x7s2/32x4x512x512->64", 32, 4, 512, 64, 7, 2, 3},
    {"layer1_3x3/32x64x128x128->64", 32, 64, 128, 64, 3, 1, 1},
    {"layer3_1x1/32x1024x32x32->256", 32, 1024, 32, 256, 1, 1, 0},
};

enum class Pass { forward, backward_data, backward_filter };
const char* pass_name(Pass p) {
  return p == Pass::forward ? "conv_fwd" : p == Pass::backward_data ? "conv_bwd_data" : "conv_bwd_filter";
}

double flops(const kernels::Conv2dArgs& a) {
  return 2.0 * static_cast<double>(a.n * a.c_out * a.h_out * a.w_out) *
         static_cast<double>((a.c_in / a.groups) * a.kh * a.kw);
}

// Device buffers of one shape: x, weight, y / grad_y, and the three outputs.
struct ConvBuffers {
  kernels::Conv2dArgs a;
  Tensor x_cpu, w_cpu, gy_cpu;
  Tensor x, w, y, gy, grad_x, grad_w;

  ConvBuffers(const ConvShape& s, int64_t batch) : a(s.args(batch)) {
    Generator gen(17);
    x_cpu = Tensor::randn({a.n, a.c_in, a.h, a.w}, DType::f32, Device::cpu(), &gen);
    w_cpu = Tensor::randn({a.c_out, a.c_in, a.kh, a.kw}, DType::f32, Device::cpu(), &gen);
    gy_cpu = Tensor::randn({a.n, a.c_out, a.h_out, a.w_out}, DType::f32, Device::cpu(), &gen);
    x = x_cpu.to(Device::cuda(0));
    w = w_cpu.to(Device::cuda(0));
    gy = gy_cpu.to(Device::cuda(0));
    y = Tensor::empty(gy.shape(), DType::f32, Device::cuda(0));
    grad_x = Tensor::empty(x.shape(), DType::f32, Device::cuda(0));
    grad_w = Tensor::empty(w.shape(), DType::f32, Device::cuda(0));
  }

  void run(Pass p, bool tf32) {
    CachingWorkspace workspace;
    const kernels::Conv2dCudaContext ctx{0, stream0(), tf32, &workspace};
    switch (p) {
      case Pass::forward:
        kernels::conv2d_forward_cuda<float>(a, x.data<float>(), w.data<float>(), nullptr, y.data<float>(),
                                            ctx);
        break;
      case Pass::backward_data:
        kernels::conv2d_backward_input_cuda<float>(a, gy.data<float>(), w.data<float>(), grad_x.data<float>(),
                                                   ctx);
        break;
      case Pass::backward_filter:
        kernels::conv2d_backward_weight_cuda<float>(a, gy.data<float>(), x.data<float>(),
                                                    grad_w.data<float>(), ctx);
        break;
    }
  }
};

// |gpu - cpu| <= tol x (rms(cpu) + |cpu|) everywhere.
bool normwise_close(const std::vector<float>& gpu, const std::vector<float>& cpu, double tol,
                    const char* what) {
  double sq = 0;
  for (float v : cpu) sq += static_cast<double>(v) * v;
  const double scale = std::sqrt(sq / static_cast<double>(std::max<size_t>(1, cpu.size())));
  for (size_t i = 0; i < cpu.size(); ++i) {
    const double diff = std::abs(static_cast<double>(gpu[i]) - cpu[i]);
    if (!(diff <= tol * (scale + std::abs(cpu[i])))) {
      std::fprintf(stderr, "%s: element %zu is %g on the GPU, %g on the CPU\n", what, i, gpu[i], cpu[i]);
      return false;
    }
  }
  return true;
}

bool validate(const ConvShape& s) {
  ConvBuffers b(s, 2);
  const kernels::Conv2dArgs& a = b.a;
  for (Pass p : {Pass::forward, Pass::backward_data, Pass::backward_filter}) b.run(p, /*tf32=*/false);
  std::vector<float> y(static_cast<size_t>(b.y.numel())), gx(static_cast<size_t>(b.x.numel())),
      gw(static_cast<size_t>(b.w.numel()));
  kernels::conv2d_forward_cpu<float>(a, b.x_cpu.data<float>(), b.w_cpu.data<float>(), nullptr, y.data());
  kernels::conv2d_backward_input_cpu<float>(a, b.gy_cpu.data<float>(), b.w_cpu.data<float>(), gx.data());
  kernels::conv2d_backward_weight_cpu<float>(a, b.gy_cpu.data<float>(), b.x_cpu.data<float>(), gw.data());
  const std::string name = s.name;
  return normwise_close(b.y.to_vector<float>(), y, 1e-4, (name + " forward").c_str()) &&
         normwise_close(b.grad_x.to_vector<float>(), gx, 1e-4, (name + " backward-data").c_str()) &&
         normwise_close(b.grad_w.to_vector<float>(), gw, 1e-4, (name + " backward-filter").c_str());
}

struct GemmRates {
  double tf32 = 0, bf16 = 0;  // TFLOP/s
} g_gemm;

// The best of a few timings of an 8192^3 cublasGemmEx (f32 data with TF32 compute, or
// bf16 data with f32 compute), TFLOP/s. Random data: all-zero operands draw less power and
// would flatter the ceiling.
double gemm_tflops(bool bf16) {
  constexpr int64_t kN = 8192;
  Generator gen(3);
  const Tensor host = Tensor::randn({kN, kN}, DType::f32, Device::cpu(), &gen);
  Tensor a, b, c;
  if (bf16) {
    std::vector<uint16_t> bits(static_cast<size_t>(kN * kN));
    const float* f = host.data<float>();
    for (size_t i = 0; i < bits.size(); ++i) {
      uint32_t u;
      std::memcpy(&u, &f[i], 4);
      bits[i] = static_cast<uint16_t>(u >> 16);
    }
    a = Tensor::empty({kN, kN}, DType::bf16, Device::cuda(0));
    HPA_CUDA_CHECK(cudaMemcpy(a.data_ptr(), bits.data(), bits.size() * 2, cudaMemcpyHostToDevice));
    b = a.clone();
    c = Tensor::empty({kN, kN}, DType::bf16, Device::cuda(0));
  } else {
    a = host.to(Device::cuda(0));
    b = a.clone();
    c = Tensor::empty({kN, kN}, DType::f32, Device::cuda(0));
  }
  cublasHandle_t handle;
  HPA_CUBLAS_CHECK(cublasCreate(&handle));
  HPA_CUBLAS_CHECK(cublasSetStream(handle, stream0()));
  const float one = 1, zero = 0;
  const cudaDataType_t type = bf16 ? CUDA_R_16BF : CUDA_R_32F;
  const cublasComputeType_t compute = bf16 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_TF32;
  auto launch = [&] {
    HPA_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, kN, kN, kN, &one, a.data_ptr(), type, kN,
                                  b.data_ptr(), type, kN, &zero, c.data_ptr(), type, kN, compute,
                                  CUBLAS_GEMM_DEFAULT));
  };
  time_launches(launch);  // warm-up
  double best = 1e30;
  for (int i = 0; i < 3; ++i) best = std::min(best, time_launches(launch));
  HPA_CUBLAS_CHECK(cublasDestroy(handle));
  return 2.0 * kN * kN * kN / best * 1e-12;
}

// Measured once in main (the conv fractions need it first); reported here with its time.
void BM_gemm(benchmark::State& state, bool bf16) {
  const double tflops = bf16 ? g_gemm.bf16 : g_gemm.tf32;
  for (auto _ : state) state.SetIterationTime(2.0 * 8192.0 * 8192.0 * 8192.0 / (tflops * 1e12));
  state.counters["TFLOP/s"] = tflops;
}

void BM_conv(benchmark::State& state, const ConvShape* shape, Pass pass, bool tf32) {
  static ConvBuffers* buffers = nullptr;
  static const ConvShape* buffers_shape = nullptr;
  if (buffers_shape != shape) {  // one shape's buffers alive at a time
    delete buffers;
    buffers = nullptr;
    buffers = new ConvBuffers(*shape, shape->n);
    buffers_shape = shape;
  }
  ConvBuffers& b = *buffers;
  auto launch = [&] { b.run(pass, tf32); };
  for (int i = 0; i < 2; ++i) launch();  // warm-up, including the algorithm search
  HPA_CUDA_CHECK(cudaStreamSynchronize(stream0()));
  double total = 0;
  for (auto _ : state) {
    const double s = time_launches(launch);
    state.SetIterationTime(s);
    total += s;
  }
  const double tflops = flops(b.a) / (total / static_cast<double>(state.iterations())) * 1e-12;
  state.counters["TFLOP/s"] = tflops;
  state.counters["frac_tf32_gemm"] = tflops / g_gemm.tf32;
  state.counters["frac_bf16_gemm"] = tflops / g_gemm.bf16;
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (!cuda::available()) {
    std::printf("bench_gpu_conv: no GPU present (cudaGetDeviceCount reports none); nothing to measure\n");
    return 0;
  }
  for (const ConvShape& s : kShapes) {
    if (!validate(s)) {
      std::fprintf(stderr, "bench_gpu_conv: cuDNN results differ from the CPU; not benchmarking\n");
      return 1;
    }
  }
  g_gemm.tf32 = gemm_tflops(false);
  g_gemm.bf16 = gemm_tflops(true);
  benchmark::AddCustomContext("cublas_gemm_tf32_8192_TFLOP/s", std::to_string(g_gemm.tf32));
  benchmark::AddCustomContext("cublas_gemm_bf16_8192_TFLOP/s", std::to_string(g_gemm.bf16));
  benchmark::AddCustomContext("cudnn_workspace_limit_MiB",
                              std::to_string(kernels::conv2d_cuda_workspace_limit() >> 20));
  benchmark::RegisterBenchmark("gemm_tf32/8192", BM_gemm, false)
      ->UseManualTime()
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("gemm_bf16/8192", BM_gemm, true)
      ->UseManualTime()
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond);
  for (const ConvShape& s : kShapes) {
    for (Pass p : {Pass::forward, Pass::backward_data, Pass::backward_filter}) {
      for (bool tf32 : {true, false}) {
        const std::string name = std::string(pass_name(p)) + "/" + s.name + (tf32 ? "/tf32" : "/fp32");
        benchmark::RegisterBenchmark(name.c_str(), BM_conv, &s, p, tf32)
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
      }
    }
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

#else  // no CUDA in this build

int main() {
  std::printf("bench_gpu_conv: built without CUDA (HPA_CUDA=OFF or no nvcc); nothing to measure\n");
  return 0;
}

#endif
