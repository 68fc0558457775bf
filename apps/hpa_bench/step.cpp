// hpa_bench step: wall time of whole training steps of a model, the figure to put next to
// tools/torch_step_bench.py (same flags, same JSON keys, same step).
//
// One step = zero the gradients, forward in training mode, loss = mean BCE on the logits
// over all N x K elements, backward, SGD update with momentum (lr 0.01, momentum 0.9, over
// the model's "encoder" and "head" parameter groups). The batch is fixed: uniform random
// uint8 pixels converted to float (/255) on the host once, then moved to the device, with
// random {0,1} targets (a quarter positive) -- so the data pipeline is not timed. Warm-up
// steps first (cuDNN algorithm search, allocator caches, page faults), then every timed
// step is bracketed by device synchronizations (cuda::synchronize; the CPU backend is
// synchronous), so a step's time includes all of its queued kernels. The median and the
// minimum over the timed steps are reported; images/s is batch / median.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "apps/hpa_bench/commands.h"
#include "apps/common/args.h"
#include "apps/common/json.h"
#include "apps/common/model_flags.h"
#include "optim/sgd.h"
#include "tensor/ops.h"
#ifdef HPA_WITH_CUDA
#include "tensor/cuda_backend.h"
#endif

namespace hpa::cli {

namespace {

void check_device_usable(Device device) {
  if (device.is_cpu()) return;
#ifdef HPA_WITH_CUDA
  const int count = cuda::device_count();
  HPA_CHECK(device.index < count, "--device ", device, ": ", count,
            " CUDA device(s) present (cudaGetDeviceCount)");
#else
  HPA_FAIL("--device ", device, ": this build has no CUDA backend (configure with -DHPA_CUDA=ON)");
#endif
}

// Waits for every kernel queued on `device` (nothing to wait for on the CPU).
void synchronize(Device device) {
#ifdef HPA_WITH_CUDA
  if (device.is_cuda()) cuda::synchronize(device.index);
#else
  (void)device;
#endif
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int step(int argc, char** argv) {
  Args args(argc, argv, {"json", "no-tf32"});
  if (args.help()) {
    std::printf(
        "usage: hpa_bench step --model M --batch B --size S [--device cpu|cuda[:N]] [--head gap|acp]\n"
        "                      [--buffering S] [--classes K] [--warmup W] [--iters N] [--threads T]\n"
        "                      [--dtype f32|f64] [--seed K] [--no-tf32] [--json]\n"
        "  Times training steps of model M on one fixed\n"
        "  batch of B x 4 x S x S images (random uint8 pixels as float, already on the device) with K\n"
        "  (default 28) random targets. One step: forward in training mode, mean BCE over all B x K\n"
        "  elements, backward, SGD update (lr 0.01, momentum 0.9). W warm-up steps (default 3), then N\n"
        "  timed steps (default 10), each between two device synchronizations. --threads T sets the\n"
        "  OpenMP threads of the CPU kernels (default: OMP_NUM_THREADS or all cores). Head default gap.\n"
        "  On CUDA, f32 convolutions and GEMMs use TF32 tensor-core math (the training default);\n"
        "  --no-tf32 makes them IEEE f32.\n"
        "  Prints the median and minimum step time and images/s (= B / median); --json prints\n"
        "  {model, batch, size, device, dtype, head, threads, warmup, iters, median_ms, min_ms, mean_ms,\n"
        "  images_per_s, loss, peak_memory_bytes, tf32} (the same keys as tools/torch_step_bench.py).\n"
        "  models: %s\n",
        known_models().c_str());
    return 0;
  }
  ModelFlags flags = read_model_flags(args, "gap", 28);
  const int64_t batch = args.integer("batch", 0);
  const int64_t size = args.integer("size", 0);
  const std::string device_name = args.str("device", "cpu");
  const int64_t warmup = args.integer("warmup", 3);
  const int64_t iters = args.integer("iters", 10);
  const int64_t threads = args.integer("threads", 0);
  const DType dtype = read_dtype_flag(args, "f32");
  const uint64_t seed = args.unsigned_integer("seed", 0);
  const bool json = args.flag("json");
  const bool no_tf32 = args.flag("no-tf32");
  args.finish();
  if (batch < 1 || batch > 65536) throw usage_error("--batch must be in [1, 65536], got ", batch);
  if (size < 1 || size > 16384) throw usage_error("--size must be in [1, 16384], got ", size);
  if (warmup < 0) throw usage_error("--warmup must be >= 0, got ", warmup);
  if (iters < 1) throw usage_error("--iters must be >= 1, got ", iters);
  if (threads < 0 || threads > 1024) throw usage_error("--threads must be in [0, 1024], got ", threads);
  Device device;
  try {
    device = parse_device(device_name);
  } catch (const Error& e) {
    throw usage_error("--device: ", e.what());
  }
  check_device_usable(device);
#ifdef HPA_WITH_CUDA
  if (no_tf32) cuda::set_allow_tf32(false);
  const bool tf32 = device.is_cuda() && cuda::allow_tf32();
#else
  (void)no_tf32;
  const bool tf32 = false;
#endif
  if (threads > 0) omp_set_num_threads(static_cast<int>(threads));

  // The model, on the device, and the optimizer over its (moved) parameters.
  flags.options.in_channels = 4;
  flags.options.seed = seed;
  Generator dropout_gen(seed + 1);
  flags.options.dropout_gen = &dropout_gen;
  ClassifierPtr model = make_model(flags.name, flags.options);
  model->to(dtype);
  model->to(device);
  model->train();
  kernels::SgdArgs sgd_args;
  sgd_args.lr = 0.01;
  sgd_args.momentum = 0.9;
  SGD sgd(param_groups(model->parameter_groups(), sgd_args));

  // The fixed batch.
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + 7);
  std::vector<uint8_t> pixels(static_cast<size_t>(batch * 4 * size * size));
  for (auto& p : pixels) p = static_cast<uint8_t>(rng() >> 56);
  std::vector<float> labels(static_cast<size_t>(batch * flags.options.classes));
  for (auto& l : labels) l = (rng() >> 62) == 0 ? 1.0f : 0.0f;
  Tensor x, y;
  {
    NoGradGuard no_grad;
    x = (Tensor::from_vector(pixels, {batch, 4, size, size}).to(dtype) * (1.0 / 255.0)).to(device);
    y = Tensor::from_vector(labels, {batch, flags.options.classes}).to(dtype).to(device);
  }

  auto train_step = [&]() -> Tensor {
    sgd.zero_grad();
    const Tensor logits = (*model)(x);
    const Tensor loss = mean(bce_with_logits_per_sample(logits, y));
    loss.backward();
    sgd.step();
    return loss.detach();
  };

  Allocator& memory = allocator_for(device);
  memory.reset_peak();
  Tensor loss;
  for (int64_t i = 0; i < warmup; ++i) loss = train_step();
  synchronize(device);
  std::vector<double> ms;
  for (int64_t i = 0; i < iters; ++i) {
    synchronize(device);
    const auto t0 = std::chrono::steady_clock::now();
    loss = train_step();
    synchronize(device);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  const double last_loss = loss.item();
  HPA_CHECK(std::isfinite(last_loss), flags.name, " loss is ", last_loss, " after ", warmup + iters,
            " steps");
  const int64_t peak_bytes = memory.stats().peak_bytes;
  const double median_ms = median_of(ms);
  const double min_ms = *std::min_element(ms.begin(), ms.end());
  double mean_ms = 0;
  for (const double t : ms) mean_ms += t / static_cast<double>(ms.size());
  const double images_per_s = static_cast<double>(batch) * 1000.0 / median_ms;
  const int used_threads = omp_get_max_threads();

  if (json) {
    std::printf("%s\n", JsonObject()
                            .str("framework", "hpa")
                            .str("model", flags.name)
                            .integer("batch", batch)
                            .integer("size", size)
                            .str("device", device.str())
                            .str("dtype", dtype_name(dtype))
                            .str("head", flags.options.head)
                            .str("buffering", buffering_str(flags.options.buffering))
                            .integer("threads", used_threads)
                            .integer("warmup", warmup)
                            .integer("iters", iters)
                            .num("median_ms", median_ms)
                            .num("min_ms", min_ms)
                            .num("mean_ms", mean_ms)
                            .num("images_per_s", images_per_s)
                            .num("loss", last_loss)
                            .integer("peak_memory_bytes", peak_bytes)
                            .boolean("tf32", tf32)
                            .dump()
                            .c_str());
    return 0;
  }
  std::printf("hpa_bench step: %s (head %s), batch %lld x 4 x %lld x %lld, %s %s%s, %d threads\n",
              flags.name.c_str(), flags.options.head.c_str(), static_cast<long long>(batch),
              static_cast<long long>(size), static_cast<long long>(size), device.str().c_str(),
              dtype_name(dtype), tf32 ? " (TF32)" : "", used_threads);
  std::printf("  %lld timed steps after %lld warm-up: median %.2f ms, min %.2f ms, mean %.2f ms\n",
              static_cast<long long>(iters), static_cast<long long>(warmup), median_ms, min_ms, mean_ms);
  std::printf("  %.2f images/s; peak %s memory %.1f MiB; final loss %.6f\n", images_per_s,
              device.is_cpu() ? "engine (CPU allocator)" : "device",
              static_cast<double>(peak_bytes) / 1048576.0, last_loss);
  return 0;
}

}  // namespace hpa::cli
