// Check macros for every CUDA-side library call, and the launch/NVTX helpers.
//
// Each macro evaluates the statement once and, on failure, throws hpa::Error with the
// statement, file:line, the library's own error string and the current device, e.g.
//   cudnnConvolutionForward(...) failed at kernels/conv.cu:88 on cuda:0:
//   CUDNN_STATUS_BAD_PARAM
// HPA_CHECK_LAUNCH(name) follows each kernel launch: it checks the launch and, when the
// environment sets HPA_SYNC_DEBUG=1, synchronizes so an asynchronous fault is reported
// against the kernel that caused it instead of a later, unrelated call.
// Included only by CUDA-enabled translation units.
#pragma once

#include <cuda_runtime.h>
#include <nvtx3/nvToolsExt.h>

#include <string>

#include "tensor/error.h"

namespace hpa::cuda {

std::string current_device_string();
bool sync_debug_enabled();  // HPA_SYNC_DEBUG=1, read once

[[noreturn]] void throw_library_error(const char* library, const char* statement, const char* file, int line,
                                      const std::string& message);

// RAII NVTX range: an Nsight Systems timeline reads by op name.
class NvtxRange {
 public:
  explicit NvtxRange(const char* name) { nvtxRangePushA(name); }
  ~NvtxRange() { nvtxRangePop(); }
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;
};

void check_launch(const char* kernel, const char* file, int line);

}  // namespace hpa::cuda

#define HPA_CUDA_CHECK(stmt)                                                                              \
  do {                                                                                                    \
    const cudaError_t hpa_err_ = (stmt);                                                                  \
    if (hpa_err_ != cudaSuccess)                                                                          \
      ::hpa::cuda::throw_library_error("CUDA", #stmt, __FILE__, __LINE__,                                 \
                                       std::string(cudaGetErrorName(hpa_err_)) + ": " +                   \
                                           cudaGetErrorString(hpa_err_));                                 \
  } while (0)

#define HPA_CHECK_LAUNCH(kernel_name) ::hpa::cuda::check_launch(kernel_name, __FILE__, __LINE__)

#define HPA_NVTX_CONCAT_INNER(a, b) a##b
#define HPA_NVTX_CONCAT(a, b) HPA_NVTX_CONCAT_INNER(a, b)
#define HPA_NVTX_RANGE(name) ::hpa::cuda::NvtxRange HPA_NVTX_CONCAT(hpa_nvtx_range_, __LINE__)(name)
