// CPU-vs-CUDA parity of whole models (models/*.cpp on the CUDA backend): the op-level
// parity tests (test_gpu_*.cpp) prove each kernel; this proves they compose. For every
// backbone family one training step runs from the same initialization (same seed), the
// same batch and the same dropout masks (the CUDA mask is bit-identical to the CPU's for
// the same (seed, offset)):
//   train-mode forward -> logits; loss = mean BCE; backward -> every parameter's gradient;
//   SGD step (lr 0.01, momentum 0.9) -> every parameter; the BatchNorm running statistics
//   and counters; a second train-mode forward (loss after the step); an eval-mode forward
//   (logits through the running statistics).
// Four runs: CPU f64 (the reference), CPU f32, CUDA f32 and CUDA f64 (TF32 off). Each
// tensor of each run is compared norm-wise with the reference:
//   e = ||run - ref|| / (||ref|| + 1e-7 sqrt(n))   (the floor: a gradient that is zero up
//                                                    to rounding is not divided by ~0).
//
// Why the bounds are relative to the CPU's own f32 error. These networks, at random
// initialization in training mode, are ill-conditioned: the gradients of the BatchNorm
// parameters are small differences of large terms, batch means of zero-mean activations
// cancel, and ReLU and max-pool decisions flip on rounding. Measured on the CPU alone (no
// GPU involved), f32 against f64: resnet50 at 64x64 gradients 4e-2 and running means
// 1.5e-1 after the step; inception_v4 5e-1; PyTorch's own f32 resnet50 gradients are 3e-2
// from its f64 ones at the same sizes. So no fixed f32 tolerance separates rounding from
// a defect; the CPU f32 error e_cpu32 measures how much rounding each tensor amplifies:
//   CUDA f32: e <= 1000 e_cpu32 + 2e-5 for every tensor, and the median over the model's
//             tensors of e / e_cpu32 <= 16. cuDNN picks its fastest f32 algorithm (some,
//             Winograd and FFT among them, round far more than a GEMM: test_gpu_conv
//             accepts 1e-4 normwise per convolution against the CPU's ~1e-7), so single
//             tensors land up to ~100x the CPU's error (seen on an H200: densenet121's
//             denseblock2 norm1 gradients, 116x); the ratio 1000 is the one the op-level
//             test accepts. What the per-tensor bound lets through, the median catches: a
//             systematic loss of precision, e.g. TF32 left on (2^-11 against 2^-24: ~8000x
//             on every tensor), moves the median; one algorithm's rounding does not.
//   CUDA f64: e <= 1e-4 e_cpu32 + 1e-11 -- f64-grade: linear error propagation predicts
//             e ~ (2^-53 / 2^-24) e_cpu32 ~ 2e-9 e_cpu32; where the f32 error saturates
//             (sign flips, cancelling means) the ratio was seen up to 4e-6 on an H200
//             (inception_v4's last block). A kernel that computes in f32 inside the f64
//             path gives a ratio near 1, a wrong index or a missed term far above.
// se_resnext50_32x4d is initialized as timm's (zero_init_last: every block's bn3.weight
// starts at 0), so its residual branches add nothing forward and nothing below a bn3 gets
// a gradient in this step: it checks the stem, downsample and bn3/SE gradients, not the
// branches' deeper backward (resnext50_32x4d covers the grouped convolutions' backward).
// Every num_batches_tracked counter must be equal. The largest error of each kind and run
// is printed, so a run shows where each model stands.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "models/classifier.h"
#include "optim/sgd.h"
#include "tensor/autograd.h"
#include "tensor/ops.h"
#include "tensor/random.h"
#include "tests/gpu_util.h"

using namespace hpa;

namespace {

struct Case {
  std::string model;
  int size;           // input height = width
  std::string head;   // "gap" or "acp"
  std::string buffering;
};

#ifdef HPA_MODELS_PARITY_ON_CPU
const Device kGpu = Device::cpu();  // tools: the test's arithmetic on the CPU alone
#else
const Device kGpu = Device::cuda(0);
#endif
constexpr double kF32Factor = 1000, kF32Floor = 2e-5, kF32MedianRatio = 16, kF64Factor = 1e-4, kF64Floor = 1e-11;

double rel_err(const Tensor& actual, const Tensor& reference) {
  const auto a = test::as_doubles(actual), r = test::as_doubles(reference);
  double diff = 0, ref = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    diff += (a[i] - r[i]) * (a[i] - r[i]);
    ref += r[i] * r[i];
  }
  if (std::isnan(diff)) return INFINITY;
  return std::sqrt(diff) / (std::sqrt(ref) + 1e-7 * std::sqrt(static_cast<double>(r.size())));
}

// One device's run of the step described above; every result on the host.
struct StepResult {
  Tensor logits, loss, loss_after, eval_logits;
  NamedTensors grads, params, buffers;
};

StepResult run_step(const Case& c, DType dtype, Device device, const Tensor& x_host, const Tensor& y_host) {
  Generator dropout_gen(1234);
  ModelOptions o;
  o.head = c.head;
  o.buffering = parse_buffering(c.buffering);
  o.seed = 7;
  o.dropout_gen = &dropout_gen;
  ClassifierPtr model = make_model(c.model, o);
  model->to(dtype);
  model->to(device);
  model->train();

  kernels::SgdArgs args;
  args.lr = 0.01;
  args.momentum = 0.9;
  SGD sgd(param_groups(model->parameter_groups(), args));

  Tensor x, y;
  {
    NoGradGuard no_grad;
    x = x_host.to(dtype).to(device);
    y = y_host.to(dtype).to(device);
  }
  StepResult r;
  sgd.zero_grad();
  Tensor logits = (*model)(x);
  Tensor loss = mean(bce_with_logits_per_sample(logits, y));
  loss.backward();
  r.logits = logits.detach().to(Device::cpu());
  r.loss = loss.detach().to(Device::cpu());
  for (auto& [name, p] : model->named_parameters()) {
    EXPECT_TRUE(p.grad().defined()) << c.model << ": no gradient reached " << name << " on " << device;
    if (p.grad().defined()) r.grads.emplace_back(name, p.grad().to(Device::cpu()));
  }
  sgd.step();
  r.loss_after = mean(bce_with_logits_per_sample((*model)(x), y)).detach().to(Device::cpu());
  model->eval();
  {
    NoGradGuard no_grad;
    r.eval_logits = (*model)(x).to(Device::cpu());
  }
  for (auto& [name, p] : model->named_parameters()) r.params.emplace_back(name, p.detach().to(Device::cpu()));
  for (auto& [name, b] : model->named_buffers()) r.buffers.emplace_back(name, b.to(Device::cpu()));
  return r;
}

// Largest error of one kind of tensor, and where.
struct Worst {
  double error = -1;
  std::string name;
  void see(double e, const std::string& n) {
    if (e > error) {
      error = e;
      name = n;
    }
  }
};

// Every compared tensor of a run, in one list: ("logits", "train") ... ("buffer", name).
std::vector<std::tuple<std::string, std::string, Tensor>> flatten(const StepResult& r) {
  std::vector<std::tuple<std::string, std::string, Tensor>> all{{"logits", "train", r.logits},
                                                                {"loss", "before step", r.loss},
                                                                {"loss", "after step", r.loss_after},
                                                                {"logits", "eval", r.eval_logits}};
  for (auto& [n, t] : r.grads) all.emplace_back("grad", n, t);
  for (auto& [n, t] : r.params) all.emplace_back("param", n, t);
  for (auto& [n, t] : r.buffers) all.emplace_back("buffer", n, t);
  return all;
}

void expect_parity(const Case& c) {
  HPA_REQUIRE_GPU();
  test::NoTf32 exact;
  Generator data_gen(99);
  const int64_t batch = 4, classes = 28;
  // Pixels representable in f32, so the f32 and f64 runs see the same input.
  const Tensor x = Tensor::randn({batch, 4, c.size, c.size}, DType::f32, Device::cpu(), &data_gen).to(DType::f64);
  std::vector<double> labels = Tensor::rand({batch, classes}, DType::f64, Device::cpu(), &data_gen).to_vector<double>();
  for (double& l : labels) l = l > 0.75 ? 1.0 : 0.0;  // a quarter positive
  const Tensor y = Tensor::from_vector(labels, {batch, classes});

  const auto ref = flatten(run_step(c, DType::f64, Device::cpu(), x, y));
  const auto cpu32 = flatten(run_step(c, DType::f32, Device::cpu(), x, y));
  const auto gpu32 = flatten(run_step(c, DType::f32, kGpu, x, y));
  const auto gpu64 = flatten(run_step(c, DType::f64, kGpu, x, y));
  ASSERT_EQ(gpu32.size(), ref.size());
  ASSERT_EQ(gpu64.size(), ref.size());
  ASSERT_EQ(cpu32.size(), ref.size());

  std::map<std::string, Worst> worst_cpu32, worst_gpu32, worst_gpu64;
  std::vector<double> ratios32;  // e_gpu32 / e_cpu32 per tensor
  double max_ratio64 = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const auto& [kind, name, r] = ref[i];
    const Tensor& g32 = std::get<2>(gpu32[i]);
    const Tensor& g64 = std::get<2>(gpu64[i]);
    const Tensor& c32 = std::get<2>(cpu32[i]);
    ASSERT_EQ(std::get<1>(gpu32[i]), name);
    ASSERT_EQ(g32.shape(), r.shape()) << c.model << " " << kind << " " << name;
    ASSERT_EQ(g64.shape(), r.shape()) << c.model << " " << kind << " " << name;
    if (r.dtype() == DType::i64) {  // num_batches_tracked
      EXPECT_EQ(g32.item(), r.item()) << c.model << " " << name;
      EXPECT_EQ(g64.item(), r.item()) << c.model << " " << name;
      continue;
    }
    const double e_cpu32 = rel_err(c32, r), e_gpu32 = rel_err(g32, r), e_gpu64 = rel_err(g64, r);
    worst_cpu32[kind].see(e_cpu32, name);
    ratios32.push_back(e_gpu32 / std::max(e_cpu32, 1e-7));
    max_ratio64 = std::max(max_ratio64, e_gpu64 / std::max(e_cpu32, 1e-7));
    worst_gpu32[kind].see(e_gpu32, name);
    worst_gpu64[kind].see(e_gpu64, name);
    const double bound32 = kF32Factor * e_cpu32 + kF32Floor;
    const double bound64 = kF64Factor * e_cpu32 + kF64Floor;
    EXPECT_LE(e_gpu32, bound32) << c.model << " f32 " << kind << " " << name << ": CUDA error " << e_gpu32
                                << " against the f64 CPU reference, CPU f32 error " << e_cpu32;
    EXPECT_LE(e_gpu64, bound64) << c.model << " f64 " << kind << " " << name << ": CUDA error " << e_gpu64
                                << " against the f64 CPU reference (CPU f32 error " << e_cpu32 << ")";
  }
  auto print = [&](const char* what, std::map<std::string, Worst>& w) {
    std::printf("[ parity ] %-19s %3dx%-3d %-9s", c.model.c_str(), c.size, c.size, what);
    for (auto& [kind, e] : w) std::printf("  %s %.1e (%s)", kind.c_str(), e.error, e.name.c_str());
    std::printf("\n");
  };
  print("cpu f32", worst_cpu32);
  print("cuda f32", worst_gpu32);
  print("cuda f64", worst_gpu64);
  std::sort(ratios32.begin(), ratios32.end());
  const double median32 = ratios32.empty() ? 0 : ratios32[ratios32.size() / 2];
  std::printf("[ parity ] %-19s cuda f32 / cpu f32 error ratio: median %.2g, max %.3g over %zu tensors; "
              "cuda f64 / cpu f32: max %.2g\n",
              c.model.c_str(), median32, ratios32.empty() ? 0.0 : ratios32.back(), ratios32.size(), max_ratio64);
  EXPECT_LE(median32, kF32MedianRatio) << c.model << ": the CUDA f32 run is systematically less accurate than the "
                                          "CPU's (TF32 left on, or an f32 kernel rounding more than it should)";
}

// The acp head with two buffering layers (dropout on): the paper's head, exercised once
// per family; the rest use the other configurations.
const Case kResNet18{"resnet18", 64, "acp", "128:0.25,64:0.5"};
const Case kResNet50{"resnet50", 64, "gap", ""};
const Case kResNeXt50{"resnext50_32x4d", 64, "acp", "64:0.5"};
const Case kSeResNeXt50{"se_resnext50_32x4d", 64, "acp", "64:0.5"};
const Case kDenseNet121{"densenet121", 64, "acp", ""};
const Case kInceptionV4{"inception_v4", 96, "gap", ""};
const Case kGapNet{"gapnet_pl", 128, "gap", ""};  // SELU + AlphaDropout classifier

}  // namespace

TEST(GpuModels, ResNet18) { expect_parity(kResNet18); }
TEST(GpuModels, ResNet50) { expect_parity(kResNet50); }
TEST(GpuModels, ResNeXt50) { expect_parity(kResNeXt50); }
TEST(GpuModels, SeResNeXt50) { expect_parity(kSeResNeXt50); }
TEST(GpuModels, DenseNet121) { expect_parity(kDenseNet121); }
TEST(GpuModels, InceptionV4) { expect_parity(kInceptionV4); }
TEST(GpuModels, GapNetPl) { expect_parity(kGapNet); }
