// CUDA twin of the convolution kernels: cuDNN's legacy convolution API (cudnn_cnn.h:
// cudnnConvolutionForward / BackwardData / BackwardFilter, chosen by
// cudnnFind*AlgorithmEx), plus cudnnAddTensor / cudnnConvolutionBackwardBias for the bias.
//
// Why the legacy API rather than the graph API (docs/CUDNN.md has the longer version):
// it covers every case the engine needs in one call each, f64 included (the graph API's
// engines are f16/bf16/f32-centred and double support is patchy), grouped and dilated
// convolutions are descriptor fields, and it needs no cudnn-frontend headers (not
// installed on the target machines). cuDNN 9 still ships and supports it; all of it is
// confined to this file, so moving to the graph API later touches nothing else.
//
// Design rules a reader would otherwise have to guess:
//  - One cudnnHandle per device, created on first use with that device current and never
//    destroyed (handles live until exit; destroying them during static destruction races
//    the driver's own teardown). It is (re)bound to the caller's stream when that changes.
//  - Algorithms: found once per key (shape, options, dtype, layout NCHW, TF32 flag,
//    device, direction) with cudnnFind*AlgorithmEx on the real buffers and a workspace of
//    the largest size any algorithm asks for, capped at conv2d_cuda_workspace_limit();
//    the fastest that succeeded within the cap is cached. Find*Ex writes the output
//    buffer while timing; the real call overwrites it right after.
//  - Math: f32 with TF32 off runs with CUDNN_FMA_MATH (no tensor cores, IEEE f32 like
//    the CPU); with TF32 on, the find runs with CUDNN_TENSOR_OP_MATH and the call with the
//    math type cuDNN reported for the chosen algorithm. f64 is CUDNN_DATA_DOUBLE with a
//    double compute type.
//  - Zero-size cases never reach cuDNN (it rejects zero dimensions): an empty output is a
//    no-op; a batch of 0 or an empty input plane gives zero weight and bias gradients and
//    an output that is only the bias.
#include <cudnn.h>

#include <array>
#include <climits>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels/conv.h"
#include "kernels/cudnn_check.h"

namespace hpa::kernels {

namespace {

template <class T>
constexpr cudnnDataType_t cudnn_type() {
  return sizeof(T) == sizeof(double) ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
}

class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    HPA_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) HPA_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceGuard() {
    int current = -1;
    if (cudaGetDevice(&current) == cudaSuccess && current != previous_) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

// The device's handle, bound to `stream`. The caller has made `device` current.
cudnnHandle_t cudnn_handle(int device, Stream stream) {
  struct Slot {
    cudnnHandle_t handle = nullptr;
    Stream stream = nullptr;
  };
  static std::mutex mutex;
  static std::unordered_map<int, Slot> slots;
  std::lock_guard<std::mutex> lock(mutex);
  Slot& slot = slots[device];
  if (slot.handle == nullptr) {
    HPA_CUDNN_CHECK(cudnnCreate(&slot.handle));
    HPA_CUDNN_CHECK(cudnnSetStream(slot.handle, stream));
    slot.stream = stream;
  } else if (slot.stream != stream) {
    HPA_CUDNN_CHECK(cudnnSetStream(slot.handle, stream));
    slot.stream = stream;
  }
  return slot.handle;
}

int to_int(int64_t v, const char* what) {
  HPA_CHECK(v >= 0 && v <= INT_MAX, "conv2d (cuDNN): ", what, " = ", v, " exceeds cuDNN's 32-bit dimensions");
  return static_cast<int>(v);
}

// RAII owners of the legacy descriptors. Destruction ignores the status: it cannot fail
// on a descriptor this code created, and a destructor must not throw.
class TensorDescriptor {
 public:
  TensorDescriptor(cudnnDataType_t type, int64_t n, int64_t c, int64_t h, int64_t w) {
    HPA_CUDNN_CHECK(cudnnCreateTensorDescriptor(&desc_));
    HPA_CUDNN_CHECK(cudnnSetTensor4dDescriptor(desc_, CUDNN_TENSOR_NCHW, type, to_int(n, "batch"),
                                               to_int(c, "channels"), to_int(h, "height"),
                                               to_int(w, "width")));
  }
  ~TensorDescriptor() { cudnnDestroyTensorDescriptor(desc_); }
  TensorDescriptor(const TensorDescriptor&) = delete;
  TensorDescriptor& operator=(const TensorDescriptor&) = delete;
  cudnnTensorDescriptor_t get() const { return desc_; }

 private:
  cudnnTensorDescriptor_t desc_ = nullptr;
};

class FilterDescriptor {
 public:
  FilterDescriptor(cudnnDataType_t type, const Conv2dArgs& a) {
    HPA_CUDNN_CHECK(cudnnCreateFilterDescriptor(&desc_));
    HPA_CUDNN_CHECK(cudnnSetFilter4dDescriptor(desc_, type, CUDNN_TENSOR_NCHW,
                                               to_int(a.c_out, "output channels"),
                                               to_int(a.c_in / a.groups, "input channels per group"),
                                               to_int(a.kh, "kernel height"), to_int(a.kw, "kernel width")));
  }
  ~FilterDescriptor() { cudnnDestroyFilterDescriptor(desc_); }
  FilterDescriptor(const FilterDescriptor&) = delete;
  FilterDescriptor& operator=(const FilterDescriptor&) = delete;
  cudnnFilterDescriptor_t get() const { return desc_; }

 private:
  cudnnFilterDescriptor_t desc_ = nullptr;
};

class ConvolutionDescriptor {
 public:
  ConvolutionDescriptor(cudnnDataType_t type, const Conv2dArgs& a, cudnnMathType_t math) {
    HPA_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&desc_));
    HPA_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(
        desc_, to_int(a.pad_h, "padding"), to_int(a.pad_w, "padding"), to_int(a.stride_h, "stride"),
        to_int(a.stride_w, "stride"), to_int(a.dilation_h, "dilation"), to_int(a.dilation_w, "dilation"),
        CUDNN_CROSS_CORRELATION, type));
    HPA_CUDNN_CHECK(cudnnSetConvolutionGroupCount(desc_, to_int(a.groups, "groups")));
    set_math(math);
  }
  ~ConvolutionDescriptor() { cudnnDestroyConvolutionDescriptor(desc_); }
  ConvolutionDescriptor(const ConvolutionDescriptor&) = delete;
  ConvolutionDescriptor& operator=(const ConvolutionDescriptor&) = delete;
  void set_math(cudnnMathType_t math) { HPA_CUDNN_CHECK(cudnnSetConvolutionMathType(desc_, math)); }
  cudnnConvolutionDescriptor_t get() const { return desc_; }

 private:
  cudnnConvolutionDescriptor_t desc_ = nullptr;
};

// The math type the algorithm search runs with (see the header comment).
template <class T>
cudnnMathType_t search_math(bool allow_tf32) {
  if (cudnn_type<T>() == CUDNN_DATA_DOUBLE) return CUDNN_DEFAULT_MATH;
  return allow_tf32 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
}

// Everything one convolution call describes to cuDNN.
template <class T>
struct Descriptors {
  Descriptors(const Conv2dArgs& a, bool allow_tf32)
      : x(cudnn_type<T>(), a.n, a.c_in, a.h, a.w),
        y(cudnn_type<T>(), a.n, a.c_out, a.h_out, a.w_out),
        weight(cudnn_type<T>(), a),
        conv(cudnn_type<T>(), a, search_math<T>(allow_tf32)) {
    int n = 0, c = 0, h = 0, w = 0;
    HPA_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(conv.get(), x.get(), weight.get(), &n, &c, &h, &w));
    HPA_CHECK(n == a.n && c == a.c_out && h == a.h_out && w == a.w_out,
              "conv2d (cuDNN): cuDNN computes output [", n, ", ", c, ", ", h, ", ", w,
              "] but the engine expects [", a.n, ", ", a.c_out, ", ", a.h_out, ", ", a.w_out, "]");
  }
  TensorDescriptor x, y;
  FilterDescriptor weight;
  ConvolutionDescriptor conv;
};

enum class Direction : int64_t { forward = 0, backward_data = 1, backward_filter = 2 };

struct AlgorithmChoice {
  int algorithm = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  size_t workspace_bytes = 0;
};

constexpr int64_t kLayoutNchw = 0;
using AlgorithmKey = std::array<int64_t, 21>;

template <class T>
AlgorithmKey algorithm_key(const Conv2dArgs& a, Direction direction, const Conv2dCudaContext& ctx) {
  // TF32 is meaningless for f64: normalized so both settings share one search.
  const bool tf32 = cudnn_type<T>() == CUDNN_DATA_FLOAT && ctx.allow_tf32;
  return {a.n,
          a.c_in,
          a.h,
          a.w,
          a.c_out,
          a.kh,
          a.kw,
          a.h_out,
          a.w_out,
          a.stride_h,
          a.stride_w,
          a.pad_h,
          a.pad_w,
          a.dilation_h,
          a.dilation_w,
          a.groups,
          static_cast<int64_t>(sizeof(T)),
          kLayoutNchw,
          tf32 ? 1 : 0,
          static_cast<int64_t>(ctx.device),
          static_cast<int64_t>(direction)};
}

std::mutex g_cache_mutex;
std::map<AlgorithmKey, AlgorithmChoice>& algorithm_cache() {
  static std::map<AlgorithmKey, AlgorithmChoice> cache;
  return cache;
}

std::string shape_desc(const Conv2dArgs& a) {
  return detail::concat("input [", a.n, ", ", a.c_in, ", ", a.h, ", ", a.w, "], weight [", a.c_out, ", ",
                        a.c_in / a.groups, ", ", a.kh, ", ", a.kw, "], stride (", a.stride_h, ", ",
                        a.stride_w, "), padding (", a.pad_h, ", ", a.pad_w, "), dilation (", a.dilation_h,
                        ", ", a.dilation_w, "), groups ", a.groups);
}

// The cached choice for `key`, or the result of a search: `workspace_size(algo, &bytes)`
// asks cuDNN what one algorithm needs, `find(count, &returned, perf, ws, bytes)` runs
// cudnnFind*AlgorithmEx (checked inside, so an error names the real call).
template <class Perf, class WorkspaceSizeFn, class FindFn>
AlgorithmChoice choose_algorithm(const AlgorithmKey& key, int algorithm_count, bool exclude_tensor_ops,
                                 const char* direction, const Conv2dArgs& a, CudaWorkspace& workspace,
                                 WorkspaceSizeFn&& workspace_size, FindFn&& find) {
  {
    std::lock_guard<std::mutex> lock(g_cache_mutex);
    auto it = algorithm_cache().find(key);
    if (it != algorithm_cache().end()) return it->second;
  }
  // Searched outside the lock: two threads racing on a new shape both search, harmlessly.
  const size_t limit = conv2d_cuda_workspace_limit();
  size_t search_bytes = 0;
  for (int algo = 0; algo < algorithm_count; ++algo) {
    size_t bytes = 0;
    // Algorithms that do not support this configuration answer with an error: skipped.
    if (workspace_size(algo, &bytes) == CUDNN_STATUS_SUCCESS && bytes <= limit && bytes > search_bytes)
      search_bytes = bytes;
  }
  void* search_workspace = search_bytes > 0 ? workspace.allocate(search_bytes) : nullptr;
  std::vector<Perf> perf(static_cast<size_t>(algorithm_count));
  int returned = 0;
  find(algorithm_count, &returned, perf.data(), search_workspace, search_bytes);
  for (int i = 0; i < returned; ++i) {
    const Perf& p = perf[static_cast<size_t>(i)];
    if (p.status != CUDNN_STATUS_SUCCESS || p.memory > search_bytes) continue;
    if (exclude_tensor_ops &&
        (p.mathType == CUDNN_TENSOR_OP_MATH || p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION))
      continue;
    const AlgorithmChoice choice{static_cast<int>(p.algo), p.mathType, p.memory};
    std::lock_guard<std::mutex> lock(g_cache_mutex);
    algorithm_cache()[key] = choice;
    return choice;
  }
  HPA_FAIL("conv2d (cuDNN): no ", direction, " algorithm works for ", shape_desc(a),
           " within the workspace limit of ", limit >> 20, " MiB (raise HPA_CUDNN_WORKSPACE_MB)");
}

// Sets the math type the call itself runs with (see the header comment).
template <class T>
void set_call_math(ConvolutionDescriptor& conv, const AlgorithmChoice& choice, bool allow_tf32) {
  if (cudnn_type<T>() == CUDNN_DATA_FLOAT && !allow_tf32) {
    conv.set_math(CUDNN_FMA_MATH);
  } else {
    conv.set_math(choice.math);
  }
}

bool exclude_tensor_ops(cudnnDataType_t type, bool allow_tf32) {
  return type == CUDNN_DATA_FLOAT && !allow_tf32;
}

void* lend(CudaWorkspace* workspace, size_t bytes) {
  return bytes > 0 ? workspace->allocate(bytes) : nullptr;
}

void zero(void* p, int64_t elements, size_t element_size, Stream stream) {
  if (elements > 0)
    HPA_CUDA_CHECK(cudaMemsetAsync(p, 0, static_cast<size_t>(elements) * element_size, stream));
}

void check_context(const Conv2dCudaContext& ctx) {
  HPA_CHECK(ctx.workspace != nullptr, "conv2d (cuDNN): the launcher needs a workspace lender");
}

}  // namespace

size_t conv2d_cuda_workspace_limit() {
  static const size_t limit = [] {
    const char* v = std::getenv("HPA_CUDNN_WORKSPACE_MB");
    const long long mb = v != nullptr ? std::atoll(v) : 0;
    return static_cast<size_t>(mb > 0 ? mb : 1024) << 20;
  }();
  return limit;
}

size_t conv2d_cuda_cached_algorithms() {
  std::lock_guard<std::mutex> lock(g_cache_mutex);
  return algorithm_cache().size();
}

template <class T>
void conv2d_forward_cuda(const Conv2dArgs& a, const T* x, const T* weight, const T* bias, T* y,
                         const Conv2dCudaContext& ctx) {
  HPA_NVTX_RANGE("conv2d_forward_cuda");
  check_context(ctx);
  const int64_t y_elements = a.n * a.c_out * a.h_out * a.w_out;
  if (y_elements == 0) return;
  DeviceGuard guard(ctx.device);
  cudnnHandle_t handle = cudnn_handle(ctx.device, ctx.stream);
  const T one = 1, nothing = 0;
  if (a.h == 0 || a.w == 0) {
    zero(y, y_elements, sizeof(T), ctx.stream);  // only padding is seen: y = bias
  } else {
    Descriptors<T> d(a, ctx.allow_tf32);
    const AlgorithmChoice choice = choose_algorithm<cudnnConvolutionFwdAlgoPerf_t>(
        algorithm_key<T>(a, Direction::forward, ctx), CUDNN_CONVOLUTION_FWD_ALGO_COUNT,
        exclude_tensor_ops(cudnn_type<T>(), ctx.allow_tf32), "forward", a, *ctx.workspace,
        [&](int algo, size_t* bytes) {
          return cudnnGetConvolutionForwardWorkspaceSize(handle, d.x.get(), d.weight.get(), d.conv.get(),
                                                         d.y.get(),
                                                         static_cast<cudnnConvolutionFwdAlgo_t>(algo), bytes);
        },
        [&](int count, int* returned, cudnnConvolutionFwdAlgoPerf_t* perf, void* ws, size_t ws_bytes) {
          HPA_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(handle, d.x.get(), x, d.weight.get(), weight,
                                                                 d.conv.get(), d.y.get(), y, count, returned,
                                                                 perf, ws, ws_bytes));
        });
    set_call_math<T>(d.conv, choice, ctx.allow_tf32);
    void* ws = lend(ctx.workspace, choice.workspace_bytes);
    HPA_CUDNN_CHECK(cudnnConvolutionForward(handle, &one, d.x.get(), x, d.weight.get(), weight, d.conv.get(),
                                            static_cast<cudnnConvolutionFwdAlgo_t>(choice.algorithm), ws,
                                            choice.workspace_bytes, &nothing, d.y.get(), y));
  }
  if (bias != nullptr) {
    TensorDescriptor y_desc(cudnn_type<T>(), a.n, a.c_out, a.h_out, a.w_out);
    TensorDescriptor bias_desc(cudnn_type<T>(), 1, a.c_out, 1, 1);
    HPA_CUDNN_CHECK(cudnnAddTensor(handle, &one, bias_desc.get(), bias, &one, y_desc.get(), y));
  }
}

template <class T>
void conv2d_backward_input_cuda(const Conv2dArgs& a, const T* grad_y, const T* weight, T* grad_x,
                                const Conv2dCudaContext& ctx) {
  HPA_NVTX_RANGE("conv2d_backward_input_cuda");
  check_context(ctx);
  if (a.n * a.c_in * a.h * a.w == 0) return;
  DeviceGuard guard(ctx.device);
  cudnnHandle_t handle = cudnn_handle(ctx.device, ctx.stream);
  const T one = 1, nothing = 0;
  Descriptors<T> d(a, ctx.allow_tf32);
  const AlgorithmChoice choice = choose_algorithm<cudnnConvolutionBwdDataAlgoPerf_t>(
      algorithm_key<T>(a, Direction::backward_data, ctx), CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
      exclude_tensor_ops(cudnn_type<T>(), ctx.allow_tf32), "backward-data", a, *ctx.workspace,
      [&](int algo, size_t* bytes) {
        return cudnnGetConvolutionBackwardDataWorkspaceSize(
            handle, d.weight.get(), d.y.get(), d.conv.get(), d.x.get(),
            static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), bytes);
      },
      [&](int count, int* returned, cudnnConvolutionBwdDataAlgoPerf_t* perf, void* ws, size_t ws_bytes) {
        HPA_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(handle, d.weight.get(), weight, d.y.get(),
                                                                    grad_y, d.conv.get(), d.x.get(), grad_x,
                                                                    count, returned, perf, ws, ws_bytes));
      });
  set_call_math<T>(d.conv, choice, ctx.allow_tf32);
  void* ws = lend(ctx.workspace, choice.workspace_bytes);
  HPA_CUDNN_CHECK(cudnnConvolutionBackwardData(handle, &one, d.weight.get(), weight, d.y.get(), grad_y,
                                               d.conv.get(),
                                               static_cast<cudnnConvolutionBwdDataAlgo_t>(choice.algorithm),
                                               ws, choice.workspace_bytes, &nothing, d.x.get(), grad_x));
}

template <class T>
void conv2d_backward_weight_cuda(const Conv2dArgs& a, const T* grad_y, const T* x, T* grad_weight,
                                 const Conv2dCudaContext& ctx) {
  HPA_NVTX_RANGE("conv2d_backward_weight_cuda");
  check_context(ctx);
  const int64_t weight_elements = a.c_out * (a.c_in / a.groups) * a.kh * a.kw;
  if (weight_elements == 0) return;
  DeviceGuard guard(ctx.device);
  if (a.n == 0 || a.h == 0 || a.w == 0) {  // no input pixel contributes
    zero(grad_weight, weight_elements, sizeof(T), ctx.stream);
    return;
  }
  cudnnHandle_t handle = cudnn_handle(ctx.device, ctx.stream);
  const T one = 1, nothing = 0;
  Descriptors<T> d(a, ctx.allow_tf32);
  const AlgorithmChoice choice = choose_algorithm<cudnnConvolutionBwdFilterAlgoPerf_t>(
      algorithm_key<T>(a, Direction::backward_filter, ctx), CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
      exclude_tensor_ops(cudnn_type<T>(), ctx.allow_tf32), "backward-filter", a, *ctx.workspace,
      [&](int algo, size_t* bytes) {
        return cudnnGetConvolutionBackwardFilterWorkspaceSize(
            handle, d.x.get(), d.y.get(), d.conv.get(), d.weight.get(),
            static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo), bytes);
      },
      [&](int count, int* returned, cudnnConvolutionBwdFilterAlgoPerf_t* perf, void* ws, size_t ws_bytes) {
        HPA_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(
            handle, d.x.get(), x, d.y.get(), grad_y, d.conv.get(), d.weight.get(), grad_weight, count,
            returned, perf, ws, ws_bytes));
      });
  set_call_math<T>(d.conv, choice, ctx.allow_tf32);
  void* ws = lend(ctx.workspace, choice.workspace_bytes);
  HPA_CUDNN_CHECK(
      cudnnConvolutionBackwardFilter(handle, &one, d.x.get(), x, d.y.get(), grad_y, d.conv.get(),
                                     static_cast<cudnnConvolutionBwdFilterAlgo_t>(choice.algorithm), ws,
                                     choice.workspace_bytes, &nothing, d.weight.get(), grad_weight));
}

template <class T>
void conv2d_backward_bias_cuda(const Conv2dArgs& a, const T* grad_y, T* grad_bias,
                               const Conv2dCudaContext& ctx) {
  HPA_NVTX_RANGE("conv2d_backward_bias_cuda");
  check_context(ctx);
  if (a.c_out == 0) return;
  DeviceGuard guard(ctx.device);
  if (a.n == 0) {
    zero(grad_bias, a.c_out, sizeof(T), ctx.stream);
    return;
  }
  cudnnHandle_t handle = cudnn_handle(ctx.device, ctx.stream);
  const T one = 1, nothing = 0;
  TensorDescriptor y_desc(cudnn_type<T>(), a.n, a.c_out, a.h_out, a.w_out);
  TensorDescriptor bias_desc(cudnn_type<T>(), 1, a.c_out, 1, 1);
  HPA_CUDNN_CHECK(
      cudnnConvolutionBackwardBias(handle, &one, y_desc.get(), grad_y, &nothing, bias_desc.get(), grad_bias));
}

#define HPA_INSTANTIATE_CONV_CUDA(T)                                                        \
  template void conv2d_forward_cuda<T>(const Conv2dArgs&, const T*, const T*, const T*, T*, \
                                       const Conv2dCudaContext&);                           \
  template void conv2d_backward_input_cuda<T>(const Conv2dArgs&, const T*, const T*, T*,    \
                                              const Conv2dCudaContext&);                    \
  template void conv2d_backward_weight_cuda<T>(const Conv2dArgs&, const T*, const T*, T*,   \
                                               const Conv2dCudaContext&);                   \
  template void conv2d_backward_bias_cuda<T>(const Conv2dArgs&, const T*, T*, const Conv2dCudaContext&);
HPA_INSTANTIATE_CONV_CUDA(float)
HPA_INSTANTIATE_CONV_CUDA(double)
#undef HPA_INSTANTIATE_CONV_CUDA

}  // namespace hpa::kernels
