// The paper's objective as ops: per-sample BCE / focal loss with class weights, the hard
// sampler, and the E-loss class weights (contract in tensor/ops/loss.h).
//
// Design rules a reader would otherwise guess:
//  - the loss forward also computes d loss / d logits (already scaled by w_c / C) when a
//    gradient is needed, and the node saves only that; the backward scales each row by the
//    incoming per-sample gradient. Targets and class weights are never differentiated.
//  - values are checked too, not only shapes: a target outside [0, 1] or a negative class
//    weight would give a loss that is silently meaningless, and a NaN loss reaching the
//    hard sampler would make its choice arbitrary; each is an hpa::Error naming where.
//  - on CUDA those checks run inside the loss kernel, which leaves the first bad index in
//    a small device buffer; the op reads it back (16 bytes, one stream synchronization per
//    call) and raises the same error as the CPU. The hard sampler must hand its indices to
//    the host anyway (HardSamples::indices), so it reads them back with its NaN flag in
//    one copy.
#include "tensor/ops/loss.h"

#include <algorithm>
#include <cfloat>
#include <cmath>

#include "kernels/loss.h"
#include "kernels/topk.h"
#include "tensor/autograd.h"
#include "tensor/ops/check.h"
#include "tensor/ops/dispatch.h"
#ifdef HPA_WITH_CUDA
#include "tensor/cuda_backend.h"
#endif

namespace hpa {
namespace {

// The errors of the value checks, shared by both devices; target_at(i) and weight_at(i)
// read element i of the offending tensor (from the device only on this error path).
template <class TargetAt, class WeightAt>
void check_loss_values(const char* op, const Tensor& targets, const Tensor& class_weights, int64_t c,
                       int64_t bad_target, int64_t bad_weight, TargetAt target_at, WeightAt weight_at) {
  HPA_CHECK(bad_target < 0, op, ": targets ", targets.desc(), " must lie in [0, 1], but target[",
            bad_target / c, ", ", bad_target % c, "] = ", target_at(bad_target));
  HPA_CHECK(bad_weight < 0, op, ": class_weights ", class_weights.desc(),
            " must be finite and >= 0, but class_weights[", bad_weight, "] = ", weight_at(bad_weight));
}

struct PerSampleLossBackward : Node {
  const char* op = "";
  Tensor fused_grad;  // [N, C]: d loss[n] / d logits[n, c]
  const char* name() const override { return op; }
  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs) override {
    NoGradGuard guard;
    const Tensor& grad_loss = grad_outputs[0];
    Tensor grad_logits = Tensor::empty(fused_grad.shape(), fused_grad.dtype(), fused_grad.device());
    dispatch_float(fused_grad.dtype(), op, [&](auto t) {
      using T = decltype(t);
      if (fused_grad.is_cuda()) {
#ifdef HPA_WITH_CUDA
        kernels::per_sample_loss_backward_cuda<T>(grad_loss.data<T>(), fused_grad.data<T>(),
                                                  grad_logits.data<T>(), fused_grad.size(0),
                                                  fused_grad.size(1), stream_of(fused_grad));
#endif
      } else {
        kernels::per_sample_loss_backward_cpu<T>(grad_loss.data<T>(), fused_grad.data<T>(),
                                                 grad_logits.data<T>(), fused_grad.size(0),
                                                 fused_grad.size(1));
      }
    });
    return {grad_logits};
  }
  void release_saved() override { fused_grad = Tensor(); }
};

Tensor per_sample_loss(const char* op, const Tensor& logits, const Tensor& targets,
                       const Tensor& class_weights, kernels::PerSampleLossKind kind, double gamma) {
  check::floating(op, logits, "logits");
  check::dims(op, logits, 2, "logits");
  check::floating(op, targets, "targets");
  check::same_device(op, logits, targets);
  check::same_dtype(op, logits, targets);
  check::same_shape(op, logits, targets);
  const int64_t n = logits.size(0), c = logits.size(1);
  HPA_CHECK(c >= 1, op, ": logits ", logits.desc(), " has no classes (need [N, C] with C >= 1)");
  if (class_weights.defined()) {
    check::floating(op, class_weights, "class_weights");
    check::same_device(op, logits, class_weights);
    check::same_dtype(op, logits, class_weights);
    HPA_CHECK(class_weights.dim() == 1 && class_weights.size(0) == c, op, ": class_weights must be [C] = [",
              c, "] for logits ", logits.desc(), ", got ", class_weights.desc());
  }
  HPA_CHECK(std::isfinite(gamma) && gamma >= 0, op, ": gamma must be finite and >= 0, got ", gamma);

  const bool with_grad = needs_grad({logits});
  Tensor loss = Tensor::empty({n}, logits.dtype(), logits.device());
  Tensor fused_grad;
  if (with_grad) fused_grad = Tensor::empty(logits.shape(), logits.dtype(), logits.device());
  dispatch_float(logits.dtype(), op, [&](auto t) {
    using T = decltype(t);
    const T* y = targets.data<T>();
    const T* w = class_weights.defined() ? class_weights.data<T>() : nullptr;
    kernels::PerSampleLossArgs args;
    args.n = n;
    args.c = c;
    args.kind = kind;
    args.gamma = gamma;
    if (logits.is_cuda()) {
#ifdef HPA_WITH_CUDA
      // The kernel checks the values while it computes; the loss is only returned once
      // the checks have passed.
      Tensor first_invalid = Tensor::empty({2}, DType::i64, logits.device());
      kernels::per_sample_loss_forward_cuda<T>(logits.data<T>(), y, w, loss.data<T>(),
                                               with_grad ? fused_grad.data<T>() : nullptr, args,
                                               first_invalid.data<int64_t>(), stream_of(logits));
      const std::vector<int64_t> bad = first_invalid.to_vector<int64_t>();
      check_loss_values(
          op, targets, class_weights, c, bad[0], bad[1],
          [&](int64_t i) { return targets.to_vector<T>()[static_cast<size_t>(i)]; },
          [&](int64_t i) { return class_weights.to_vector<T>()[static_cast<size_t>(i)]; });
#endif
    } else {
      const int64_t bad_target = kernels::first_outside_cpu<T>(y, n * c, 0.0, 1.0);
      const int64_t bad_weight = w ? kernels::first_outside_cpu<T>(w, c, 0.0, DBL_MAX) : -1;
      check_loss_values(
          op, targets, class_weights, c, bad_target, bad_weight, [&](int64_t i) { return y[i]; },
          [&](int64_t i) { return w[i]; });
      kernels::per_sample_loss_forward_cpu<T>(logits.data<T>(), y, w, loss.data<T>(),
                                              with_grad ? fused_grad.data<T>() : nullptr, args);
    }
  });
  if (with_grad) {
    auto node = std::make_shared<PerSampleLossBackward>();
    node->op = op;
    node->fused_grad = fused_grad;
    record(node, {logits}, {loss});
  }
  return loss;
}

struct HardSampleTopkBackward : Node {
  std::vector<int64_t> indices;
  Tensor ranks;  // CUDA only: i64 [N], the rank of each sample (N for none), from the forward
  int64_t n = 0;
  const char* name() const override { return "hard_sample_topk"; }
  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs) override {
    NoGradGuard guard;
    const Tensor& grad_chosen = grad_outputs[0];
    const int64_t k = static_cast<int64_t>(indices.size());
    Tensor grad_losses = Tensor::empty({n}, grad_chosen.dtype(), grad_chosen.device());
    dispatch_float(grad_chosen.dtype(), "hard_sample_topk", [&](auto t) {
      using T = decltype(t);
      if (grad_chosen.is_cuda()) {
#ifdef HPA_WITH_CUDA
        kernels::topk_scatter_cuda<T>(grad_chosen.data<T>(), ranks.data<int64_t>(), k, grad_losses.data<T>(),
                                      n, stream_of(grad_chosen));
#endif
      } else {
        kernels::topk_scatter_cpu<T>(grad_chosen.data<T>(), indices.data(), k, grad_losses.data<T>(), n);
      }
    });
    return {grad_losses};
  }
  void release_saved() override { ranks = Tensor(); }
};

}  // namespace

Tensor bce_with_logits_per_sample(const Tensor& logits, const Tensor& targets, const Tensor& class_weights) {
  return per_sample_loss("bce_with_logits_per_sample", logits, targets, class_weights,
                         kernels::PerSampleLossKind::bce, 0.0);
}

Tensor focal_loss_per_sample(const Tensor& logits, const Tensor& targets, double gamma,
                             const Tensor& class_weights) {
  return per_sample_loss("focal_loss_per_sample", logits, targets, class_weights,
                         kernels::PerSampleLossKind::focal, gamma);
}

HardSamples hard_sample_topk(const Tensor& per_sample_loss, int64_t k) {
  const char* op = "hard_sample_topk";
  check::floating(op, per_sample_loss, "per_sample_loss");
  check::dims(op, per_sample_loss, 1, "per_sample_loss");
  const int64_t n = per_sample_loss.size(0);
  HPA_CHECK(k >= 1 && k <= n, op, ": k = ", k, " must be in [1, N] for per_sample_loss ",
            per_sample_loss.desc());

  HardSamples out;
  out.indices.resize(static_cast<size_t>(k));
  out.losses = Tensor::empty({k}, per_sample_loss.dtype(), per_sample_loss.device());
  Tensor ranks;
  dispatch_float(per_sample_loss.dtype(), op, [&](auto t) {
    using T = decltype(t);
    const T* losses = per_sample_loss.data<T>();
    int64_t nan_at = -1;
    if (per_sample_loss.is_cuda()) {
#ifdef HPA_WITH_CUDA
      // One i64 buffer holds the NaN flag then the k indices, so one copy brings both back.
      ranks = Tensor::empty({n}, DType::i64, per_sample_loss.device());
      Tensor nan_then_indices = Tensor::empty({k + 1}, DType::i64, per_sample_loss.device());
      int64_t* flag = nan_then_indices.data<int64_t>();
      kernels::topk_rank_select_cuda<T>(losses, n, k, ranks.data<int64_t>(), flag + 1, out.losses.data<T>(),
                                        flag, stream_of(per_sample_loss));
      const std::vector<int64_t> host = nan_then_indices.to_vector<int64_t>();
      nan_at = host[0];
      std::copy(host.begin() + 1, host.end(), out.indices.begin());
#endif
    } else {
      nan_at = kernels::topk_descending_cpu<T>(losses, n, k, out.indices.data());
    }
    HPA_CHECK(nan_at < 0, op, ": the loss of sample ", nan_at, " in ", per_sample_loss.desc(),
              " is NaN; a NaN loss cannot be ranked (check the logits and targets of that sample)");
    if (per_sample_loss.is_cpu())
      kernels::topk_gather_cpu<T>(losses, out.indices.data(), k, out.losses.data<T>());
  });
  if (needs_grad({per_sample_loss})) {
    auto node = std::make_shared<HardSampleTopkBackward>();
    node->indices = out.indices;
    node->ranks = ranks;
    node->n = n;
    record(node, {per_sample_loss}, {out.losses});
  }
  return out;
}

std::vector<double> effective_number_weights(const std::vector<int64_t>& class_counts, double alpha) {
  const char* op = "effective_number_weights";
  HPA_CHECK(!class_counts.empty(), op, ": class_counts is empty");
  HPA_CHECK(alpha > 0 && alpha < 1, op, ": alpha must be in (0, 1), got ", alpha);
  const double log_alpha = std::log(alpha);
  std::vector<double> weights(class_counts.size());
  double total = 0;
  for (size_t c = 0; c < class_counts.size(); ++c) {
    const int64_t count = class_counts[c];
    HPA_CHECK(count >= 0, op, ": class_counts[", c, "] = ", count, " is negative");
    // Q_n = (1 - alpha^n) / (1 - alpha) is the effective number of n samples; Q_0 = 0
    // would give an infinite weight, so an empty class counts as one sample (Q_1 = 1,
    // the largest weight any class can get). 1 - alpha^n = -expm1(n log alpha) keeps
    // precision when alpha is close to 1 and n is small.
    const double n = static_cast<double>(count < 1 ? 1 : count);
    weights[c] = (1.0 - alpha) / -std::expm1(n * log_alpha);
    total += weights[c];
  }
  const double scale = static_cast<double>(class_counts.size()) / total;
  for (double& w : weights) w *= scale;
  return weights;
}

}  // namespace hpa
