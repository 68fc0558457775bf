// CPU GEMM through CBLAS. OpenBLAS is told once, before the first product, to run on the
// calling thread only (see kernels/gemm.h for why); gemm_cpu then does its own split.
#include "kernels/gemm.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <climits>
#include <sstream>
#include <stdexcept>
#include <string>

namespace hpa::kernels {

namespace {

void ensure_blas_single_threaded() {
  static const bool done = [] {
    openblas_set_num_threads(1);
    return true;
  }();
  (void)done;
}

[[noreturn]] void bad_gemm(const GemmArgs& g, const char* what) {
  std::ostringstream os;
  os << "gemm: " << what << " (m " << g.m << ", n " << g.n << ", k " << g.k << ", trans_a " << g.trans_a
     << ", trans_b " << g.trans_b << ", lda " << g.lda << ", ldb " << g.ldb << ", ldc " << g.ldc << ")";
  throw std::invalid_argument(os.str());
}

void check_args(const GemmArgs& g, const void* a, const void* b, const void* c) {
  if (g.m < 0 || g.n < 0 || g.k < 0) bad_gemm(g, "negative dimension");
  if (g.m > INT_MAX || g.n > INT_MAX || g.k > INT_MAX) bad_gemm(g, "dimension exceeds the BLAS int range");
  if (g.m == 0 || g.n == 0) return;  // nothing is written, so ldc is never used (an empty [n, 0] has ldc 0)
  if (g.ldc < std::max<int64_t>(1, g.n) || g.ldc > INT_MAX) bad_gemm(g, "bad ldc");
  if (c == nullptr) bad_gemm(g, "null C");
  if (g.k == 0) return;
  const int64_t a_cols = g.trans_a ? g.m : g.k, b_cols = g.trans_b ? g.k : g.n;
  if (g.lda < a_cols || g.lda > INT_MAX) bad_gemm(g, "bad lda");
  if (g.ldb < b_cols || g.ldb > INT_MAX) bad_gemm(g, "bad ldb");
  if (a == nullptr || b == nullptr) bad_gemm(g, "null operand");
}

void blas_gemm(const GemmArgs& g, float alpha, const float* a, const float* b, float beta, float* c) {
  cblas_sgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans, g.trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(g.m), static_cast<int>(g.n), static_cast<int>(g.k), alpha, a,
              static_cast<int>(g.lda), b, static_cast<int>(g.ldb), beta, c, static_cast<int>(g.ldc));
}

void blas_gemm(const GemmArgs& g, double alpha, const double* a, const double* b, double beta, double* c) {
  cblas_dgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans, g.trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(g.m), static_cast<int>(g.n), static_cast<int>(g.k), alpha, a,
              static_cast<int>(g.lda), b, static_cast<int>(g.ldb), beta, c, static_cast<int>(g.ldc));
}

// Below this many multiply-adds a second thread costs more than it saves.
constexpr int64_t kMinParallelMacs = int64_t{1} << 21;
// Blocks split at multiples of this so each keeps whole vector-register tiles.
constexpr int64_t kSplitAlign = 16;

}  // namespace

template <class T>
void gemm_serial_cpu(const GemmArgs& g, T alpha, const T* a, const T* b, T beta, T* c) {
  check_args(g, a, b, c);
  if (g.m == 0 || g.n == 0) return;
  if (g.k == 0) {  // BLAS rejects lda 0; the product is empty, so C = beta * C
    for (int64_t i = 0; i < g.m; ++i)
      for (int64_t j = 0; j < g.n; ++j) c[i * g.ldc + j] = beta == T(0) ? T(0) : beta * c[i * g.ldc + j];
    return;
  }
  ensure_blas_single_threaded();
  blas_gemm(g, alpha, a, b, beta, c);
}

template <class T>
void gemm_cpu(const GemmArgs& g, T alpha, const T* a, const T* b, T beta, T* c) {
  check_args(g, a, b, c);
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (threads <= 1 || g.m * g.n * g.k < kMinParallelMacs) {
    gemm_serial_cpu(g, alpha, a, b, beta, c);
    return;
  }
  // Split the longer side of C; the other operand is shared read-only by every block.
  const bool split_rows = g.m >= g.n;
  const int64_t extent = split_rows ? g.m : g.n;
  const int64_t block = (extent / threads + kSplitAlign - 1) / kSplitAlign * kSplitAlign;
  const int64_t blocks = block == 0 ? 1 : (extent + block - 1) / block;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t i = 0; i < blocks; ++i) {
    const int64_t begin = i * block, len = std::min(block, extent - begin);
    GemmArgs part = g;
    const T* pa = a;
    const T* pb = b;
    T* pc = c;
    if (split_rows) {
      part.m = len;
      pa += g.trans_a ? begin : begin * g.lda;
      pc += begin * g.ldc;
    } else {
      part.n = len;
      pb += g.trans_b ? begin * g.ldb : begin;
      pc += begin;
    }
    gemm_serial_cpu(part, alpha, pa, pb, beta, pc);
  }
}

template void gemm_serial_cpu<float>(const GemmArgs&, float, const float*, const float*, float, float*);
template void gemm_serial_cpu<double>(const GemmArgs&, double, const double*, const double*, double, double*);
template void gemm_cpu<float>(const GemmArgs&, float, const float*, const float*, float, float*);
template void gemm_cpu<double>(const GemmArgs&, double, const double*, const double*, double, double*);

}  // namespace hpa::kernels
