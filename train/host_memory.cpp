#include "train/host_memory.h"

#ifdef HPA_WITH_CUDA
#include "tensor/cuda_backend.h"
#endif

namespace hpa {

bool batch_memory_is_pinned() {
#ifdef HPA_WITH_CUDA
  return cuda::available();
#else
  return false;
#endif
}

data::HostAllocator batch_host_allocator() {
#ifdef HPA_WITH_CUDA
  if (cuda::available()) {
    Allocator* pinned = &cuda::pinned_host_allocator();
    return {[pinned](size_t bytes) { return pinned->allocate(bytes); },
            [pinned](void* p, size_t bytes) { pinned->deallocate(p, bytes); }};
  }
#endif
  return data::aligned_host_allocator();
}

}  // namespace hpa
