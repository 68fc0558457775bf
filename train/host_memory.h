// Where the data loader's batch buffers live. With a GPU present (CUDA build and a device
// seen), batches go in pinned host memory from the CUDA backend's cached pinned allocator,
// so the host-to-device copy of a batch runs at full bus speed and can overlap compute;
// otherwise in plain 4 KiB-aligned host memory. data/ cannot see the CUDA backend (it
// depends on nothing of the engine), so the choice is made here and handed to the loader
// through LoaderOptions::allocator.
#pragma once

#include "data/loader.h"

namespace hpa {

// True when batch_host_allocator() hands out pinned memory.
bool batch_memory_is_pinned();
data::HostAllocator batch_host_allocator();

}  // namespace hpa
