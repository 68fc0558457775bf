// The CUDA device backend, seen from host code that must not include CUDA headers.
//
// Memory: a caching allocator per device. Freed blocks go back to a free list keyed by
// rounded size (512-byte granularity below 1 MiB, 2 MiB above) and are reused by later
// allocations of the same stream, so a training step after the first does no cudaMalloc
// at all. The engine runs each device's work on one stream, which makes that reuse safe
// without events. When cudaMalloc fails, the cache is released and the call retried once.
// HPA_CUDA_ALLOC=plain bypasses the cache (every tensor is its own cudaMalloc/cudaFree),
// so compute-sanitizer sees each allocation's true bounds.
//
// Pinned host memory (cudaHostAlloc, cached the same way) is what the data loader hands
// batches in, so host-to-device copies run at full PCIe/NVLink speed.
//
// Everything here throws hpa::Error when the build has no CUDA or no GPU is present.
#pragma once

#include <cstddef>

#include "tensor/allocator.h"

namespace hpa::cuda {

// Number of usable GPUs; 0 when the driver or a GPU is missing (never throws).
int device_count();
bool available();
// The stream (a cudaStream_t) all work on `device` is queued on.
void* stream(int device);
void synchronize(int device);

AllocatorStats device_memory_stats(int device);
void reset_peak_memory(int device);
// Bytes held by the cache (in use + free cached), and returning the free ones to CUDA.
size_t reserved_bytes(int device);
void empty_cache(int device);

Allocator& pinned_host_allocator();

// TF32 tensor-core math for f32 convolutions and GEMMs: on by default (as PyTorch's cuDNN
// default), turned off by the parity tests so CPU and GPU compute the same thing.
void set_allow_tf32(bool allow);
bool allow_tf32();

// Registers the backend with tensor/ (called lazily by device_backend()).
DeviceBackend& backend();

}  // namespace hpa::cuda
