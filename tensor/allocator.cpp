#include "tensor/allocator.h"

#include <cstdlib>
#include <cstring>
#include <new>

#ifdef HPA_WITH_CUDA
#include "tensor/cuda_backend.h"
#endif

namespace hpa {

CpuAllocator& CpuAllocator::instance() {
  static CpuAllocator a;
  return a;
}

void* CpuAllocator::allocate(size_t bytes) {
  if (bytes == 0) bytes = 1;
  const size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  void* p = std::aligned_alloc(kAlignment, rounded);
  HPA_CHECK(p != nullptr, "CpuAllocator: out of memory allocating ", bytes, " bytes (current ",
            current_.load(), " bytes in use)");
  const int64_t now = current_.fetch_add(static_cast<int64_t>(bytes)) + static_cast<int64_t>(bytes);
  int64_t peak = peak_.load();
  while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
  }
  count_.fetch_add(1);
  return p;
}

void CpuAllocator::deallocate(void* ptr, size_t bytes) {
  if (!ptr) return;
  if (bytes == 0) bytes = 1;
  std::free(ptr);
  current_.fetch_sub(static_cast<int64_t>(bytes));
}

AllocatorStats CpuAllocator::stats() const { return {current_.load(), peak_.load(), count_.load()}; }

void CpuAllocator::reset_peak() { peak_.store(current_.load()); }

namespace {
DeviceBackend* g_backends[2] = {nullptr, nullptr};
}

void register_device_backend(DeviceType type, DeviceBackend* backend) {
  g_backends[static_cast<int>(type)] = backend;
}

DeviceBackend& device_backend(DeviceType type) {
  DeviceBackend* b = g_backends[static_cast<int>(type)];
#ifdef HPA_WITH_CUDA
  // The CUDA backend is built in: it registers itself on first use.
  if (!b && type == DeviceType::CUDA) {
    b = &cuda::backend();
    g_backends[static_cast<int>(type)] = b;
  }
#endif
  HPA_CHECK(b != nullptr, "no backend for device type ", type == DeviceType::CUDA ? "cuda" : "cpu",
            ": this build of hpa has no CUDA backend (configure with -DHPA_CUDA=ON on a machine with nvcc)");
  return *b;
}

Allocator& allocator_for(Device device) {
  if (device.is_cpu()) return CpuAllocator::instance();
  return device_backend(device.type).allocator(device.index);
}

Device parse_device(const std::string& s) {
  if (s == "cpu") return Device::cpu();
  if (s == "cuda") return Device::cuda(0);
  if (s.rfind("cuda:", 0) == 0) {
    const std::string idx = s.substr(5);
    HPA_CHECK(!idx.empty() && idx.find_first_not_of("0123456789") == std::string::npos,
              "bad device '", s, "' (expected cpu, cuda or cuda:N)");
    return Device::cuda(std::stoi(idx));
  }
  HPA_FAIL("bad device '", s, "' (expected cpu, cuda or cuda:N)");
}

}  // namespace hpa
