// Error reporting shared by the CUDA check macros (kernels/cuda_check.h).
#include <cstdlib>
#include <cstring>

#include "kernels/cuda_check.h"

namespace hpa::cuda {

std::string current_device_string() {
  int device = -1;
  if (cudaGetDevice(&device) != cudaSuccess) return "cuda:?";
  return "cuda:" + std::to_string(device);
}

bool sync_debug_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("HPA_SYNC_DEBUG");
    return v && std::strcmp(v, "0") != 0 && v[0] != '\0';
  }();
  return enabled;
}

void throw_library_error(const char* library, const char* statement, const char* file, int line,
                         const std::string& message) {
  throw Error(detail::concat(library, " call ", statement, " failed at ", file, ":", line, " on ",
                             current_device_string(), ": ", message));
}

void check_launch(const char* kernel, const char* file, int line) {
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess && sync_debug_enabled()) err = cudaDeviceSynchronize();
  if (err != cudaSuccess)
    throw Error(detail::concat("CUDA kernel ", kernel, " failed at ", file, ":", line, " on ",
                               current_device_string(), ": ", cudaGetErrorName(err), ": ",
                               cudaGetErrorString(err), sync_debug_enabled() ? "" : " (set HPA_SYNC_DEBUG=1 to "
                               "synchronize after every launch so the failing kernel is named)"));
}

}  // namespace hpa::cuda
