// CUDA twin of gemm_cpu: cublasGemmEx on row-major operands.
//
// Design rules a reader would otherwise have to guess:
//  - Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, so the call swaps the
//    operands (B first) and m with n, and passes the row-major leading dimensions unchanged.
//  - cublasGemmEx rather than cublasLt with a bias epilogue: one call covers f32, TF32 and
//    f64 (CUBLAS_COMPUTE_64F), where Lt's bias epilogues do not cover double; the bias
//    broadcast it would fuse is a write of [n, out] floats, negligible beside the GEMM at
//    the engine's head sizes (docs/CUDNN.md).
//  - One handle per device, created on first use with the device current and never
//    destroyed; bound to the caller's stream, with a 32 MiB workspace of its own (NVIDIA's
//    recommendation for Hopper) that lives as long as the handle. cublasSetStream resets
//    the workspace to cuBLAS's default pool, so both are set together.
//  - TF32 is the compute type per call (CUBLAS_COMPUTE_32F_FAST_TF32 or CUBLAS_COMPUTE_32F),
//    never the handle's math mode, so one handle serves both settings.
#include <cublas_v2.h>

#include <algorithm>
#include <climits>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include "kernels/cudnn_check.h"
#include "kernels/gemm.h"

namespace hpa::kernels {

namespace {

constexpr size_t kCublasWorkspaceBytes = size_t{32} << 20;

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
cublasHandle_t cublas_handle(int device, Stream stream) {
  struct Slot {
    cublasHandle_t handle = nullptr;
    void* workspace = nullptr;
    Stream stream = nullptr;
  };
  static std::mutex mutex;
  static std::unordered_map<int, Slot> slots;
  std::lock_guard<std::mutex> lock(mutex);
  Slot& slot = slots[device];
  if (slot.handle == nullptr) {
    HPA_CUBLAS_CHECK(cublasCreate(&slot.handle));
    HPA_CUDA_CHECK(cudaMalloc(&slot.workspace, kCublasWorkspaceBytes));
    HPA_CUBLAS_CHECK(cublasSetStream(slot.handle, stream));
    HPA_CUBLAS_CHECK(cublasSetWorkspace(slot.handle, slot.workspace, kCublasWorkspaceBytes));
    slot.stream = stream;
  } else if (slot.stream != stream) {
    HPA_CUBLAS_CHECK(cublasSetStream(slot.handle, stream));
    HPA_CUBLAS_CHECK(cublasSetWorkspace(slot.handle, slot.workspace, kCublasWorkspaceBytes));
    slot.stream = stream;
  }
  return slot.handle;
}

[[noreturn]] void bad_gemm(const GemmArgs& g, const char* what) {
  std::ostringstream os;
  os << "gemm_cuda: " << what << " (m " << g.m << ", n " << g.n << ", k " << g.k << ", trans_a " << g.trans_a
     << ", trans_b " << g.trans_b << ", lda " << g.lda << ", ldb " << g.ldb << ", ldc " << g.ldc << ")";
  throw std::invalid_argument(os.str());
}

// The same rules as the CPU twin's check (kernels/gemm.cpp).
void check_args(const GemmArgs& g, const void* a, const void* b, const void* c) {
  if (g.m < 0 || g.n < 0 || g.k < 0) bad_gemm(g, "negative dimension");
  if (g.m > INT_MAX || g.n > INT_MAX || g.k > INT_MAX) bad_gemm(g, "dimension exceeds the cuBLAS int range");
  if (g.m == 0 || g.n == 0) return;  // nothing is written, so ldc is never used (an empty [n, 0] has ldc 0)
  if (g.ldc < std::max<int64_t>(1, g.n) || g.ldc > INT_MAX) bad_gemm(g, "bad ldc");
  if (c == nullptr) bad_gemm(g, "null C");
  if (g.k == 0) return;
  const int64_t a_cols = g.trans_a ? g.m : g.k, b_cols = g.trans_b ? g.k : g.n;
  if (g.lda < a_cols || g.lda > INT_MAX) bad_gemm(g, "bad lda");
  if (g.ldb < b_cols || g.ldb > INT_MAX) bad_gemm(g, "bad ldb");
  if (a == nullptr || b == nullptr) bad_gemm(g, "null operand");
}

template <class T>
constexpr cudaDataType_t cuda_type() {
  return sizeof(T) == sizeof(double) ? CUDA_R_64F : CUDA_R_32F;
}

template <class T>
cublasComputeType_t compute_type(bool allow_tf32) {
  if (sizeof(T) == sizeof(double)) return CUBLAS_COMPUTE_64F;
  return allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
}

}  // namespace

template <class T>
void gemm_cuda(const GemmArgs& g, T alpha, const T* a, const T* b, T beta, T* c, const GemmCudaContext& ctx) {
  HPA_NVTX_RANGE("gemm_cuda");
  check_args(g, a, b, c);
  if (g.m == 0 || g.n == 0) return;
  DeviceGuard guard(ctx.device);
  if (g.k == 0) {  // C = beta C with nothing to add; only the two betas the engine uses
    if (beta == T(0)) {
      HPA_CUDA_CHECK(cudaMemset2DAsync(c, static_cast<size_t>(g.ldc) * sizeof(T), 0,
                                       static_cast<size_t>(g.n) * sizeof(T), static_cast<size_t>(g.m),
                                       ctx.stream));
    } else if (beta != T(1)) {
      bad_gemm(g, "k == 0 with beta other than 0 or 1 is not supported");
    }
    return;
  }
  cublasHandle_t handle = cublas_handle(ctx.device, ctx.stream);
  const cudaDataType_t type = cuda_type<T>();
  HPA_CUBLAS_CHECK(
      cublasGemmEx(handle, g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                   static_cast<int>(g.n), static_cast<int>(g.m), static_cast<int>(g.k), &alpha, b, type,
                   static_cast<int>(g.ldb), a, type, static_cast<int>(g.lda), &beta, c, type,
                   static_cast<int>(g.ldc), compute_type<T>(ctx.allow_tf32), CUBLAS_GEMM_DEFAULT));
}

template void gemm_cuda<float>(const GemmArgs&, float, const float*, const float*, float, float*,
                               const GemmCudaContext&);
template void gemm_cuda<double>(const GemmArgs&, double, const double*, const double*, double, double*,
                                const GemmCudaContext&);

}  // namespace hpa::kernels
