// The paper's training objective, per sample.
//
// bce_with_logits_per_sample and focal_loss_per_sample take logits and {0,1} (or soft)
// targets [N, C] and optional class weights [C]; they return [N] with
//   loss[n] = (1/C) * sum_c w_c * l(x[n,c], y[n,c])
// where l is binary cross-entropy on the logit, written in the stable form
//   max(x,0) - x*y + log1p(exp(-|x|)),
// and focal loss multiplies it by (1 - p_t)^gamma with p_t = p if y = 1 else 1 - p
// (Lin et al. 2017), p = sigmoid(x). A soft target y in [0, 1] uses
// p_t = p*y + (1-p)*(1-y) (as torchvision's sigmoid_focal_loss). gamma = 0 gives exactly
// BCE. Both are finite with finite gradients for |x| up to 100 and beyond (tested at
// 1000). Only the logits are differentiated (targets and class weights are constants);
// the forward computes d loss / d logits in the same pass and the backward scales it.
// Errors: logits not 2-D, C = 0, targets of another shape / dtype / device, class weights
// not [C] of the same dtype and device, a target outside [0, 1] or NaN, a negative or
// non-finite class weight, gamma < 0 or not finite.
//
// hard_sample_topk keeps the K largest per-sample losses of a batch (the paper's hard
// sampler): ties broken by the lower sample index, so the choice is deterministic. The
// returned losses are in the chosen order; the gradient flows only to those K samples
// (the others get 0). Errors: per_sample_loss not 1-D, k outside [1, N], and any NaN loss
// (the message names the sample).
//
// effective_number_weights: w_c = (1 - alpha) / (1 - alpha^n_c) (Cui et al. 2019), then
// scaled so the weights sum to the number of classes. alpha must be in (0, 1). A class
// with n_c = 0 is treated as n_c = 1, i.e. it gets the largest weight (1/Q_1 before
// scaling) instead of an infinite one. Errors: no classes, a negative count.
#pragma once

#include <vector>

#include "tensor/tensor.h"

namespace hpa {

Tensor bce_with_logits_per_sample(const Tensor& logits, const Tensor& targets,
                                  const Tensor& class_weights = Tensor());
Tensor focal_loss_per_sample(const Tensor& logits, const Tensor& targets, double gamma,
                             const Tensor& class_weights = Tensor());

struct HardSamples {
  Tensor losses;                 // [K], differentiable
  std::vector<int64_t> indices;  // the K chosen samples, largest loss first
};
HardSamples hard_sample_topk(const Tensor& per_sample_loss, int64_t k);

std::vector<double> effective_number_weights(const std::vector<int64_t>& class_counts, double alpha);

}  // namespace hpa
