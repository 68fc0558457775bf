// CPU benchmarks of the engine's heavy ops at ResNet shapes, through the public API
// (tensor/ops.h), plus the machine's measured ceilings (FMA peak, memory bandwidth) that
// the rates are read against. tools/run_cpu_bench.sh runs this next to the same shapes in
// PyTorch (tools/torch_cpu_bench.py) and prints the ratios; docs/PERFORMANCE.md has them.
//
// Rules a reader would otherwise guess:
//  - Every benchmark first checks its result against a naive double-precision reference
//    on sampled elements (corners included, so padding is exercised); a mismatch prints
//    "VALIDATION FAILED", marks the benchmark as errored and makes the exit status 1.
//    The check is repeated after the timed loop.
//  - Backward passes are timed by calling the op's autograd node directly (the op's
//    backward work alone, no graph walk, no accumulation into .grad) -- the counterpart
//    of PyTorch's aten::convolution_backward. The graph is built with only the operand
//    being differentiated requiring a gradient (x for backward-data, w for backward-filter),
//    and the benchmark fails if the node computes a gradient nobody asked for or if the
//    op is not a single node (node-level timing would then miss part of it).
//  - Time is wall time from a steady clock (manual time), allocation and release of the
//    result included, after validation and two warm-up calls. Run with
//    --benchmark_repetitions=N and read the median. Threads: OMP_NUM_THREADS.
//  - GFLOP/s counts 2 * multiply-adds of the mathematical op (conv: 2 N Cout Hout Wout
//    Cin/groups KH KW per pass); GB/s counts the bytes the op must move at least (pool
//    forward: read x, write y; backward: read dy, write dx).
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "tensor/ops.h"

#if defined(__FMA__) && defined(__AVX__)
#include <immintrin.h>
#endif

namespace {

using hpa::Tensor;

bool g_failed = false;

// Marks the benchmark as failed where nobody can miss it: stderr, the report, exit code.
void fail(benchmark::State& state, const std::string& name, const std::string& what) {
  const std::string message = "VALIDATION FAILED: " + what;
  g_failed = true;
  std::fprintf(stderr, "%s: %s\n", name.c_str(), message.c_str());
  state.SkipWithError(message.c_str());
}

// Times `body` (which creates and drops its results) with a steady clock; returns the
// total seconds of the timed iterations.
template <class Body>
double timed_loop(benchmark::State& state, Body&& body) {
  for (int i = 0; i < 2; ++i) body();  // warm-up: thread pools, scratch buffers, page faults
  double seconds = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    body();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    state.SetIterationTime(dt);
    seconds += dt;
  }
  return seconds;
}

void set_rate_counters(benchmark::State& state, double seconds, double flop, double bytes) {
  if (seconds <= 0) return;
  const double iters = static_cast<double>(state.iterations());
  if (flop > 0) state.counters["GFLOP/s"] = flop * iters / seconds / 1e9;
  if (bytes > 0) state.counters["GB/s"] = bytes * iters / seconds / 1e9;
  state.counters["threads"] = omp_get_max_threads();
}

Tensor random_tensor(const std::vector<int64_t>& dims, uint64_t seed) {
  hpa::Generator gen(seed);
  return Tensor::randn(hpa::Shape(dims), hpa::DType::f32, hpa::Device::cpu(), &gen);
}

// A reference value and the sum of the magnitudes of its terms. The tolerance is
// kRelTol of that sum: any float summation order stays far inside it (the worst case here,
// 25088 terms, measures ~1e-6), while a wrong index or a missed tap shifts the result by
// about 1/sqrt(terms) of the sum (>= 6e-3 at these shapes), 60x over the bar.
struct Reference {
  double value = 0, abs_sum = 0;
  void add(double term) {
    value += term;
    abs_sum += std::abs(term);
  }
};
constexpr double kRelTol = 1e-4;

bool close_to(double got, const Reference& ref) {
  return std::abs(got - ref.value) <= kRelTol * ref.abs_sum + 1e-6;
}

std::string mismatch(const char* what, const std::vector<int64_t>& index, double got, const Reference& ref) {
  std::string at;
  for (size_t i = 0; i < index.size(); ++i) {
    if (i) at += ',';
    at += std::to_string(index[i]);
  }
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s[%s] = %.7g, reference %.7g (tolerance %.3g)", what, at.c_str(), got,
                ref.value, kRelTol * ref.abs_sum + 1e-6);
  return buf;
}

// `count` sample positions in a tensor of `dims`: the first and last element, the four
// spatial corners of a middle plane, then uniformly random ones (fixed seed).
std::vector<std::vector<int64_t>> sample_positions(const std::vector<int64_t>& dims, int count) {
  std::vector<std::vector<int64_t>> out;
  std::vector<int64_t> first(dims.size(), 0), last(dims.size());
  for (size_t d = 0; d < dims.size(); ++d) last[d] = dims[d] - 1;
  out.push_back(first);
  out.push_back(last);
  if (dims.size() == 4) {
    for (int64_t corner = 0; corner < 4; ++corner)
      out.push_back(
          {dims[0] / 2, dims[1] / 2, (corner & 1) ? dims[2] - 1 : 0, (corner & 2) ? dims[3] - 1 : 0});
  }
  std::mt19937_64 rng(7);
  while (static_cast<int>(out.size()) < count) {
    std::vector<int64_t> p(dims.size());
    for (size_t d = 0; d < dims.size(); ++d)
      p[d] = static_cast<int64_t>(rng() % static_cast<uint64_t>(dims[d]));
    out.push_back(p);
  }
  return out;
}

int64_t flat_index(const std::vector<int64_t>& dims, const std::vector<int64_t>& p) {
  int64_t i = 0;
  for (size_t d = 0; d < dims.size(); ++d) i = i * dims[d] + p[d];
  return i;
}

// The gradient the node returned for `input`, found through the node's edges; empty
// string when the node is the op's whole backward and computed only that gradient.
std::string gradient_for(const std::shared_ptr<hpa::Node>& node, const std::vector<Tensor>& grads,
                         const Tensor& input, Tensor* out) {
  if (!node) return "the op recorded no backward node";
  if (grads.size() != node->next.size()) return "backward returned a gradient count unlike its edges";
  int found = -1;
  for (size_t i = 0; i < node->next.size(); ++i) {
    if (node->next[i].leaf == input.impl_ptr()) {
      found = static_cast<int>(i);
    } else if (grads[i].defined()) {
      return "backward computed a gradient for an input that does not require one";
    }
  }
  if (found < 0) return "the input is not a direct edge of the op's node (the op spans several nodes)";
  if (!grads[found].defined()) return "backward returned no gradient for the input that requires one";
  if (grads[found].shape() != input.shape()) return "gradient shape differs from the input's";
  *out = grads[found];
  return "";
}

// ---- conv2d ------------------------------------------------------------------------------

struct ConvCase {
  const char* name;
  int64_t n, c_in, h, w, c_out, k, stride, pad, groups;

  int64_t h_out() const { return (h + 2 * pad - k) / stride + 1; }
  int64_t w_out() const { return (w + 2 * pad - k) / stride + 1; }
  std::vector<int64_t> x_dims() const { return {n, c_in, h, w}; }
  std::vector<int64_t> w_dims() const { return {c_out, c_in / groups, k, k}; }
  std::vector<int64_t> y_dims() const { return {n, c_out, h_out(), w_out()}; }
  double flop() const { return 2.0 * n * c_out * h_out() * w_out() * (c_in / groups) * k * k; }
  hpa::Conv2dOptions options() const {
    return hpa::Conv2dOptions::square(int(stride), int(pad), 1, int(groups));
  }
};

// ResNet-34/50 stages at batch 8 and 224x224 input; the HPA stem takes 4 channels.
const ConvCase kConvCases[] = {
    {"8x64x56x56_3x3_64", 8, 64, 56, 56, 64, 3, 1, 1, 1},
    {"8x256x28x28_1x1_128", 8, 256, 28, 28, 128, 1, 1, 0, 1},
    {"8x128x28x28_3x3_128", 8, 128, 28, 28, 128, 3, 1, 1, 1},
    {"8x4x224x224_7x7s2_64", 8, 4, 224, 224, 64, 7, 2, 3, 1},
    {"8x128x56x56_3x3_128_g32", 8, 128, 56, 56, 128, 3, 1, 1, 32},
};

struct ConvData {
  const ConvCase& c;
  const float *x, *w, *gy;
  float at(const float* t, const std::vector<int64_t>& dims, int64_t a, int64_t b, int64_t i,
           int64_t j) const {
    return t[((a * dims[1] + b) * dims[2] + i) * dims[3] + j];
  }
};

Reference conv_forward_ref(const ConvData& d, const std::vector<int64_t>& p) {
  const ConvCase& c = d.c;
  const int64_t cin_g = c.c_in / c.groups, cout_g = c.c_out / c.groups, g = p[1] / cout_g;
  Reference r;
  for (int64_t ci = 0; ci < cin_g; ++ci)
    for (int64_t kh = 0; kh < c.k; ++kh)
      for (int64_t kw = 0; kw < c.k; ++kw) {
        const int64_t ih = p[2] * c.stride - c.pad + kh, iw = p[3] * c.stride - c.pad + kw;
        if (ih < 0 || ih >= c.h || iw < 0 || iw >= c.w) continue;
        r.add(double(d.at(d.x, c.x_dims(), p[0], g * cin_g + ci, ih, iw)) *
              d.at(d.w, c.w_dims(), p[1], ci, kh, kw));
      }
  return r;
}

Reference conv_backward_data_ref(const ConvData& d, const std::vector<int64_t>& p) {
  const ConvCase& c = d.c;
  const int64_t cin_g = c.c_in / c.groups, cout_g = c.c_out / c.groups, g = p[1] / cin_g, ci = p[1] % cin_g;
  Reference r;
  for (int64_t co = g * cout_g; co < (g + 1) * cout_g; ++co)
    for (int64_t kh = 0; kh < c.k; ++kh)
      for (int64_t kw = 0; kw < c.k; ++kw) {
        const int64_t th = p[2] + c.pad - kh, tw = p[3] + c.pad - kw;
        if (th < 0 || tw < 0 || th % c.stride || tw % c.stride) continue;
        const int64_t oh = th / c.stride, ow = tw / c.stride;
        if (oh >= c.h_out() || ow >= c.w_out()) continue;
        r.add(double(d.at(d.gy, c.y_dims(), p[0], co, oh, ow)) * d.at(d.w, c.w_dims(), co, ci, kh, kw));
      }
  return r;
}

Reference conv_backward_filter_ref(const ConvData& d, const std::vector<int64_t>& p) {
  const ConvCase& c = d.c;
  const int64_t cin_g = c.c_in / c.groups, cout_g = c.c_out / c.groups, g = p[0] / cout_g;
  Reference r;
  for (int64_t n = 0; n < c.n; ++n)
    for (int64_t oh = 0; oh < c.h_out(); ++oh)
      for (int64_t ow = 0; ow < c.w_out(); ++ow) {
        const int64_t ih = oh * c.stride - c.pad + p[2], iw = ow * c.stride - c.pad + p[3];
        if (ih < 0 || ih >= c.h || iw < 0 || iw >= c.w) continue;
        r.add(double(d.at(d.gy, c.y_dims(), n, p[0], oh, ow)) *
              d.at(d.x, c.x_dims(), n, g * cin_g + p[1], ih, iw));
      }
  return r;
}

enum class ConvPass { forward, backward_data, backward_filter };

std::string check_conv(const ConvCase& c, ConvPass pass, const Tensor& x, const Tensor& w, const Tensor& gy,
                       const Tensor& result) {
  const ConvData d{c, x.data<float>(), w.data<float>(), gy.defined() ? gy.data<float>() : nullptr};
  const std::vector<int64_t> dims = pass == ConvPass::forward         ? c.y_dims()
                                    : pass == ConvPass::backward_data ? c.x_dims()
                                                                      : c.w_dims();
  const char* what = pass == ConvPass::forward ? "y" : pass == ConvPass::backward_data ? "dx" : "dw";
  const float* got = result.data<float>();
  for (const auto& p : sample_positions(dims, pass == ConvPass::backward_filter ? 24 : 48)) {
    const Reference ref = pass == ConvPass::forward         ? conv_forward_ref(d, p)
                          : pass == ConvPass::backward_data ? conv_backward_data_ref(d, p)
                                                            : conv_backward_filter_ref(d, p);
    const double value = got[flat_index(dims, p)];
    if (!close_to(value, ref)) return mismatch(what, p, value, ref);
  }
  return "";
}

void BM_conv2d(benchmark::State& state, const std::string& name, ConvCase c, ConvPass pass) {
  try {
    Tensor x = random_tensor(c.x_dims(), 1);
    Tensor w = random_tensor(c.w_dims(), 2);
    double seconds = 0;
    std::string error;
    if (pass == ConvPass::forward) {
      hpa::NoGradGuard no_grad;
      auto run = [&] { return hpa::conv2d(x, w, Tensor(), c.options()); };
      error = check_conv(c, pass, x, w, Tensor(), run());
      if (!error.empty()) return fail(state, name, error);
      seconds = timed_loop(state, [&] { benchmark::DoNotOptimize(run().data_ptr()); });
      error = check_conv(c, pass, x, w, Tensor(), run());
    } else {
      Tensor& differentiated = pass == ConvPass::backward_data ? x : w;
      differentiated.set_requires_grad(true);
      Tensor y = hpa::conv2d(x, w, Tensor(), c.options());
      Tensor gy = random_tensor(c.y_dims(), 3);
      std::shared_ptr<hpa::Node> node = y.grad_fn();
      hpa::NoGradGuard no_grad;  // as the autograd engine runs backward
      auto run = [&]() -> std::pair<std::string, Tensor> {
        Tensor g;
        std::string e =
            gradient_for(node, node ? node->backward({gy}) : std::vector<Tensor>{}, differentiated, &g);
        return {e, g};
      };
      auto [e0, g0] = run();
      error = e0.empty() ? check_conv(c, pass, x, w, gy, g0) : e0;
      if (!error.empty()) return fail(state, name, error);
      seconds = timed_loop(state, [&] { benchmark::DoNotOptimize(node->backward({gy}).data()); });
      auto [e1, g1] = run();
      error = e1.empty() ? check_conv(c, pass, x, w, gy, g1) : e1;
    }
    if (!error.empty()) return fail(state, name, "after the timed loop: " + error);
    set_rate_counters(state, seconds, c.flop(), 0);
  } catch (const std::exception& e) {
    fail(state, name, std::string("threw: ") + e.what());
  }
}

// ---- linear ------------------------------------------------------------------------------

struct LinearCase {
  const char* name;
  int64_t batch, in, out;
};

// The classifier head: ResNet50 features (2048), ACP doubles them (4096), to 1024 hidden.
const LinearCase kLinearCases[] = {
    {"64x2048_1024", 64, 2048, 1024},
    {"64x4096_1024", 64, 4096, 1024},
};

std::string check_linear_forward(const LinearCase& c, const Tensor& x, const Tensor& w, const Tensor& b,
                                 const Tensor& y) {
  const float *xp = x.data<float>(), *wp = w.data<float>(), *bp = b.data<float>(), *yp = y.data<float>();
  for (const auto& p : sample_positions({c.batch, c.out}, 48)) {
    Reference r;
    r.add(bp[p[1]]);
    for (int64_t k = 0; k < c.in; ++k) r.add(double(xp[p[0] * c.in + k]) * wp[p[1] * c.in + k]);
    if (!close_to(yp[p[0] * c.out + p[1]], r)) return mismatch("y", p, yp[p[0] * c.out + p[1]], r);
  }
  return "";
}

std::string check_linear_backward(const LinearCase& c, const Tensor& x, const Tensor& w, const Tensor& gy,
                                  const Tensor& gx, const Tensor& gw, const Tensor& gb) {
  const float *xp = x.data<float>(), *wp = w.data<float>(), *gyp = gy.data<float>();
  for (const auto& p : sample_positions({c.batch, c.in}, 32)) {  // dx = dy w
    Reference r;
    for (int64_t j = 0; j < c.out; ++j) r.add(double(gyp[p[0] * c.out + j]) * wp[j * c.in + p[1]]);
    const double got = gx.data<float>()[p[0] * c.in + p[1]];
    if (!close_to(got, r)) return mismatch("dx", p, got, r);
  }
  for (const auto& p : sample_positions({c.out, c.in}, 32)) {  // dw = dy^T x
    Reference r;
    for (int64_t i = 0; i < c.batch; ++i) r.add(double(gyp[i * c.out + p[0]]) * xp[i * c.in + p[1]]);
    const double got = gw.data<float>()[p[0] * c.in + p[1]];
    if (!close_to(got, r)) return mismatch("dw", p, got, r);
  }
  for (const auto& p : sample_positions({c.out}, 16)) {  // db = column sums of dy
    Reference r;
    for (int64_t i = 0; i < c.batch; ++i) r.add(gyp[i * c.out + p[0]]);
    const double got = gb.data<float>()[p[0]];
    if (!close_to(got, r)) return mismatch("db", p, got, r);
  }
  return "";
}

void BM_linear(benchmark::State& state, const std::string& name, LinearCase c, bool backward) {
  try {
    Tensor x = random_tensor({c.batch, c.in}, 1);
    Tensor w = random_tensor({c.out, c.in}, 2);
    Tensor b = random_tensor({c.out}, 3);
    const double fwd_flop = 2.0 * c.batch * c.in * c.out;
    double seconds = 0;
    std::string error;
    if (!backward) {
      hpa::NoGradGuard no_grad;
      error = check_linear_forward(c, x, w, b, hpa::linear(x, w, b));
      if (!error.empty()) return fail(state, name, error);
      seconds = timed_loop(state, [&] { benchmark::DoNotOptimize(hpa::linear(x, w, b).data_ptr()); });
      error = check_linear_forward(c, x, w, b, hpa::linear(x, w, b));
    } else {
      for (Tensor* t : {&x, &w, &b}) t->set_requires_grad(true);
      Tensor y = hpa::linear(x, w, b);
      Tensor gy = random_tensor({c.batch, c.out}, 4);
      std::shared_ptr<hpa::Node> node = y.grad_fn();
      if (!node) return fail(state, name, "linear recorded no backward node");
      hpa::NoGradGuard no_grad;
      auto run_and_check = [&]() -> std::string {
        const std::vector<Tensor> grads = node->backward({gy});
        Tensor g[3];
        const Tensor* inputs[3] = {&x, &w, &b};
        for (int i = 0; i < 3; ++i) {
          for (size_t e = 0; e < node->next.size(); ++e)
            if (node->next[e].leaf == inputs[i]->impl_ptr() && e < grads.size()) g[i] = grads[e];
          if (!g[i].defined() || g[i].shape() != inputs[i]->shape())
            return "backward returned no gradient (or a misshapen one) for an input that requires one";
        }
        return check_linear_backward(c, x, w, gy, g[0], g[1], g[2]);
      };
      error = run_and_check();
      if (!error.empty()) return fail(state, name, error);
      seconds = timed_loop(state, [&] { benchmark::DoNotOptimize(node->backward({gy}).data()); });
      error = run_and_check();
    }
    if (!error.empty()) return fail(state, name, "after the timed loop: " + error);
    set_rate_counters(state, seconds, backward ? 2 * fwd_flop : fwd_flop, 0);
  } catch (const std::exception& e) {
    fail(state, name, std::string("threw: ") + e.what());
  }
}

// ---- adaptive_concat_pool2d ----------------------------------------------------------------

// ResNet50's last feature map at 512x512 input, batch 32.
struct PoolCase {
  const char* name;
  int64_t n, c, h, w;
};
const PoolCase kPoolCase{"32x2048x16x16", 32, 2048, 16, 16};

// Checks whole planes: y[n, c] = mean, y[n, C + c] = max (first maximum wins); dx of a
// plane = dy_avg / hw everywhere plus dy_max at the first maximum.
std::string check_concat_pool(const PoolCase& c, const Tensor& x, const Tensor& gy, const Tensor& result,
                              bool backward) {
  const int64_t hw = c.h * c.w;
  const float* xp = x.data<float>();
  const float* out = result.data<float>();
  for (const auto& p : sample_positions({c.n, c.c}, 48)) {
    const float* plane = xp + (p[0] * c.c + p[1]) * hw;
    Reference mean;
    int64_t argmax = 0;
    for (int64_t i = 0; i < hw; ++i) {
      mean.add(plane[i] / double(hw));
      if (plane[i] > plane[argmax]) argmax = i;
    }
    if (!backward) {
      const double avg = out[p[0] * 2 * c.c + p[1]], max = out[p[0] * 2 * c.c + c.c + p[1]];
      if (!close_to(avg, mean)) return mismatch("y_avg", p, avg, mean);
      Reference max_ref;
      max_ref.add(plane[argmax]);
      if (max != plane[argmax]) return mismatch("y_max", p, max, max_ref);
    } else {
      const float* g = gy.data<float>();
      const double g_avg = g[p[0] * 2 * c.c + p[1]], g_max = g[p[0] * 2 * c.c + c.c + p[1]];
      const float* dx = out + (p[0] * c.c + p[1]) * hw;
      for (int64_t i = 0; i < hw; ++i) {
        Reference r;
        r.add(g_avg / double(hw));
        if (i == argmax) r.add(g_max);
        if (!close_to(dx[i], r)) return mismatch("dx", {p[0], p[1], i / c.w, i % c.w}, dx[i], r);
      }
    }
  }
  return "";
}

void BM_concat_pool(benchmark::State& state, const std::string& name, PoolCase c, bool backward) {
  try {
    Tensor x = random_tensor({c.n, c.c, c.h, c.w}, 1);
    const double x_bytes = 4.0 * c.n * c.c * c.h * c.w, y_bytes = 4.0 * c.n * 2 * c.c;
    double seconds = 0;
    std::string error;
    if (!backward) {
      hpa::NoGradGuard no_grad;
      error = check_concat_pool(c, x, Tensor(), hpa::adaptive_concat_pool2d(x), false);
      if (!error.empty()) return fail(state, name, error);
      seconds =
          timed_loop(state, [&] { benchmark::DoNotOptimize(hpa::adaptive_concat_pool2d(x).data_ptr()); });
      error = check_concat_pool(c, x, Tensor(), hpa::adaptive_concat_pool2d(x), false);
    } else {
      x.set_requires_grad(true);
      Tensor y = hpa::adaptive_concat_pool2d(x);
      Tensor gy = random_tensor({c.n, 2 * c.c, 1, 1}, 2);
      std::shared_ptr<hpa::Node> node = y.grad_fn();
      hpa::NoGradGuard no_grad;
      auto run_and_check = [&]() -> std::string {
        Tensor g;
        std::string e = gradient_for(node, node ? node->backward({gy}) : std::vector<Tensor>{}, x, &g);
        return e.empty() ? check_concat_pool(c, x, gy, g, true) : e;
      };
      error = run_and_check();
      if (!error.empty()) return fail(state, name, error);
      seconds = timed_loop(state, [&] { benchmark::DoNotOptimize(node->backward({gy}).data()); });
      error = run_and_check();
    }
    if (!error.empty()) return fail(state, name, "after the timed loop: " + error);
    set_rate_counters(state, seconds, 0, x_bytes + y_bytes);
  } catch (const std::exception& e) {
    fail(state, name, std::string("threw: ") + e.what());
  }
}

// ---- ceilings ----------------------------------------------------------------------------

// Peak FMA rate: every thread runs 12 independent 8-wide FMA chains (enough to cover the
// latency of two FMA pipes) on registers only.
void BM_ceiling_fma(benchmark::State& state) {
#if defined(__FMA__) && defined(__AVX__)
  constexpr int64_t kSteps = int64_t{1} << 22;
  const int threads = omp_get_max_threads();
  std::vector<float> sink(threads);
  auto body = [&] {
#pragma omp parallel num_threads(threads)
    {
      __m256 acc[12];
      for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(float(i + omp_get_thread_num()));
      const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
      for (int64_t s = 0; s < kSteps; ++s)
        for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
      __m256 total = acc[0];
      for (int i = 1; i < 12; ++i) total = _mm256_add_ps(total, acc[i]);
      float lanes[8];
      _mm256_storeu_ps(lanes, total);
      sink[omp_get_thread_num()] = lanes[0];
    }
  };
  const double seconds = timed_loop(state, body);
  benchmark::DoNotOptimize(sink.data());
  set_rate_counters(state, seconds, 2.0 * 8 * 12 * kSteps * threads, 0);
#else
  state.SkipWithError("built without AVX/FMA");
#endif
}

// Memory bandwidth over a buffer eight times the L3 cache: a parallel read (sum) and a
// parallel write (fill; write-allocate traffic not counted). Each thread takes one
// contiguous slice and runs an explicitly vectorised loop: GCC 12 leaves an
// `omp parallel for simd reduction` loop scalar and memory-bound on its accumulator
// (0.4 GB/s here), which would understate the ceiling tenfold.
constexpr int64_t kStreamFloats = int64_t{64} << 20;  // 256 MiB

template <class SliceFn>
void for_each_thread_slice(SliceFn&& fn) {
#pragma omp parallel
  {
    const int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t per = (kStreamFloats / threads) / 64 * 64;
    const int64_t begin = t * per, end = t == threads - 1 ? kStreamFloats : begin + per;
    fn(t, begin, end);
  }
}

float sum_slice(const float* p, int64_t begin, int64_t end) {
#if defined(__AVX__)
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  int64_t i = begin;
  for (; i + 32 <= end; i += 32)
    for (int k = 0; k < 4; ++k) acc[k] = _mm256_add_ps(acc[k], _mm256_loadu_ps(p + i + 8 * k));
  float lanes[8];
  _mm256_storeu_ps(lanes, _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
  float s = 0;
  for (float v : lanes) s += v;
#else
  float s = 0;
  int64_t i = begin;
#endif
  for (; i < end; ++i) s += p[i];
  return s;
}

void BM_ceiling_read(benchmark::State& state) {
  std::vector<float> buf(kStreamFloats, 1.0f);
  std::vector<float> partial(omp_get_max_threads());
  const double seconds = timed_loop(state, [&] {
    for_each_thread_slice(
        [&](int64_t t, int64_t begin, int64_t end) { partial[t] += sum_slice(buf.data(), begin, end); });
  });
  benchmark::DoNotOptimize(partial.data());
  set_rate_counters(state, seconds, 0, 4.0 * kStreamFloats);
}

void BM_ceiling_write(benchmark::State& state) {
  std::vector<float> buf(kStreamFloats, 1.0f);
  float value = 0;
  const double seconds = timed_loop(state, [&] {
    value += 1;
    for_each_thread_slice(
        [&](int64_t, int64_t begin, int64_t end) { std::fill(buf.data() + begin, buf.data() + end, value); });
    benchmark::ClobberMemory();
  });
  benchmark::DoNotOptimize(buf.data());
  set_rate_counters(state, seconds, 0, 4.0 * kStreamFloats);
}

template <class... Args>
void add(const std::string& name, Args&&... args) {
  benchmark::RegisterBenchmark(name.c_str(), std::forward<Args>(args)...)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("omp_max_threads", std::to_string(omp_get_max_threads()));
  benchmark::AddCustomContext("openblas_config", openblas_get_config());

  for (const ConvCase& c : kConvCases) {
    const std::pair<ConvPass, const char*> passes[] = {{ConvPass::forward, "conv2d_fwd/"},
                                                       {ConvPass::backward_data, "conv2d_bwd_data/"},
                                                       {ConvPass::backward_filter, "conv2d_bwd_filter/"}};
    for (const auto& [pass, prefix] : passes) {
      const std::string name = prefix + std::string(c.name);
      add(name, BM_conv2d, name, c, pass);
    }
  }
  for (const LinearCase& c : kLinearCases) {
    add(std::string("linear_fwd/") + c.name, BM_linear, std::string("linear_fwd/") + c.name, c, false);
    add(std::string("linear_bwd/") + c.name, BM_linear, std::string("linear_bwd/") + c.name, c, true);
  }
  add(std::string("concat_pool_fwd/") + kPoolCase.name, BM_concat_pool,
      std::string("concat_pool_fwd/") + kPoolCase.name, kPoolCase, false);
  add(std::string("concat_pool_bwd/") + kPoolCase.name, BM_concat_pool,
      std::string("concat_pool_bwd/") + kPoolCase.name, kPoolCase, true);
  add("ceiling/fma_peak", BM_ceiling_fma);
  add("ceiling/read_bandwidth", BM_ceiling_read);
  add("ceiling/write_bandwidth", BM_ceiling_write);

  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return g_failed ? 1 : 0;
}
