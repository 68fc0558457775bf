// Batch normalization kernels over an NCHW tensor viewed as [n, c, hw]: per-channel
// statistics, the per-channel setup (invstd, running-statistics update, the normalizing
// affine map), the normalization itself and the two backward passes. CPU loops in
// batchnorm.cpp, CUDA twins in batchnorm.cu.
//
// Design rules: per-channel statistics and the backward sums are accumulated in double
// whatever the element type, so float results do not depend on the parallel split; the
// statistics travel as double arrays of length c (mean and invstd = 1/sqrt(var + eps)).
// The per-element and per-channel formulas below are called by both twins.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/hd.h"

namespace hpa::kernels {

struct BatchNormArgs {
  int64_t n = 0, c = 0, hw = 0;  // x is [n, c, hw]
};

// ---- shared per-channel math ----------------------------------------------------------

// The per-channel affine form of the normalization: y = x * scale + shift with
// scale = gamma * invstd and shift = beta - mean * scale (gamma 1 and beta 0 when absent).
struct BatchNormChannelAffine {
  double scale, shift;
};

HPA_HD inline BatchNormChannelAffine batchnorm_channel_affine(double mean, double invstd, double gamma,
                                                              double beta) {
  const double scale = gamma * invstd;
  return {scale, beta - mean * scale};
}

HPA_HD inline double batchnorm_invstd(double var, double eps) { return 1.0 / sqrt(var + eps); }

// running = (1 - momentum) * running + momentum * batch (PyTorch's momentum convention).
HPA_HD inline double batchnorm_running_update(double running, double batch, double momentum) {
  return (1.0 - momentum) * running + momentum * batch;
}

// Bessel's correction: the unbiased variance is the biased one times count / (count - 1).
HPA_HD inline double batchnorm_bessel(int64_t count) {
  return static_cast<double>(count) / static_cast<double>(count - 1);
}

// gamma[c] (or beta[c]) as a double, `absent` when the parameter is (affine=false).
template <class T>
HPA_HD inline double batchnorm_param_or(const T* param, int64_t c, double absent) {
  return param ? static_cast<double>(param[c]) : absent;
}

// Mean and biased variance of `count` values from the sums of d = x - shift and of d^2.
// With `shift` a value of the channel itself the subtraction cancels little (unlike the
// raw sum of squares when |mean| >> std), and one pass over the data suffices: the CUDA
// twin's statistics (the CPU makes two passes around the exact mean).
struct BatchNormMoments {
  double mean, var;
};

HPA_HD inline BatchNormMoments batchnorm_shifted_moments(double shift, double sum_d, double sum_d2,
                                                         double count) {
  const double mean_d = sum_d / count;
  const double var = (sum_d2 - sum_d * mean_d) / count;
  return {shift + mean_d, var > 0 ? var : 0.0};
}

// Everything batch_norm2d computes per channel between the statistics and the
// normalization. Training: invstd from the batch variance and, when running buffers are
// given, their in-place update (running_var receives the unbiased variance). Eval: mean
// and invstd from the running buffers. Both: the affine map (scale, shift).
template <class T>
struct BatchNormChannelSetup {
  int64_t c = 0, count = 0;  // channels; values per channel (n * hw)
  double eps = 0, momentum = 0;
  bool training = true;
  const T* gamma = nullptr;  // [c] or null (affine=false), as beta
  const T* beta = nullptr;
  T* running_mean = nullptr;  // [c]; null in training when not tracking
  T* running_var = nullptr;
  double* mean = nullptr;       // training: the batch mean (read); eval: written
  const double* var = nullptr;  // training: the biased batch variance (read); eval: unused
  double* invstd = nullptr;     // written
  double* scale = nullptr;      // written
  double* shift = nullptr;      // written
};

template <class T>
HPA_HD inline void batchnorm_setup_channel(const BatchNormChannelSetup<T>& s, int64_t c) {
  if (s.training) {
    s.invstd[c] = batchnorm_invstd(s.var[c], s.eps);
    if (s.running_mean) {
      s.running_mean[c] = static_cast<T>(
          batchnorm_running_update(static_cast<double>(s.running_mean[c]), s.mean[c], s.momentum));
      s.running_var[c] = static_cast<T>(batchnorm_running_update(
          static_cast<double>(s.running_var[c]), s.var[c] * batchnorm_bessel(s.count), s.momentum));
    }
  } else {
    s.mean[c] = static_cast<double>(s.running_mean[c]);
    s.invstd[c] = batchnorm_invstd(static_cast<double>(s.running_var[c]), s.eps);
  }
  const BatchNormChannelAffine affine = batchnorm_channel_affine(
      s.mean[c], s.invstd[c], batchnorm_param_or(s.gamma, c, 1.0), batchnorm_param_or(s.beta, c, 0.0));
  s.scale[c] = affine.scale;
  s.shift[c] = affine.shift;
}

// ---- shared per-element math ----------------------------------------------------------

template <class T>
HPA_HD inline T batchnorm_normalize(T x, T scale, T shift) {
  return x * scale + shift;
}

HPA_HD inline double batchnorm_xhat(double x, double mean, double invstd) { return (x - mean) * invstd; }

// The two per-element terms the backward sums accumulate: g, and g * (x - mean), which
// times invstd is g * xhat.
struct BatchNormBackwardTerms {
  double g, g_centered;
};

HPA_HD inline BatchNormBackwardTerms batchnorm_backward_terms(double g, double x, double mean) {
  return {g, g * (x - mean)};
}

// Training-mode input gradient through the batch statistics, with xhat = (x - mean) * invstd
// and mean_g, mean_g_xhat the channel means of g and g * xhat:
//   dx = gamma * invstd * (g - mean_g - xhat * mean_g_xhat).
HPA_HD inline double batchnorm_training_grad_input(double g, double xhat, double gamma_invstd, double mean_g,
                                                   double mean_g_xhat) {
  return gamma_invstd * (g - mean_g - xhat * mean_g_xhat);
}

// The per-channel constants of the training-mode input gradient.
struct BatchNormGradChannel {
  double mean, invstd, gamma_invstd, mean_g, mean_g_xhat;
};

template <class T>
HPA_HD inline BatchNormGradChannel batchnorm_grad_channel(const T* gamma, const double* mean,
                                                          const double* invstd, const double* sum_g,
                                                          const double* sum_g_xhat, double count, int64_t c) {
  return {mean[c], invstd[c], batchnorm_param_or(gamma, c, 1.0) * invstd[c], sum_g[c] / count,
          sum_g_xhat[c] / count};
}

template <class T>
HPA_HD inline T batchnorm_training_grad_at(const BatchNormGradChannel& k, T g, T x) {
  const double xhat = batchnorm_xhat(static_cast<double>(x), k.mean, k.invstd);
  return static_cast<T>(
      batchnorm_training_grad_input(static_cast<double>(g), xhat, k.gamma_invstd, k.mean_g, k.mean_g_xhat));
}

// ---- CPU loops (batchnorm.cpp) --------------------------------------------------------

// Per-channel mean and biased variance (two passes, in double). mean and var are [c].
template <class T>
void batchnorm_stats_cpu(const T* x, const BatchNormArgs& a, double* mean, double* var);

// batchnorm_setup_channel for every channel (see BatchNormChannelSetup for what is
// read, written and updated in place).
template <class T>
void batchnorm_setup_channels_cpu(const BatchNormChannelSetup<T>& s);

// y = x * scale[c] + shift[c]. scale and shift are [c] (see batchnorm_channel_affine).
template <class T>
void batchnorm_forward_cpu(const T* x, const double* scale, const double* shift, const BatchNormArgs& a,
                           T* y);

// Per-channel backward sums: sum_g = sum(g), sum_g_xhat = sum(g * (x - mean) * invstd).
// Writes (=) both [c] arrays.
template <class T>
void batchnorm_backward_reduce_cpu(const T* grad_y, const T* x, const double* mean, const double* invstd,
                                   const BatchNormArgs& a, double* sum_g, double* sum_g_xhat);

// Training-mode input gradient (see batchnorm_training_grad_input). gamma may be null
// (affine=false). Writes (=) grad_x.
template <class T>
void batchnorm_backward_training_cpu(const T* grad_y, const T* x, const double* mean, const double* invstd,
                                     const T* gamma, const double* sum_g, const double* sum_g_xhat,
                                     const BatchNormArgs& a, T* grad_x);

// Eval-mode input gradient: the statistics are constants, so dx = g * gamma * invstd.
// gamma may be null. Writes (=) grad_x.
template <class T>
void batchnorm_backward_eval_cpu(const T* grad_y, const double* invstd, const T* gamma,
                                 const BatchNormArgs& a, T* grad_x);

// ---- CUDA twins (batchnorm.cu) --------------------------------------------------------
// Same contracts as the CPU loops; every pointer is device memory, T is float or double,
// work is queued on `stream`. Written by hand rather than with cuDNN's
// cudnnBatchNormalization* so that both devices call the formulas above, the saved
// statistics stay the f64 [c] arrays the CPU saves, f64 tensors are covered, and every
// sum is deterministic: the two reductions write per-tile partial sums into `workspace`
// and add them up in a fixed order, never with atomics.

// Doubles of workspace that batchnorm_stats_cuda and batchnorm_backward_reduce_cuda need.
int64_t batchnorm_cuda_workspace_elements(const BatchNormArgs& a);

// Mean and biased variance in one pass of shifted sums (batchnorm_shifted_moments, shift
// = the channel's first element).
template <class T>
void batchnorm_stats_cuda(const T* x, const BatchNormArgs& a, double* mean, double* var, double* workspace,
                          Stream stream);

template <class T>
void batchnorm_setup_channels_cuda(const BatchNormChannelSetup<T>& s, Stream stream);

template <class T>
void batchnorm_forward_cuda(const T* x, const double* scale, const double* shift, const BatchNormArgs& a,
                            T* y, Stream stream);

template <class T>
void batchnorm_backward_reduce_cuda(const T* grad_y, const T* x, const double* mean, const double* invstd,
                                    const BatchNormArgs& a, double* sum_g, double* sum_g_xhat,
                                    double* workspace, Stream stream);

template <class T>
void batchnorm_backward_training_cuda(const T* grad_y, const T* x, const double* mean, const double* invstd,
                                      const T* gamma, const double* sum_g, const double* sum_g_xhat,
                                      const BatchNormArgs& a, T* grad_x, Stream stream);

template <class T>
void batchnorm_backward_eval_cuda(const T* grad_y, const double* invstd, const T* gamma,
                                  const BatchNormArgs& a, T* grad_x, Stream stream);

}  // namespace hpa::kernels
