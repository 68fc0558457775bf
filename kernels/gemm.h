// General matrix multiply on the CPU: C = alpha * op(A) * op(B) + beta * C, row-major, a
// thin checked wrapper over CBLAS (OpenBLAS) sgemm/dgemm.
//
// Design rule: BLAS itself runs single-threaded and the engine's own OpenMP provides the
// parallelism. OpenBLAS's pthread pool and libgomp's pool would otherwise compete for
// the same cores (each busy-waits after its work), and on the conv shapes two serial
// GEMMs side by side beat one two-threaded GEMM. So callers already inside a parallel
// region call gemm_serial_cpu; gemm_cpu splits one large product over the OpenMP threads.
// Bad dimensions throw std::invalid_argument: the ops validate user input first, so this
// only fires on an engine bug.
//
// The CUDA twin (kernels/gemm.cu) is cublasGemmEx on the same row-major arguments, with one
// cuBLAS handle per device on the device's stream and TF32 chosen per call.
#pragma once

#include <cstdint>

#include "kernels/hd.h"

namespace hpa::kernels {

// op(A) is m x k, op(B) is k x n, C is m x n. Leading dimensions are row-major row
// lengths: element (i, j) of a stored matrix is data[i * ld + j]. A transposed operand
// is stored as its transpose (A stored k x m when trans_a).
struct GemmArgs {
  int64_t m = 0, n = 0, k = 0;
  bool trans_a = false, trans_b = false;
  int64_t lda = 0, ldb = 0, ldc = 0;
};

// Row-major dense leading dimensions for the common case of unpadded operands.
inline GemmArgs gemm_args(int64_t m, int64_t n, int64_t k, bool trans_a = false, bool trans_b = false) {
  return {m, n, k, trans_a, trans_b, trans_a ? m : k, trans_b ? k : n, n};
}

// One BLAS call on the calling thread. With k == 0 C is scaled by beta (C = 0 for beta 0).
template <class T>
void gemm_serial_cpu(const GemmArgs& g, T alpha, const T* a, const T* b, T beta, T* c);

// Same result; splits C into row or column blocks over the OpenMP threads when the product
// is large enough to pay for it and no parallel region is active.
template <class T>
void gemm_cpu(const GemmArgs& g, T alpha, const T* a, const T* b, T beta, T* c);

struct GemmCudaContext {
  int device = 0;  // the CUDA device every pointer lives on
  Stream stream = nullptr;
  bool allow_tf32 = true;  // f32 only: CUBLAS_COMPUTE_32F_FAST_TF32 instead of CUBLAS_COMPUTE_32F
};

// The same product on the GPU, queued on ctx.stream. Dimensions and leading dimensions
// must fit cuBLAS's 32-bit ints. With k == 0, C = 0 for beta 0 and is left alone for beta 1.
template <class T>
void gemm_cuda(const GemmArgs& g, T alpha, const T* a, const T* b, T beta, T* c, const GemmCudaContext& ctx);

}  // namespace hpa::kernels
