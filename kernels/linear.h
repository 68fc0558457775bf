// Fully connected layer kernels: y[n, out] = x[n, in] x weight[out, in]^T + bias[out], as
// GEMMs (kernels/gemm.h) that split over the OpenMP threads when large enough.
//
// The CUDA twin (kernels/linear.cu) makes the same GEMM calls through gemm_cuda (cuBLAS);
// the bias broadcast and the bias gradient are small kernels of its own.
#pragma once

#include <cstdint>

#include "kernels/gemm.h"
#include "kernels/hd.h"

namespace hpa::kernels {

struct LinearArgs {
  int64_t n = 0, in = 0, out = 0;  // x [n, in], weight [out, in], y [n, out]
};

// y = x weight^T + bias. bias may be null. Writes (=) all of y.
template <class T>
void linear_forward_cpu(const LinearArgs& a, const T* x, const T* weight, const T* bias, T* y);

// grad_x[n, in] = grad_y[n, out] x weight[out, in]. Writes (=).
template <class T>
void linear_backward_input_cpu(const LinearArgs& a, const T* grad_y, const T* weight, T* grad_x);

// grad_weight[out, in] = grad_y^T x x. Writes (=).
template <class T>
void linear_backward_weight_cpu(const LinearArgs& a, const T* grad_y, const T* x, T* grad_weight);

// grad_bias[o] = sum over the batch of grad_y[:, o]. Writes (=).
template <class T>
void linear_backward_bias_cpu(const LinearArgs& a, const T* grad_y, T* grad_bias);

// The CUDA twins, same contracts (all write =), queued on ctx.stream.
template <class T>
void linear_forward_cuda(const LinearArgs& a, const T* x, const T* weight, const T* bias, T* y,
                         const GemmCudaContext& ctx);
template <class T>
void linear_backward_input_cuda(const LinearArgs& a, const T* grad_y, const T* weight, T* grad_x,
                                const GemmCudaContext& ctx);
template <class T>
void linear_backward_weight_cuda(const LinearArgs& a, const T* grad_y, const T* x, T* grad_weight,
                                 const GemmCudaContext& ctx);
template <class T>
void linear_backward_bias_cuda(const LinearArgs& a, const T* grad_y, T* grad_bias,
                               const GemmCudaContext& ctx);

}  // namespace hpa::kernels
