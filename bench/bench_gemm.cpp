// sgemm at the shapes the engine's CPU convolutions and linear layers produce, to choose
// the CPU BLAS by measurement (docs/PERFORMANCE.md, "BLAS choice").
//
// Which library runs:
//  - "cblas/...": whatever cblas_sgemm the process resolved. That is the OpenBLAS the
//    engine links (the libopenblas.so.0 alternative, pthread variant by default); swap it
//    without relinking with LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp, or
//    interpose BLIS with LD_PRELOAD=/usr/lib/x86_64-linux-gnu/blis-openmp/libblis.so.4.
//    The context line "cblas_sgemm_from" names the file that actually answered.
//  - "dnnl/...": oneDNN's dnnl_sgemm, loaded with dlopen from libdnnl.so.2 when present
//    (the oneDNN PyTorch's CPU convolutions use), so no link dependency is added.
// Threads: OpenBLAS and BLIS read OPENBLAS_NUM_THREADS / BLIS_NUM_THREADS, else
// OMP_NUM_THREADS; oneDNN (OpenMP build) reads OMP_NUM_THREADS. Set OMP_NUM_THREADS.
//
// Shapes are row-major C[M,N] = op(A)[M,K] op(B)[K,N]; the label says where they come from
// (per-sample im2col GEMMs of ResNet convolutions at 8x...x56x56, the linear head).
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <dlfcn.h>
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace {

struct GemmShape {
  const char* label;
  bool trans_a, trans_b;
  int m, n, k;
};

// fwd: W[Cout, Cin*KH*KW] x col[Cin*KH*KW, Hout*Wout]; bwd-data: W^T x gy; bwd-filter:
// gy x col^T. Linear fwd: x[B,in] x W[out,in]^T.
const GemmShape kShapes[] = {
    {"conv3x3_64_56_fwd", false, false, 64, 3136, 576},
    {"conv3x3_64_56_fwd_batch8", false, false, 64, 25088, 576},
    {"conv3x3_64_56_bwd_data", true, false, 576, 3136, 64},
    {"conv3x3_64_56_bwd_filter", false, true, 64, 576, 3136},
    {"conv1x1_256to128_28_fwd", false, false, 128, 784, 256},
    {"conv3x3_128_28_fwd", false, false, 128, 784, 1152},
    {"stem7x7_4to64_112_fwd", false, false, 64, 12544, 196},
    {"grouped3x3_g32_56_fwd_one_group", false, false, 4, 3136, 36},
    {"linear_2048to1024_fwd", false, true, 64, 1024, 2048},
    {"linear_4096to1024_fwd", false, true, 64, 1024, 4096},
    {"linear_2048to1024_fwd_as_WxT", false, true, 1024, 64, 2048},
    {"linear_2048to1024_bwd_data", false, false, 64, 2048, 1024},
    {"linear_2048to1024_bwd_filter", true, false, 1024, 2048, 64},
};

using DnnlSgemmFn = int (*)(char transa, char transb, int64_t m, int64_t n, int64_t k, float alpha,
                            const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                            int64_t ldc);

DnnlSgemmFn load_dnnl_sgemm() {
  void* handle = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
  if (!handle) return nullptr;
  return reinterpret_cast<DnnlSgemmFn>(dlsym(handle, "dnnl_sgemm"));
}

std::string library_of(const void* symbol) {
  Dl_info info{};
  if (dladdr(symbol, &info) && info.dli_fname) return info.dli_fname;
  return "unknown";
}

enum class Backend { cblas, dnnl };

// threaded: one product split by the library over its own threads (how PyTorch calls
// BLAS for linear). serial_per_thread: every OpenMP thread runs its own single-threaded
// product at the same time (how kernels/gemm.h calls BLAS: the engine parallelises over
// tiles and keeps BLAS serial); GFLOP/s then counts all threads' products.
enum class Mode { threaded, serial_per_thread };

struct Operands {
  std::vector<float> a, b, c;
  int lda, ldb, ldc;
};

Operands make_operands(const GemmShape& s, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  Operands o;
  o.a.resize(static_cast<size_t>(s.m) * s.k);
  o.b.resize(static_cast<size_t>(s.k) * s.n);
  o.c.assign(static_cast<size_t>(s.m) * s.n, 0.f);
  for (auto& v : o.a) v = normal(rng);
  for (auto& v : o.b) v = normal(rng);
  o.lda = s.trans_a ? s.m : s.k;
  o.ldb = s.trans_b ? s.k : s.n;
  o.ldc = s.n;
  return o;
}

// The libraries' own thread-count setters, looked up at run time because which of them
// is loaded depends on LD_PRELOAD / LD_LIBRARY_PATH.
// OpenBLAS's OpenMP build implements openblas_set_num_threads(n) as omp_set_num_threads(n)
// too, which would leave every later parallel region of this thread with n threads; the
// OpenMP setting is therefore restored to the process's thread count afterwards.
int g_threads = 1;  // OMP_NUM_THREADS as seen at start-up

void set_blas_threads(int threads) {
  using SetFn = void (*)(int);
  if (auto f = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) f(threads);
  if (auto f = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "bli_thread_set_num_threads"))) f(threads);
  omp_set_num_threads(g_threads);
}

void run_gemm(Backend backend, DnnlSgemmFn dnnl, const GemmShape& s, Operands& o) {
  if (backend == Backend::cblas) {
    cblas_sgemm(CblasRowMajor, s.trans_a ? CblasTrans : CblasNoTrans, s.trans_b ? CblasTrans : CblasNoTrans,
                s.m, s.n, s.k, 1.f, o.a.data(), o.lda, o.b.data(), o.ldb, 0.f, o.c.data(), o.ldc);
  } else {
    dnnl(s.trans_a ? 'T' : 'N', s.trans_b ? 'T' : 'N', s.m, s.n, s.k, 1.f, o.a.data(), o.lda, o.b.data(),
         o.ldb, 0.f, o.c.data(), o.ldc);
  }
}

// Compares 64 entries of C (corners included) with a double-precision dot product.
// Tolerance: 1e-5 of the sum of |a_ik b_kj| -- loose enough for any float summation
// order, tight enough that a transposed or shifted operand fails by orders of magnitude.
std::string validate(const GemmShape& s, const Operands& o) {
  std::mt19937 rng(99);
  for (int t = 0; t < 64; ++t) {
    int i = static_cast<int>(rng() % s.m), j = static_cast<int>(rng() % s.n);
    if (t == 0) i = 0, j = 0;
    if (t == 1) i = s.m - 1, j = s.n - 1;
    double ref = 0, abs_sum = 0;
    for (int k = 0; k < s.k; ++k) {
      const double a =
          s.trans_a ? o.a[static_cast<size_t>(k) * o.lda + i] : o.a[static_cast<size_t>(i) * o.lda + k];
      const double b =
          s.trans_b ? o.b[static_cast<size_t>(j) * o.ldb + k] : o.b[static_cast<size_t>(k) * o.ldb + j];
      ref += a * b;
      abs_sum += std::abs(a * b);
    }
    const double got = o.c[static_cast<size_t>(i) * o.ldc + j];
    if (!(std::abs(got - ref) <= 1e-5 * abs_sum + 1e-6)) {
      char msg[200];
      std::snprintf(msg, sizeof msg, "VALIDATION FAILED: C[%d,%d] = %.6g, reference %.6g", i, j, got, ref);
      return msg;
    }
  }
  return "";
}

bool g_failed = false;

void BM_sgemm(benchmark::State& state, Backend backend, DnnlSgemmFn dnnl, Mode mode, GemmShape s) {
  const int threads = mode == Mode::threaded ? 1 : g_threads;
  set_blas_threads(mode == Mode::threaded ? g_threads : 1);
  std::vector<Operands> operands(threads);
#pragma omp parallel for num_threads(threads) schedule(static, 1)
  for (int t = 0; t < threads; ++t) operands[t] = make_operands(s, 1234 + t);  // first touch by its thread

  int team = 1;
  auto run_all = [&] {
    if (mode == Mode::threaded) {
      run_gemm(backend, dnnl, s, operands[0]);
    } else {
#pragma omp parallel num_threads(threads)
      {
        run_gemm(backend, dnnl, s, operands[omp_get_thread_num()]);
        if (omp_get_thread_num() == 0) team = omp_get_num_threads();
      }
    }
  };
  run_all();
  std::string error =
      team == threads ? ""
                      : "ran on " + std::to_string(team) + " threads instead of " + std::to_string(threads);
  for (int t = 0; t < threads && error.empty(); ++t) error = validate(s, operands[t]);
  if (!error.empty()) {
    g_failed = true;
    std::fprintf(stderr, "sgemm %s: %s\n", s.label, error.c_str());
    state.SkipWithError(error.c_str());
    return;
  }
  for (int i = 0; i < 2; ++i) run_all();  // warm-up: thread pools, caches

  double seconds = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    run_all();
    benchmark::ClobberMemory();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    state.SetIterationTime(dt);
    seconds += dt;
  }
  const double flop = 2.0 * s.m * s.n * s.k * threads;
  state.counters["GFLOP/s"] = flop * static_cast<double>(state.iterations()) / seconds / 1e9;
  state.counters["threads"] = mode == Mode::threaded ? g_threads : team;
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

  // dlsym(RTLD_DEFAULT) finds the definition the dynamic linker binds (LD_PRELOAD first).
  benchmark::AddCustomContext("cblas_sgemm_from", library_of(dlsym(RTLD_DEFAULT, "cblas_sgemm")));
  g_threads = omp_get_max_threads();
  benchmark::AddCustomContext("omp_max_threads", std::to_string(g_threads));
  DnnlSgemmFn dnnl = load_dnnl_sgemm();
  benchmark::AddCustomContext("dnnl_sgemm_from",
                              dnnl ? library_of(reinterpret_cast<const void*>(dnnl)) : "not found");

  for (const Mode mode : {Mode::threaded, Mode::serial_per_thread}) {
    for (const GemmShape& s : kShapes) {
      const std::string tail = std::string(mode == Mode::threaded ? "threaded/" : "serial_per_thread/") +
                               s.label + "/M" + std::to_string(s.m) + "/N" + std::to_string(s.n) + "/K" +
                               std::to_string(s.k);
      for (const Backend backend : {Backend::cblas, Backend::dnnl}) {
        if (backend == Backend::dnnl && !dnnl) continue;
        const std::string name =
            std::string(backend == Backend::cblas ? "sgemm/cblas/" : "sgemm/dnnl/") + tail;
        benchmark::RegisterBenchmark(name.c_str(), BM_sgemm, backend, dnnl, mode, s)
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
      }
    }
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return g_failed ? 1 : 0;
}
