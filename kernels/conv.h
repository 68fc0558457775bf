// 2-D convolution kernels, NCHW, weight [c_out, c_in / groups, kh, kw], as im2col + GEMM.
//
// Design rules a reader would otherwise have to guess:
//  - The column matrix of one group is [c_in/groups * kh * kw, output pixels]: row
//    (c, i, j) holds the input pixel that kernel tap (i, j) of channel c sees at each
//    output pixel (0 in the padding). Its row order is the weight's flattened order, so the
//    forward pass is weight[c_out/groups, K] x columns[K, pixels].
//  - The CPU twin never materializes columns for the batch: it works on blocks of whole
//    output rows sized for the L2 cache (or, for small maps, a few whole images), one block
//    per OpenMP work item, each thread with its own scratch. A 1x1, stride-1, unpadded
//    convolution uses the input itself as the column matrix.
//  - Backward input is columns = weight^T x grad_output, then col2im scatter-adds (+=) the
//    columns back onto the input pixels; backward weight is grad_output x columns^T.
//  - The CUDA twin (kernels/conv.cu) is cuDNN's legacy convolution API, not im2col: see
//    the header of conv.cu and docs/CUDNN.md. kernels/ cannot reach the caching allocator
//    (tensor/), so the caller lends cuDNN its workspace through CudaWorkspace.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/hd.h"

namespace hpa::kernels {

struct Conv2dArgs {
  int64_t n = 0, c_in = 0, h = 0, w = 0;  // input [n, c_in, h, w]
  int64_t c_out = 0, kh = 0, kw = 0;      // weight [c_out, c_in / groups, kh, kw]
  int64_t h_out = 0, w_out = 0;           // output [n, c_out, h_out, w_out]
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
};

// floor((in + 2 pad - dilation (k - 1) - 1) / stride) + 1; zero or negative when the
// dilated kernel does not fit in the padded input. stride >= 1.
HPA_HD inline int64_t conv_output_size(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dilation) {
  const int64_t span = in + 2 * pad - dilation * (k - 1) - 1;
  const int64_t floor_div = span >= 0 ? span / stride : -((-span + stride - 1) / stride);
  return floor_div + 1;
}

// The input coordinate that output coordinate `out` sees through kernel tap `tap`
// (outside [0, in) means padding).
HPA_HD inline int64_t conv_input_coord(int64_t out, int64_t tap, int64_t stride, int64_t pad,
                                       int64_t dilation) {
  return out * stride - pad + tap * dilation;
}

// Convolutions with fewer multiply-adds than this run on one thread (default 2^20). Tests
// set 0 to drive the parallel paths with small shapes.
int64_t conv2d_min_parallel_macs();
void set_conv2d_min_parallel_macs(int64_t macs);

// y = conv(x, weight) + bias. bias may be null. Writes (=) all of y.
template <class T>
void conv2d_forward_cpu(const Conv2dArgs& a, const T* x, const T* weight, const T* bias, T* y);

// grad_x = d(sum(grad_y * y)) / dx. Writes (=) all of grad_x.
template <class T>
void conv2d_backward_input_cpu(const Conv2dArgs& a, const T* grad_y, const T* weight, T* grad_x);

// grad_weight = sum over the batch of grad_y x columns(x)^T. Writes (=) all of grad_weight.
template <class T>
void conv2d_backward_weight_cpu(const Conv2dArgs& a, const T* grad_y, const T* x, T* grad_weight);

// grad_bias[c] = sum of grad_y over n, h, w. Writes (=) all of grad_bias.
template <class T>
void conv2d_backward_bias_cpu(const Conv2dArgs& a, const T* grad_y, T* grad_bias);

// ---- CUDA twin (kernels/conv.cu) ----------------------------------------------------------

// Device memory lent to a library call. allocate(bytes) returns memory on the call's device
// that stays valid until the launcher returns; the launcher queues all its work on the
// context's stream before returning, so the lender may reuse the memory for later work on
// that same stream.
class CudaWorkspace {
 public:
  virtual void* allocate(size_t bytes) = 0;

 protected:
  ~CudaWorkspace() = default;
};

struct Conv2dCudaContext {
  int device = 0;  // the CUDA device every pointer lives on
  Stream stream = nullptr;
  bool allow_tf32 = true;  // f32 only: TF32 tensor-core math (cuda::allow_tf32())
  CudaWorkspace* workspace = nullptr;
};

// Bytes of cuDNN workspace a convolution may use (algorithms needing more are skipped):
// HPA_CUDNN_WORKSPACE_MB, default 1024.
size_t conv2d_cuda_workspace_limit();

// The CUDA twins of the four kernels above, same contracts, all writing (=). Algorithms
// are chosen by cudnnFind*AlgorithmEx on the first call per (shape, options, dtype, TF32,
// device, direction) and cached.
template <class T>
void conv2d_forward_cuda(const Conv2dArgs& a, const T* x, const T* weight, const T* bias, T* y,
                         const Conv2dCudaContext& ctx);
template <class T>
void conv2d_backward_input_cuda(const Conv2dArgs& a, const T* grad_y, const T* weight, T* grad_x,
                                const Conv2dCudaContext& ctx);
template <class T>
void conv2d_backward_weight_cuda(const Conv2dArgs& a, const T* grad_y, const T* x, T* grad_weight,
                                 const Conv2dCudaContext& ctx);
template <class T>
void conv2d_backward_bias_cuda(const Conv2dArgs& a, const T* grad_y, T* grad_bias,
                               const Conv2dCudaContext& ctx);

// Number of cached algorithm choices (all devices, all directions), for tests.
size_t conv2d_cuda_cached_algorithms();

}  // namespace hpa::kernels
