// CUDA device backend: caching device allocator, pinned host allocator, per-device
// streams and the copies tensor/ needs. See tensor/cuda_backend.h for the design.
#include "tensor/cuda_backend.h"

#include <cuda_runtime.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "kernels/cuda_check.h"

namespace hpa::cuda {

namespace {

constexpr size_t kSmallLimit = size_t{1} << 20;  // 1 MiB
constexpr size_t kSmallGranule = 512;
constexpr size_t kLargeGranule = size_t{2} << 20;  // 2 MiB

size_t round_size(size_t bytes) {
  if (bytes == 0) bytes = 1;
  const size_t g = bytes <= kSmallLimit ? kSmallGranule : kLargeGranule;
  return (bytes + g - 1) / g * g;
}

bool plain_mode() {
  static const bool plain = [] {
    const char* v = std::getenv("HPA_CUDA_ALLOC");
    return v && std::strcmp(v, "plain") == 0;
  }();
  return plain;
}

class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    HPA_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) HPA_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }

 private:
  int previous_ = 0;
};

// One caching allocator per device (or for pinned host memory when `pinned`).
class CachingAllocator final : public Allocator {
 public:
  CachingAllocator(int device, bool pinned) : device_(device), pinned_(pinned) {}
  ~CachingAllocator() override = default;  // memory is reclaimed by the driver at exit

  void* allocate(size_t bytes) override {
    const size_t size = plain_mode() ? (bytes ? bytes : 1) : round_size(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    void* p = nullptr;
    if (!plain_mode()) {
      // Best fit among cached blocks, refusing ones more than twice the request so a big
      // block is not pinned down by a small tensor.
      auto it = free_.lower_bound(size);
      if (it != free_.end() && it->first <= 2 * size) {
        p = it->second;
        free_.erase(it);
        cached_bytes_ -= static_cast<int64_t>(block_size_.at(p));
      }
    }
    if (!p) p = fresh(size);
    const size_t real = block_size_.at(p);
    current_ += static_cast<int64_t>(real);
    if (current_ > peak_) peak_ = current_;
    ++count_;
    return p;
  }

  void deallocate(void* ptr, size_t) override {
    if (!ptr) return;
    std::lock_guard<std::mutex> lock(mutex_);
    const size_t size = block_size_.at(ptr);
    current_ -= static_cast<int64_t>(size);
    if (plain_mode()) {
      release(ptr);
      return;
    }
    free_.emplace(size, ptr);
    cached_bytes_ += static_cast<int64_t>(size);
  }

  AllocatorStats stats() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return {current_, peak_, count_};
  }
  void reset_peak() override {
    std::lock_guard<std::mutex> lock(mutex_);
    peak_ = current_;
  }
  size_t reserved() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return static_cast<size_t>(current_ + cached_bytes_);
  }
  void empty_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    release_cached_locked();
  }

 private:
  void* fresh(size_t size) {
    void* p = nullptr;
    cudaError_t err = raw_alloc(&p, size);
    if (err != cudaSuccess) {
      cudaGetLastError();  // clear the sticky-free error state of a failed allocation
      release_cached_locked();
      err = raw_alloc(&p, size);
    }
    if (err != cudaSuccess) {
      cudaGetLastError();
      HPA_FAIL("CUDA allocator: out of memory allocating ", size, " bytes on ",
               pinned_ ? std::string("pinned host memory") : "cuda:" + std::to_string(device_), " (",
               current_, " bytes in use, peak ", peak_, "): ", cudaGetErrorString(err));
    }
    block_size_[p] = size;
    return p;
  }

  cudaError_t raw_alloc(void** p, size_t size) {
    if (pinned_) return cudaHostAlloc(p, size, cudaHostAllocDefault);
    DeviceGuard guard(device_);
    return cudaMalloc(p, size);
  }

  void release(void* p) {
    block_size_.erase(p);
    if (pinned_) {
      HPA_CUDA_CHECK(cudaFreeHost(p));
    } else {
      DeviceGuard guard(device_);
      HPA_CUDA_CHECK(cudaFree(p));
    }
  }

  void release_cached_locked() {
    if (!free_.empty() && !pinned_) {
      // Freed blocks may still be read by queued kernels of this device's stream.
      DeviceGuard guard(device_);
      HPA_CUDA_CHECK(cudaDeviceSynchronize());
    }
    for (auto& [size, p] : free_) release(p);
    free_.clear();
    cached_bytes_ = 0;
  }

  const int device_;
  const bool pinned_;
  mutable std::mutex mutex_;
  std::multimap<size_t, void*> free_;
  std::unordered_map<void*, size_t> block_size_;
  int64_t current_ = 0, peak_ = 0, count_ = 0, cached_bytes_ = 0;
};

class Backend final : public DeviceBackend {
 public:
  Allocator& allocator(int device) override { return device_state(device).allocator; }

  void copy_host_to_device(void* dst, const void* src, size_t bytes, int device) override {
    copy(dst, src, bytes, cudaMemcpyHostToDevice, device);
  }
  void copy_device_to_host(void* dst, const void* src, size_t bytes, int device) override {
    copy(dst, src, bytes, cudaMemcpyDeviceToHost, device);
  }
  void copy_device_to_device(void* dst, const void* src, size_t bytes, int device) override {
    DeviceGuard guard(device);
    HPA_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_of(device)));
  }
  void memset_zero(void* dst, size_t bytes, int device) override {
    DeviceGuard guard(device);
    HPA_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, stream_of(device)));
  }
  int device_count() override { return cuda::device_count(); }

  struct DeviceState {
    explicit DeviceState(int device) : allocator(device, false) {
      DeviceGuard guard(device);
      HPA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    }
    CachingAllocator allocator;
    cudaStream_t stream = nullptr;
  };

  DeviceState& device_state(int device) {
    std::lock_guard<std::mutex> lock(mutex_);
    const int n = cuda::device_count();
    HPA_CHECK(n > 0, "CUDA: no GPU is available (cudaGetDeviceCount reports none or fails)");
    HPA_CHECK(device >= 0 && device < n, "CUDA: device cuda:", device, " does not exist (", n, " GPU",
              n == 1 ? "" : "s", " present)");
    if (states_.size() < static_cast<size_t>(n)) states_.resize(static_cast<size_t>(n));
    auto& s = states_[static_cast<size_t>(device)];
    if (!s) s = std::make_unique<DeviceState>(device);
    return *s;
  }
  cudaStream_t stream_of(int device) { return device_state(device).stream; }

 private:
  // Host <-> device copies are synchronous for the host: the host buffer may be reused
  // as soon as the call returns.
  void copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, int device) {
    DeviceGuard guard(device);
    cudaStream_t s = stream_of(device);
    HPA_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, s));
    HPA_CUDA_CHECK(cudaStreamSynchronize(s));
  }

  std::mutex mutex_;
  std::vector<std::unique_ptr<DeviceState>> states_;
};

Backend& the_backend() {
  static Backend b;
  return b;
}

}  // namespace

int device_count() {
  static const int n = [] {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
      cudaGetLastError();  // no driver or no device: treat as "no GPU"
      return 0;
    }
    return count;
  }();
  return n;
}

bool available() { return device_count() > 0; }

void* stream(int device) { return the_backend().stream_of(device); }

void synchronize(int device) {
  DeviceGuard guard(device);
  HPA_CUDA_CHECK(cudaStreamSynchronize(the_backend().stream_of(device)));
}

AllocatorStats device_memory_stats(int device) { return the_backend().device_state(device).allocator.stats(); }
void reset_peak_memory(int device) { the_backend().device_state(device).allocator.reset_peak(); }
size_t reserved_bytes(int device) { return the_backend().device_state(device).allocator.reserved(); }
void empty_cache(int device) { the_backend().device_state(device).allocator.empty_cache(); }

Allocator& pinned_host_allocator() {
  static CachingAllocator a(-1, true);
  return a;
}

DeviceBackend& backend() { return the_backend(); }

namespace {
std::atomic<bool> g_allow_tf32{true};
}
void set_allow_tf32(bool allow) { g_allow_tf32.store(allow); }
bool allow_tf32() { return g_allow_tf32.load(); }

}  // namespace hpa::cuda
