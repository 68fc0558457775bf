// Check macros for cuDNN and cuBLAS calls, twins of HPA_CUDA_CHECK (kernels/cuda_check.h).
//
// Each evaluates the statement once and, on failure, throws hpa::Error through
// hpa::cuda::throw_library_error with the statement, file:line, the current device and
// the library's own words: cudnnGetErrorString plus cuDNN 9's per-thread detail message
// (cudnnGetLastErrorString, which names the offending descriptor field), or the cuBLAS
// status name and description. Included only by CUDA translation units.
#pragma once

#include <cublas_v2.h>
#include <cudnn.h>

#include <string>

#include "kernels/cuda_check.h"

namespace hpa::cuda {

inline std::string cudnn_error_message(cudnnStatus_t status) {
  std::string message = cudnnGetErrorString(status);
  char detail[512] = {0};
  cudnnGetLastErrorString(detail, sizeof(detail));
  if (detail[0] != '\0') message += std::string(" (") + detail + ")";
  return message;
}

inline std::string cublas_error_message(cublasStatus_t status) {
  return std::string(cublasGetStatusName(status)) + ": " + cublasGetStatusString(status);
}

}  // namespace hpa::cuda

#define HPA_CUDNN_CHECK(stmt)                                                                \
  do {                                                                                       \
    const cudnnStatus_t hpa_cudnn_status_ = (stmt);                                          \
    if (hpa_cudnn_status_ != CUDNN_STATUS_SUCCESS)                                           \
      ::hpa::cuda::throw_library_error("cuDNN", #stmt, __FILE__, __LINE__,                   \
                                       ::hpa::cuda::cudnn_error_message(hpa_cudnn_status_)); \
  } while (0)

#define HPA_CUBLAS_CHECK(stmt)                                                                 \
  do {                                                                                         \
    const cublasStatus_t hpa_cublas_status_ = (stmt);                                          \
    if (hpa_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                           \
      ::hpa::cuda::throw_library_error("cuBLAS", #stmt, __FILE__, __LINE__,                    \
                                       ::hpa::cuda::cublas_error_message(hpa_cublas_status_)); \
  } while (0)
