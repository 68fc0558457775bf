// Device dispatch helpers shared by the functional ops: the stream a CUDA launcher queues
// on, and the error for a CUDA tensor reaching an op in a build without CUDA (which can
// only happen through a hand-made tensor, since a CPU-only build cannot allocate one).
#pragma once

#include "kernels/hd.h"
#include "tensor/tensor.h"
#ifdef HPA_WITH_CUDA
#include "tensor/cuda_backend.h"
#endif

namespace hpa {

#ifdef HPA_WITH_CUDA
inline kernels::Stream stream_of(const Tensor& t) {
  return static_cast<kernels::Stream>(cuda::stream(t.device().index));
}
#else
[[noreturn]] inline void no_cuda(const char* op, const Tensor& t) {
  HPA_FAIL(op, ": this build has no CUDA backend, got ", t.desc());
}
#endif

}  // namespace hpa
