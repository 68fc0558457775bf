// Allocators hand out raw device memory and keep byte counts. The CPU allocator aligns
// to 64 bytes (one cache line, a full AVX-512 vector). A backend for another device
// (the CUDA caching allocator) registers itself through register_device_backend, so
// tensor/ never depends on the CUDA code and a CPU-only build has no CUDA symbols.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "tensor/dtype.h"

namespace hpa {

struct AllocatorStats {
  int64_t current_bytes = 0;
  int64_t peak_bytes = 0;
  int64_t allocations = 0;  // number of allocate() calls so far
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* ptr, size_t bytes) = 0;
  virtual AllocatorStats stats() const = 0;
  virtual void reset_peak() = 0;
};

class CpuAllocator final : public Allocator {
 public:
  static constexpr size_t kAlignment = 64;
  static CpuAllocator& instance();
  void* allocate(size_t bytes) override;
  void deallocate(void* ptr, size_t bytes) override;
  AllocatorStats stats() const override;
  void reset_peak() override;

 private:
  std::atomic<int64_t> current_{0}, peak_{0}, count_{0};
};

// Everything a non-CPU device must provide to hold tensors. Copies are synchronous with
// respect to the host when either side is the CPU.
struct DeviceBackend {
  virtual ~DeviceBackend() = default;
  virtual Allocator& allocator(int device_index) = 0;
  virtual void copy_host_to_device(void* dst, const void* src, size_t bytes, int device_index) = 0;
  virtual void copy_device_to_host(void* dst, const void* src, size_t bytes, int device_index) = 0;
  virtual void copy_device_to_device(void* dst, const void* src, size_t bytes, int device_index) = 0;
  virtual void memset_zero(void* dst, size_t bytes, int device_index) = 0;
  virtual int device_count() = 0;
};

void register_device_backend(DeviceType type, DeviceBackend* backend);
// Throws hpa::Error when no backend for the device type was built in or registered.
DeviceBackend& device_backend(DeviceType type);
Allocator& allocator_for(Device device);

}  // namespace hpa
